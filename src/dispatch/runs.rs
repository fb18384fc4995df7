//! Starting runs when they fall due, writing their deliveries in chunks (the first with the
//! run, the rest beside the sending: `expand_more`), and closing them when their deliveries
//! are done.
//!
//! Any instance may start a due run: its row is unique on (mailing, run time) and inserted
//! with ON CONFLICT DO NOTHING, so none can start it twice and no leader is needed. Every
//! "is it due" decision uses the database clock.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::sql_types::{Array, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::types::{MailingId, RunId};
use crate::deliverability::suppressions;
use crate::mailings::audience;
use crate::mailings::model::Mailing;

/// Most SKIPPED rows recorded when a long outage is coalesced.
const MAX_SKIPPED_RECORDED: usize = 1_000;

/// A run this instance started.
#[derive(Debug, Clone)]
pub struct Started {
    pub mailing_id: MailingId,
    pub run_id: RunId,
    pub deliveries: usize,
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Starts the runs that are due, at most `limit` mailings at a time. Each mailing is handled
/// in its own short transaction, its row locked (SKIP LOCKED: another instance on it wins).
/// With a daily quota, a run that would take its owner past it waits for the next UTC day.
pub async fn start_due(
    conn: &mut AsyncPgConnection,
    mail_from: &str,
    quota: Option<u32>,
    limit: i64,
) -> anyhow::Result<Vec<Started>> {
    let due: Vec<Id> = diesel::sql_query(
        "SELECT m.id FROM mailings m JOIN users u ON u.id = m.owner_id \
         WHERE m.next_run_at <= now() AND m.deleted_at IS NULL AND m.completed_at IS NULL AND NOT m.paused \
           AND u.is_active AND u.deleted_at IS NULL \
         ORDER BY m.next_run_at LIMIT $1",
    )
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await?;
    let mut started = Vec::new();
    for Id { id } in due {
        if let Some(run) = conn
            .transaction::<_, anyhow::Error, _>(async |conn| start_one(conn, MailingId(id), mail_from, quota).await)
            .await?
        {
            started.push(run);
        }
    }
    Ok(started)
}

async fn start_one(
    conn: &mut AsyncPgConnection,
    mailing_id: MailingId,
    mail_from: &str,
    quota: Option<u32>,
) -> anyhow::Result<Option<Started>> {
    use crate::db::schema::mailings;
    use diesel::{
        BoolExpressionMethods, ExpressionMethods, IntoSql, NullableExpressionMethods, OptionalExtension, QueryDsl,
        SelectableHelper,
    };
    let Some(mailing): Option<Mailing> = mailings::table
        .filter(mailings::id.eq(mailing_id))
        .filter(mailings::next_run_at.le(crate::db::now().nullable()))
        .filter(
            mailings::deleted_at
                .is_null()
                .and(mailings::completed_at.is_null())
                .and(mailings::paused.eq(false)),
        )
        .select(Mailing::as_select())
        .for_update()
        .skip_locked()
        .first(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    let now: DateTime<Utc> = diesel::select(diesel::dsl::now.into_sql::<diesel::sql_types::Timestamptz>())
        .get_result(conn)
        .await?;
    let schedule = mailing.schedule();
    let due_from = mailing.next_run_at.expect("selected with next_run_at <= now()");

    // Several overdue runs (downtime, a pause) coalesce into the latest; the others are
    // recorded as SKIPPED, never sent in a burst.
    let Some(latest) = schedule.latest_run_at_or_before(now) else {
        diesel::update(mailings::table.filter(mailings::id.eq(mailing_id)))
            .set(mailings::next_run_at.eq(schedule.next_run_after(now)))
            .execute(conn)
            .await?;
        return Ok(None);
    };
    let overdue = schedule.runs_between(Some(due_from - TimeDelta::microseconds(1)), latest, usize::MAX);
    let skipped: Vec<DateTime<Utc>> = overdue
        .iter()
        .copied()
        .filter(|at| *at < latest)
        .rev()
        .take(MAX_SKIPPED_RECORDED)
        .collect();
    if !skipped.is_empty() {
        diesel::sql_query(
            "INSERT INTO runs (mailing_id, run_at, status, finished_at) \
             SELECT $1, t, 'skipped', now() FROM unnest($2::timestamptz[]) AS t ON CONFLICT DO NOTHING",
        )
        .bind::<SqlUuid, _>(mailing_id)
        .bind::<Array<Timestamptz>, _>(&skipped)
        .execute(conn)
        .await?;
    }

    if let Some(quota) = quota
        && !within_quota(conn, &mailing, quota).await?
    {
        // The run waits for the next UTC day; it is not skipped.
        diesel::sql_query(
            "UPDATE mailings SET next_run_at = date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' \
             + interval '1 day', updated_at = now() WHERE id = $1",
        )
        .bind::<SqlUuid, _>(mailing_id)
        .execute(conn)
        .await?;
        tracing::info!(mailing = %mailing_id, owner = %mailing.owner_id, quota, "daily send quota reached; the run waits for tomorrow (UTC)");
        return Ok(None);
    }

    // Snapshot what this run sends, then one delivery per client in the audience now.
    let run: Option<Id> = diesel::sql_query(
        "INSERT INTO runs (mailing_id, run_at, status, subject, body, format, text_body, layout_html, mail_from) \
         SELECT $1, $2, 'running', msg.subject, msg.body, msg.format, msg.text_body, l.html, $3 \
         FROM messages msg LEFT JOIN layouts l ON l.id = msg.layout_id WHERE msg.id = $4 \
         ON CONFLICT (mailing_id, run_at) DO NOTHING RETURNING id",
    )
    .bind::<SqlUuid, _>(mailing_id)
    .bind::<Timestamptz, _>(latest)
    .bind::<Text, _>(mail_from)
    .bind::<SqlUuid, _>(mailing.message_id)
    .get_result(conn)
    .await
    .optional()?;
    let mut started = None;
    if let Some(Id { id: run_id }) = run {
        // Outside its sending window, the run's deliveries wait for the next opening.
        let due = mailing
            .window()
            .map_or(now, |w| w.next_opening(now, schedule.time_zone));
        let deliveries = expand_first(conn, &mailing, RunId(run_id), due).await?;
        if quota.is_some() {
            count_towards_quota(conn, &mailing, deliveries).await?;
        }
        started = Some(Started {
            mailing_id,
            run_id: RunId(run_id),
            deliveries,
        });
    }
    diesel::update(mailings::table.filter(mailings::id.eq(mailing_id)))
        .set((
            mailings::next_run_at.eq(schedule.next_run_after(latest)),
            mailings::updated_at.eq(crate::db::now()),
        ))
        .execute(conn)
        .await?;
    Ok(started)
}

async fn count_towards_quota(
    conn: &mut AsyncPgConnection,
    mailing: &Mailing,
    deliveries: usize,
) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "UPDATE daily_sends SET deliveries = deliveries + $2 \
         WHERE user_id = $1 AND day = (now() AT TIME ZONE 'UTC')::date",
    )
    .bind::<SqlUuid, _>(mailing.owner_id)
    .bind::<diesel::sql_types::Integer, _>(i32::try_from(deliveries).unwrap_or(i32::MAX))
    .execute(conn)
    .await
}

