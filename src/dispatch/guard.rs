//! What keeps a sick mail server from hurting the service: a circuit breaker per server
//! that stops using it after consecutive connection-level failures, waits, then probes with
//! one message; and an optional pace (SEND_RATE) per instance.

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
    /// Half open, and the one probe is under way since then (a probe that never reports,
    /// given back before it was sent, stops counting after a cooldown).
    probing: Option<Instant>,
}

/// What one recorded exchange did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened(Duration),
    Closed,
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

    /// Whether one message may go now: always while closed, one probe while half open.
    pub fn try_pass(&self) -> bool {
        let mut state = self.state.lock().expect("breaker lock");
        match state.open_until {
            None => true,
            Some(until) if until > Instant::now() => false,
            Some(_) if state.probing.is_some_and(|since| since.elapsed() < self.cooldown) => false,
            Some(_) => {
                state.probing = Some(Instant::now());
                true
            }
        }
    }

    /// Feeds the outcome of one exchange: `connection_failed` when the mail server could
    /// not be reached or dropped us before answering (not a 4xx/5xx reply).
    pub fn record(&self, connection_failed: bool) -> Option<Change> {
        let mut state = self.state.lock().expect("breaker lock");
        state.probing = None;
        if !connection_failed {
            state.consecutive_failures = 0;
            return state.open_until.take().map(|_| Change::Closed);
        }
        state.consecutive_failures += 1;
        let was_open = state.open_until.is_some();
        if was_open || state.consecutive_failures >= self.threshold {
            state.open_until = Some(Instant::now() + self.cooldown);
            return (!was_open).then_some(Change::Opened(self.cooldown));
        }
        None
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
        assert_eq!(breaker.record(true), Some(Change::Opened(Duration::from_millis(30))));
        assert!(matches!(breaker.allowance(), Allowance::Wait(_)));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(breaker.allowance(), Allowance::Probe);
        assert!(breaker.try_pass(), "one probe");
        assert!(!breaker.try_pass(), "only one probe at a time");
        assert_eq!(breaker.record(true), None); // the probe failed: wait again
        assert!(matches!(breaker.allowance(), Allowance::Wait(_)));
        assert!(!breaker.try_pass());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(breaker.record(false), Some(Change::Closed)); // the probe got through
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
