//! The real `server` binary on its embedded PostgreSQL: no DATABASE_URL, a fresh DATA_DIR.

use std::path::Path;
use std::time::Duration;

use crate::common::{ServerProcess, free_port};

/// The pid the server logged for its PostgreSQL child.
fn postgres_pid(log: &str) -> i32 {
    let line = log
        .lines()
        .find(|l| l.contains("started embedded PostgreSQL"))
        .expect("start logged");
    let pid = line.split("pid=").nth(1).unwrap().split_whitespace().next().unwrap();
    pid.parse().unwrap()
}

fn postgres_processes_on(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("postgres") && cmdline.contains(&format!("-p {port} ")) {
                found.push(cmdline);
            }
        }
    }
    found
}

fn embedded_env(data_dir: &Path, pg_port: u16) -> Vec<(String, String)> {
    vec![
        ("DATA_DIR".into(), data_dir.display().to_string()),
        ("EMBEDDED_PG_PORT".into(), pg_port.to_string()),
    ]
}

async fn start(data_dir: &Path, pg_port: u16, logs: &Path) -> ServerProcess {
    let env = embedded_env(data_dir, pg_port);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut server = ServerProcess::spawn(&[], &env, logs);
    server.wait_ready(Duration::from_secs(90)).await;
    server
}

#[tokio::test]
async fn runs_on_its_own_postgres_and_stops_it_on_sigterm() {
    let data_dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let pg_port = free_port();

    let mut server = start(data_dir.path(), pg_port, logs.path()).await;
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/graphql", server.base_url))
        .json(&serde_json::json!({ "query": "{ __typename me { id } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["data"]["__typename"], "Query");
    let log = server.log();
    assert!(log.contains("creating the embedded PostgreSQL cluster"), "{log}");
    let pid = postgres_pid(&log);
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}:\n{}", server.log());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "PostgreSQL (pid {pid}) outlived the server"
    );
    assert!(
        postgres_processes_on(pg_port).is_empty(),
        "{:?}",
        postgres_processes_on(pg_port)
    );

    // A second start reuses the cluster: no initdb, same data.
    let mut again = start(data_dir.path(), pg_port, logs.path()).await;
    assert!(
        !again.log().contains("creating the embedded PostgreSQL cluster"),
        "{}",
        again.log()
    );
    assert!(again.terminate(Duration::from_secs(30)).await.success());
    assert!(postgres_processes_on(pg_port).is_empty());
}

#[tokio::test]
async fn a_killed_server_leaves_no_postgres_behind_and_the_next_start_works() {
    let data_dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let pg_port = free_port();

    let mut server = start(data_dir.path(), pg_port, logs.path()).await;
    let pid = postgres_pid(&server.log());
    server.child.kill().unwrap(); // SIGKILL: no chance to stop PostgreSQL itself
    server.child.wait().unwrap();
    // The parent-death signal makes PostgreSQL shut down on its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while Path::new(&format!("/proc/{pid}")).exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "PostgreSQL (pid {pid}) outlived the killed server"
    );
    let mut again = start(data_dir.path(), pg_port, logs.path()).await;
    assert!(again.terminate(Duration::from_secs(30)).await.success());
}

#[tokio::test]
async fn without_postgres_binaries_start_up_fails_with_one_clear_line() {
    let data_dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let env = [
        ("DATA_DIR", data_dir.path().to_str().unwrap()),
        ("PG_BINDIR", "/nonexistent/bin"),
    ];
    let mut server = ServerProcess::spawn(&[], &env, logs.path());
    let status = server.child.wait().unwrap();
    assert!(!status.success());
    let error_line = server
        .log()
        .lines()
        .find(|l| l.starts_with("error:"))
        .map(str::to_owned)
        .expect("an error line");
    assert!(error_line.contains("PG_BINDIR"), "{error_line}");
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_naming_it() {
    let logs = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(&[], &[("REQUEST_TIMEOUT", "soon")], logs.path());
    assert!(!server.child.wait().unwrap().success());
    let log = server.log();
    assert!(log.contains("--request-timeout") && log.contains("soon"), "{log}");
}

/// As root, PostgreSQL runs as the `postgres` user; a DATA_DIR that user cannot enter
/// (a checkout under /root) moves the cluster to /var/tmp, and says so.
#[tokio::test]
async fn an_unreachable_data_dir_moves_the_cluster_when_root() {
    if !nix::unistd::geteuid().is_root() {
        return; // only root switches users; as anyone else the cluster stays in DATA_DIR
    }
    let outer = tempfile::tempdir().unwrap();
    std::fs::set_permissions(outer.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let data_dir = outer.path().join("var");
    let logs = tempfile::tempdir().unwrap();
    let mut server = start(&data_dir, free_port(), logs.path()).await;
    let log = server.log();
    assert!(log.contains("cannot enter DATA_DIR"), "{log}");
    let cluster = log
        .split("cluster=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(cluster.starts_with("/var/tmp/mailwarm-"), "{cluster}");
    assert!(server.terminate(Duration::from_secs(30)).await.success());
    std::fs::remove_dir_all(&cluster).unwrap();
}
