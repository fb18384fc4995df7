//! The generic bounce webhook: `POST /webhooks/bounces` with a JSON body signed by
//! BOUNCE_WEBHOOK_SECRET, for a relay or script that learns of bounces and complaints
//! (the README documents the format). The signature covers a timestamp and the body, so
//! a captured request cannot be replayed after five minutes.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::bounces::BounceKind;
use crate::db::types::DeliveryId;

/// How far a request's timestamp may be from our clock.
pub const TOLERANCE_SECS: i64 = 300;
/// The largest body taken.
pub const MAX_BODY: usize = 1024 * 1024;
/// Events per request at most.
pub const MAX_EVENTS: usize = 1000;

/// `X-Mailwarm-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks the signature header against the body at `now` (unix seconds).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64) -> Result<(), &'static str> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => signatures.extend(hex::decode(sig).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or("the signature has no timestamp (t=)")?;
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return Err("the signature's timestamp is more than five minutes off");
    }
    if signatures
        .iter()
        .any(|sig| mac(secret, timestamp, body).verify_slice(sig).is_ok())
    {
        Ok(())
    } else {
        Err("the signature does not match")
    }
}

/// The body: `{"events": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Events {
    pub events: Vec<Event>,
}

/// One bounce or complaint.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    /// "hard", "soft" or "complaint".
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The Message-ID header of our message, `<delivery id@domain>`.
    pub message_id: Option<String>,
    /// Or the envelope sender it went out with (`bounces+<token>@domain`), or its token.
    pub return_path: Option<String>,
    /// The address the event is about; checked against the delivery's.
    pub recipient: Option<String>,
    /// The status code and text.
    pub diagnostic: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Hard,
    Soft,
    Complaint,
}

impl From<EventKind> for BounceKind {
    fn from(kind: EventKind) -> BounceKind {
        match kind {
            EventKind::Hard => BounceKind::Hard,
            EventKind::Soft => BounceKind::Soft,
            EventKind::Complaint => BounceKind::Complaint,
        }
    }
}

/// How an event names its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// By a VERP token with a valid MAC: trusted.
    Signed(DeliveryId),
    /// By the Message-ID: trusted when the recipient matches.
    MessageId(DeliveryId),
    Nothing,
}

impl Event {
    pub fn delivery(&self, key: &[u8]) -> Named {
        if let Some(path) = &self.return_path {
            let token = path
                .trim_matches(['<', '>'])
                .split('@')
                .next()
                .and_then(|local| local.rsplit('+').next())
                .unwrap_or_default();
            if let Some(delivery) = super::verp::delivery_of(key, token) {
                return Named::Signed(delivery);
            }
        }
        self.message_id
            .as_deref()
            .and_then(|id| id.trim().trim_matches(['<', '>']).split('@').next())
            .and_then(|local| uuid::Uuid::parse_str(local).ok())
            .map_or(Named::Nothing, |id| Named::MessageId(DeliveryId(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_the_body_and_the_time() {
        let body = br#"{"events":[]}"#;
        let header = sign(b"secret", 1_700_000_000, body);
        assert_eq!(verify(b"secret", &header, body, 1_700_000_100), Ok(()));
        assert!(verify(b"secret", &header, b"{}", 1_700_000_100).is_err());
        assert!(verify(b"other", &header, body, 1_700_000_100).is_err());
        assert!(
            verify(b"secret", &header, body, 1_700_001_000).is_err(),
            "replayed later"
        );
        assert!(verify(b"secret", "garbage", body, 1_700_000_000).is_err());
    }
}
