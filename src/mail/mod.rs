//! Mail: composing messages and handing them to a transport. The transport is chosen by
//! configuration: SMTP (SMTP_URL), an outbox folder of `.eml` files (the default, so a fresh
//! checkout works with no mail server), or memory (tests).

pub mod address;
pub mod dkim;
pub mod message;
pub mod smtp;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::message::Mailbox;

use message::{Draft, Outgoing};
use smtp::SmtpPool;

/// How far an SMTP exchange got when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Connect = 0,
    Mail = 1,
    Rcpt = 2,
    Data = 3,
    /// Sending the message and waiting for the reply to the final dot.
    Message = 4,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            1 => Phase::Mail,
            2 => Phase::Rcpt,
            3 => Phase::Data,
            4 => Phase::Message,
            _ => Phase::Connect,
        }
    }
}

/// What a failure means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A 4xx reply, or a failure before the final dot (refused, reset, timeout, garbage):
    /// nothing was accepted, try again later.
    Transient,
    /// A 5xx reply: do not try again.
    Permanent,
    /// Lost after the message was handed over: it may have been accepted.
    Unknown,
}

/// A message the transport did not (certainly) deliver.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail} (during {phase:?})")]
pub struct SendError {
    pub phase: Phase,
    pub kind: FailureKind,
    /// The SMTP reply code, when the server answered one.
    pub code: Option<String>,
    /// The server's reply or the transport error.
    pub detail: String,
}

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    Smtp(Arc<SmtpPool>),
    /// Each message written as `<time>-<uuid>.eml` into the folder.
    Outbox(PathBuf),
    Memory(MemoryOutbox),
}

impl Mailer {
    /// Hands the message over; returns the server's reply (or where it was written).
    pub async fn send(&self, message: &Outgoing) -> Result<String, SendError> {
        let raw = &message.raw;
        match self {
            Mailer::Smtp(pool) => pool.send(message).await,
            Mailer::Outbox(dir) => {
                let name = format!(
                    "{}-{}.eml",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
                    uuid::Uuid::new_v4().simple()
                );
                let path = dir.join(name);
                tokio::fs::write(&path, raw).await.map_err(|e| SendError {
                    phase: Phase::Connect,
                    kind: FailureKind::Transient,
                    code: None,
                    detail: format!("cannot write {}: {e}", path.display()),
                })?;
                tracing::info!(path = %path.display(), to = ?message.envelope.to(), "mail written to the outbox");
                Ok(format!("written to {}", path.display()))
            }
            Mailer::Memory(outbox) => {
                outbox.push(message);
                Ok("250 accepted in memory".to_owned())
            }
        }
    }
}

/// A plain-text mail from `from` to the address `to` (account mails, test sends): the
/// same checks as a mailing's message, so no stored value can break it.
pub fn plain_mail(
    from: &Mailbox,
    to: &str,
    subject: &str,
    body: &str,
    message_id: Option<String>,
    dkim: Option<&dkim::Signer>,
    max_size: usize,
) -> Result<Outgoing, String> {
    let to = address::parse(to).map_err(|e| format!("the address {e}"))?;
    message::build(
        &Draft {
            from,
            to: &to,
            to_name: None,
            subject,
            body,
            html: None,
            message_id,
            headers: Vec::new(),
            dkim,
        },
        max_size,
    )
}

/// One message kept by the in-memory transport.
#[derive(Debug, Clone)]
pub struct SentMail {
    pub to: Vec<String>,
    pub subject: String,
    /// The whole message as it would go on the wire.
    pub raw: String,
    /// The decoded subject.
    pub subject_text: String,
    /// The text body with its transfer encoding (quoted-printable, base64) undone, `\n`
    /// line ends.
    pub text: String,
}

/// The in-memory transport's mailbox, shared by clones.
#[derive(Clone, Default)]
pub struct MemoryOutbox {
    mails: Arc<Mutex<Vec<SentMail>>>,
    arrived: Arc<tokio::sync::Notify>,
}

impl MemoryOutbox {
    fn push(&self, message: &Outgoing) {
        let raw = String::from_utf8_lossy(&message.raw).into_owned();
        let subject = raw
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_owned();
        let to = message.envelope.to().iter().map(|a| a.to_string()).collect();
        // Read back by an independent MIME parser, as a mail client would.
        let parsed = mail_parser::MessageParser::default().parse(&message.raw);
        let subject_text = parsed.as_ref().and_then(|m| m.subject()).unwrap_or_default().to_owned();
        let text = parsed
            .as_ref()
            .and_then(|m| m.body_text(0))
            .unwrap_or_default()
            .replace("\r\n", "\n");
        self.mails.lock().expect("outbox lock").push(SentMail {
            to,
            subject,
            subject_text,
            raw,
            text,
        });
        self.arrived.notify_waiters();
    }

    pub fn all(&self) -> Vec<SentMail> {
        self.mails.lock().expect("outbox lock").clone()
    }

    /// Waits until a mail to `address` arrives (mail is sent off the request path).
    pub async fn wait_for(&self, address: &str, within: Duration) -> Option<SentMail> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.arrived.notified();
            if let Some(mail) = self
                .all()
                .into_iter()
                .rev()
                .find(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(address)))
            {
                return Some(mail);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}
