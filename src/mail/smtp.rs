//! SMTP client: a small pool of connections that we drive byte for byte.
//!
//! Why our own protocol code and not lettre's transport or connection type: lettre reads
//! replies as UTF-8 lines into a buffer we cannot see, and takes any 2xx or 3xx reply as
//! the answer to any command. So a Latin-1 reply to an accepted message was an error
//! (recorded UNKNOWN), replies a server sent in surplus stayed in the buffer of a pooled
//! connection and were read as the next message's, and a `250` where DATA must answer
//! `354` made the message go out as commands. Here the client reads exactly the replies
//! it is owed, checks each code against what its command allows (RFC 5321 4.3.2), decodes
//! reply text lossily (invalid UTF-8 replaced, control characters dropped), bounds a reply
//! at 64 KiB, and drops a connection with anything unexpected or unread instead of reusing
//! it. Every phase has a timeout and the whole exchange one more; every error says whether
//! it happened before the final dot (safe to retry) or after it (the server may have
//! accepted the message, and the dispatcher must not send it again).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_rustls::rustls::pki_types::CertificateDer;
use url::Url;

use super::message::Outgoing;
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
    credentials: Option<(String, String)>,
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
    /// User and password are percent-decoded (RFC 3986), so `p%2Bw` is `p+w` and a `+` stays
    /// a `+`.
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
        let decode = |part: &str, what: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| format!("the {what} is not UTF-8 once percent-decoded"))
        };
        let credentials = if url.username().is_empty() {
            None
        } else {
            Some((
                decode(url.username(), "user name")?,
                decode(url.password().unwrap_or(""), "password")?,
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
    hello: String,
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
    permits: Semaphore,
    idle: std::sync::Mutex<Vec<Connection>>,
}

/// One reply: its code and the text of its lines, decoded lossily.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The lines' text joined by spaces.
    pub fn text(&self) -> String {
        self.lines.join(" ").trim().to_owned()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text();
        if text.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {text}", self.code)
        }
    }
}

/// What went wrong in one step of an exchange.
enum Trouble {
    /// Reading or writing failed: refused, reset, closed.
    Io(io::Error),
    /// A well-formed reply, but not one this command allows.
    Reply(Reply),
    /// Something that is not an SMTP reply, or longer than 64 KiB.
    Garbage(String),
    /// No reply within the given timeout.
    Timeout(String),
    /// We decided not to go on (the server lacks what this message needs).
    Refused(FailureKind, String),
}

impl From<io::Error> for Trouble {
    fn from(err: io::Error) -> Self {
        Trouble::Io(err)
    }
}

/// The server's extensions that matter here, from its EHLO reply.
#[derive(Debug, Default, Clone)]
struct Extensions {
    pipelining: bool,
    smtputf8: bool,
    eight_bit_mime: bool,
    starttls: bool,
    auth: Vec<String>,
    /// SIZE: the largest message the server takes (0: no limit named).
    size: Option<u64>,
}

impl Extensions {
    fn from_ehlo(reply: &[String]) -> Extensions {
        let mut ext = Extensions::default();
        // The first line greets; each later line names one extension.
        for line in reply.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else { continue };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => ext.pipelining = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "8BITMIME" => ext.eight_bit_mime = true,
                "STARTTLS" => ext.starttls = true,
                "AUTH" => ext.auth = words.map(str::to_ascii_uppercase).collect(),
                "SIZE" => ext.size = words.next().and_then(|n| n.parse().ok()),
                _ => {}
            }
        }
        ext
    }
}

/// The byte stream under a session: TCP, or TLS over TCP.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An open session: the stream, the bytes read from it and not yet taken as a reply,
/// and what the server offers.
struct Connection {
    stream: Stream,
    unread: Vec<u8>,
    ext: Extensions,
}

impl Connection {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), Trouble> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// The next whole reply, however it is cut into reads.
    async fn read_reply(&mut self) -> Result<Reply, Trouble> {
        loop {
            if let Some((reply, used)) = parse_reply(&self.unread)? {
                self.unread.drain(..used);
                return Ok(reply);
            }
            if self.unread.len() > MAX_REPLY_BYTES {
                return Err(Trouble::Garbage("the server's reply is longer than 64 KiB".into()));
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(Trouble::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )));
            }
            self.unread.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether the connection can carry another message: nothing left unread, nothing
    /// arrived since, not closed by the server. Looks without waiting.
    fn is_clean(&mut self) -> bool {
        if !self.unread.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        // Pending: nothing to read, the connection is open and quiet.
        self.stream.read(&mut probe).now_or_never().is_none()
    }
}

