//! Mail: composing messages and handing them to a transport. The transport is chosen by
//! configuration: SMTP (SMTP_URL), an outbox folder of `.eml` files (the default, so a fresh
//! checkout works with no mail server), or memory (tests).

pub mod queue;
pub mod smtp;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;

use crate::config::MailConfig;
use smtp::{SmtpPool, SmtpTarget, SmtpTimeouts};

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
    /// SMTP when SMTP_URL is set, else the outbox folder.
    pub fn from_config(config: &MailConfig, data_dir: &std::path::Path) -> anyhow::Result<Mailer> {
        match &config.smtp_url {
            Some(url) => {
                let target = SmtpTarget::from_url(url).map_err(|e| anyhow::anyhow!("SMTP_URL: {e}"))?;
                let timeouts = SmtpTimeouts {
                    connect: config.smtp_connect_timeout,
                    command: config.smtp_command_timeout,
                    send: config.send_timeout,
                };
                tracing::info!(host = %target.host, port = target.port, security = ?target.security, "sending mail over SMTP");
                Ok(Mailer::Smtp(Arc::new(SmtpPool::new(
                    target,
                    timeouts,
                    usize::from(config.smtp_concurrency),
                ))))
            }
            None => {
                let dir = config.outbox_dir.clone().unwrap_or_else(|| data_dir.join("outbox"));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("OUTBOX_DIR: cannot create {}", dir.display()))?;
                tracing::info!(dir = %dir.display(), "SMTP_URL is not set: writing mail to the outbox folder");
                Ok(Mailer::Outbox(dir))
            }
        }
    }

    /// Hands the message over; returns the server's reply (or where it was written).
    pub async fn send(&self, message: &Message) -> Result<String, SendError> {
        let raw = message.formatted();
        match self {
            Mailer::Smtp(pool) => pool.send(message.envelope(), &raw).await,
            Mailer::Outbox(dir) => {
                let name = format!(
                    "{}-{}.eml",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
                    uuid::Uuid::new_v4().simple()
                );
                let path = dir.join(name);
                tokio::fs::write(&path, &raw).await.map_err(|e| SendError {
                    phase: Phase::Connect,
                    kind: FailureKind::Transient,
                    code: None,
                    detail: format!("cannot write {}: {e}", path.display()),
                })?;
                tracing::info!(path = %path.display(), to = ?message.envelope().to(), "mail written to the outbox");
                Ok(format!("written to {}", path.display()))
            }
            Mailer::Memory(outbox) => {
                outbox.push(message, raw);
                Ok("250 accepted in memory".to_owned())
            }
        }
    }
}

/// A plain-text UTF-8 message. `headers` adds fields such as List-Unsubscribe.
pub fn text_message(
    from: &Mailbox,
    to: Mailbox,
    subject: &str,
    body: String,
    message_id: Option<String>,
) -> Result<Message, lettre::error::Error> {
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .message_id(message_id)
        .date_now()
        .header(ContentType::TEXT_PLAIN)
        .body(body)
}

/// One message kept by the in-memory transport.
#[derive(Debug, Clone)]
pub struct SentMail {
    pub to: Vec<String>,
    pub subject: String,
    /// The whole message as it would go on the wire.
    pub raw: String,
    /// The body with its transfer encoding (quoted-printable, base64) undone.
    pub text: String,
}

/// The body of a single-part message, its Content-Transfer-Encoding undone.
fn decoded_body(raw: &str) -> String {
    let Some((headers, body)) = raw.split_once("\r\n\r\n") else {
        return String::new();
    };
    let encoding = headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Transfer-Encoding: "))
        .unwrap_or("7bit")
        .trim()
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "quoted-printable" => quoted_printable::decode(body, quoted_printable::ParseMode::Robust).unwrap_or_default(),
        "base64" => {
            use base64::Engine;
            let compact: String = body.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap_or_default()
        }
        _ => body.as_bytes().to_vec(),
    };
    String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
}

/// The in-memory transport's mailbox, shared by clones.
#[derive(Clone, Default)]
pub struct MemoryOutbox {
    mails: Arc<Mutex<Vec<SentMail>>>,
    arrived: Arc<tokio::sync::Notify>,
}

impl MemoryOutbox {
    fn push(&self, message: &Message, raw: Vec<u8>) {
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let subject = raw
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_owned();
        let to = message.envelope().to().iter().map(|a| a.to_string()).collect();
        let text = decoded_body(&raw);
        self.mails
            .lock()
            .expect("outbox lock")
            .push(SentMail { to, subject, raw, text });
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
