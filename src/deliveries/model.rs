//! Runs, deliveries and attempts as users read them, and the cancellations and retries
//! that other domains' mutations cause. The dispatcher (src/dispatch) writes these tables.

use std::collections::HashMap;

use async_graphql::Enum;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::page::{Cursor, Page, PageArgs};
use crate::db::schema::{attempts, deliveries, runs};
use crate::db::types::{AttemptId, ClientId, DeliveryId, MailingId, RunId, UserId};

#[derive(
    Enum, Copy, Clone, Debug, PartialEq, Eq, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = Text)]
pub enum DeliveryStatus {
    /// Queued, possibly waiting for a retry.
    Pending,
    /// Claimed by an instance, SMTP conversation in progress.
    Sending,
    /// The mail server accepted the message.
    Sent,
    /// Permanent failure, or attempts exhausted.
    Failed,
    /// Outcome unknown (e.g. connection lost after the final dot): never resent automatically.
    Unknown,
    /// Never sent: mailing completed or deleted, client removed, deleted or unsubscribed, owner blocked.
    Cancelled,
}

// SENDING is never stored: a delivery under way is stored PENDING with `sending_since`
// set (see `Delivery::shown_status`); the column's CHECK refuses it.
crate::text_enum!(DeliveryStatus {
    Pending => "pending",
    Sending => "sending",
    Sent => "sent",
    Failed => "failed",
    Unknown => "unknown",
    Cancelled => "cancelled",
});

#[derive(
    Enum, Copy, Clone, Debug, PartialEq, Eq, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = Text)]
pub enum RunStatus {
    /// Deliveries expanded, some still PENDING or SENDING.
    Running,
    /// Nothing pending any more.
    Done,
    /// Superseded by a later run that fell due before this one was sent (downtime, pause).
    Skipped,
    /// The mailing was completed or deleted before the run finished.
    Cancelled,
}

crate::text_enum!(RunStatus { Running => "running", Done => "done", Skipped => "skipped", Cancelled => "cancelled" });

#[derive(
    Enum, Copy, Clone, Debug, PartialEq, Eq, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = Text)]
pub enum AttemptStatus {
    Success,
    /// 4xx reply, refused/reset connection, timeout or garbage before the end of DATA.
    TemporaryFailure,
    /// 5xx reply.
    PermanentFailure,
    /// Lost after the message was handed over.
    Unknown,
    /// A bounce report about a message the server had taken (a DSN, a provider's notice).
    Bounced,
    /// The recipient marked the message as spam (an ARF report, a provider's notice).
    Complained,
}

crate::text_enum!(AttemptStatus {
    Success => "success",
    TemporaryFailure => "temporary_failure",
    PermanentFailure => "permanent_failure",
    Unknown => "unknown",
    Bounced => "bounced",
    Complained => "complained",
});

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = runs, check_for_backend(Pg))]
pub struct Run {
    pub id: RunId,
    pub mailing_id: MailingId,
    pub run_at: DateTime<Utc>,
    pub status: RunStatus,
    /// Clients of the audience left out because their address is suppressed.
    pub suppressed: i32,
}

impl Run {
    /// Runs are listed by when they fall, not when their row was written.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.run_at,
            id: self.id.0,
        }
    }
}

/// Deliveries of one run by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: i64,
    pub sent: i64,
    pub failed: i64,
    pub unknown: i64,
    /// PENDING and SENDING.
    pub pending: i64,
    pub cancelled: i64,
}

