//! Who is asking: the signed-in account of a request, put into the request's data by the
//! HTTP and WebSocket handlers, read by resolvers.

use async_graphql::Context;
use uuid::Uuid;

use super::graphql::Role;
use super::{model, tokens};
use crate::app::AppState;
use crate::error::{AppError, AppResult};

#[derive(Debug, Clone)]
pub struct Viewer {
    pub user_id: Uuid,
    pub role: Role,
    pub session_id: Uuid,
}

/// The viewer a session token belongs to; None for an unknown, expired or revoked token,
/// or a blocked or deleted account.
pub async fn authenticate(state: &AppState, token: &str) -> AppResult<Option<Viewer>> {
    let mut conn = state.conn().await?;
    let found = model::authenticate(
        &mut conn,
        &tokens::hash_token(token),
        state.config().accounts.session_ttl,
    )
    .await?;
    Ok(found.map(|(session_id, user)| Viewer {
        user_id: user.id,
        role: Role::from_db(&user.role),
        session_id,
    }))
}

/// The signed-in viewer, or UNAUTHENTICATED.
pub fn viewer<'a>(ctx: &Context<'a>) -> AppResult<&'a Viewer> {
    ctx.data_opt::<Viewer>().ok_or(AppError::Unauthenticated)
}
