//! A small HTTPS server on loopback for tests that make the service fetch something (SNS
//! signing certificates, subscription links): fixed bodies by path, the paths asked for
//! kept. Its certificate is for `localhost`, from an authority of its own (PEM in `ca`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub struct TestHttps {
    pub addr: SocketAddr,
    /// The authority's certificate, for `--smtp-tls-ca`.
    pub ca: String,
    pub asked: Arc<Mutex<Vec<String>>>,
}

impl TestHttps {
    pub async fn start(pages: HashMap<String, Vec<u8>>) -> TestHttps {
        let (config, ca) = super::smtp::tls_identity();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let pages = Arc::new(pages);
        let seen = asked.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, pages, seen) = (TlsAcceptor::from(config.clone()), pages.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let (read, mut write) = tokio::io::split(tls);
                    let mut lines = BufReader::new(read);
                    let mut request = String::new();
                    if lines.read_line(&mut request).await.is_err() {
                        return;
                    }
                    loop {
                        let mut header = String::new();
                        match lines.read_line(&mut header).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if header.trim().is_empty() => break,
                            Ok(_) => {}
                        }
                    }
                    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    seen.lock().unwrap().push(path.clone());
                    let route = path.split('?').next().unwrap_or_default();
                    let response = match pages.get(route) {
                        Some(body) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(body);
                            r
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    };
                    let _ = write.write_all(&response).await;
                    let _ = write.shutdown().await;
                });
            }
        });
        TestHttps { addr, ca, asked }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }
}
