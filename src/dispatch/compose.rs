//! One delivery's message: the run's templates rendered for the recipient (text, or text
//! and HTML), a Message-ID derived from the delivery (the same on every retry, so a rare
//! duplicate is traceable), one-click unsubscribe headers (RFC 8058) with a signed link,
//! and a signed link to the message in a browser (`web_view_url`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use lettre::message::Mailbox;
use sha2::Sha256;

use crate::config::HttpConfig;
use crate::db::types::{ClientId, DeliveryId, MailingId, UserId};
use crate::mail::message::{Draft, Outgoing, message_id};
use crate::messages::template::{ClientValues, Links, MessageTemplates, Rendered, Rendering, Values};

/// What a signed link is for: a signature made for one cannot open the other.
#[derive(Clone, Copy)]
enum Purpose {
    /// `/unsubscribe`, signed over the client id alone (the first links had no label).
    Unsubscribe,
    /// `/view/<delivery>`.
    WebView,
}

fn mac(key: &[u8], purpose: Purpose, id: &uuid::Uuid) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    if let Purpose::WebView = purpose {
        mac.update(b"web-view:");
    }
    mac.update(id.as_bytes());
    mac
}

fn sign(key: &[u8], purpose: Purpose, id: &uuid::Uuid) -> String {
    URL_SAFE_NO_PAD.encode(&mac(key, purpose, id).finalize().into_bytes()[..16])
}

/// Whether `sig` was made for `id` and `purpose` (compared in constant time).
fn verify(key: &[u8], purpose: Purpose, id: &uuid::Uuid, sig: &str) -> bool {
    let Ok(given) = URL_SAFE_NO_PAD.decode(sig) else {
        return false;
    };
    given.len() == 16 && mac(key, purpose, id).verify_truncated_left(&given).is_ok()
}

fn signature(key: &[u8], client_id: ClientId) -> String {
    sign(key, Purpose::Unsubscribe, &client_id.0)
}

/// `PUBLIC_URL/view/<delivery>?s=<signature>`: the delivery's message in a browser, for
/// whoever holds the link (the recipient), without signing in.
pub fn web_view_url(http: &HttpConfig, key: &[u8], delivery_id: DeliveryId) -> String {
    http.link(
        &format!("view/{delivery_id}"),
        &[("s", &sign(key, Purpose::WebView, &delivery_id.0))],
    )
}

/// Whether `sig` was made for the web view of `delivery_id`.
pub fn verify_web_view(key: &[u8], delivery_id: DeliveryId, sig: &str) -> bool {
    verify(key, Purpose::WebView, &delivery_id.0, sig)
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
    verify(key, Purpose::Unsubscribe, &client_id.0, sig)
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

/// A client whose attributes are gone reads as having none.
static NO_ATTRIBUTES: std::sync::LazyLock<serde_json::Value> =
    std::sync::LazyLock::new(|| serde_json::Value::Object(Default::default()));

impl<'a> Recipient<'a> {
    /// The delivery's own copy of address and name, and the client's comment and
    /// attributes as they are now (`client`: None once it is gone).
    pub fn new(
        delivery_id: DeliveryId,
        client_id: ClientId,
        email: &'a str,
        full_name: &'a str,
        client: Option<&'a super::queue::ClientDetails>,
    ) -> Recipient<'a> {
        Recipient {
            delivery_id,
            client_id,
            email,
            full_name,
            comment: client.map_or("", |c| c.comment.as_str()),
            attributes: client.map_or(&NO_ATTRIBUTES, |c| &c.attributes),
        }
    }
}

/// A run's message, its templates compiled once for all its deliveries.
pub struct RunMessage<'a> {
    pub templates: &'a MessageTemplates,
    pub mailing_id: MailingId,
    /// The mailing's owner (the Feedback-ID names it).
    pub owner_id: UserId,
    /// The run's day in the mailing's time zone.
    pub date: String,
}

/// The run's message rendered for one recipient, as the mail carries it and the web view
/// shows it, or why it cannot be (a template that fails for this recipient, a message over
/// MAX_MESSAGE_SIZE).
pub fn render(
    http: &HttpConfig,
    key: &[u8],
    message: &RunMessage<'_>,
    to: &Recipient<'_>,
    email: &str,
    max_size: usize,
) -> Result<Rendered, String> {
    let unsubscribe = unsubscribe_url(http, key, to.client_id);
    let name = crate::mail::message::one_line(to.full_name);
    fill(
        http,
        key,
        message,
        to,
        Filled {
            email,
            name: &name,
            unsubscribe: &unsubscribe,
        },
        max_size,
    )
}

/// What `compose` already worked out for a recipient and the templates read too.
struct Filled<'a> {
    email: &'a str,
    /// The name made one line.
    name: &'a str,
    unsubscribe: &'a str,
}

