//! Roles: what USERs, MANAGERs and ADMINs may do to accounts and mailings.

use std::time::Duration;

use crate::common::TestApp;
use diesel_async::RunQueryDsl;
use mailwarm::accounts::role::Role;
use serde_json::{Value, json};

const ME: &str = "{ me { email } }";

async fn user_id(app: &TestApp, token: &str) -> Value {
    app.graphql_as(token, "{ me { id } }", json!({})).await.json()["data"]["me"]["id"].clone()
}

/// A mailing of `token`'s owner to one client, starting at `starts_at`.
async fn mailing(app: &TestApp, token: &str, client_email: &str, starts_at: &str) -> Value {
    let client = app.new_client(token, client_email).await;
    let message = app.new_message(token).await;
    let reply = app
        .graphql_as(
            token,
            "mutation($m: ID!, $c: ID!, $s: DateTime!) { createMailing(input: { startsAt: $s, periodicity: ONCE, messageId: $m, clientIds: [$c] }) { id } }",
            json!({ "m": message, "c": client, "s": starts_at }),
        )
        .await;
    reply.json()["data"]["createMailing"]["id"].clone()
}

#[tokio::test]
async fn users_get_forbidden_from_every_manager_and_admin_operation() {
    let app = TestApp::new().await;
    let user = app.verified_user("ann@example.com", Role::User).await;
    let admin = app.verified_user("root@example.com", Role::Admin).await;
    let admin_id = user_id(&app, &admin).await;
    let post = app
        .graphql_as(
            &admin,
            "mutation { createBlogPost(input: { title: \"T\", body: \"B\", published: true }) { id } }",
            json!({}),
        )
        .await
        .json()["data"]["createBlogPost"]["id"]
        .clone();
    let operations = [
        ("{ users { totalCount } }", json!({})),
        (
            "mutation($id: ID!) { setUserActive(id: $id, active: false) { id } }",
            json!({ "id": admin_id }),
        ),
        (
            "mutation($id: ID!) { setUserRole(id: $id, role: USER) { id } }",
            json!({ "id": admin_id }),
        ),
        (
            "mutation { createBlogPost(input: { title: \"T\", body: \"B\", published: true }) { id } }",
            json!({}),
        ),
        (
            "mutation($id: ID!) { updateBlogPost(id: $id, input: { title: \"T\", body: \"B\", published: true }) { id } }",
            json!({ "id": post }),
        ),
        ("mutation($id: ID!) { deleteBlogPost(id: $id) }", json!({ "id": post })),
        (
            "mutation { createUser(email: \"x@example.com\", fullName: \"X\", password: \"long enough secret\", role: ADMIN) { id } }",
            json!({}),
        ),
    ];
    for (query, variables) in operations {
        let reply = app.graphql_as(&user, query, variables.clone()).await;
        assert_eq!(reply.error_code(), "FORBIDDEN", "{query}: {}", reply.json());
        let anonymous = app.graphql(query, variables).await;
        assert_eq!(anonymous.error_code(), "UNAUTHENTICATED", "{query}");
    }
}

#[tokio::test]
async fn a_manager_pauses_but_cannot_edit_and_blocks_users_but_not_admins() {
    let app = TestApp::dispatching(&["--dispatch-interval", "1s"]).await;
    let manager = app.verified_user("boss@example.com", Role::Manager).await;
    let admin = app.verified_user("root@example.com", Role::Admin).await;
    let user = app.verified_user("ann@example.com", Role::User).await;
    let user_id = user_id(&app, &user).await;
    let admin_id = user_id_of(&app, &admin).await;

    // Managers see every user.
    let users = app
        .graphql_as(&manager, "{ users { totalCount nodes { email role } } }", json!({}))
        .await;
    assert_eq!(users.json()["data"]["users"]["totalCount"], 3);

    // Ann's mailing starts in 2 s.
    let starts = (chrono::Utc::now() + chrono::TimeDelta::seconds(2)).to_rfc3339();
    let held = mailing(&app, &user, "c1@example.com", &starts).await;
    let paused = app
        .graphql_as(
            &manager,
            "mutation($id: ID!) { pauseMailing(id: $id) { paused } }",
            json!({ "id": held }),
        )
        .await;
    assert_eq!(
        paused.json()["data"]["pauseMailing"]["paused"],
        true,
        "{}",
        paused.json()
    );
    let edit = app
        .graphql_as(
            &manager,
            "mutation($id: ID!) { deleteMailing(id: $id) }",
            json!({ "id": held }),
        )
        .await;
    assert_eq!(edit.error_code(), "FORBIDDEN");

    // A second mailing of Ann's, then the manager blocks Ann before it starts.
    let blocked_mailing = mailing(&app, &user, "c2@example.com", &starts).await;
    assert!(blocked_mailing.is_string());
    let blocked = app
        .graphql_as(
            &manager,
            "mutation($id: ID!) { setUserActive(id: $id, active: false) { isActive } }",
            json!({ "id": user_id }),
        )
        .await;
    assert_eq!(blocked.json()["data"]["setUserActive"]["isActive"], false);
    assert_eq!(
        app.graphql_as(&user, ME, json!({})).await.json()["data"]["me"],
        json!(null)
    );
    let login = app.try_login("ann@example.com", "long enough secret").await;
    assert_eq!(login.error_code(), "FORBIDDEN");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        app.outbox
            .wait_for("c2@example.com", Duration::from_millis(10))
            .await
            .is_none(),
        "a blocked user's mailing sent"
    );

    // Unblocked, the mailing goes out.
    app.graphql_as(
        &manager,
        "mutation($id: ID!) { setUserActive(id: $id, active: true) { isActive } }",
        json!({ "id": user_id }),
    )
    .await;
    assert!(
        app.outbox
            .wait_for("c2@example.com", Duration::from_secs(10))
            .await
            .is_some()
    );

    // Managers may not block admins, nor change roles.
    let on_admin = app
        .graphql_as(
            &manager,
            "mutation($id: ID!) { setUserActive(id: $id, active: false) { id } }",
            json!({ "id": admin_id }),
        )
        .await;
    assert_eq!(on_admin.error_code(), "FORBIDDEN");
    let role = app
        .graphql_as(
            &manager,
            "mutation($id: ID!) { setUserRole(id: $id, role: ADMIN) { id } }",
            json!({ "id": user_id }),
        )
        .await;
    assert_eq!(role.error_code(), "FORBIDDEN");
}