/// Parses one reply from the start of `buf`: `Ok(None)` when more bytes are needed.
/// Lines end in CRLF (a bare LF is tolerated); all lines carry the same code; `-` after the
/// code continues the reply, a space or nothing ends it.
fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, Trouble> {
    let mut at = 0;
    let mut code: Option<&[u8]> = None;
    let mut lines: Vec<String> = Vec::new();
    while let Some(end) = buf[at..].iter().position(|&b| b == b'\n').map(|i| at + i) {
        let mut line = &buf[at..end];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        at = end + 1;
        let well_formed = line.len() >= 3
            && line[..3].iter().all(u8::is_ascii_digit)
            && matches!(line.get(3), None | Some(b' ') | Some(b'-'))
            && code.is_none_or(|c| c == &line[..3]);
        if !well_formed {
            return Err(Trouble::Garbage(format!(
                "not an SMTP reply: {}",
                clean_text(&line[..line.len().min(200)])
            )));
        }
        code = Some(&line[..3]);
        lines.push(clean_text(line.get(4..).unwrap_or_default()));
        if line.get(3) != Some(&b'-') {
            let code = code.map_or(0, |c| c.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')));
            return Ok(Some((Reply { code, lines }, at)));
        }
    }
    Ok(None)
}

/// Reply text as we keep it: invalid UTF-8 replaced, control characters (NUL included)
/// dropped, tabs made spaces.
fn clean_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .filter(|c| !c.is_control())
        .collect()
}

