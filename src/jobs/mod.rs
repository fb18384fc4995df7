//! One runner for background work that is not a delivery (account mails, sweeps, and what
//! later issues add: bounce-mailbox polls, webhooks), in the manner of crates.io's
//! `BackgroundJob`: a typed job, enqueued in the caller's transaction (it exists only if
//! that commits), claimed by any instance with `FOR UPDATE SKIP LOCKED` under a lease,
//! retried with the backoff the deliveries queue uses too (`crate::retry`). The deliveries
//! queue stays specialised: it is the hot path.
//!
//! Written here rather than taken from a crate: the PostgreSQL job crates for Rust
//! (apalis-postgres, sqlxmq, graphile_worker) run on sqlx and pools of their own, not on
//! the diesel-async pool every other part of mailwarm shares.

pub mod account_mail;
mod runner;
pub mod sweep;

use std::future::Future;

use diesel::sql_types::{Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use runner::{Runner, RunnerSettings};

/// A kind of background work. Its fields are the job's payload (JSON in the queue).
pub trait BackgroundJob: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The queue's `kind` column; never change it while such jobs may be queued.
    const KIND: &'static str;
    /// Runs after which a failing job is given up (kept as `failed` with its last error);
    /// None: the runner's default (DISPATCH_MAX_ATTEMPTS).
    const MAX_ATTEMPTS: Option<u32> = None;
    /// What running it needs (a pool, the mailer...), given when the kind is registered.
    type Context: Clone + Send + Sync + 'static;

    fn run(&self, ctx: &Self::Context) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// Why a run did not finish the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// Worth another try later, with backoff.
    Retry(String),
    /// Will never work (or must not be tried again): given up now.
    Permanent(String),
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Retry(why) | JobError::Permanent(why) => f.write_str(why),
        }
    }
}

/// Queues `job` to run as soon as a runner is free; it exists only once the surrounding
/// transaction commits.
pub async fn enqueue<J: BackgroundJob>(conn: &mut AsyncPgConnection, job: &J) -> diesel::QueryResult<()> {
    enqueue_at(conn, job, chrono::Utc::now()).await
}

/// Queues `job` to run at `at` or later.
pub async fn enqueue_at<J: BackgroundJob>(
    conn: &mut AsyncPgConnection,
    job: &J,
    at: chrono::DateTime<chrono::Utc>,
) -> diesel::QueryResult<()> {
    let payload = serde_json::to_string(job).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    diesel::sql_query("INSERT INTO background_jobs (kind, payload, run_at) VALUES ($1, $2::jsonb, $3)")
        .bind::<Text, _>(J::KIND)
        .bind::<Text, _>(payload)
        .bind::<Timestamptz, _>(at)
        .execute(conn)
        .await?;
    Ok(())
}
