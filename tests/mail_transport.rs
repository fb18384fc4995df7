//! The mail transport against a real SMTP server on loopback, with faults; and the outbox.

mod common;

use std::time::{Duration, Instant};

use common::smtp::{TestSmtpServer, mute_listener};
use lettre::message::Mailbox;
use mailwarm::config::Config;
use mailwarm::mail::{FailureKind, Mailer, Phase, text_message};

/// SMTP with short timeouts: connect 1 s, and the given command and whole-send timeouts.
fn smtp_mailer_with(url: &str, command_timeout: &str, send_timeout: &str) -> Mailer {
    let config = Config::from_args([
        "server",
        "--smtp-url",
        url,
        "--smtp-connect-timeout",
        "1s",
        "--smtp-command-timeout",
        command_timeout,
        "--send-timeout",
        send_timeout,
        "--smtp-concurrency",
        "2",
    ])
    .unwrap();
    Mailer::from_config(&config.mail, &config.data_dir).unwrap()
}

fn smtp_mailer(url: &str) -> Mailer {
    smtp_mailer_with(url, "1s", "2s")
}

fn mail_to(to: &str, body: &str) -> lettre::Message {
    let from: Mailbox = "mailwarm@localhost".parse().unwrap();
    text_message(&from, to.parse().unwrap(), "Hello", body.to_owned(), None).unwrap()
}

#[tokio::test]
async fn delivers_over_smtp_and_reuses_the_connection() {
    let server = TestSmtpServer::start().await;
    let mailer = smtp_mailer(&server.url());
    let reply = mailer.send(&mail_to("ann@example.com", "Привет, Ann!")).await.unwrap();
    assert!(reply.starts_with("250"), "{reply}");
    mailer.send(&mail_to("bob@example.com", "Hi Bob")).await.unwrap();

    let accepted = server.accepted();
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[0].rcpt_to, vec!["ann@example.com"]);
    assert_eq!(accepted[0].mail_from, "mailwarm@localhost");
    assert!(accepted[1].data.contains("Subject: Hello"));
    assert_eq!(
        server.connections(),
        1,
        "the second message should reuse the first connection"
    );
}

#[tokio::test]
async fn commands_are_pipelined_where_the_server_offers_it() {
    // Three messages over one connection to `server`.
    async fn send_three(server: &TestSmtpServer) {
        let mailer = smtp_mailer(&server.url());
        for name in ["ann", "bob", "cy"] {
            let to = format!("{name}@example.com");
            mailer.send(&mail_to(&to, "Hi")).await.unwrap();
        }
        assert_eq!(server.accepted().len(), 3);
    }
    let server = TestSmtpServer::start().await;
    send_three(&server).await;
    assert_eq!(server.pipelined(), 3, "MAIL, RCPT and DATA should go in one write");

    // A server without PIPELINING gets one command at a time (it refuses anything else).
    let plain = TestSmtpServer::start_without_pipelining().await;
    send_three(&plain).await;
    assert_eq!(plain.pipelined(), 0);
    assert_eq!(plain.connections(), 1);
}

#[tokio::test]
async fn reply_codes_are_classified() {
    let server = TestSmtpServer::start().await;
    let mailer = smtp_mailer(&server.url());

    let err = mailer.send(&mail_to("tempfail@example.com", "x")).await.unwrap_err();
    assert_eq!(
        (err.kind, err.phase, err.code.as_deref()),
        (FailureKind::Transient, Phase::Rcpt, Some("451"))
    );
    assert!(err.detail.contains("try again later"), "{}", err.detail);

    let err = mailer.send(&mail_to("reject@example.com", "x")).await.unwrap_err();
    assert_eq!(
        (err.kind, err.phase, err.code.as_deref()),
        (FailureKind::Permanent, Phase::Rcpt, Some("550"))
    );

    let err = mailer.send(&mail_to("garbage@example.com", "x")).await.unwrap_err();
    assert_eq!((err.kind, err.phase), (FailureKind::Transient, Phase::Rcpt));

    let err = mailer.send(&mail_to("reset@example.com", "x")).await.unwrap_err();
    assert_eq!((err.kind, err.phase), (FailureKind::Transient, Phase::Rcpt));

    let err = mailer
        .send(&mail_to("dropafterdot@example.com", "x"))
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.phase), (FailureKind::Unknown, Phase::Message), "{err}");

    // After all that, the pool still delivers.
    mailer.send(&mail_to("ok@example.com", "x")).await.unwrap();
    assert_eq!(server.accepted().len(), 1);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_the_pool_recovers() {
    let server = TestSmtpServer::start().await;
    let mailer = smtp_mailer_with(&server.url(), "10s", "1s");

    let started = Instant::now();
    let err = mailer.send(&mail_to("silent@example.com", "x")).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // The message was handed over and no reply came: it may have been accepted.
    assert_eq!((err.kind, err.phase), (FailureKind::Unknown, Phase::Message), "{err}");
    assert!(err.detail.contains("SEND_TIMEOUT"), "{}", err.detail);

    // The silent connection was dropped, not reused: the next message gets a fresh one.
    let reply = mailer.send(&mail_to("ann@example.com", "next")).await.unwrap();
    assert!(reply.contains("queued as 1"), "{reply}");
    assert_eq!(server.accepted()[0].rcpt_to, vec!["ann@example.com"]);
}

#[tokio::test]
async fn a_mute_server_fails_before_the_message_within_the_connect_timeout() {
    let addr = mute_listener().await;
    let mailer = smtp_mailer(&format!("smtp://{addr}"));
    let started = Instant::now();
    let err = mailer.send(&mail_to("ann@example.com", "x")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!((err.kind, err.phase), (FailureKind::Transient, Phase::Connect), "{err}");

    let closed = common::free_port();
    let err = smtp_mailer(&format!("smtp://127.0.0.1:{closed}"))
        .send(&mail_to("a@b.c", "x"))
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.phase), (FailureKind::Transient, Phase::Connect), "{err}");
}

#[tokio::test]
async fn an_endless_reply_is_cut_at_64_kib() {
    let server = TestSmtpServer::start().await;
    let mailer = smtp_mailer_with(&server.url(), "20s", "20s");
    let err = mailer.send(&mail_to("endless@example.com", "x")).await.unwrap_err();
    assert_eq!((err.kind, err.phase), (FailureKind::Transient, Phase::Rcpt), "{err}");
    assert!(err.detail.contains("64 KiB"), "{}", err.detail);
}

#[tokio::test]
async fn the_outbox_holds_readable_eml_files() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let config = Config::from_args(["server", "--outbox-dir", outbox.to_str().unwrap()]).unwrap();
    let mailer = Mailer::from_config(&config.mail, &config.data_dir).unwrap();
    let reply = mailer
        .send(&mail_to(
            "ann@example.com",
            "Your link: http://x/verify-email?token=abc",
        ))
        .await
        .unwrap();
    assert!(reply.starts_with("written to"));

    let files: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].extension().unwrap(), "eml");
    let eml = std::fs::read_to_string(&files[0]).unwrap();
    assert!(eml.contains("To: ann@example.com"), "{eml}");
    assert!(eml.contains("Subject: Hello"));
    assert!(eml.contains("http://x/verify-email?token=abc"), "{eml}");
}