impl SmtpPool {
    /// `extra_roots`: certificates trusted besides the public web roots (SMTP_TLS_CA).
    pub fn new(
        target: SmtpTarget,
        timeouts: SmtpTimeouts,
        concurrency: usize,
        extra_roots: Vec<CertificateDer<'static>>,
    ) -> SmtpPool {
        SmtpPool {
            target,
            timeouts,
            hello: hello_name(),
            tls: tls_config(extra_roots),
            permits: Semaphore::new(concurrency.max(1)),
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn target(&self) -> &SmtpTarget {
        &self.target
    }

    /// Hands one message to the server; returns the server's reply to the final dot.
    pub async fn send(&self, mail: &Outgoing) -> Result<String, SendError> {
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let progress = Progress::default();
        match timeout(self.timeouts.send, self.exchange(mail, &progress)).await {
            Ok(result) => result,
            // The whole exchange ran out of time; the connection went with the future.
            Err(_) => Err(progress.failure(Trouble::Timeout(format!(
                "no answer within SEND_TIMEOUT ({:?})",
                self.timeouts.send
            )))),
        }
    }

    async fn exchange(&self, mail: &Outgoing, progress: &Progress) -> Result<String, SendError> {
        let reused = loop {
            let Some(mut conn) = self.idle.lock().expect("pool lock").pop() else {
                break None;
            };
            // A connection with something unread, or closed by the server, is dropped.
            if conn.is_clean() {
                break Some(conn);
            }
        };
        if let Some(conn) = reused {
            match self.transaction(conn, mail, progress).await {
                // The server closed the idle connection: nothing was sent, try a fresh one.
                Err(err) if err.phase == Phase::Mail && err.kind == FailureKind::Transient && err.code.is_none() => {
                    tracing::debug!(error = %err, "idle SMTP connection was stale; reconnecting");
                    progress.reset();
                }
                other => return other,
            }
        }
        progress.set(Phase::Connect);
        let conn = match timeout(self.timeouts.connect, self.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(Trouble::Io(err))) => {
                return Err(progress.failure(Trouble::Io(io::Error::new(
                    err.kind(),
                    format!("connection failed: {err}"),
                ))));
            }
            Ok(Err(trouble)) => return Err(progress.failure(trouble)),
            Err(_) => {
                return Err(progress.failure(Trouble::Timeout(format!(
                    "no connection within SMTP_CONNECT_TIMEOUT ({:?})",
                    self.timeouts.connect
                ))));
            }
        };
        self.transaction(conn, mail, progress).await
    }

    /// TCP (and TLS), greeting, EHLO (HELO where EHLO is refused), STARTTLS, AUTH.
    async fn connect(&self) -> Result<Connection, Trouble> {
        let tcp = TcpStream::connect((self.target.host.as_str(), self.target.port)).await?;
        let _ = tcp.set_nodelay(true);
        let stream = match self.target.security {
            Security::Implicit => Stream::Tls(Box::new(self.tls_over(tcp).await?)),
            _ => Stream::Plain(tcp),
        };
        let mut conn = Connection {
            stream,
            unread: Vec::new(),
            ext: Extensions::default(),
        };
        expect(conn.read_reply().await?, &[220])?;
        self.hello(&mut conn).await?;
        if self.target.security == Security::StartTls {
            if !conn.ext.starttls {
                return Err(Trouble::Refused(
                    FailureKind::Transient,
                    "the server does not offer STARTTLS (SMTP_URL has tls=required)".into(),
                ));
            }
            conn.write(b"STARTTLS\r\n").await?;
            expect(conn.read_reply().await?, &[220])?;
            // Bytes sent before the handshake would be read as if they came over TLS.
            if !conn.unread.is_empty() {
                return Err(Trouble::Garbage("the server sent data before the TLS handshake".into()));
            }
            let Stream::Plain(tcp) = conn.stream else {
                unreachable!("STARTTLS is asked for on a plain connection only")
            };
            conn.stream = Stream::Tls(Box::new(self.tls_over(tcp).await?));
            self.hello(&mut conn).await?;
        }
        if let Some((user, password)) = &self.target.credentials {
            self.authenticate(&mut conn, user, password).await?;
        }
        Ok(conn)
    }

    async fn hello(&self, conn: &mut Connection) -> Result<(), Trouble> {
        conn.write(format!("EHLO {}\r\n", self.hello).as_bytes()).await?;
        let reply = conn.read_reply().await?;
        match reply.code {
            250 => conn.ext = Extensions::from_ehlo(&reply.lines),
            // A server from before ESMTP: HELO, and no extensions.
            500..=599 => {
                conn.write(format!("HELO {}\r\n", self.hello).as_bytes()).await?;
                expect(conn.read_reply().await?, &[250])?;
                conn.ext = Extensions::default();
            }
            _ => return Err(Trouble::Reply(reply)),
        }
        Ok(())
    }

    async fn authenticate(&self, conn: &mut Connection, user: &str, password: &str) -> Result<(), Trouble> {
        if conn.ext.auth.iter().any(|m| m == "PLAIN") {
            let token = STANDARD.encode(format!("\0{user}\0{password}"));
            conn.write(format!("AUTH PLAIN {token}\r\n").as_bytes()).await?;
            expect(conn.read_reply().await?, &[235])?;
        } else if conn.ext.auth.iter().any(|m| m == "LOGIN") {
            conn.write(b"AUTH LOGIN\r\n").await?;
            expect(conn.read_reply().await?, &[334])?;
            conn.write(format!("{}\r\n", STANDARD.encode(user)).as_bytes()).await?;
            expect(conn.read_reply().await?, &[334])?;
            conn.write(format!("{}\r\n", STANDARD.encode(password)).as_bytes())
                .await?;
            expect(conn.read_reply().await?, &[235])?;
        } else {
            return Err(Trouble::Refused(
                FailureKind::Transient,
                "SMTP_URL has credentials but the server offers neither AUTH PLAIN nor AUTH LOGIN".into(),
            ));
        }
        Ok(())
    }

    async fn tls_over(&self, tcp: TcpStream) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.target.host.clone())
            .map_err(io::Error::other)?;
        tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
    }

    /// MAIL, RCPT, DATA (in one write where the server pipelines), the message: each reply
    /// checked, each under SMTP_COMMAND_TIMEOUT. On success the connection goes back to
    /// the pool unless something is left unread; on any failure it is dropped.
    async fn transaction(
        &self,
        mut conn: Connection,
        mail: &Outgoing,
        progress: &Progress,
    ) -> Result<String, SendError> {
        progress.set(Phase::Mail);
        // Built by `message::build`, which checks this; checked again where it matters: a
        // bare CR or LF inside DATA is how SMTP smuggling starts.
        if let Err(flaw) = super::message::check_wire(&mail.raw, usize::MAX) {
            return Err(progress.failure(Trouble::Refused(
                FailureKind::Permanent,
                format!("not sent: the message has {flaw}"),
            )));
        }
        if mail.smtputf8 && !conn.ext.smtputf8 {
            return Err(progress.failure(Trouble::Refused(
                FailureKind::Permanent,
                "the address has non-ASCII characters before the @, and the server does not offer SMTPUTF8".into(),
            )));
        }
        if let Some(size) = conn.ext.size.filter(|&s| s > 0)
            && mail.raw.len() as u64 > size
        {
            return Err(progress.failure(Trouble::Refused(
                FailureKind::Permanent,
                format!(
                    "the message is {} bytes; the server takes at most {size} (SIZE)",
                    mail.raw.len()
                ),
            )));
        }
        let mut mail_from = format!(
            "MAIL FROM:<{}>",
            mail.envelope.from().map(ToString::to_string).unwrap_or_default()
        );
        if !mail.raw.is_ascii() && conn.ext.eight_bit_mime {
            mail_from.push_str(" BODY=8BITMIME");
        }
        if mail.smtputf8 {
            mail_from.push_str(" SMTPUTF8");
        }
        mail_from.push_str("\r\n");
        let rcpts: Vec<String> = mail
            .envelope
            .to()
            .iter()
            .map(|to| format!("RCPT TO:<{to}>\r\n"))
            .collect();

        let result = async {
            if conn.ext.pipelining {
                // One write; then every reply in order, each under SMTP_COMMAND_TIMEOUT.
                let commands = format!("{mail_from}{}DATA\r\n", rcpts.concat());
                self.step(conn.write(commands.as_bytes())).await?;
                self.expect_reply(&mut conn, &[250]).await?;
                progress.set(Phase::Rcpt);
                for _ in &rcpts {
                    self.expect_reply(&mut conn, &[250, 251]).await?;
                }
                progress.set(Phase::Data);
                self.expect_reply(&mut conn, &[354]).await?;
            } else {
                self.step(conn.write(mail_from.as_bytes())).await?;
                self.expect_reply(&mut conn, &[250]).await?;
                progress.set(Phase::Rcpt);
                for rcpt in &rcpts {
                    self.step(conn.write(rcpt.as_bytes())).await?;
                    self.expect_reply(&mut conn, &[250, 251]).await?;
                }
                progress.set(Phase::Data);
                self.step(conn.write(b"DATA\r\n")).await?;
                self.expect_reply(&mut conn, &[354]).await?;
            }
            // Nothing may come between 354 and our data.
            if !conn.unread.is_empty() {
                return Err(Trouble::Garbage("the server sent more than one reply to DATA".into()));
            }
            progress.set(Phase::Message);
            self.step(conn.write(&dot_stuffed(&mail.raw))).await?;
            progress.dot_handed_over.store(true, Ordering::Relaxed);
            self.step(conn.write(b".\r\n")).await?;
            self.expect_reply(&mut conn, &[250]).await
        }
        .await;
        match result {
            Ok(reply) => {
                if conn.is_clean() {
                    self.idle.lock().expect("pool lock").push(conn);
                } else {
                    tracing::warn!(reply = %reply, "the SMTP server sent more than it was asked for; dropping the connection");
                }
                Ok(reply.to_string())
            }
            Err(trouble) => Err(progress.failure(trouble)),
        }
    }

    /// One write or read under SMTP_COMMAND_TIMEOUT.
    async fn step<T>(&self, work: impl Future<Output = Result<T, Trouble>>) -> Result<T, Trouble> {
        match timeout(self.timeouts.command, work).await {
            Ok(result) => result,
            Err(_) => Err(Trouble::Timeout(format!(
                "no reply within SMTP_COMMAND_TIMEOUT ({:?})",
                self.timeouts.command
            ))),
        }
    }

    async fn expect_reply(&self, conn: &mut Connection, allowed: &[u16]) -> Result<Reply, Trouble> {
        expect(self.step(conn.read_reply()).await?, allowed)
    }
}

