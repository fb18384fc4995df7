//! A real SMTP server on loopback for tests, with faults chosen per recipient by the
//! address's local part:
//!
//! | local part starts with | the server |
//! | --- | --- |
//! | `tempfail` | answers RCPT with 451 |
//! | `reject` | answers RCPT with 550 |
//! | `garbage` | answers RCPT with a line that is not SMTP |
//! | `reset` | closes the connection at RCPT |
//! | `endless` | answers RCPT with bytes and no line end, without stopping |
//! | `silent` | takes the whole message, then never answers the final dot |
//! | `dropafterdot` | takes the whole message, then closes without answering |
//! | `latin1` | accepts, answering the final dot in Latin-1 (`250 reçu`, not UTF-8) |
//! | `surplus` | accepts, and answers the final dot twice |
//! | `data250` | answers DATA with `250` instead of `354`, then counts what comes next |
//! | `nulreply` | answers RCPT with a 451 that holds a NUL byte |
//! | `absurdwait` | answers RCPT with 451 "try again in 9999999999999 hours" |
//! | anything else | accepts |
//!
//! It offers PIPELINING (RFC 2920) and SMTPUTF8 and counts the transactions whose commands
//! came in one write; `start_without_pipelining` offers a server that does not pipeline,
//! and refuses commands sent before their turn; `start_without_smtputf8` one that does not
//! offer SMTPUTF8 and refuses it; `start_tls` one with STARTTLS or TLS from the first byte,
//! a certificate for `localhost` from an authority of its own, and AUTH PLAIN and LOGIN
//! over TLS (it keeps the credentials it was given).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// A message the server accepted (or took before a fault).
#[derive(Debug, Clone)]
pub struct Received {
    /// Whether the message came over TLS (STARTTLS or smtps).
    pub tls: bool,
    /// The whole MAIL command, parameters included.
    pub mail_command: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
    /// When it was accepted.
    pub at: std::time::SystemTime,
}

#[derive(Clone)]
pub struct TestSmtpServer {
    pub addr: SocketAddr,
    accepted: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    /// Transactions whose RCPT arrived together with their MAIL.
    pipelined: Arc<AtomicUsize>,
    offers_pipelining: bool,
    offers_smtputf8: bool,
    /// How long it thinks before accepting each message.
    delay: Duration,
    /// Lines that came after a `250` to DATA (a client that went on sent them as commands).
    stray: Arc<AtomicUsize>,
    tls: Option<TestTls>,
    /// What AUTH received, as `\0user\0password`.
    logins: Arc<Mutex<Vec<String>>>,
    /// `kill`: stop listening and drop every connection at once, as a killed process does.
    killed: Arc<tokio::sync::watch::Sender<bool>>,
}

/// TLS as the test server offers it, with its certificate.
#[derive(Clone)]
enum TestTls {
    /// STARTTLS offered in EHLO; AUTH offered only once it is on.
    StartTls(Arc<rustls::ServerConfig>),
    /// TLS from the first byte (smtps).
    Implicit(Arc<rustls::ServerConfig>),
}

trait AsyncStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncStream for T {}
type Stream = Box<dyn AsyncStream>;

