//! The delivery queue in plain SQL: claim with `FOR UPDATE SKIP LOCKED` in a short
//! transaction that sets a lease; mark SENDING just before the SMTP exchange; record the
//! outcome with an update guarded by lease and attempt number (the fencing token); rescue
//! what dead instances held. No transaction or row lock is held during network I/O.
//!
//! Two kinds of lease: a run's deliveries are claimed a slice at a time (`run_slices`, a
//! range of SLICE clients written with the run: one small row leased instead of a row
//! per delivery), and a delivery that left its slice (a retry, a wait for a window or a
//! budget) is claimed on its own with a lease in its row.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::deserialize::QueryableByName;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::types::{ClientId, DeliveryId, MailingId, RunId, SenderIdentityId, SmtpServerId, UserId};
use crate::deliveries::model::{AttemptStatus, DeliveryStatus};
use crate::messages::model::MessageFormat;
use crate::messages::template::Content;

/// A delivery this instance holds a lease on.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    pub id: DeliveryId,
    #[diesel(sql_type = SqlUuid)]
    pub run_id: RunId,
    #[diesel(sql_type = SqlUuid)]
    pub mailing_id: MailingId,
    #[diesel(sql_type = SqlUuid)]
    pub client_id: ClientId,
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(sql_type = Text)]
    pub full_name: String,
    /// This claim's attempt number: the fencing token of the lease.
    #[diesel(sql_type = Integer)]
    pub attempt_count: i32,
    #[diesel(sql_type = Integer)]
    pub attempts_before_retry: i32,
    /// The slice it was claimed with (None: claimed on its own).
    #[diesel(sql_type = Nullable<BigInt>)]
    pub slice_id: Option<i64>,
}

/// The deliveries a run's slice holds at most (the expansion cuts its chunks so).
pub const SLICE: usize = 500;

/// A claimed batch: deliveries, and the slices leased for them.
#[derive(Debug, Default)]
pub struct Batch {
    pub deliveries: Vec<Claimed>,
    pub slices: Vec<SliceClaim>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.deliveries.is_empty()
    }

    pub fn slice_ids(&self) -> Vec<i64> {
        self.slices.iter().map(|s| s.id).collect()
    }
}

