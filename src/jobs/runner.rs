//! Claims due jobs of the kinds it knows, runs them, records what came of each. Every
//! instance runs one; they share the queue through `SKIP LOCKED`, and a job whose runner
//! died is claimed again once its lease expires (a job may therefore run twice, so jobs
//! are written to be harmless when repeated: a second verification mail, a second sweep).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{BackgroundJob, JobError};
use crate::db::DbPool;

/// How a runner claims and retries.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Sleep between looks at an empty queue (a local enqueue wakes it at once).
    pub poll: Duration,
    /// How long a claimed job may run before another runner may take it.
    pub lease: Duration,
    /// Jobs run at once by this runner.
    pub concurrency: usize,
    /// Runs before a failing job is given up, unless its kind says otherwise.
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

type RunFn = Arc<dyn Fn(String) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync>;

struct Kind {
    run: RunFn,
    max_attempts: u32,
    /// Recurring: one row, run again this long after each run.
    every: Option<Duration>,
    /// The payload its one row holds (recurring kinds only).
    payload: String,
}

pub struct Runner {
    pool: DbPool,
    instance_id: Uuid,
    settings: RunnerSettings,
    kinds: HashMap<&'static str, Kind>,
    wakeup: Arc<Notify>,
}

#[derive(diesel::QueryableByName)]
struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    payload: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

impl Runner {
    /// A runner with no kinds yet; `wakeup` is notified by this instance after it enqueues.
    pub fn new(pool: DbPool, instance_id: Uuid, settings: RunnerSettings, wakeup: Arc<Notify>) -> Runner {
        Runner {
            pool,
            instance_id,
            settings,
            kinds: HashMap::new(),
            wakeup,
        }
    }

    /// Runs jobs of kind `J` with `ctx`.
    pub fn register<J: BackgroundJob>(mut self, ctx: J::Context) -> Runner {
        let kind = self.kind_of::<J>(ctx, None, String::new());
        self.kinds.insert(J::KIND, kind);
        self
    }

    /// Runs `job` every `every` on some instance (one row for the kind, whatever the
    /// number of instances), the first time as soon as a runner starts.
    pub fn register_recurring<J: BackgroundJob>(mut self, job: &J, every: Duration, ctx: J::Context) -> Runner {
        let payload = serde_json::to_string(job).expect("a job's fields serialise");
        let kind = self.kind_of::<J>(ctx, Some(every), payload);
        self.kinds.insert(J::KIND, kind);
        self
    }

    fn kind_of<J: BackgroundJob>(&self, ctx: J::Context, every: Option<Duration>, payload: String) -> Kind {
        let run: RunFn = Arc::new(move |payload: String| {
            let ctx = ctx.clone();
            Box::pin(async move {
                let job: J = serde_json::from_str(&payload)
                    .map_err(|e| JobError::Permanent(format!("unreadable {} job: {e}", J::KIND)))?;
                job.run(&ctx).await
            })
        });
        Kind {
            run,
            max_attempts: J::MAX_ATTEMPTS.unwrap_or(self.settings.max_attempts).max(1),
            every,
            payload,
        }
    }

    /// Runs jobs until stopped; a database failure is logged and retried, never the end.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut scheduled = false;
        loop {
            if !scheduled {
                match self.schedule_recurring().await {
                    Ok(()) => scheduled = true,
                    Err(err) => tracing::warn!(error = %err, "cannot schedule recurring jobs; will retry"),
                }
            }
            let pause = match self.run_due().await {
                Ok(0) => self.until_next_due().await.unwrap_or(self.settings.poll),
                Ok(_) => Duration::ZERO,
                Err(err) => {
                    tracing::warn!(error = %err, "job queue unavailable; retrying");
                    Duration::from_secs(1)
                }
            };
            if pause.is_zero() {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.wakeup.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// The one row of each recurring kind, if no instance made it yet.
    pub async fn schedule_recurring(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await?;
        for (kind, spec) in self.kinds.iter().filter(|(_, k)| k.every.is_some()) {
            diesel::sql_query(
                "INSERT INTO background_jobs (kind, payload, singleton) VALUES ($1, $2::jsonb, true) \
                 ON CONFLICT (kind) WHERE singleton DO NOTHING",
            )
            .bind::<Text, _>(*kind)
            .bind::<Text, _>(&spec.payload)
            .execute(&mut conn)
            .await?;
        }
        Ok(())
    }

    /// Claims one batch of due jobs, runs them and records the outcomes; returns how many
    /// it claimed.
    pub async fn run_due(&self) -> anyhow::Result<usize> {
        let mut conn = self.pool.get().await?;
        // Jobs whose runner died go back to the queue.
        diesel::sql_query(
            "UPDATE background_jobs SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL \
             WHERE status = 'running' AND lease_expires_at < now()",
        )
        .execute(&mut conn)
        .await?;
        let kinds: Vec<&str> = self.kinds.keys().copied().collect();
        let claimed: Vec<Claimed> = diesel::sql_query(
            "WITH due AS ( \
                 SELECT id FROM background_jobs \
                 WHERE status = 'pending' AND run_at <= now() AND kind = ANY($3) \
                 ORDER BY run_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
             UPDATE background_jobs j SET status = 'running', lease_owner = $1, \
                 lease_expires_at = now() + $2 * interval '1 microsecond', attempts = j.attempts + 1 \
             FROM due WHERE j.id = due.id \
             RETURNING j.id, j.kind, j.payload::text AS payload, j.attempts",
        )
        .bind::<SqlUuid, _>(self.instance_id)
        .bind::<BigInt, _>(micros(self.settings.lease))
        .bind::<Array<Text>, _>(kinds)
        .bind::<BigInt, _>(self.settings.concurrency.max(1) as i64)
        .load(&mut conn)
        .await?;
        drop(conn); // no connection held while jobs run

        let count = claimed.len();
        let runs = claimed.into_iter().map(|job| async move {
            let outcome = self.run_one(&job).await;
            if let Err(err) = self.finish(&job, outcome).await {
                tracing::warn!(error = %err, job_id = %job.id, kind = job.kind, "cannot record a job's outcome");
            }
        });
        futures_util::future::join_all(runs).await;
        Ok(count)
    }

    /// One job, in a task of its own so that a panic is that job's failure, and within its
    /// lease so that it never runs on beside the runner that took it over.
    async fn run_one(&self, job: &Claimed) -> Result<(), JobError> {
        let Some(kind) = self.kinds.get(job.kind.as_str()) else {
            return Err(JobError::Retry(format!("no runner here knows {:?} jobs", job.kind)));
        };
        let run = tokio::spawn((kind.run)(job.payload.clone()));
        match tokio::time::timeout(self.settings.lease, run).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(panic)) => Err(JobError::Retry(format!("the job panicked: {panic}"))),
            Err(_) => Err(JobError::Retry(format!(
                "the job ran longer than its lease ({:?})",
                self.settings.lease
            ))),
        }
    }

