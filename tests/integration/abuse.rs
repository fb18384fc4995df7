//! Abuse protection: login throttling shared by instances through PostgreSQL, limits on
//! requests that send mail, closed registration, and the daily send quota.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{Reply, TestApp};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use mailwarm::accounts::role::Role;
use serde_json::{Value, json};

const PASSWORD: &str = "long enough secret";

/// A request as if from `ip` (what the listener's peer address gives in production).
async fn graphql_from(app: &TestApp, ip: &str, query: &str, variables: Value) -> Reply {
    let mut request = Request::post("/graphql")
        .header("content-type", "application/json")
        .header("accept", "application/graphql-response+json")
        .body(Body::from(
            json!({ "query": query, "variables": variables }).to_string(),
        ))
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(std::net::SocketAddr::new(ip.parse().unwrap(), 40000)));
    app.send(request).await
}

/// Waits until a fixed window of `window` seconds has just begun (windows start at
/// multiples of their length since the epoch), so a burst of tries falls in one window.
async fn start_of_window(window: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = now.as_millis() as u64 % (window * 1000);
    if into > 200 {
        tokio::time::sleep(Duration::from_millis(window * 1000 - into + 50)).await;
    }
}

#[tokio::test]
async fn failed_logins_throttle_the_account_on_every_instance_until_the_window_ends() {
    let first = TestApp::with_args(&["--login-limit-account", "3/6s"]).await;
    let second = first.another_instance(&["--login-limit-account", "3/6s"]).await;
    first.verified_user("ann@example.com", Role::User).await;
    first.verified_user("bob@example.com", Role::User).await;

    start_of_window(6).await;
    for _ in 0..3 {
        let wrong = first.try_login("ann@example.com", "not the password").await;
        assert_eq!(wrong.error_code(), "UNAUTHENTICATED");
    }
    // The other instance refuses even the right password now, and says how long to wait.
    let limited = second.try_login("ann@example.com", PASSWORD).await;
    assert_eq!(limited.error_code(), "RATE_LIMITED", "{}", limited.json());
    let retry_after = limited.json()["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap();
    assert!((1..=6).contains(&retry_after), "retryAfter {retry_after}");
    // Another account is not affected.
    assert!(second.try_login("bob@example.com", PASSWORD).await.json()["data"]["login"]["token"].is_string());

    // After the window the owner signs in again.
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(200)).await;
    let back = second.try_login("ann@example.com", PASSWORD).await;
    assert!(back.json()["data"]["login"]["token"].is_string(), "{}", back.json());
}

#[tokio::test]
async fn unknown_addresses_are_throttled_alike_and_per_ip_limits_hold_across_addresses() {
    let app = TestApp::with_args(&["--login-limit-account", "2/1h", "--login-limit-ip", "4/1h"]).await;
    // An unknown address is counted like a known one: the limit tells nothing.
    for _ in 0..2 {
        app.try_login("nobody@example.com", "guess").await;
    }
    assert_eq!(
        app.try_login("nobody@example.com", "guess").await.error_code(),
        "RATE_LIMITED"
    );

    // One IP spraying many addresses hits the per-IP limit; another IP does not.
    const LOGIN: &str = "mutation($e: String!) { login(email: $e, password: \"guess\") { token } }";
    for n in 0..4 {
        let reply = graphql_from(&app, "203.0.113.9", LOGIN, json!({ "e": format!("u{n}@example.com") })).await;
        assert_eq!(reply.error_code(), "UNAUTHENTICATED");
    }
    let sprayed = graphql_from(&app, "203.0.113.9", LOGIN, json!({ "e": "u9@example.com" })).await;
    assert_eq!(sprayed.error_code(), "RATE_LIMITED");
    let other_ip = graphql_from(&app, "198.51.100.7", LOGIN, json!({ "e": "u9@example.com" })).await;
    assert_eq!(other_ip.error_code(), "UNAUTHENTICATED");
}

