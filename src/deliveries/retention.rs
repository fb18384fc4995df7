//! LOG_RETENTION: the log of runs that finished longer ago than that (their deliveries,
//! attempts and bounces) is deleted by a recurring job on the shared runner, a few
//! thousand deliveries per statement, each its own short transaction: no long lock, and
//! sending goes on beside it. The runs themselves stay (when they ran, how many were
//! suppressed), so a mailing's history still lists them.
//!
//! Deletes in chunks rather than dropping monthly partitions: the log is read and written by
//! delivery and by run, and a run's rows would straddle partitions; a chunk of 5,000
//! deliveries with their attempts took 118-131 ms beside 10,000,000 rows (`bench/log.sh`).

use std::time::Duration;

use diesel::sql_types::{BigInt, Interval};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

use crate::db::DbPool;
use crate::jobs::{BackgroundJob, JobError};

/// Deliveries deleted per statement.
pub const CHUNK: i64 = 5_000;
/// Statements per run of the job at most (the rest waits for the next run).
const MOST_CHUNKS: usize = 2_000;
/// How often the job runs.
pub const EVERY: Duration = Duration::from_secs(3600);

/// The recurring job (its payload is empty).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DropOldLog;

#[derive(Clone)]
pub struct Retention {
    pub pool: DbPool,
    pub keep: Duration,
}

impl BackgroundJob for DropOldLog {
    const KIND: &'static str = "drop_old_log";
    type Context = Retention;

    async fn run(&self, ctx: &Retention) -> Result<(), JobError> {
        let retry = |err: &dyn std::fmt::Display| JobError::Retry(err.to_string());
        let mut conn = ctx.pool.get().await.map_err(|e| retry(&e))?;
        let mut deleted = 0;
        for _ in 0..MOST_CHUNKS {
            let n = drop_chunk(&mut conn, ctx.keep).await.map_err(|e| retry(&e))?;
            deleted += n;
            if n < CHUNK as usize {
                break;
            }
        }
        if deleted > 0 {
            tracing::info!(
                deliveries = deleted,
                "deleted the log of runs finished before LOG_RETENTION"
            );
        }
        Ok(())
    }
}

/// Deletes up to CHUNK deliveries (with their attempts; bounces follow by their foreign
/// key) of runs finished more than `keep` ago. Returns how many.
pub async fn drop_chunk(conn: &mut AsyncPgConnection, keep: Duration) -> diesel::QueryResult<usize> {
    let keep = diesel::data_types::PgInterval::from_microseconds(i64::try_from(keep.as_micros()).unwrap_or(i64::MAX));
    diesel::sql_query(
        "WITH old AS ( \
             SELECT d.id FROM runs r JOIN deliveries d ON d.run_id = r.id \
             WHERE r.status <> 'running' AND r.finished_at < now() - $1 \
             LIMIT $2 FOR UPDATE OF d SKIP LOCKED), \
         attempts_gone AS (DELETE FROM attempts a USING old WHERE a.delivery_id = old.id) \
         DELETE FROM deliveries d USING old WHERE d.id = old.id",
    )
    .bind::<Interval, _>(keep)
    .bind::<BigInt, _>(CHUNK)
    .execute(conn)
    .await
}