/// Clients written per chunk of a run's expansion: a chunk takes about as long as sending
/// a batch (each dispatcher step does one beside its batch), and the run sends once the
/// first is committed.
pub const EXPANSION_CHUNK: i64 = 2_000;

/// The run's first chunk, in the transaction that starts it.
async fn expand_first(
    conn: &mut AsyncPgConnection,
    mailing: &Mailing,
    run_id: RunId,
    due: DateTime<Utc>,
) -> diesel::QueryResult<usize> {
    let audience = audience::of_mailing(conn, mailing).await?;
    expand_chunk(conn, mailing, &audience, run_id, due, Uuid::nil()).await
}

/// Writes the next chunk of one run still being expanded (the oldest that no other
/// instance is writing: its row is locked, SKIP LOCKED), in one transaction with its
/// cursor. Returns the run and the deliveries written, or None when no run waits.
///
/// The mailing's row is locked (FOR SHARE) before the run's, in the order completing,
/// deleting or editing a mailing takes them (its row, then its pending deliveries and runs):
/// a chunk then either commits before such a change, which cancels its deliveries, or
/// waits for it and finds the run cancelled; never pending deliveries left behind in a
/// cancelled run, and no deadlock.
pub async fn expand_more(conn: &mut AsyncPgConnection, quota: bool) -> anyhow::Result<Option<Started>> {
    use crate::db::schema::{mailings, runs};
    use diesel::{
        ExpressionMethods, IntoSql, NullableExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper,
    };
    let Some((run_id, mailing_id)) = runs::table
        .filter(runs::expanded_through.is_not_null())
        .filter(runs::status.eq("running"))
        .order(runs::run_at)
        .select((runs::id, runs::mailing_id))
        .first::<(RunId, MailingId)>(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    conn.transaction::<_, anyhow::Error, _>(async |conn| {
        let mailing: Option<Mailing> = mailings::table
            .filter(mailings::id.eq(mailing_id))
            .filter(mailings::deleted_at.is_null())
            .select(Mailing::as_select())
            .for_share()
            .get_result(conn)
            .await
            .optional()?;
        let Some(mailing) = mailing else {
            diesel::update(runs::table.filter(runs::id.eq(run_id)))
                .set(runs::expanded_through.eq(None::<Uuid>))
                .execute(conn)
                .await?;
            return Ok(None);
        };
        let Some(after) = runs::table
            .filter(runs::id.eq(run_id))
            .filter(runs::expanded_through.is_not_null())
            .filter(runs::status.eq("running"))
            .select(runs::expanded_through.assume_not_null())
            .for_update()
            .skip_locked()
            .first::<Uuid>(conn)
            .await
            .optional()?
        else {
            return Ok(None);
        };
        let now: DateTime<Utc> = diesel::select(diesel::dsl::now.into_sql::<Timestamptz>())
            .get_result(conn)
            .await?;
        let due = mailing
            .window()
            .map_or(now, |w| w.next_opening(now, mailing.schedule().time_zone));
        let audience = audience::of_mailing(conn, &mailing).await?;
        let deliveries = expand_chunk(conn, &mailing, &audience, run_id, due, after).await?;
        if quota {
            count_towards_quota(conn, &mailing, deliveries).await?;
        }
        Ok(Some(Started {
            mailing_id,
            run_id,
            deliveries,
        }))
    })
    .await
}

/// One delivery per client of the audience now (unsubscribed and deleted clients, and
/// suppressed addresses, left out) whose id follows `after`, at most EXPANSION_CHUNK of
/// them, in slices of `queue::SLICE` (a `run_slices` row each: the dispatchers claim a
/// slice, not each delivery); one INSERT ... SELECT per slice, the chunk's client ids the
/// only thing in memory. Moves the run's cursor to the chunk's last client, or clears it
/// when the audience has no more, and counts the suppressed addresses the chunk left out
/// (`Run.suppressed`; counted per chunk, since a count over a whole large audience can
/// take seconds before its statistics are gathered).
async fn expand_chunk(
    conn: &mut AsyncPgConnection,
    mailing: &Mailing,
    audience: &audience::Audience,
    run_id: RunId,
    due: DateTime<Utc>,
    after: Uuid,
) -> diesel::QueryResult<usize> {
    use crate::db::schema::{clients, deliveries, runs};
    use diesel::{ExpressionMethods, IntoSql, QueryDsl};
    // Planned for this chunk's bounds each time: after five runs of a prepared statement
    // PostgreSQL may settle on a generic plan, which knows nothing of the range. Always
    // inside the run's transaction, so SET LOCAL ends with it.
    diesel::sql_query("SET LOCAL plan_cache_mode = force_custom_plan")
        .execute(conn)
        .await?;
    let rest = audience::IdRange {
        after: Some(after),
        through: None,
    };
    let ids: Vec<Uuid> = audience::members_within(mailing.owner_id, audience, rest)
        .order(clients::id)
        .limit(EXPANSION_CHUNK)
        .select(clients::id)
        .load(conn)
        .await?;
    let more = ids.len() as i64 == EXPANSION_CHUNK;
    // Each slice's clients: (after, through], the last one through the last client found
    // when the audience has no more (a client added meanwhile waits for the next run).
    let throughs: Vec<Uuid> = ids
        .chunks(super::queue::SLICE)
        .map(|slice| *slice.last().expect("chunks are not empty"))
        .collect();
    let afters: Vec<Uuid> = std::iter::once(after)
        .chain(throughs.iter().copied())
        .take(throughs.len())
        .collect();
    #[derive(diesel::QueryableByName)]
    struct Slice {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
        #[diesel(sql_type = SqlUuid)]
        after_client: Uuid,
        #[diesel(sql_type = SqlUuid)]
        through_client: Uuid,
    }
    let slices: Vec<Slice> = if throughs.is_empty() {
        Vec::new()
    } else {
        diesel::sql_query(
            "INSERT INTO run_slices (run_id, mailing_id, after_client, through_client, next_attempt_at) \
             SELECT $1, $2, a, t, $5 FROM unnest($3::uuid[], $4::uuid[]) AS x(a, t) \
             RETURNING id, after_client, through_client",
        )
        .bind::<SqlUuid, _>(run_id)
        .bind::<SqlUuid, _>(mailing.id)
        .bind::<Array<SqlUuid>, _>(&afters)
        .bind::<Array<SqlUuid>, _>(&throughs)
        .bind::<Timestamptz, _>(due)
        .load(conn)
        .await?
    };
    let mut inserted = 0;
    for slice in &slices {
        let range = audience::IdRange {
            after: Some(slice.after_client),
            through: Some(slice.through_client),
        };
        let members = audience::members_within(mailing.owner_id, audience, range).select((
            run_id.into_sql::<SqlUuid>(),
            mailing.id.into_sql::<SqlUuid>(),
            mailing.owner_id.into_sql::<SqlUuid>(),
            clients::id,
            clients::email,
            clients::full_name,
            due.into_sql::<Timestamptz>(),
            Some(slice.id).into_sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(),
        ));
        inserted += diesel::insert_into(deliveries::table)
            .values(members)
            .into_columns((
                deliveries::run_id,
                deliveries::mailing_id,
                deliveries::owner_id,
                deliveries::client_id,
                deliveries::email,
                deliveries::full_name,
                deliveries::next_attempt_at,
                deliveries::slice_id,
            ))
            .on_conflict((deliveries::run_id, deliveries::client_id))
            .do_nothing()
            .execute(conn)
            .await?;
    }
    let through = if more { throughs.last().copied() } else { None };
    let chunk = audience::IdRange {
        after: Some(after),
        through,
    };
    let suppressed = suppressions::count_suppressed(
        conn,
        audience::with_suppressed_within(mailing.owner_id, audience, chunk),
    )
    .await?;
    diesel::update(runs::table.filter(runs::id.eq(run_id)))
        .set((
            runs::expanded_through.eq(through),
            runs::suppressed.eq(runs::suppressed + i32::try_from(suppressed).unwrap_or(i32::MAX)),
        ))
        .execute(conn)
        .await?;
    Ok(inserted)
}

/// Whether the owner's deliveries started today (UTC) plus this run's stay within `quota`.
/// Locks the owner's counter for today until the transaction ends, so two instances
/// starting two of the owner's runs at once count one after the other.
async fn within_quota(conn: &mut AsyncPgConnection, mailing: &Mailing, quota: u32) -> anyhow::Result<bool> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(
        "INSERT INTO daily_sends (user_id, day) VALUES ($1, (now() AT TIME ZONE 'UTC')::date) ON CONFLICT DO NOTHING",
    )
    .bind::<SqlUuid, _>(mailing.owner_id)
    .execute(conn)
    .await?;
    let used: Count = diesel::sql_query(
        "SELECT deliveries::int8 AS n FROM daily_sends \
         WHERE user_id = $1 AND day = (now() AT TIME ZONE 'UTC')::date FOR UPDATE",
    )
    .bind::<SqlUuid, _>(mailing.owner_id)
    .get_result(conn)
    .await?;
    let audience = audience::of_mailing(conn, mailing).await?;
    let size = audience::size(conn, mailing.owner_id, &audience).await?;
    Ok(used.n + size <= i64::from(quota))
}

