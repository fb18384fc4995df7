//! Who is asking: the signed-in account of a request, put into the request's data by the
//! HTTP and WebSocket handlers, read by resolvers.

use std::net::IpAddr;

use async_graphql::Context;
use uuid::Uuid;

use super::api_keys::ApiKeyScope;
use super::role::Role;
use crate::db::types::{ApiKeyId, SessionId, UserId};
use crate::error::{AppError, AppResult};

#[derive(Debug, Clone)]
pub struct Viewer {
    pub user_id: UserId,
    pub role: Role,
    /// What the caller signed in with.
    pub credential: Credential,
}

/// A session (from `login`) or an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Session(SessionId),
    ApiKey { id: ApiKeyId, scope: ApiKeyScope },
}

impl Credential {
    /// The session's or the key's id (they never collide: both are random UUIDs).
    pub fn id(self) -> Uuid {
        match self {
            Credential::Session(SessionId(id)) | Credential::ApiKey { id: ApiKeyId(id), .. } => id,
        }
    }
}

impl Viewer {
    /// The session signed in with, if it was one (not an API key).
    pub fn session_id(&self) -> Option<SessionId> {
        match self.credential {
            Credential::Session(id) => Some(id),
            Credential::ApiKey { .. } => None,
        }
    }

    /// A READ API key: no mutations.
    pub fn read_only(&self) -> bool {
        matches!(
            self.credential,
            Credential::ApiKey {
                scope: ApiKeyScope::Read,
                ..
            }
        )
    }
}

/// The client's address as the HTTP layer determined it (X-Forwarded-For only behind
/// TRUSTED_PROXIES); absent when unknown. Rate limits key on it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// The signed-in viewer, or UNAUTHENTICATED.
pub fn viewer<'a>(ctx: &Context<'a>) -> AppResult<&'a Viewer> {
    ctx.data_opt::<Viewer>().ok_or(AppError::Unauthenticated)
}

/// The client's address, when known.
pub fn client_ip(ctx: &Context<'_>) -> Option<IpAddr> {
    ctx.data_opt::<ClientIp>().map(|ip| ip.0)
}
