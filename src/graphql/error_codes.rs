//! Gives the errors async-graphql raises itself an `extensions.code` (our own errors carry
//! one already, see `crate::error`), and records whether execution began: errors before
//! that are request errors, which the HTTP layer answers with 400 and no `data`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Response, ServerError, ServerResult, ValidationResult, Variables};

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
                .map(|err| with_code(err, "GRAPHQL_VALIDATION_FAILED"))
                .collect()
        })
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
        // During execution, async-graphql's own errors are about argument values
        // (a malformed ID or DateTime, a bad pagination argument).
        response.errors = response
            .errors
            .into_iter()
            .map(|err| with_code(err, "BAD_USER_INPUT"))
            .collect();
        response
    }
}

/// Sets `extensions.code` unless the error has one already.
pub fn with_code(mut err: ServerError, code: &str) -> ServerError {
    let ext = err.extensions.get_or_insert_with(Default::default);
    if ext.get("code").is_none() {
        ext.set("code", code);
    }
    err
}
