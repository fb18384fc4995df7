//! The one sign-in path, for every endpoint (`/graphql`, `/graphql/ws`, the CSV export):
//! a bearer token, from a header, a cookie or a socket's `connection_init`, to a viewer;
//! and the check resolvers put in front of what needs a role:
//! `#[graphql(guard = "RoleGuard::at_least(Role::Manager)")]`. Anonymous callers get
//! UNAUTHENTICATED, signed-in ones below the role FORBIDDEN. Which objects a viewer may
//! touch is still decided in the queries (ownership).

use async_graphql::{Context, ErrorExtensions, Guard};

use super::api_keys;
use super::role::Role;
use super::viewer::{Credential, Viewer, viewer};
use super::{model, tokens};
use crate::app::AppState;
use crate::error::{AppError, AppResult};

/// The one sign-in path, for every endpoint: the viewer a bearer token (a session token or
/// an API key) belongs to, and whether a session's expiry just slid forward (a browser's
/// cookie follows); None for an unknown, expired or revoked token, or a blocked or deleted
/// account.
pub async fn authenticate(state: &AppState, token: &str) -> AppResult<Option<(Viewer, bool)>> {
    let mut conn = state.conn().await?;
    if api_keys::is_api_key(token) {
        let found = api_keys::authenticate(&mut conn, &tokens::hash_token(token)).await?;
        return Ok(found.map(|(id, scope, user)| {
            let viewer = Viewer {
                user_id: user.id,
                role: user.role,
                credential: Credential::ApiKey { id, scope },
            };
            (viewer, false)
        }));
    }
    let found = model::authenticate(
        &mut conn,
        &tokens::hash_token(token),
        state.config().accounts.session_ttl,
    )
    .await?;
    Ok(found.map(|found| {
        let viewer = Viewer {
            user_id: found.user.id,
            role: found.user.role,
            credential: Credential::Session(found.session_id),
        };
        (viewer, found.slid)
    }))
}

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
