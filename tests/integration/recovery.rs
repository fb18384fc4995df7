//! Account care: password reset, resending verification, changing the password and
//! deleting the account, through the HTTP layer with a real PostgreSQL.

use crate::common::TestApp;
use diesel_async::RunQueryDsl;
use mailwarm::accounts::role::Role;
use serde_json::json;

const PASSWORD: &str = "long enough secret";
const REQUEST_RESET: &str = "mutation($e: String!) { requestPasswordReset(email: $e) }";
const RESET: &str = "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }";
const ME: &str = "{ me { email } }";

#[tokio::test]
async fn reset_answers_alike_works_once_and_ends_every_session() {
    let app = TestApp::new().await;
    let first_session = app.verified_user("ann@example.com", Role::User).await;
    let second_session = app.login("ann@example.com", PASSWORD).await;

    // Known and unknown addresses get byte-identical answers.
    let known = app.graphql(REQUEST_RESET, json!({ "e": "ann@example.com" })).await;
    let unknown = app.graphql(REQUEST_RESET, json!({ "e": "nobody@example.com" })).await;
    assert_eq!(known.status, unknown.status);
    assert_eq!(known.body, unknown.body);
    assert_eq!(known.json(), json!({ "data": { "requestPasswordReset": true } }));

    let token = app.mailed_token("ann@example.com").await;
    let mail = app
        .outbox
        .wait_for("ann@example.com", std::time::Duration::from_secs(1))
        .await
        .unwrap();
    assert!(mail.text.contains("/reset-password?token="), "{}", mail.text);
    assert!(
        app.outbox
            .wait_for("nobody@example.com", std::time::Duration::from_millis(300))
            .await
            .is_none()
    );

    // The new password follows the registration rules.
    let weak = app.graphql(RESET, json!({ "t": token, "p": "short" })).await;
    assert_eq!(weak.error_code(), "BAD_USER_INPUT");
    assert_eq!(weak.json()["errors"][0]["extensions"]["field"], "newPassword");

    let reset = app
        .graphql(RESET, json!({ "t": token, "p": "a brand new secret" }))
        .await;
    assert_eq!(reset.json(), json!({ "data": { "resetPassword": true } }));
    // Nobody is signed in by it: no token in the answer, no cookie.
    assert!(reset.headers.get("set-cookie").is_none());

    // Every session ended; the old password is gone, the new one works.
    for session in [&first_session, &second_session] {
        assert_eq!(
            app.graphql_as(session, ME, json!({})).await.json()["data"]["me"],
            json!(null)
        );
    }
    let old = app.try_login("ann@example.com", "long enough secret").await;
    assert_eq!(old.error_code(), "UNAUTHENTICATED");
    app.login("ann@example.com", "a brand new secret").await;

    // Single use.
    let again = app
        .graphql(RESET, json!({ "t": token, "p": "yet another secret" }))
        .await;
    assert_eq!(again.error_code(), "BAD_USER_INPUT");
    assert_eq!(again.json()["errors"][0]["extensions"]["field"], "token");

    // The owner is told.
    let notice = app
        .outbox
        .all()
        .into_iter()
        .filter(|m| m.to.iter().any(|t| t == "ann@example.com"))
        .any(|m| m.subject.contains("password was changed"));
    assert!(notice, "no notice mail");
}

