//! SMTP through a small pool of lettre connections that we drive ourselves.
//!
//! Why not lettre's `AsyncSmtpTransport`: its timeout covers only the TCP connect, and a
//! send cancelled by an outer timeout hands its half-used connection back to the pool,
//! where the next message stalls or reads the previous one's late reply. Here every phase
//! has a timeout, the whole exchange has one more, a connection that failed or timed out
//! is dropped (never reused), a reply is cut off at 64 KiB, and every error says whether it
//! happened before or after the final dot: after it, the server may have accepted the
//! message, and the dispatcher must not send it again.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::timeout;
use url::Url;

use super::{FailureKind, Phase, SendError};

/// Longest reply we read; a server sending more (or an endless line) is cut off.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtp://host`: no TLS (a relay on the same host or network).
    Plain,
    /// `smtp://host?tls=required`: STARTTLS, refusing to go on without it.
    StartTls,
    /// `smtps://host`: TLS from the first byte.
    Implicit,
}

/// Where and how to connect: parsed from SMTP_URL.
#[derive(Clone)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub security: Security,
    credentials: Option<Credentials>,
}

impl fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password.
        f.debug_struct("SmtpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("auth", &self.credentials.is_some())
            .finish()
    }
}

impl SmtpTarget {
    /// `smtp://[user:pass@]host[:port][?tls=required]` or `smtps://[user:pass@]host[:port]`.
    pub fn from_url(url: &Url) -> Result<SmtpTarget, String> {
        let security = match (
            url.scheme(),
            url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned()),
        ) {
            ("smtp", None) => Security::Plain,
            ("smtp", Some(tls)) if tls == "required" => Security::StartTls,
            ("smtp", Some(other)) => {
                return Err(format!("unknown tls={other} (use tls=required for STARTTLS)"));
            }
            ("smtps", _) => Security::Implicit,
            (other, _) => return Err(format!("scheme {other}:// is not smtp:// or smtps://")),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = url
            .port()
            .unwrap_or(if security == Security::Implicit { 465 } else { 25 });
        let credentials = if url.username().is_empty() {
            None
        } else {
            let decode = |s: &str| percent_decode(s);
            Some(Credentials::new(
                decode(url.username()),
                decode(url.password().unwrap_or("")),
            ))
        };
        Ok(SmtpTarget {
            host,
            port,
            security,
            credentials,
        })
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// SMTP_CONNECT_TIMEOUT, SMTP_COMMAND_TIMEOUT, SEND_TIMEOUT.
#[derive(Debug, Clone, Copy)]
pub struct SmtpTimeouts {
    /// TCP connect, greeting, EHLO, STARTTLS and AUTH together.
    pub connect: Duration,
    /// Each command's reply (MAIL, RCPT, DATA, and the reply after the final dot).
    pub command: Duration,
    /// The whole exchange for one message, connection included.
    pub send: Duration,
}

/// A pool of SMTP connections to one server, at most `concurrency` in use at once.
pub struct SmtpPool {
    target: SmtpTarget,
    timeouts: SmtpTimeouts,
    hello: ClientId,
    permits: Semaphore,
    idle: std::sync::Mutex<Vec<Connection>>,
}

/// An open session, and whether its server takes MAIL, RCPT and DATA in one write
/// (PIPELINING, RFC 2920): two round trips per message instead of four.
struct Connection {
    smtp: AsyncSmtpConnection,
    pipelining: bool,
}

impl SmtpPool {
    pub fn new(target: SmtpTarget, timeouts: SmtpTimeouts, concurrency: usize) -> SmtpPool {
        SmtpPool {
            target,
            timeouts,
            hello: ClientId::default(),
            permits: Semaphore::new(concurrency.max(1)),
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn target(&self) -> &SmtpTarget {
        &self.target
    }

    /// Hands one message to the server; returns the server's reply to the final dot.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<String, SendError> {
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let progress = Progress::default();
        match timeout(self.timeouts.send, self.exchange(envelope, message, &progress)).await {
            Ok(result) => result,
            // The whole exchange ran out of time; the connection went with the future.
            Err(_) => Err(progress.failure(
                None,
                format!("no answer within SEND_TIMEOUT ({:?})", self.timeouts.send),
            )),
        }
    }

    async fn exchange(&self, envelope: &Envelope, message: &[u8], progress: &Progress) -> Result<String, SendError> {
        let reused = self.idle.lock().expect("pool lock").pop();
        if let Some(conn) = reused {
            match self.transaction(conn, envelope, message, progress).await {
                // The server closed the idle connection: nothing was sent, try a fresh one.
                Err(err) if err.phase == Phase::Mail && err.kind == FailureKind::Transient && err.code.is_none() => {
                    tracing::debug!(error = %err, "idle SMTP connection was stale; reconnecting");
                }
                other => return other,
            }
        }
        progress.set(Phase::Connect);
        let conn = match timeout(self.timeouts.connect, self.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(ConnectError::Io(err))) => {
                return Err(progress.failure(None, format!("connection failed: {err}")));
            }
            Ok(Err(ConnectError::Smtp(err))) => {
                return Err(progress.failure(Some(&err), err.to_string()));
            }
            Err(_) => {
                return Err(progress.failure(
                    None,
                    format!(
                        "no connection within SMTP_CONNECT_TIMEOUT ({:?})",
                        self.timeouts.connect
                    ),
                ));
            }
        };
        self.transaction(conn, envelope, message, progress).await
    }

    async fn connect(&self) -> Result<Connection, ConnectError> {
        let tcp = TcpStream::connect((self.target.host.as_str(), self.target.port)).await?;
        let _ = tcp.set_nodelay(true);
        let peer = tcp.peer_addr()?;
        let stream: Box<dyn AsyncTokioStream> = if self.target.security == Security::Implicit {
            let tls = implicit_tls(&self.target.host, tcp).await?;
            Box::new(MeteredStream::new(tls, peer))
        } else {
            Box::new(MeteredStream::new(tcp, peer))
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await?;
        if self.target.security == Security::StartTls {
            conn.starttls(TlsParameters::new(self.target.host.clone())?, &self.hello)
                .await?;
        }
        // lettre keeps only the extensions it uses itself from its EHLO; ask again (before
        // AUTH) to learn whether the server pipelines.
        let extensions = conn.command(Ehlo::new(self.hello.clone())).await?;
        let pipelining = extensions.message().any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|keyword| keyword.eq_ignore_ascii_case("PIPELINING"))
        });
        if let Some(credentials) = &self.target.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials).await?;
        }
        Ok(Connection { smtp: conn, pipelining })
    }

    /// MAIL, RCPT, DATA (in one write where the server pipelines), message: each reply
    /// under SMTP_COMMAND_TIMEOUT. On success the connection goes back to the pool; on any
    /// failure it is dropped.
    async fn transaction(
        &self,
        mut conn: Connection,
        envelope: &Envelope,
        message: &[u8],
        progress: &Progress,
    ) -> Result<String, SendError> {
        let smtp = &mut conn.smtp;
        let mut mail_params = Vec::new();
        if !message.is_ascii() && smtp.server_info().supports_feature(Extension::EightBitMime) {
            mail_params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let non_ascii = |a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii();
        if envelope.from().is_some_and(non_ascii) || envelope.to().iter().any(non_ascii) {
            mail_params.push(MailParameter::SmtpUtfEight);
        }
        let mail = Mail::new(envelope.from().cloned(), mail_params);
        let rcpts: Vec<Rcpt> = envelope.to().iter().map(|to| Rcpt::new(to.clone(), vec![])).collect();

        progress.set(Phase::Mail);
        if conn.pipelining {
            // One write; then the replies in order, each under SMTP_COMMAND_TIMEOUT. After a
            // refusal the later replies stay unread, and the connection is dropped with it.
            let commands = format!(
                "{mail}{}{Data}",
                rcpts.iter().map(ToString::to_string).collect::<String>()
            );
            self.step(smtp.command(commands), progress).await?;
            progress.set(Phase::Rcpt);
            for _ in &rcpts {
                self.step(smtp.read_response(), progress).await?;
            }
            progress.set(Phase::Data);
            self.step(smtp.read_response(), progress).await?;
        } else {
            self.step(smtp.command(mail), progress).await?;
            progress.set(Phase::Rcpt);
            for rcpt in rcpts {
                self.step(smtp.command(rcpt), progress).await?;
            }
            progress.set(Phase::Data);
            self.step(smtp.command(Data), progress).await?;
        }
        progress.set(Phase::Message);
        let parts = FinalDotWatch {
            part: Some(message),
            dot: &progress.dot_handed_over,
        };
        let reply = self.step(smtp.message_iter(parts), progress).await?;

        self.idle.lock().expect("pool lock").push(conn);
        Ok(reply_text(&reply))
    }

    async fn step<F>(&self, command: F, progress: &Progress) -> Result<Response, SendError>
    where
        F: Future<Output = Result<Response, lettre::transport::smtp::Error>>,
    {
        match timeout(self.timeouts.command, command).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(err)) => Err(progress.failure(Some(&err), err.to_string())),
            Err(_) => Err(progress.failure(
                None,
                format!("no reply within SMTP_COMMAND_TIMEOUT ({:?})", self.timeouts.command),
            )),
        }
    }
}