fn base64_decode(text: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A certificate authority and a certificate for `localhost` signed by it: the server's
/// configuration, and the authority's PEM for the client (SMTP_TLS_CA).
pub fn tls_identity() -> (Arc<rustls::ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (Arc::new(config), ca.pem())
}

impl TestSmtpServer {
    pub async fn start() -> TestSmtpServer {
        Self::start_with_delay(Duration::ZERO).await
    }

    pub async fn start_with_delay(delay: Duration) -> TestSmtpServer {
        Self::start_with(delay, true).await
    }

    pub async fn start_without_pipelining() -> TestSmtpServer {
        Self::start_with(Duration::ZERO, false).await
    }

    /// A server with TLS: STARTTLS (`implicit` false) or TLS from the first byte; with the
    /// PEM of the authority that signed its certificate for `localhost`.
    pub async fn start_tls(implicit: bool) -> (TestSmtpServer, String) {
        let (config, ca) = tls_identity();
        let mut server = Self::settings(Duration::ZERO, true);
        server.tls = Some(if implicit {
            TestTls::Implicit(config)
        } else {
            TestTls::StartTls(config)
        });
        (server.listen().await, ca)
    }

    /// What AUTH received, each as `\0user\0password`.
    pub fn logins(&self) -> Vec<String> {
        self.logins.lock().unwrap().clone()
    }

    pub async fn start_without_smtputf8() -> TestSmtpServer {
        let mut server = Self::settings(Duration::ZERO, true);
        server.offers_smtputf8 = false;
        server.listen().await
    }

    /// Lines a client sent after the server answered DATA with `250`.
    pub fn stray_lines(&self) -> usize {
        self.stray.load(Ordering::SeqCst)
    }

    async fn start_with(delay: Duration, offers_pipelining: bool) -> TestSmtpServer {
        Self::settings(delay, offers_pipelining).listen().await
    }

    /// A server not yet listening.
    fn settings(delay: Duration, offers_pipelining: bool) -> TestSmtpServer {
        TestSmtpServer {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            accepted: Arc::default(),
            connections: Arc::default(),
            pipelined: Arc::default(),
            offers_pipelining,
            offers_smtputf8: true,
            delay,
            stray: Arc::default(),
            tls: None,
            logins: Arc::default(),
            killed: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Listens on a free loopback port and serves each connection.
    async fn listen(self) -> TestSmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = TestSmtpServer {
            addr: listener.local_addr().unwrap(),
            ..self
        };
        let handle = server.clone();
        let mut killed = server.killed.subscribe();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = killed.wait_for(|k| *k) => return,
                };
                let Ok((stream, _)) = accepted else { return };
                handle.connections.fetch_add(1, Ordering::SeqCst);
                let mut session_killed = handle.killed.subscribe();
                let session = handle.clone().session(stream);
                tokio::spawn(async move {
                    tokio::select! {
                        _ = session => {}
                        _ = session_killed.wait_for(|k| *k) => {}
                    }
                });
            }
        });
        server
    }

    /// Stops listening and drops every connection mid-conversation, as a killed process
    /// would: new connections are refused.
    pub fn kill(&self) {
        self.killed.send_replace(true);
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Messages accepted with a 250 after the final dot.
    pub fn accepted(&self) -> Vec<Received> {
        self.accepted.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Transactions whose MAIL, RCPT and DATA came in one write.
    pub fn pipelined(&self) -> usize {
        self.pipelined.load(Ordering::SeqCst)
    }

    /// Waits until `n` messages have been accepted.
    pub async fn wait_accepted(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let accepted = self.accepted();
            if accepted.len() >= n || tokio::time::Instant::now() > deadline {
                return accepted;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn session(self, tcp: TcpStream) {
        // Replies go out at once: with Nagle, a pipelined client would wait for a delayed ACK
        // between two replies written one after the other.
        let _ = tcp.set_nodelay(true);
        let mut stream: Stream = Box::new(tcp);
        let mut secure = false;
        if let Some(TestTls::Implicit(config)) = &self.tls {
            match TlsAcceptor::from(config.clone()).accept(stream).await {
                Ok(tls) => stream = Box::new(tls),
                Err(_) => return,
            }
            secure = true;
        }
        let mut greet = true;
        // A conversation ends, or hands its stream back for STARTTLS and goes on over TLS.
        while let Some(plain) = self.clone().converse(stream, secure, greet).await {
            let Some(TestTls::StartTls(config)) = &self.tls else {
                return;
            };
            match TlsAcceptor::from(config.clone()).accept(plain).await {
                Ok(tls) => stream = Box::new(tls),
                Err(_) => return,
            }
            secure = true;
            greet = false;
        }
    }

    async fn converse(self, stream: Stream, secure: bool, greet: bool) -> Option<Stream> {
        let (read, mut write) = tokio::io::split(stream);
        let mut lines = BufReader::new(read);
        if greet && write.write_all(b"220 test.local ESMTP\r\n").await.is_err() {
            return None;
        }
        let mut mail_from = String::new();
        let mut mail_command = String::new();
        let mut rcpt_to: Vec<String> = Vec::new();
        let mut line = Vec::new();
        let mut after_bad_data = false;
        loop {
            line.clear();
            match lines.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let command = String::from_utf8_lossy(&line).trim_end().to_owned();
            let upper = command.to_ascii_uppercase();
            if after_bad_data {
                self.stray.fetch_add(1, Ordering::SeqCst);
            }
            let reply: Vec<u8> = if upper.starts_with("EHLO") {
                let mut ehlo = b"250-test.local\r\n250-8BITMIME\r\n".to_vec();
                if matches!(self.tls, Some(TestTls::StartTls(_))) && !secure {
                    ehlo.extend_from_slice(b"250-STARTTLS\r\n");
                }
                if secure {
                    ehlo.extend_from_slice(b"250-AUTH LOGIN PLAIN\r\n");
                }
                if self.offers_smtputf8 {
                    ehlo.extend_from_slice(b"250-SMTPUTF8\r\n");
                }
                if self.offers_pipelining {
                    ehlo.extend_from_slice(b"250-PIPELINING\r\n");
                }
                ehlo.extend_from_slice(b"250 SIZE 0\r\n");
                ehlo
            } else if upper.starts_with("MAIL FROM:") && upper.contains("SMTPUTF8") && !self.offers_smtputf8 {
                b"555 5.5.4 SMTPUTF8 is not offered here\r\n".to_vec()
            } else if upper.starts_with("MAIL FROM:") && !lines.buffer().is_empty() {
                // The next command came before this one's reply.
                if !self.offers_pipelining {
                    let _ = write.write_all(b"554 5.5.0 commands sent before their turn\r\n").await;
                    return None;
                }
                self.pipelined.fetch_add(1, Ordering::SeqCst);
                mail_from = address_in(&command);
                mail_command = command.clone();
                rcpt_to.clear();
                b"250 2.1.0 ok\r\n".to_vec()
            } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
                b"250 ok\r\n".to_vec()
            } else if upper.starts_with("RSET") {
                mail_from.clear();
                rcpt_to.clear();
                b"250 ok\r\n".to_vec()
            } else if upper.starts_with("MAIL FROM:") {
                mail_from = address_in(&command);
                mail_command = command.clone();
                rcpt_to.clear();
                b"250 2.1.0 ok\r\n".to_vec()
            } else if upper.starts_with("RCPT TO:") {
                let to = address_in(&command);
                let local = to.split('@').next().unwrap_or("").to_ascii_lowercase();
                if local.starts_with("tempfail") {
                    b"451 4.3.0 try again later\r\n".to_vec()
                } else if local.starts_with("reject") {
                    b"550 5.1.1 no such user here\r\n".to_vec()
                } else if local.starts_with("garbage") {
                    b"this is not smtp\r\n".to_vec()
                } else if local.starts_with("reset") {
                    return None;
                } else if local.starts_with("nulreply") {
                    b"451 4.7.1 try\x00 again later\r\n".to_vec()
                } else if local.starts_with("absurdwait") {
                    b"451 4.7.1 greylisted, try again in 9999999999999 hours\r\n".to_vec()
                } else if local.starts_with("endless") {
                    let chunk = vec![b'x'; 8192];
                    // Stops by itself after 64 MiB, or when the client hangs up.
                    for _ in 0..8192 {
                        if write.write_all(&chunk).await.is_err() {
                            return None;
                        }
                    }
                    return None;
                } else {
                    rcpt_to.push(to);
                    b"250 2.1.5 ok\r\n".to_vec()
                }
            } else if upper == "DATA" && first_local(&rcpt_to).starts_with("data250") {
                after_bad_data = true;
                b"250 2.0.0 ok\r\n".to_vec()
            } else if upper == "DATA" {
                if write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await.is_err() {
                    return None;
                }
                let mut data = Vec::new();
                loop {
                    line.clear();
                    match lines.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return None,
                        Ok(_) => {}
                    }
                    if line == b".\r\n" {
                        break;
                    }
                    data.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
                }
                let data = String::from_utf8_lossy(&data).into_owned();
                let local = first_local(&rcpt_to);
                if local.starts_with("silent") {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return None;
                }
                if local.starts_with("dropafterdot") {
                    return None;
                }
                if !self.delay.is_zero() {
                    tokio::time::sleep(self.delay).await;
                }
                let mut accepted = self.accepted.lock().unwrap();
                accepted.push(Received {
                    tls: secure,
                    mail_command: mail_command.clone(),
                    mail_from: mail_from.clone(),
                    rcpt_to: rcpt_to.clone(),
                    data,
                    at: std::time::SystemTime::now(),
                });
                if local.starts_with("latin1") {
                    format!("250 2.0.0 queued as {} (re\u{e7}u)\r\n", accepted.len())
                        .chars()
                        .map(|c| c as u8)
                        .collect()
                } else if local.starts_with("surplus") {
                    format!(
                        "250 2.0.0 ok: queued as {}\r\n250 2.0.0 and once more\r\n",
                        accepted.len()
                    )
                    .into_bytes()
                } else {
                    format!("250 2.0.0 ok: queued as {}\r\n", accepted.len()).into_bytes()
                }
            } else if upper == "STARTTLS" && matches!(self.tls, Some(TestTls::StartTls(_))) && !secure {
                if write.write_all(b"220 2.0.0 go ahead\r\n").await.is_err() {
                    return None;
                }
                let read = lines.into_inner();
                return Some(Box::new(read.unsplit(write)));
            } else if upper.starts_with("AUTH PLAIN ") && secure {
                let decoded = base64_decode(&command[11..]);
                self.logins.lock().unwrap().push(decoded);
                b"235 2.7.0 authenticated\r\n".to_vec()
            } else if upper == "AUTH LOGIN" && secure {
                let mut answers = Vec::new();
                for prompt in [&b"334 VXNlcm5hbWU6\r\n"[..], &b"334 UGFzc3dvcmQ6\r\n"[..]] {
                    if write.write_all(prompt).await.is_err() {
                        return None;
                    }
                    line.clear();
                    match lines.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return None,
                        Ok(_) => {}
                    }
                    answers.push(base64_decode(String::from_utf8_lossy(&line).trim()));
                }
                self.logins
                    .lock()
                    .unwrap()
                    .push(format!("\0{}\0{}", answers[0], answers[1]));
                b"235 2.7.0 authenticated\r\n".to_vec()
            } else if upper.starts_with("QUIT") {
                let _ = write.write_all(b"221 bye\r\n").await;
                return None;
            } else {
                b"502 5.5.2 command not recognised\r\n".to_vec()
            };
            if write.write_all(&reply).await.is_err() {
                return None;
            }
        }
    }
}

/// The local part of the first recipient, lower case.
fn first_local(rcpt_to: &[String]) -> String {
    rcpt_to
        .first()
        .and_then(|t| t.split('@').next())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn address_in(command: &str) -> String {
    let start = command.find('<').map(|i| i + 1).unwrap_or(0);
    let end = command[start..].find('>').map(|i| start + i).unwrap_or(command.len());
    command[start..end].to_owned()
}

/// A port that accepts TCP connections and never says a word.
pub async fn mute_listener() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}