impl Counts {
    fn add(&mut self, status: DeliveryStatus, n: i64) {
        self.total += n;
        match status {
            DeliveryStatus::Sent => self.sent += n,
            DeliveryStatus::Failed => self.failed += n,
            DeliveryStatus::Unknown => self.unknown += n,
            DeliveryStatus::Pending | DeliveryStatus::Sending => self.pending += n,
            DeliveryStatus::Cancelled => self.cancelled += n,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = deliveries, check_for_backend(Pg))]
pub struct Delivery {
    pub id: DeliveryId,
    pub run_id: RunId,
    pub mailing_id: MailingId,
    pub owner_id: UserId,
    pub client_id: ClientId,
    pub email: String,
    /// As stored: a delivery whose exchange is under way is stored 'pending' with
    /// `sending_since` set (see `shown_status`).
    pub status: DeliveryStatus,
    pub sending_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Delivery {
    /// The status users see: 'sending' while the SMTP exchange is under way. (The
    /// dispatcher marks that in a column no index reads, so the mark rewrites the row in
    /// place; see migration 000011.)
    pub fn shown_status(&self) -> DeliveryStatus {
        match self.sending_since {
            Some(_) if self.status == DeliveryStatus::Pending => DeliveryStatus::Sending,
            _ => self.status,
        }
    }

    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id.0,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = attempts, check_for_backend(Pg))]
pub struct Attempt {
    pub id: AttemptId,
    pub delivery_id: DeliveryId,
    pub mailing_id: MailingId,
    pub owner_id: UserId,
    pub email: String,
    pub attempted_at: DateTime<Utc>,
    pub status: AttemptStatus,
    pub server_response: Option<String>,
    /// The server that carried it (None: before servers were recorded, or none carried it).
    pub smtp_server_id: Option<crate::db::types::SmtpServerId>,
}

impl Attempt {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.attempted_at,
            id: self.id.0,
        }
    }
}

/// A mailing's totals over all its runs.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub deliveries: Counts,
    pub attempts: i64,
    pub last_attempt_at: Option<DateTime<Utc>>,
}

pub async fn runs_page(conn: &mut AsyncPgConnection, mailing_id: MailingId, args: PageArgs) -> QueryResult<Page<Run>> {
    let total = runs::table
        .filter(runs::mailing_id.eq(mailing_id))
        .count()
        .get_result(conn)
        .await?;
    let mut query = runs::table.filter(runs::mailing_id.eq(mailing_id)).into_boxed();
    if let Some(after) = args.after {
        query = query.filter(
            runs::run_at
                .lt(after.created_at)
                .or(runs::run_at.eq(after.created_at).and(runs::id.lt(after.id))),
        );
    }
    let rows = query
        .order((runs::run_at.desc(), runs::id.desc()))
        .limit(args.limit())
        .select(Run::as_select())
        .load(conn)
        .await?;
    Ok(Page { rows, total })
}

