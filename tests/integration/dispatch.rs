//! The dispatcher in-process against a real SMTP server on loopback: runs start on time,
//! every try is logged, the mail server's failures are classified and retried.

use std::time::{Duration, Instant};

use crate::common::TestApp;
use crate::common::smtp::TestSmtpServer;
use serde_json::{Value, json};

/// Short settings so retries and polls happen in milliseconds.
fn fast(smtp: &TestSmtpServer) -> Vec<String> {
    [
        "--smtp-url",
        &smtp.url(),
        "--dispatch-interval",
        "30s",
        "--retry-base",
        "50ms",
        "--retry-max",
        "200ms",
        "--max-attempts",
        "3",
        "--smtp-command-timeout",
        "1s",
        "--send-timeout",
        "1s",
        "--lease-ttl",
        "5s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The fast settings, with `more` overriding any of them.
async fn app_with(smtp: &TestSmtpServer, more: &[&str]) -> TestApp {
    let mut args: Vec<String> = Vec::new();
    for pair in fast(smtp).chunks(2) {
        if !more.contains(&pair[0].as_str()) {
            args.extend_from_slice(pair);
        }
    }
    args.extend(more.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestApp::dispatching(&args).await
}

struct Owner {
    token: String,
    message: String,
}

async fn owner(app: &TestApp) -> Owner {
    let token = app
        .verified_user("owner@example.com", mailwarm::accounts::role::Role::User)
        .await;
    let reply = app
        .graphql_as(
            &token,
            "mutation { createMessage(input: { subject: \"Hi {{full_name}}\", body: \"Hello {{full_name}} <{{email}}>\\nLeave: {{unsubscribe_url}}\" }) { id } }",
            json!({}),
        )
        .await;
    Owner {
        token,
        message: reply.json()["data"]["createMessage"]["id"].as_str().unwrap().to_owned(),
    }
}

async fn clients(app: &TestApp, owner: &Owner, emails: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for email in emails {
        let reply = app
            .graphql_as(
                &owner.token,
                "mutation($e: String!) { createClient(input: { email: $e, fullName: \"Client\" }) { id } }",
                json!({ "e": email }),
            )
            .await;
        ids.push(
            reply.json()["data"]["createClient"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{}", reply.json()))
                .to_owned(),
        );
    }
    ids
}

async fn create_mailing(
    app: &TestApp,
    owner: &Owner,
    starts_at: &str,
    periodicity: &str,
    clients: &[String],
) -> String {
    let reply = app
        .graphql_as(
            &owner.token,
            "mutation($i: MailingInput!) { createMailing(input: $i) { id } }",
            json!({ "i": { "startsAt": starts_at, "periodicity": periodicity, "messageId": owner.message, "clientIds": clients } }),
        )
        .await;
    reply.json()["data"]["createMailing"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", reply.json()))
        .to_owned()
}

async fn mailing(app: &TestApp, owner: &Owner, id: &str, fields: &str) -> Value {
    let reply = app
        .graphql_as(
            &owner.token,
            &format!("query($id: ID!) {{ mailing(id: $id) {{ {fields} }} }}"),
            json!({ "id": id }),
        )
        .await;
    reply.json()["data"]["mailing"].clone()
}

/// Polls until `check` holds for the mailing, or fails after `within`.
async fn wait_mailing(
    app: &TestApp,
    owner: &Owner,
    id: &str,
    fields: &str,
    within: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let value = mailing(app, owner, id, fields).await;
        if check(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "mailing never reached the expected state: {value}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn now_rfc3339(offset_ms: i64) -> String {
    (chrono::Utc::now() + chrono::TimeDelta::milliseconds(offset_ms)).to_rfc3339()
}

#[tokio::test]
async fn a_mailing_inside_its_window_is_sent_at_once_and_completes() {
    let smtp = TestSmtpServer::start().await;
    let app = app_with(&smtp, &[]).await;
    let owner = owner(&app).await;
    let ids = clients(&app, &owner, &["ann@example.com", "bob@example.com"]).await;
    let created = Instant::now();
    let id = create_mailing(&app, &owner, &now_rfc3339(-1000), "ONCE", &ids).await;

    let received = smtp.wait_accepted(2, Duration::from_secs(5)).await;
    let took = created.elapsed();
    assert_eq!(received.len(), 2);
    assert!(
        took < Duration::from_secs(5),
        "well before DISPATCH_INTERVAL (30 s): {took:?}"
    );
    let to_ann = received
        .iter()
        .find(|r| r.rcpt_to == ["ann@example.com"])
        .expect("ann got hers");
    assert!(to_ann.data.contains("Subject: Hi Client"), "{}", to_ann.data);
    assert!(
        to_ann.data.contains("Hello Client <ann@example.com>"),
        "{}",
        to_ann.data
    );
    assert!(to_ann.data.contains("List-Unsubscribe: <http"), "{}", to_ann.data);
    assert!(
        to_ann
            .data
            .contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    );
    assert!(to_ann.data.contains("Message-ID: <"), "{}", to_ann.data);

    let done = wait_mailing(&app, &owner, &id, "status nextRunAt", Duration::from_secs(5), |m| {
        m["status"] == "COMPLETED"
    })
    .await;
    assert_eq!(done["nextRunAt"], Value::Null);
}

/// Deliveries and attempts get time-ordered ids (UUID v7, migration 000022): their keys
/// then land on the B-trees' newest leaves instead of random ones, which is what keeps
/// PostgreSQL's work per delivery down (bench/postgres_floor.sh). Each id's version is 7
/// and its first 48 bits are the milliseconds of its row's making.
#[tokio::test]
async fn deliveries_and_attempts_get_time_ordered_ids() {
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    let smtp = TestSmtpServer::start().await;
    let app = app_with(&smtp, &[]).await;
    let owner = owner(&app).await;
    let ids = clients(&app, &owner, &["ann@example.com", "bob@example.com", "cy@example.com"]).await;
    let id = create_mailing(&app, &owner, &now_rfc3339(-1000), "ONCE", &ids).await;
    wait_mailing(&app, &owner, &id, "status", Duration::from_secs(10), |m| {
        m["status"] == "COMPLETED"
    })
    .await;

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        rows: i64,
        #[diesel(sql_type = BigInt)]
        not_v7: i64,
        #[diesel(sql_type = BigInt)]
        off_by_more_than_5s: i64,
    }
    let mut conn = app.db.conn().await;
    let row: Row = diesel::sql_query(
        "WITH ids AS (SELECT id, created_at AS made FROM deliveries \
                      UNION ALL SELECT id, attempted_at FROM attempts) \
         SELECT count(*) AS rows, \
                count(*) FILTER (WHERE substr(id::text, 15, 1) <> '7') AS not_v7, \
                count(*) FILTER (WHERE abs(extract(epoch FROM made) * 1000 \
                    - ('x' || translate(left(id::text, 13), '-', ''))::bit(48)::bigint) > 5000) AS off_by_more_than_5s \
         FROM ids",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(row.rows, 6, "three deliveries and their attempts");
    assert_eq!(row.not_v7, 0, "every id is a UUID v7");
    assert_eq!(row.off_by_more_than_5s, 0, "every id starts with its row's time");
}

const LOG: &str = "status stats { sent failed unknown pending cancelled attempts } \
    runs { nodes { runAt status total sent failed unknown pending cancelled } } \
    deliveries { nodes { email status messageId attempts { status serverResponse } } }";

fn delivery<'a>(mailing: &'a Value, email: &str) -> &'a Value {
    mailing["deliveries"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["email"] == email)
        .unwrap_or_else(|| panic!("no delivery to {email}: {mailing}"))
}

#[tokio::test]
async fn a_mailing_starting_soon_fires_by_itself() {
    let smtp = TestSmtpServer::start().await;
    let app = app_with(&smtp, &[]).await;
    let owner = owner(&app).await;
    let ids = clients(&app, &owner, &["ann@example.com"]).await;
    let id = create_mailing(&app, &owner, &now_rfc3339(2000), "ONCE", &ids).await;
    assert_eq!(mailing(&app, &owner, &id, "status").await["status"], "CREATED");
    assert!(
        smtp.wait_accepted(1, Duration::from_millis(1500)).await.is_empty(),
        "not before its time"
    );
    assert_eq!(
        smtp.wait_accepted(1, Duration::from_secs(4)).await.len(),
        1,
        "on time, without a wake-up or a poll"
    );
}

#[tokio::test]
async fn missed_runs_coalesce_into_the_latest() {
    let smtp = TestSmtpServer::start().await;
    let app = app_with(&smtp, &[]).await;
    let owner = owner(&app).await;
    let ids = clients(&app, &owner, &["ann@example.com"]).await;
    // Daily since three days and an hour ago: four runs are due, only the latest is sent.
    let start = (chrono::Utc::now() - chrono::TimeDelta::hours(73)).to_rfc3339();
    let id = create_mailing(&app, &owner, &start, "DAILY", &ids).await;
    // Fields of one request are read by separate statements: wait on the ones asserted.
    let done = wait_mailing(&app, &owner, &id, LOG, Duration::from_secs(10), |m| {
        let sent = |d: &Value| d["email"] == "ann@example.com" && d["status"] == "SENT";
        m["runs"]["nodes"].as_array().is_some_and(|r| r.len() == 4)
            && m["deliveries"]["nodes"]
                .as_array()
                .is_some_and(|ds| ds.iter().any(sent))
    })
    .await;
    let runs = done["runs"]["nodes"].as_array().unwrap();
    let statuses: Vec<&str> = runs.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.len(), 4, "{runs:?}");
    assert!(statuses[0] == "DONE" || statuses[0] == "RUNNING", "{statuses:?}");
    assert_eq!(&statuses[1..], ["SKIPPED", "SKIPPED", "SKIPPED"]);
    assert_eq!(runs[1]["total"], 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.accepted().len(), 1, "never sent in a burst");
    let status = mailing(&app, &owner, &id, "status nextRunAt").await;
    assert_eq!(status["status"], "RUNNING");
    assert!(status["nextRunAt"].as_str().unwrap() > now_rfc3339(0).as_str());
}

#[tokio::test]
async fn pause_holds_sending_and_resume_continues() {
    let smtp = TestSmtpServer::start().await;
    let app = app_with(&smtp, &[]).await;
    let owner = owner(&app).await;
    let ids = clients(&app, &owner, &["ann@example.com", "bob@example.com"]).await;
    let id = create_mailing(&app, &owner, &now_rfc3339(1500), "ONCE", &ids).await;
    let paused = app
        .graphql_as(
            &owner.token,
            "mutation($id: ID!) { pauseMailing(id: $id) { paused } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(paused.json()["data"]["pauseMailing"]["paused"], true);
    assert!(
        smtp.wait_accepted(1, Duration::from_secs(3)).await.is_empty(),
        "nothing while paused"
    );
    let resumed = app
        .graphql_as(
            &owner.token,
            "mutation($id: ID!) { resumeMailing(id: $id) { paused } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(resumed.json()["data"]["resumeMailing"]["paused"], false);
    assert_eq!(smtp.wait_accepted(2, Duration::from_secs(3)).await.len(), 2);
}

#[tokio::test]
async fn each_kind_of_failure_is_logged_and_handled() {
    let smtp = TestSmtpServer::start().await;
    let app = app_with(&smtp, &[]).await;
    let owner = owner(&app).await;
    let emails = [
        "ok@example.com",
        "tempfail@example.com",
        "reject@example.com",
        "dropafterdot@example.com",
    ];
    let ids = clients(&app, &owner, &emails).await;
    let id = create_mailing(&app, &owner, &now_rfc3339(-1000), "ONCE", &ids).await;
    let done = wait_mailing(&app, &owner, &id, LOG, Duration::from_secs(10), |m| {
        m["status"] == "COMPLETED"
    })
    .await;

    let ok = delivery(&done, "ok@example.com");
    assert_eq!(ok["status"], "SENT");
    assert_eq!(ok["attempts"][0]["status"], "SUCCESS");
    assert!(ok["attempts"][0]["serverResponse"].as_str().unwrap().starts_with("250"));

    // 4xx: retried with backoff until MAX_ATTEMPTS (3), then FAILED.
    let temp = delivery(&done, "tempfail@example.com");
    assert_eq!(temp["status"], "FAILED");
    let tries = temp["attempts"].as_array().unwrap();
    assert_eq!(tries.len(), 3, "{temp}");
    assert!(tries.iter().all(|a| a["status"] == "TEMPORARY_FAILURE"));
    assert!(
        tries[0]["serverResponse"].as_str().unwrap().contains("451"),
        "{}",
        tries[0]
    );

    // 5xx: one attempt, FAILED at once.
    let reject = delivery(&done, "reject@example.com");
    assert_eq!(reject["status"], "FAILED");
    assert_eq!(reject["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(reject["attempts"][0]["status"], "PERMANENT_FAILURE");

    // Lost after the final dot: UNKNOWN, never resent automatically.
    let lost = delivery(&done, "dropafterdot@example.com");
    assert_eq!(lost["status"], "UNKNOWN");
    assert_eq!(lost["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(lost["attempts"][0]["status"], "UNKNOWN");

    assert_eq!(
        done["stats"],
        json!({ "sent": 1, "failed": 2, "unknown": 1, "pending": 0, "cancelled": 0, "attempts": 6 })
    );
    let run = &done["runs"]["nodes"][0];
    assert_eq!(
        (run["status"].as_str(), run["total"].as_i64(), run["sent"].as_i64()),
        (Some("DONE"), Some(4), Some(1))
    );

    // Retry on request: a fresh budget, the same Message-ID.
    let message_id = lost["messageId"].clone();
    let retried = app
        .graphql_as(
            &owner.token,
            "mutation($id: ID!) { retryDeliveries(mailingId: $id, statuses: [UNKNOWN, FAILED]) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(retried.json()["data"]["retryDeliveries"], 3, "{}", retried.json());
    let again = wait_mailing(&app, &owner, &id, LOG, Duration::from_secs(10), |m| {
        let settled = |email: &str, attempts: usize| {
            let d = delivery(m, email);
            d["status"] != "PENDING" && d["status"] != "SENDING" && d["attempts"].as_array().unwrap().len() == attempts
        };
        settled("tempfail@example.com", 6) && settled("dropafterdot@example.com", 2) && settled("reject@example.com", 2)
    })
    .await;
    let lost_again = delivery(&again, "dropafterdot@example.com");
    assert_eq!(lost_again["messageId"], message_id);
    assert_eq!(lost_again["attempts"].as_array().unwrap().len(), 2);
    let temp_again = delivery(&again, "tempfail@example.com");
    assert_eq!(
        temp_again["attempts"].as_array().unwrap().len(),
        6,
        "a fresh budget of 3: {temp_again}\n{again}"
    );

    let bad = app
        .graphql_as(
            &owner.token,
            "mutation($id: ID!) { retryDeliveries(mailingId: $id, statuses: [SENT]) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(bad.error_code(), "BAD_USER_INPUT");
    assert_eq!(bad.json()["errors"][0]["extensions"]["field"], "statuses");
}

#[tokio::test]
async fn a_silent_mail_server_times_out_while_the_api_answers_quickly() {
    let smtp = TestSmtpServer::start().await;
    // The mail server stalls for 3 s; the API must answer well within that.
    let app = app_with(
        &smtp,
        &[
            "--send-timeout",
            "3s",
            "--smtp-command-timeout",
            "3s",
            "--lease-ttl",
            "5s",
        ],
    )
    .await;
    let owner = owner(&app).await;
    let ids = clients(&app, &owner, &["silent@example.com"]).await;
    let id = create_mailing(&app, &owner, &now_rfc3339(-1000), "ONCE", &ids).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // the exchange is hanging now
    let started = Instant::now();
    let reply = app
        .graphql_as(&owner.token, "{ me { email } mailings { totalCount } }", json!({}))
        .await;
    assert_eq!(reply.json()["data"]["mailings"]["totalCount"], 1);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the API waited on the mail server: {:?}",
        started.elapsed()
    );
    // Meanwhile the delivery shows SENDING, and only the SENDING filter finds it.
    let reply = app
        .graphql_as(
            &owner.token,
            "query($id: ID!) { mailing(id: $id) { \
                all: deliveries { nodes { status } } \
                sending: deliveries(status: SENDING) { totalCount } \
                pending: deliveries(status: PENDING) { totalCount } } }",
            json!({ "id": id }),
        )
        .await;
    let hanging = &reply.json()["data"]["mailing"];
    assert!(reply.json()["errors"].is_null(), "{}", reply.json());
    assert_eq!(hanging["all"]["nodes"][0]["status"], "SENDING", "{hanging}");
    assert_eq!(
        (&hanging["sending"]["totalCount"], &hanging["pending"]["totalCount"]),
        (&json!(1), &json!(0)),
        "{hanging}"
    );
    let done = wait_mailing(&app, &owner, &id, LOG, Duration::from_secs(5), |m| {
        m["status"] == "COMPLETED"
    })
    .await;
    let silent = delivery(&done, "silent@example.com");
    assert_eq!(silent["status"], "UNKNOWN", "{silent}");
    assert!(
        silent["attempts"][0]["serverResponse"]
            .as_str()
            .unwrap()
            .contains("TIMEOUT"),
        "{silent}"
    );
}

#[tokio::test]
async fn completing_cancels_what_is_pending() {
    let smtp = TestSmtpServer::start().await;
    let app = app_with(&smtp, &["--retry-base", "1h", "--retry-max", "1h"]).await;
    let owner = owner(&app).await;
    let ids = clients(&app, &owner, &["tempfail@example.com"]).await;
    let id = create_mailing(&app, &owner, &now_rfc3339(-1000), "DAILY", &ids).await;
    wait_mailing(&app, &owner, &id, LOG, Duration::from_secs(5), |m| {
        m["stats"]["attempts"] == 1
    })
    .await;
    let completed = app
        .graphql_as(
            &owner.token,
            "mutation($id: ID!) { completeMailing(id: $id) { status nextRunAt } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        completed.json()["data"]["completeMailing"],
        json!({ "status": "COMPLETED", "nextRunAt": null })
    );
    let after = mailing(&app, &owner, &id, LOG).await;
    assert_eq!(delivery(&after, "tempfail@example.com")["status"], "CANCELLED");
    assert_eq!(after["runs"]["nodes"][0]["status"], "CANCELLED");
    let listed = app
        .graphql_as(
            &owner.token,
            "{ mailings(status: COMPLETED) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(listed.json()["data"]["mailings"]["totalCount"], 1);
}

#[tokio::test]
async fn deleting_a_client_cancels_its_pending_deliveries_only() {
    let smtp = TestSmtpServer::start().await;
    let app = app_with(&smtp, &["--retry-base", "1h", "--retry-max", "1h"]).await;
    let owner = owner(&app).await;
    let ids = clients(
        &app,
        &owner,
        &["tempfail-gone@example.com", "tempfail-kept@example.com"],
    )
    .await;
    let id = create_mailing(&app, &owner, &now_rfc3339(-1000), "ONCE", &ids).await;
    // Both wait an hour for their retry: PENDING.
    wait_mailing(&app, &owner, &id, LOG, Duration::from_secs(5), |m| {
        m["stats"]["attempts"] == 2
    })
    .await;
    let deleted = app
        .graphql_as(
            &owner.token,
            "mutation($id: ID!) { deleteClient(id: $id) }",
            json!({ "id": ids[0] }),
        )
        .await;
    assert_eq!(deleted.json()["data"]["deleteClient"], true, "{}", deleted.json());
    let after = mailing(&app, &owner, &id, LOG).await;
    assert_eq!(delivery(&after, "tempfail-gone@example.com")["status"], "CANCELLED");
    assert_eq!(delivery(&after, "tempfail-kept@example.com")["status"], "PENDING");
    assert_eq!(after["runs"]["nodes"][0]["status"], "RUNNING", "{after}");
}

#[tokio::test]
async fn the_unsubscribe_link_stops_further_mail() {
    let smtp = TestSmtpServer::start().await;
    let app = app_with(&smtp, &[]).await;
    let owner = owner(&app).await;
    let ids = clients(&app, &owner, &["ann@example.com", "bob@example.com"]).await;
    create_mailing(&app, &owner, &now_rfc3339(-1000), "ONCE", &ids).await;
    let received = smtp.wait_accepted(2, Duration::from_secs(5)).await;
    let to_ann = received.iter().find(|r| r.rcpt_to == ["ann@example.com"]).unwrap();
    let header = to_ann
        .data
        .lines()
        .find_map(|l| l.strip_prefix("List-Unsubscribe: <"))
        .expect("List-Unsubscribe header");
    let link = header.trim_end_matches('>');
    let path = &link[link.find("/unsubscribe").unwrap()..];

    use axum::body::Body;
    use axum::http::Request;
    let page = app.send(Request::get(path).body(Body::empty()).unwrap()).await;
    assert_eq!(page.status, 200);
    assert!(
        String::from_utf8_lossy(&page.body).contains("<form method=\"post\""),
        "GET only asks"
    );
    let forged = app
        .send(Request::post(path.replace("s=", "s=x")).body(Body::empty()).unwrap())
        .await;
    assert_eq!(forged.status, 400);
    // The one-click POST of RFC 8058, as a mail client sends it.
    let done = app
        .send(
            Request::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from("List-Unsubscribe=One-Click"))
                .unwrap(),
        )
        .await;
    assert_eq!(done.status, 200);
    let listed = app
        .graphql_as(
            &owner.token,
            "{ clients { nodes { email unsubscribedAt } } }",
            json!({}),
        )
        .await;
    let ann = listed.json()["data"]["clients"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["email"] == "ann@example.com")
        .unwrap()
        .clone();
    assert!(ann["unsubscribedAt"].is_string());

    // The next mailing to both reaches only Bob.
    create_mailing(&app, &owner, &now_rfc3339(-1000), "ONCE", &ids).await;
    let received = smtp.wait_accepted(3, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.accepted().len(), 3, "{received:?}");
    assert_eq!(smtp.accepted()[2].rcpt_to, ["bob@example.com"]);
}

#[tokio::test]
async fn a_test_send_answers_with_the_server_reply_and_metrics_count() {
    let smtp = TestSmtpServer::start().await;
    let app = app_with(&smtp, &[]).await;
    let owner = owner(&app).await;
    let query =
        "mutation($m: ID!, $e: String!) { sendTestMessage(messageId: $m, email: $e) { accepted serverResponse } }";
    let ok = app
        .graphql_as(
            &owner.token,
            query,
            json!({ "m": owner.message, "e": "me@example.com" }),
        )
        .await;
    let result = &ok.json()["data"]["sendTestMessage"];
    assert_eq!(result["accepted"], true);
    assert!(result["serverResponse"].as_str().unwrap().starts_with("250"));
    assert!(
        smtp.accepted()[0]
            .data
            .contains("Hello Test Recipient <me@example.com>")
    );
    let refused = app
        .graphql_as(
            &owner.token,
            query,
            json!({ "m": owner.message, "e": "reject@example.com" }),
        )
        .await;
    assert_eq!(refused.json()["data"]["sendTestMessage"]["accepted"], false);
    let invalid = app
        .graphql_as(&owner.token, query, json!({ "m": owner.message, "e": "nope" }))
        .await;
    assert_eq!(invalid.json()["errors"][0]["extensions"]["field"], "email");

    let ids = clients(&app, &owner, &["ann@example.com"]).await;
    let id = create_mailing(&app, &owner, &now_rfc3339(-1000), "ONCE", &ids).await;
    wait_mailing(&app, &owner, &id, "status", Duration::from_secs(5), |m| {
        m["status"] == "COMPLETED"
    })
    .await;
    use axum::body::Body;
    use axum::http::Request;
    let metrics = app.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(text.contains("mailwarm_deliveries_total{outcome=\"sent\"} 1"), "{text}");
    assert!(text.contains("mailwarm_attempts_total{status=\"success\"} 1"), "{text}");
    assert!(text.contains("mailwarm_queue_depth 0"), "{text}");
    assert!(text.contains("mailwarm_send_seconds_bucket"), "{text}");
    assert!(text.contains("mailwarm_http_requests_total{status=\"200\"}"), "{text}");
}

#[tokio::test]
async fn mailing_progress_streams_over_the_websocket() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Frame;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let smtp = TestSmtpServer::start().await;
    let app = app_with(&smtp, &[]).await;
    let owner = owner(&app).await;
    let ids = clients(&app, &owner, &["ann@example.com", "bob@example.com", "cid@example.com"]).await;
    let id = create_mailing(&app, &owner, &now_rfc3339(1500), "ONCE", &ids).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let mut request = format!("ws://{addr}/graphql/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let send = |v: Value| Frame::text(v.to_string());
    ws.send(send(
        json!({ "type": "connection_init", "payload": { "token": owner.token } }),
    ))
    .await
    .unwrap();
    let query = "subscription($id: ID!) { mailingProgress(mailingId: $id) { mailingId total sent pending } }";
    ws.send(send(
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": { "id": id } } }),
    ))
    .await
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let Ok(Some(Ok(Frame::Text(text)))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await else {
            continue;
        };
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["type"] == "next" {
            last = message["payload"]["data"]["mailingProgress"].clone();
            if last["sent"] == 3 {
                break;
            }
        }
    }
    assert_eq!(last, json!({ "mailingId": id, "total": 3, "sent": 3, "pending": 0 }));

    // Someone else's mailing cannot be watched.
    let other = app
        .verified_user("other@example.com", mailwarm::accounts::role::Role::User)
        .await;
    let mut request = format!("ws://{addr}/graphql/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(send(
        json!({ "type": "connection_init", "payload": { "token": other } }),
    ))
    .await
    .unwrap();
    ws.send(send(
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": { "id": id } } }),
    ))
    .await
    .unwrap();
    loop {
        let Some(Ok(Frame::Text(text))) = ws.next().await else {
            panic!("socket closed")
        };
        let message: Value = serde_json::from_str(&text).unwrap();
        // async-graphql reports a resolver's error as a `next` carrying `errors`.
        if message["type"] == "next" {
            assert_eq!(message["payload"]["data"], Value::Null, "{message}");
            assert_eq!(
                message["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
                "{message}"
            );
            break;
        }
        assert_ne!(message["type"], "error", "{message}");
    }
}

#[tokio::test]
async fn the_breaker_holds_sending_back_while_the_mail_server_is_unreachable() {
    let smtp = TestSmtpServer::start().await; // only for the fast settings; the URL below is dead
    let dead = format!("smtp://127.0.0.1:{}", crate::common::free_port());
    let settings = [
        "--smtp-url",
        &dead,
        "--breaker-failures",
        "2",
        "--breaker-cooldown",
        "2s",
        "--max-attempts",
        "50",
    ];
    let app = app_with(&smtp, &settings).await;
    let owner = owner(&app).await;
    let ids = clients(&app, &owner, &["a@example.com", "b@example.com", "c@example.com"]).await;
    let id = create_mailing(&app, &owner, &now_rfc3339(-1000), "ONCE", &ids).await;

    // The first group fails to connect (3 attempts) and the breaker opens: although retries
    // fall due every 50-200 ms, nothing is tried for the rest of the 2 s cooldown...
    let attempted = |m: &Value| m["stats"]["attempts"] == 3;
    wait_mailing(
        &app,
        &owner,
        &id,
        "stats { attempts }",
        Duration::from_secs(5),
        attempted,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let held = mailing(&app, &owner, &id, "stats { attempts pending }").await;
    assert_eq!(held["stats"], json!({ "attempts": 3, "pending": 3 }), "{held}");
    // ...then one probe at a time, each failure reopening it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = mailing(&app, &owner, &id, "stats { attempts }").await;
    let attempts = later["stats"]["attempts"].as_i64().unwrap();
    assert!(
        (4..=5).contains(&attempts),
        "one probe per cooldown, got {attempts} attempts"
    );

    use axum::body::Body;
    use axum::http::Request;
    let metrics = app.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(
        String::from_utf8(metrics.body)
            .unwrap()
            .contains("mailwarm_breaker_open 1")
    );
}

/// The database drops the dispatcher's connections again and again mid-run (every backend
/// of the test database is terminated, as a restart or a network cut would): recording a
/// group is tried again on a fresh connection, so nothing is lost, nothing is sent twice,
/// and no delivery ends UNKNOWN.
#[tokio::test]
async fn dropped_database_connections_lose_and_repeat_nothing() {
    use diesel_async::RunQueryDsl;

    // 150 messages, 4 at a time, each answered after 40 ms: at least 1.5 s of sending.
    // Recording is retried for as long as a lease lasts; on a loaded machine a retry can
    // lose the race with the next kill many times in a row, so the lease here is as long as
    // the killing may go on (500 kills), not the fast settings' 5 s.
    let smtp = TestSmtpServer::start_with_delay(Duration::from_millis(40)).await;
    let app = app_with(&smtp, &["--smtp-concurrency", "4", "--lease-ttl", "40s"]).await;
    let owner = owner(&app).await;
    let emails: Vec<String> = (0..150).map(|i| format!("c{i}@example.com")).collect();
    let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
    let ids = clients(&app, &owner, &emails).await;
    let id = create_mailing(&app, &owner, &now_rfc3339(-1000), "ONCE", &ids).await;

    smtp.wait_accepted(1, Duration::from_secs(10)).await;
    let mut killer = app.db.conn().await;
    // Every 30 ms while the run sends.
    let mut kills_mid_run = 0;
    while smtp.accepted().len() < emails.len() && kills_mid_run < 500 {
        diesel::sql_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&mut killer)
        .await
        .unwrap();
        kills_mid_run += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(kills_mid_run >= 10, "the run ended before the faults: {kills_mid_run}");

    let done = wait_mailing(
        &app,
        &owner,
        &id,
        "status stats { sent unknown failed pending }",
        Duration::from_secs(60),
        |m| m["status"] == "COMPLETED",
    )
    .await;
    assert_eq!(done["stats"]["sent"], 150, "{done}");
    assert_eq!(done["stats"]["unknown"], 0, "{done}");
    let received = smtp.accepted();
    let mut recipients: Vec<String> = received.iter().flat_map(|r| r.rcpt_to.clone()).collect();
    recipients.sort();
    let before = recipients.len();
    recipients.dedup();
    assert_eq!(before, recipients.len(), "someone got two messages");
    assert_eq!(recipients.len(), 150, "someone got none");
}

/// A ONCE mailing of `message` to every client of the owner, due now.
async fn mailing_to_all_now(app: &TestApp, token: &str, message: &str) -> String {
    let reply = app
        .graphql_as(
            token,
            "mutation($i: MailingInput!) { createMailing(input: $i) { id } }",
            json!({ "i": { "startsAt": now_rfc3339(-1000), "periodicity": "ONCE", "messageId": message,
                           "audience": { "allClients": true } } }),
        )
        .await;
    reply.json()["data"]["createMailing"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", reply.json()))
        .to_owned()
}

/// A run of 8,000 is written in chunks of 2,000 (`runs::EXPANSION_CHUNK`): its first
/// messages go out before its last chunk is written, it is not closed between chunks, and
/// every client gets exactly one message.
#[tokio::test]
async fn a_large_run_sends_before_it_is_fully_written() {
    use diesel::sql_types::{BigInt, Bool};
    use diesel_async::RunQueryDsl;
    let smtp = TestSmtpServer::start().await;
    let app = app_with(&smtp, &["--dispatch-batch", "500"]).await;
    let (token, message, _) = crate::dispatch_processes::audience(&app, 8_000).await;
    let id = mailing_to_all_now(&app, &token, &message).await;
    let owner = Owner { token, message };
    let done = wait_mailing(
        &app,
        &owner,
        &id,
        "status stats { sent pending }",
        Duration::from_secs(120),
        |m| m["status"] == "COMPLETED",
    )
    .await;
    assert_eq!(done["stats"]["sent"], 8_000, "{done}");
    let received = crate::dispatch_processes::received_per_address(&smtp);
    assert_eq!(received.len(), 8_000);
    assert!(received.values().all(|n| *n == 1), "nobody got two");

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        chunks: i64,
        #[diesel(sql_type = Bool)]
        sent_before_last_chunk: bool,
        #[diesel(sql_type = BigInt)]
        runs: i64,
    }
    let mut conn = app.db.conn().await;
    let row: Row = diesel::sql_query(
        "SELECT (SELECT count(DISTINCT created_at) FROM deliveries) AS chunks, \
             (SELECT min(attempted_at) FROM attempts) < (SELECT max(created_at) FROM deliveries) AS sent_before_last_chunk, \
             (SELECT count(*) FROM runs WHERE expanded_through IS NULL AND status = 'done') AS runs",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert!(row.chunks >= 4, "written in {} transactions", row.chunks);
    assert!(
        row.sent_before_last_chunk,
        "nothing went out before the last chunk was written"
    );
    assert_eq!(row.runs, 1);
}

/// LOG_RETENTION's job deletes the deliveries and attempts of runs finished longer ago than
/// that, and nothing of a recent run; the runs themselves stay.
#[tokio::test]
async fn the_retention_job_drops_only_the_log_of_old_runs() {
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    use mailwarm::jobs::BackgroundJob;
    let smtp = TestSmtpServer::start().await;
    let app = app_with(&smtp, &[]).await;
    let owner = owner(&app).await;
    let ids = clients(&app, &owner, &["a@example.com", "b@example.com"]).await;
    let mut mailings = Vec::new();
    for _ in 0..2 {
        let id = create_mailing(&app, &owner, &now_rfc3339(-1000), "ONCE", &ids).await;
        wait_mailing(&app, &owner, &id, "status", Duration::from_secs(30), |m| {
            m["status"] == "COMPLETED"
        })
        .await;
        mailings.push(id);
    }
    let mut conn = app.db.conn().await;
    diesel::sql_query("UPDATE runs SET finished_at = now() - interval '3 days' WHERE mailing_id = $1::uuid")
        .bind::<diesel::sql_types::Text, _>(&mailings[0])
        .execute(&mut conn)
        .await
        .unwrap();
    let ctx = mailwarm::deliveries::retention::Retention {
        pool: app.state.pool().clone(),
        keep: Duration::from_secs(2 * 86_400),
    };
    mailwarm::deliveries::retention::DropOldLog.run(&ctx).await.unwrap();

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    for (table, mailing, expected) in [
        ("deliveries", &mailings[0], 0),
        ("attempts", &mailings[0], 0),
        ("runs", &mailings[0], 1),
        ("deliveries", &mailings[1], 2),
        ("attempts", &mailings[1], 2),
    ] {
        let count: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM {table} WHERE mailing_id = $1::uuid"))
            .bind::<diesel::sql_types::Text, _>(mailing)
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(count.n, expected, "{table} of mailing {mailing}");
    }
    let history = mailing(&app, &owner, &mailings[0], "status runs { totalCount }").await;
    assert_eq!(history["runs"]["totalCount"], 1, "{history}");
}

/// Completing a mailing while its run of 8,000 is still being written cancels what is
/// pending and stops the writing: nothing is left PENDING, the run is not written further,
/// and nothing more is sent once the sends under way finish.
#[tokio::test]
async fn completing_a_run_still_being_written_stops_it() {
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    let smtp = TestSmtpServer::start_with_delay(Duration::from_millis(5)).await;
    let app = app_with(&smtp, &["--dispatch-batch", "500"]).await;
    let (token, message, _) = crate::dispatch_processes::audience(&app, 8_000).await;
    let id = mailing_to_all_now(&app, &token, &message).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while smtp.accepted().is_empty() {
        assert!(Instant::now() < deadline, "nothing was sent");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reply = app
        .graphql_as(
            &token,
            "mutation($id: ID!) { completeMailing(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        reply.json()["data"]["completeMailing"]["status"],
        "COMPLETED",
        "{}",
        reply.json()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent_after_a_while = smtp.accepted().len();

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        pending: i64,
        #[diesel(sql_type = BigInt)]
        written: i64,
        #[diesel(sql_type = BigInt)]
        expanding: i64,
    }
    let mut conn = app.db.conn().await;
    let row: Row = diesel::sql_query(
        "SELECT (SELECT count(*) FROM deliveries WHERE status = 'pending') AS pending, \
             (SELECT count(*) FROM deliveries) AS written, \
             (SELECT count(*) FROM runs WHERE status = 'running') AS expanding",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(row.pending, 0);
    assert_eq!(row.expanding, 0);
    assert!(row.written < 8_000, "the whole run was written: {}", row.written);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        smtp.accepted().len(),
        sent_after_a_while,
        "sending went on after completion"
    );
}

/// Completing a mailing while a dispatcher is between two marks of its deliveries (one
/// group marked in an open transaction, the next still to come) waits for the dispatcher
/// instead of deadlocking with it: the cancel would otherwise hold the pending deliveries
/// it reached first while waiting for the one being marked, and the next mark would wait
/// for those (PostgreSQL then aborts one of the two, and a user's completeMailing failed).
#[tokio::test]
async fn completing_a_mailing_while_its_sends_are_being_marked_waits_instead_of_deadlocking() {
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    use mailwarm::dispatch::{queue, runs};
    let app = TestApp::new().await;
    let owner = owner(&app).await;
    let emails: Vec<String> = (0..6).map(|i| format!("c{i}@example.com")).collect();
    clients(&app, &owner, &emails.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mailing = mailing_to_all_now(&app, &owner.token, &owner.message).await;
    let mut dispatcher = app.db.conn().await;
    runs::start_due(&mut dispatcher, "from@example.com", None, 50)
        .await
        .unwrap();
    let me = uuid::Uuid::new_v4();
    let held = queue::claim(&mut dispatcher, me, Duration::from_secs(60), 500)
        .await
        .unwrap();
    assert_eq!(held.deliveries.len(), 6);
    let ids: Vec<_> = held.deliveries.iter().map(|d| d.id).collect();
    let mailings = [held.deliveries[0].mailing_id];
    // The one the cancel reaches last (its scan is in the order the rows were written).
    let (rest, last) = ids.split_at(5);

    diesel::sql_query("BEGIN").execute(&mut dispatcher).await.unwrap();
    let first = queue::advance(&mut dispatcher, me, &[], last, &held.slice_ids(), &mailings)
        .await
        .unwrap();
    assert_eq!(first.started, last);
    let complete = app.graphql_as(
        &owner.token,
        "mutation($id: ID!) { completeMailing(id: $id) { status } }",
        json!({ "id": mailing }),
    );
    let marks = async {
        // Once the completion waits on a lock, the dispatcher marks the next group.
        #[derive(diesel::QueryableByName)]
        struct Waiting {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut watcher = app.db.conn().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let waiting: Waiting = diesel::sql_query(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .get_result(&mut watcher)
            .await
            .unwrap();
            if waiting.n > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the completion never waited on the dispatcher"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let second = queue::advance(&mut dispatcher, me, &[], rest, &held.slice_ids(), &mailings).await;
        diesel::sql_query("COMMIT").execute(&mut dispatcher).await.unwrap();
        second
    };
    let (reply, second) = tokio::join!(complete, marks);
    let second = second.expect("the dispatcher's next mark failed");
    assert_eq!(second.started.len(), 5, "the mark went first, so its group is sent");
    assert_eq!(
        reply.json()["data"]["completeMailing"]["status"],
        "COMPLETED",
        "{}",
        reply.json()
    );
}

/// A claimed delivery's outcome: sent, "250 ok".
fn sent(d: &mailwarm::dispatch::queue::Claimed) -> mailwarm::dispatch::queue::Outcome {
    use mailwarm::deliveries::model::{AttemptStatus, DeliveryStatus};
    mailwarm::dispatch::queue::Outcome {
        id: d.id,
        run_id: d.run_id,
        mailing_id: d.mailing_id,
        attempt: d.attempt_count,
        delivery_status: DeliveryStatus::Sent,
        retry_in: Duration::ZERO,
        attempt_status: AttemptStatus::Success,
        response: Some("250 ok".into()),
        bounce: None,
        smtp_server: None,
    }
}

/// Closing finished runs skips a run another transaction holds (a cancel or a retry of its
/// mailing) instead of waiting for it, and closes it once that is over: a dispatcher's
/// close that waited could hold some runs while that transaction waited for one of them.
#[tokio::test]
async fn closing_finished_runs_skips_a_run_held_elsewhere_and_closes_it_later() {
    use diesel_async::RunQueryDsl;
    use mailwarm::dispatch::{queue, runs};
    let app = TestApp::new().await;
    let owner = owner(&app).await;
    clients(&app, &owner, &["a@example.com"]).await;
    mailing_to_all_now(&app, &owner.token, &owner.message).await;
    let mut conn = app.db.conn().await;
    runs::start_due(&mut conn, "from@example.com", None, 50).await.unwrap();
    let me = uuid::Uuid::new_v4();
    let held = queue::claim(&mut conn, me, Duration::from_secs(60), 500).await.unwrap();
    let d = &held.deliveries[0];
    queue::advance(&mut conn, me, &[], &[d.id], &held.slice_ids(), &[d.mailing_id])
        .await
        .unwrap();
    queue::advance(&mut conn, me, &[sent(d)], &[], &held.slice_ids(), &[])
        .await
        .unwrap();

    let mut other = app.db.conn().await;
    diesel::sql_query("BEGIN").execute(&mut other).await.unwrap();
    diesel::sql_query("SELECT 1 FROM runs FOR UPDATE")
        .execute(&mut other)
        .await
        .unwrap();
    let skipped = tokio::time::timeout(Duration::from_secs(5), runs::close_finished(&mut conn))
        .await
        .expect("closing waited for a run held elsewhere")
        .unwrap();
    assert!(skipped.is_empty(), "a held run was closed: {skipped:?}");
    diesel::sql_query("COMMIT").execute(&mut other).await.unwrap();
    let closed = runs::close_finished(&mut conn).await.unwrap();
    assert_eq!(closed, vec![d.mailing_id], "closed once free");
}

/// A run's deliveries are claimed a slice at a time. When an instance's slice lease runs
/// out while a send is under way (the instance hung), the rescuer logs that send UNKNOWN
/// and frees the slice; another instance takes the rest of it, and the first can neither
/// record its late outcome, nor start, nor defer what is now the other's.
#[tokio::test]
async fn a_slice_taken_over_after_its_lease_ran_out_fences_out_its_old_holder() {
    use diesel::sql_types::{BigInt, Text};
    use diesel_async::RunQueryDsl;
    use mailwarm::dispatch::{queue, runs};
    let app = TestApp::new().await;
    let owner = owner(&app).await;
    clients(&app, &owner, &["a@example.com", "b@example.com", "c@example.com"]).await;
    mailing_to_all_now(&app, &owner.token, &owner.message).await;
    let mut conn = app.db.conn().await;
    let started = runs::start_due(&mut conn, "from@example.com", None, 50).await.unwrap();
    assert_eq!(started.len(), 1);
    let lease = Duration::from_secs(60);
    let (first, second) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());

    let held = queue::claim(&mut conn, first, lease, 500).await.unwrap();
    assert_eq!(held.deliveries.len(), 3, "{held:?}");
    assert_eq!(held.slices.len(), 1, "one slice for a run of three");
    assert!(held.slices[0].whole);
    assert!(held.deliveries.iter().all(|d| d.slice_id == Some(held.slices[0].id)));
    let slices = held.slice_ids();
    let ids: Vec<_> = held.deliveries.iter().map(|d| d.id).collect();
    let mailing = [held.deliveries[0].mailing_id];
    let marked = queue::advance(&mut conn, first, &[], &ids[..1], &slices, &mailing)
        .await
        .unwrap();
    assert_eq!(marked.started, ids[..1], "the holder marks its first send");
    // A second claim finds nothing: the slice is leased.
    assert!(queue::claim(&mut conn, second, lease, 500).await.unwrap().is_empty());

    diesel::sql_query("UPDATE run_slices SET lease_expires_at = now() - interval '1 second'")
        .execute(&mut conn)
        .await
        .unwrap();
    let touched = queue::rescue_expired(&mut conn).await.unwrap();
    assert_eq!(touched.len(), 1, "the run with a lost send");
    let taken = queue::claim(&mut conn, second, lease, 500).await.unwrap();
    let taken_ids: Vec<_> = taken.deliveries.iter().map(|d| d.id).collect();
    assert_eq!(taken_ids, ids[1..], "the rest of the slice, not the send under way");
    assert_eq!(taken.deliveries[0].attempt_count, 1);

    // The first holder comes back: its outcome, its next mark and a deferral are refused.
    let late = sent(&held.deliveries[0]);
    let stale = queue::advance(
        &mut conn,
        first,
        std::slice::from_ref(&late),
        &ids[1..2],
        &slices,
        &mailing,
    )
    .await
    .unwrap();
    assert!(
        stale.started.is_empty(),
        "a lost lease still started {:?}",
        stale.started
    );
    let deferred = queue::defer(&mut conn, first, &[(ids[2], Duration::from_secs(60))])
        .await
        .unwrap();
    assert_eq!(deferred, 0, "a lost lease deferred another's delivery");
    let now_theirs = queue::advance(&mut conn, second, &[], &ids[1..], &taken.slice_ids(), &mailing)
        .await
        .unwrap();
    assert_eq!(now_theirs.started.len(), 2);

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        status: String,
        #[diesel(sql_type = BigInt)]
        attempts: i64,
    }
    let first_delivery: Row = diesel::sql_query(
        "SELECT d.status, (SELECT count(*) FROM attempts a WHERE a.delivery_id = d.id) AS attempts \
         FROM deliveries d WHERE d.id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(ids[0])
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (first_delivery.status.as_str(), first_delivery.attempts),
        ("unknown", 1),
        "the send under way at the takeover is UNKNOWN, logged once"
    );
    // Once the new holder has recorded both, the slice is done and the run closes.
    let outcomes: Vec<queue::Outcome> = taken
        .deliveries
        .iter()
        .map(|d| queue::Outcome {
            id: d.id,
            run_id: d.run_id,
            mailing_id: d.mailing_id,
            attempt: d.attempt_count,
            ..late.clone()
        })
        .collect();
    queue::advance(&mut conn, second, &outcomes, &[], &taken.slice_ids(), &[])
        .await
        .unwrap();
    queue::finish_slices(&mut conn, second, &taken.slice_ids(), &[])
        .await
        .unwrap();
    runs::close_finished(&mut conn).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Left {
        #[diesel(sql_type = BigInt)]
        slices: i64,
        #[diesel(sql_type = BigInt)]
        sent: i64,
        #[diesel(sql_type = BigInt)]
        running: i64,
    }
    let left: Left = diesel::sql_query(
        "SELECT (SELECT count(*) FROM run_slices) AS slices, \
             (SELECT count(*) FROM deliveries WHERE status = 'sent') AS sent, \
             (SELECT count(*) FROM runs WHERE status = 'running') AS running",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!((left.slices, left.sent, left.running), (0, 2, 0));
}
