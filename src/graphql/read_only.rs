//! READ API keys run no mutations: every root field of the Mutation type answers FORBIDDEN
//! for them, over HTTP and WebSocket alike, before its resolver runs.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo};
use async_graphql::{ErrorExtensions, PathSegment, Pos, ServerResult, Value};

use crate::accounts::Viewer;
use crate::error::AppError;

pub(super) struct ReadOnlyKeys;

impl ExtensionFactory for ReadOnlyKeys {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ReadOnlyKeys)
    }
}

#[async_trait::async_trait]
impl Extension for ReadOnlyKeys {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.parent_type == "Mutation" && ctx.data_opt::<Viewer>().is_some_and(Viewer::read_only) {
            let mut error = AppError::Forbidden.extend().into_server_error(Pos::default());
            error.message = "a READ API key cannot run mutations".to_owned();
            error.path = vec![PathSegment::Field(info.name.to_owned())];
            return Err(error);
        }
        next.run(ctx, info).await
    }
}
