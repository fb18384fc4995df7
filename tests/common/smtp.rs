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
//! | anything else | accepts |
//!
//! It offers PIPELINING (RFC 2920) and counts the transactions whose commands came in one
//! write; `start_without_pipelining` offers a server that does not, and refuses commands
//! sent before their turn.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A message the server accepted (or took before a fault).
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
}

#[derive(Clone)]
pub struct TestSmtpServer {
    pub addr: SocketAddr,
    accepted: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    /// Transactions whose RCPT arrived together with their MAIL.
    pipelined: Arc<AtomicUsize>,
    offers_pipelining: bool,
    /// How long it thinks before accepting each message.
    delay: Duration,
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

    async fn start_with(delay: Duration, offers_pipelining: bool) -> TestSmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = TestSmtpServer {
            addr: listener.local_addr().unwrap(),
            accepted: Arc::default(),
            connections: Arc::default(),
            pipelined: Arc::default(),
            offers_pipelining,
            delay,
        };
        let handle = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                handle.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(handle.clone().session(stream));
            }
        });
        server
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

    async fn session(self, stream: TcpStream) {
        // Replies go out at once: with Nagle, a pipelined client would wait for a delayed ACK
        // between two replies written one after the other.
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        if write.write_all(b"220 test.local ESMTP\r\n").await.is_err() {
            return;
        }
        let mut mail_from = String::new();
        let mut rcpt_to: Vec<String> = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            match lines.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let command = line.trim_end().to_owned();
            let upper = command.to_ascii_uppercase();
            let reply: Vec<u8> = if upper.starts_with("EHLO") && self.offers_pipelining {
                b"250-test.local\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n".to_vec()
            } else if upper.starts_with("EHLO") {
                b"250-test.local\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".to_vec()
            } else if upper.starts_with("MAIL FROM:") && !lines.buffer().is_empty() {
                // The next command came before this one's reply.
                if !self.offers_pipelining {
                    let _ = write.write_all(b"554 5.5.0 commands sent before their turn\r\n").await;
                    return;
                }
                self.pipelined.fetch_add(1, Ordering::SeqCst);
                mail_from = address_in(&command);
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
                    return;
                } else if local.starts_with("endless") {
                    let chunk = vec![b'x'; 8192];
                    // Stops by itself after 64 MiB, or when the client hangs up.
                    for _ in 0..8192 {
                        if write.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                    return;
                } else {
                    rcpt_to.push(to);
                    b"250 2.1.5 ok\r\n".to_vec()
                }
            } else if upper == "DATA" {
                if write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await.is_err() {
                    return;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let local = rcpt_to
                    .first()
                    .and_then(|t| t.split('@').next())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if local.starts_with("silent") {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
                if local.starts_with("dropafterdot") {
                    return;
                }
                if !self.delay.is_zero() {
                    tokio::time::sleep(self.delay).await;
                }
                let mut accepted = self.accepted.lock().unwrap();
                accepted.push(Received {
                    mail_from: mail_from.clone(),
                    rcpt_to: rcpt_to.clone(),
                    data,
                });
                format!("250 2.0.0 ok: queued as {}\r\n", accepted.len()).into_bytes()
            } else if upper.starts_with("QUIT") {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            } else {
                b"502 5.5.2 command not recognised\r\n".to_vec()
            };
            if write.write_all(&reply).await.is_err() {
                return;
            }
        }
    }
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