/// Where an exchange got to: read after a failure or an outer timeout.
#[derive(Default)]
struct Progress {
    phase: AtomicU8,
    dot_handed_over: AtomicBool,
}

impl Progress {
    fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    fn failure(&self, err: Option<&lettre::transport::smtp::Error>, detail: String) -> SendError {
        let phase = Phase::from_u8(self.phase.load(Ordering::Relaxed));
        let code = err.and_then(|e| e.status()).map(|c| c.to_string());
        let kind = match err {
            Some(e) if e.is_permanent() => FailureKind::Permanent,
            Some(e) if e.is_transient() => FailureKind::Transient,
            // No reply we could read after the message was handed over: it may have been
            // accepted. Only a person may decide to send it again.
            _ if self.dot_handed_over.load(Ordering::Relaxed) => FailureKind::Unknown,
            _ => FailureKind::Transient,
        };
        SendError {
            phase,
            kind,
            code,
            detail,
        }
    }
}

/// Yields the message once; asking for more means lettre is about to write the final dot.
struct FinalDotWatch<'a> {
    part: Option<&'a [u8]>,
    dot: &'a AtomicBool,
}

impl<'a> Iterator for FinalDotWatch<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let part = self.part.take();
        if part.is_none() {
            self.dot.store(true, Ordering::Relaxed);
        }
        part
    }
}

