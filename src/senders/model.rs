//! The `smtp_servers` and `sender_identities` tables and their queries. Servers and
//! identities are soft-deleted (the attempt log names servers for good).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::dsl::now;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{mailings, sender_identities, sender_identity_servers, sender_identity_users, smtp_servers};
use crate::db::types::{SenderIdentityId, SmtpServerId, UserId};

/// The built-in server: each instance's own SMTP_URL (or outbox).
pub const BUILTIN: SmtpServerId = SmtpServerId(uuid::Uuid::from_u128(1));

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = smtp_servers)]
pub struct SmtpServer {
    pub id: SmtpServerId,
    pub name: String,
    /// Plain without credentials, or sealed (`secrets`); None for the built-in server.
    pub url: Option<String>,
    pub host: String,
    pub builtin: bool,
    pub max_connections: i32,
    pub priority: i32,
    pub per_second: Option<i32>,
    pub per_minute: Option<i32>,
    pub per_hour: Option<i32>,
    pub per_day: Option<i32>,
    pub breaker_open_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SmtpServer {
    /// (window in seconds, limit) for each limit set.
    pub fn windows(&self) -> Vec<(i32, i32)> {
        [
            (1, self.per_second),
            (60, self.per_minute),
            (3600, self.per_hour),
            (86_400, self.per_day),
        ]
        .into_iter()
        .filter_map(|(secs, limit)| limit.map(|l| (secs, l)))
        .collect()
    }
}

/// A server as saved by `createSmtpServer` / `updateSmtpServer`. `url` None keeps it.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = smtp_servers)]
pub struct ServerFields {
    pub name: String,
    pub url: Option<String>,
    pub host: Option<String>,
    pub max_connections: i32,
    pub priority: i32,
    #[diesel(treat_none_as_null = true)]
    pub per_second: Option<i32>,
    #[diesel(treat_none_as_null = true)]
    pub per_minute: Option<i32>,
    #[diesel(treat_none_as_null = true)]
    pub per_hour: Option<i32>,
    #[diesel(treat_none_as_null = true)]
    pub per_day: Option<i32>,
}

/// Live servers, by priority then name.
pub async fn servers(conn: &mut AsyncPgConnection) -> QueryResult<Vec<SmtpServer>> {
    smtp_servers::table
        .filter(smtp_servers::deleted_at.is_null())
        .order((smtp_servers::priority, smtp_servers::name))
        .select(SmtpServer::as_select())
        .load(conn)
        .await
}

/// Servers by id, deleted ones included (the attempt log names them).
pub async fn servers_by_id(
    conn: &mut AsyncPgConnection,
    ids: &[SmtpServerId],
) -> QueryResult<HashMap<SmtpServerId, SmtpServer>> {
    let rows: Vec<SmtpServer> = smtp_servers::table
        .filter(smtp_servers::id.eq_any(ids))
        .select(SmtpServer::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|s| (s.id, s)).collect())
}

pub async fn create_server(conn: &mut AsyncPgConnection, fields: &ServerFields) -> QueryResult<SmtpServer> {
    diesel::insert_into(smtp_servers::table)
        .values((
            smtp_servers::name.eq(&fields.name),
            smtp_servers::url.eq(&fields.url),
            smtp_servers::host.eq(fields.host.as_deref().unwrap_or_default()),
            smtp_servers::max_connections.eq(fields.max_connections),
            smtp_servers::priority.eq(fields.priority),
            smtp_servers::per_second.eq(fields.per_second),
            smtp_servers::per_minute.eq(fields.per_minute),
            smtp_servers::per_hour.eq(fields.per_hour),
            smtp_servers::per_day.eq(fields.per_day),
        ))
        .returning(SmtpServer::as_returning())
        .get_result(conn)
        .await
}

