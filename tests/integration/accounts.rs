//! Sign-up, verification, sign-in and sessions, through the HTTP layer with a real
//! PostgreSQL and the in-memory mail transport.

use crate::common::TestApp;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use diesel_async::RunQueryDsl;
use serde_json::json;

const REGISTER: &str =
    "mutation($e: String!, $p: String!, $n: String!) { register(email: $e, password: $p, fullName: $n) }";
const LOGIN: &str =
    "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token user { email role emailVerified } } }";
const ME: &str = "{ me { email fullName role isActive emailVerified } }";

#[tokio::test]
async fn register_verify_login_me_logout() {
    let app = TestApp::new().await;
    let reply = app
        .graphql(
            REGISTER,
            json!({ "e": "Ann@Example.com", "p": "long enough secret", "n": "Ann Lee" }),
        )
        .await;
    assert_eq!(reply.json(), json!({ "data": { "register": true } }));

    // Not verified yet: the right password gets EMAIL_NOT_VERIFIED.
    let early = app
        .graphql(LOGIN, json!({ "e": "ann@example.com", "p": "long enough secret" }))
        .await;
    assert_eq!(early.error_code(), "EMAIL_NOT_VERIFIED");

    let mail = app
        .outbox
        .wait_for("Ann@Example.com", std::time::Duration::from_secs(10))
        .await
        .expect("verification mail");
    assert!(mail.subject.contains("Confirm"), "{}", mail.subject);
    let link_prefix = format!("{}verify-email?token=", app.state.config().http.public_url());
    assert!(
        mail.raw.contains(&link_prefix),
        "link not built from PUBLIC_URL:\n{}",
        mail.raw
    );

    // The link from the mail opens the web front end, which redeems the token.
    let token = app.mailed_token("Ann@Example.com").await;
    let page = app
        .send(
            Request::get(format!("/verify-email?token={token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page.body).contains("/app/main.js"));
    let verified = app
        .graphql(
            "mutation($t: String!) { verifyEmail(token: $t) }",
            json!({ "t": token }),
        )
        .await;
    assert_eq!(verified.json()["data"]["verifyEmail"], true);
    // Single use.
    let again = app
        .graphql(
            "mutation($t: String!) { verifyEmail(token: $t) }",
            json!({ "t": token }),
        )
        .await;
    assert_eq!(again.error_code(), "BAD_USER_INPUT");

    let login = app
        .graphql(LOGIN, json!({ "e": "ann@example.com", "p": "long enough secret" }))
        .await;
    let payload = &login.json()["data"]["login"];
    assert_eq!(
        payload["user"],
        json!({ "email": "Ann@Example.com", "role": "USER", "emailVerified": true })
    );
    let session = payload["token"].as_str().unwrap().to_owned();

    let me = app.graphql_as(&session, ME, json!({})).await;
    assert_eq!(me.json()["data"]["me"]["fullName"], "Ann Lee");
    assert_eq!(
        app.graphql(ME, json!({})).await.json()["data"]["me"],
        serde_json::Value::Null
    );

    let logout = app.graphql_as(&session, "mutation { logout }", json!({})).await;
    assert_eq!(logout.json()["data"]["logout"], true);
    assert_eq!(
        app.graphql_as(&session, ME, json!({})).await.json()["data"]["me"],
        serde_json::Value::Null
    );
    assert_eq!(
        app.graphql_as(&session, "mutation { logout }", json!({}))
            .await
            .error_code(),
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn wrong_credentials_get_one_generic_answer() {
    let app = TestApp::new().await;
    app.sign_up("bob@example.com").await;
    let wrong_password = app
        .graphql(LOGIN, json!({ "e": "bob@example.com", "p": "not the password" }))
        .await;
    let unknown_user = app
        .graphql(LOGIN, json!({ "e": "nobody@example.com", "p": "not the password" }))
        .await;
    assert_eq!(wrong_password.error_code(), "UNAUTHENTICATED");
    assert_eq!(unknown_user.error_code(), "UNAUTHENTICATED");
    assert_eq!(
        wrong_password.json()["errors"][0]["message"],
        unknown_user.json()["errors"][0]["message"]
    );
}

#[tokio::test]
async fn a_taken_address_answers_the_same_and_mails_its_owner() {
    let app = TestApp::new().await;
    app.sign_up("carol@example.com").await;
    let before = app.outbox.all().len();
    let reply = app
        .graphql(
            REGISTER,
            json!({ "e": "CAROL@example.com", "p": "another secret!", "n": "Mallory" }),
        )
        .await;
    assert_eq!(reply.json(), json!({ "data": { "register": true } }));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.outbox.all().len() == before && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let notice = app.outbox.all().last().cloned().expect("a notice");
    assert!(notice.subject.contains("tried to sign up"), "{}", notice.subject);
    assert!(!notice.text.contains("token="), "no verification link for someone else");
    // The owner's password still works; the intruder's does not.
    app.login("carol@example.com", "long enough secret").await;
    let intruder = app
        .graphql(LOGIN, json!({ "e": "carol@example.com", "p": "another secret!" }))
        .await;
    assert_eq!(intruder.error_code(), "UNAUTHENTICATED");
}

#[tokio::test]
async fn registration_input_is_validated_by_field() {
    let app = TestApp::new().await;
    let cases = [
        (
            json!({ "e": "not an address", "p": "long enough secret", "n": "X" }),
            "email",
        ),
        (json!({ "e": "x@example.com", "p": "short", "n": "X" }), "password"),
        (
            json!({ "e": "x@example.com", "p": "x@example.com", "n": "X" }),
            "password",
        ),
        (
            json!({ "e": "x@example.com", "p": "long enough secret", "n": "  " }),
            "fullName",
        ),
    ];
    for (vars, field) in cases {
        let reply = app.graphql(REGISTER, vars.clone()).await;
        assert_eq!(reply.error_code(), "BAD_USER_INPUT", "{vars}");
        assert_eq!(reply.json()["errors"][0]["extensions"]["field"], field, "{vars}");
    }
    assert!(app.outbox.all().is_empty());
}

#[tokio::test]
async fn expired_and_unknown_tokens_are_refused() {
    let app = TestApp::new().await;
    app.graphql(
        REGISTER,
        json!({ "e": "dan@example.com", "p": "long enough secret", "n": "Dan" }),
    )
    .await;
    let token = app.mailed_token("dan@example.com").await;
    let mut conn = app.db.conn().await;
    diesel::sql_query("UPDATE email_tokens SET expires_at = now() - interval '1 second'")
        .execute(&mut conn)
        .await
        .unwrap();
    let expired = app
        .graphql(
            "mutation($t: String!) { verifyEmail(token: $t) }",
            json!({ "t": token }),
        )
        .await;
    assert_eq!(expired.error_code(), "BAD_USER_INPUT");
    let unknown = app
        .graphql("mutation { verifyEmail(token: \"0000\") }", json!({}))
        .await;
    assert_eq!(unknown.error_code(), "BAD_USER_INPUT");
    assert_eq!(
        expired.json()["errors"][0]["message"],
        unknown.json()["errors"][0]["message"]
    );
}

#[tokio::test]
async fn expired_sessions_and_garbage_tokens_are_anonymous() {
    let app = TestApp::new().await;
    let session = app.sign_up("erin@example.com").await;
    assert!(app.graphql_as(&session, ME, json!({})).await.json()["data"]["me"].is_object());
    let mut conn = app.db.conn().await;
    diesel::sql_query("UPDATE sessions SET expires_at = now() - interval '1 second'")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(app.graphql_as(&session, ME, json!({})).await.json()["data"]["me"].is_null());
    assert!(app.graphql_as("garbage", ME, json!({})).await.json()["data"]["me"].is_null());
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_and_tokens_only_hashed() {
    let app = TestApp::new().await;
    let session = app.sign_up("fay@example.com").await;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        hash: String,
    }
    let mut conn = app.db.conn().await;
    let row: Row = diesel::sql_query("SELECT password_hash AS hash FROM users")
        .get_result(&mut conn)
        .await
        .unwrap();
    let params = row
        .hash
        .strip_prefix("$argon2id$v=19$")
        .expect("an argon2id PHC string");
    let params: std::collections::HashMap<&str, u32> = params
        .split('$')
        .next()
        .unwrap()
        .split(',')
        .map(|kv| kv.split_once('=').map(|(k, v)| (k, v.parse().unwrap())).unwrap())
        .collect();
    assert!(params["m"] >= 19_456 && params["t"] >= 2, "{params:?}");

    let stored: Row = diesel::sql_query("SELECT encode(token_hash, 'hex') AS hash FROM sessions")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_ne!(stored.hash, session, "the session token must not be stored as is");
}
