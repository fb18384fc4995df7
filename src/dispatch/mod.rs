//! The dispatcher: any number of instances share the sending through PostgreSQL alone.
//!
//! Each step sends one claimed batch and meanwhile prepares the next: rescue what dead
//! instances held (`queue::rescue_expired`), start the runs that fell due
//! (`runs::start_due`), claim a batch of due deliveries with a lease (`queue::claim`). A
//! batch goes out in groups of SMTP_CONCURRENCY: one statement (`queue::advance`) records
//! the last group's outcomes and attempts (fenced by lease owner and attempt number) and
//! marks the next group SENDING just before its exchanges; the notices of the runs it
//! touched follow after the commit (`events::Notifier`). Then finished runs are closed. When a step finds nothing to do, the dispatcher sleeps
//! until the next run, retry or lease expiry falls due, a wake-up arrives, or
//! DISPATCH_INTERVAL.

pub mod compose;
mod guard;
pub mod listener;
pub mod outcome;
pub mod queue;
pub mod runs;

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use lettre::message::Mailbox;
use tokio::sync::watch;

use crate::app::AppState;
use crate::db::types::{DeliveryId, MailingId, RunId};
use crate::deliveries::model::DeliveryStatus;
use crate::events::{Notice, Notifier};
use crate::mail::message::Outgoing;
use crate::metrics::{Outcome as OutcomeLabel, Status as StatusLabel};
use guard::{Allowance, Breaker, Pacer};
use outcome::{RetryPolicy, Verdict};
use queue::{Claimed, Outcome, RunSnapshot};

/// What a dispatcher did, for `--dispatch-once`'s summary line.
#[derive(Debug, Default)]
pub struct Totals {
    runs_started: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    will_retry: AtomicU64,
    unknown: AtomicU64,
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        write!(
            f,
            "runs started {}, sent {}, failed {}, will retry {}, unknown {}",
            get(&self.runs_started),
            get(&self.sent),
            get(&self.failed),
            get(&self.will_retry),
            get(&self.unknown)
        )
    }
}

pub struct Dispatcher {
    state: AppState,
    breaker: Breaker,
    pacer: Option<Pacer>,
    totals: Totals,
    /// Deliveries claimed and not yet recorded or given back: the heartbeat keeps their leases.
    in_hand: Arc<Mutex<HashSet<DeliveryId>>>,
    /// Tells every instance's subscribers about recorded sends, after the commit.
    notifier: Notifier,
    notifier_task: tokio::task::JoinHandle<()>,
}

/// What the work before sending found: runs started, and a claimed batch to send.
#[derive(Default)]
struct Prepared {
    started: usize,
    claimed: Vec<Claimed>,
}

impl Prepared {
    fn found_work(&self) -> bool {
        self.started > 0 || !self.claimed.is_empty()
    }
}

impl Dispatcher {
    pub fn new(state: AppState) -> Dispatcher {
        let dispatch = &state.config().dispatch;
        let breaker = Breaker::new(dispatch.breaker_failures, dispatch.breaker_cooldown);
        let pacer = dispatch.send_rate.map(Pacer::new);
        let (notifier, notifier_task) = Notifier::start(state.pool().clone());
        Dispatcher {
            state,
            breaker,
            pacer,
            totals: Totals::default(),
            in_hand: Arc::default(),
            notifier,
            notifier_task,
        }
    }

    /// Sends the notices still queued, then returns what this dispatcher did.
    async fn finish(self) -> Totals {
        let Dispatcher {
            notifier,
            notifier_task,
            totals,
            ..
        } = self;
        drop(notifier);
        let _ = tokio::time::timeout(Duration::from_secs(5), notifier_task).await;
        totals
    }