fn fill(
    http: &HttpConfig,
    key: &[u8],
    message: &RunMessage<'_>,
    to: &Recipient<'_>,
    filled: Filled<'_>,
    max_size: usize,
) -> Result<Rendered, String> {
    let web_view = web_view_url(http, key, to.delivery_id);
    let values = Values::new(
        ClientValues {
            email: filled.email,
            full_name: filled.name,
            comment: to.comment,
            attributes: to.attributes,
        },
        Links {
            unsubscribe_url: filled.unsubscribe,
            web_view_url: &web_view,
        },
        message.mailing_id.to_string(),
        message.date.clone(),
    );
    message
        .templates
        .render(&values, max_size)
        .map_err(|rendering| match rendering {
            Rendering::TooLarge => format!("the message would be more than MAX_MESSAGE_SIZE ({max_size} bytes)"),
            Rendering::Failed(why) => why,
        })
}

/// The run's message for one recipient, ready for the wire, or why this delivery cannot go
/// out (a value stored before today's input rules, a template that fails for this
/// recipient, a message over MAX_MESSAGE_SIZE): that reason becomes the delivery's
/// PERMANENT_FAILURE, and the rest of the run goes on.
pub fn compose(
    http: &HttpConfig,
    key: &[u8],
    message: &RunMessage<'_>,
    to: &Recipient<'_>,
    sender: &Sender<'_>,
) -> Result<Outgoing, String> {
    let from = sender.from;
    let address = crate::mail::address::parse(to.email).map_err(|e| format!("the address {e}"))?;
    let unsubscribe = unsubscribe_url(http, key, to.client_id);
    let name = crate::mail::message::one_line(to.full_name);
    let filled = Filled {
        email: &address.text,
        name: &name,
        unsubscribe: &unsubscribe,
    };
    let rendered = fill(http, key, message, to, filled, sender.max_size)?;
    // Gmail's feedback loop groups complaints by these fields: campaign, customer, type, sender.
    let feedback_id = format!(
        "{}:{}:newsletter:{}",
        message.mailing_id.0.simple(),
        message.owner_id.0.simple(),
        sender.feedback_sender
    );
    let mut outgoing = crate::mail::message::build(
        &Draft {
            from,
            to: &address,
            to_name: Some(&name),
            subject: &rendered.subject,
            body: &rendered.text,
            html: rendered.html.as_deref(),
            message_id: Some(message_id(to.delivery_id.0, from)),
            headers: vec![
                ("List-Unsubscribe", format!("<{unsubscribe}>")),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".to_owned()),
                ("Feedback-ID", feedback_id),
            ]
            .into_iter()
            .chain(sender.reply_to.map(|r| ("Reply-To", r.to_owned())))
            .collect(),
            dkim: sender.dkim,
        },
        sender.max_size,
    )?;
    if let Some(bounce) = sender.bounce {
        let verp = crate::deliverability::verp::envelope_sender(bounce, key, to.delivery_id);
        let verp = verp
            .parse()
            .map_err(|e| format!("the envelope sender {verp} is not an address: {e}"))?;
        outgoing.envelope = lettre::address::Envelope::new(Some(verp), outgoing.envelope.to().to_vec())
            .map_err(|e| format!("the envelope: {e}"))?;
    }
    Ok(outgoing)
}

/// Who sends, and how: the same for every delivery of an instance.
pub struct Sender<'a> {
    /// The From header (the run's MAIL_FROM).
    pub from: &'a Mailbox,
    /// BOUNCE_ADDRESS: the envelope sender is then `local+<token>@domain` (VERP); None: the
    /// From address.
    pub bounce: Option<&'a crate::mail::address::Address>,
    /// FEEDBACK_SENDER_ID.
    pub feedback_sender: &'a str,
    /// The sender identity's Reply-To address.
    pub reply_to: Option<&'a str>,
    pub dkim: Option<&'a crate::mail::dkim::Signer>,
    pub max_size: usize,
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
        // A web view signature opens that delivery's view only, and no unsubscribe link.
        let delivery = DeliveryId(client.0);
        let config = crate::config::Config::from_args(["server", "--public-url", "https://mail.example/"]).unwrap();
        let url = web_view_url(&config.http, &key, delivery);
        assert!(
            url.starts_with(&format!("https://mail.example/view/{delivery}?s=")),
            "{url}"
        );
        let view_sig = url.rsplit("s=").next().unwrap();
        assert!(verify_web_view(&key, delivery, view_sig));
        assert!(!verify_web_view(&key, DeliveryId::new_random(), view_sig));
        assert!(!verify_unsubscribe(&key, client, view_sig));
        assert!(!verify_web_view(&key, delivery, &sig));
    }
}
