//! The accounts part of the GraphQL API.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;

use super::api_keys::{self, ApiKey, ApiKeyScope, CreatedApiKey};
use super::auth::RoleGuard;
use super::role::Role;
use super::{client_ip, cookie, flows, model, moderation, viewer};
use crate::app::AppState;
use crate::db::page::PageArgs;
use crate::db::types::UserId;
use crate::error::AppError;
use crate::graphql::connection::Connection;
use crate::graphql::ids::parse_id;
use crate::validate;

/// The header a sign-in or sign-out sets the browser's session cookie with.
const SET_COOKIE_HEADER: &str = "set-cookie";

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
        self.0.role
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
    /// Your API keys, newest first; their secrets are never shown again.
    async fn api_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiKey>> {
        let viewer = viewer(ctx)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let rows = api_keys::list(&mut conn, viewer.user_id).await?;
        rows.into_iter()
            .map(ApiKey::try_from)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let Ok(viewer) = viewer(ctx) else { return Ok(None) };
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        Ok(model::find_user(&mut conn, viewer.user_id).await?.map(User))
    }

    /// Every account, newest first (MANAGER, ADMIN).
    #[graphql(
        guard = "RoleGuard::at_least(Role::Manager)",
        complexity = "crate::graphql::connection::page_cost(first, child_complexity)"
    )]
    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<User>> {
        let args = PageArgs::new(first, after.as_deref())?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let page = model::list_users(&mut conn, args).await?;
        Ok(Connection::from_page(page, args, model::User::cursor, User))
    }
}

#[derive(Default)]
pub struct AccountsMutation;