/// The reply if its code is one of `allowed`, else the trouble it is.
fn expect(reply: Reply, allowed: &[u16]) -> Result<Reply, Trouble> {
    if allowed.contains(&reply.code) || (allowed.contains(&250) && (200..300).contains(&reply.code)) {
        Ok(reply)
    } else {
        Err(Trouble::Reply(reply))
    }
}

/// The message as DATA carries it: a `.` at the start of a line doubled (RFC 5321 4.5.2),
/// ending with CRLF. The message has CRLF line ends only (`message::check_wire`).
fn dot_stuffed(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 64);
    let mut line_start = true;
    for &byte in raw {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        line_start = byte == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The name we greet with: this host's name, else `localhost`.
fn hello_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The certificates of a PEM file, for SMTP_TLS_CA.
pub fn load_roots(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if roots.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(roots)
}

/// The TLS set-up of outgoing connections (SMTP, and the bounce mailbox): the public web
/// roots and `extra_roots`.
pub fn tls_config(extra_roots: Vec<CertificateDer<'static>>) -> Arc<tokio_rustls::rustls::ClientConfig> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let (added, ignored) = roots.add_parsable_certificates(extra_roots);
    if ignored > 0 {
        tracing::warn!(
            added,
            ignored,
            "SMTP_TLS_CA: some certificates could not be used as roots"
        );
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
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

    fn reset(&self) {
        self.set(Phase::Connect);
        self.dot_handed_over.store(false, Ordering::Relaxed);
    }

    fn failure(&self, trouble: Trouble) -> SendError {
        let phase = Phase::from_u8(self.phase.load(Ordering::Relaxed));
        // After the final dot, anything but a 4xx or 5xx leaves the message's fate unknown:
        // only a person may decide to send it again.
        let unsure = if self.dot_handed_over.load(Ordering::Relaxed) {
            FailureKind::Unknown
        } else {
            FailureKind::Transient
        };
        let (kind, code, detail) = match trouble {
            Trouble::Reply(reply) => {
                let kind = match reply.code {
                    400..=499 => FailureKind::Transient,
                    500..=599 => FailureKind::Permanent,
                    _ => unsure,
                };
                let detail = match kind {
                    FailureKind::Permanent | FailureKind::Transient if reply.code >= 400 => reply.to_string(),
                    _ => format!("unexpected reply {reply}"),
                };
                (kind, Some(reply.code.to_string()), detail)
            }
            Trouble::Io(err) => (unsure, None, err.to_string()),
            Trouble::Garbage(text) | Trouble::Timeout(text) => (unsure, None, text),
            Trouble::Refused(kind, text) => (kind, None, text),
        };
        SendError {
            phase,
            kind,
            code,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bytes: &[u8]) -> Option<(Reply, usize)> {
        parse_reply(bytes).unwrap_or_else(|_| panic!("garbage: {bytes:?}"))
    }

    #[test]
    fn replies_are_read_whole_and_lossily() {
        let reply = |code, lines: &[&str]| Reply {
            code,
            lines: lines.iter().map(|l| l.to_string()).collect(),
        };
        assert_eq!(parsed(b"250 ok\r\n"), Some((reply(250, &["ok"]), 8)));
        assert_eq!(parsed(b"250-a\r\n250 b\r\n354 go\r\n").unwrap().0.text(), "a b");
        assert_eq!(parsed(b"250-a\r\n250 b\r\n354 go\r\n").unwrap().1, 14);
        assert_eq!(parsed(b"250-a\r\n25"), None);
        assert_eq!(parsed(b"221\n").unwrap().0, reply(221, &[""]));
        // Latin-1 and NUL: kept as text, not an error.
        let (reply, _) = parsed(b"250 re\xe7u \x00ok\r\n").unwrap();
        assert_eq!(reply.to_string(), "250 re\u{fffd}u ok");
        assert!(parse_reply(b"this is not smtp\r\n").is_err());
        assert!(parse_reply(b"250-a\r\n251 b\r\n").is_err());
    }

    #[test]
    fn expected_codes_are_checked() {
        let reply = |code| Reply { code, lines: vec![] };
        assert!(expect(reply(250), &[354]).is_err());
        assert!(expect(reply(354), &[250]).is_err());
        assert!(expect(reply(251), &[250, 251]).is_ok());
        assert!(expect(reply(252), &[250]).is_ok());
    }

    #[test]
    fn dots_are_stuffed() {
        assert_eq!(dot_stuffed(b".a\r\nb\r\n.\r\n..c"), b"..a\r\nb\r\n..\r\n...c\r\n");
    }

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
        assert_eq!(t.credentials, Some(("u@x".into(), "p/w".into())));
        // Percent-decoded, not form-decoded: `+` stays, `&` is not a separator.
        let t = SmtpTarget::from_url(&Url::parse("smtp://us+er:p+w%26b@mx").unwrap()).unwrap();
        assert_eq!(t.credentials, Some(("us+er".into(), "p+w&b".into())));
        let t = SmtpTarget::from_url(&Url::parse("smtp://u:a&b@mx").unwrap()).unwrap();
        assert_eq!(t.credentials, Some(("u".into(), "a&b".into())));
        let t = SmtpTarget::from_url(&Url::parse("smtps://mx").unwrap()).unwrap();
        assert_eq!((t.port, t.security), (465, Security::Implicit));
        assert!(SmtpTarget::from_url(&Url::parse("http://mx").unwrap()).is_err());
        assert!(SmtpTarget::from_url(&Url::parse("smtp://mx?tls=maybe").unwrap()).is_err());
    }
}
