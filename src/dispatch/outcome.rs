//! What one attempt does to its delivery, as a pure function of the mail server's answer,
//! the attempts used and the retry policy: [`classify`]. The dispatcher sends and records;
//! the decision is here, with a test for every class.

use std::time::Duration;

use crate::deliverability::bounces::BounceKind;
use crate::deliverability::classify;
use crate::deliveries::model::{AttemptStatus, DeliveryStatus};
use crate::mail::{FailureKind, Phase, SendError};
use crate::retry::backoff;
pub use crate::validate::log_text;

/// MAX_ATTEMPTS, RETRY_BASE, RETRY_MAX.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u16,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

/// What to record: the delivery's new status, the attempt's, when to try again, and what
/// the log says.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// PENDING (retry later), SENT, FAILED or UNKNOWN.
    pub delivery_status: DeliveryStatus,
    pub attempt_status: AttemptStatus,
    pub retry_in: Duration,
    pub response: String,
    /// What the answer says about the address: a HARD bounce (a 5xx about the recipient),
    /// a SOFT one (the delivery FAILED after temporary failures), or nothing.
    pub bounce: Option<BounceKind>,
}

impl Verdict {
    fn new(
        delivery_status: DeliveryStatus,
        attempt_status: AttemptStatus,
        retry_in: Duration,
        response: String,
    ) -> Self {
        Verdict {
            delivery_status,
            attempt_status,
            retry_in,
            response: log_text(&response),
            bounce: None,
        }
    }

    fn bounced(self, bounce: Option<BounceKind>) -> Self {
        Verdict { bounce, ..self }
    }

    /// A message that could not be composed (a value no transport takes, over
    /// MAX_MESSAGE_SIZE): nothing was sent, and trying again changes nothing.
    pub fn not_composed(reason: String) -> Self {
        Verdict::new(
            DeliveryStatus::Failed,
            AttemptStatus::PermanentFailure,
            Duration::ZERO,
            reason,
        )
    }

    /// No SMTP server may carry the delivery's sender identity (none allowed is live, or
    /// none can be used): nothing was sent; tried again like a temporary failure.
    pub fn no_server() -> Self {
        Verdict::new(
            DeliveryStatus::Pending,
            AttemptStatus::TemporaryFailure,
            Duration::from_secs(60),
            "no SMTP server may carry this sender identity (ask an admin to allow one)".to_owned(),
        )
    }

    /// A send that ended in a panic (a bug): it may have gone out, so never again by itself.
    pub fn crashed(reason: String) -> Self {
        Verdict::new(DeliveryStatus::Unknown, AttemptStatus::Unknown, Duration::ZERO, reason)
    }
}

/// The verdict on one exchange. `used`: attempts used since the delivery was last queued
/// by hand, this one included; `jitter` in [0.9, 1.1] spreads retries (1.0 in tests).
///
/// - accepted: SENT;
/// - a 5xx (or a refusal of ours such as no SMTPUTF8): FAILED, PERMANENT_FAILURE;
/// - lost after the final dot: UNKNOWN, never resent by itself;
/// - a 4xx, or a failure before the final dot: TEMPORARY_FAILURE, again after the backoff
///   (or the wait the server names, up to RETRY_MAX), FAILED once MAX_ATTEMPTS are used.
pub fn classify(result: &Result<String, SendError>, used: u32, policy: &RetryPolicy, jitter: f64) -> Verdict {
    let err = match result {
        Ok(reply) => {
            return Verdict::new(
                DeliveryStatus::Sent,
                AttemptStatus::Success,
                Duration::ZERO,
                reply.clone(),
            );
        }
        Err(err) => err,
    };
    let response = match &err.code {
        Some(_) => err.detail.clone(),
        None => format!("{} (during {:?})", err.detail, err.phase),
    };
    match err.kind {
        FailureKind::Permanent => Verdict::new(
            DeliveryStatus::Failed,
            AttemptStatus::PermanentFailure,
            Duration::ZERO,
            response,
        )
        // A refusal at connection or MAIL FROM is about us (our sender, our IP), never the
        // recipient's address.
        .bounced(
            matches!(err.phase, Phase::Rcpt | Phase::Data | Phase::Message)
                .then(|| classify::of_rejection(&err.detail, err.phase == Phase::Rcpt))
                .flatten(),
        ),
        FailureKind::Unknown => Verdict::new(
            DeliveryStatus::Unknown,
            AttemptStatus::Unknown,
            Duration::ZERO,
            response,
        ),
        FailureKind::Transient if used >= u32::from(policy.max_attempts) => Verdict::new(
            DeliveryStatus::Failed,
            AttemptStatus::TemporaryFailure,
            Duration::ZERO,
            response,
        )
        .bounced(err.code.is_some().then_some(BounceKind::Soft)),
        FailureKind::Transient => {
            let backoff = backoff(used, policy.retry_base, policy.retry_max, jitter);
            let wait = requested_wait(&err.detail).map_or(backoff, |asked| asked.min(policy.retry_max).max(backoff));
            Verdict::new(DeliveryStatus::Pending, AttemptStatus::TemporaryFailure, wait, response)
        }
    }
}

/// Whether a failure was at the connection level (no reply at all while connecting): what
/// the circuit breaker counts.
pub fn connection_failed(err: &SendError) -> bool {
    err.phase == Phase::Connect && err.code.is_none()
}

