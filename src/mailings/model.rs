//! The `mailings` table (its audience: `audience`). Reads are scoped in SQL: a user sees their
//! own mailings, managers and admins everyone's; writes are always the owner's.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schedule::{Periodicity, Schedule};
use crate::db::now;
use crate::db::page::{Cursor, Page, PageArgs};
use crate::db::schema::{mailings, runs};
use crate::db::types::{MailingId, MessageId, SenderIdentityId, UserId};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mailings, check_for_backend(Pg))]
pub struct Mailing {
    pub id: MailingId,
    pub owner_id: UserId,
    pub message_id: MessageId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub periodicity: Periodicity,
    pub time_zone: String,
    pub paused: bool,
    pub next_run_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Every live client of the owner (see `audience`).
    pub audience_all: bool,
    /// The audience's segment as the user gave it (see `audience::stored_segment`).
    pub audience_segment: Option<serde_json::Value>,
    /// Who its mail comes from; None: MAIL_FROM through every server.
    pub sender_identity_id: Option<SenderIdentityId>,
    /// When its deliveries may go out (`senders::window::SendingWindow` as JSON).
    pub sending_window: Option<serde_json::Value>,
}

impl Mailing {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id.0,
        }
    }

    pub fn schedule(&self) -> Schedule {
        Schedule {
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            periodicity: self.periodicity,
            time_zone: self.time_zone.parse().unwrap_or(chrono_tz::UTC),
        }
    }

    /// Its sending window; one stored in a shape this version does not read is no window.
    pub fn window(&self) -> Option<crate::senders::window::SendingWindow> {
        self.sending_window
            .as_ref()
            .and_then(|w| serde_json::from_value(w.clone()).ok())
    }
}

/// Where a mailing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// First run still in the future.
    Created,
    /// Inside its window: sending, or waiting for its next run.
    Running,
    /// Window over and last run finished, or completed by hand.
    Completed,
}

/// Whose mailings a reader sees.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    Owner(UserId),
    Everyone,
}

/// Validated fields of a mailing, with the next run computed from its schedule.
#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(table_name = mailings, treat_none_as_null = true)]
pub struct MailingFields {
    pub message_id: MessageId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub periodicity: Periodicity,
    pub time_zone: String,
    pub next_run_at: Option<DateTime<Utc>>,
    pub sender_identity_id: Option<SenderIdentityId>,
    pub sending_window: Option<serde_json::Value>,
}

fn visible(scope: Scope, status: Option<Status>) -> mailings::BoxedQuery<'static, Pg> {
    let mut query = mailings::table.filter(mailings::deleted_at.is_null()).into_boxed();
    if let Scope::Owner(owner) = scope {
        query = query.filter(mailings::owner_id.eq(owner));
    }
    let started = diesel::dsl::exists(runs::table.filter(runs::mailing_id.eq(mailings::id)));
    match status {
        None => query,
        Some(Status::Completed) => query.filter(mailings::completed_at.is_not_null()),
        Some(Status::Running) => query.filter(mailings::completed_at.is_null().and(started)),
        Some(Status::Created) => query.filter(mailings::completed_at.is_null().and(diesel::dsl::not(started))),
    }
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    scope: Scope,
    status: Option<Status>,
    args: PageArgs,
) -> QueryResult<Page<Mailing>> {
    let total = visible(scope, status).count().get_result(conn).await?;
    let rows = crate::keyset_page!(visible(scope, status), mailings, args)
        .select(Mailing::as_select())
        .load(conn)
        .await?;
    Ok(Page { rows, total })
}

pub async fn find(conn: &mut AsyncPgConnection, scope: Scope, id: MailingId) -> QueryResult<Option<Mailing>> {
    visible(scope, None)
        .filter(mailings::id.eq(id))
        .select(Mailing::as_select())
        .first(conn)
        .await
        .optional()
}

/// Mailings by id whatever their state (for loaders behind an ownership check).
pub async fn find_by_ids(conn: &mut AsyncPgConnection, ids: &[MailingId]) -> QueryResult<Vec<Mailing>> {
    mailings::table
        .filter(mailings::id.eq_any(ids))
        .select(Mailing::as_select())
        .load(conn)
        .await
}

pub async fn create(conn: &mut AsyncPgConnection, owner: UserId, fields: &MailingFields) -> QueryResult<Mailing> {
    diesel::insert_into(mailings::table)
        .values((mailings::owner_id.eq(owner), fields))
        .returning(Mailing::as_returning())
        .get_result(conn)
        .await
}

