//! A real IMAP server for tests: Debian's dovecot-imapd on loopback, set up from
//! `tests/peers/dovecot.conf` (a copy of the shared, checked set-up) in a folder of its
//! own, on a free port, one user `bounces` with password `secret`. Stopped when dropped.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

pub struct Dovecot {
    pub port: u16,
    dir: tempfile::TempDir,
}

pub const USER: &str = "bounces";
pub const PASSWORD: &str = "secret";

impl Dovecot {
    pub async fn start() -> Dovecot {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let port = super::free_port();
        let conf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/dovecot.conf"))
            .unwrap()
            .replace("DIR", root.to_str().unwrap())
            .replace("port = 11430", &format!("port = {port}"));
        std::fs::write(root.join("dovecot.conf"), conf).unwrap();
        std::fs::write(root.join("users"), format!("{USER}:{{PLAIN}}{PASSWORD}\n")).unwrap();
        std::fs::create_dir_all(root.join("mail")).unwrap();
        chmod_world_readable(root);
        let chown = Command::new("chown")
            .args(["-R", "dovecot:dovecot"])
            .arg(root.join("mail"))
            .status();
        assert!(
            chown.is_ok_and(|s| s.success()),
            "chown the maildir to dovecot (tests run as root)"
        );
        let started = Command::new("dovecot")
            .arg("-c")
            .arg(root.join("dovecot.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("dovecot is installed (.ci/test installs dovecot-imapd)");
        assert!(started.success(), "dovecot did not start: {}", log(root));
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "dovecot is not listening: {}", log(root));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Dovecot { port, dir }
    }

    /// `BOUNCE_IMAP_URL` for this server.
    pub fn url(&self) -> String {
        format!("imap://{USER}:{PASSWORD}@127.0.0.1:{}/INBOX", self.port)
    }

    async fn session(&self) -> async_imap::Session<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.unwrap();
        client.login(USER, PASSWORD).await.map_err(|(e, _)| e).unwrap()
    }

    /// Drops a mail into the inbox, as a mail server delivering it would.
    pub async fn deliver(&self, raw: &[u8]) {
        let mut session = self.session().await;
        session.append("INBOX", None, None, raw).await.unwrap();
        session.logout().await.unwrap();
    }

    /// The flags of every mail in the inbox, in the order they arrived.
    pub async fn flags(&self) -> Vec<Vec<String>> {
        let mut session = self.session().await;
        session.select("INBOX").await.unwrap();
        let mut out = Vec::new();
        {
            let mut fetched = session.fetch("1:*", "(FLAGS)").await.unwrap();
            while let Some(fetch) = fetched.next().await {
                out.push(fetch.unwrap().flags().map(|f| format!("{f:?}")).collect());
            }
        }
        session.logout().await.unwrap();
        out
    }
}

fn log(root: &Path) -> String {
    std::fs::read_to_string(root.join("dovecot.log")).unwrap_or_default()
}

fn chmod_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("run/master.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}