/// A wait the server asks for in its reply ("try again in 15 minutes", "retry after 30 s").
pub fn requested_wait(reply: &str) -> Option<Duration> {
    let lower = reply.to_ascii_lowercase();
    if !["try again", "retry", "wait"].iter().any(|w| lower.contains(w)) {
        return None;
    }
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    words.windows(2).find_map(|pair| {
        let n: u64 = pair[0].parse().ok()?;
        let unit = match pair[1] {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            _ => return None,
        };
        Some(Duration::from_secs(n.saturating_mul(unit)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        retry_base: Duration::from_secs(60),
        retry_max: Duration::from_secs(3600),
    };

    fn failure(kind: FailureKind, phase: Phase, code: Option<&str>, detail: &str) -> SendError {
        SendError {
            phase,
            kind,
            code: code.map(str::to_owned),
            detail: detail.to_owned(),
        }
    }

    #[test]
    fn every_class_of_answer() {
        let sent = classify(&Ok("250 2.0.0 ok".into()), 1, &POLICY, 1.0);
        assert_eq!(
            (sent.delivery_status, sent.attempt_status),
            (DeliveryStatus::Sent, AttemptStatus::Success)
        );

        let rejected = failure(
            FailureKind::Permanent,
            Phase::Rcpt,
            Some("550"),
            "550 5.1.1 no such user",
        );
        let v = classify(&Err(rejected.clone()), 1, &POLICY, 1.0);
        assert_eq!(
            (v.delivery_status, v.attempt_status),
            (DeliveryStatus::Failed, AttemptStatus::PermanentFailure)
        );
        assert_eq!(v.response, "550 5.1.1 no such user");

        let lost = failure(FailureKind::Unknown, Phase::Message, None, "connection reset");
        let v = classify(&Err(lost.clone()), 1, &POLICY, 1.0);
        assert_eq!(
            (v.delivery_status, v.attempt_status),
            (DeliveryStatus::Unknown, AttemptStatus::Unknown)
        );
        assert_eq!(v.response, "connection reset (during Message)");

        let busy = failure(FailureKind::Transient, Phase::Rcpt, Some("451"), "451 4.3.0 busy");
        let v = classify(&Err(busy.clone()), 1, &POLICY, 1.0);
        assert_eq!(
            (v.delivery_status, v.attempt_status, v.retry_in),
            (
                DeliveryStatus::Pending,
                AttemptStatus::TemporaryFailure,
                Duration::from_secs(60)
            )
        );
        let v = classify(&Err(busy.clone()), 2, &POLICY, 1.0);
        assert_eq!(v.retry_in, Duration::from_secs(120), "doubles");
        let v = classify(&Err(busy.clone()), 3, &POLICY, 1.0);
        assert_eq!(
            (v.delivery_status, v.attempt_status),
            (DeliveryStatus::Failed, AttemptStatus::TemporaryFailure),
            "attempts used up"
        );
    }

    #[test]
    fn a_named_wait_is_honoured_up_to_retry_max() {
        let greylisted = failure(
            FailureKind::Transient,
            Phase::Rcpt,
            Some("451"),
            "451 greylisted, try again in 5 minutes",
        );
        assert_eq!(
            classify(&Err(greylisted.clone()), 1, &POLICY, 1.0).retry_in,
            Duration::from_secs(300)
        );
        let absurd = failure(
            FailureKind::Transient,
            Phase::Rcpt,
            Some("451"),
            "451 try again in 9999999999999 hours",
        );
        assert_eq!(
            classify(&Err(absurd.clone()), 1, &POLICY, 1.0).retry_in,
            POLICY.retry_max
        );
        // A shorter named wait never undercuts the backoff.
        let soon = failure(FailureKind::Transient, Phase::Rcpt, Some("451"), "451 retry after 1 s");
        assert_eq!(
            classify(&Err(soon.clone()), 2, &POLICY, 1.0).retry_in,
            Duration::from_secs(120)
        );
    }

    #[test]
    fn the_breaker_counts_connection_failures_only() {
        assert!(connection_failed(&failure(
            FailureKind::Transient,
            Phase::Connect,
            None,
            "refused"
        )));
        assert!(!connection_failed(&failure(
            FailureKind::Permanent,
            Phase::Connect,
            Some("554"),
            "554 go away"
        )));
        assert!(!connection_failed(&failure(
            FailureKind::Transient,
            Phase::Rcpt,
            None,
            "reset"
        )));
    }

    #[test]
    fn named_waits_are_read_from_replies() {
        assert_eq!(
            requested_wait("451 4.7.1 Greylisted, try again in 5 minutes"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(requested_wait("421 retry after 30 s"), Some(Duration::from_secs(30)));
        assert_eq!(requested_wait("451 4.3.0 temporary failure 2 hours"), None);
        assert_eq!(requested_wait("452 mailbox full"), None);
    }

    #[test]
    fn log_text_is_clean_and_cut_at_a_character_boundary() {
        let long = "я".repeat(1000);
        let short = log_text(&long);
        assert!(short.len() <= crate::validate::MAX_LOG_TEXT + "…".len());
        assert!(short.ends_with('…'));
        assert_eq!(log_text("250 ok"), "250 ok");
        assert_eq!(log_text("a\0b\rc"), "a b c");
    }
}