/// Closes runs with nothing PENDING or SENDING left (and drops their slices, which then
/// hold nothing to send), then completes mailings whose window is over and whose runs
/// are all closed. Returns the mailings whose runs closed. A run locked meanwhile (a
/// cancel or a retry of its mailing is changing it) is skipped, not waited for: this
/// statement would otherwise hold some runs while waiting for another, which such a
/// transaction may hold while waiting for one of those; the next step closes it.
pub async fn close_finished(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<MailingId>> {
    #[derive(diesel::QueryableByName)]
    struct Closed {
        #[diesel(sql_type = SqlUuid)]
        mailing_id: MailingId,
    }
    let closed: Vec<Closed> = diesel::sql_query(
        "WITH closed AS ( \
             UPDATE runs r SET status = 'done', finished_at = now() \
             WHERE r.id IN (SELECT f.id FROM runs f WHERE f.status = 'running' AND f.expanded_through IS NULL \
                              AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.run_id = f.id AND d.status = 'pending') \
                            FOR UPDATE SKIP LOCKED) \
             RETURNING r.id, r.mailing_id), \
         dropped AS (DELETE FROM run_slices s USING closed WHERE s.run_id = closed.id) \
         SELECT mailing_id FROM closed",
    )
    .load(conn)
    .await?;
    let mut mailings: Vec<MailingId> = closed.into_iter().map(|c| c.mailing_id).collect();
    mailings.sort();
    mailings.dedup();
    complete_if_over(conn, &mailings).await?;
    Ok(mailings)
}

/// Marks COMPLETED the given mailings that have no run left to start and none running.
pub async fn complete_if_over(conn: &mut AsyncPgConnection, mailing_ids: &[MailingId]) -> diesel::QueryResult<usize> {
    if mailing_ids.is_empty() {
        return Ok(0);
    }
    diesel::sql_query(
        "UPDATE mailings m SET completed_at = now(), updated_at = now() \
         WHERE m.id = ANY($1) AND m.completed_at IS NULL AND m.deleted_at IS NULL AND m.next_run_at IS NULL \
           AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.mailing_id = m.id AND r.status = 'running')",
    )
    .bind::<Array<SqlUuid>, _>(mailing_ids)
    .execute(conn)
    .await
}
