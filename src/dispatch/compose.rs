//! One delivery's message: the run's subject and body with the recipient's fields filled
//! in, a Message-ID derived from the delivery (the same on every retry, so a rare duplicate
//! is traceable), and one-click unsubscribe headers (RFC 8058) with a signed link.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::{HeaderName, HeaderValue};
use sha2::Sha256;
use uuid::Uuid;

use crate::config::HttpConfig;

use crate::messages::model::fill;

/// `<delivery-id@domain of MAIL_FROM>`.
pub fn message_id(delivery_id: Uuid, mail_from: &Mailbox) -> String {
    format!("<{delivery_id}@{}>", mail_from.email.domain())
}

fn signature(key: &[u8], client_id: Uuid) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(client_id.as_bytes());
    URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
}

/// `PUBLIC_URL/unsubscribe?c=<client>&s=<signature>`: works without signing in, only for
/// the client it was made for.
pub fn unsubscribe_url(http: &HttpConfig, key: &[u8], client_id: Uuid) -> String {
    http.link(
        "unsubscribe",
        &[("c", &client_id.to_string()), ("s", &signature(key, client_id))],
    )
}

/// Whether `sig` was made for `client_id` (compared in constant time).
pub fn verify_unsubscribe(key: &[u8], client_id: Uuid, sig: &str) -> bool {
    let Ok(given) = URL_SAFE_NO_PAD.decode(sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(client_id.as_bytes());
    mac.verify_truncated_left(&given).is_ok() && given.len() == 16
}

/// What a delivery needs to become a message.
pub struct Recipient<'a> {
    pub delivery_id: Uuid,
    pub client_id: Uuid,
    pub email: &'a str,
    pub full_name: &'a str,
}

pub fn compose(
    http: &HttpConfig,
    key: &[u8],
    from: &Mailbox,
    subject: &str,
    body: &str,
    to: &Recipient<'_>,
) -> Result<Message, String> {
    let address: lettre::Address = to
        .email
        .parse()
        .map_err(|e| format!("`{}` is not a deliverable address: {e}", to.email))?;
    let unsubscribe = unsubscribe_url(http, key, to.client_id);
    let text = fill(body, to.full_name, to.email, &unsubscribe);
    let subject = fill(subject, to.full_name, to.email, &unsubscribe);
    let mut message = crate::mail::text_message(
        from,
        Mailbox::new(Some(to.full_name.to_owned()), address),
        &subject,
        text,
        Some(message_id(to.delivery_id, from)),
    )
    .map_err(|e| e.to_string())?;
    let headers = message.headers_mut();
    headers.insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("List-Unsubscribe"),
        format!("<{unsubscribe}>"),
    ));
    headers.insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
        "List-Unsubscribe=One-Click".to_owned(),
    ));
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled() {
        let text = fill(
            "Hi {{full_name}} <{{email}}>, bye: {{unsubscribe_url}} {{other}}",
            "Ann",
            "a@x.io",
            "http://u",
        );
        assert_eq!(text, "Hi Ann <a@x.io>, bye: http://u {{other}}");
    }

    #[test]
    fn unsubscribe_signatures_bind_the_client() {
        let key = b"k".repeat(32);
        let client = Uuid::new_v4();
        let sig = signature(&key, client);
        assert!(verify_unsubscribe(&key, client, &sig));
        assert!(!verify_unsubscribe(&key, Uuid::new_v4(), &sig));
        assert!(!verify_unsubscribe(b"other key", client, &sig));
        assert!(!verify_unsubscribe(&key, client, "garbage"));
    }
}