fn reply_text(reply: &Response) -> String {
    format!("{} {}", reply.code(), reply.message().collect::<Vec<_>>().join(" "))
}

/// Connecting fails either below SMTP (TCP, TLS) or in the SMTP greeting, EHLO or AUTH.
enum ConnectError {
    Io(std::io::Error),
    Smtp(lettre::transport::smtp::Error),
}

impl From<std::io::Error> for ConnectError {
    fn from(err: std::io::Error) -> Self {
        ConnectError::Io(err)
    }
}

impl From<lettre::transport::smtp::Error> for ConnectError {
    fn from(err: lettre::transport::smtp::Error) -> Self {
        ConnectError::Smtp(err)
    }
}

async fn implicit_tls(host: &str, tcp: TcpStream) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// A stream that refuses to read more than [`MAX_REPLY_BYTES`] between two writes: lettre
/// reads replies line by line with no bound on a line that never ends.
#[derive(Debug)]
struct MeteredStream<S> {
    inner: S,
    peer: SocketAddr,
    read_since_write: usize,
}

impl<S> MeteredStream<S> {
    fn new(inner: S, peer: SocketAddr) -> Self {
        MeteredStream {
            inner,
            peer,
            read_since_write: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for MeteredStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            self.read_since_write += buf.filled().len() - before;
            if self.read_since_write > MAX_REPLY_BYTES {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the server's reply is longer than 64 KiB",
                )));
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MeteredStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result
            && n > 0
        {
            self.read_since_write = 0;
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S> AsyncTokioStream for MeteredStream<S>
where
    S: AsyncRead + AsyncWrite + Send + Sync + Unpin + fmt::Debug,
{
    fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_parse_into_targets() {
        let t = SmtpTarget::from_url(&Url::parse("smtp://relay.local").unwrap()).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.security),
            ("relay.local", 25, Security::Plain)
        );
        let t = SmtpTarget::from_url(&Url::parse("smtp://u%40x:p%2Fw@mx:587?tls=required").unwrap()).unwrap();
        assert_eq!((t.port, t.security), (587, Security::StartTls));
        assert!(format!("{t:?}").contains("auth: true") && !format!("{t:?}").contains("p/w"));
        let t = SmtpTarget::from_url(&Url::parse("smtps://mx").unwrap()).unwrap();
        assert_eq!((t.port, t.security), (465, Security::Implicit));
        assert!(SmtpTarget::from_url(&Url::parse("http://mx").unwrap()).is_err());
        assert!(SmtpTarget::from_url(&Url::parse("smtp://mx?tls=maybe").unwrap()).is_err());
    }
}
