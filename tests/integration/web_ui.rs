//! The web front end end to end in headless Chromium (tests/js/web-e2e.mjs, driven by
//! playwright-core), against the real `server` binary, a real PostgreSQL and an SMTP
//! server on loopback. Screenshots of every page land in target/web-screenshots/.

use crate::common::{TestDb, js_packages};

#[tokio::test]
async fn every_flow_works_in_a_real_browser() {
    let db = TestDb::migrated().await;
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-screenshots");
    let output = tokio::process::Command::new("node")
        .arg(js_packages().join("web-e2e.mjs"))
        .env("SERVER_BIN", env!("CARGO_BIN_EXE_server"))
        .env("DATABASE_URL", &db.url)
        .env("ARTIFACTS", &artifacts)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs (Node.js 18 or newer, and Debian's chromium, are needed)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "web e2e failed\n{stdout}\n{stderr}");
    assert!(stdout.contains("web e2e passed"), "{stdout}");
}
