//! The dispatcher in-process against a real SMTP server on loopback: runs start on time,
//! every try is logged, the mail server's failures are classified and retried.

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
use common::smtp::TestSmtpServer;
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

async fn app_with(smtp: &TestSmtpServer, more: &[&str]) -> TestApp {
    let mut args = fast(smtp);
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
        .verified_user("owner@example.com", mailwarm::accounts::graphql::Role::User)
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