    async fn finish(&self, job: &Claimed, outcome: Result<(), JobError>) -> anyhow::Result<()> {
        let kind = self.kinds.get(job.kind.as_str());
        let attempts = u32::try_from(job.attempts).unwrap_or(u32::MAX);
        if let Err(err) = &outcome {
            tracing::warn!(job_id = %job.id, kind = job.kind, attempts, error = %err, "background job failed");
        }
        let record = match (kind.and_then(|k| k.every), outcome) {
            (Some(every), outcome) => Record::Again {
                after: every,
                error: outcome.err().map(|e| e.to_string()),
                attempts_from_zero: true,
            },
            (None, Ok(())) => Record::Done,
            (None, Err(JobError::Retry(why))) if kind.is_some_and(|k| attempts < k.max_attempts) => Record::Again {
                after: crate::retry::backoff(
                    attempts,
                    self.settings.retry_base,
                    self.settings.retry_max,
                    crate::retry::jitter(),
                ),
                error: Some(why),
                attempts_from_zero: false,
            },
            (None, Err(err)) => Record::Failed(err.to_string()),
        };
        // Each statement is guarded by lease owner and attempt number: a job taken over by
        // another runner after its lease ran out is no longer ours to record.
        const OURS: &str = "id = $1 AND lease_owner = $2 AND attempts = $3";
        let ours = |sql: String| {
            diesel::sql_query(sql)
                .into_boxed::<diesel::pg::Pg>()
                .bind::<SqlUuid, _>(job.id)
                .bind::<SqlUuid, _>(self.instance_id)
                .bind::<Integer, _>(job.attempts)
        };
        let query = match record {
            Record::Done => ours(format!("DELETE FROM background_jobs WHERE {OURS}")),
            Record::Again {
                after,
                error,
                attempts_from_zero,
            } => ours(format!(
                "UPDATE background_jobs SET status = 'pending', last_error = $4, \
                     run_at = now() + $5 * interval '1 microsecond', lease_owner = NULL, lease_expires_at = NULL, \
                     attempts = CASE WHEN $6 THEN 0 ELSE attempts END \
                 WHERE {OURS}"
            ))
            .bind::<Nullable<Text>, _>(error.map(|e| truncate(e, 2_000)))
            .bind::<BigInt, _>(micros(after))
            .bind::<Bool, _>(attempts_from_zero),
            Record::Failed(error) => ours(format!(
                "UPDATE background_jobs SET status = 'failed', last_error = $4, lease_owner = NULL, \
                     lease_expires_at = NULL \
                 WHERE {OURS}"
            ))
            .bind::<Text, _>(truncate(error, 2_000)),
        };
        let mut conn = self.pool.get().await?;
        query.execute(&mut conn).await?;
        Ok(())
    }

    /// How long until the next known job is due, at most the poll interval.
    async fn until_next_due(&self) -> Option<Duration> {
        #[derive(diesel::QueryableByName)]
        struct Next {
            #[diesel(sql_type = Nullable<BigInt>)]
            micros: Option<i64>,
        }
        let kinds: Vec<&str> = self.kinds.keys().copied().collect();
        let mut conn = self.pool.get().await.ok()?;
        let next: Next = diesel::sql_query(
            "SELECT (extract(epoch FROM min(run_at) - now()) * 1000000)::bigint AS micros \
             FROM background_jobs WHERE status = 'pending' AND kind = ANY($1)",
        )
        .bind::<Array<Text>, _>(kinds)
        .get_result(&mut conn)
        .await
        .ok()?;
        let wait = Duration::from_micros(next.micros?.max(0) as u64);
        Some(wait.min(self.settings.poll))
    }
}

/// What becomes of a job's row after a run.
enum Record {
    /// Finished: the row goes.
    Done,
    /// To run again `after` from now (a retry, or a recurring job's next time).
    Again {
        after: Duration,
        error: Option<String>,
        attempts_from_zero: bool,
    },
    /// Given up: kept with the error, for the operator.
    Failed(String),
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
