//! The bounce mailbox: a recurring job on the shared runner (so one instance polls it at a
//! time) that reads new mails over IMAP (BOUNCE_IMAP_URL), records the bounces and
//! complaints they report (`report::read`, then `bounces::record`), and flags each mail so
//! it is read once: `$MailwarmDone` when it was read (a report, or one about no delivery of
//! ours), `$MailwarmJunk` when it is no report at all. Flags are set after the reports are
//! committed; a poll cut short reads the same mails again, and recording them again is a
//! no-op (one bounce per delivery and kind).

use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::Url;

use super::bounces::{self, BounceKind, Policy, Recorded, Source};
use super::{report, verp};
use crate::db::DbPool;
use crate::db::types::DeliveryId;
use crate::jobs::{BackgroundJob, JobError};
use crate::mail::address::Address;

/// Mails read per poll; the rest wait for the next one.
const MAILS_PER_POLL: usize = 500;
/// A larger mail is no bounce we can use: flagged junk unread.
const LARGEST_MAIL: u32 = 10 * 1024 * 1024;
const DONE: &str = "$MailwarmDone";
const JUNK: &str = "$MailwarmJunk";
/// The whole poll (connect, login, read, flag) ends within this.
const POLL_TIMEOUT: Duration = Duration::from_secs(120);

/// What polling needs.
#[derive(Clone)]
pub struct Mailbox {
    pub pool: DbPool,
    pub url: Url,
    pub bounce_address: Option<Address>,
    pub policy: Policy,
    pub tls: Arc<tokio_rustls::rustls::ClientConfig>,
}

/// The recurring poll (its payload is empty).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollBounceMailbox;

impl BackgroundJob for PollBounceMailbox {
    const KIND: &'static str = "poll_bounce_mailbox";
    type Context = Mailbox;

    async fn run(&self, mailbox: &Mailbox) -> Result<(), JobError> {
        match tokio::time::timeout(POLL_TIMEOUT, mailbox.poll()).await {
            Ok(Ok(polled)) => {
                if polled.read > 0 {
                    tracing::info!(
                        read = polled.read,
                        recorded = polled.recorded,
                        junk = polled.junk,
                        "bounce mailbox read"
                    );
                }
                Ok(())
            }
            Ok(Err(err)) => Err(JobError::Retry(format!("bounce mailbox: {err}"))),
            Err(_) => Err(JobError::Retry(format!(
                "bounce mailbox: no end within {POLL_TIMEOUT:?}"
            ))),
        }
    }
}

/// What one poll did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    pub read: usize,
    pub recorded: usize,
    pub junk: usize,
}

/// What one mail turned out to be.
enum Verdict {
    Read { recorded: usize },
    Junk(String),
}

