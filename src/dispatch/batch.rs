//! A batch in hand: sent in groups of SMTP_CONCURRENCY, each group's outcomes recorded
//! and the next group marked SENDING in one statement (`queue::advance`), the runs it
//! touched announced after the commit. Before a group is marked, each delivery is routed
//! (`route`): its mailing's sending window must be open, its recipient domain's and a
//! server's shared budget must have room, and that server's breaker must let it through;
//! one that cannot go now is given back to wait (`queue::defer`). One delivery is then
//! composed, paced, sent (to the next allowed server when one cannot be reached), fed to
//! the breakers and the metrics, and classified (`outcome::classify`); whatever goes wrong
//! belongs to that delivery alone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use lettre::message::Mailbox;
use tokio::sync::watch;

use super::guard::Allowance;
use super::outcome::{self, RetryPolicy, Verdict};
use super::queue::{self, Batch, Claimed, Outcome, RunSnapshot};
use super::relays::{Identity, Relay};
use super::{Dispatcher, compose};
use crate::db::types::{ClientId, DeliveryId, MailingId, RunId, SmtpServerId};
use crate::deliverability::bounces;
use crate::deliveries::model::DeliveryStatus;
use crate::events::Notice;
use crate::mail::message::Outgoing;
use crate::messages::template::MessageTemplates;
use crate::metrics::{Outcome as OutcomeLabel, Status as StatusLabel};
use crate::senders::window::SendingWindow;

/// Runs kept with their compiled templates: a body is at most 1 MiB, so at most some 64 MiB
/// in the worst case, and a few KiB in the usual one.
const RUNS_KEPT: usize = 32;

/// A run as its deliveries are sent: what it snapshotted, its templates compiled (or why
/// they do not compile: every delivery of the run fails with that), its day.
pub struct RunInHand {
    pub snapshot: RunSnapshot,
    pub templates: Result<MessageTemplates, String>,
    /// `run.date`: the run's day in the mailing's time zone.
    pub date: String,
    pub zone: chrono_tz::Tz,
    pub window: Option<SendingWindow>,
    /// When it was read: a run kept longer than SENDERS_REFRESH is read again (its
    /// mailing's identity or window may have changed).
    pub read_at: Instant,
}

impl RunInHand {
    pub(super) fn new(snapshot: RunSnapshot) -> RunInHand {
        // A panic while compiling (a bug) fails the run's deliveries, not the dispatcher.
        let templates = std::panic::catch_unwind(|| MessageTemplates::compile(&snapshot.content()))
            .unwrap_or_else(|panic| {
                Err((
                    "message",
                    crate::messages::template::Invalid {
                        line: None,
                        message: format!("compiling failed: {}", crate::tasks::panic_text(&*panic)),
                    },
                ))
            })
            .map_err(|(part, invalid)| format!("the message's {part} template does not parse: {invalid}"));
        let zone: chrono_tz::Tz = snapshot.time_zone.parse().unwrap_or(chrono_tz::UTC);
        let date = snapshot.run_at.with_timezone(&zone).format("%Y-%m-%d").to_string();
        let window = snapshot
            .sending_window
            .as_ref()
            .and_then(|w| serde_json::from_value(w.clone()).ok());
        RunInHand {
            snapshot,
            templates,
            date,
            zone,
            window,
            read_at: Instant::now(),
        }
    }
}

impl RunInHand {
    /// The run's message as `compose` takes it, or why its templates do not compile.
    pub(super) fn message(&self) -> Result<compose::RunMessage<'_>, String> {
        Ok(compose::RunMessage {
            templates: self.templates.as_ref().map_err(Clone::clone)?,
            mailing_id: self.snapshot.mailing_id,
            owner_id: self.snapshot.owner_id,
            date: self.date.clone(),
        })
    }
}

