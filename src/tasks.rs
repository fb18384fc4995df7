//! Background tasks under a supervisor, and the health `/readyz` reports from them.
//!
//! Every long-running task (dispatcher, event listener, account-mail worker, sweeper) runs
//! under [`supervise`]: if it ends while the service is not stopping (it returned, or
//! panicked on a bug), that is logged at ERROR, counted in `/metrics`
//! (`mailwarm_task_restarts_total`), shown by `/readyz` (503, with the reason) while it
//! waits to restart, and the task is started again with a backoff of 1 s doubling to 30 s.
//! A task that dies takes its helpers with it (the dispatcher's lease heartbeat ends with
//! the dispatcher), so a dead task never keeps leases alive that nobody will finish.
//!
//! The dispatcher also marks each tick (each step of its loop, each recorded group); an
//! instance that dispatches and has not ticked within DISPATCH_INTERVAL + SEND_TIMEOUT +
//! DB_POOL_TIMEOUT is not ready either, whatever the reason (a wedged task, a database
//! that does not answer the queue's statements).
//!
//! Written here rather than taken from a crate: it is a loop over tokio's JoinHandle, and
//! the crates that supervise tasks bring their own shutdown model, where this service
//! already has one (the `stop` watch channel).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::{Metrics, Task};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A task that ran this long before it died starts again after the first backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// What the supervisor and the dispatcher know of this instance's background work.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Tasks waiting to be restarted, with why they ended.
    restarting: Mutex<BTreeMap<&'static str, String>>,
    /// Set while a dispatcher runs here: how long a tick may take.
    tick_deadline: Mutex<Option<Duration>>,
    /// Unix time in milliseconds of the dispatcher's last tick.
    last_tick_ms: AtomicI64,
    dispatching: AtomicBool,
}

impl Health {
    /// This instance dispatches; a tick is due within `deadline`.
    pub fn expect_ticks(&self, deadline: Duration) {
        *self.inner.tick_deadline.lock().expect("health lock") = Some(deadline);
        // A dispatcher that never gets to its first tick (stuck starting) is overdue too.
        self.inner
            .last_tick_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        self.inner.dispatching.store(true, Ordering::Relaxed);
    }

    /// The dispatcher made progress (a step ended or a group was recorded).
    pub fn tick(&self, metrics: &Metrics) {
        let now = chrono::Utc::now();
        self.inner.last_tick_ms.store(now.timestamp_millis(), Ordering::Relaxed);
        metrics.dispatch_last_tick.set(now.timestamp_millis() as f64 / 1000.0);
    }

    fn restarting(&self, task: &'static str, reason: String) {
        self.inner.restarting.lock().expect("health lock").insert(task, reason);
    }

    fn running(&self, task: &'static str) {
        self.inner.restarting.lock().expect("health lock").remove(task);
    }

    /// Why this instance is not ready, if it is not: one line per problem.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .inner
            .restarting
            .lock()
            .expect("health lock")
            .iter()
            .map(|(task, reason)| format!("the {task} task is restarting: {reason}"))
            .collect();
        let deadline = *self.inner.tick_deadline.lock().expect("health lock");
        if let Some(deadline) = deadline.filter(|_| self.inner.dispatching.load(Ordering::Relaxed)) {
            let last = self.inner.last_tick_ms.load(Ordering::Relaxed);
            let since = chrono::Utc::now().timestamp_millis() - last;
            if since > deadline.as_millis() as i64 {
                problems.push(format!(
                    "the dispatcher has not finished a tick for {:.1} s (expected within {:.1} s)",
                    since as f64 / 1000.0,
                    deadline.as_secs_f64()
                ));
            }
        }
        problems
    }
}

/// Runs `task` (made afresh by `make` for each start) until `stop` turns true, restarting
/// it whenever it ends before that. The returned handle ends when the task has stopped.
pub fn supervise<F, Fut>(
    name: &'static str,
    health: Health,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
    make: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = tokio::time::Instant::now();
            let ended = tokio::spawn(make()).await;
            if *stop.borrow() {
                return;
            }
            let reason = match ended {
                Ok(()) => "it ended on its own".to_owned(),
                Err(err) if err.is_panic() => format!("it panicked: {}", panic_text(&*err.into_panic())),
                Err(err) => format!("it was cancelled: {err}"),
            };
            if started.elapsed() > HEALTHY_RUN {
                backoff = FIRST_BACKOFF;
            }
            tracing::error!(task = name, reason, ?backoff, "a background task ended; restarting it");
            metrics
                .task_restarts
                .get_or_create(&Task { task: name.to_owned() })
                .inc();
            health.restarting(name, reason);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            health.running(name);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

/// What a panic carried, as text.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Aborts a helper task when its owner is dropped (also when the owner panics).
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `check` until it holds or 10 s pass.
    async fn eventually(check: impl Fn() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check() {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    #[tokio::test]
    async fn a_task_that_dies_is_restarted_and_reported() {
        let health = Health::default();
        let metrics = Metrics::default();
        let (_stop_tx, stop) = watch::channel(false);
        let starts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = starts.clone();
        let handle = supervise("test", health.clone(), metrics.clone(), stop, move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("poison");
                }
                std::future::pending::<()>().await
            }
        });
        assert!(eventually(|| !health.problems().is_empty()).await);
        let problems = health.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("test task is restarting: it panicked: poison"),
            "{problems:?}"
        );
        assert!(
            metrics
                .encode()
                .contains("mailwarm_task_restarts_total{task=\"test\"} 1")
        );
        // Restarted after the backoff, and ready again.
        assert!(eventually(|| starts.load(Ordering::SeqCst) == 2 && health.problems().is_empty()).await);
        handle.abort();
    }
}