/// A slice leased for a batch: `whole` when the batch holds every delivery it had left to
/// send (it is done once they are recorded), otherwise it goes back after the batch.
#[derive(Debug, Clone, Copy)]
pub struct SliceClaim {
    pub id: i64,
    pub whole: bool,
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// The claim of deliveries on their own: $1 lease owner, $2 lease in microseconds, $3 batch size.
pub const CLAIM_SQL: &str = "WITH due AS ( \
             SELECT d.id FROM deliveries d \
             WHERE d.status = 'pending' AND d.lease_owner IS NULL AND d.slice_id IS NULL AND d.next_attempt_at <= now() \
               AND EXISTS (SELECT 1 FROM mailings m JOIN users u ON u.id = m.owner_id \
                           WHERE m.id = d.mailing_id AND NOT m.paused AND m.deleted_at IS NULL AND u.is_active) \
             ORDER BY d.next_attempt_at \
             LIMIT $3 \
             FOR UPDATE OF d SKIP LOCKED) \
         UPDATE deliveries d SET lease_owner = $1, lease_expires_at = now() + $2 * interval '1 microsecond', \
             attempt_count = d.attempt_count + 1, updated_at = now() \
         FROM due WHERE d.id = due.id \
         RETURNING d.id, d.run_id, d.mailing_id, d.client_id, d.email, d.full_name, d.attempt_count, d.attempts_before_retry, \
             NULL::bigint AS slice_id";

/// The claim of slices: $1 lease owner, $2 lease in microseconds, $3 how many.
pub const CLAIM_SLICES_SQL: &str = "UPDATE run_slices s SET lease_owner = $1, lease_expires_at = now() + $2 * interval '1 microsecond' \
         WHERE s.id IN (SELECT x.id FROM run_slices x \
                        WHERE x.lease_owner IS NULL AND x.next_attempt_at <= now() \
                          AND EXISTS (SELECT 1 FROM mailings m JOIN users u ON u.id = m.owner_id \
                                      WHERE m.id = x.mailing_id AND NOT m.paused AND m.deleted_at IS NULL AND u.is_active) \
                        ORDER BY x.next_attempt_at, x.id \
                        LIMIT $3 \
                        FOR UPDATE OF x SKIP LOCKED) \
         RETURNING s.id";

/// The deliveries of claimed slices still to send, through the (run_id, client_id) key: $1
/// the slices, $2 at most how many. The attempt number is the one the mark will count.
pub const SLICE_DELIVERIES_SQL: &str = "WITH ranked AS ( \
             SELECT d.id, d.run_id, d.mailing_id, d.client_id, d.email, d.full_name, d.attempt_count + 1 AS attempt_count, \
                 d.attempts_before_retry, s.id AS slice_id, row_number() OVER (ORDER BY s.id, d.client_id) AS n \
             FROM run_slices s JOIN deliveries d ON d.run_id = s.run_id \
                 AND d.client_id > s.after_client AND d.client_id <= s.through_client \
             WHERE s.id = ANY($1) AND d.slice_id = s.id AND d.status = 'pending' AND d.sending_since IS NULL), \
         counted AS (SELECT *, max(n) OVER (PARTITION BY slice_id) <= $2 AS whole FROM ranked) \
         SELECT id, run_id, mailing_id, client_id, email, full_name, attempt_count, attempts_before_retry, slice_id, whole \
         FROM counted WHERE n <= $2 ORDER BY n";

#[derive(diesel::QueryableByName)]
struct SliceRow {
    #[diesel(embed)]
    claimed: Claimed,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    whole: bool,
}

/// Claims up to `limit` due deliveries of mailings that are neither paused nor deleted,
/// of owners who are not blocked: first those waiting on their own (retries and deferrals,
/// so a large run cannot hold them back), then slices of runs for the rest. The partial
/// indexes on unleased rows keep this cheap however many finished deliveries the table
/// holds. A slice found with nothing left to send (its deliveries cancelled) is deleted.
pub async fn claim(conn: &mut AsyncPgConnection, me: Uuid, lease: Duration, limit: i64) -> diesel::QueryResult<Batch> {
    let mut batch = Batch {
        deliveries: diesel::sql_query(CLAIM_SQL)
            .bind::<SqlUuid, _>(me)
            .bind::<BigInt, _>(micros(lease))
            .bind::<BigInt, _>(limit)
            .load(conn)
            .await?,
        slices: Vec::new(),
    };
    let room = limit - batch.deliveries.len() as i64;
    if room <= 0 {
        return Ok(batch);
    }
    #[derive(diesel::QueryableByName)]
    struct Leased {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let slices: Vec<Leased> = diesel::sql_query(CLAIM_SLICES_SQL)
        .bind::<SqlUuid, _>(me)
        .bind::<BigInt, _>(micros(lease))
        .bind::<BigInt, _>((room + SLICE as i64 - 1) / SLICE as i64)
        .load(conn)
        .await?;
    if slices.is_empty() {
        return Ok(batch);
    }
    let ids: Vec<i64> = slices.iter().map(|s| s.id).collect();
    let rows: Vec<SliceRow> = diesel::sql_query(SLICE_DELIVERIES_SQL)
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<BigInt, _>(room)
        .load(conn)
        .await?;
    let mut whole: HashMap<i64, bool> = HashMap::new();
    for row in rows {
        whole.insert(row.claimed.slice_id.expect("a slice's delivery"), row.whole);
        batch.deliveries.push(row.claimed);
    }
    let empty: Vec<i64> = ids.iter().copied().filter(|id| !whole.contains_key(id)).collect();
    finish_slices(conn, me, &empty, &[]).await?;
    batch.slices = whole.into_iter().map(|(id, whole)| SliceClaim { id, whole }).collect();
    Ok(batch)
}

/// After a batch: its whole slices are done (deleted), the others go back to the queue
/// with what they have left. Only those still ours: a lease lost meanwhile is a rescuer's.
pub async fn finish_slices(
    conn: &mut AsyncPgConnection,
    me: Uuid,
    done: &[i64],
    unfinished: &[i64],
) -> diesel::QueryResult<()> {
    if !done.is_empty() {
        diesel::sql_query("DELETE FROM run_slices WHERE id = ANY($2) AND lease_owner = $1")
            .bind::<SqlUuid, _>(me)
            .bind::<Array<BigInt>, _>(done)
            .execute(conn)
            .await?;
    }
    if !unfinished.is_empty() {
        diesel::sql_query(
            "UPDATE run_slices SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ANY($2) AND lease_owner = $1",
        )
        .bind::<SqlUuid, _>(me)
        .bind::<Array<BigInt>, _>(unfinished)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// A slice's deliveries that are SENDING (marked, not recorded): `s` is the slice's alias.
const SLICE_IN_FLIGHT: &str = "SELECT 1 FROM deliveries d WHERE d.run_id = s.run_id \
         AND d.client_id > s.after_client AND d.client_id <= s.through_client \
         AND d.slice_id = s.id AND d.status = 'pending' AND d.sending_since IS NOT NULL";

/// Locks FOR SHARE, in id order, the mailings of the deliveries `ids`: what every
/// statement that writes a mailing's pending deliveries takes first, so that it and a
/// cancel (which locks the mailings FOR NO KEY UPDATE before any delivery, see
/// `deliveries::model::cancel_pending`) never each hold rows the other waits for; see the
/// migration `mailing_lock_orders_cancels`. Call it in the transaction of the write.
async fn lock_mailings_of(conn: &mut AsyncPgConnection, ids: &[DeliveryId]) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "SELECT 1 FROM mailings m WHERE m.id IN (SELECT d.mailing_id FROM deliveries d WHERE d.id = ANY($1)) \
         ORDER BY m.id FOR SHARE",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives back claimed deliveries whose exchange never began: with `ids`, those claimed on
/// their own (a slice's wait in the slice, which goes back after the batch, see
/// `finish_slices`); with `None` all of ours, slices included.
///
/// Statements that name deliveries by id keep their other conditions in a sub-select no
/// index can answer, so the plan reads the ids by primary key however stale the statistics
/// are (a run expanded a moment ago otherwise gets a scan of a partial index holding every
/// pending delivery); see also the `dispatch_advance` migration.
pub async fn release(conn: &mut AsyncPgConnection, me: Uuid, ids: Option<&[DeliveryId]>) -> diesel::QueryResult<usize> {
    let ids: Vec<DeliveryId> = match ids {
        Some(ids) => ids.to_vec(),
        None => {
            // Slices with a send under way stay leased: when the lease runs out the rescuer
            // logs those sends UNKNOWN (a slice without a lease never has one under way).
            diesel::sql_query(format!(
                "UPDATE run_slices s SET lease_owner = NULL, lease_expires_at = NULL \
                 WHERE s.lease_owner = $1 AND NOT EXISTS ({SLICE_IN_FLIGHT})"
            ))
            .bind::<SqlUuid, _>(me)
            .execute(conn)
            .await?;
            #[derive(diesel::QueryableByName)]
            struct Id {
                #[diesel(sql_type = SqlUuid)]
                id: DeliveryId,
            }
            let ours: Vec<Id> = diesel::sql_query(
                "SELECT id FROM deliveries WHERE lease_owner = $1 AND status = 'pending' AND sending_since IS NULL",
            )
            .bind::<SqlUuid, _>(me)
            .load(conn)
            .await?;
            ours.into_iter().map(|row| row.id).collect()
        }
    };
    if ids.is_empty() {
        return Ok(0);
    }
    conn.transaction(async |conn| {
        lock_mailings_of(conn, &ids).await?;
        diesel::sql_query(
            "UPDATE deliveries d SET lease_owner = NULL, lease_expires_at = NULL, updated_at = now() \
             WHERE d.id = ANY($2) AND (SELECT d.lease_owner = $1 AND d.status = 'pending' AND d.sending_since IS NULL)",
        )
        .bind::<SqlUuid, _>(me)
        .bind::<Array<SqlUuid>, _>(&ids)
        .execute(conn)
        .await
    })
    .await
}

/// Gives back claimed deliveries that may not go out yet (their sending window is closed,
/// their servers' or domain's budget is spent), each due again after its wait, on its own
/// (out of its slice). A claim on its own counted an attempt, which is taken back: no
/// attempt was made.
pub async fn defer(
    conn: &mut AsyncPgConnection,
    me: Uuid,
    deferred: &[(DeliveryId, Duration)],
) -> diesel::QueryResult<usize> {
    let ids: Vec<DeliveryId> = deferred.iter().map(|(id, _)| *id).collect();
    let waits: Vec<i64> = deferred.iter().map(|(_, wait)| micros(*wait)).collect();
    conn.transaction(async |conn| {
        lock_mailings_of(conn, &ids).await?;
        diesel::sql_query(
            "UPDATE deliveries d SET lease_owner = NULL, lease_expires_at = NULL, slice_id = NULL, \
                 attempt_count = CASE WHEN d.slice_id IS NULL THEN d.attempt_count - 1 ELSE d.attempt_count END, \
                 next_attempt_at = now() + w.wait * interval '1 microsecond', updated_at = now() \
             FROM unnest($2::uuid[], $3::bigint[]) AS w(id, wait) \
             WHERE d.id = w.id AND (SELECT (d.lease_owner = $1 \
                                            OR d.slice_id IN (SELECT s.id FROM run_slices s WHERE s.lease_owner = $1)) \
                                       AND d.status = 'pending' AND d.sending_since IS NULL)",
        )
        .bind::<SqlUuid, _>(me)
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<BigInt>, _>(&waits)
        .execute(conn)
        .await
    })
    .await
}

/// Keeps the leases of the deliveries this instance has in hand alive, and of their
/// slices. Only those: a claim it lost track of (a failed step) must expire and be rescued.
pub async fn extend_leases(
    conn: &mut AsyncPgConnection,
    me: Uuid,
    ids: &[DeliveryId],
    lease: Duration,
) -> diesel::QueryResult<usize> {
    let slices = diesel::sql_query(
        "UPDATE run_slices SET lease_expires_at = now() + $2 * interval '1 microsecond' \
         WHERE id IN (SELECT slice_id FROM deliveries WHERE id = ANY($3)) AND lease_owner = $1",
    )
    .bind::<SqlUuid, _>(me)
    .bind::<BigInt, _>(micros(lease))
    .bind::<Array<SqlUuid>, _>(ids)
    .execute(conn)
    .await?;
    let own = conn
        .transaction(async |conn| {
            lock_mailings_of(conn, ids).await?;
            diesel::sql_query(
                "UPDATE deliveries SET lease_expires_at = now() + $2 * interval '1 microsecond' \
                 WHERE id = ANY($3) AND (SELECT lease_owner = $1 AND status = 'pending')",
            )
            .bind::<SqlUuid, _>(me)
            .bind::<BigInt, _>(micros(lease))
            .bind::<Array<SqlUuid>, _>(ids)
            .execute(conn)
            .await
        })
        .await?;
    Ok(slices + own)
}

/// What one exchange did to one delivery.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: DeliveryId,
    /// The delivery's run and mailing, for the notice to subscribers.
    pub run_id: RunId,
    pub mailing_id: MailingId,
    pub attempt: i32,
    /// PENDING (retry later), SENT, FAILED or UNKNOWN.
    pub delivery_status: DeliveryStatus,
    pub retry_in: Duration,
    pub attempt_status: AttemptStatus,
    pub response: Option<String>,
    /// A bounce to record once the outcome is (see `outcome::Verdict::bounce`).
    pub bounce: Option<crate::deliverability::bounces::BounceKind>,
    /// The server that carried the attempt.
    pub smtp_server: Option<SmtpServerId>,
}

/// What `advance` did: the next group's deliveries that may be sent, and the transaction
/// time the group's attempts were logged at (what the notices to subscribers carry).
pub struct Advanced {
    pub started: Vec<DeliveryId>,
    pub logged_at: DateTime<Utc>,
}

/// Records one group's outcomes (logging an attempt each) and marks the next group
/// SENDING, in one statement (the `dispatch_advance` function of the migrations): one
/// round trip per group, and never more than one group SENDING at a time. The next group's
/// deliveries that may be sent are those still ours (their own lease, or one of `slices`),
/// not begun, mailing not paused. `mailings` are the next group's: the function locks
/// them, and the outcomes', FOR SHARE before any delivery (see `lock_mailings_of`). The
/// caller NOTIFYs after the commit (see `events::Notifier`).
pub async fn advance(
    conn: &mut AsyncPgConnection,
    me: Uuid,
    outcomes: &[Outcome],
    next: &[DeliveryId],
    slices: &[i64],
    mailings: &[MailingId],
) -> diesel::QueryResult<Advanced> {
    let mut mailings: Vec<MailingId> = mailings
        .iter()
        .copied()
        .chain(outcomes.iter().map(|o| o.mailing_id))
        .collect();
    mailings.sort();
    mailings.dedup();
    let query = Advance {
        ids: outcomes.iter().map(|o| o.id).collect(),
        statuses: outcomes.iter().map(|o| o.delivery_status).collect(),
        delays: outcomes.iter().map(|o| micros(o.retry_in)).collect(),
        attempts: outcomes.iter().map(|o| o.attempt).collect(),
        attempt_statuses: outcomes.iter().map(|o| o.attempt_status).collect(),
        responses: outcomes.iter().map(|o| o.response.clone()).collect(),
        owner: me,
        next: next.to_vec(),
        servers: outcomes.iter().map(|o| o.smtp_server).collect(),
        slices: slices.to_vec(),
        mailings,
    };
    let row: AdvanceRow = query.get_result(conn).await?;
    Ok(Advanced {
        started: row.started.unwrap_or_default(),
        logged_at: row.logged_at,
    })
}

#[derive(diesel::QueryableByName)]
struct AdvanceRow {
    #[diesel(sql_type = Nullable<Array<SqlUuid>>)]
    started: Option<Vec<DeliveryId>>,
    #[diesel(sql_type = Timestamptz)]
    logged_at: DateTime<Utc>,
}

/// `advance` as a query type of its own: diesel keeps a type with a static query id as a
/// prepared statement per connection (one round trip per call), where a raw `sql_query` is
/// parsed and described on every call. `$n` in ADVANCE_SQL are its parameters.
#[derive(diesel::query_builder::QueryId)]
struct Advance {
    ids: Vec<DeliveryId>,
    statuses: Vec<DeliveryStatus>,
    delays: Vec<i64>,
    attempts: Vec<i32>,
    attempt_statuses: Vec<AttemptStatus>,
    responses: Vec<Option<String>>,
    owner: Uuid,
    next: Vec<DeliveryId>,
    servers: Vec<Option<SmtpServerId>>,
    slices: Vec<i64>,
    mailings: Vec<MailingId>,
}

const ADVANCE_SQL: &str =
    "SELECT started, logged_at FROM dispatch_advance($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for Advance {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        let mut rest = ADVANCE_SQL;
        while let Some(at) = rest.find('$') {
            out.push_sql(&rest[..at]);
            let digits = rest[at + 1..].chars().take_while(char::is_ascii_digit).count();
            match &rest[at + 1..at + 1 + digits] {
                "10" => out.push_bind_param::<Array<BigInt>, _>(&self.slices)?,
                "11" => out.push_bind_param::<Array<SqlUuid>, _>(&self.mailings)?,
                "1" => out.push_bind_param::<Array<SqlUuid>, _>(&self.ids)?,
                "2" => out.push_bind_param::<Array<Text>, _>(&self.statuses)?,
                "3" => out.push_bind_param::<Array<BigInt>, _>(&self.delays)?,
                "4" => out.push_bind_param::<Array<Integer>, _>(&self.attempts)?,
                "5" => out.push_bind_param::<Array<Text>, _>(&self.attempt_statuses)?,
                "6" => out.push_bind_param::<Array<Nullable<Text>>, _>(&self.responses)?,
                "7" => out.push_bind_param::<SqlUuid, _>(&self.owner)?,
                "8" => out.push_bind_param::<Array<SqlUuid>, _>(&self.next)?,
                "9" => out.push_bind_param::<Array<Nullable<SqlUuid>>, _>(&self.servers)?,
                other => unreachable!("ADVANCE_SQL has no parameter ${other}"),
            }
            rest = &rest[at + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl diesel::query_builder::Query for Advance {
    type SqlType = diesel::sql_types::Untyped;
}

/// A run whose deliveries changed in a committed statement, and when.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct Touched {
    #[diesel(sql_type = SqlUuid)]
    pub mailing_id: MailingId,
    #[diesel(sql_type = SqlUuid)]
    pub run_id: RunId,
    #[diesel(sql_type = Timestamptz)]
    pub logged_at: DateTime<Utc>,
}

/// The end of both rescues in `rescue_expired`: an UNKNOWN attempt for each send that was
/// under way (the `lost` rows), and the mailings and runs those belong to.
const LOG_LOST: &str = "logged AS ( \
             INSERT INTO attempts (delivery_id, mailing_id, owner_id, email, attempt_number, status, server_response) \
             SELECT id, mailing_id, owner_id, email, attempt_count, 'unknown', \
                 'the instance sending this stopped before recording the outcome (lease expired); not resent automatically' \
             FROM lost ON CONFLICT (delivery_id, attempt_number) DO NOTHING) \
         SELECT DISTINCT mailing_id, run_id, now() AS logged_at FROM lost";

/// Leases that ran out (their instance died or hung): claims that never began go back to
/// the queue (rows another rescuer holds are skipped, so rescuers never deadlock); sends
/// that were under way become UNKNOWN with an UNKNOWN attempt, since the server may have
/// accepted them and SMTP cannot tell us; they are never resent by themselves. A slice is
/// locked before its deliveries, as `dispatch_advance` takes them.
pub async fn rescue_expired(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<Touched>> {
    let mut touched: Vec<Touched> = diesel::sql_query(format!(
        "WITH expired AS ( \
             SELECT id, run_id, after_client, through_client FROM run_slices \
             WHERE lease_owner IS NOT NULL AND lease_expires_at < now() \
             FOR UPDATE SKIP LOCKED), \
         lost AS ( \
             UPDATE deliveries d SET status = 'unknown', sending_since = NULL, slice_id = NULL, updated_at = now() \
             FROM expired s \
             WHERE d.run_id = s.run_id AND d.client_id > s.after_client AND d.client_id <= s.through_client \
               AND d.slice_id = s.id AND d.status = 'pending' AND d.sending_since IS NOT NULL \
             RETURNING d.id, d.mailing_id, d.owner_id, d.email, d.attempt_count, d.run_id), \
         freed AS ( \
             UPDATE run_slices s SET lease_owner = NULL, lease_expires_at = NULL FROM expired e WHERE s.id = e.id), \
         {LOG_LOST}"
    ))
    .load(conn)
    .await?;
    diesel::sql_query(
        "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, updated_at = now() \
         WHERE id IN (SELECT id FROM deliveries \
                      WHERE lease_owner IS NOT NULL AND lease_expires_at < now() AND status = 'pending' \
                        AND sending_since IS NULL \
                      FOR UPDATE SKIP LOCKED)",
    )
    .execute(conn)
    .await?;
    diesel::sql_query(format!(
        "WITH lost AS ( \
             UPDATE deliveries SET status = 'unknown', sending_since = NULL, lease_owner = NULL, lease_expires_at = NULL, \
                 updated_at = now() \
             WHERE id IN (SELECT id FROM deliveries \
                          WHERE lease_owner IS NOT NULL AND lease_expires_at < now() AND sending_since IS NOT NULL \
                          FOR UPDATE SKIP LOCKED) \
             RETURNING id, mailing_id, owner_id, email, attempt_count, run_id), \
         {LOG_LOST}"
    ))
    .load::<Touched>(conn)
    .await
    .map(|rows| {
        touched.extend(rows);
        touched
    })
}

/// What a run sends: taken when the run started.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct RunSnapshot {
    #[diesel(sql_type = SqlUuid)]
    pub id: RunId,
    #[diesel(sql_type = Text)]
    pub subject: String,
    #[diesel(sql_type = Text)]
    pub body: String,
    #[diesel(sql_type = Text)]
    pub format: MessageFormat,
    #[diesel(sql_type = Nullable<Text>)]
    pub text_body: Option<String>,
    /// The layout's HTML when the run started, if the message had one.
    #[diesel(sql_type = Nullable<Text>)]
    pub layout_html: Option<String>,
    #[diesel(sql_type = Text)]
    pub mail_from: String,
    #[diesel(sql_type = SqlUuid)]
    pub mailing_id: MailingId,
    #[diesel(sql_type = SqlUuid)]
    pub owner_id: UserId,
    #[diesel(sql_type = Timestamptz)]
    pub run_at: DateTime<Utc>,
    /// The mailing's time zone (for `run.date` and its sending window).
    #[diesel(sql_type = Text)]
    pub time_zone: String,
    /// The mailing's sender identity and sending window as they are now.
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub sender_identity_id: Option<SenderIdentityId>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Jsonb>)]
    pub sending_window: Option<serde_json::Value>,
}

impl RunSnapshot {
    /// What the run's templates are compiled from.
    pub fn content(&self) -> Content<'_> {
        Content {
            format: self.format,
            subject: &self.subject,
            body: &self.body,
            text_body: self.text_body.as_deref(),
            layout: self.layout_html.as_deref(),
        }
    }
}

pub async fn run_snapshots(
    conn: &mut AsyncPgConnection,
    run_ids: &[RunId],
) -> diesel::QueryResult<HashMap<RunId, RunSnapshot>> {
    let rows: Vec<RunSnapshot> = diesel::sql_query(
        "SELECT r.id, r.subject, r.body, r.format, r.text_body, r.layout_html, r.mail_from, r.mailing_id, m.owner_id, r.run_at, m.time_zone, \
             m.sender_identity_id, m.sending_window \
         FROM runs r JOIN mailings m ON m.id = r.mailing_id WHERE r.id = ANY($1)",
    )
    .bind::<Array<SqlUuid>, _>(run_ids)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r)).collect())
}

