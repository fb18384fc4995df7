//! The `users`, `sessions` and `email_tokens` tables and their queries.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::role::Role;
use crate::db::page::{Cursor, Page, PageArgs};
use crate::db::schema::{email_tokens, sessions, users};
use crate::db::types::{SessionId, UserId};
use crate::db::{now, now_plus};

/// A row of `users`, as the API shows it (the password hash is never loaded with it).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub full_name: String,
    pub role: Role,
    pub is_active: bool,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub full_name: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
    pub email_verified_at: Option<DateTime<Utc>>,
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// A live (not deleted) account by id.
pub async fn find_user(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<User>> {
    users::table
        .filter(users::id.eq(id).and(users::deleted_at.is_null()))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Live accounts by id, for the DataLoader.
pub async fn find_users(conn: &mut AsyncPgConnection, ids: &[UserId]) -> QueryResult<Vec<User>> {
    users::table
        .filter(users::id.eq_any(ids))
        .select(User::as_select())
        .load(conn)
        .await
}

/// A live account by e-mail (any case), with its password hash.
pub async fn find_by_email(conn: &mut AsyncPgConnection, email: &str) -> QueryResult<Option<(User, Option<String>)>> {
    users::table
        .filter(
            lower(users::email)
                .eq(email.to_lowercase())
                .and(users::deleted_at.is_null()),
        )
        .select((User::as_select(), users::password_hash))
        .first(conn)
        .await
        .optional()
}

pub async fn insert_user(conn: &mut AsyncPgConnection, user: &NewUser<'_>) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(user)
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

pub async fn mark_verified(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<()> {
    diesel::update(users::table.filter(users::id.eq(user_id).and(users::email_verified_at.is_null())))
        .set((
            users::email_verified_at.eq(now().nullable()),
            users::updated_at.eq(now()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Starts a session; only the token's hash is stored.
pub async fn create_session(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    token_hash: &[u8],
    ttl: Duration,
) -> QueryResult<SessionId> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::user_id.eq(user_id),
            sessions::token_hash.eq(token_hash),
            sessions::expires_at.eq(now_plus(ttl)),
        ))
        .returning(sessions::id)
        .get_result(conn)
        .await
}

/// A session a token opened.
pub struct Authenticated {
    pub session_id: SessionId,
    pub user: User,
    /// The expiry moved forward (a browser's cookie should follow).
    pub slid: bool,
}

/// The session a token opens, with its account, if the session has not expired and the
/// account is live and not blocked. Slides the expiry (at most one write a minute).
pub async fn authenticate(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    ttl: Duration,
) -> QueryResult<Option<Authenticated>> {
    let found: Option<(SessionId, User)> = sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(token_hash))
        .filter(sessions::expires_at.gt(now()))
        .filter(users::is_active.eq(true).and(users::deleted_at.is_null()))
        .select((sessions::id, User::as_select()))
        .first(conn)
        .await
        .optional()?;
    let Some((session_id, user)) = found else {
        return Ok(None);
    };
    let slid = diesel::update(sessions::table.filter(sessions::id.eq(session_id)))
        .filter(sessions::last_used_at.lt(diesel::dsl::sql("now() - interval '1 minute'")))
        .set((sessions::last_used_at.eq(now()), sessions::expires_at.eq(now_plus(ttl))))
        .execute(conn)
        .await?;
    Ok(Some(Authenticated {
        session_id,
        user,
        slid: slid > 0,
    }))
}

/// The account of a session that has not expired, if the account is live and not blocked
/// (what a socket that signed in with the session may do now).
pub async fn session_user(conn: &mut AsyncPgConnection, session_id: SessionId) -> QueryResult<Option<User>> {
    sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq(session_id))
        .filter(sessions::expires_at.gt(now()))
        .filter(users::is_active.eq(true).and(users::deleted_at.is_null()))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn delete_session(conn: &mut AsyncPgConnection, session_id: SessionId) -> QueryResult<()> {
    diesel::delete(sessions::table.filter(sessions::id.eq(session_id)))
        .execute(conn)
        .await?;
    Ok(())
}

/// What an e-mailed token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
}

crate::text_enum!(TokenPurpose { VerifyEmail => "verify_email", ResetPassword => "reset_password" });

pub async fn create_email_token(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    purpose: TokenPurpose,
    token_hash: &[u8],
    ttl: Duration,
) -> QueryResult<()> {
    diesel::insert_into(email_tokens::table)
        .values((
            email_tokens::user_id.eq(user_id),
            email_tokens::purpose.eq(purpose),
            email_tokens::token_hash.eq(token_hash),
            email_tokens::expires_at.eq(now_plus(ttl)),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Uses up a token: returns its account if the token exists, has this purpose, has not
/// expired and was not used before. One statement, so two redeemers cannot both win.
pub async fn redeem_email_token(
    conn: &mut AsyncPgConnection,
    purpose: TokenPurpose,
    token_hash: &[u8],
) -> QueryResult<Option<UserId>> {
    diesel::update(email_tokens::table)
        .filter(email_tokens::token_hash.eq(token_hash))
        .filter(email_tokens::purpose.eq(purpose))
        .filter(email_tokens::used_at.is_null())
        .filter(email_tokens::expires_at.gt(now()))
        .set(email_tokens::used_at.eq(now().nullable()))
        .returning(email_tokens::user_id)
        .get_result(conn)
        .await
        .optional()
}

/// The account a token would redeem, without using it up (to check the new password
/// against the account before redeeming).
pub async fn email_token_user(
    conn: &mut AsyncPgConnection,
    purpose: TokenPurpose,
    token_hash: &[u8],
) -> QueryResult<Option<User>> {
    email_tokens::table
        .inner_join(users::table)
        .filter(email_tokens::token_hash.eq(token_hash))
        .filter(email_tokens::purpose.eq(purpose))
        .filter(email_tokens::used_at.is_null())
        .filter(email_tokens::expires_at.gt(now()))
        .filter(users::deleted_at.is_null())
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Locks the account's row until the transaction ends.
pub async fn lock_user(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<()> {
    users::table
        .filter(users::id.eq(user_id))
        .select(users::id)
        .for_update()
        .first::<UserId>(conn)
        .await?;
    Ok(())
}

/// Tokens of `purpose` the account could still redeem.
pub async fn outstanding_tokens(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    purpose: TokenPurpose,
) -> QueryResult<i64> {
    email_tokens::table
        .filter(email_tokens::user_id.eq(user_id))
        .filter(email_tokens::purpose.eq(purpose))
        .filter(email_tokens::used_at.is_null())
        .filter(email_tokens::expires_at.gt(now()))
        .count()
        .get_result(conn)
        .await
}

/// The password hash of a live account (None: deleted, or no password).
pub async fn password_hash(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<Option<String>> {
    users::table
        .filter(users::id.eq(user_id).and(users::deleted_at.is_null()))
        .select(users::password_hash)
        .first::<Option<String>>(conn)
        .await
        .optional()
        .map(Option::flatten)
}

pub async fn set_password(conn: &mut AsyncPgConnection, user_id: UserId, hash: &str) -> QueryResult<()> {
    diesel::update(users::table.filter(users::id.eq(user_id)))
        .set((users::password_hash.eq(hash), users::updated_at.eq(now())))
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends every session of the account except `keep` (the one making the change).
pub async fn delete_sessions(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    keep: Option<SessionId>,
) -> QueryResult<usize> {
    let mut query = diesel::delete(sessions::table)
        .filter(sessions::user_id.eq(user_id))
        .into_boxed();
    if let Some(keep) = keep {
        query = query.filter(sessions::id.ne(keep));
    }
    query.execute(conn).await
}

/// Every live account, newest first (for managers and admins).
pub async fn list_users(conn: &mut AsyncPgConnection, args: PageArgs) -> QueryResult<Page<User>> {
    let live = || users::table.filter(users::deleted_at.is_null()).into_boxed();
    let total = live().count().get_result(conn).await?;
    let rows = crate::keyset_page!(live(), users, args)
        .select(User::as_select())
        .load(conn)
        .await?;
    Ok(Page { rows, total })
}

impl User {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id.0,
        }
    }
}

pub async fn set_active(conn: &mut AsyncPgConnection, user_id: UserId, active: bool) -> QueryResult<User> {
    diesel::update(users::table.filter(users::id.eq(user_id).and(users::deleted_at.is_null())))
        .set((users::is_active.eq(active), users::updated_at.eq(now())))
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

pub async fn set_role(conn: &mut AsyncPgConnection, user_id: UserId, role: Role) -> QueryResult<User> {
    diesel::update(users::table.filter(users::id.eq(user_id).and(users::deleted_at.is_null())))
        .set((users::role.eq(role), users::updated_at.eq(now())))
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

/// Active admins other than `except`.
pub async fn other_active_admins(conn: &mut AsyncPgConnection, except: UserId) -> QueryResult<i64> {
    users::table
        .filter(users::role.eq(Role::Admin))
        .filter(users::is_active.eq(true).and(users::deleted_at.is_null()))
        .filter(users::id.ne(except))
        .count()
        .get_result(conn)
        .await
}

/// Removes the personal data of a deleted account: its address, name and password, its
/// clients' addresses, names and comments (also as copied into deliveries and attempts),
/// its messages. Rows stay, so counts and statistics stay right, anonymous.
pub async fn anonymise(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<()> {
    use diesel::sql_types::Uuid as SqlUuid;
    for statement in [
        "UPDATE users SET email = 'deleted-' || id || '@invalid', full_name = 'Deleted user', password_hash = NULL, \
         is_active = false, deleted_at = now(), updated_at = now() WHERE id = $1",
        "UPDATE clients SET email = 'deleted-' || id || '@invalid', full_name = '', comment = '', \
         deleted_at = coalesce(deleted_at, now()), updated_at = now() WHERE owner_id = $1",
        "UPDATE deliveries SET email = '', full_name = '' WHERE owner_id = $1",
        "UPDATE attempts SET email = '' WHERE owner_id = $1",
        "UPDATE messages SET subject = '', body = '', deleted_at = coalesce(deleted_at, now()), updated_at = now() \
         WHERE owner_id = $1",
        "UPDATE runs r SET subject = '', body = '' FROM mailings m WHERE m.id = r.mailing_id AND m.owner_id = $1",
        "DELETE FROM sessions WHERE user_id = $1",
        "DELETE FROM email_tokens WHERE user_id = $1",
        crate::jobs::account_mail::FORGET_USER,
    ] {
        diesel::sql_query(statement)
            .bind::<SqlUuid, _>(user_id)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Deletes expired sessions and e-mail tokens that can no longer be redeemed.
pub async fn sweep(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    let sessions = diesel::delete(sessions::table.filter(sessions::expires_at.lt(now())))
        .execute(conn)
        .await?;
    let tokens = diesel::delete(email_tokens::table.filter(email_tokens::expires_at.lt(now())))
        .execute(conn)
        .await?;
    Ok(sessions + tokens)
}
