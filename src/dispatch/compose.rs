//! One delivery's message: the run's subject and body with the recipient's fields filled
//! in, a Message-ID derived from the delivery (the same on every retry, so a rare duplicate
//! is traceable), and one-click unsubscribe headers (RFC 8058) with a signed link.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use lettre::message::Mailbox;
use sha2::Sha256;

use crate::config::HttpConfig;
use crate::db::types::{ClientId, DeliveryId, MailingId};
use crate::mail::message::{Draft, Outgoing, message_id};
use crate::messages::template::{ClientValues, MessageTemplates, Rendering, Values};

fn signature(key: &[u8], client_id: ClientId) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(client_id.0.as_bytes());
    URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
}

/// `PUBLIC_URL/unsubscribe?c=<client>&s=<signature>`: works without signing in, only for
/// the client it was made for.
pub fn unsubscribe_url(http: &HttpConfig, key: &[u8], client_id: ClientId) -> String {
    http.link(
        "unsubscribe",
        &[("c", &client_id.to_string()), ("s", &signature(key, client_id))],
    )
}

/// Whether `sig` was made for `client_id` (compared in constant time).
pub fn verify_unsubscribe(key: &[u8], client_id: ClientId, sig: &str) -> bool {
    let Ok(given) = URL_SAFE_NO_PAD.decode(sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(client_id.0.as_bytes());
    mac.verify_truncated_left(&given).is_ok() && given.len() == 16
}

/// What a delivery needs to become a message.
pub struct Recipient<'a> {
    pub delivery_id: DeliveryId,
    pub client_id: ClientId,
    pub email: &'a str,
    pub full_name: &'a str,
    /// The client's comment and attributes as they are now ("" and {} once it is gone).
    pub comment: &'a str,
    pub attributes: &'a serde_json::Value,
}

/// A run's message, its templates compiled once for all its deliveries.
pub struct RunMessage<'a> {
    pub templates: &'a MessageTemplates,
    pub mailing_id: MailingId,
    /// The run's day in the mailing's time zone.
    pub date: String,
}

/// The run's subject and body rendered for one recipient, or why this delivery cannot go
/// out (a value stored before today's input rules, a template that fails for this
/// recipient, a message over MAX_MESSAGE_SIZE): that reason becomes the delivery's
/// PERMANENT_FAILURE, and the rest of the run goes on.
pub fn compose(
    http: &HttpConfig,
    key: &[u8],
    from: &Mailbox,
    message: &RunMessage<'_>,
    to: &Recipient<'_>,
    max_size: usize,
) -> Result<Outgoing, String> {
    let address = crate::mail::address::parse(to.email).map_err(|e| format!("the address {e}"))?;
    let unsubscribe = unsubscribe_url(http, key, to.client_id);
    let name = crate::mail::message::one_line(to.full_name);
    let values = Values::new(
        ClientValues {
            email: &address.text,
            full_name: &name,
            comment: to.comment,
            attributes: to.attributes,
        },
        &unsubscribe,
        message.mailing_id.to_string(),
        message.date.clone(),
    );
    let failed = |rendering: Rendering| match rendering {
        Rendering::TooLarge => format!("the message would be more than MAX_MESSAGE_SIZE ({max_size} bytes)"),
        Rendering::Failed(why) => why,
    };
    let text = message.templates.body(&values, max_size).map_err(failed)?;
    let subject = message.templates.subject(&values, max_size).map_err(failed)?;
    crate::mail::message::build(
        &Draft {
            from,
            to: &address,
            to_name: Some(&name),
            subject: &subject,
            body: &text,
            message_id: Some(message_id(to.delivery_id.0, from)),
            headers: vec![
                ("List-Unsubscribe", format!("<{unsubscribe}>")),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".to_owned()),
            ],
        },
        max_size,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsubscribe_signatures_bind_the_client() {
        let key = b"k".repeat(32);
        let client = ClientId::new_random();
        let sig = signature(&key, client);
        assert!(verify_unsubscribe(&key, client, &sig));
        assert!(!verify_unsubscribe(&key, ClientId::new_random(), &sig));
        assert!(!verify_unsubscribe(b"other key", client, &sig));
        assert!(!verify_unsubscribe(&key, client, "garbage"));
    }
}