/// What templates may read of a client besides the delivery's own copy of the address
/// and name: its comment and attributes as they are now.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct ClientDetails {
    #[diesel(sql_type = SqlUuid)]
    pub id: ClientId,
    #[diesel(sql_type = Text)]
    pub comment: String,
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    pub attributes: serde_json::Value,
}

/// The details of a batch's clients, in one query.
pub async fn client_details(
    conn: &mut AsyncPgConnection,
    client_ids: &[ClientId],
) -> diesel::QueryResult<HashMap<ClientId, ClientDetails>> {
    let rows: Vec<ClientDetails> = diesel::sql_query("SELECT id, comment, attributes FROM clients WHERE id = ANY($1)")
        .bind::<Array<SqlUuid>, _>(client_ids)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|c| (c.id, c)).collect())
}

/// How long until something falls due: a run to start, a slice or a retry, or a lease to
/// run out (a dead instance's deliveries are rescued then, not at the next
/// DISPATCH_INTERVAL poll);
/// None when nothing waits.
pub async fn next_due_in(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Option<Duration>> {
    #[derive(diesel::QueryableByName)]
    struct Next {
        #[diesel(sql_type = Nullable<BigInt>)]
        micros: Option<i64>,
    }
    // Not the work of paused or deleted mailings, or of blocked owners, which no claim
    // takes: it would wake the dispatcher over and over for nothing.
    const SENDABLE: &str = "SELECT 1 FROM mailings m JOIN users u ON u.id = m.owner_id \
         WHERE NOT m.paused AND m.deleted_at IS NULL AND u.is_active AND m.id =";
    let next: Next = diesel::sql_query(format!(
        "SELECT (extract(epoch FROM LEAST( \
             (SELECT min(next_run_at) FROM mailings \
              WHERE next_run_at IS NOT NULL AND deleted_at IS NULL AND completed_at IS NULL AND NOT paused), \
             (SELECT min(d.next_attempt_at) FROM deliveries d \
              WHERE d.status = 'pending' AND d.lease_owner IS NULL AND d.slice_id IS NULL AND EXISTS ({SENDABLE} d.mailing_id)), \
             (SELECT min(lease_expires_at) FROM deliveries WHERE lease_owner IS NOT NULL AND status = 'pending'), \
             (SELECT min(s.next_attempt_at) FROM run_slices s WHERE s.lease_owner IS NULL AND EXISTS ({SENDABLE} s.mailing_id)), \
             (SELECT min(lease_expires_at) FROM run_slices WHERE lease_owner IS NOT NULL) \
         ) - now()) * 1000000)::bigint AS micros"
    ))
    .get_result(conn)
    .await?;
    Ok(next.micros.map(|m| Duration::from_micros(m.max(0) as u64)))
}

/// Deliveries waiting in the queue (for the metrics).
pub async fn depth(conn: &mut AsyncPgConnection) -> diesel::QueryResult<i64> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM deliveries WHERE status = 'pending'")
        .get_result(conn)
        .await?;
    Ok(count.n)
}
