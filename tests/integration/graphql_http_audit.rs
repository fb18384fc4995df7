//! The npm `graphql-http` audit suite (the GraphQL-over-HTTP spec's checks) against a
//! running `server` process: no error, and no warning left unexplained.

use std::process::Command;
use std::time::Duration;

use crate::common::{ServerProcess, TestDb};

#[tokio::test]
async fn graphql_http_audit_passes() {
    let js = crate::common::js_packages();
    let db = TestDb::migrated().await;
    let logs = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(&[], &[("DATABASE_URL", &db.url)], logs.path());
    server.wait_ready(Duration::from_secs(60)).await;

    let output = Command::new("node")
        .arg(js.join("graphql-http-audit.mjs"))
        .arg(format!("{}/graphql", server.base_url))
        .output()
        .expect("node runs the audit");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains(" 0 not passing"), "{report}");
}
