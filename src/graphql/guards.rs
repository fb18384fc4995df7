//! Role checks for resolvers: `#[graphql(guard = "RoleGuard::at_least(Role::Manager)")]`.
//! Anonymous callers get UNAUTHENTICATED, signed-in ones below the role FORBIDDEN. Which
//! objects a viewer may touch is still decided in the queries (ownership).

use async_graphql::{Context, ErrorExtensions, Guard};

use crate::accounts::graphql::Role;
use crate::accounts::viewer;
use crate::error::AppError;

pub struct RoleGuard {
    least: Role,
}

impl RoleGuard {
    pub fn at_least(least: Role) -> Self {
        RoleGuard { least }
    }
}

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let viewer = viewer(ctx).map_err(|e| e.extend())?;
        if viewer.role.rank() >= self.least.rank() {
            Ok(())
        } else {
            Err(AppError::Forbidden.extend())
        }
    }
}