#[tokio::test]
async fn expired_foreign_and_wrong_purpose_tokens_are_refused_alike() {
    let app = TestApp::new().await;
    app.verified_user("ann@example.com", Role::User).await;
    app.verified_user("bob@example.com", Role::User).await;

    app.graphql(REQUEST_RESET, json!({ "e": "ann@example.com" })).await;
    let ann_token = app.mailed_token("ann@example.com").await;

    // Expired: its expiry set back.
    let mut conn = app.db.conn().await;
    diesel::sql_query(
        "UPDATE email_tokens SET expires_at = now() - interval '1 second' WHERE purpose = 'reset_password'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let expired = app
        .graphql(RESET, json!({ "t": ann_token, "p": "a brand new secret" }))
        .await;
    assert_eq!(expired.error_code(), "BAD_USER_INPUT");
    let generic = expired.json()["errors"][0]["message"].clone();

    // A token for another purpose (a verification link) does not reset anything.
    app.graphql(
        "mutation { register(email: \"cy@example.com\", password: \"long enough secret\", fullName: \"Cy\") }",
        json!({}),
    )
    .await;
    let verify_token = app.mailed_token("cy@example.com").await;
    let wrong_purpose = app
        .graphql(RESET, json!({ "t": verify_token, "p": "a brand new secret" }))
        .await;
    assert_eq!(wrong_purpose.error_code(), "BAD_USER_INPUT");
    assert_eq!(wrong_purpose.json()["errors"][0]["message"], generic);

    // Bob's token changes Bob's password, never Ann's.
    app.graphql(REQUEST_RESET, json!({ "e": "bob@example.com" })).await;
    let bob_token = app.mailed_token("bob@example.com").await;
    let reset = app
        .graphql(RESET, json!({ "t": bob_token, "p": "bobs new secret!" }))
        .await;
    assert_eq!(reset.json()["data"]["resetPassword"], true);
    app.login("bob@example.com", "bobs new secret!").await;
    app.login("ann@example.com", PASSWORD).await;

    let unknown = app
        .graphql(
            RESET,
            json!({ "t": "AAAAAAAAAAAAAAAAAAAAAA", "p": "a brand new secret" }),
        )
        .await;
    assert_eq!(unknown.json()["errors"][0]["message"], generic);
}

#[tokio::test]
async fn at_most_three_reset_links_are_outstanding() {
    let app = TestApp::with_args(&["--mail-limit-address", "10/1h"]).await;
    app.verified_user("ann@example.com", Role::User).await;
    for _ in 0..5 {
        let reply = app.graphql(REQUEST_RESET, json!({ "e": "ann@example.com" })).await;
        assert_eq!(reply.json()["data"]["requestPasswordReset"], true);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut conn = app.db.conn().await;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let n: N = diesel::sql_query("SELECT count(*) AS n FROM email_tokens WHERE purpose = 'reset_password'")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(n.n, 3);
}

#[tokio::test]
async fn resend_verification_mails_a_fresh_link_only_to_unverified_accounts() {
    let app = TestApp::new().await;
    app.graphql(
        "mutation { register(email: \"cy@example.com\", password: \"long enough secret\", fullName: \"Cy\") }",
        json!({}),
    )
    .await;
    app.mailed_token("cy@example.com").await;
    app.verified_user("ann@example.com", Role::User).await;
    let before = app.outbox.all().len();
    for email in ["cy@example.com", "ann@example.com", "nobody@example.com"] {
        let reply = app
            .graphql(
                "mutation($e: String!) { resendVerification(email: $e) }",
                json!({ "e": email }),
            )
            .await;
        assert_eq!(reply.json(), json!({ "data": { "resendVerification": true } }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let new: Vec<_> = app.outbox.all().into_iter().skip(before).collect();
    assert_eq!(new.len(), 1, "only the unverified account gets a link");
    assert!(new[0].to.iter().any(|t| t == "cy@example.com"));
    // The new link verifies.
    let token = app.mailed_token("cy@example.com").await;
    let verified = app
        .graphql(
            "mutation($t: String!) { verifyEmail(token: $t) }",
            json!({ "t": token }),
        )
        .await;
    assert_eq!(verified.json()["data"]["verifyEmail"], true);
}

#[tokio::test]
async fn change_password_needs_the_current_one_and_ends_the_other_sessions() {
    let app = TestApp::new().await;
    let here = app.verified_user("ann@example.com", Role::User).await;
    let elsewhere = app.login("ann@example.com", PASSWORD).await;
    const CHANGE: &str = "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }";

    let wrong = app
        .graphql_as(
            &here,
            CHANGE,
            json!({ "c": "not my password", "n": "a brand new secret" }),
        )
        .await;
    assert_eq!(wrong.error_code(), "BAD_USER_INPUT");
    assert_eq!(wrong.json()["errors"][0]["extensions"]["field"], "currentPassword");
    let anonymous = app
        .graphql(CHANGE, json!({ "c": PASSWORD, "n": "a brand new secret" }))
        .await;
    assert_eq!(anonymous.error_code(), "UNAUTHENTICATED");

    let changed = app
        .graphql_as(&here, CHANGE, json!({ "c": PASSWORD, "n": "a brand new secret" }))
        .await;
    assert_eq!(changed.json(), json!({ "data": { "changePassword": true } }));
    assert_eq!(
        app.graphql_as(&here, ME, json!({})).await.json()["data"]["me"]["email"],
        "ann@example.com"
    );
    assert_eq!(
        app.graphql_as(&elsewhere, ME, json!({})).await.json()["data"]["me"],
        json!(null)
    );
    app.login("ann@example.com", "a brand new secret").await;
}

#[tokio::test]
async fn delete_account_stops_mailings_removes_personal_data_and_keeps_counts() {
    let app = TestApp::new().await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    let client = app
        .graphql_as(
            &ann,
            "mutation { createClient(input: { email: \"zed@example.com\", fullName: \"Zed Secret\" }) { id } }",
            json!({}),
        )
        .await
        .json()["data"]["createClient"]["id"]
        .clone();
    let message = app.new_message(&ann).await;
    let mailing = app
        .graphql_as(
            &ann,
            "mutation($m: ID!, $c: ID!) { createMailing(input: { startsAt: \"2099-01-01T00:00:00Z\", periodicity: DAILY, messageId: $m, clientIds: [$c] }) { id } }",
            json!({ "m": message, "c": client }),
        )
        .await
        .json()["data"]["createMailing"]["id"]
        .clone();
    assert!(mailing.is_string());

    const DELETE: &str = "mutation($p: String!) { deleteAccount(password: $p) }";
    let wrong = app.graphql_as(&ann, DELETE, json!({ "p": "not my password" })).await;
    assert_eq!(wrong.json()["errors"][0]["extensions"]["field"], "password");

    let deleted = app.graphql_as(&ann, DELETE, json!({ "p": PASSWORD })).await;
    assert_eq!(deleted.json(), json!({ "data": { "deleteAccount": true } }));
    assert_eq!(
        app.graphql_as(&ann, ME, json!({})).await.json()["data"]["me"],
        json!(null)
    );
    let login = app.try_login("ann@example.com", "long enough secret").await;
    assert_eq!(login.error_code(), "UNAUTHENTICATED");

    #[derive(diesel::QueryableByName)]
    struct Left {
        #[diesel(sql_type = diesel::sql_types::Text)]
        text: String,
    }
    let mut conn = app.db.conn().await;
    let left: Vec<Left> = diesel::sql_query(
        "SELECT email || ' ' || full_name AS text FROM users \
         UNION ALL SELECT email || ' ' || full_name || ' ' || comment FROM clients \
         UNION ALL SELECT subject || ' ' || body FROM messages",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let all: String = left.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join("\n");
    for personal in ["ann@example.com", "zed@example.com", "Zed Secret", "Hello"] {
        assert!(!all.contains(personal), "{personal} is still stored:\n{all}");
    }
    // The mailing stays (counted, anonymous) but is completed: nothing more is sent.
    let mailings: Left = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE completed_at IS NOT NULL AND next_run_at IS NULL)::text AS text FROM mailings",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(mailings.text, "1");
    // The address is free again.
    app.verified_user("ann@example.com", Role::User).await;
}