/// None when there is no live server with this id.
pub async fn update_server(
    conn: &mut AsyncPgConnection,
    id: SmtpServerId,
    fields: &ServerFields,
) -> QueryResult<Option<SmtpServer>> {
    diesel::update(smtp_servers::table.filter(smtp_servers::id.eq(id).and(smtp_servers::deleted_at.is_null())))
        .set((fields, smtp_servers::updated_at.eq(now)))
        .returning(SmtpServer::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Soft delete; identities stop using it. False when there was no such live server.
pub async fn delete_server(conn: &mut AsyncPgConnection, id: SmtpServerId) -> QueryResult<bool> {
    let deleted = diesel::update(
        smtp_servers::table.filter(
            smtp_servers::id
                .eq(id)
                .and(smtp_servers::deleted_at.is_null())
                .and(smtp_servers::builtin.eq(false)),
        ),
    )
    .set((smtp_servers::deleted_at.eq(now), smtp_servers::updated_at.eq(now)))
    .execute(conn)
    .await?;
    diesel::delete(sender_identity_servers::table.filter(sender_identity_servers::server_id.eq(id)))
        .execute(conn)
        .await?;
    Ok(deleted > 0)
}

/// What the built-in server shows as its host: this instance's SMTP_URL host, or "outbox".
pub async fn set_builtin_host(conn: &mut AsyncPgConnection, host: &str) -> QueryResult<usize> {
    diesel::update(smtp_servers::table.filter(smtp_servers::id.eq(BUILTIN).and(smtp_servers::host.ne(host))))
        .set(smtp_servers::host.eq(host))
        .execute(conn)
        .await
}

/// An instance's breaker for the server opened (until when) or closed (None).
pub async fn set_breaker(
    conn: &mut AsyncPgConnection,
    id: SmtpServerId,
    open_until: Option<DateTime<Utc>>,
) -> QueryResult<usize> {
    diesel::update(smtp_servers::table.filter(smtp_servers::id.eq(id)))
        .set(smtp_servers::breaker_open_until.eq(open_until))
        .execute(conn)
        .await
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sender_identities)]
pub struct SenderIdentity {
    pub id: SenderIdentityId,
    pub name: String,
    pub email: String,
    pub reply_to: Option<String>,
    pub dkim_domain: Option<String>,
    pub dkim_selector: Option<String>,
    /// Sealed (`secrets`).
    pub dkim_key: Option<String>,
    pub allow_everyone: bool,
    pub created_at: DateTime<Utc>,
}

/// An identity as saved. `dkim` None on update keeps the identity's DKIM as it is;
/// Some(None) removes it.
#[derive(Debug, Clone)]
pub struct IdentityFields {
    pub name: String,
    pub email: String,
    pub reply_to: Option<String>,
    /// (domain, selector, sealed key)
    pub dkim: Option<Option<(String, String, String)>>,
    pub allow_everyone: bool,
    pub server_ids: Vec<SmtpServerId>,
    /// None keeps them (on update).
    pub user_ids: Option<Vec<UserId>>,
}

fn live_identities() -> sender_identities::BoxedQuery<'static, diesel::pg::Pg> {
    sender_identities::table
        .filter(sender_identities::deleted_at.is_null())
        .into_boxed()
}

/// Live identities `user` may use (None: all, for admins).
fn usable_by(user: Option<UserId>) -> sender_identities::BoxedQuery<'static, diesel::pg::Pg> {
    let query = live_identities();
    match user {
        None => query,
        Some(user) => {
            let allowed = sender_identity_users::table
                .filter(sender_identity_users::user_id.eq(user))
                .select(sender_identity_users::identity_id);
            query.filter(
                sender_identities::allow_everyone
                    .eq(true)
                    .or(sender_identities::id.eq_any(allowed)),
            )
        }
    }
}

/// The identities `user` may use (None: all, for admins), by name.
pub async fn identities(conn: &mut AsyncPgConnection, user: Option<UserId>) -> QueryResult<Vec<SenderIdentity>> {
    usable_by(user)
        .order((sender_identities::name, sender_identities::id))
        .select(SenderIdentity::as_select())
        .load(conn)
        .await
}

/// The live identity with this id if `user` may use it (None: any, for admins).
pub async fn identity(
    conn: &mut AsyncPgConnection,
    user: Option<UserId>,
    id: SenderIdentityId,
) -> QueryResult<Option<SenderIdentity>> {
    usable_by(user)
        .filter(sender_identities::id.eq(id))
        .select(SenderIdentity::as_select())
        .first(conn)
        .await
        .optional()
}

/// Identities by id, deleted ones left out.
pub async fn identities_by_id(
    conn: &mut AsyncPgConnection,
    ids: &[SenderIdentityId],
) -> QueryResult<HashMap<SenderIdentityId, SenderIdentity>> {
    let rows: Vec<SenderIdentity> = live_identities()
        .filter(sender_identities::id.eq_any(ids.to_vec()))
        .select(SenderIdentity::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|i| (i.id, i)).collect())
}

/// The live servers each identity may use, by priority.
pub async fn servers_of(
    conn: &mut AsyncPgConnection,
    ids: &[SenderIdentityId],
) -> QueryResult<HashMap<SenderIdentityId, Vec<SmtpServer>>> {
    let rows: Vec<(SenderIdentityId, SmtpServer)> = sender_identity_servers::table
        .inner_join(smtp_servers::table)
        .filter(sender_identity_servers::identity_id.eq_any(ids))
        .filter(smtp_servers::deleted_at.is_null())
        .order((smtp_servers::priority, smtp_servers::name))
        .select((sender_identity_servers::identity_id, SmtpServer::as_select()))
        .load(conn)
        .await?;
    let mut out: HashMap<SenderIdentityId, Vec<SmtpServer>> = HashMap::new();
    for (identity, server) in rows {
        out.entry(identity).or_default().push(server);
    }
    Ok(out)
}