impl Mailbox {
    /// Connects, reads what is new, flags it, logs out.
    pub async fn poll(&self) -> anyhow::Result<Polled> {
        let host = self
            .url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let tls = self.url.scheme() == "imaps";
        let port = self.url.port().unwrap_or(if tls { 993 } else { 143 });
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        if tls {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.clone())?;
            let stream = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await?;
            self.session(stream).await
        } else {
            self.session(tcp).await
        }
    }

    async fn session<T>(&self, stream: T) -> anyhow::Result<Polled>
    where
        T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
    {
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8_lossy()
                .into_owned()
        };
        let mut client = async_imap::Client::new(stream);
        client
            .read_response()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the server closed the connection before its greeting"))?;
        let mut session = client
            .login(
                decode(self.url.username()),
                decode(self.url.password().unwrap_or_default()),
            )
            .await
            .map_err(|(err, _)| anyhow::anyhow!("login refused: {err}"))?;
        let folder = decode(self.url.path().trim_start_matches('/'));
        session
            .select(if folder.is_empty() { "INBOX" } else { folder.as_str() })
            .await?;
        let mut uids: Vec<u32> = session
            .uid_search(format!("UNDELETED UNKEYWORD {DONE} UNKEYWORD {JUNK}"))
            .await?
            .into_iter()
            .collect();
        uids.sort_unstable();
        uids.truncate(MAILS_PER_POLL);
        let mut polled = Polled::default();
        let key = {
            let mut conn = self.pool.get().await?;
            crate::db::shared_secret(&mut conn, "unsubscribe").await?
        };
        for chunk in uids.chunks(20) {
            let set = chunk.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            let mut mails: Vec<(u32, Option<Vec<u8>>)> = Vec::new();
            {
                let mut fetched = session.uid_fetch(&set, "(UID RFC822.SIZE BODY.PEEK[])").await?;
                while let Some(fetch) = fetched.next().await {
                    let fetch = fetch?;
                    let Some(uid) = fetch.uid else { continue };
                    let body = fetch
                        .body()
                        .filter(|_| fetch.size.is_none_or(|s| s <= LARGEST_MAIL))
                        .map(<[u8]>::to_vec);
                    mails.push((uid, body));
                }
            }
            for (uid, body) in mails {
                let verdict = match body {
                    Some(raw) => self.take(&raw, &key).await?,
                    None => Verdict::Junk(format!("larger than {LARGEST_MAIL} bytes")),
                };
                polled.read += 1;
                let flag = match verdict {
                    Verdict::Read { recorded } => {
                        polled.recorded += recorded;
                        DONE
                    }
                    Verdict::Junk(why) => {
                        tracing::info!(uid, why, "a mail in the bounce mailbox is no report; flagged {JUNK}");
                        polled.junk += 1;
                        JUNK
                    }
                };
                let mut stored = session
                    .uid_store(uid.to_string(), format!("+FLAGS (\\Seen {flag})"))
                    .await?;
                while let Some(done) = stored.next().await {
                    done?;
                }
            }
        }
        session.logout().await?;
        Ok(polled)
    }

    /// One mail: read, tied to its delivery, recorded. Err only when the database fails
    /// (the poll stops and the mail is read again next time).
    async fn take(&self, raw: &[u8], key: &[u8]) -> anyhow::Result<Verdict> {
        let read = std::panic::catch_unwind(|| report::read(raw))
            .unwrap_or_else(|panic| Err(format!("reading it failed: {}", crate::tasks::panic_text(&*panic))));
        let report = match read {
            Ok(report) => report,
            Err(why) => return Ok(Verdict::Junk(why)),
        };
        let Some(finding) = worst(&report.findings) else {
            return Ok(Verdict::Read { recorded: 0 });
        };
        let mut conn = self.pool.get().await?;
        let Some(delivery) = self.delivery_of(&mut conn, raw, key, &report, finding).await? else {
            tracing::info!(recipient = ?finding.recipient, "a report about no delivery of ours (no valid VERP token or Message-ID)");
            return Ok(Verdict::Read { recorded: 0 });
        };
        let report = bounces::Report {
            delivery,
            kind: finding.kind,
            diagnostic: finding.diagnostic.clone(),
            source: Source::Mailbox,
        };
        let policy = self.policy;
        let recorded = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| bounces::record(conn, &report, &policy).await)
            .await?;
        Ok(Verdict::Read {
            recorded: usize::from(matches!(recorded, Recorded::New { .. })),
        })
    }

    /// The delivery a report is about: a valid VERP token in the mail (its recipient, the
    /// returned headers), or else the original's Message-ID (`<delivery id@domain>`, an
    /// unguessable id) when the delivery went to the address the report names.
    async fn delivery_of(
        &self,
        conn: &mut AsyncPgConnection,
        raw: &[u8],
        key: &[u8],
        report: &report::Report,
        finding: &report::Finding,
    ) -> diesel::QueryResult<Option<DeliveryId>> {
        if let Some(bounce) = &self.bounce_address
            && let Some(delivery) = verp::find_in(&String::from_utf8_lossy(raw), bounce, key).first()
        {
            return Ok(Some(*delivery));
        }
        for id in &report.original_message_ids {
            let Some(delivery) = id
                .trim_matches(['<', '>'])
                .split('@')
                .next()
                .and_then(|local| uuid::Uuid::parse_str(local).ok())
                .map(DeliveryId)
            else {
                continue;
            };
            if bounces::delivered_to(conn, delivery, finding.recipient.as_deref()).await? {
                return Ok(Some(delivery));
            }
        }
        Ok(None)
    }
}

/// The finding that matters most: a complaint, then a hard bounce, then a soft one.
fn worst(findings: &[report::Finding]) -> Option<&report::Finding> {
    let rank = |kind: BounceKind| match kind {
        BounceKind::Complaint => 0,
        BounceKind::Hard => 1,
        BounceKind::Soft => 2,
    };
    findings.iter().min_by_key(|f| rank(f.kind))
}
