//! The dispatcher as real `server` processes sharing one database: several instances split
//! one mailing without sending anything twice; an instance killed mid-run loses nothing
//! (at most its in-flight sends end UNKNOWN); `--dispatch-once`; and a graphql-ws client on
//! one instance sees the attempts another instance sends.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::smtp::TestSmtpServer;
use crate::common::{ServerProcess, TestApp};
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use mailwarm::accounts::role::Role;
use serde_json::json;

pub(crate) const CONCURRENCY: usize = 8;

/// An owner with a message and `n` clients (inserted in bulk), signed in on `app`.
pub(crate) async fn audience(app: &TestApp, n: usize) -> (String, String, Vec<String>) {
    let token = app.verified_user("owner@example.com", Role::User).await;
    let message = app
        .graphql_as(
            &token,
            "mutation { createMessage(input: { subject: \"S\", body: \"Hi {{full_name}}\" }) { id } }",
            json!({}),
        )
        .await
        .json()["data"]["createMessage"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut conn = app.db.conn().await;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let ids: Vec<Id> = diesel::sql_query(
        "INSERT INTO clients (owner_id, email, full_name) \
         SELECT (SELECT id FROM users WHERE email = 'owner@example.com'), 'client' || i || '@example.com', 'Client ' || i \
         FROM generate_series(1, $1) AS i RETURNING id::text",
    )
    .bind::<BigInt, _>(n as i64)
    .load(&mut conn)
    .await
    .unwrap();
    (token, message, ids.into_iter().map(|i| i.id).collect())
}

pub(crate) fn dispatcher_env<'a>(db: &'a str, smtp: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("DATABASE_URL", db),
        ("SMTP_URL", smtp),
        ("SMTP_CONCURRENCY", "8"),
        // Roomy: on a loaded CI machine a reply after the final dot slower than a short
        // SMTP_COMMAND_TIMEOUT ends UNKNOWN (rightly); these tests are about duplicates.
        ("LEASE_TTL", "9s"),
        ("SEND_TIMEOUT", "8s"),
        ("SMTP_COMMAND_TIMEOUT", "8s"),
        ("DISPATCH_INTERVAL", "1s"),
        ("SHUTDOWN_GRACE", "3s"),
        ("RUST_LOG", "warn,mailwarm=info"),
    ]
}

/// `n` `server --dispatch-only` processes, each up and dispatching.
pub(crate) async fn dispatchers(n: usize, env: &[(&str, &str)], logs: &std::path::Path) -> Vec<ServerProcess> {
    let instances: Vec<ServerProcess> = (0..n)
        .map(|_| ServerProcess::spawn(&["--dispatch-only"], env, logs))
        .collect();
    for instance in &instances {
        wait_log(instance, "dispatching", Duration::from_secs(30)).await;
    }
    instances
}

