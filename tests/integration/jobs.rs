//! The background-job runner on a real PostgreSQL: a job exists only if the transaction
//! that queued it commits, a failing job is retried and then given up, a panicking job is
//! that job's failure and not the runner's, two runners never run one job twice, and a
//! recurring job has one row whatever the number of instances.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use diesel::sql_types::{BigInt, Integer, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use mailwarm::db::{DbPool, build_pool};
use mailwarm::jobs::{BackgroundJob, JobError, Runner, RunnerSettings, enqueue};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::common::TestDb;

/// A job that does what its payload says, counting its runs in the context.
#[derive(Serialize, Deserialize)]
struct Probe {
    /// "ok", "retry", "permanent" or "panic".
    behaviour: String,
}

#[derive(Clone, Default)]
struct Runs(Arc<AtomicU32>);

impl Runs {
    fn count(&self) -> u32 {
        AtomicU32::load(&self.0, Ordering::SeqCst)
    }
}

impl BackgroundJob for Probe {
    const KIND: &'static str = "test_probe";
    const MAX_ATTEMPTS: Option<u32> = Some(3);
    type Context = Runs;

    async fn run(&self, runs: &Runs) -> Result<(), JobError> {
        runs.0.fetch_add(1, Ordering::SeqCst);
        match self.behaviour.as_str() {
            "ok" => Ok(()),
            "retry" => Err(JobError::Retry("not yet".into())),
            "panic" => panic!("a job that panics"),
            _ => Err(JobError::Permanent("never".into())),
        }
    }
}

fn settings() -> RunnerSettings {
    RunnerSettings {
        poll: Duration::from_millis(50),
        lease: Duration::from_secs(30),
        concurrency: 10,
        max_attempts: 5,
        retry_base: Duration::ZERO,
        retry_max: Duration::ZERO,
    }
}

fn runner(pool: &DbPool, runs: &Runs) -> Runner {
    Runner::new(pool.clone(), uuid::Uuid::new_v4(), settings(), Arc::new(Notify::new())).register::<Probe>(runs.clone())
}

fn probe(behaviour: &str) -> Probe {
    Probe {
        behaviour: behaviour.into(),
    }
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Row {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Text)]
    last_error: String,
}

async fn rows(db: &TestDb) -> Vec<Row> {
    diesel::sql_query(
        "SELECT status, attempts, coalesce(last_error, '') AS last_error FROM background_jobs \
         WHERE kind = 'test_probe' ORDER BY created_at",
    )
    .load(&mut db.conn().await)
    .await
    .unwrap()
}

/// Runs due jobs until none is left to claim now.
async fn drain(runner: &Runner) {
    while runner.run_due().await.unwrap() > 0 {}
}

#[tokio::test]
async fn a_job_exists_only_if_its_transaction_commits_and_finished_jobs_go() {
    let db = TestDb::migrated().await;
    let pool = build_pool(&db.url, 4, Duration::from_secs(5)).unwrap();
    let mut conn = db.conn().await;
    let rolled_back = conn
        .transaction::<(), diesel::result::Error, _>(async |conn| {
            enqueue(conn, &probe("ok")).await?;
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(rolled_back.is_err());
    assert!(rows(&db).await.is_empty(), "a rolled-back enqueue leaves no job");

    enqueue(&mut conn, &probe("ok")).await.unwrap();
    let runs = Runs::default();
    drain(&runner(&pool, &runs)).await;
    assert_eq!(runs.count(), 1);
    assert!(rows(&db).await.is_empty(), "a finished job's row is deleted");
}

#[tokio::test]
async fn failing_jobs_are_retried_then_given_up_and_a_panic_is_one_jobs_failure() {
    let db = TestDb::migrated().await;
    let pool = build_pool(&db.url, 4, Duration::from_secs(5)).unwrap();
    let mut conn = db.conn().await;
    for behaviour in ["retry", "permanent", "panic"] {
        enqueue(&mut conn, &probe(behaviour)).await.unwrap();
    }
    let runs = Runs::default();
    let runner = runner(&pool, &runs);
    drain(&runner).await;
    // retry: 3 runs (MAX_ATTEMPTS); permanent: 1; panic: retried like a transient error, 3.
    assert_eq!(runs.count(), 7);
    let left = rows(&db).await;
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.iter().all(|row| row.status == "failed"), "{left:?}");
    assert_eq!(left[0].attempts, 3);
    assert_eq!(left[0].last_error, "not yet");
    assert_eq!(left[1].attempts, 1);
    assert_eq!(left[1].last_error, "never");
    assert_eq!(left[2].attempts, 3);
    assert!(left[2].last_error.contains("panicked"), "{left:?}");
    // The runner is still there and runs what comes next.
    enqueue(&mut conn, &probe("ok")).await.unwrap();
    drain(&runner).await;
    assert_eq!(runs.count(), 8);
}

#[tokio::test]
async fn two_runners_never_run_one_job_twice_and_an_expired_lease_is_taken_over() {
    let db = TestDb::migrated().await;
    let pool = build_pool(&db.url, 8, Duration::from_secs(5)).unwrap();
    let mut conn = db.conn().await;
    for _ in 0..200 {
        enqueue(&mut conn, &probe("ok")).await.unwrap();
    }
    let runs = Runs::default();
    let (a, b) = (runner(&pool, &runs), runner(&pool, &runs));
    tokio::join!(drain(&a), drain(&b));
    assert_eq!(runs.count(), 200);
    assert!(rows(&db).await.is_empty());

    // A runner that died mid-job: its lease runs out and another runner takes the job.
    enqueue(&mut conn, &probe("ok")).await.unwrap();
    diesel::sql_query(
        "UPDATE background_jobs SET status = 'running', lease_owner = gen_random_uuid(), attempts = 1, \
         lease_expires_at = now() - interval '1 second' WHERE kind = 'test_probe'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    drain(&a).await;
    assert_eq!(runs.count(), 201);
    assert!(rows(&db).await.is_empty());
}

#[tokio::test]
async fn a_recurring_job_has_one_row_whatever_the_number_of_runners() {
    let db = TestDb::migrated().await;
    let pool = build_pool(&db.url, 4, Duration::from_secs(5)).unwrap();
    let runs = Runs::default();
    let every = Duration::from_secs(3600);
    let recurring = |runs: &Runs| {
        Runner::new(pool.clone(), uuid::Uuid::new_v4(), settings(), Arc::new(Notify::new())).register_recurring(
            &probe("ok"),
            every,
            runs.clone(),
        )
    };
    let (a, b) = (recurring(&runs), recurring(&runs));
    a.schedule_recurring().await.unwrap();
    b.schedule_recurring().await.unwrap();
    tokio::join!(drain(&a), drain(&b));
    assert_eq!(runs.count(), 1, "run once, by one of them");

    #[derive(diesel::QueryableByName)]
    struct Next {
        #[diesel(sql_type = BigInt)]
        count: i64,
        #[diesel(sql_type = BigInt)]
        in_seconds: i64,
    }
    let next: Next = diesel::sql_query(
        "SELECT count(*) AS count, max(extract(epoch FROM run_at - now()))::bigint AS in_seconds \
         FROM background_jobs WHERE kind = 'test_probe' AND status = 'pending' AND attempts = 0",
    )
    .get_result(&mut db.conn().await)
    .await
    .unwrap();
    assert_eq!(next.count, 1);
    assert!(
        (3500..=3600).contains(&next.in_seconds),
        "next run in {} s",
        next.in_seconds
    );
}