/// Updates a live mailing of `owner` (not its audience: `audience::save`); None when there
/// is none with this id.
pub async fn update(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    id: MailingId,
    fields: &MailingFields,
) -> QueryResult<Option<Mailing>> {
    let updated: Option<Mailing> = diesel::update(mailings::table)
        .filter(
            mailings::id
                .eq(id)
                .and(mailings::owner_id.eq(owner))
                .and(mailings::deleted_at.is_null()),
        )
        .set((fields, mailings::updated_at.eq(now())))
        .returning(Mailing::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    Ok(updated)
}

/// Makes the mailing's deliveries that wait without having been tried (for a sending
/// window's opening) due now, and the slices of its runs, so the dispatcher routes them by
/// the window as it is now.
pub async fn recheck_waiting(conn: &mut AsyncPgConnection, id: MailingId) -> QueryResult<usize> {
    let slices = diesel::sql_query(
        "UPDATE run_slices SET next_attempt_at = now() \
         WHERE mailing_id = $1 AND lease_owner IS NULL AND next_attempt_at > now()",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .execute(conn)
    .await?;
    let own = diesel::sql_query(
        "UPDATE deliveries SET next_attempt_at = now(), updated_at = now() \
         WHERE mailing_id = $1 AND status = 'pending' AND lease_owner IS NULL AND slice_id IS NULL AND attempt_count = 0 \
           AND next_attempt_at > now()",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .execute(conn)
    .await?;
    Ok(slices + own)
}

/// Soft delete; the log of what was sent stays.
pub async fn delete(conn: &mut AsyncPgConnection, owner: UserId, id: MailingId) -> QueryResult<bool> {
    let deleted = diesel::update(mailings::table)
        .filter(
            mailings::id
                .eq(id)
                .and(mailings::owner_id.eq(owner))
                .and(mailings::deleted_at.is_null()),
        )
        .set((
            mailings::deleted_at.eq(now().nullable()),
            mailings::next_run_at.eq(None::<DateTime<Utc>>),
            mailings::updated_at.eq(now()),
        ))
        .execute(conn)
        .await?;
    Ok(deleted == 1)
}

/// The time of the latest run started, if any.
pub async fn last_run_at(conn: &mut AsyncPgConnection, mailing_id: MailingId) -> QueryResult<Option<DateTime<Utc>>> {
    runs::table
        .filter(runs::mailing_id.eq(mailing_id))
        .select(diesel::dsl::max(runs::run_at))
        .first(conn)
        .await
}

/// Of `ids`, the mailings that have started a run.
pub async fn started(conn: &mut AsyncPgConnection, ids: &[MailingId]) -> QueryResult<Vec<MailingId>> {
    runs::table
        .filter(runs::mailing_id.eq_any(ids))
        .select(runs::mailing_id)
        .distinct()
        .load(conn)
        .await
}

/// Pauses or resumes a live mailing; None when there is none with this id.
pub async fn set_paused(conn: &mut AsyncPgConnection, id: MailingId, paused: bool) -> QueryResult<Option<Mailing>> {
    diesel::update(mailings::table)
        .filter(mailings::id.eq(id).and(mailings::deleted_at.is_null()))
        .set((mailings::paused.eq(paused), mailings::updated_at.eq(now())))
        .returning(Mailing::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Stops a mailing for good: no further run starts.
pub async fn complete(conn: &mut AsyncPgConnection, id: MailingId) -> QueryResult<Option<Mailing>> {
    diesel::update(mailings::table)
        .filter(mailings::id.eq(id).and(mailings::deleted_at.is_null()))
        .set((
            mailings::completed_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >("coalesce(completed_at, now())")),
            mailings::next_run_at.eq(None::<DateTime<Utc>>),
            mailings::updated_at.eq(now()),
        ))
        .returning(Mailing::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Completes every live mailing of `owner` (the account is being deleted), locking them in
/// id order, the order the dispatchers and `deliveries::model::cancel_pending` take them.
pub async fn complete_all_of(conn: &mut AsyncPgConnection, owner: UserId) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE mailings SET completed_at = now(), next_run_at = NULL, updated_at = now() \
         WHERE id IN (SELECT id FROM mailings WHERE owner_id = $1 AND deleted_at IS NULL AND completed_at IS NULL \
                      ORDER BY id FOR NO KEY UPDATE)",
    )
    .bind::<diesel::sql_types::Uuid, _>(owner)
    .execute(conn)
    .await
}
