//! SMTP servers and sender identities in the GraphQL API: admins manage both; every user
//! lists the identities allowed for them and picks one per mailing.

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::model::{self, IdentityFields, ServerFields};
use crate::accounts::auth::RoleGuard;
use crate::accounts::role::Role;
use crate::accounts::viewer;
use crate::app::AppState;
use crate::db::types::{SenderIdentityId, SmtpServerId, UserId};
use crate::error::{AppError, AppResult};
use crate::graphql::ids::parse_id;
use crate::mail::smtp::SmtpTarget;
use crate::validate;

/// Sends per window; each absent one is no limit.
#[derive(Debug, Clone, Default, SimpleObject, InputObject)]
#[graphql(input_name = "RateLimitsInput")]
pub struct RateLimits {
    pub per_second: Option<i32>,
    pub per_minute: Option<i32>,
    pub per_hour: Option<i32>,
    pub per_day: Option<i32>,
}

/// A mail server deliveries may go through.
pub struct SmtpServer(pub model::SmtpServer);

#[Object]
impl SmtpServer {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// From the URL; the credentials are never returned.
    async fn host(&self) -> &str {
        &self.0.host
    }

    async fn max_connections(&self) -> i32 {
        self.0.max_connections
    }

    /// Lower goes first.
    async fn priority(&self) -> i32 {
        self.0.priority
    }

    /// Shared by every instance.
    async fn limits(&self) -> RateLimits {
        RateLimits {
            per_second: self.0.per_second,
            per_minute: self.0.per_minute,
            per_hour: self.0.per_hour,
            per_day: self.0.per_day,
        }
    }

    /// An instance's circuit breaker for this server is open: it failed at the connection
    /// level repeatedly, and deliveries go to the next server until a probe gets through.
    async fn breaker_open(&self) -> bool {
        self.0.breaker_open_until.is_some_and(|until| until > Utc::now())
    }

    /// The server each instance's SMTP_URL (or outbox) stands for; its URL is not in the
    /// database and it cannot be deleted.
    async fn builtin(&self) -> bool {
        self.0.builtin
    }

    /// Whether its URL carries a user and password (stored sealed).
    async fn has_credentials(&self) -> bool {
        self.0.url.as_deref().is_some_and(super::secrets::is_sealed)
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(Debug, InputObject)]
pub struct SmtpServerInput {
    pub name: String,
    /// smtp://, smtps://, with user:pass@; required on create, omitted on update keeps it.
    pub url: Option<String>,
    /// Default 8.
    pub max_connections: Option<i32>,
    /// Default 100; lower goes first.
    pub priority: Option<i32>,
    pub limits: Option<RateLimits>,
}

impl SmtpServerInput {
    fn validate(&self, state: &AppState, builtin: bool, creating: bool) -> AppResult<ServerFields> {
        let name = validate::required_line("input.name", &self.name, 100)?;
        let (url, host) = match self.url.as_deref().map(str::trim) {
            Some(_) if builtin => {
                return Err(AppError::bad_input(
                    "input.url",
                    "the built-in server's URL is each instance's SMTP_URL",
                ));
            }
            None | Some("") if creating => return Err(AppError::bad_input("input.url", "required")),
            None | Some("") => (None, None),
            Some(url) => {
                let (stored, host) = stored_url(state, url)?;
                (Some(stored), Some(host))
            }
        };
        let max_connections = self.max_connections.unwrap_or(8);
        if !(1..=1000).contains(&max_connections) {
            return Err(AppError::bad_input("input.maxConnections", "must be 1-1000"));
        }
        let priority = self.priority.unwrap_or(100);
        if !(0..=100_000).contains(&priority) {
            return Err(AppError::bad_input("input.priority", "must be 0-100000"));
        }
        let limits = self.limits.clone().unwrap_or_default();
        for (field, value) in [
            ("perSecond", limits.per_second),
            ("perMinute", limits.per_minute),
            ("perHour", limits.per_hour),
            ("perDay", limits.per_day),
        ] {
            if value.is_some_and(|v| !(1..=100_000_000).contains(&v)) {
                return Err(AppError::bad_input(
                    format!("input.limits.{field}"),
                    "must be 1-100000000, or absent for no limit",
                ));
            }
        }
        Ok(ServerFields {
            name,
            url,
            host,
            max_connections,
            priority,
            per_second: limits.per_second,
            per_minute: limits.per_minute,
            per_hour: limits.per_hour,
            per_day: limits.per_day,
        })
    }
}

/// The URL as stored (sealed when it carries credentials) and its host.
fn stored_url(state: &AppState, url: &str) -> AppResult<(String, String)> {
    let parsed = url::Url::parse(url).map_err(|e| AppError::bad_input("input.url", format!("not a URL: {e}")))?;
    let target = SmtpTarget::from_url(&parsed).map_err(|e| AppError::bad_input("input.url", e))?;
    let has_credentials = !parsed.username().is_empty() || parsed.password().is_some();
    if !has_credentials {
        return Ok((parsed.to_string(), target.host));
    }
    let key = state.config().senders.credentials_key.as_ref().ok_or_else(|| {
        AppError::bad_input(
            "input.url",
            "set CREDENTIALS_KEY on the server to store credentials (they are kept sealed)",
        )
    })?;
    Ok((key.seal("smtp_servers.url", parsed.as_str()), target.host))
}

/// Who mail comes from, and which servers may carry it.
pub struct SenderIdentity(pub model::SenderIdentity);

#[Object]
impl SenderIdentity {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The display name in From.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// The address in From.
    async fn email(&self) -> &str {
        &self.0.email
    }

