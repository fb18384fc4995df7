//! The mail transport against a real SMTP server on loopback, with faults; and the outbox.

use std::time::{Duration, Instant};

use crate::common::smtp::{TestSmtpServer, mute_listener};
use lettre::message::Mailbox;
use mailwarm::config::Config;
use mailwarm::mail::message::Outgoing;
use mailwarm::mail::{FailureKind, Mailer, Phase, plain_mail};

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
    config.mail.mailer(&config.data_dir).unwrap()
}

fn smtp_mailer(url: &str) -> Mailer {
    smtp_mailer_with(url, "1s", "2s")
}

fn mail_to(to: &str, body: &str) -> Outgoing {
    let from: Mailbox = "mailwarm@localhost".parse().unwrap();
    plain_mail(&from, to, "Hello", body, None, None, 1 << 20).unwrap()
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

    let closed = crate::common::free_port();
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
    let mailer = config.mail.mailer(&config.data_dir).unwrap();
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

#[tokio::test]
async fn replies_in_latin1_or_in_surplus_lose_nothing() {
    let server = TestSmtpServer::start().await;
    let mailer = smtp_mailer(&server.url());
    // A reply that is not UTF-8 to an accepted message: accepted, its text kept lossily.
    let reply = mailer.send(&mail_to("latin1@example.com", "x")).await.unwrap();
    assert!(reply.starts_with("250 2.0.0 queued as 1 (re\u{fffd}u)"), "{reply}");
    // Two replies to one final dot: the message is accepted, and the surplus reply is
    // never read as the next message's: that connection is dropped.
    let reply = mailer.send(&mail_to("surplus@example.com", "x")).await.unwrap();
    assert!(reply.contains("queued as 2"), "{reply}");
    let reply = mailer.send(&mail_to("ann@example.com", "x")).await.unwrap();
    assert!(reply.contains("queued as 3"), "{reply}");
    assert_eq!(
        server.connections(),
        2,
        "the connection with an unread reply was reused"
    );
    assert_eq!(server.accepted().len(), 3);
}

#[tokio::test]
async fn a_250_to_data_never_sends_the_message_as_commands() {
    for server in [
        TestSmtpServer::start().await,
        TestSmtpServer::start_without_pipelining().await,
    ] {
        let mailer = smtp_mailer(&server.url());
        let err = mailer
            .send(&mail_to(
                "data250@example.com",
                "RSET\r\nMAIL FROM:<evil@example.com>\r\n",
            ))
            .await
            .unwrap_err();
        assert_eq!(
            (err.kind, err.phase, err.code.as_deref()),
            (FailureKind::Transient, Phase::Data, Some("250")),
            "{err}"
        );
        assert!(err.detail.contains("unexpected reply 250"), "{}", err.detail);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(server.stray_lines(), 0, "the message went out after a 250 to DATA");
        mailer.send(&mail_to("ann@example.com", "x")).await.unwrap();
        assert_eq!(server.accepted().len(), 1);
    }
}

#[tokio::test]
async fn a_reply_with_a_nul_byte_is_kept_without_it() {
    let server = TestSmtpServer::start().await;
    let mailer = smtp_mailer(&server.url());
    let err = mailer.send(&mail_to("nulreply@example.com", "x")).await.unwrap_err();
    assert_eq!((err.kind, err.phase), (FailureKind::Transient, Phase::Rcpt), "{err}");
    assert_eq!(err.detail, "451 4.7.1 try again later");
}

#[tokio::test]
async fn international_addresses_go_out_as_the_server_can_take_them() {
    let server = TestSmtpServer::start().await;
    let mailer = smtp_mailer(&server.url());
    // An IDN domain goes out as its A-label and needs nothing of the server.
    mailer.send(&mail_to("ann@münchen.de", "x")).await.unwrap();
    let got = server.accepted().pop().unwrap();
    assert_eq!(got.rcpt_to, vec!["ann@xn--mnchen-3ya.de"]);
    assert!(!got.mail_command.contains("SMTPUTF8"), "{}", got.mail_command);
    assert!(got.data.contains("To: ann@xn--mnchen-3ya.de"), "{}", got.data);
    // A non-ASCII local part asks for SMTPUTF8 where the server offers it...
    mailer.send(&mail_to("анна@example.com", "x")).await.unwrap();
    let got = server.accepted().pop().unwrap();
    assert!(got.mail_command.ends_with(" SMTPUTF8"), "{}", got.mail_command);
    // ...and is a permanent failure, before MAIL, where it does not.
    let plain = TestSmtpServer::start_without_smtputf8().await;
    let err = smtp_mailer(&plain.url())
        .send(&mail_to("анна@example.com", "x"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.phase, err.code.as_deref()),
        (FailureKind::Permanent, Phase::Mail, None),
        "{err}"
    );
    assert!(err.detail.contains("SMTPUTF8"), "{}", err.detail);
}

#[tokio::test]
async fn no_bare_cr_or_lf_reaches_data() {
    let server = TestSmtpServer::start().await;
    let mailer = smtp_mailer(&server.url());
    // A body with the pieces of an SMTP smuggling attempt: they arrive as ordinary lines.
    let body = "a\r.\r\nMAIL FROM:<x@evil.example>\r\nb\n.\nc\r\r\n.\r\nQUIT";
    mailer.send(&mail_to("ann@example.com", body)).await.unwrap();
    let got = server.accepted().pop().unwrap();
    for (i, byte) in got.data.bytes().enumerate() {
        let bytes = got.data.as_bytes();
        match byte {
            b'\r' => assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\n' => assert_eq!(bytes[i - 1], b'\r', "bare LF at {i}"),
            _ => {}
        }
    }
    assert_eq!(server.stray_lines(), 0);
    // A message with a bare CR that did not come from our builder is refused outright.
    let mut bad = mail_to("ann@example.com", "x");
    bad.raw.extend_from_slice(b"x\r.\r\n");
    let err = mailer.send(&bad).await.unwrap_err();
    assert_eq!((err.kind, err.phase), (FailureKind::Permanent, Phase::Mail), "{err}");
    assert!(err.detail.contains("bare CR"), "{}", err.detail);
    assert_eq!(server.accepted().len(), 1);
}

/// SMTP to `url` trusting the test server's authority.
fn tls_mailer(url: &str, ca_pem: &str, dir: &std::path::Path) -> Mailer {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let config = Config::from_args([
        "server",
        "--smtp-url",
        url,
        "--smtp-tls-ca",
        ca.to_str().unwrap(),
        "--smtp-connect-timeout",
        "5s",
        "--smtp-command-timeout",
        "5s",
        "--send-timeout",
        "10s",
    ])
    .unwrap();
    config.mail.mailer(&config.data_dir).unwrap()
}

#[tokio::test]
async fn starttls_and_smtps_carry_mail_and_credentials_percent_decoded() {
    let dir = tempfile::tempdir().unwrap();
    // STARTTLS, then AUTH PLAIN with a password holding `+` and `&` (percent-encoded in the URL).
    let (server, ca) = TestSmtpServer::start_tls(false).await;
    let url = format!(
        "smtp://ann%40example.com:p+w%26rd@localhost:{}?tls=required",
        server.addr.port()
    );
    let mailer = tls_mailer(&url, &ca, dir.path());
    mailer.send(&mail_to("bob@example.com", "over STARTTLS")).await.unwrap();
    mailer.send(&mail_to("cy@example.com", "again")).await.unwrap();
    let accepted = server.accepted();
    assert_eq!(accepted.len(), 2);
    assert!(accepted.iter().all(|m| m.tls), "a message went out before STARTTLS");
    assert_eq!(server.logins(), vec!["\0ann@example.com\0p+w&rd"]);
    assert_eq!(server.connections(), 1);

    // TLS from the first byte.
    let (server, ca) = TestSmtpServer::start_tls(true).await;
    let mailer = tls_mailer(&format!("smtps://localhost:{}", server.addr.port()), &ca, dir.path());
    mailer.send(&mail_to("bob@example.com", "over TLS")).await.unwrap();
    assert!(server.accepted()[0].tls);

    // A certificate nobody vouches for is refused before anything is sent.
    let (server, _) = TestSmtpServer::start_tls(true).await;
    let err = smtp_mailer(&format!("smtps://localhost:{}", server.addr.port()))
        .send(&mail_to("bob@example.com", "x"))
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.phase), (FailureKind::Transient, Phase::Connect), "{err}");
    assert!(server.accepted().is_empty());

    // STARTTLS required but not offered: refused at connect, nothing sent in the clear.
    let plain = TestSmtpServer::start().await;
    let err = tls_mailer(
        &format!("smtp://localhost:{}?tls=required", plain.addr.port()),
        &ca,
        dir.path(),
    )
    .send(&mail_to("bob@example.com", "x"))
    .await
    .unwrap_err();
    assert!(err.detail.contains("does not offer STARTTLS"), "{err}");
    assert!(plain.accepted().is_empty());
}
