//! VERP: each message's envelope sender is `bounces+<token>@domain` (BOUNCE_ADDRESS with a
//! token), so a bounce addressed back to it names its delivery. The token is the
//! delivery's id and a MAC over it, in lower-case base32 (servers may fold a local part's
//! case): a report can only name a delivery we sent, whatever else it claims.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::db::types::DeliveryId;
use crate::mail::address::Address;

/// Bytes of MAC kept: 48 bits, enough that guessing one is hopeless, short enough that
/// the token (36 characters) leaves room in a 64-byte local part.
const MAC_BYTES: usize = 6;
const TOKEN_LEN: usize = 36;

fn hmac(key: &[u8], delivery: DeliveryId) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"verp:");
    mac.update(delivery.0.as_bytes());
    mac
}

fn mac(key: &[u8], delivery: DeliveryId) -> [u8; MAC_BYTES] {
    let full = hmac(key, delivery).finalize().into_bytes();
    let mut out = [0u8; MAC_BYTES];
    out.copy_from_slice(&full[..MAC_BYTES]);
    out
}

/// The token of a delivery.
pub fn token(key: &[u8], delivery: DeliveryId) -> String {
    let mut bytes = delivery.0.as_bytes().to_vec();
    bytes.extend_from_slice(&mac(key, delivery));
    data_encoding::BASE32_NOPAD.encode(&bytes).to_ascii_lowercase()
}

/// The delivery a token names, if its MAC is ours.
pub fn delivery_of(key: &[u8], token: &str) -> Option<DeliveryId> {
    if token.len() != TOKEN_LEN {
        return None;
    }
    let bytes = data_encoding::BASE32_NOPAD
        .decode(token.to_ascii_uppercase().as_bytes())
        .ok()?;
    let (id, given) = bytes.split_at(16);
    let delivery = DeliveryId(uuid::Uuid::from_slice(id).ok()?);
    hmac(key, delivery).verify_truncated_left(given).ok()?;
    Some(delivery)
}

/// The envelope sender of a delivery's message: `local+token@domain`.
pub fn envelope_sender(bounce: &Address, key: &[u8], delivery: DeliveryId) -> String {
    format!("{}+{}@{}", bounce.local, token(key, delivery), bounce.ascii_domain)
}

/// Every delivery named by a `local+token@` address anywhere in `text` (a report's
/// recipient headers, its body), with a valid MAC.
pub fn find_in(text: &str, bounce: &Address, key: &[u8]) -> Vec<DeliveryId> {
    let lower = text.to_ascii_lowercase();
    let prefix = format!("{}+", bounce.local.to_ascii_lowercase());
    let mut found = Vec::new();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find(&prefix) {
        let after = &rest[at + prefix.len()..];
        if let Some(candidate) = after.get(..TOKEN_LEN)
            && after[TOKEN_LEN..].starts_with('@')
            && let Some(delivery) = delivery_of(key, candidate)
            && !found.contains(&delivery)
        {
            found.push(delivery);
        }
        rest = after;
    }
    found
}

/// What the operator publishes for BOUNCE_ADDRESS (after `mail::dkim::dns_records`): an MX
/// so bounces reach the mailbox, and SPF for the envelope sender's domain, which is the one
/// SPF checks.
pub fn dns_records(bounce: &Address, from_domain: &str, relay: Option<&str>, mailbox_host: Option<&str>) -> String {
    let domain = &bounce.ascii_domain;
    let mx = mailbox_host.unwrap_or("mail-host-of-the-bounce-mailbox.example");
    let mut out = format!(
        "\n; Bounces: messages go out from {}+<token>@{domain} (BOUNCE_ADDRESS, VERP);\n\
         ; bounces come back to that domain, so its MX is the mail server of the bounce mailbox\n\
         {domain}. IN MX 10 {mx}.\n",
        bounce.local
    );
    if domain != from_domain {
        let sender = relay.map_or_else(|| "mx".to_owned(), |host| format!("a:{host} mx"));
        out.push_str(&format!(
            "; SPF is checked against the envelope sender's domain\n{domain}. IN TXT \"v=spf1 {sender} ~all\"\n"
        ));
        if !domain.ends_with(&format!(".{from_domain}")) && !from_domain.ends_with(&format!(".{domain}")) {
            out.push_str(&format!(
                "; note: {domain} and MAIL_FROM's {from_domain} do not share a domain: DMARC's SPF alignment fails (DKIM's may still pass)\n"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_delivery_and_nothing_else() {
        let key = b"k".repeat(32);
        let delivery = DeliveryId::new_random();
        let token = token(&key, delivery);
        assert_eq!(token.len(), TOKEN_LEN);
        assert!(token.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_eq!(delivery_of(&key, &token), Some(delivery));
        assert_eq!(
            delivery_of(&key, &token.to_ascii_uppercase()),
            Some(delivery),
            "case folded by a server"
        );
        assert_eq!(delivery_of(b"another key", &token), None);
        let mut forged = token.clone().into_bytes();
        forged[30] = if forged[30] == b'a' { b'b' } else { b'a' };
        assert_eq!(delivery_of(&key, std::str::from_utf8(&forged).unwrap()), None);
        assert_eq!(delivery_of(&key, "garbage"), None);

        let bounce = crate::mail::address::parse("Bounces@Acme.example").unwrap();
        let sender = envelope_sender(&bounce, &key, delivery);
        assert!(sender.len() <= 64 + 1 + "acme.example".len(), "{sender}");
        let report = format!(
            "To: <{}>\r\nX-Other: bounces+{}@acme.example",
            sender.to_uppercase(),
            "a".repeat(36)
        );
        assert_eq!(find_in(&report, &bounce, &key), vec![delivery]);
    }

    #[test]
    fn dns_records_name_the_bounce_domain() {
        let bounce = crate::mail::address::parse("bounces@bounce.acme.example").unwrap();
        let records = dns_records(
            &bounce,
            "acme.example",
            Some("smtp.relay.example"),
            Some("imap.acme.example"),
        );
        assert!(
            records.contains("bounce.acme.example. IN MX 10 imap.acme.example."),
            "{records}"
        );
        assert!(
            records.contains("bounce.acme.example. IN TXT \"v=spf1 a:smtp.relay.example mx ~all\""),
            "{records}"
        );
        assert!(!records.contains("alignment fails"), "{records}");
        let elsewhere = crate::mail::address::parse("b@other.example").unwrap();
        assert!(dns_records(&elsewhere, "acme.example", None, None).contains("alignment fails"));
    }
}
