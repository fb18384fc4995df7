//! The backoff every retrying queue shares (deliveries, background jobs): exponential from
//! RETRY_BASE, capped at RETRY_MAX, spread by ±10% so retries of one moment do not come
//! back together.

use std::time::Duration;

/// Delay before try `attempt + 1`: `base * 2^(attempt-1)`, capped at `max`, times `jitter`.
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exponential = base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)));
    exponential.min(max).mul_f64(jitter.clamp(0.5, 1.5))
}

/// A jitter in [0.9, 1.1], from the operating system's random numbers.
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    0.9 + ((u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64) * 0.2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let (base, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        for (attempt, expected) in [(1, 60.0), (2, 120.0), (3, 240.0), (7, 3600.0), (30, 3600.0)] {
            assert_eq!(backoff(attempt, base, max, 1.0).as_secs_f64(), expected);
        }
        for _ in 0..100 {
            let j = jitter();
            assert!((0.9..=1.1).contains(&j), "{j}");
        }
    }
}