/// The users each identity is allowed for (besides `allow_everyone`).
pub async fn users_of(
    conn: &mut AsyncPgConnection,
    ids: &[SenderIdentityId],
) -> QueryResult<HashMap<SenderIdentityId, Vec<UserId>>> {
    let rows: Vec<(SenderIdentityId, UserId)> = sender_identity_users::table
        .filter(sender_identity_users::identity_id.eq_any(ids))
        .select((sender_identity_users::identity_id, sender_identity_users::user_id))
        .load(conn)
        .await?;
    let mut out: HashMap<SenderIdentityId, Vec<UserId>> = HashMap::new();
    for (identity, user) in rows {
        out.entry(identity).or_default().push(user);
    }
    Ok(out)
}

/// Creates (id None) or updates an identity with its servers and users; None when the id
/// names no live identity.
pub async fn save_identity(
    conn: &mut AsyncPgConnection,
    id: Option<SenderIdentityId>,
    fields: &IdentityFields,
) -> QueryResult<Option<SenderIdentity>> {
    let row = (
        sender_identities::name.eq(&fields.name),
        sender_identities::email.eq(&fields.email),
        sender_identities::reply_to.eq(&fields.reply_to),
        sender_identities::allow_everyone.eq(fields.allow_everyone),
        sender_identities::updated_at.eq(now),
    );
    let saved: Option<SenderIdentity> = match id {
        None => Some(
            diesel::insert_into(sender_identities::table)
                .values(row)
                .returning(SenderIdentity::as_returning())
                .get_result(conn)
                .await?,
        ),
        Some(id) => diesel::update(
            sender_identities::table.filter(
                sender_identities::id
                    .eq(id)
                    .and(sender_identities::deleted_at.is_null()),
            ),
        )
        .set(row)
        .returning(SenderIdentity::as_returning())
        .get_result(conn)
        .await
        .optional()?,
    };
    let Some(saved) = saved else { return Ok(None) };
    if let Some(dkim) = &fields.dkim {
        let (domain, selector, key) = match dkim {
            Some((d, s, k)) => (Some(d), Some(s), Some(k)),
            None => (None, None, None),
        };
        diesel::update(sender_identities::table.filter(sender_identities::id.eq(saved.id)))
            .set((
                sender_identities::dkim_domain.eq(domain),
                sender_identities::dkim_selector.eq(selector),
                sender_identities::dkim_key.eq(key),
            ))
            .execute(conn)
            .await?;
    }
    diesel::delete(sender_identity_servers::table.filter(sender_identity_servers::identity_id.eq(saved.id)))
        .execute(conn)
        .await?;
    let servers: Vec<_> = fields
        .server_ids
        .iter()
        .map(|s| {
            (
                sender_identity_servers::identity_id.eq(saved.id),
                sender_identity_servers::server_id.eq(*s),
            )
        })
        .collect();
    diesel::insert_into(sender_identity_servers::table)
        .values(servers)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if let Some(users) = &fields.user_ids {
        diesel::delete(sender_identity_users::table.filter(sender_identity_users::identity_id.eq(saved.id)))
            .execute(conn)
            .await?;
        let users: Vec<_> = users
            .iter()
            .map(|u| {
                (
                    sender_identity_users::identity_id.eq(saved.id),
                    sender_identity_users::user_id.eq(*u),
                )
            })
            .collect();
        diesel::insert_into(sender_identity_users::table)
            .values(users)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    Ok(identities_by_id(conn, &[saved.id]).await?.remove(&saved.id))
}

/// Live mailings (not deleted, not completed) that send as this identity.
pub async fn mailings_using(conn: &mut AsyncPgConnection, id: SenderIdentityId) -> QueryResult<i64> {
    mailings::table
        .filter(mailings::sender_identity_id.eq(id))
        .filter(mailings::deleted_at.is_null())
        .filter(mailings::completed_at.is_null())
        .count()
        .get_result(conn)
        .await
}

/// Soft delete. False when there was no such live identity.
pub async fn delete_identity(conn: &mut AsyncPgConnection, id: SenderIdentityId) -> QueryResult<bool> {
    let deleted = diesel::update(
        sender_identities::table.filter(
            sender_identities::id
                .eq(id)
                .and(sender_identities::deleted_at.is_null()),
        ),
    )
    .set((
        sender_identities::deleted_at.eq(now),
        sender_identities::updated_at.eq(now),
    ))
    .execute(conn)
    .await?;
    Ok(deleted > 0)
}