    async fn reply_to(&self) -> Option<&str> {
        self.0.reply_to.as_deref()
    }

    async fn dkim_domain(&self) -> Option<&str> {
        self.0.dkim_domain.as_deref()
    }

    async fn dkim_selector(&self) -> Option<&str> {
        self.0.dkim_selector.as_deref()
    }

    /// The servers that may carry its mail, by priority.
    async fn smtp_servers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<SmtpServer>> {
        let servers = ctx
            .data_unchecked::<DataLoader<IdentityServersLoader>>()
            .load_one(self.0.id)
            .await?
            .unwrap_or_default();
        Ok(servers.into_iter().map(SmtpServer).collect())
    }

    /// Every user may use it.
    async fn allow_everyone(&self) -> bool {
        self.0.allow_everyone
    }

    /// ADMIN: the users allowed to use it besides `allowEveryone` (empty for others).
    async fn allowed_user_ids(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ID>> {
        if viewer(ctx)?.role != Role::Admin {
            return Ok(Vec::new());
        }
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let users = model::users_of(&mut conn, &[self.0.id]).await?;
        Ok(users
            .get(&self.0.id)
            .into_iter()
            .flatten()
            .map(|u| ID(u.to_string()))
            .collect())
    }
}

crate::batch_loader!(
    /// `SenderIdentity.smtpServers`, batched per request.
    IdentityServersLoader: SenderIdentityId => Vec<model::SmtpServer>, |conn, keys| model::servers_of(conn, keys)
);

crate::batch_loader!(
    /// `Mailing.senderIdentity`, batched per request (deleted identities left out).
    SenderIdentityLoader: SenderIdentityId => model::SenderIdentity, |conn, keys| model::identities_by_id(conn, keys)
);

crate::batch_loader!(
    /// `Attempt.smtpServer`, batched per request (deleted servers included).
    SmtpServerLoader: SmtpServerId => model::SmtpServer, |conn, keys| model::servers_by_id(conn, keys)
);

#[derive(Debug, InputObject)]
pub struct SenderIdentityInput {
    pub name: String,
    pub email: String,
    pub reply_to: Option<String>,
    pub smtp_server_ids: Vec<ID>,
    /// DKIM for this identity's mail: all three together; an empty dkimDomain removes it;
    /// omitted on update keeps it. The key is PEM (RSA 2048+ or Ed25519), stored sealed.
    pub dkim_domain: Option<String>,
    pub dkim_selector: Option<String>,
    pub dkim_private_key: Option<String>,
    /// Every user may use it (default false: admins and `allowedUserIds`).
    pub allow_everyone: Option<bool>,
    /// The users who may use it; omitted on update keeps them.
    pub allowed_user_ids: Option<Vec<ID>>,
}

impl SenderIdentityInput {
    async fn validate(
        &self,
        state: &AppState,
        conn: &mut diesel_async::AsyncPgConnection,
        creating: bool,
    ) -> AppResult<IdentityFields> {
        let name = validate::required_line("input.name", &self.name, 100)?;
        let email = validate::email("input.email", &self.email)?;
        // The From the dispatcher builds from it must take the address as it is.
        email
            .parse::<lettre::Address>()
            .map_err(|e| AppError::bad_input("input.email", format!("not an address the mail builder takes: {e}")))?;
        let reply_to = match self.reply_to.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(r) => Some(validate::email("input.replyTo", r)?),
        };
        let dkim = self.dkim(state, creating)?;
        let mut server_ids = Vec::new();
        for id in &self.smtp_server_ids {
            let server: SmtpServerId = parse_id(id)
                .ok_or_else(|| AppError::bad_input("input.smtpServerIds", format!("no server {}", id.0)))?;
            server_ids.push(server);
        }
        let known = model::servers(conn).await?;
        if let Some(missing) = server_ids.iter().find(|s| !known.iter().any(|k| k.id == **s)) {
            return Err(AppError::bad_input(
                "input.smtpServerIds",
                format!("no server {missing}"),
            ));
        }
        if server_ids.is_empty() {
            return Err(AppError::bad_input("input.smtpServerIds", "choose at least one server"));
        }
        let user_ids = match &self.allowed_user_ids {
            None => None,
            Some(ids) => {
                let mut users = Vec::new();
                for id in ids {
                    let user: UserId = parse_id(id)
                        .ok_or_else(|| AppError::bad_input("input.allowedUserIds", format!("no user {}", id.0)))?;
                    users.push(user);
                }
                let found = crate::accounts::model::find_users(conn, &users).await?;
                if let Some(missing) = users.iter().find(|u| !found.iter().any(|f| f.id == **u)) {
                    return Err(AppError::bad_input(
                        "input.allowedUserIds",
                        format!("no user {missing}"),
                    ));
                }
                Some(users)
            }
        };
        Ok(IdentityFields {
            name,
            email,
            reply_to,
            dkim,
            allow_everyone: self.allow_everyone.unwrap_or(false),
            server_ids,
            user_ids,
        })
    }