#[Object]
impl AccountsMutation {
    /// A key for a GraphQL client app: use its secret as `Authorization: Bearer <secret>` or
    /// `{"token": "<secret>"}` in a WebSocket's `connection_init`. The secret is in this
    /// answer only. Made with a session, not with another key; at most 20 per account.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        name: String,
        scope: ApiKeyScope,
    ) -> async_graphql::Result<CreatedApiKey> {
        let viewer = viewer(ctx)?;
        if viewer.session_id().is_none() {
            return Err(AppError::Forbidden.into());
        }
        let name = validate::required_line("name", &name, 100)?;
        let (secret, hash) = api_keys::new_secret();
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let row = conn
            .transaction::<_, AppError, _>(async |conn| {
                model::lock_user(conn, viewer.user_id).await?;
                if api_keys::count(conn, viewer.user_id).await? >= api_keys::MAX_PER_USER {
                    return Err(AppError::bad_input(
                        "name",
                        format!(
                            "an account has at most {} API keys; revoke one first",
                            api_keys::MAX_PER_USER
                        ),
                    ));
                }
                Ok(api_keys::create(conn, viewer.user_id, &name, scope, &hash).await?)
            })
            .await?;
        Ok(CreatedApiKey {
            api_key: ApiKey::try_from(row)?,
            secret,
        })
    }

    /// Ends one of your API keys at once, on every instance (sockets signed in with it close).
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let viewer = viewer(ctx)?;
        if viewer.session_id().is_none() {
            return Err(AppError::Forbidden.into());
        }
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        conn.transaction::<_, AppError, _>(async |conn| {
            if !api_keys::revoke(conn, viewer.user_id, id).await? {
                return Err(AppError::NotFound);
            }
            crate::events::notify(conn, &crate::events::Notice::Session { user: viewer.user_id }).await?;
            Ok(())
        })
        .await?;
        Ok(true)
    }

    /// Always true, whether or not the address is taken (no account enumeration); mails a
    /// verification link carrying ?token=...
    async fn register(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
        full_name: String,
    ) -> async_graphql::Result<bool> {
        flows::register(AppState::from_ctx(ctx), client_ip(ctx), &email, &password, &full_name).await?;
        Ok(true)
    }

    /// Redeems the token from the verification mail.
    async fn verify_email(&self, ctx: &Context<'_>, token: String) -> async_graphql::Result<bool> {
        flows::verify_email(AppState::from_ctx(ctx), &token).await?;
        Ok(true)
    }

    /// Opens a session: the token for `Authorization: Bearer`, and the same session as an
    /// HttpOnly cookie for browsers. Wrong credentials: UNAUTHENTICATED, whether or not the
    /// address has an account; right ones on an unverified account: EMAIL_NOT_VERIFIED;
    /// on a blocked one: FORBIDDEN; too many failures: RATE_LIMITED (`extensions.retryAfter`).
    async fn login(&self, ctx: &Context<'_>, email: String, password: String) -> async_graphql::Result<AuthPayload> {
        let state = AppState::from_ctx(ctx);
        let (token, user) = flows::login(state, client_ip(ctx), &email, &password).await?;
        ctx.append_http_header(SET_COOKIE_HEADER, cookie::session_cookie(state.config(), &token));
        Ok(AuthPayload {
            token,
            user: User(user),
        })
    }

    /// Ends the current session; its token stops working.
    async fn logout(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let viewer = viewer(ctx)?;
        let session = viewer.session_id().ok_or_else(|| {
            AppError::bad_input("token", "an API key has no session to end; revoke it with revokeApiKey")
        })?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        conn.transaction::<_, AppError, _>(async |conn| {
            model::delete_session(conn, session).await?;
            // Sockets signed in with this session, on every instance, close.
            crate::events::notify(conn, &crate::events::Notice::Session { user: viewer.user_id }).await?;
            Ok(())
        })
        .await?;
        ctx.append_http_header(
            SET_COOKIE_HEADER,
            cookie::clearing_cookie(AppState::from_ctx(ctx).config()),
        );
        Ok(true)
    }

    /// Always true, with the same answer whether or not the address has an account; mails
    /// a link carrying ?token=... (single use, RESET_TOKEN_TTL) when it has one.
    async fn request_password_reset(&self, ctx: &Context<'_>, email: String) -> async_graphql::Result<bool> {
        flows::request_password_reset(AppState::from_ctx(ctx), client_ip(ctx), &email).await?;
        Ok(true)
    }

    /// Sets a new password with the token from the reset mail. Every session of the account
    /// ends and nobody is signed in: log in with the new password.
    async fn reset_password(
        &self,
        ctx: &Context<'_>,
        token: String,
        new_password: String,
    ) -> async_graphql::Result<bool> {
        flows::reset_password(AppState::from_ctx(ctx), &token, &new_password).await?;
        Ok(true)
    }

    /// Always true; mails a fresh verification link when the address has an unverified account.
    async fn resend_verification(&self, ctx: &Context<'_>, email: String) -> async_graphql::Result<bool> {
        flows::resend_verification(AppState::from_ctx(ctx), client_ip(ctx), &email).await?;
        Ok(true)
    }

    /// Needs the current password; every other session of the account ends.
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> async_graphql::Result<bool> {
        let viewer = viewer(ctx)?;
        flows::change_password(AppState::from_ctx(ctx), viewer, &current_password, &new_password).await?;
        Ok(true)
    }

    /// Needs the password. The account's mailings stop, its personal data (and its clients')
    /// is removed; what it sent stays in the statistics, anonymously.
    async fn delete_account(&self, ctx: &Context<'_>, password: String) -> async_graphql::Result<bool> {
        let viewer = viewer(ctx)?;
        let state = AppState::from_ctx(ctx);
        flows::delete_account(state, viewer, &password).await?;
        ctx.append_http_header(SET_COOKIE_HEADER, cookie::clearing_cookie(state.config()));
        Ok(true)
    }

    /// An account usable at once (verified), with any role (ADMIN). With REGISTRATION=closed
    /// this is how accounts are made.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        email: String,
        full_name: String,
        password: String,
        role: Role,
    ) -> async_graphql::Result<User> {
        let user = flows::create_user(AppState::from_ctx(ctx), &email, &full_name, &password, role).await?;
        Ok(User(user))
    }

    /// Blocks (`active: false`) or unblocks an account: a blocked account cannot sign in, its
    /// sessions end and its mailings stop sending. MANAGER: users only; ADMIN: anyone but
    /// themselves.
    #[graphql(guard = "RoleGuard::at_least(Role::Manager)")]
    async fn set_user_active(&self, ctx: &Context<'_>, id: ID, active: bool) -> async_graphql::Result<User> {
        let viewer = viewer(ctx)?;
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let user = moderation::set_user_active(AppState::from_ctx(ctx), viewer, id, active).await?;
        Ok(User(user))
    }

    /// Changes an account's role (ADMIN; never their own; the last active admin stays one).
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn set_user_role(&self, ctx: &Context<'_>, id: ID, role: Role) -> async_graphql::Result<User> {
        let viewer = viewer(ctx)?;
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let user = moderation::set_user_role(AppState::from_ctx(ctx), viewer, id, role).await?;
        Ok(User(user))
    }
}

crate::batch_loader!(
    /// Batches `owner` look-ups into one query per request.
    UserLoader: UserId => model::User, |conn, keys| async {
        Ok(model::find_users(conn, keys).await?.into_iter().map(|u| (u.id, u)).collect())
    }
);