#[derive(QueryableByName)]
struct StatusCount {
    #[diesel(sql_type = SqlUuid)]
    key: Uuid,
    #[diesel(sql_type = Text)]
    status: DeliveryStatus,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Delivery counts per run, for several runs in one query.
pub async fn run_counts(conn: &mut AsyncPgConnection, run_ids: &[RunId]) -> QueryResult<HashMap<RunId, Counts>> {
    let rows: Vec<StatusCount> = diesel::sql_query(
        "SELECT run_id AS key, status, count(*) AS n FROM deliveries WHERE run_id = ANY($1) GROUP BY run_id, status",
    )
    .bind::<Array<SqlUuid>, _>(run_ids)
    .load(conn)
    .await?;
    let mut counts: HashMap<RunId, Counts> = run_ids.iter().map(|id| (*id, Counts::default())).collect();
    for row in rows {
        counts.entry(RunId(row.key)).or_default().add(row.status, row.n);
    }
    Ok(counts)
}

/// Totals per mailing, for several mailings in two queries.
pub async fn mailing_stats(
    conn: &mut AsyncPgConnection,
    mailing_ids: &[MailingId],
) -> QueryResult<HashMap<MailingId, Stats>> {
    let rows: Vec<StatusCount> = diesel::sql_query(
        "SELECT mailing_id AS key, status, count(*) AS n FROM deliveries WHERE mailing_id = ANY($1) GROUP BY mailing_id, status",
    )
    .bind::<Array<SqlUuid>, _>(mailing_ids)
    .load(conn)
    .await?;
    #[derive(QueryableByName)]
    struct AttemptTotals {
        #[diesel(sql_type = SqlUuid)]
        mailing_id: MailingId,
        #[diesel(sql_type = BigInt)]
        n: i64,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        last: Option<DateTime<Utc>>,
    }
    let totals: Vec<AttemptTotals> = diesel::sql_query(
        "SELECT mailing_id, count(*) AS n, max(attempted_at) AS last FROM attempts WHERE mailing_id = ANY($1) GROUP BY mailing_id",
    )
    .bind::<Array<SqlUuid>, _>(mailing_ids)
    .load(conn)
    .await?;
    let mut stats: HashMap<MailingId, Stats> = mailing_ids.iter().map(|id| (*id, Stats::default())).collect();
    for row in rows {
        stats
            .entry(MailingId(row.key))
            .or_default()
            .deliveries
            .add(row.status, row.n);
    }
    for total in totals {
        let entry = stats.entry(total.mailing_id).or_default();
        entry.attempts = total.n;
        entry.last_attempt_at = total.last;
    }
    Ok(stats)
}

pub async fn deliveries_page(
    conn: &mut AsyncPgConnection,
    mailing_id: MailingId,
    status: Option<DeliveryStatus>,
    args: PageArgs,
) -> QueryResult<Page<Delivery>> {
    let filtered = || {
        let query = deliveries::table
            .filter(deliveries::mailing_id.eq(mailing_id))
            .into_boxed();
        match status {
            None => query,
            Some(DeliveryStatus::Sending) => query
                .filter(deliveries::status.eq(DeliveryStatus::Pending))
                .filter(deliveries::sending_since.is_not_null()),
            Some(DeliveryStatus::Pending) => query
                .filter(deliveries::status.eq(DeliveryStatus::Pending))
                .filter(deliveries::sending_since.is_null()),
            Some(stored) => query.filter(deliveries::status.eq(stored)),
        }
    };
    let total = filtered().count().get_result(conn).await?;
    let rows = crate::keyset_page!(filtered(), deliveries, args)
        .select(Delivery::as_select())
        .load(conn)
        .await?;
    Ok(Page { rows, total })
}

pub async fn deliveries_by_ids(conn: &mut AsyncPgConnection, ids: &[DeliveryId]) -> QueryResult<Vec<Delivery>> {
    deliveries::table
        .filter(deliveries::id.eq_any(ids))
        .select(Delivery::as_select())
        .load(conn)
        .await
}

/// When each delivery's run falls.
pub async fn run_times(conn: &mut AsyncPgConnection, run_ids: &[RunId]) -> QueryResult<HashMap<RunId, DateTime<Utc>>> {
    let rows: Vec<(RunId, DateTime<Utc>)> = runs::table
        .filter(runs::id.eq_any(run_ids))
        .select((runs::id, runs::run_at))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Whose attempts a reader sees, and which.
pub struct AttemptFilter {
    /// None: every owner's (managers and admins).
    pub owner: Option<UserId>,
    pub mailing: Option<MailingId>,
    pub status: Option<AttemptStatus>,
}

fn attempts_filtered(filter: &AttemptFilter) -> attempts::BoxedQuery<'static, Pg> {
    let mut query = attempts::table.into_boxed();
    if let Some(owner) = filter.owner {
        query = query.filter(attempts::owner_id.eq(owner));
    }
    if let Some(mailing) = filter.mailing {
        query = query.filter(attempts::mailing_id.eq(mailing));
    }
    if let Some(status) = filter.status {
        query = query.filter(attempts::status.eq(status));
    }
    query
}

/// The mailing log, newest first.
pub async fn attempts_page(
    conn: &mut AsyncPgConnection,
    filter: &AttemptFilter,
    args: PageArgs,
) -> QueryResult<Page<Attempt>> {
    let total = attempts_filtered(filter).count().get_result(conn).await?;
    let mut query = attempts_filtered(filter);
    if let Some(after) = args.after {
        query = query.filter(
            attempts::attempted_at.lt(after.created_at).or(attempts::attempted_at
                .eq(after.created_at)
                .and(attempts::id.lt(after.id))),
        );
    }
    let rows = query
        .order((attempts::attempted_at.desc(), attempts::id.desc()))
        .limit(args.limit())
        .select(Attempt::as_select())
        .load(conn)
        .await?;
    Ok(Page { rows, total })
}

/// Each delivery's attempts, oldest first.
pub async fn attempts_of(
    conn: &mut AsyncPgConnection,
    delivery_ids: &[DeliveryId],
) -> QueryResult<HashMap<DeliveryId, Vec<Attempt>>> {
    let rows: Vec<Attempt> = attempts::table
        .filter(attempts::delivery_id.eq_any(delivery_ids))
        .order((attempts::attempted_at.asc(), attempts::attempt_number.asc()))
        .select(Attempt::as_select())
        .load(conn)
        .await?;
    let mut grouped: HashMap<DeliveryId, Vec<Attempt>> = delivery_ids.iter().map(|id| (*id, Vec::new())).collect();
    for row in rows {
        grouped.entry(row.delivery_id).or_default().push(row);
    }
    Ok(grouped)
}

/// The attempts some committed groups logged for a mailing (each group's share its
/// transaction time), in the order they were logged.
pub async fn attempts_logged_at(
    conn: &mut AsyncPgConnection,
    mailing_id: MailingId,
    at: &[DateTime<Utc>],
) -> QueryResult<Vec<Attempt>> {
    attempts::table
        .filter(
            attempts::mailing_id
                .eq(mailing_id)
                .and(attempts::attempted_at.eq_any(at)),
        )
        .order((attempts::attempted_at.asc(), attempts::id.asc()))
        .select(Attempt::as_select())
        .load(conn)
        .await
}

/// Which pending deliveries to cancel.
pub enum Cancel<'a> {
    /// Every pending delivery of the mailing (completed or deleted); its running runs too.
    Mailing(MailingId),
    /// Of a mailing, those to clients no longer in it.
    RemovedClients { mailing: MailingId, kept: &'a [ClientId] },
    /// Of a client, everywhere (deleted or unsubscribed).
    Client(ClientId),
    /// Of every mailing of a user (blocked or deleted).
    Owner(UserId),
}

/// Cancels deliveries that have not begun (PENDING, claimed or not). Those already SENDING
/// finish: their mail is on the wire. Returns how many were cancelled. Call it in a
/// transaction: it first locks the mailings it cancels in (FOR NO KEY UPDATE, in id
/// order), which waits for the dispatchers' statements under way on them and holds off the
/// next ones (they lock the mailings FOR SHARE before any delivery, see `dispatch::queue`),
/// so neither holds deliveries the other waits for.
pub async fn cancel_pending(conn: &mut AsyncPgConnection, which: Cancel<'_>) -> QueryResult<usize> {
    let (mailings, key): (&str, Uuid) = match which {
        Cancel::Mailing(mailing) | Cancel::RemovedClients { mailing, .. } => {
            ("SELECT 1 FROM mailings WHERE id = $1 FOR NO KEY UPDATE", mailing.into())
        }
        Cancel::Client(client) => (
            "SELECT 1 FROM mailings m WHERE m.id IN (SELECT r.mailing_id FROM runs r WHERE r.status = 'running' \
                 AND EXISTS (SELECT 1 FROM deliveries d WHERE d.run_id = r.id AND d.client_id = $1)) \
             ORDER BY m.id FOR NO KEY UPDATE",
            client.into(),
        ),
        Cancel::Owner(owner) => (
            "SELECT 1 FROM mailings WHERE owner_id = $1 ORDER BY id FOR NO KEY UPDATE",
            owner.into(),
        ),
    };
    diesel::sql_query(mailings)
        .bind::<SqlUuid, _>(key)
        .execute(conn)
        .await?;
    let set = "UPDATE deliveries d SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, slice_id = NULL, updated_at = now()";
    let base = format!("{set} WHERE status = 'pending' AND sending_since IS NULL AND ");
    let cancelled = match which {
        Cancel::Mailing(mailing) => {
            let n = diesel::sql_query(format!("{base} mailing_id = $1"))
                .bind::<SqlUuid, _>(mailing)
                .execute(conn)
                .await?;
            diesel::sql_query("UPDATE runs SET status = 'cancelled', finished_at = now() WHERE mailing_id = $1 AND status = 'running'")
                .bind::<SqlUuid, _>(mailing)
                .execute(conn)
                .await?;
            // Its slices hold nothing more to send; a leased one goes when its batch ends.
            diesel::sql_query("DELETE FROM run_slices WHERE mailing_id = $1 AND lease_owner IS NULL")
                .bind::<SqlUuid, _>(mailing)
                .execute(conn)
                .await?;
            n
        }
        Cancel::RemovedClients { mailing, kept } => {
            diesel::sql_query(format!("{base} mailing_id = $1 AND client_id <> ALL($2)"))
                .bind::<SqlUuid, _>(mailing)
                .bind::<Array<SqlUuid>, _>(kept)
                .execute(conn)
                .await?
        }
        Cancel::Client(client) => {
            // Pending deliveries belong to running runs only: each is found by the
            // (run_id, client_id) key, so no index on client_id needs writing per delivery.
            // The status test sits in a sub-select so that stale statistics cannot lead the
            // plan to scan a run's pending deliveries instead (see queue::release).
            diesel::sql_query(format!(
                "{set} WHERE d.client_id = $1 AND d.run_id IN (SELECT id FROM runs WHERE status = 'running') \
                 AND (SELECT d.status = 'pending' AND d.sending_since IS NULL)"
            ))
            .bind::<SqlUuid, _>(client)
            .execute(conn)
            .await?
        }
        Cancel::Owner(owner) => {
            // Through the owner's mailings: deliveries have no index on owner_id alone.
            diesel::sql_query(format!(
                "{base} mailing_id IN (SELECT id FROM mailings WHERE owner_id = $1)"
            ))
            .bind::<SqlUuid, _>(owner)
            .execute(conn)
            .await?
        }
    };
    Ok(cancelled)
}

/// Puts a mailing's deliveries in `statuses` back in the queue with a fresh attempt budget
/// (same delivery, so the same Message-ID); their runs are running again.
pub async fn retry(
    conn: &mut AsyncPgConnection,
    mailing_id: MailingId,
    statuses: &[DeliveryStatus],
) -> QueryResult<usize> {
    // The mailing first, as a cancel takes it (see `cancel_pending`).
    diesel::sql_query("SELECT 1 FROM mailings WHERE id = $1 FOR NO KEY UPDATE")
        .bind::<SqlUuid, _>(mailing_id)
        .execute(conn)
        .await?;
    let retried = diesel::sql_query(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = now(), attempts_before_retry = attempt_count, \
             lease_owner = NULL, lease_expires_at = NULL, slice_id = NULL, updated_at = now() \
         WHERE mailing_id = $1 AND status = ANY($2)",
    )
    .bind::<SqlUuid, _>(mailing_id)
    .bind::<Array<Text>, _>(statuses)
    .execute(conn)
    .await?;
    if retried > 0 {
        diesel::sql_query(
            "UPDATE runs SET status = 'running', finished_at = NULL WHERE mailing_id = $1 AND status IN ('done', 'cancelled') \
             AND EXISTS (SELECT 1 FROM deliveries d WHERE d.run_id = runs.id AND d.status = 'pending')",
        )
        .bind::<SqlUuid, _>(mailing_id)
        .execute(conn)
        .await?;
    }
    Ok(retried)
}
