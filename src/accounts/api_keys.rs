//! API keys: credentials for GraphQL client apps, which should hold neither a password nor
//! a browser session. A key is `mw_` and 256 random bits (base64url), shown once when it is
//! made and stored only as its SHA-256, like a session token; it signs in wherever a session
//! token does (`Authorization: Bearer`, a WebSocket's `connection_init`). A READ key runs
//! queries and subscriptions only; a WRITE key mutations too. Keys are managed with a
//! session (an app cannot mint itself more keys); blocking the owner or deleting the account
//! ends them.

use async_graphql::{Enum, ID, SimpleObject};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::model::User;
use crate::db::now;
use crate::db::schema::{api_keys, users};
use crate::db::types::{ApiKeyId, UserId};

/// What a recognisable prefix is for: a leaked key can be found in logs and repositories.
pub const PREFIX: &str = "mw_";
/// Most keys one account may have.
pub const MAX_PER_USER: i64 = 20;

/// What a key may do.
#[derive(
    Enum, Copy, Clone, Debug, PartialEq, Eq, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum ApiKeyScope {
    /// Queries and subscriptions.
    Read,
    /// Mutations too.
    Write,
}

crate::text_enum!(ApiKeyScope { Read => "read", Write => "write" });

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub struct Row {
    pub id: ApiKeyId,
    pub name: String,
    pub scope: ApiKeyScope,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A key as its owner sees it (never its secret).
#[derive(SimpleObject)]
pub struct ApiKey {
    pub id: ID,
    pub name: String,
    pub scope: ApiKeyScope,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl TryFrom<Row> for ApiKey {
    type Error = diesel::result::Error;

    fn try_from(row: Row) -> QueryResult<ApiKey> {
        Ok(ApiKey {
            id: ID(row.id.to_string()),
            name: row.name,
            scope: row.scope,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
        })
    }
}

/// A key just made, with its secret: shown only here.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    pub api_key: ApiKey,
    pub secret: String,
}

/// Whether a bearer token is an API key rather than a session token.
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// A new secret and the hash to store for it.
pub fn new_secret() -> (String, Vec<u8>) {
    let (random, _) = super::tokens::new_session_token();
    let secret = format!("{PREFIX}{random}");
    let hash = super::tokens::hash_token(&secret);
    (secret, hash)
}

pub async fn create(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    name: &str,
    scope: ApiKeyScope,
    secret_hash: &[u8],
) -> QueryResult<Row> {
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::user_id.eq(user_id),
            api_keys::name.eq(name),
            api_keys::scope.eq(scope),
            api_keys::secret_hash.eq(secret_hash),
        ))
        .returning(Row::as_returning())
        .get_result(conn)
        .await
}

pub async fn count(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<i64> {
    api_keys::table
        .filter(api_keys::user_id.eq(user_id))
        .count()
        .get_result(conn)
        .await
}

/// The user's keys, newest first.
pub async fn list(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<Vec<Row>> {
    api_keys::table
        .filter(api_keys::user_id.eq(user_id))
        .order((api_keys::created_at.desc(), api_keys::id.desc()))
        .select(Row::as_select())
        .load(conn)
        .await
}

/// Deletes one of the user's keys; whether there was one.
pub async fn revoke(conn: &mut AsyncPgConnection, user_id: UserId, id: ApiKeyId) -> QueryResult<bool> {
    let deleted = diesel::delete(api_keys::table.filter(api_keys::id.eq(id).and(api_keys::user_id.eq(user_id))))
        .execute(conn)
        .await?;
    Ok(deleted == 1)
}

/// Ends every key of the user (blocking).
pub async fn revoke_all(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<usize> {
    diesel::delete(api_keys::table.filter(api_keys::user_id.eq(user_id)))
        .execute(conn)
        .await
}

/// The key a secret's hash names, with its account, if the account is live and not
/// blocked; marks it used (at most one write a minute).
pub async fn authenticate(
    conn: &mut AsyncPgConnection,
    secret_hash: &[u8],
) -> QueryResult<Option<(ApiKeyId, ApiKeyScope, User)>> {
    let found: Option<(ApiKeyId, ApiKeyScope, User)> = api_keys::table
        .inner_join(users::table)
        .filter(api_keys::secret_hash.eq(secret_hash))
        .filter(users::is_active.eq(true).and(users::deleted_at.is_null()))
        .select((api_keys::id, api_keys::scope, User::as_select()))
        .first(conn)
        .await
        .optional()?;
    let Some((id, scope, user)) = found else {
        return Ok(None);
    };
    diesel::update(api_keys::table.filter(api_keys::id.eq(id)))
        .filter(
            api_keys::last_used_at
                .is_null()
                .or(api_keys::last_used_at.lt(diesel::dsl::sql("now() - interval '1 minute'"))),
        )
        .set(api_keys::last_used_at.eq(now().nullable()))
        .execute(conn)
        .await?;
    Ok(Some((id, scope, user)))
}

/// The account of a key that still exists, if the account is live and not blocked (what a
/// socket signed in with the key may do now).
pub async fn key_user(conn: &mut AsyncPgConnection, id: ApiKeyId) -> QueryResult<Option<(ApiKeyScope, User)>> {
    api_keys::table
        .inner_join(users::table)
        .filter(api_keys::id.eq(id))
        .filter(users::is_active.eq(true).and(users::deleted_at.is_null()))
        .select((api_keys::scope, User::as_select()))
        .first(conn)
        .await
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hashed() {
        let (a, hash) = new_secret();
        let (b, _) = new_secret();
        assert!(a.starts_with("mw_") && is_api_key(&a));
        assert_ne!(a, b);
        assert!(a.len() > 40);
        assert_eq!(hash, crate::accounts::tokens::hash_token(&a));
        assert!(!is_api_key("some-session-token"));
    }
}
