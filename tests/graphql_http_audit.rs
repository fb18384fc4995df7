//! The npm `graphql-http` audit suite (the GraphQL-over-HTTP spec's checks) against a
//! running `server` process: no error, and no warning left unexplained.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{ServerProcess, TestDb};

/// Installs tests/js's pinned packages when they are missing (CI does it up front).
fn ensure_js_packages(dir: &Path) {
    if dir.join("node_modules/graphql-http").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("npm is needed for this test (Node.js 18 or newer)");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

#[tokio::test]
async fn graphql_http_audit_passes() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    ensure_js_packages(&js);
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
