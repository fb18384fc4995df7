//! Bounces, complaints and suppression, end to end on loopback: the SMTP server's 5xx, a
//! real IMAP server (Dovecot) holding DSNs, ARF reports and garbage, the signed webhook,
//! and the API of the suppression list.

use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use mailwarm::accounts::role::Role;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::common::imap::Dovecot;
use crate::common::smtp::TestSmtpServer;

const CREATE: &str = "mutation($i: MailingInput!) { createMailing(input: $i) { id } }";
const LOG: &str = "query($id: ID!) { mailing(id: $id) { paused runs(first: 10) { nodes { runAt suppressed } } \
    deliveries(first: 100) { nodes { id email status runAt messageId bounce { kind diagnostic receivedAt } \
    attempts { status serverResponse } } } } }";
const SUPPRESSIONS: &str = "query($r: SuppressionReason, $s: String) { suppressions(reason: $r, search: $s) { totalCount \
    nodes { email reason since delivery { id email } } } }";

fn args(smtp: &TestSmtpServer, more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--smtp-url",
        &smtp.url(),
        "--mail-from",
        "news@acme.example",
        "--bounce-address",
        "bounces@acme.example",
        "--dispatch-interval",
        "200ms",
        "--retry-base",
        "50ms",
        "--retry-max",
        "100ms",
        "--max-attempts",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

async fn app(smtp: &TestSmtpServer, more: &[&str]) -> TestApp {
    let args = args(smtp, more);
    TestApp::dispatching(&args.iter().map(String::as_str).collect::<Vec<_>>()).await
}

/// A DAILY mailing to all of the user's clients, its first run due now.
async fn daily(app: &TestApp, token: &str) -> String {
    let message = app.new_message(token).await.as_str().unwrap().to_owned();
    let starts = (chrono::Utc::now() - chrono::TimeDelta::seconds(1)).to_rfc3339();
    let reply = app
        .graphql_as(
            token,
            CREATE,
            json!({ "i": { "startsAt": starts, "periodicity": "DAILY", "messageId": message, "audience": { "allClients": true } } }),
        )
        .await
        .json();
    reply["data"]["createMailing"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"))
        .to_owned()
}

/// The next day comes early: the runs so far move a day back, the mailing is due again.
async fn next_day(app: &TestApp, mailing: &str) {
    let mut conn = app.db.conn().await;
    // In two steps: runs a day apart would collide on (mailing, run time) moving in one.
    for statement in [
        "UPDATE runs SET run_at = run_at - interval '1001 days' WHERE mailing_id = $1::uuid",
        "UPDATE runs SET run_at = run_at + interval '1000 days' WHERE mailing_id = $1::uuid",
        "UPDATE mailings SET starts_at = starts_at - interval '1 day', next_run_at = now() WHERE id = $1::uuid",
    ] {
        diesel::sql_query(statement)
            .bind::<diesel::sql_types::Text, _>(mailing)
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// The mailing's log once `runs` runs have started and none of its deliveries is pending.
async fn settled(app: &TestApp, token: &str, mailing: &str, runs: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = app.graphql_as(token, LOG, json!({ "id": mailing })).await.json();
        let log = reply["data"]["mailing"].clone();
        let run_count = log["runs"]["nodes"].as_array().map_or(0, Vec::len);
        let deliveries = log["deliveries"]["nodes"].as_array().cloned().unwrap_or_default();
        let every_run_seen = log["runs"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|run| deliveries.iter().any(|d| d["runAt"] == run["runAt"]));
        // A failure's bounce is recorded just after its outcome, in a transaction of its
        // own (batch.rs, record_bounces): wait for it too.
        if run_count == runs
            && every_run_seen
            && deliveries
                .iter()
                .all(|d| !matches!(d["status"].as_str(), Some("PENDING" | "SENDING")))
            && deliveries
                .iter()
                .all(|d| d["status"] != "FAILED" || !d["bounce"].is_null())
        {
            return log;
        }
        assert!(Instant::now() < deadline, "the runs did not settle: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn of<'a>(log: &'a Value, email: &str) -> Vec<&'a Value> {
    log["deliveries"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["email"] == email)
        .collect()
}

#[tokio::test]
async fn a_hard_bounce_is_mailed_once_and_never_again() {
    let smtp = TestSmtpServer::start().await;
    let app = app(&smtp, &[]).await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    app.new_client(&ann, "ok@acme.com").await;
    app.new_client(&ann, "reject-me@acme.com").await;
    let mailing = daily(&app, &ann).await;

    let first = settled(&app, &ann, &mailing, 1).await;
    let bounced = of(&first, "reject-me@acme.com");
    assert_eq!(bounced.len(), 1);
    assert_eq!(bounced[0]["status"], "FAILED");
    assert_eq!(bounced[0]["bounce"]["kind"], "HARD", "{first}");
    assert!(
        bounced[0]["bounce"]["diagnostic"].as_str().unwrap().contains("5.1.1"),
        "{first}"
    );
    assert_eq!(of(&first, "ok@acme.com")[0]["bounce"], Value::Null);

    // Every message went out with its own VERP envelope sender and a Feedback-ID.
    let sent = smtp.wait_accepted(1, Duration::from_secs(5)).await;
    assert!(
        sent[0].mail_from.starts_with("bounces+") && sent[0].mail_from.ends_with("@acme.example"),
        "{}",
        sent[0].mail_from
    );
    assert_eq!(sent[0].mail_from.len(), "bounces+".len() + 36 + "@acme.example".len());
    let feedback = sent[0]
        .data
        .lines()
        .find(|l| l.starts_with("Feedback-ID: "))
        .expect("a Feedback-ID");
    assert!(feedback.ends_with(":newsletter:mailwarm"), "{feedback}");
    assert!(feedback.contains(&mailing.replace('-', "")), "{feedback}");

    let list = app.graphql_as(&ann, SUPPRESSIONS, json!({})).await.json();
    let nodes = &list["data"]["suppressions"]["nodes"];
    assert_eq!(list["data"]["suppressions"]["totalCount"], 1, "{list}");
    assert_eq!(nodes[0]["email"], "reject-me@acme.com");
    assert_eq!(nodes[0]["reason"], "HARD_BOUNCE");
    assert_eq!(nodes[0]["delivery"]["id"], bounced[0]["id"]);
    let clients = app
        .graphql_as(
            &ann,
            "{ clients { nodes { email suppression { reason } } } }",
            json!({}),
        )
        .await
        .json();
    let shown: Vec<(String, Value)> = clients["data"]["clients"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["email"].as_str().unwrap().to_owned(),
                c["suppression"]["reason"].clone(),
            )
        })
        .collect();
    assert!(
        shown.contains(&("reject-me@acme.com".into(), json!("HARD_BOUNCE"))),
        "{clients}"
    );
    assert!(shown.contains(&("ok@acme.com".into(), Value::Null)), "{clients}");

    // The next two runs leave the address out, and say so.
    for runs in [2, 3] {
        next_day(&app, &mailing).await;
        let log = settled(&app, &ann, &mailing, runs).await;
        assert_eq!(of(&log, "reject-me@acme.com").len(), 1, "mailed once: {log}");
        assert_eq!(of(&log, "ok@acme.com").len(), runs);
        let suppressed: Vec<i64> = log["runs"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["suppressed"].as_i64().unwrap())
            .collect();
        assert_eq!(suppressed.iter().filter(|n| **n == 1).count(), runs - 1, "{log}");
    }
    // Lifted, the address is mailed again by the next run.
    let lifted = app
        .graphql_as(
            &ann,
            "mutation { unsuppress(email: \"Reject-Me@acme.com\") }",
            json!({}),
        )
        .await
        .json();
    assert_eq!(lifted["data"]["unsuppress"], true, "{lifted}");
    next_day(&app, &mailing).await;
    let log = settled(&app, &ann, &mailing, 4).await;
    assert_eq!(of(&log, "reject-me@acme.com").len(), 2, "{log}");
}

#[tokio::test]
async fn soft_bounces_in_a_row_suppress_and_a_success_breaks_the_row() {
    let smtp = TestSmtpServer::start().await;
    let secret = "webhook-secret";
    let app = app(&smtp, &["--soft-bounce-limit", "2", "--bounce-webhook-secret", secret]).await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    app.new_client(&ann, "tempfail@acme.com").await;
    app.new_client(&ann, "full@acme.com").await;
    let mailing = daily(&app, &ann).await;

    // tempfail@ gets 451 each time: each run's delivery FAILS after its attempts, a soft
    // bounce. full@ is accepted, and its soft bounces come later, by webhook.
    let log = settled(&app, &ann, &mailing, 1).await;
    assert_eq!(of(&log, "tempfail@acme.com")[0]["bounce"]["kind"], "SOFT", "{log}");
    let first_full = of(&log, "full@acme.com")[0]["messageId"].as_str().unwrap().to_owned();
    let posted = post_events(&app, secret, json!([{ "type": "soft", "messageId": first_full, "recipient": "full@acme.com", "diagnostic": "4.2.2 mailbox full" }])).await;
    assert_eq!(posted["recorded"], 1, "{posted}");
    assert_eq!(
        suppressed(&app, &ann).await,
        Vec::<String>::new(),
        "one soft bounce is not a row of two"
    );

    next_day(&app, &mailing).await;
    let log = settled(&app, &ann, &mailing, 2).await;
    assert_eq!(
        suppressed(&app, &ann).await,
        vec!["tempfail@acme.com:SOFT_BOUNCES"],
        "{log}"
    );
    // full@'s second delivery went out with no bounce: the row is broken, and a soft
    // bounce of the third starts a new one.
    next_day(&app, &mailing).await;
    let log = settled(&app, &ann, &mailing, 3).await;
    assert_eq!(of(&log, "tempfail@acme.com").len(), 2, "suppressed after two: {log}");
    let full: Vec<&Value> = of(&log, "full@acme.com");
    let newest = full
        .iter()
        .max_by_key(|d| d["runAt"].as_str().unwrap().to_owned())
        .unwrap()["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    post_events(
        &app,
        secret,
        json!([{ "type": "soft", "messageId": newest, "diagnostic": "4.2.2" }]),
    )
    .await;
    assert_eq!(suppressed(&app, &ann).await, vec!["tempfail@acme.com:SOFT_BOUNCES"]);
}

/// The one client whose address contains `search` is unsubscribed.
async fn assert_unsubscribed(app: &TestApp, token: &str, search: &str) {
    let clients = app
        .graphql_as(
            token,
            "query($s: String) { clients(search: $s) { nodes { unsubscribedAt } } }",
            json!({ "s": search }),
        )
        .await
        .json();
    assert!(
        !clients["data"]["clients"]["nodes"][0]["unsubscribedAt"].is_null(),
        "{clients}"
    );
}

async fn suppressed(app: &TestApp, token: &str) -> Vec<String> {
    let list = app.graphql_as(token, SUPPRESSIONS, json!({})).await.json();
    let mut out: Vec<String> = list["data"]["suppressions"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|n| format!("{}:{}", n["email"].as_str().unwrap(), n["reason"].as_str().unwrap()))
        .collect();
    out.sort();
    out
}

async fn post_events(app: &TestApp, secret: &str, events: Value) -> Value {
    let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
    let signature = mailwarm::deliverability::webhooks::sign(secret.as_bytes(), chrono::Utc::now().timestamp(), &body);
    let reply = app.send(webhook_request(&body, Some(&signature))).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    reply.json()
}

fn webhook_request(body: &[u8], signature: Option<&str>) -> axum::http::Request<axum::body::Body> {
    let mut request = axum::http::Request::post("/webhooks/bounces").header("content-type", "application/json");
    if let Some(signature) = signature {
        request = request.header("x-mailwarm-signature", signature);
    }
    request.body(axum::body::Body::from(body.to_vec())).unwrap()
}

#[tokio::test]
async fn the_webhook_takes_signed_events_once_and_complaints_pause_a_mailing() {
    let smtp = TestSmtpServer::start().await;
    let secret = "webhook-secret";
    let app = app(
        &smtp,
        &[
            "--bounce-webhook-secret",
            secret,
            "--complaint-min-sent",
            "2",
            "--complaint-pause-rate",
            "0.3",
        ],
    )
    .await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    let bob = app.verified_user("bob@example.com", Role::User).await;
    for who in ["a", "b", "c"] {
        app.new_client(&ann, &format!("{who}@acme.com")).await;
    }
    app.new_client(&bob, "b@acme.com").await;
    let mailing = daily(&app, &ann).await;
    let log = settled(&app, &ann, &mailing, 1).await;
    let id_of = |email: &str| of(&log, email)[0]["messageId"].as_str().unwrap().to_owned();
    let verp_of = |n: usize| smtp.accepted()[n].mail_from.clone();
    let a_verp = smtp
        .accepted()
        .iter()
        .position(|m| m.rcpt_to.iter().any(|r| r == "a@acme.com"))
        .map(verp_of)
        .unwrap();

    // Unsigned, wrongly signed, or stale: refused, nothing recorded.
    let body = serde_json::to_vec(&json!({ "events": [{ "type": "hard", "returnPath": a_verp }] })).unwrap();
    assert_eq!(app.send(webhook_request(&body, None)).await.status, 401);
    let stale =
        mailwarm::deliverability::webhooks::sign(secret.as_bytes(), chrono::Utc::now().timestamp() - 3600, &body);
    assert_eq!(app.send(webhook_request(&body, Some(&stale))).await.status, 401);
    let forged = mailwarm::deliverability::webhooks::sign(b"guess", chrono::Utc::now().timestamp(), &body);
    assert_eq!(app.send(webhook_request(&body, Some(&forged))).await.status, 401);
    let garbage = mailwarm::deliverability::webhooks::sign(secret.as_bytes(), chrono::Utc::now().timestamp(), b"[1,2");
    assert_eq!(app.send(webhook_request(b"[1,2", Some(&garbage))).await.status, 400);
    assert_eq!(suppressed(&app, &ann).await, Vec::<String>::new());

    // By VERP address: recorded once, however often it is posted.
    let event = json!([{ "type": "hard", "returnPath": a_verp, "diagnostic": "5.1.1 user unknown" }]);
    assert_eq!(post_events(&app, secret, event.clone()).await["recorded"], 1);
    assert_eq!(post_events(&app, secret, event).await["repeated"], 1);
    // By Message-ID: only with the address it went to; an id of no delivery is unknown.
    let wrong = json!([{ "type": "hard", "messageId": id_of("b@acme.com"), "recipient": "c@acme.com" },
                       { "type": "hard", "messageId": "<00000000-0000-4000-8000-000000000000@acme.example>" }]);
    assert_eq!(post_events(&app, secret, wrong).await["unknown"], 2);
    assert_eq!(suppressed(&app, &ann).await, vec!["a@acme.com:HARD_BOUNCE"]);

    // A complaint: b@ unsubscribed and suppressed for Ann only; 1 of 3 sent is over 30%,
    // with 2 sent at least: the mailing pauses and Ann is told.
    let complaint = json!([{ "type": "complaint", "messageId": id_of("b@acme.com"), "recipient": "B@acme.com" }]);
    assert_eq!(post_events(&app, secret, complaint).await["recorded"], 1);
    assert_eq!(
        suppressed(&app, &ann).await,
        vec!["a@acme.com:HARD_BOUNCE", "b@acme.com:COMPLAINT"]
    );
    assert_eq!(
        suppressed(&app, &bob).await,
        Vec::<String>::new(),
        "Bob's list is his own"
    );
    assert_unsubscribed(&app, &ann, "b@").await;
    let log = app.graphql_as(&ann, LOG, json!({ "id": mailing })).await.json();
    assert_eq!(log["data"]["mailing"]["paused"], true, "{log}");
    let b = of(&log["data"]["mailing"], "b@acme.com")[0].clone();
    assert_eq!(b["bounce"]["kind"], "COMPLAINT");
    let statuses: Vec<&str> = b["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec!["SUCCESS", "COMPLAINED"],
        "the report is in the attempt log"
    );
    let notice = app
        .outbox
        .wait_for("ann@example.com", Duration::from_secs(10))
        .await
        .map(|m| m.subject_text);
    let notice = match notice {
        Some(subject) => subject,
        // Account mails go through SMTP when it is configured.
        None => smtp
            .wait_accepted(4, Duration::from_secs(10))
            .await
            .iter()
            .find(|m| m.rcpt_to.iter().any(|r| r == "ann@example.com"))
            .map(|m| m.data.clone())
            .unwrap_or_default(),
    };
    assert!(notice.contains("A mailing paused"), "{notice}");
}

#[tokio::test]
async fn the_owner_manages_the_list() {
    let app = TestApp::new().await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    let bob = app.verified_user("bob@example.com", Role::User).await;
    let reply = app
        .graphql_as(
            &ann,
            "mutation { suppress(email: \"not an address\") { email } }",
            json!({}),
        )
        .await;
    assert_eq!(reply.error_code(), "BAD_USER_INPUT");
    assert_eq!(reply.json()["errors"][0]["extensions"]["field"], "email");
    for email in ["one@acme.com", "two@acme.com", "One@ACME.com"] {
        let reply = app
            .graphql_as(
                &ann,
                "mutation($e: String!) { suppress(email: $e) { email reason } }",
                json!({ "e": email }),
            )
            .await
            .json();
        assert_eq!(reply["data"]["suppress"]["reason"], "MANUAL", "{reply}");
    }
    assert_eq!(
        suppressed(&app, &ann).await,
        vec!["one@acme.com:MANUAL", "two@acme.com:MANUAL"]
    );
    let found = app
        .graphql_as(&ann, SUPPRESSIONS, json!({ "s": "TWO", "r": "MANUAL" }))
        .await
        .json();
    assert_eq!(found["data"]["suppressions"]["totalCount"], 1, "{found}");
    let none = app
        .graphql_as(&ann, SUPPRESSIONS, json!({ "r": "COMPLAINT" }))
        .await
        .json();
    assert_eq!(none["data"]["suppressions"]["totalCount"], 0);
    assert_eq!(suppressed(&app, &bob).await, Vec::<String>::new());
    let reply = app
        .graphql_as(&bob, "mutation { unsuppress(email: \"one@acme.com\") }", json!({}))
        .await
        .json();
    assert_eq!(reply["data"]["unsuppress"], false, "not Bob's to lift");
    // audienceSize leaves suppressed addresses out, as a run does.
    app.new_client(&ann, "one@acme.com").await;
    app.new_client(&ann, "three@acme.com").await;
    let size = app
        .graphql_as(&ann, "{ audienceSize(audience: { allClients: true }) }", json!({}))
        .await
        .json();
    assert_eq!(size["data"]["audienceSize"], 1, "{size}");
}

#[tokio::test]
async fn suppressing_cancels_pending_deliveries() {
    let app = TestApp::new().await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    let client = app
        .new_client(&ann, "later@acme.com")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let message = app.new_message(&ann).await.as_str().unwrap().to_owned();
    app.start_mailing_now(&ann, &message, &[client]).await;
    // No dispatcher here: run the due mailings once by hand, then suppress before sending.
    let mut conn = app.db.conn().await;
    mailwarm::dispatch::runs::start_due(&mut conn, "news@acme.example", None, 10)
        .await
        .unwrap();
    app.graphql_as(
        &ann,
        "mutation { suppress(email: \"later@acme.com\") { email } }",
        json!({}),
    )
    .await;
    let statuses: Vec<String> = diesel::sql_query("SELECT status AS s FROM deliveries")
        .load::<Status>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.s)
        .collect();
    assert_eq!(statuses, vec!["cancelled"]);
}

#[derive(diesel::QueryableByName)]
struct Status {
    #[diesel(sql_type = diesel::sql_types::Text)]
    s: String,
}

/// A DSN as Postfix writes one, about `recipient`, sent to `to`, quoting `message_id`.
fn dsn(to: &str, recipient: &str, status: &str, message_id: &str) -> String {
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\nTo: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-{status}@mx.example.net>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.example.net.\r\n\r\n\
         --b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
         Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n\
         Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected: User unknown\r\n\r\n\
         --b1\r\nContent-Type: message/rfc822-headers\r\n\r\nFrom: news@acme.example\r\nTo: {recipient}\r\n\
         Message-ID: {message_id}\r\nSubject: Hello\r\n\r\n--b1--\r\n"
    )
}

/// An ARF report (RFC 5965) about the message `message_id` to `recipient`.
fn arf(recipient: &str, message_id: &str) -> String {
    format!(
        "From: feedback@mail.example.org\r\nTo: fbl@acme.example\r\nSubject: FW: Hello\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"b2\"\r\n\r\n\
         --b2\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n\
         --b2\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: Fbl/1.0\r\n\
         Version: 1\r\nOriginal-Rcpt-To: <{recipient}>\r\n\r\n\
         --b2\r\nContent-Type: message/rfc822\r\n\r\nFrom: news@acme.example\r\nTo: {recipient}\r\n\
         Message-ID: {message_id}\r\nSubject: Hello\r\n\r\nHello\r\n--b2--\r\n"
    )
}

#[tokio::test]
async fn the_bounce_mailbox_is_read_by_one_poll_and_garbage_stops_nothing() {
    let imap = Dovecot::start().await;
    let smtp = TestSmtpServer::start().await;
    let app = app(
        &smtp,
        &["--bounce-imap-url", &imap.url(), "--bounce-poll-interval", "1s"],
    )
    .await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    for who in ["gone", "angry", "fine"] {
        app.new_client(&ann, &format!("{who}@acme.com")).await;
    }
    let mailing = daily(&app, &ann).await;
    let log = settled(&app, &ann, &mailing, 1).await;
    let message_id = |email: &str| of(&log, email)[0]["messageId"].as_str().unwrap().to_owned();
    let gone_verp = smtp
        .accepted()
        .into_iter()
        .find(|m| m.rcpt_to.iter().any(|r| r == "gone@acme.com"))
        .unwrap()
        .mail_from;

    // Garbage first: none of it is a report, and it must stop nothing.
    let garbage: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02 not a mail at all".to_vec(),
        b"From: friend@example.org\r\nSubject: lunch?\r\n\r\nNoon?\r\n".to_vec(),
        b"From: x@example.org\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=z\r\n\r\n--z\r\n\r\nno parts\r\n--z--\r\n".to_vec(),
        b"From: MAILER-DAEMON@example.org\r\nSubject: failure notice\r\n\r\nSomething happened.\r\n".to_vec(),
        format!("Subject: {}\r\n\r\n{}", "x".repeat(5000), "\u{fffd}".repeat(1000)).into_bytes(),
        // A real-looking DSN with a forged token, about a delivery of nobody.
        dsn("bounces+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@acme.example", "fine@acme.com", "5.1.1", "<nothing@acme.example>").into_bytes(),
    ];
    for mail in &garbage {
        imap.deliver(mail).await;
    }
    imap.deliver(dsn(&gone_verp, "gone@acme.com", "5.1.1", "<unrelated@elsewhere>").as_bytes())
        .await;
    imap.deliver(arf("angry@acme.com", &message_id("angry@acme.com")).as_bytes())
        .await;
    // The same DSN again (a mail server that sent it twice) counts once.
    imap.deliver(dsn(&gone_verp, "gone@acme.com", "5.1.1", "<unrelated@elsewhere>").as_bytes())
        .await;

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = suppressed(&app, &ann).await;
        if list.len() == 2 {
            assert_eq!(list, vec!["angry@acme.com:COMPLAINT", "gone@acme.com:HARD_BOUNCE"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the poll did not record the reports: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = app.graphql_as(&ann, LOG, json!({ "id": mailing })).await.json();
    let gone = of(&log["data"]["mailing"], "gone@acme.com")[0].clone();
    assert_eq!(gone["bounce"]["kind"], "HARD");
    let statuses: Vec<&str> = gone["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["SUCCESS", "BOUNCED"], "once, though reported twice");
    assert_unsubscribed(&app, &ann, "angry").await;

    // Every mail is flagged: the reports read, the garbage junk; nothing is read twice.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let flags = imap.flags().await;
        let junk = flags
            .iter()
            .filter(|f| f.iter().any(|f| f.contains("MailwarmJunk")))
            .count();
        let done = flags
            .iter()
            .filter(|f| f.iter().any(|f| f.contains("MailwarmDone")))
            .count();
        if junk + done == flags.len() {
            assert_eq!(junk, garbage.len() - 1, "{flags:?}");
            assert_eq!(
                done, 4,
                "the forged DSN is a report about no delivery of ours: {flags:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{flags:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // And the service goes on sending: the next run reaches the one address left.
    next_day(&app, &mailing).await;
    let log = settled(&app, &ann, &mailing, 2).await;
    assert_eq!(of(&log, "fine@acme.com").len(), 2, "{log}");
    assert_eq!(of(&log, "gone@acme.com").len(), 1);
    assert_eq!(of(&log, "angry@acme.com").len(), 1);
}

/// An SNS message signed as SNS signs them (the string to sign written out here from
/// AWS's documentation, not taken from the service), with the key of `key_pem`.
fn sns_message(fields: &[(&str, &str)], version: &str, key_pem: &str, cert_url: &str) -> Value {
    use rsa::pkcs8::DecodePrivateKey;
    use sha2::Digest;
    let kind = fields.iter().find(|(k, _)| *k == "Type").unwrap().1;
    let signed: &[&str] = if kind == "Notification" {
        &["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    let mut text = String::new();
    for name in signed {
        if let Some((_, value)) = fields.iter().find(|(k, _)| k == name) {
            text.push_str(&format!("{name}\n{value}\n"));
        }
    }
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(key_pem).unwrap();
    let signature = match version {
        "1" => key
            .sign(
                rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
                &sha1::Sha1::digest(text.as_bytes()),
            )
            .unwrap(),
        _ => key
            .sign(
                rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest(text.as_bytes()),
            )
            .unwrap(),
    };
    let mut message: serde_json::Map<String, Value> = fields.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    message.insert("SignatureVersion".into(), json!(version));
    message.insert(
        "Signature".into(),
        json!(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            signature
        )),
    );
    message.insert("SigningCertURL".into(), json!(cert_url));
    Value::Object(message)
}

async fn post_sns(app: &TestApp, message: &Value) -> (u16, Value) {
    let request = axum::http::Request::post("/webhooks/bounces/ses")
        .header("content-type", "text/plain; charset=UTF-8")
        .body(axum::body::Body::from(serde_json::to_vec(message).unwrap()))
        .unwrap();
    let reply = app.send(request).await;
    (
        reply.status.as_u16(),
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn ses_notifications_through_sns_are_verified_and_recorded() {
    // The signing key and its certificate, made as AWS would have them.
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=sns.amazonaws.com",
        ])
        .arg("-keyout")
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(dir.path().join("cert.pem"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    let key = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
    let cert = std::fs::read(dir.path().join("cert.pem")).unwrap();
    let https = crate::common::https::TestHttps::start(
        [
            ("/cert.pem".to_owned(), cert),
            ("/confirm".to_owned(), b"<ConfirmSubscriptionResponse/>".to_vec()),
        ]
        .into_iter()
        .collect(),
    )
    .await;
    std::fs::write(dir.path().join("ca.pem"), &https.ca).unwrap();
    let topic = "arn:aws:sns:eu-west-1:123456789012:mailwarm-bounces";
    let smtp = TestSmtpServer::start().await;
    let ca = dir.path().join("ca.pem");
    let app = app(
        &smtp,
        &[
            "--ses-topic-arns",
            topic,
            "--sns-cert-host",
            "localhost",
            "--smtp-tls-ca",
            ca.to_str().unwrap(),
        ],
    )
    .await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    app.new_client(&ann, "gone@acme.com").await;
    app.new_client(&ann, "angry@acme.com").await;
    let mailing = daily(&app, &ann).await;
    let log = settled(&app, &ann, &mailing, 1).await;
    let verp = |to: &str| {
        smtp.accepted()
            .into_iter()
            .find(|m| m.rcpt_to.iter().any(|r| r == to))
            .unwrap()
            .mail_from
    };
    let cert_url = https.url("/cert.pem");

    // The subscription is confirmed by visiting its link.
    let confirm_url = https.url("/confirm?Action=ConfirmSubscription&Token=t0k");
    let subscription = sns_message(
        &[
            ("Type", "SubscriptionConfirmation"),
            ("MessageId", "m-0"),
            ("Token", "t0k"),
            ("TopicArn", topic),
            ("Message", "You have chosen to subscribe to the topic."),
            ("SubscribeURL", &confirm_url),
            ("Timestamp", "2026-12-04T12:00:00.000Z"),
        ],
        "1",
        &key,
        &cert_url,
    );
    let (status, body) = post_sns(&app, &subscription).await;
    assert_eq!(status, 200, "{body}");
    assert!(https.asked.lock().unwrap().iter().any(|p| p.starts_with("/confirm?")));

    let bounce = json!({
        "notificationType": "Bounce",
        "bounce": { "bounceType": "Permanent", "bounceSubType": "General",
                    "bouncedRecipients": [{ "emailAddress": "gone@acme.com", "status": "5.1.1",
                                            "diagnosticCode": "smtp; 550 5.1.1 user unknown" }] },
        "mail": { "source": verp("gone@acme.com"), "destination": ["gone@acme.com"] }
    })
    .to_string();
    let complaint = json!({
        "notificationType": "Complaint",
        "complaint": { "complainedRecipients": [{ "emailAddress": "angry@acme.com" }], "complaintFeedbackType": "abuse" },
        "mail": { "commonHeaders": { "messageId": of(&log, "angry@acme.com")[0]["messageId"] } }
    })
    .to_string();
    let notification = |id: &str, message: &str, version: &str| {
        sns_message(
            &[
                ("Type", "Notification"),
                ("MessageId", id),
                ("TopicArn", topic),
                ("Message", message),
                ("Timestamp", "2026-12-04T12:00:01.000Z"),
            ],
            version,
            &key,
            &cert_url,
        )
    };
    // Refused: another topic, a changed message, a certificate from elsewhere.
    let mut other_topic = notification("m-1", &bounce, "2");
    other_topic["TopicArn"] = json!("arn:aws:sns:eu-west-1:999999999999:theirs");
    assert_eq!(post_sns(&app, &other_topic).await.0, 403);
    let mut tampered = notification("m-1", &bounce, "2");
    tampered["Message"] = json!(bounce.replace("gone@", "other@"));
    assert_eq!(post_sns(&app, &tampered).await.0, 401);
    let mut elsewhere = notification("m-1", &bounce, "2");
    elsewhere["SigningCertURL"] = json!("https://evil.example/cert.pem");
    assert_eq!(post_sns(&app, &elsewhere).await.0, 401);
    assert_eq!(suppressed(&app, &ann).await, Vec::<String>::new());

    let (status, body) = post_sns(&app, &notification("m-1", &bounce, "2")).await;
    assert_eq!((status, body["recorded"].clone()), (200, json!(1)), "{body}");
    let (status, body) = post_sns(&app, &notification("m-2", &complaint, "1")).await;
    assert_eq!((status, body["recorded"].clone()), (200, json!(1)), "{body}");
    // SNS delivers at least once: the same notification again counts once.
    let (_, body) = post_sns(&app, &notification("m-1", &bounce, "2")).await;
    assert_eq!(body["repeated"], 1, "{body}");
    assert_eq!(
        suppressed(&app, &ann).await,
        vec!["angry@acme.com:COMPLAINT", "gone@acme.com:HARD_BOUNCE"]
    );
    assert_eq!(
        https.asked.lock().unwrap().iter().filter(|p| *p == "/cert.pem").count(),
        1,
        "the certificate is fetched once and kept"
    );
}
