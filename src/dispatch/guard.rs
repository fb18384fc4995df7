//! What keeps a sick mail server from hurting the service: a circuit breaker that stops
//! claiming after consecutive connection-level failures, waits, then probes with one
//! message; and an optional pace (SEND_RATE) per instance.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many deliveries the breaker lets this instance claim now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Closed: a full batch.
    Batch,
    /// Half open: one probe message decides.
    Probe,
    /// Open: none, for this long.
    Wait(Duration),
}

pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            state: Mutex::default(),
        }
    }

    pub fn allowance(&self) -> Allowance {
        let state = self.state.lock().expect("breaker lock");
        match state.open_until {
            None => Allowance::Batch,
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Allowance::Wait(left),
                _ => Allowance::Probe,
            },
        }
    }

    pub fn is_open(&self) -> bool {
        self.state.lock().expect("breaker lock").open_until.is_some()
    }

    /// Feeds the outcome of one exchange: `connection_failed` when the mail server could
    /// not be reached or dropped us before answering (not a 4xx/5xx reply).
    pub fn record(&self, connection_failed: bool) {
        let mut state = self.state.lock().expect("breaker lock");
        if !connection_failed {
            if state.open_until.take().is_some() {
                tracing::info!("mail server answers again; circuit breaker closed");
            }
            state.consecutive_failures = 0;
            return;
        }
        state.consecutive_failures += 1;
        let probing = state.open_until.is_some();
        if probing || state.consecutive_failures >= self.threshold {
            if !probing {
                tracing::warn!(failures = state.consecutive_failures, cooldown = ?self.cooldown, "mail server unreachable; circuit breaker open");
            }
            state.open_until = Some(Instant::now() + self.cooldown);
        }
    }
}

/// Spaces sends at least 1/rate apart.
pub struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    pub fn new(per_second: f64) -> Pacer {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / per_second),
            next: Mutex::new(Instant::now()),
        }
    }

    pub async fn wait_turn(&self) {
        let wait = {
            let mut next = self.next.lock().expect("pacer lock");
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_then_probes() {
        let breaker = Breaker::new(3, Duration::from_millis(30));
        breaker.record(true);
        breaker.record(false); // a success resets the count
        breaker.record(true);
        breaker.record(true);
        assert_eq!(breaker.allowance(), Allowance::Batch);
        breaker.record(true);
        assert!(matches!(breaker.allowance(), Allowance::Wait(_)));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(breaker.allowance(), Allowance::Probe);
        breaker.record(true); // the probe failed: wait again
        assert!(matches!(breaker.allowance(), Allowance::Wait(_)));
        std::thread::sleep(Duration::from_millis(40));
        breaker.record(false); // the probe got through
        assert_eq!(breaker.allowance(), Allowance::Batch);
    }

    #[tokio::test]
    async fn paces_sends() {
        let pacer = Pacer::new(100.0);
        let started = Instant::now();
        for _ in 0..6 {
            pacer.wait_turn().await;
        }
        assert!(
            started.elapsed() >= Duration::from_millis(45),
            "{:?}",
            started.elapsed()
        );
    }
}