    /// The DKIM part of the input: Some(Some(..)) to set, Some(None) to remove, None to keep.
    fn dkim(&self, state: &AppState, creating: bool) -> AppResult<Option<Option<(String, String, String)>>> {
        let domain = self.dkim_domain.as_deref().map(str::trim);
        let selector = self.dkim_selector.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let key = self
            .dkim_private_key
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        match (domain, selector, key) {
            (None, None, None) => Ok(if creating { Some(None) } else { None }),
            (Some(""), _, _) => Ok(Some(None)),
            (Some(domain), Some(selector), Some(pem)) => {
                if !domain.contains('.') || domain.chars().any(|c| c.is_whitespace() || c.is_control() || c == '@') {
                    return Err(AppError::bad_input("input.dkimDomain", "not a domain name"));
                }
                if !selector
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
                {
                    return Err(AppError::bad_input(
                        "input.dkimSelector",
                        "letters, digits, '-', '_' and '.' only",
                    ));
                }
                crate::mail::dkim::DkimKey::from_pem(pem)
                    .map_err(|e| AppError::bad_input("input.dkimPrivateKey", e))?;
                let sealing = state.config().senders.credentials_key.as_ref().ok_or_else(|| {
                    AppError::bad_input(
                        "input.dkimPrivateKey",
                        "set CREDENTIALS_KEY on the server to store DKIM keys (they are kept sealed)",
                    )
                })?;
                Ok(Some(Some((
                    domain.to_ascii_lowercase(),
                    selector.to_owned(),
                    sealing.seal("sender_identities.dkim_key", pem),
                ))))
            }
            (_, None, _) => Err(AppError::bad_input("input.dkimSelector", "required with dkimDomain")),
            (_, _, None) => Err(AppError::bad_input("input.dkimPrivateKey", "required with dkimDomain")),
            (None, _, _) => Err(AppError::bad_input("input.dkimDomain", "required with dkimSelector")),
        }
    }
}

fn server_id(id: &ID) -> AppResult<SmtpServerId> {
    parse_id(id).ok_or(AppError::NotFound)
}

fn identity_id(id: &ID) -> AppResult<SenderIdentityId> {
    parse_id(id).ok_or(AppError::NotFound)
}

#[derive(Default)]
pub struct SendersQuery;

#[Object]
impl SendersQuery {
    /// ADMIN: the live SMTP servers, by priority.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn smtp_servers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<SmtpServer>> {
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        Ok(model::servers(&mut conn).await?.into_iter().map(SmtpServer).collect())
    }

