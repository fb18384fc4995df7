//! DKIM: mailings signed with an RSA or an Ed25519 key verify with an independent verifier
//! (Python's dkimpy, handed the public key in place of DNS; `bash .ci/test` installs it),
//! the signature covers List-Unsubscribe and List-Unsubscribe-Post, a bad key stops
//! start-up naming the setting, and `server dns-records` prints the record to publish.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mailwarm::accounts::role::Role;
use mailwarm::config::Config;
use serde_json::json;

use crate::common::TestApp;
use crate::common::smtp::TestSmtpServer;

/// A fresh private key from the openssl command line, as an operator would make one.
pub(crate) fn key(dir: &Path, algorithm: &str) -> PathBuf {
    let path = dir.join(format!("{algorithm}.pem"));
    let mut args = vec!["genpkey", "-algorithm", algorithm];
    if algorithm == "RSA" {
        args.extend(["-pkeyopt", "rsa_keygen_bits:2048"]);
    }
    args.extend(["-out", path.to_str().unwrap()]);
    let status = std::process::Command::new("openssl")
        .args(&args)
        .status()
        .expect("openssl runs");
    assert!(status.success());
    path
}

/// dkimpy's verdict on `raw`, the public key record given for any DNS name it asks.
pub(crate) fn dkimpy_verifies(dir: &Path, raw: &str, record: &str) -> bool {
    let mail = dir.join("mail.eml");
    std::fs::write(&mail, raw).unwrap();
    let script = "import sys, dkim\n\
                  record = sys.argv[2].encode()\n\
                  def dns(name, timeout=5):\n    return record\n\
                  print(dkim.verify(open(sys.argv[1], 'rb').read(), dnsfunc=dns))\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script, mail.to_str().unwrap(), record])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "dkimpy: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

/// The TXT record `server dns-records` prints for the key, joined from its strings.
fn published_record(key: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["dns-records"])
        .env("MAIL_FROM", "News <news@example.com>")
        .env("DKIM_DOMAIN", "example.com")
        .env("DKIM_SELECTOR", "mw2026")
        .env("DKIM_PRIVATE_KEY", key)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("_dmarc.example.com. IN TXT \"v=DMARC1; p=none"), "{text}");
    assert!(text.contains("example.com. IN TXT \"v=spf1"), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("mw2026._domainkey.example.com. IN TXT ("))
        .unwrap_or_else(|| panic!("{text}"));
    line.split('"').skip(1).step_by(2).collect()
}

#[tokio::test]
async fn signed_mailings_verify_with_an_independent_verifier() {
    let dir = tempfile::tempdir().unwrap();
    for algorithm in ["RSA", "ED25519"] {
        let key = key(dir.path(), algorithm);
        let record = published_record(&key);
        assert!(record.starts_with(if algorithm == "RSA" {
            "v=DKIM1; k=rsa; p="
        } else {
            "v=DKIM1; k=ed25519; p="
        }));

        let smtp = TestSmtpServer::start().await;
        let url = smtp.url();
        let app = TestApp::dispatching(&[
            "--smtp-url",
            &url,
            "--mail-from",
            "News <news@example.com>",
            "--dkim-domain",
            "example.com",
            "--dkim-selector",
            "mw2026",
            "--dkim-private-key",
            key.to_str().unwrap(),
        ])
        .await;
        let token = app.verified_user("ann@example.com", Role::User).await;
        let client = app
            .graphql_as(
                &token,
                "mutation($i: ClientInput!) { createClient(input: $i) { id } }",
                json!({ "i": { "email": "zoë@bücher.example", "fullName": "Zoë \"Ünïcode\" <b>Bold</b>; =?utf-8?q?x?=" } }),
            )
            .await
            .json()["data"]["createClient"]["id"]
            .clone();
        let message = app
            .graphql_as(
                &token,
                "mutation { createMessage(input: { subject: \"Grüße, {{ full_name }}\", format: MARKDOWN, body: \"# Hallo {{ full_name }}\\n\\nÜber *alles*.\" }) { id } }",
                json!({}),
            )
            .await
            .json()["data"]["createMessage"]["id"]
            .clone();
        app.start_mailing_now(
            &token,
            message.as_str().unwrap(),
            &[client.as_str().unwrap().to_owned()],
        )
        .await;
        smtp.wait_accepted(1, Duration::from_secs(10)).await;
        let raw = smtp.accepted()[0].data.clone();
        let signature = raw
            .split("\r\n")
            .skip_while(|l| !l.starts_with("DKIM-Signature:"))
            .take_while(|l| !l.is_empty())
            .enumerate()
            .take_while(|(i, l)| *i == 0 || l.starts_with([' ', '\t']))
            .map(|(_, l)| l.trim())
            .collect::<String>()
            .to_ascii_lowercase();
        assert!(signature.contains("d=example.com"), "{signature}");
        assert!(signature.contains("s=mw2026"), "{signature}");
        for header in [
            "list-unsubscribe",
            "list-unsubscribe-post",
            "message-id",
            "content-type",
            "mime-version",
        ] {
            assert!(signature.contains(header), "{header} is not signed: {signature}");
        }
        assert!(
            dkimpy_verifies(dir.path(), &raw, &record),
            "{algorithm}: dkimpy refuses\n{raw}"
        );
        // And a changed byte in the body breaks it: the verifier is really checking.
        let tampered = raw.replacen("Hallo", "Hullo", 1);
        assert_ne!(tampered, raw);
        assert!(
            !dkimpy_verifies(dir.path(), &tampered, &record),
            "{algorithm}: a tampered mail verified"
        );
    }
}

#[test]
fn a_bad_key_or_half_a_configuration_stops_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    for path in [garbage.to_str().unwrap(), "/nonexistent/key.pem"] {
        let err = Config::from_args(["server", "--dkim-private-key", path])
            .unwrap_err()
            .to_string();
        // One line says it all: clap's own hint about --help follows it.
        let first = err.lines().next().unwrap();
        assert!(first.contains("DKIM_PRIVATE_KEY") && first.contains(path), "{err}");
    }
    let config = Config::from_args(["server", "--dkim-domain", "example.com"]).unwrap();
    let err = config.validate().unwrap_err();
    assert!(
        err.contains("DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY go together"),
        "{err}"
    );
}
