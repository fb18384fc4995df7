//! Who is asking: the signed-in account of a request, put into the request's data by the
//! HTTP and WebSocket handlers, read by resolvers.

use std::net::IpAddr;

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

/// The client's address as the HTTP layer determined it (X-Forwarded-For only behind
/// TRUSTED_PROXIES); absent when unknown. Rate limits key on it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// The viewer a session token belongs to, and whether its expiry just slid forward; None
/// for an unknown, expired or revoked token, or a blocked or deleted account.
pub async fn authenticate(state: &AppState, token: &str) -> AppResult<Option<(Viewer, bool)>> {
    let mut conn = state.conn().await?;
    let found = model::authenticate(
        &mut conn,
        &tokens::hash_token(token),
        state.config().accounts.session_ttl,
    )
    .await?;
    Ok(found.map(|found| {
        let viewer = Viewer {
            user_id: found.user.id,
            role: Role::from_db(&found.user.role),
            session_id: found.session_id,
        };
        (viewer, found.slid)
    }))
}

/// The signed-in viewer, or UNAUTHENTICATED.
pub fn viewer<'a>(ctx: &Context<'a>) -> AppResult<&'a Viewer> {
    ctx.data_opt::<Viewer>().ok_or(AppError::Unauthenticated)
}

/// The client's address, when known.
pub fn client_ip(ctx: &Context<'_>) -> Option<IpAddr> {
    ctx.data_opt::<ClientIp>().map(|ip| ip.0)
}