    /// The identities you may send as (ADMIN: all).
    async fn sender_identities(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<SenderIdentity>> {
        let viewer = viewer(ctx)?;
        let user = (viewer.role != Role::Admin).then_some(viewer.user_id);
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        Ok(model::identities(&mut conn, user)
            .await?
            .into_iter()
            .map(SenderIdentity)
            .collect())
    }
}

#[derive(Default)]
pub struct SendersMutation;

const NAME_TAKEN: (&str, &str, &str) = ("smtp_servers_name_key", "input.name", "another server has this name");

#[Object]
impl SendersMutation {
    /// ADMIN.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn create_smtp_server(&self, ctx: &Context<'_>, input: SmtpServerInput) -> async_graphql::Result<SmtpServer> {
        let state = AppState::from_ctx(ctx);
        let fields = input.validate(state, false, true)?;
        let mut conn = state.conn().await?;
        let server = model::create_server(&mut conn, &fields)
            .await
            .map_err(|e| crate::error::on_unique_violation(e, NAME_TAKEN.0, NAME_TAKEN.1, NAME_TAKEN.2))?;
        Ok(SmtpServer(server))
    }

    /// ADMIN. The built-in server takes everything but a URL.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn update_smtp_server(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: SmtpServerInput,
    ) -> async_graphql::Result<SmtpServer> {
        let state = AppState::from_ctx(ctx);
        let id = server_id(&id)?;
        let fields = input.validate(state, id == model::BUILTIN, false)?;
        let mut conn = state.conn().await?;
        let server = model::update_server(&mut conn, id, &fields)
            .await
            .map_err(|e| crate::error::on_unique_violation(e, NAME_TAKEN.0, NAME_TAKEN.1, NAME_TAKEN.2))?
            .ok_or(AppError::NotFound)?;
        Ok(SmtpServer(server))
    }

    /// ADMIN. Identities stop using it; the attempt log still names it. The built-in server
    /// stays (set its priority instead).
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn delete_smtp_server(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let id = server_id(&id)?;
        if id == model::BUILTIN {
            return Err(AppError::bad_input("id", "the built-in server (SMTP_URL) cannot be deleted").into());
        }
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        if !model::delete_server(&mut conn, id).await? {
            return Err(AppError::NotFound.into());
        }
        Ok(true)
    }

    /// ADMIN.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn create_sender_identity(
        &self,
        ctx: &Context<'_>,
        input: SenderIdentityInput,
    ) -> async_graphql::Result<SenderIdentity> {
        let state = AppState::from_ctx(ctx);
        let mut conn = state.conn().await?;
        let fields = input.validate(state, &mut conn, true).await?;
        let saved = model::save_identity(&mut conn, None, &fields)
            .await?
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("a created identity is missing")))?;
        Ok(SenderIdentity(saved))
    }

    /// ADMIN.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn update_sender_identity(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: SenderIdentityInput,
    ) -> async_graphql::Result<SenderIdentity> {
        let state = AppState::from_ctx(ctx);
        let id = identity_id(&id)?;
        let mut conn = state.conn().await?;
        let fields = input.validate(state, &mut conn, false).await?;
        let saved = model::save_identity(&mut conn, Some(id), &fields)
            .await?
            .ok_or(AppError::NotFound)?;
        Ok(SenderIdentity(saved))
    }

    /// ADMIN. Refused (CONFLICT) while live mailings send as it.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn delete_sender_identity(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let id = identity_id(&id)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let using = model::mailings_using(&mut conn, id).await?;
        if using > 0 {
            return Err(AppError::conflict(
                Some("id"),
                format!("{using} mailing(s) send as this identity; choose another for them first"),
            )
            .into());
        }
        if !model::delete_identity(&mut conn, id).await? {
            return Err(AppError::NotFound.into());
        }
        Ok(true)
    }
}