    /// Dispatches until `stop` turns true; then gives back what it claimed but did not start.
    /// Sends under way finish (the caller bounds that with SHUTDOWN_GRACE).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        // Ends with this future, also when it panics: a dead dispatcher keeps no lease alive.
        let heartbeat = crate::tasks::AbortOnDrop(tokio::spawn(heartbeat(
            self.state.clone(),
            self.in_hand.clone(),
            stop.clone(),
        )));
        let config = self.state.config();
        self.state
            .health()
            .expect_ticks(config.dispatch.dispatch_interval + config.mail.send_timeout + config.db.db_pool_timeout);
        // What an earlier dispatcher of this process claimed and never began goes back now,
        // not when its lease runs out (the supervisor restarts a dispatcher that died).
        self.give_back().await;
        let mut batch = Vec::new();
        loop {
            self.tick();
            if *stop.borrow() {
                break;
            }
            // The helpers live as long as the dispatcher; one that died (a bug) ends it, and
            // the supervisor starts a fresh dispatcher with fresh helpers.
            if heartbeat.0.is_finished() || self.notifier_task.is_finished() {
                tracing::error!("the dispatcher's lease heartbeat or notifier ended; stopping this dispatcher");
                self.give_back().await;
                return;
            }
            let pause = match self.step(std::mem::take(&mut batch), Some(&stop)).await {
                Ok(next) if next.found_work() => {
                    batch = next.claimed;
                    continue;
                }
                Ok(_) => self.idle_time().await,
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), "dispatch step failed; retrying");
                    // Claims not yet started go back; sends whose outcome was not recorded
                    // lose their leases and are rescued as UNKNOWN.
                    self.give_back().await;
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.state.dispatch_wakeup().notified() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        drop(heartbeat);
        self.give_back().await;
        self.finish().await;
    }

    fn tick(&self) {
        self.state.health().tick(self.state.metrics());
    }

    /// `--dispatch-once`: starts what is due, sends every due delivery, waits for them,
    /// and returns what it did.
    pub async fn run_once(self) -> anyhow::Result<Totals> {
        let mut batch = Vec::new();
        loop {
            let sent_some = !batch.is_empty();
            let next = self.step(std::mem::take(&mut batch), None).await?;
            if !next.found_work() && !sent_some {
                break;
            }
            batch = next.claimed;
        }
        Ok(self.finish().await)
    }

    async fn give_back(&self) {
        self.in_hand.lock().expect("in-hand lock").clear();
        match self.state.pool().get().await {
            Ok(mut conn) => match queue::release(&mut conn, self.state.instance_id(), None).await {
                Ok(n) if n > 0 => tracing::info!(deliveries = n, "gave back claimed deliveries"),
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "cannot give back claimed deliveries; their leases will expire")
                }
            },
            Err(err) => tracing::warn!(error = %err, "cannot give back claimed deliveries; their leases will expire"),
        }
    }

    /// Until the next run or retry falls due, at most DISPATCH_INTERVAL.
    async fn idle_time(&self) -> Duration {
        let interval = self.state.config().dispatch.dispatch_interval;
        if let Allowance::Wait(left) = self.breaker.allowance() {
            return left.min(interval);
        }
        let Ok(mut conn) = self.state.pool().get().await else {
            return Duration::from_secs(1);
        };
        match queue::next_due_in(&mut conn).await {
            // A few milliseconds late rather than early: the database clock decides.
            Ok(Some(due)) => (due + Duration::from_millis(2)).min(interval),
            Ok(None) => interval,
            Err(_) => Duration::from_secs(1),
        }
    }

    /// Sends `batch` and meanwhile prepares the next one, so that rescuing, starting runs
    /// and claiming overlap with the mail server's replies instead of waiting between
    /// batches; then closes the runs that finished.
    async fn step(&self, batch: Vec<Claimed>, stop: Option<&watch::Receiver<bool>>) -> anyhow::Result<Prepared> {
        let sending = async {
            match batch.is_empty() {
                true => Ok(()),
                false => self.send_batch(batch, stop).await,
            }
        };
        let (sent, next) = tokio::join!(sending, self.prepare(stop));
        sent?;
        let next = next?;
        let mut conn = self.state.pool().get().await?;
        runs::close_finished(&mut conn).await?;
        Ok(next)
    }

    /// The work before sending: rescue what dead instances held, start the runs that fell
    /// due, claim a batch (less while the breaker probes, none while it is open or we stop).
    async fn prepare(&self, stop: Option<&watch::Receiver<bool>>) -> anyhow::Result<Prepared> {
        if stop.is_some_and(|s| *s.borrow()) {
            return Ok(Prepared::default());
        }
        let config = self.state.config();
        let me = self.state.instance_id();
        let mut conn = self.state.pool().get().await?;

        for touched in queue::rescue_expired(&mut conn).await? {
            self.notifier.send(Notice::Run {
                mailing: touched.mailing_id,
                run: touched.run_id,
                logged_at: vec![touched.logged_at],
            });
        }

        let started = runs::start_due(
            &mut conn,
            &config.mail.mail_from.to_string(),
            config.accounts.daily_send_quota,
            50,
        )
        .await?;
        for run in &started {
            tracing::info!(mailing_id = %run.mailing_id, run_id = %run.run_id, deliveries = run.deliveries, "run started");
            self.notifier.send(Notice::Run {
                mailing: run.mailing_id,
                run: run.run_id,
                logged_at: Vec::new(),
            });
        }
        if !started.is_empty() {
            // Let the other instances help.
            self.notifier.send(Notice::Wake);
            self.totals
                .runs_started
                .fetch_add(started.len() as u64, Ordering::Relaxed);
        }

        let limit = match self.breaker.allowance() {
            Allowance::Batch => i64::from(config.dispatch.dispatch_batch),
            Allowance::Probe => 1,
            Allowance::Wait(_) => 0,
        };
        let claimed = if limit > 0 {
            queue::claim(&mut conn, me, config.dispatch.lease_ttl, limit).await?
        } else {
            Vec::new()
        };
        self.in_hand
            .lock()
            .expect("in-hand lock")
            .extend(claimed.iter().map(|c| c.id));
        Ok(Prepared {
            started: started.len(),
            claimed,
        })
    }

    async fn send_batch(&self, claimed: Vec<Claimed>, stop: Option<&watch::Receiver<bool>>) -> anyhow::Result<()> {
        let run_ids: Vec<_> = claimed
            .iter()
            .map(|c| c.run_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let snapshots = {
            let mut conn = self.state.pool().get().await?;
            queue::run_snapshots(&mut conn, &run_ids).await?
        };
        let key = self
            .state
            .unsubscribe_key()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to_vec();
        let group_size = usize::from(self.state.config().mail.smtp_concurrency);

        let me = self.state.instance_id();
        let mut groups = claimed.chunks(group_size);
        let mut outcomes: Vec<Outcome> = Vec::new();
        // One connection records the whole batch (no pool checkout per group); it holds no
        // transaction or lock while the mail server talks.
        let mut conn = None;
        loop {
            // The next group to start, unless we are stopping or the breaker opened.
            let halt = stop.is_some_and(|s| *s.borrow()) || matches!(self.breaker.allowance(), Allowance::Wait(_));
            let next = if halt { None } else { groups.next() };
            if next.is_none() && outcomes.is_empty() {
                break;
            }
            let next_ids: Vec<DeliveryId> = next.map(|g| g.iter().map(|c| c.id).collect()).unwrap_or_default();
            // One round trip: record the last group and mark the next one SENDING. So at most
            // one group (≤ SMTP_CONCURRENCY deliveries) is ever SENDING.
            let advanced = self.advance(&mut conn, &outcomes, &next_ids).await?;
            self.tick();
            self.announce(&outcomes, advanced.logged_at);
            let go: HashSet<DeliveryId> = advanced.started.into_iter().collect();
            let db = conn.as_mut().expect("advance leaves a connection");
            self.let_go(&outcomes.iter().map(|o| o.id).collect::<Vec<_>>());
            let held_back: Vec<DeliveryId> = next_ids.iter().copied().filter(|id| !go.contains(id)).collect();
            if !held_back.is_empty() {
                // Paused or cancelled since the claim: not ours to send.
                queue::release(db, me, Some(&held_back)).await?;
                self.let_go(&held_back);
            }
            if halt {
                let rest: Vec<DeliveryId> = groups.by_ref().flatten().map(|c| c.id).collect();
                if !rest.is_empty() {
                    queue::release(db, me, Some(&rest)).await?;
                    self.let_go(&rest);
                }
            }
            let Some(group) = next else { break };
            let sends = group
                .iter()
                .filter(|c| go.contains(&c.id))
                .map(|c| self.send_one(c, snapshots.get(&c.run_id), &key));
            outcomes = futures_util::future::join_all(sends).await;
        }
        Ok(())
    }

    /// `queue::advance`, tried again on a transient failure (a dropped connection, a
    /// deadlock): it is one statement, so a failed try changed nothing, or it committed and
    /// only its answer was lost, and then the next try finds the outcomes recorded (fenced
    /// out) and the next group marked (and returned again). The outcomes in hand would
    /// otherwise be lost and their deliveries end UNKNOWN when the lease runs out, so it
    /// keeps trying for as long as a lease lasts (LEASE_TTL), not a fixed number of times:
    /// a database that drops connections faster than a few tries can land must not turn
    /// sent mail into UNKNOWN. Past that, a rescuer may have taken the group, and a late
    /// record would be fenced out anyway.
    async fn advance(
        &self,
        conn: &mut Option<crate::db::PooledConn>,
        outcomes: &[Outcome],
        next: &[DeliveryId],
    ) -> anyhow::Result<queue::Advanced> {
        let give_up_after = self.state.config().dispatch.lease_ttl;
        let first_try = Instant::now();
        let mut tried: u32 = 0;
        loop {
            tried += 1;
            let result = async {
                if conn.is_none() {
                    *conn = Some(self.state.pool().get().await?);
                }
                let db = conn.as_mut().expect("just checked out");
                anyhow::Ok(queue::advance(db, self.state.instance_id(), outcomes, next).await?)
            }
            .await;
            match result {
                Ok(advanced) => return Ok(advanced),
                Err(err) if first_try.elapsed() < give_up_after => {
                    // A fresh connection for the next try: this one may be broken.
                    *conn = None;
                    tracing::warn!(error = %err, tried, "recording sends failed; trying again");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(tried.min(10)))).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// One notice per run the recorded group touched (they share its transaction time).
    fn announce(&self, outcomes: &[Outcome], logged_at: chrono::DateTime<chrono::Utc>) {
        let runs: HashSet<(MailingId, RunId)> = outcomes.iter().map(|o| (o.mailing_id, o.run_id)).collect();
        for (mailing, run) in runs {
            self.notifier.send(Notice::Run {
                mailing,
                run,
                logged_at: vec![logged_at],
            });
        }
    }

    fn let_go(&self, ids: &[DeliveryId]) {
        let mut in_hand = self.in_hand.lock().expect("in-hand lock");
        for id in ids {
            in_hand.remove(id);
        }
    }

    /// One delivery: composed, sent, classified (`outcome::classify`). Whatever goes wrong
    /// belongs to this delivery alone: a message that cannot be composed is its
    /// PERMANENT_FAILURE, and a panic anyway (a bug) is caught here and logged with the
    /// delivery's ids: while composing it fails this delivery, while sending it is UNKNOWN
    /// (the message may have gone out). The rest of the group is recorded as it happened.
    async fn send_one(&self, delivery: &Claimed, snapshot: Option<&RunSnapshot>, key: &[u8]) -> Outcome {
        let composed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.compose(delivery, snapshot, key)))
            .unwrap_or_else(|panic| {
                Err(format!(
                    "composing the message failed: {}",
                    crate::tasks::panic_text(&*panic)
                ))
            });
        let verdict = match composed {
            Ok(message) => match std::panic::AssertUnwindSafe(self.send_composed(delivery, &message))
                .catch_unwind()
                .await
            {
                Ok(verdict) => verdict,
                Err(panic) => {
                    let reason = format!("sending failed unexpectedly: {}", crate::tasks::panic_text(&*panic));
                    tracing::error!(delivery_id = %delivery.id, mailing_id = %delivery.mailing_id, reason, "a send panicked; recorded UNKNOWN");
                    Verdict::crashed(reason)
                }
            },
            Err(reason) => {
                tracing::warn!(delivery_id = %delivery.id, mailing_id = %delivery.mailing_id, reason, "cannot compose a delivery's message");
                Verdict::not_composed(reason)
            }
        };
        self.count(&verdict);
        Outcome {
            id: delivery.id,
            run_id: delivery.run_id,
            mailing_id: delivery.mailing_id,
            attempt: delivery.attempt_count,
            delivery_status: verdict.delivery_status,
            retry_in: verdict.retry_in,
            attempt_status: verdict.attempt_status,
            response: Some(verdict.response),
        }
    }

    fn compose(&self, delivery: &Claimed, snapshot: Option<&RunSnapshot>, key: &[u8]) -> Result<Outgoing, String> {
        let config = self.state.config();
        let run = snapshot.ok_or_else(|| "the run's snapshot is missing".to_owned())?;
        let from: Mailbox = run
            .mail_from
            .parse()
            .map_err(|e| format!("MAIL_FROM of the run is not an address: {e}"))?;
        let to = compose::Recipient {
            delivery_id: delivery.id,
            client_id: delivery.client_id,
            email: &delivery.email,
            full_name: &delivery.full_name,
        };
        compose::compose(
            &config.http,
            key,
            &from,
            &run.subject,
            &run.body,
            &to,
            config.mail.max_message_size,
        )
    }

    /// One SMTP exchange (paced), fed to the breaker and the metrics, classified.
    async fn send_composed(&self, delivery: &Claimed, message: &Outgoing) -> Verdict {
        let config = self.state.config();
        if let Some(pacer) = &self.pacer {
            pacer.wait_turn().await;
        }
        let started = Instant::now();
        let result = self.state.mailer().send(message).await;
        self.state
            .metrics()
            .send_seconds
            .observe(started.elapsed().as_secs_f64());
        self.breaker
            .record(result.as_ref().err().is_some_and(outcome::connection_failed));
        let policy = RetryPolicy {
            max_attempts: config.dispatch.max_attempts,
            retry_base: config.dispatch.retry_base,
            retry_max: config.dispatch.retry_max,
        };
        let used = (delivery.attempt_count - delivery.attempts_before_retry).max(1) as u32;
        outcome::classify(&result, used, &policy, crate::retry::jitter())
    }

    /// The metrics and `--dispatch-once`'s totals.
    fn count(&self, verdict: &Verdict) {
        let metrics = self.state.metrics();
        let outcome = match verdict.delivery_status {
            DeliveryStatus::Pending => "retry",
            other => other.as_db(),
        };
        metrics
            .deliveries
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
        metrics
            .attempts
            .get_or_create(&StatusLabel {
                status: verdict.attempt_status.as_db().to_owned(),
            })
            .inc();
        metrics.breaker_open.set(i64::from(self.breaker.is_open()));
        let counter = match verdict.delivery_status {
            DeliveryStatus::Sent => &self.totals.sent,
            DeliveryStatus::Failed => &self.totals.failed,
            DeliveryStatus::Pending => &self.totals.will_retry,
            _ => &self.totals.unknown,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Extends the leases of what this instance has in hand every third of LEASE_TTL.
async fn heartbeat(state: AppState, in_hand: Arc<Mutex<HashSet<DeliveryId>>>, mut stop: watch::Receiver<bool>) {
    let lease = state.config().dispatch.lease_ttl;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(lease / 3) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let ids: Vec<DeliveryId> = in_hand.lock().expect("in-hand lock").iter().copied().collect();
        if ids.is_empty() {
            continue;
        }
        if let Ok(mut conn) = state.pool().get().await
            && let Err(err) = queue::extend_leases(&mut conn, state.instance_id(), &ids, lease).await
        {
            tracing::warn!(error = %err, "cannot extend leases");
        }
    }
}
