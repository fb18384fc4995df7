//! Nothing stops the sending: values stored before today's input rules, mail-server
//! replies that once broke recording, messages that would be huge, a dispatcher that stops
//! ticking, a task that dies, a failing DataLoader. Each failure belongs to one delivery
//! (or one field), and the rest goes on.

use std::time::{Duration, Instant};

use crate::common::TestApp;
use crate::common::smtp::TestSmtpServer;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use mailwarm::accounts::role::Role;
use serde_json::{Value, json};

/// Dispatching with quick settings; `more` overrides any of them.
async fn dispatching(smtp: &TestSmtpServer, more: &[&str]) -> TestApp {
    let url = smtp.url();
    let defaults = [
        ("--smtp-url", url.as_str()),
        ("--dispatch-interval", "1s"),
        ("--retry-base", "50ms"),
        ("--retry-max", "10m"),
        ("--smtp-command-timeout", "2s"),
        ("--send-timeout", "2s"),
        ("--lease-ttl", "5s"),
    ];
    let mut args: Vec<&str> = Vec::new();
    for (flag, value) in defaults {
        if !more.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(more);
    TestApp::dispatching(&args).await
}

/// An owner with a message; returns (token, message id).
async fn owner(app: &TestApp, subject: &str, body: &str) -> (String, String) {
    let token = app.verified_user("owner@example.com", Role::User).await;
    let reply = app
        .graphql_as(
            &token,
            "mutation($s: String!, $b: String!) { createMessage(input: { subject: $s, body: $b }) { id } }",
            json!({ "s": subject, "b": body }),
        )
        .await;
    let id = reply.json()["data"]["createMessage"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", reply.json()))
        .to_owned();
    (token, id)
}

/// The mailing's deliveries with their attempts, once none is pending or sending any more,
/// except those to `still_pending`, which need only have had an attempt.
async fn settled(app: &TestApp, token: &str, id: &str, still_pending: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = app
            .graphql_as(
                token,
                "query($id: ID!) { mailing(id: $id) { deliveries(first: 100) { nodes { email status attempts { status serverResponse } } } } }",
                json!({ "id": id }),
            )
            .await;
        let nodes = reply.json()["data"]["mailing"]["deliveries"]["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", reply.json()))
            .clone();
        let done = !nodes.is_empty()
            && nodes.iter().all(|d| {
                let status = d["status"].as_str().unwrap();
                let waiting = status == "PENDING" || status == "SENDING";
                let has_attempt = !d["attempts"].as_array().unwrap().is_empty();
                if still_pending.contains(&d["email"].as_str().unwrap()) {
                    has_attempt
                } else {
                    !waiting
                }
            });
        if done {
            return nodes;
        }
        assert!(Instant::now() < deadline, "never settled: {nodes:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn of<'a>(deliveries: &'a [Value], email: &str) -> &'a Value {
    deliveries
        .iter()
        .find(|d| d["email"] == email)
        .unwrap_or_else(|| panic!("no delivery to {email}: {deliveries:?}"))
}

#[tokio::test]
async fn poison_values_fail_alone_and_the_rest_is_sent_once() {
    let smtp = TestSmtpServer::start().await;
    let app = dispatching(&smtp, &[]).await;
    let (token, message) = owner(&app, "Hi {{full_name}}", "Hello {{full_name}} <{{email}}>").await;
    let ids = app
        .insert_clients(
            "owner@example.com",
            &[
                ("good1@example.com", "Good One"),
                // A line break in a name once made composing panic and killed the dispatcher.
                ("crlf@example.com", "Eve\r\nBcc: victim@example.com"),
                ("smuggle@example.com", "x\r.\r\nMAIL FROM:<evil@example.com>\r\n"),
                ("\"quoted\"@example.com", "Quoted"),
                ("literal@[127.0.0.1]", "Literal"),
                ("good2@example.com", "Good Two \u{1b}[31m\u{7}"),
                ("good3@example.com", "{{email}} {{full_name}}"),
            ],
        )
        .await;
    let id = app.start_mailing_now(&token, &message, &ids).await;
    let deliveries = settled(&app, &token, &id, &[]).await;

    for sent in [
        "good1@example.com",
        "crlf@example.com",
        "smuggle@example.com",
        "good2@example.com",
        "good3@example.com",
    ] {
        assert_eq!(of(&deliveries, sent)["status"], "SENT", "{sent}: {deliveries:?}");
    }
    for refused in ["\"quoted\"@example.com", "literal@[127.0.0.1]"] {
        let d = of(&deliveries, refused);
        assert_eq!(d["status"], "FAILED", "{d}");
        assert_eq!(d["attempts"][0]["status"], "PERMANENT_FAILURE", "{d}");
        assert!(
            d["attempts"][0]["serverResponse"]
                .as_str()
                .unwrap()
                .contains("not supported"),
            "{d}"
        );
    }
    // Each mail once; names cleaned; no header or command smuggled in.
    let accepted = smtp.accepted();
    assert_eq!(accepted.len(), 5, "{accepted:?}");
    for mail in &accepted {
        assert_eq!(mail.rcpt_to.len(), 1);
        assert!(!mail.data.contains("\r\nBcc:"), "{}", mail.data);
        let parsed = mail_parser::MessageParser::default()
            .parse(mail.data.as_bytes())
            .unwrap();
        assert!(parsed.header("Bcc").is_none());
    }
    assert_eq!(smtp.stray_lines(), 0);
    let crlf = accepted.iter().find(|m| m.rcpt_to == ["crlf@example.com"]).unwrap();
    let parsed = mail_parser::MessageParser::default()
        .parse(crlf.data.as_bytes())
        .unwrap();
    assert_eq!(parsed.subject(), Some("Hi Eve Bcc: victim@example.com"));
    let good3 = accepted.iter().find(|m| m.rcpt_to == ["good3@example.com"]).unwrap();
    let parsed = mail_parser::MessageParser::default()
        .parse(good3.data.as_bytes())
        .unwrap();
    // Placeholders in a value are not filled again.
    assert_eq!(
        parsed.body_text(0).unwrap().trim_end(),
        "Hello {{email}} {{full_name}} <good3@example.com>"
    );

    // Sending goes on: another mailing after the poison is sent too, and the instance is ready.
    let more = app
        .insert_clients("owner@example.com", &[("after@example.com", "After")])
        .await;
    app.start_mailing_now(&token, &message, &more).await;
    assert_eq!(smtp.wait_accepted(6, Duration::from_secs(10)).await.len(), 6);
    readyz_becomes(&app, 200, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn replies_that_once_broke_recording_are_recorded() {
    let smtp = TestSmtpServer::start().await;
    let app = dispatching(&smtp, &[]).await;
    let (token, message) = owner(&app, "Hi", "Hello").await;
    let ids = app
        .insert_clients(
            "owner@example.com",
            &[
                ("absurdwait@example.com", "A"),
                ("nulreply@example.com", "N"),
                ("latin1@example.com", "L"),
                ("ok@example.com", "O"),
            ],
        )
        .await;
    let id = app.start_mailing_now(&token, &message, &ids).await;
    let deliveries = settled(&app, &token, &id, &["absurdwait@example.com", "nulreply@example.com"]).await;

    // A Latin-1 reply to an accepted message: SENT, the reply kept lossily.
    let latin1 = of(&deliveries, "latin1@example.com");
    assert_eq!(latin1["status"], "SENT", "{latin1}");
    assert!(
        latin1["attempts"][0]["serverResponse"]
            .as_str()
            .unwrap()
            .contains("re\u{fffd}u"),
        "{latin1}"
    );
    assert_eq!(of(&deliveries, "ok@example.com")["status"], "SENT");
    // A NUL in a reply: recorded without it.
    let nul = of(&deliveries, "nulreply@example.com");
    assert_eq!(nul["attempts"][0]["status"], "TEMPORARY_FAILURE", "{nul}");
    assert_eq!(nul["attempts"][0]["serverResponse"], "451 4.7.1 try again later");
    // An absurd wait: recorded, and the retry is due within RETRY_MAX (10 minutes).
    let absurd = of(&deliveries, "absurdwait@example.com");
    assert_eq!(absurd["status"], "PENDING", "{absurd}");
    assert_eq!(absurd["attempts"][0]["status"], "TEMPORARY_FAILURE");
    #[derive(diesel::QueryableByName)]
    struct Wait {
        #[diesel(sql_type = BigInt)]
        secs: i64,
    }
    let mut conn = app.db.conn().await;
    let wait: Wait = diesel::sql_query(
        "SELECT extract(epoch FROM next_attempt_at - now())::bigint AS secs FROM deliveries \
         WHERE email = 'absurdwait@example.com'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert!((500..=660).contains(&wait.secs), "retry in {} s", wait.secs);
}

#[tokio::test]
async fn a_message_over_max_message_size_fails_that_delivery_without_building_it() {
    let smtp = TestSmtpServer::start().await;
    let app = dispatching(&smtp, &["--max-message-size", "1MiB"]).await;
    // A body of placeholders, and a name of placeholders: 85 MB per recipient when the
    // values were expanded again; now one pass, and refused before it is allocated.
    let body = "{{full_name}}".repeat(70_000);
    let (token, message) = owner(&app, "Hi", &body).await;
    let name = "{{full_name}}".repeat(15);
    let ids = app
        .insert_clients(
            "owner@example.com",
            &[("big@example.com", &name), ("small@example.com", "S")],
        )
        .await;
    let id = app.start_mailing_now(&token, &message, &ids).await;
    let deliveries = settled(&app, &token, &id, &[]).await;
    let big = of(&deliveries, "big@example.com");
    assert_eq!(big["status"], "FAILED", "{big}");
    assert_eq!(big["attempts"][0]["status"], "PERMANENT_FAILURE");
    assert!(
        big["attempts"][0]["serverResponse"]
            .as_str()
            .unwrap()
            .contains("MAX_MESSAGE_SIZE"),
        "{big}"
    );
    // 70,000 one-letter names: 70 KB, within the limit.
    assert_eq!(of(&deliveries, "small@example.com")["status"], "SENT");
}

/// Polls /readyz until it answers `status` (within `within`); returns its text.
async fn readyz_becomes(app: &TestApp, status: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let reply = app
            .send(
                axum::http::Request::get("/readyz")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        if reply.status.as_u16() == status {
            return text;
        }
        assert!(Instant::now() < deadline, "/readyz still {}: {text}", reply.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics(app: &TestApp) -> String {
    let reply = app
        .send(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    String::from_utf8_lossy(&reply.body).into_owned()
}

#[tokio::test]
async fn readyz_tells_when_the_dispatcher_stops_ticking_and_when_a_task_restarts() {
    let smtp = TestSmtpServer::start().await;
    let app = dispatching(
        &smtp,
        &["--db-pool-timeout", "1s", "--send-timeout", "1s", "--lease-ttl", "3s"],
    )
    .await;
    readyz_becomes(&app, 200, Duration::from_secs(10)).await;
    // Hold the queue's table: the dispatcher's next step waits on the lock and ticks no more
    // (within DISPATCH_INTERVAL + SEND_TIMEOUT + DB_POOL_TIMEOUT = 3 s).
    let mut holder = app.db.conn().await;
    diesel::sql_query("BEGIN").execute(&mut holder).await.unwrap();
    diesel::sql_query("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let text = readyz_becomes(&app, 503, Duration::from_secs(15)).await;
    assert!(text.contains("the dispatcher has not finished a tick"), "{text}");
    diesel::sql_query("ROLLBACK").execute(&mut holder).await.unwrap();
    readyz_becomes(&app, 200, Duration::from_secs(10)).await;
    assert!(metrics(&app).await.contains("mailwarm_dispatch_last_tick_seconds "));

    // A supervised task that dies: /readyz says which and why until it runs again, and
    // /metrics counts the restart.
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let crashed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = crashed.clone();
    let _task = mailwarm::tasks::supervise(
        "canary",
        app.state.health().clone(),
        app.state.metrics().clone(),
        stop,
        move || {
            let first = !once.swap(true, std::sync::atomic::Ordering::SeqCst);
            async move {
                assert!(!first, "the canary's first run dies");
                std::future::pending::<()>().await
            }
        },
    );
    let text = readyz_becomes(&app, 503, Duration::from_secs(5)).await;
    assert!(
        text.contains("the canary task is restarting: it panicked: the canary's first run dies"),
        "{text}"
    );
    let counted = metrics(&app).await;
    assert!(
        counted.contains("mailwarm_task_restarts_total{task=\"canary\"} 1"),
        "{counted}"
    );
    readyz_becomes(&app, 200, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_failing_data_loader_is_an_internal_error_not_bad_input() {
    let app = TestApp::new().await;
    let token = app.verified_user("owner@example.com", Role::User).await;
    let message = app.new_message(&token).await;
    let client = app.new_client(&token, "ann@example.com").await;
    let reply = app
        .graphql_as(
            &token,
            "mutation($i: MailingInput!) { createMailing(input: $i) { id } }",
            json!({ "i": { "startsAt": "2030-01-01T00:00:00Z", "periodicity": "ONCE", "messageId": message, "clientIds": [client] } }),
        )
        .await;
    assert!(reply.json()["errors"].is_null(), "{}", reply.json());
    // The loader behind Mailing.message now fails in the database.
    let mut conn = app.db.conn().await;
    diesel::sql_query("ALTER TABLE messages RENAME COLUMN subject TO subject_gone")
        .execute(&mut conn)
        .await
        .unwrap();
    let reply = app
        .graphql_as(&token, "{ mailings { nodes { message { subject } } } }", json!({}))
        .await;
    let error = &reply.json()["errors"][0];
    assert_eq!(error["extensions"]["code"], "INTERNAL_SERVER_ERROR", "{}", reply.json());
    assert_eq!(error["message"], "internal error");
}

#[tokio::test]
async fn an_exhausted_pool_is_a_503_to_retry_not_an_internal_error() {
    let app = TestApp::with_args(&["--db-pool-size", "3", "--db-pool-timeout", "300ms"]).await;
    let token = app.verified_user("owner@example.com", Role::User).await;
    // Every connection taken (the job runner's tries fail and are retried meanwhile).
    let mut held = Vec::new();
    while held.len() < 3 {
        match app.state.pool().get().await {
            Ok(conn) => held.push(conn),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    // Signed in: the credential cannot be checked.
    let reply = app.graphql_as(&token, "{ me { id } }", json!({})).await;
    assert_eq!(reply.status, 503, "{}", reply.json());
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(reply.error_code(), "SERVICE_UNAVAILABLE", "{}", reply.json());
    // Anonymous: the resolver finds no connection and nothing is answered.
    let reply = app.graphql("{ blogPosts { totalCount } }", json!({})).await;
    assert_eq!(reply.status, 503, "{}", reply.json());
    assert_eq!(reply.error_code(), "SERVICE_UNAVAILABLE", "{}", reply.json());
    assert_eq!(reply.json()["errors"][0]["extensions"]["retryAfter"], 1);
    // Connections back: the same requests are answered.
    drop(held);
    let reply = app.graphql_as(&token, "{ me { email } }", json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    assert_eq!(reply.json()["data"]["me"]["email"], "owner@example.com");
}

#[tokio::test]
async fn templates_fill_variables_and_a_failing_one_fails_only_its_deliveries() {
    let smtp = TestSmtpServer::start().await;
    let app = dispatching(&smtp, &[]).await;
    let (token, message) = owner(
        &app,
        "{{ client.full_name }}, your {{ client.attributes.plan | default('free') | upper }} plan",
        "Seats next year: {{ client.attributes.seats + 1 }}\n{{ client.comment }} / {{ run.date }} / {{ mailing.id }}\n",
    )
    .await;
    let create = "mutation($i: ClientInput!) { createClient(input: $i) { id } }";
    let mut ids = Vec::new();
    for input in [
        json!({ "email": "ann@example.com", "fullName": "<Ann>", "comment": "met at the fair",
                "attributes": { "plan": "pro", "seats": 4 } }),
        // Adding 1 to a string fails while rendering, for this client alone.
        json!({ "email": "bob@example.com", "fullName": "Bob", "attributes": { "seats": "many" } }),
    ] {
        let reply = app.graphql_as(&token, create, json!({ "i": input })).await.json();
        ids.push(
            reply["data"]["createClient"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{reply}"))
                .to_owned(),
        );
    }
    let id = app.start_mailing_now(&token, &message, &ids).await;
    let deliveries = settled(&app, &token, &id, &[]).await;
    assert_eq!(of(&deliveries, "ann@example.com")["status"], "SENT", "{deliveries:?}");
    let bob = of(&deliveries, "bob@example.com");
    assert_eq!(bob["status"], "FAILED", "{bob}");
    assert_eq!(bob["attempts"][0]["status"], "PERMANENT_FAILURE", "{bob}");
    let why = bob["attempts"][0]["serverResponse"].as_str().unwrap();
    assert!(why.contains("body template failed"), "{why}");

    let accepted = smtp.accepted();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    let parsed = mail_parser::MessageParser::default()
        .parse(accepted[0].data.as_bytes())
        .unwrap();
    assert_eq!(parsed.subject(), Some("<Ann>, your PRO plan"));
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(
        parsed.body_text(0).unwrap().replace("\r\n", "\n").trim_end(),
        format!("Seats next year: 5\nmet at the fair / {today} / {id}")
    );

    // A template that would run for ever is stopped by its fuel, for each of its
    // deliveries; the dispatcher goes on with the next mailing.
    let (_, runaway) = {
        let reply = app
            .graphql_as(
                &token,
                "mutation($s: String!, $b: String!) { createMessage(input: { subject: $s, body: $b }) { id } }",
                json!({ "s": "Loop", "b": "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}" }),
            )
            .await
            .json();
        (
            (),
            reply["data"]["createMessage"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{reply}"))
                .to_owned(),
        )
    };
    let looping = app.start_mailing_now(&token, &runaway, &ids[..1]).await;
    let deliveries = settled(&app, &token, &looping, &[]).await;
    let why = of(&deliveries, "ann@example.com")["attempts"][0]["serverResponse"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(why.contains("fuel"), "{why}");
    app.start_mailing_now(&token, &message, &ids[..1]).await;
    assert_eq!(smtp.wait_accepted(2, Duration::from_secs(10)).await.len(), 2);
    readyz_becomes(&app, 200, Duration::from_secs(5)).await;

    // A template that does not parse is refused when saved, with its line.
    let reply = app
        .graphql_as(
            &token,
            "mutation($s: String!, $b: String!) { createMessage(input: { subject: $s, body: $b }) { id } }",
            json!({ "s": "Fine", "b": "Hello\n\n{% if client.full_name %}no end" }),
        )
        .await;
    assert_eq!(reply.error_code(), "BAD_USER_INPUT", "{}", reply.json());
    assert_eq!(reply.json()["errors"][0]["extensions"]["field"], "input.body");
    let message_text = reply.json()["errors"][0]["message"].as_str().unwrap().to_owned();
    assert!(message_text.contains("line 3"), "{message_text}");
}
