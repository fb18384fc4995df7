//! The dispatcher: any number of instances share the sending through PostgreSQL alone.
//!
//! The loop (here): each step sends one claimed batch and meanwhile prepares the next:
//! rescue what dead instances held (`queue::rescue_expired`), start the runs that fell due
//! (`runs::start_due`), claim a batch of due deliveries with a lease (`queue::claim`), write
//! the next chunk of a large run's deliveries (`runs::expand_more`); then finished runs are
//! closed. When a step finds nothing to do, the dispatcher sleeps until
//! the next run, retry or lease expiry falls due, a wake-up arrives, or DISPATCH_INTERVAL.
//! The parts: `batch` (a batch in hand, routed, sent in groups and recorded), `outcome`
//! (what an answer does to a delivery, pure), `relays` (the SMTP servers and sender
//! identities as this instance sends through them), `guard` (a breaker per server, the
//! pacer), `budget` (rate limits shared by every instance), `queue` and `runs` (the SQL),
//! `compose` (one delivery's message), `web_view` (a delivery's message again, for the
//! browser), `listener` (notices to events).

mod batch;
mod budget;
pub mod compose;
mod guard;
pub mod listener;
pub mod outcome;
pub mod queue;
mod relays;
pub mod runs;
pub mod web_view;

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::app::AppState;
use crate::db::types::{DeliveryId, RunId};
use crate::events::{Notice, Notifier};
use guard::{Allowance, Pacer};
use queue::Batch;

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
    /// The SMTP servers (each with its breaker) and sender identities.
    relays: relays::Relays,
    /// This instance's slices of the shared rate limits.
    budgets: budget::Budgets,
    pacer: Option<Pacer>,
    totals: Totals,
    /// Deliveries claimed and not yet recorded or given back: the heartbeat keeps their leases.
    in_hand: Arc<Mutex<HashSet<DeliveryId>>>,
    /// Tells every instance's subscribers about recorded sends, after the commit.
    notifier: Notifier,
    notifier_task: tokio::task::JoinHandle<()>,
    /// Each run's message, its templates compiled once (`batch::RunInHand`).
    runs: Mutex<std::collections::HashMap<RunId, Arc<batch::RunInHand>>>,
}

/// What the work before sending found: runs started or expanded by a chunk, and a claimed batch to send.
#[derive(Default)]
struct Prepared {
    runs_moved: usize,
    claimed: Batch,
}

impl Prepared {
    fn found_work(&self) -> bool {
        self.runs_moved > 0 || !self.claimed.is_empty()
    }
}

impl Dispatcher {
    pub fn new(state: AppState) -> Dispatcher {
        let pacer = state.config().dispatch.send_rate.map(Pacer::new);
        let (notifier, notifier_task) = Notifier::start(state.pool().clone());
        Dispatcher {
            relays: relays::Relays::new(state.clone()),
            budgets: budget::Budgets::default(),
            state,
            pacer,
            totals: Totals::default(),
            in_hand: Arc::default(),
            runs: Mutex::default(),
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
        let mut batch = Batch::default();
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
        let mut batch = Batch::default();
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
        if let Allowance::Wait(left) = self.relays.allowance() {
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
    async fn step(&self, batch: Batch, stop: Option<&watch::Receiver<bool>>) -> anyhow::Result<Prepared> {
        let beside_a_batch = !batch.is_empty();
        let sending = async {
            match batch.is_empty() {
                true => Ok(()),
                false => self.send_batch(batch, stop).await,
            }
        };
        let (sent, next) = tokio::join!(sending, self.prepare(stop, beside_a_batch));
        sent?;
        let next = next?;
        let mut conn = self.state.pool().get().await?;
        runs::close_finished(&mut conn).await?;
        Ok(next)
    }

    /// The work before sending: rescue what dead instances held, start the runs that fell
    /// due, claim a batch (less while the breaker probes, none while it is open or we stop),
    /// write a chunk of a run still being expanded.
    async fn prepare(&self, stop: Option<&watch::Receiver<bool>>, beside_a_batch: bool) -> anyhow::Result<Prepared> {
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

        self.relays.refresh_if_stale().await;
        let limit = match self.relays.allowance() {
            Allowance::Batch => i64::from(config.dispatch.dispatch_batch),
            Allowance::Probe => 1,
            Allowance::Wait(_) => 0,
        };
        let claimed = if limit > 0 {
            queue::claim(&mut conn, me, config.dispatch.lease_ttl, limit).await?
        } else {
            Batch::default()
        };
        self.in_hand
            .lock()
            .expect("in-hand lock")
            .extend(claimed.deliveries.iter().map(|c| c.id));
        // One chunk of a run still being expanded, beside the batch being sent; not while a
        // claimed batch would wait for it with nothing sending (a run just started sends its
        // first chunk at once).
        let expanded = match beside_a_batch || claimed.is_empty() {
            true => runs::expand_more(&mut conn, config.accounts.daily_send_quota.is_some()).await?,
            false => None,
        };
        if let Some(run) = &expanded {
            self.notifier.send(Notice::Run {
                mailing: run.mailing_id,
                run: run.run_id,
                logged_at: Vec::new(),
            });
        }
        Ok(Prepared {
            runs_moved: started.len() + usize::from(expanded.is_some()),
            claimed,
        })
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