impl Dispatcher {
    pub(super) async fn send_batch(&self, batch: Batch, stop: Option<&watch::Receiver<bool>>) -> anyhow::Result<()> {
        let slices = batch.slice_ids();
        let claimed = batch.deliveries;
        let run_ids: Vec<_> = claimed
            .iter()
            .map(|c| c.run_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let client_ids: Vec<ClientId> = claimed.iter().map(|c| c.client_id).collect();
        let (runs, clients) = {
            let mut conn = self.state.pool().get().await?;
            let runs = self.runs_in_hand(&mut conn, &run_ids).await?;
            (runs, queue::client_details(&mut conn, &client_ids).await?)
        };
        let senders = self.relays.current();
        if runs
            .values()
            .filter_map(|r| r.snapshot.sender_identity_id)
            .any(|id| !senders.identities.contains_key(&id))
        {
            self.relays.refresh_soon().await;
        }
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
        // Deliveries that may not go out yet, given back together once the batch is done
        // (still leased meanwhile): one statement per batch, not one per group.
        let mut deferred: Vec<(DeliveryId, Duration)> = Vec::new();
        // Slices some of whose deliveries were given back unsent: not done after the batch.
        let mut unfinished: HashSet<i64> = HashSet::new();
        let slice_of: HashMap<DeliveryId, i64> = claimed.iter().filter_map(|c| Some((c.id, c.slice_id?))).collect();
        loop {
            // The next group to start, unless we are stopping or the breaker opened.
            let halt = stop.is_some_and(|s| *s.borrow()) || matches!(self.relays.allowance(), Allowance::Wait(_));
            let next = if halt { None } else { groups.next() };
            if next.is_none() && outcomes.is_empty() {
                break;
            }
            // Where each delivery of the next group goes, or how long it must wait.
            let mut routes: HashMap<DeliveryId, Route> = HashMap::new();
            for delivery in next.unwrap_or_default() {
                match self.route(delivery, runs.get(&delivery.run_id).map(|r| &**r)).await {
                    Ok(route) => {
                        routes.insert(delivery.id, route);
                    }
                    Err(wait) => deferred.push((delivery.id, wait)),
                }
            }
            let (next_ids, next_mailings): (Vec<DeliveryId>, Vec<MailingId>) = next
                .unwrap_or_default()
                .iter()
                .filter(|c| routes.contains_key(&c.id))
                .map(|c| (c.id, c.mailing_id))
                .unzip();
            // One round trip: record the last group and mark the next one SENDING. So at most
            // one group (≤ SMTP_CONCURRENCY deliveries) is ever SENDING.
            let advanced = self
                .advance(&mut conn, &outcomes, &next_ids, &slices, &next_mailings)
                .await?;
            self.tick();
            self.announce(&outcomes, advanced.logged_at);
            if outcomes.iter().any(|o| o.bounce.is_some()) {
                self.record_bounces(conn.as_mut().expect("advance leaves a connection"), &outcomes)
                    .await;
            }
            let go: HashSet<DeliveryId> = advanced.started.into_iter().collect();
            let db = conn.as_mut().expect("advance leaves a connection");
            self.let_go(&outcomes.iter().map(|o| o.id).collect::<Vec<_>>());
            let held_back: Vec<DeliveryId> = next_ids.iter().copied().filter(|id| !go.contains(id)).collect();
            // Paused or cancelled since the claim: not ours to send.
            self.give_back_unsent(db, &held_back, &slice_of, &mut unfinished)
                .await?;
            if halt {
                let rest: Vec<DeliveryId> = groups.by_ref().flatten().map(|c| c.id).collect();
                self.give_back_unsent(db, &rest, &slice_of, &mut unfinished).await?;
            }
            let Some(group) = next else { break };
            let sends = group
                .iter()
                .filter(|c| go.contains(&c.id))
                .filter_map(|c| Some((c, routes.remove(&c.id)?)))
                .map(|(c, route)| {
                    self.send_one(
                        c,
                        runs.get(&c.run_id).map(|r| &**r),
                        clients.get(&c.client_id),
                        &key,
                        route,
                    )
                });
            outcomes = futures_util::future::join_all(sends).await;
        }
        if !deferred.is_empty() {
            self.defer(&mut conn, &deferred).await?;
        }
        if !batch.slices.is_empty() {
            let (done, rest): (Vec<_>, Vec<_>) = batch
                .slices
                .iter()
                .partition(|s| s.whole && !unfinished.contains(&s.id));
            let ids = |slices: Vec<&queue::SliceClaim>| slices.into_iter().map(|s| s.id).collect::<Vec<_>>();
            if conn.is_none() {
                conn = Some(self.state.pool().get().await?);
            }
            let db = conn.as_mut().expect("just checked out");
            queue::finish_slices(db, me, &ids(done), &ids(rest)).await?;
        }
        Ok(())
    }

    /// Gives deliveries back to wait (see `route`); they leave this instance's hands.
    async fn defer(
        &self,
        conn: &mut Option<crate::db::PooledConn>,
        deferred: &[(DeliveryId, Duration)],
    ) -> anyhow::Result<()> {
        if conn.is_none() {
            *conn = Some(self.state.pool().get().await?);
        }
        let db = conn.as_mut().expect("just checked out");
        queue::defer(db, self.state.instance_id(), deferred).await?;
        self.let_go(&deferred.iter().map(|(id, _)| *id).collect::<Vec<_>>());
        Ok(())
    }

    /// Where one delivery goes now, or how long it must wait: its mailing's sending window
    /// must be open, its recipient domain's budget (DOMAIN_LIMITS) must have room, and one
    /// of the servers its identity may use, by priority, must let it through (breaker) and
    /// have budget. With no server to try at all, the route is empty and the send fails
    /// as a temporary failure that says so.
    async fn route(&self, delivery: &Claimed, run: Option<&RunInHand>) -> Result<Route, Duration> {
        let senders = self.relays.current();
        let identity_id = run.and_then(|r| r.snapshot.sender_identity_id);
        let identity = senders.identity(identity_id).cloned();
        if let Some(run) = run
            && let Some(window) = &run.window
        {
            let wait = window.wait(chrono::Utc::now(), run.zone);
            if !wait.is_zero() {
                return Err(wait);
            }
        }
        let domain = delivery.email.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
        if let Some(domain) = domain
            && let Some(limit) = self
                .state
                .config()
                .senders
                .domain_limits
                .iter()
                .find(|l| l.domain == domain)
        {
            let windows = super::budget::windows(&[(limit.limit.window.as_secs() as i32, limit.limit.max as i32)]);
            self.budgets
                .take(self.state.pool(), &format!("domain:{domain}"), &windows)
                .await?;
        }
        let mut candidates = senders.candidates(identity_id);
        if candidates.is_empty() {
            return Ok(Route {
                relay: None,
                fallbacks: Vec::new(),
                identity,
            });
        }
        match self.next_relay(&mut candidates).await {
            Ok(relay) => Ok(Route {
                relay: Some(relay),
                fallbacks: candidates,
                identity,
            }),
            Err(wait) => Err(wait),
        }
    }

    /// Takes the first of `candidates` (by priority) whose breaker lets a message through
    /// and whose budget has room; those tried are removed. Err: the shortest wait for one.
    async fn next_relay(&self, candidates: &mut Vec<Arc<Relay>>) -> Result<Arc<Relay>, Duration> {
        let mut wait: Option<Duration> = None;
        let mut shorter = |w: Duration| wait = Some(wait.map_or(w, |x| x.min(w)));
        while !candidates.is_empty() {
            let relay = candidates.remove(0);
            if let Allowance::Wait(left) = relay.breaker.allowance() {
                shorter(left);
                continue;
            }
            if let Err(left) = self
                .budgets
                .take(self.state.pool(), &relay.scope(), &relay.windows)
                .await
            {
                shorter(left);
                continue;
            }
            if relay.breaker.try_pass() {
                return Ok(relay);
            }
            // Half open with its probe under way: the budget taken is not used (never more
            // than the limit, at worst a little less).
            shorter(Duration::from_millis(100));
        }
        Err(wait.unwrap_or(Duration::from_secs(1)))
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
        slices: &[i64],
        mailings: &[MailingId],
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
                anyhow::Ok(queue::advance(db, self.state.instance_id(), outcomes, next, slices, mailings).await?)
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

    /// The group's bounces (after its outcomes, which they follow from), each in a
    /// transaction of its own: one that fails is logged and belongs to its delivery alone;
    /// the sending goes on.
    async fn record_bounces(&self, conn: &mut crate::db::PooledConn, outcomes: &[Outcome]) {
        use diesel_async::AsyncConnection;
        let policy = self.state.config().bounces.policy();
        for outcome in outcomes {
            let Some(kind) = outcome.bounce else { continue };
            let report = bounces::Report {
                delivery: outcome.id,
                kind,
                diagnostic: outcome.response.clone(),
                source: bounces::Source::Smtp,
            };
            let recorded = conn
                .transaction::<_, diesel::result::Error, _>(async |conn| bounces::record(conn, &report, &policy).await)
                .await;
            match recorded {
                Ok(bounces::Recorded::New {
                    suppressed: Some(reason),
                    ..
                }) => {
                    tracing::info!(delivery_id = %outcome.id, ?kind, ?reason, "bounce: address suppressed");
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(delivery_id = %outcome.id, error = %err, "cannot record a bounce"),
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

    /// Gives back deliveries of the batch that will not be sent by it: those claimed on
    /// their own lose their lease now; a slice's stay in the slice, which then goes back
    /// unfinished after the batch (they have no lease of their own to release).
    async fn give_back_unsent(
        &self,
        db: &mut crate::db::PooledConn,
        ids: &[DeliveryId],
        slice_of: &HashMap<DeliveryId, i64>,
        unfinished: &mut HashSet<i64>,
    ) -> anyhow::Result<()> {
        let own: Vec<DeliveryId> = ids.iter().copied().filter(|id| !slice_of.contains_key(id)).collect();
        if !own.is_empty() {
            queue::release(db, self.state.instance_id(), Some(&own)).await?;
        }
        self.let_go(ids);
        unfinished.extend(ids.iter().filter_map(|id| slice_of.get(id)));
        Ok(())
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
    async fn send_one(
        &self,
        delivery: &Claimed,
        run: Option<&RunInHand>,
        client: Option<&queue::ClientDetails>,
        key: &[u8],
        route: Route,
    ) -> Outcome {
        let composed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.compose(delivery, run, client, key, route.identity.as_deref())
        }))
        .unwrap_or_else(|panic| {
            Err(format!(
                "composing the message failed: {}",
                crate::tasks::panic_text(&*panic)
            ))
        });
        let mut carried_by = route.relay.as_ref().map(|r| r.id);
        let verdict = match composed {
            Ok(message) => {
                match std::panic::AssertUnwindSafe(self.send_composed(delivery, &message, route, &mut carried_by))
                    .catch_unwind()
                    .await
                {
                    Ok(verdict) => verdict,
                    Err(panic) => {
                        let reason = format!("sending failed unexpectedly: {}", crate::tasks::panic_text(&*panic));
                        tracing::error!(delivery_id = %delivery.id, mailing_id = %delivery.mailing_id, reason, "a send panicked; recorded UNKNOWN");
                        Verdict::crashed(reason)
                    }
                }
            }
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
            bounce: verdict.bounce,
            response: Some(verdict.response),
            smtp_server: carried_by,
        }
    }

    fn compose(
        &self,
        delivery: &Claimed,
        run: Option<&RunInHand>,
        client: Option<&queue::ClientDetails>,
        key: &[u8],
        identity: Option<&Identity>,
    ) -> Result<Outgoing, String> {
        let config = self.state.config();
        let run = run.ok_or_else(|| "the run's snapshot is missing".to_owned())?;
        let message = run.message()?;
        let from: Mailbox = match identity {
            Some(identity) => identity.from.clone(),
            None => run
                .snapshot
                .mail_from
                .parse()
                .map_err(|e| format!("MAIL_FROM of the run is not an address: {e}"))?,
        };
        let dkim = match identity {
            Some(identity) => identity.dkim.as_ref().map_err(Clone::clone)?.as_ref(),
            None => self.state.dkim(),
        };
        let to = compose::Recipient::new(
            delivery.id,
            delivery.client_id,
            &delivery.email,
            &delivery.full_name,
            client,
        );
        let sender = compose::Sender {
            from: &from,
            bounce: config.bounces.bounce_address.as_ref(),
            feedback_sender: &config.bounces.feedback_sender_id,
            reply_to: identity.and_then(|i| i.reply_to.as_deref()),
            dkim,
            max_size: config.mail.max_message_size,
        };
        compose::compose(&config.http, key, &message, &to, &sender)
    }

    /// The runs of a batch with their templates compiled, each once per instance while it
    /// is kept (all are dropped when RUNS_KEPT are, and the next batches compile theirs again).
    async fn runs_in_hand(
        &self,
        conn: &mut crate::db::PooledConn,
        run_ids: &[RunId],
    ) -> anyhow::Result<HashMap<RunId, Arc<RunInHand>>> {
        let known: HashMap<RunId, Arc<RunInHand>> = {
            let runs = self.runs.lock().expect("runs lock");
            run_ids
                .iter()
                .filter_map(|id| runs.get(id).map(|r| (*id, r.clone())))
                .filter(|(_, r)| r.read_at.elapsed() < self.state.config().senders.senders_refresh)
                .collect()
        };
        let missing: Vec<RunId> = run_ids.iter().copied().filter(|id| !known.contains_key(id)).collect();
        if missing.is_empty() {
            return Ok(known);
        }
        // Compiled before the lock is taken: a large template takes a moment.
        let fresh: Vec<(RunId, Arc<RunInHand>)> = queue::run_snapshots(conn, &missing)
            .await?
            .into_iter()
            .map(|(id, snapshot)| (id, Arc::new(RunInHand::new(snapshot))))
            .collect();
        let mut runs = self.runs.lock().expect("runs lock");
        if runs.len() >= RUNS_KEPT {
            runs.clear();
        }
        let mut all = known;
        for (id, run) in fresh {
            runs.insert(id, run.clone());
            all.insert(id, run);
        }
        Ok(all)
    }

    /// One SMTP exchange (paced) through the routed server, fed to its breaker and the
    /// metrics, classified. A server that cannot be reached (nothing was sent) hands the
    /// message to the next one allowed, by priority; `carried_by` ends as the last tried.
    async fn send_composed(
        &self,
        delivery: &Claimed,
        message: &Outgoing,
        mut route: Route,
        carried_by: &mut Option<SmtpServerId>,
    ) -> Verdict {
        let config = self.state.config();
        let Some(mut relay) = route.relay.take() else {
            return Verdict::no_server();
        };
        let result = loop {
            if let Some(pacer) = &self.pacer {
                pacer.wait_turn().await;
            }
            *carried_by = Some(relay.id);
            let started = Instant::now();
            let result = relay.mailer.send(message).await;
            self.state
                .metrics()
                .send_seconds
                .observe(started.elapsed().as_secs_f64());
            let unreachable = result.as_ref().err().is_some_and(outcome::connection_failed);
            self.relays.record(&relay, unreachable);
            if unreachable && let Ok(next) = self.next_relay(&mut route.fallbacks).await {
                tracing::info!(delivery_id = %delivery.id, from = relay.name, to = next.name, "SMTP server unreachable; trying the next");
                relay = next;
                continue;
            }
            break result;
        };
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
        metrics
            .breaker_open
            .set(i64::from(matches!(self.relays.allowance(), Allowance::Wait(_))));
        let counter = match verdict.delivery_status {
            DeliveryStatus::Sent => &self.totals.sent,
            DeliveryStatus::Failed => &self.totals.failed,
            DeliveryStatus::Pending => &self.totals.will_retry,
            _ => &self.totals.unknown,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where one delivery goes: the server chosen for it (its budget taken), the others its
/// identity may use after it, by priority, and the identity it is sent as (None: MAIL_FROM).
pub(super) struct Route {
    relay: Option<Arc<Relay>>,
    fallbacks: Vec<Arc<Relay>>,
    identity: Option<Arc<Identity>>,
}