async fn wait_log(server: &ServerProcess, needle: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !server.log().contains(needle) {
        assert!(Instant::now() < deadline, "no `{needle}` in:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn delivery_statuses(app: &TestApp) -> HashMap<String, i64> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        status: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = app.db.conn().await;
    let rows: Vec<Row> = diesel::sql_query("SELECT status, count(*) AS n FROM deliveries GROUP BY status")
        .load(&mut conn)
        .await
        .unwrap();
    rows.into_iter().map(|r| (r.status, r.n)).collect()
}

pub(crate) async fn wait_settled(app: &TestApp, within: Duration, instances: &[ServerProcess]) -> HashMap<String, i64> {
    let deadline = Instant::now() + within;
    loop {
        let statuses = delivery_statuses(app).await;
        if !statuses.is_empty() && !statuses.contains_key("pending") {
            return statuses;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = instances.iter().map(|i| i.log()).collect();
            panic!("deliveries never settled: {statuses:?}\n{}", logs.join("\n----\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn received_per_address(smtp: &TestSmtpServer) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for mail in smtp.accepted() {
        for to in mail.rcpt_to {
            *counts.entry(to).or_insert(0) += 1;
        }
    }
    counts
}

/// Every SENT delivery's address was received exactly once (`received`: messages per
/// address); any other delivery's at most once (an UNKNOWN one may have gone out).
pub(crate) async fn assert_sent_once(app: &TestApp, received: &HashMap<String, usize>) {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        email: String,
        #[diesel(sql_type = Text)]
        status: String,
    }
    let mut conn = app.db.conn().await;
    let rows: Vec<Row> = diesel::sql_query("SELECT email, status FROM deliveries")
        .load(&mut conn)
        .await
        .unwrap();
    for row in rows {
        let got = received.get(&row.email).copied().unwrap_or(0);
        match row.status.as_str() {
            "sent" => assert_eq!(got, 1, "{} got {got}", row.email),
            _ => assert!(got <= 1, "{} got {got}", row.email),
        }
    }
}

#[tokio::test]
async fn three_instances_send_each_of_2000_messages_exactly_once() {
    let smtp = TestSmtpServer::start_with_delay(Duration::from_millis(2)).await;
    let app = TestApp::new().await;
    let (token, message, clients) = audience(&app, 2000).await;
    let logs = tempfile::tempdir().unwrap();
    let smtp_url = smtp.url();
    let env = dispatcher_env(&app.db.url, &smtp_url);
    let mut instances = dispatchers(3, &env, logs.path()).await;

    app.start_mailing_now(&token, &message, &clients).await;
    let statuses = wait_settled(&app, Duration::from_secs(60), &instances).await;
    assert_eq!(statuses, HashMap::from([("sent".to_owned(), 2000)]));
    let received = received_per_address(&smtp);
    assert_eq!(received.len(), 2000, "every client got a message");
    assert!(received.values().all(|n| *n == 1), "nobody got two");
    let busy = instances
        .iter()
        .filter(|i| i.log().contains("run started") || smtp.connections() > 0)
        .count();
    assert!(busy >= 1);
    for instance in &mut instances {
        assert!(
            instance.terminate(Duration::from_secs(10)).await.success(),
            "{}",
            instance.log()
        );
    }
}

#[tokio::test]
async fn an_instance_killed_mid_run_loses_nothing_and_duplicates_only_unknowns() {
    let smtp = TestSmtpServer::start_with_delay(Duration::from_millis(15)).await;
    let app = TestApp::new().await;
    let (token, message, clients) = audience(&app, 2000).await;
    let logs = tempfile::tempdir().unwrap();
    let smtp_url = smtp.url();
    let env = dispatcher_env(&app.db.url, &smtp_url);
    let mut instances = dispatchers(3, &env, logs.path()).await;

    app.start_mailing_now(&token, &message, &clients).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while smtp.accepted().len() < 300 {
        assert!(Instant::now() < deadline, "sending never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    instances[0].child.kill().unwrap(); // SIGKILL: no chance to give anything back
    instances[0].child.wait().unwrap();

    let statuses = wait_settled(&app, Duration::from_secs(90), &instances).await;
    let unknown = statuses.get("unknown").copied().unwrap_or(0);
    let warnings: Vec<String> = instances
        .iter()
        .flat_map(|i| {
            i.log()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(unknown as usize <= CONCURRENCY, "{statuses:?}\n{}", warnings.join("\n"));
    assert_eq!(
        statuses.get("sent").copied().unwrap_or(0) + unknown,
        2000,
        "{statuses:?}"
    );

    // Every SENT delivery's client got exactly one message; an UNKNOWN one, at most one.
    assert_sent_once(&app, &received_per_address(&smtp)).await;
    for instance in &mut instances[1..] {
        assert!(instance.terminate(Duration::from_secs(10)).await.success());
    }
}

#[tokio::test]
async fn dispatch_once_sends_what_is_due_and_prints_a_summary() {
    let smtp = TestSmtpServer::start().await;
    let app = TestApp::new().await;
    let (token, message, clients) = audience(&app, 3).await;
    app.start_mailing_now(&token, &message, &clients).await;
    let smtp_url = smtp.url();
    // tokio's Command: the test's SMTP server runs on this same runtime meanwhile.
    let run = |db: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .arg("--dispatch-once")
            .env_remove("TEST_DATABASE_URL")
            .env("DATABASE_URL", db)
            .env("SMTP_URL", &smtp_url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
    };
    let first = run(&app.db.url).await.unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "dispatch-once: runs started 1, sent 3, failed 0, will retry 0, unknown 0"
    );
    assert_eq!(smtp.accepted().len(), 3);

    let second = run(&app.db.url).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        "dispatch-once: runs started 0, sent 0, failed 0, will retry 0, unknown 0"
    );

    let port = crate::common::free_port();
    let unreachable = run(&format!("postgres://postgres@127.0.0.1:{port}/none"))
        .await
        .unwrap();
    assert!(!unreachable.status.success(), "a database it cannot reach is a failure");
}

#[tokio::test]
async fn a_subscriber_on_one_instance_sees_attempts_sent_by_another() {
    let js = crate::common::js_packages();
    let smtp = TestSmtpServer::start().await;
    let app = TestApp::new().await;
    // Groups of 2: the 12 attempts are recorded in 6 commits, whose notices the sender
    // merges (one per run, with several commit times).
    let (token, message, clients) = audience(&app, 12).await;
    let logs = tempfile::tempdir().unwrap();
    let smtp_url = smtp.url();
    let mut env = dispatcher_env(&app.db.url, &smtp_url);
    env.retain(|(name, _)| *name != "SMTP_CONCURRENCY");
    env.push(("SMTP_CONCURRENCY", "2"));
    let mut api = ServerProcess::spawn(&["--no-dispatch"], &env, logs.path());
    let mut sender = ServerProcess::spawn(&["--dispatch-only"], &env, logs.path());
    api.wait_ready(Duration::from_secs(30)).await;
    wait_log(&sender, "dispatching", Duration::from_secs(30)).await;

    let ws_url = format!("{}/graphql/ws", api.base_url.replace("http://", "ws://"));
    let mut subscriber = tokio::process::Command::new("node")
        .arg(js.join("subscribe.mjs"))
        .args([&ws_url, &token, "12", "20000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs the subscriber");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(subscriber.stdout.take().unwrap()));
    let ready = tokio::time::timeout(Duration::from_secs(15), lines.next_line()).await;
    assert_eq!(ready.ok().and_then(|l| l.ok()).flatten().as_deref(), Some("ready"));

    let mailing = app.start_mailing_now(&token, &message, &clients).await;
    let mut events = Vec::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await {
        events.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    let status = subscriber.wait().await.unwrap();
    assert!(status.success(), "subscriber failed; got {events:?}");
    assert_eq!(events.len(), 12);
    let emails: std::collections::HashSet<&str> = events.iter().filter_map(|e| e["email"].as_str()).collect();
    assert_eq!(emails.len(), 12, "each attempt once: {events:?}");
    assert!(
        events
            .iter()
            .all(|e| e["status"] == "SUCCESS" && e["mailing"]["id"] == mailing.as_str()),
        "{events:?}"
    );
    assert!(!api.log().contains("run started"), "the API instance did not send");
    assert!(sender.log().contains("run started"));
    api.terminate(Duration::from_secs(10)).await;
    sender.terminate(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn sigterm_finishes_sends_in_flight_and_gives_the_rest_back() {
    // A slow mail server: each message takes 200 ms, so SIGTERM lands mid-run.
    let smtp = TestSmtpServer::start_with_delay(Duration::from_millis(200)).await;
    let app = TestApp::new().await;
    let (token, message, clients) = audience(&app, 200).await;
    let logs = tempfile::tempdir().unwrap();
    let smtp_url = smtp.url();
    let env = dispatcher_env(&app.db.url, &smtp_url);
    let mut first = ServerProcess::spawn(&["--dispatch-only"], &env, logs.path());
    wait_log(&first, "dispatching", Duration::from_secs(30)).await;
    app.start_mailing_now(&token, &message, &clients).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while smtp.accepted().len() < 16 {
        assert!(Instant::now() < deadline, "sending never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        first.terminate(Duration::from_secs(10)).await.success(),
        "{}",
        first.log()
    );

    // Nothing left SENDING or leased: in-flight sends finished, unstarted claims came back.
    #[derive(diesel::QueryableByName)]
    struct Left {
        #[diesel(sql_type = BigInt)]
        sending: i64,
        #[diesel(sql_type = BigInt)]
        leased: i64,
        #[diesel(sql_type = BigInt)]
        pending: i64,
    }
    let mut conn = app.db.conn().await;
    let left: Left = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE sending_since IS NOT NULL) AS sending, \
                count(*) FILTER (WHERE lease_owner IS NOT NULL) \
                    + (SELECT count(*) FROM run_slices WHERE lease_owner IS NOT NULL) AS leased, \
                count(*) FILTER (WHERE status = 'pending') AS pending FROM deliveries",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (left.sending, left.leased),
        (0, 0),
        "the stopped instance left work held"
    );
    assert!(left.pending > 0, "the run was still going when SIGTERM came");

    // Another instance finishes at once (no lease to wait out), without sending anything twice.
    let mut second = ServerProcess::spawn(&["--dispatch-only"], &env, logs.path());
    let statuses = wait_settled(&app, Duration::from_secs(60), std::slice::from_ref(&second)).await;
    assert_eq!(statuses, HashMap::from([("sent".to_owned(), 200)]));
    let received = received_per_address(&smtp);
    assert_eq!(received.len(), 200);
    assert!(received.values().all(|n| *n == 1), "nobody got two");
    second.terminate(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_poison_value_among_good_clients_stops_no_instance() {
    let smtp = TestSmtpServer::start().await;
    let app = TestApp::new().await;
    let (token, message, mut clients) = audience(&app, 60).await;
    // Values stored before the input rules: a name with a line break once made composing
    // panic, which ended that instance's sending for good.
    let poison = [
        ("crlf@example.com", "Eve\r\nBcc: victim@example.com"),
        ("lf@example.com", "Line\nbreak"),
        ("smuggle@example.com", "x\r.\r\nMAIL FROM:<evil@example.com>\r\n"),
        ("\"quoted\"@example.com", "Quoted"),
        ("literal@[127.0.0.1]", "Literal"),
    ];
    clients.extend(app.insert_clients("owner@example.com", &poison).await);
    let logs = tempfile::tempdir().unwrap();
    let smtp_url = smtp.url();
    let env = dispatcher_env(&app.db.url, &smtp_url);
    let mut instances: Vec<ServerProcess> = (0..2).map(|_| ServerProcess::spawn(&[], &env, logs.path())).collect();
    for instance in &mut instances {
        instance.wait_ready(Duration::from_secs(30)).await;
    }

    app.start_mailing_now(&token, &message, &clients).await;
    let statuses = wait_settled(&app, Duration::from_secs(60), &instances).await;
    assert_eq!(
        statuses,
        HashMap::from([("sent".to_owned(), 63), ("failed".to_owned(), 2)]),
        "{statuses:?}"
    );
    let received = received_per_address(&smtp);
    assert_eq!(received.len(), 63);
    assert!(received.values().all(|n| *n == 1), "{received:?}");
    for poisoned in ["crlf@example.com", "lf@example.com", "smuggle@example.com"] {
        assert_eq!(received.get(poisoned), Some(&1), "{poisoned}");
    }
    assert_eq!(smtp.stray_lines(), 0);

    // Both instances still send, and say they are ready; nothing panicked or restarted.
    let more_clients: Vec<(String, String)> = (1..=5)
        .map(|i| (format!("more{i}@example.com"), format!("More {i}")))
        .collect();
    let more_clients: Vec<(&str, &str)> = more_clients.iter().map(|(e, n)| (e.as_str(), n.as_str())).collect();
    let more = app.insert_clients("owner@example.com", &more_clients).await;
    app.start_mailing_now(&token, &message, &more).await;
    assert_eq!(smtp.wait_accepted(68, Duration::from_secs(30)).await.len(), 68);
    let http = reqwest::Client::new();
    for instance in &mut instances {
        assert!(instance.child.try_wait().unwrap().is_none(), "{}", instance.log());
        let ready = http.get(format!("{}/readyz", instance.base_url)).send().await.unwrap();
        assert_eq!(ready.status(), 200, "{}", instance.log());
        let log = instance.log();
        assert!(
            !log.contains("panicked") && !log.contains("a background task ended"),
            "{log}"
        );
    }
    for instance in &mut instances {
        assert!(instance.terminate(Duration::from_secs(10)).await.success());
    }
}
