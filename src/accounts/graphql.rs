//! The accounts part of the GraphQL API.

use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{flows, model, viewer};
use crate::app::AppState;
use crate::error::ResultExt;

/// What an account may do.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Owns clients, messages and mailings.
    User,
    /// Also sees every mailing and user, may pause mailings and block users.
    Manager,
    /// Also edits the blog and roles.
    Admin,
}

impl Role {
    pub fn from_db(role: &str) -> Role {
        match role {
            "admin" => Role::Admin,
            "manager" => Role::Manager,
            _ => Role::User,
        }
    }

    pub fn as_db(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }
}

/// An account.
pub struct User(pub model::User);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn email(&self) -> &str {
        &self.0.email
    }

    async fn full_name(&self) -> &str {
        &self.0.full_name
    }

    async fn role(&self) -> Role {
        Role::from_db(&self.0.role)
    }

    /// false: blocked by a manager or admin.
    async fn is_active(&self) -> bool {
        self.0.is_active
    }

    async fn email_verified(&self) -> bool {
        self.0.email_verified_at.is_some()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A new session: send `token` as `Authorization: Bearer <token>`.
#[derive(SimpleObject)]
pub struct AuthPayload {
    pub token: String,
    pub user: User,
}

#[derive(Default)]
pub struct AccountsQuery;

#[Object]
impl AccountsQuery {
    /// The signed-in account; null when the request carries no valid session.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let Ok(viewer) = viewer(ctx) else { return Ok(None) };
        let mut conn = AppState::from_ctx(ctx).conn().await.gql()?;
        Ok(model::find_user(&mut conn, viewer.user_id).await.gql()?.map(User))
    }
}

#[derive(Default)]
pub struct AccountsMutation;

#[Object]
impl AccountsMutation {
    /// Always true, whether or not the address is taken (no account enumeration); mails a
    /// verification link carrying ?token=...
    async fn register(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
        full_name: String,
    ) -> async_graphql::Result<bool> {
        flows::register(AppState::from_ctx(ctx), &email, &password, &full_name)
            .await
            .gql()?;
        Ok(true)
    }

    /// Redeems the token from the verification mail.
    async fn verify_email(&self, ctx: &Context<'_>, token: String) -> async_graphql::Result<bool> {
        flows::verify_email(AppState::from_ctx(ctx), &token).await.gql()?;
        Ok(true)
    }

    /// Opens a session. Wrong credentials: UNAUTHENTICATED, whether or not the address has
    /// an account; right ones on an unverified account: EMAIL_NOT_VERIFIED.
    async fn login(&self, ctx: &Context<'_>, email: String, password: String) -> async_graphql::Result<AuthPayload> {
        let (token, user) = flows::login(AppState::from_ctx(ctx), &email, &password).await.gql()?;
        Ok(AuthPayload {
            token,
            user: User(user),
        })
    }

    /// Ends the current session; its token stops working.
    async fn logout(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let viewer = viewer(ctx).gql()?;
        let mut conn = AppState::from_ctx(ctx).conn().await.gql()?;
        model::delete_session(&mut conn, viewer.session_id).await.gql()?;
        Ok(true)
    }
}

crate::batch_loader!(
    /// Batches `owner` look-ups into one query per request.
    UserLoader: uuid::Uuid => model::User, |conn, keys| async {
        Ok(model::find_users(conn, keys).await?.into_iter().map(|u| (u.id, u)).collect())
    }
);