async fn user_id_of(app: &TestApp, token: &str) -> Value {
    user_id(app, token).await
}

#[tokio::test]
async fn admins_change_roles_but_never_their_own_and_the_last_admin_stays() {
    let app = TestApp::new().await;
    let root = app.verified_user("root@example.com", Role::Admin).await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    let root_id = user_id(&app, &root).await;
    let ann_id = user_id(&app, &ann).await;
    const SET_ROLE: &str = "mutation($id: ID!, $r: Role!) { setUserRole(id: $id, role: $r) { role } }";

    let own = app
        .graphql_as(&root, SET_ROLE, json!({ "id": root_id, "r": "USER" }))
        .await;
    assert_eq!(own.error_code(), "BAD_USER_INPUT");
    let own_block = app
        .graphql_as(
            &root,
            "mutation($id: ID!) { setUserActive(id: $id, active: false) { id } }",
            json!({ "id": root_id }),
        )
        .await;
    assert_eq!(own_block.error_code(), "BAD_USER_INPUT");

    let promoted = app
        .graphql_as(&root, SET_ROLE, json!({ "id": ann_id, "r": "ADMIN" }))
        .await;
    assert_eq!(promoted.json()["data"]["setUserRole"]["role"], "ADMIN");
    // Ann's session now carries the new role.
    let users = app.graphql_as(&ann, "{ users { totalCount } }", json!({})).await;
    assert_eq!(users.json()["data"]["users"]["totalCount"], 2);
    // Two admins: Ann may demote root; then Ann is the last and root (a user) cannot act.
    let demoted = app
        .graphql_as(&ann, SET_ROLE, json!({ "id": root_id, "r": "MANAGER" }))
        .await;
    assert_eq!(demoted.json()["data"]["setUserRole"]["role"], "MANAGER");
    let back = app
        .graphql_as(&root, SET_ROLE, json!({ "id": ann_id, "r": "USER" }))
        .await;
    assert_eq!(back.error_code(), "FORBIDDEN");
    // The last active admin cannot delete the account and leave the service without one.
    let delete = app
        .graphql_as(
            &ann,
            "mutation { deleteAccount(password: \"long enough secret\") }",
            json!({}),
        )
        .await;
    assert_eq!(delete.error_code(), "BAD_USER_INPUT");
}

#[tokio::test]
async fn an_unknown_role_in_the_database_is_an_error_never_a_default() {
    let app = TestApp::new().await;
    let token = app.verified_user("manager@example.com", Role::Manager).await;
    let reply = app.graphql_as(&token, "{ me { role } }", json!({})).await;
    assert_eq!(reply.json()["data"]["me"]["role"], "MANAGER");
    // A value this version does not know (written by a newer one, or by hand).
    let mut conn = app.db.conn().await;
    for statement in [
        "ALTER TABLE users DROP CONSTRAINT users_role_check",
        "UPDATE users SET role = 'owner' WHERE email = 'manager@example.com'",
    ] {
        diesel::sql_query(statement).execute(&mut conn).await.unwrap();
    }
    let reply = app.graphql_as(&token, "{ me { role } }", json!({})).await;
    assert_eq!(reply.status, 500, "{}", reply.json());
    assert_eq!(reply.error_code(), "INTERNAL_SERVER_ERROR", "{}", reply.json());
    assert!(reply.json()["data"].is_null(), "{}", reply.json());
}
