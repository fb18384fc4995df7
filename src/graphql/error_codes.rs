//! Gives the errors async-graphql raises itself an `extensions.code` (our own errors carry
//! one already, see `crate::error`), and records whether execution began: errors before
//! that are request errors, which the HTTP layer answers with 400 and no `data`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ErrorExtensions, Response, ServerError, ServerResult, ValidationResult, Variables};

use crate::db::page::BadPageArg;
use crate::error::{AppError, PoolError};

/// Put into a request's data by the HTTP handler; set once execution starts.
#[derive(Debug, Default, Clone)]
pub struct ExecutionStarted(Arc<AtomicBool>);

impl ExecutionStarted {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pub(super) struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

#[async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables)
            .await
            .map_err(|err| with_code(err, "GRAPHQL_PARSE_FAILED"))
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        // Unknown fields, wrong argument types, variables that do not coerce, and the
        // depth and complexity limits all fail here.
        next.run(ctx).await.map_err(|errs| {
            errs.into_iter()
                .map(|mut err| {
                    if err.message == "Query is too complex." {
                        err.message = format!(
                            "Query is too complex: a list's fields count once for each item it may return \
                             (its `first`, 20 when not given), and the limit is {}; ask for fewer items \
                             or fewer nested lists.",
                            super::MAX_COMPLEXITY
                        );
                    }
                    with_code(err, "GRAPHQL_VALIDATION_FAILED")
                })
                .collect()
        })
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: futures_util::stream::BoxStream<'s, Response>,
        next: async_graphql::extensions::NextSubscribe<'_>,
    ) -> futures_util::stream::BoxStream<'s, Response> {
        use futures_util::StreamExt;
        next.run(ctx, stream)
            .map(|mut response| {
                response.errors = response.errors.into_iter().map(execution_error).collect();
                response
            })
            .boxed()
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if let Some(started) = ctx.data_opt::<ExecutionStarted>() {
            started.0.store(true, Ordering::Relaxed);
        }
        let mut response = next.run(ctx, operation_name).await;
        response.errors = response.errors.into_iter().map(execution_error).collect();
        response
    }
}

/// The one place an error raised while executing gets its `extensions.code`, from the error
/// it came from (resolvers just use `?`): an `AppError` (also shared by a DataLoader) says
/// its code itself (`AppError::extend`); a database failure is an internal error, logged;
/// no connection from the pool is SERVICE_UNAVAILABLE; async-graphql's own errors about an
/// argument's value (a malformed ID or DateTime) are BAD_USER_INPUT; anything else is
/// logged and answered as an internal error, its text hidden.
pub fn execution_error(err: ServerError) -> ServerError {
    if err.extensions.as_ref().is_some_and(|ext| ext.get("code").is_some()) {
        return err;
    }
    let known = err
        .source::<AppError>()
        .map(AppError::extend)
        .or_else(|| err.source::<Arc<AppError>>().map(|app| AppError::extend(app)))
        .or_else(|| err.source::<BadPageArg>().map(|bad| AppError::from(bad).extend()))
        .or_else(|| {
            err.source::<diesel::result::Error>()
                .map(|db| AppError::of_database(db).extend())
        })
        .or_else(|| err.source::<PoolError>().map(|pool| AppError::of_pool(pool).extend()));
    if let Some(coded) = known {
        let mut err = err;
        err.message = coded.message;
        err.extensions = coded.extensions;
        return err;
    }
    if err.message.starts_with("Failed to parse \"") || err.message.starts_with("Invalid value") {
        return with_code(err, "BAD_USER_INPUT");
    }
    tracing::error!(error = err.message, path = ?err.path, "internal error");
    let mut hidden = ServerError::new("internal error", err.locations.first().copied());
    hidden.path = err.path;
    with_code(hidden, "INTERNAL_SERVER_ERROR")
}

/// Sets `extensions.code` unless the error has one already.
pub fn with_code(mut err: ServerError, code: &str) -> ServerError {
    let ext = err.extensions.get_or_insert_with(Default::default);
    if ext.get("code").is_none() {
        ext.set("code", code);
    }
    err
}