#[tokio::test]
async fn requests_that_send_mail_are_limited_per_address_and_per_ip() {
    let app = TestApp::with_args(&["--mail-limit-address", "2/1h", "--mail-limit-ip", "3/1h"]).await;
    const RESET: &str = "mutation($e: String!) { requestPasswordReset(email: $e) }";
    for _ in 0..2 {
        assert_eq!(
            graphql_from(&app, "203.0.113.1", RESET, json!({ "e": "ann@example.com" }))
                .await
                .json()["data"]["requestPasswordReset"],
            true
        );
    }
    let third = graphql_from(&app, "203.0.113.2", RESET, json!({ "e": "ann@example.com" })).await;
    assert_eq!(third.error_code(), "RATE_LIMITED");

    const REGISTER: &str =
        "mutation($e: String!) { register(email: $e, password: \"long enough secret\", fullName: \"X\") }";
    let mut codes = Vec::new();
    for n in 0..4 {
        let reply = graphql_from(
            &app,
            "203.0.113.3",
            REGISTER,
            json!({ "e": format!("r{n}@example.com") }),
        )
        .await;
        codes.push(
            reply.json()["errors"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or("ok")
                .to_owned(),
        );
    }
    assert_eq!(codes, ["ok", "ok", "ok", "RATE_LIMITED"]);
}

#[tokio::test]
async fn closed_registration_leaves_account_creation_to_admins() {
    let app = TestApp::with_args(&["--registration", "closed"]).await;
    let refused = app
        .graphql(
            "mutation { register(email: \"ann@example.com\", password: \"long enough secret\", fullName: \"Ann\") }",
            json!({}),
        )
        .await;
    assert_eq!(refused.error_code(), "FORBIDDEN");
    let admin = app.verified_user("root@example.com", Role::Admin).await;
    const CREATE: &str = "mutation { createUser(email: \"ann@example.com\", fullName: \"Ann\", password: \"long enough secret\", role: USER) { email role emailVerified } }";
    let user = app.verified_user("user@example.com", Role::User).await;
    assert_eq!(app.graphql_as(&user, CREATE, json!({})).await.error_code(), "FORBIDDEN");
    let created = app.graphql_as(&admin, CREATE, json!({})).await;
    assert_eq!(
        created.json()["data"]["createUser"],
        json!({ "email": "ann@example.com", "role": "USER", "emailVerified": true })
    );
    app.login("ann@example.com", PASSWORD).await;
}

#[tokio::test]
async fn the_daily_send_quota_makes_a_run_wait_for_the_next_day() {
    let app = TestApp::dispatching(&["--daily-send-quota", "3", "--dispatch-interval", "1s"]).await;
    let token = app.verified_user("ann@example.com", Role::User).await;
    let message = app.new_message(&token).await;
    let mut clients = Vec::new();
    for n in 0..4 {
        clients.push(app.new_client(&token, &format!("c{n}@example.com")).await);
    }
    const CREATE: &str = "mutation($m: ID!, $c: [ID!]!, $s: DateTime!) { createMailing(input: { startsAt: $s, periodicity: ONCE, messageId: $m, clientIds: $c }) { id } }";
    let now = chrono::Utc::now().to_rfc3339();
    // Two deliveries: within the quota of three.
    app.graphql_as(&token, CREATE, json!({ "m": message, "c": &clients[0..2], "s": now }))
        .await;
    assert!(
        app.outbox
            .wait_for("c1@example.com", Duration::from_secs(10))
            .await
            .is_some()
    );
    // Two more would make four: the run waits for the next UTC day.
    let second = app
        .graphql_as(&token, CREATE, json!({ "m": message, "c": &clients[2..4], "s": now }))
        .await
        .json()["data"]["createMailing"]["id"]
        .clone();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        app.outbox
            .wait_for("c2@example.com", Duration::from_millis(10))
            .await
            .is_none()
    );
    let mailing = app
        .graphql_as(
            &token,
            "query($id: ID!) { mailing(id: $id) { status nextRunAt } }",
            json!({ "id": second }),
        )
        .await
        .json();
    let next: chrono::DateTime<chrono::Utc> = mailing["data"]["mailing"]["nextRunAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let tomorrow = (chrono::Utc::now() + chrono::TimeDelta::days(1))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(next, tomorrow, "{mailing}");
    assert_eq!(mailing["data"]["mailing"]["status"], "CREATED");
}
