//! API keys for GraphQL client apps: made with a session, shown once, stored hashed, usable
//! as a bearer token (HTTP, CSV export) and in a WebSocket's connection_init; READ keys run
//! no mutations; revoking, blocking the owner or deleting the account ends them.

use crate::common::TestApp;
use axum::body::Body;
use axum::http::Request;
use futures_util::{SinkExt, StreamExt};
use mailwarm::accounts::role::Role;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn create_key(app: &TestApp, token: &str, name: &str, scope: &str) -> (String, String) {
    let reply = app
        .graphql_as(
            token,
            "mutation($n: String!, $s: ApiKeyScope!) { createApiKey(name: $n, scope: $s) { secret apiKey { id name scope lastUsedAt } } }",
            json!({ "n": name, "s": scope }),
        )
        .await
        .json();
    let created = &reply["data"]["createApiKey"];
    assert_eq!(created["apiKey"]["scope"], scope, "{reply}");
    (
        created["secret"].as_str().unwrap().to_owned(),
        created["apiKey"]["id"].as_str().unwrap().to_owned(),
    )
}

fn code(reply: &Value) -> &str {
    reply["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn keys_sign_in_within_their_scope_and_are_stored_hashed() {
    let app = TestApp::new().await;
    let session = app.verified_user("ann@example.com", Role::User).await;
    let (read, _) = create_key(&app, &session, "Dashboard", "READ").await;
    let (write, _) = create_key(&app, &session, "Importer", "WRITE").await;
    assert!(read.starts_with("mw_") && read.len() > 40, "{read}");

    // A bearer token like a session's, with the key's scope.
    let me = app.graphql_as(&read, "{ me { email } }", json!({})).await.json();
    assert_eq!(me["data"]["me"]["email"], "ann@example.com");
    let mutation = "mutation { createClient(input: { email: \"c@example.com\", fullName: \"C\" }) { id } }";
    let refused = app.graphql_as(&read, mutation, json!({})).await.json();
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    assert!(
        refused["errors"][0]["message"].as_str().unwrap().contains("READ"),
        "{refused}"
    );
    let made = app.graphql_as(&write, mutation, json!({})).await.json();
    assert!(made["data"]["createClient"]["id"].is_string(), "{made}");

    // The CSV export takes a key too.
    let export = app
        .send(
            Request::get("/export/clients.csv")
                .header("authorization", format!("Bearer {read}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(export.status, 200);
    assert!(String::from_utf8_lossy(&export.body).contains("c@example.com"));

    // Listed without secrets, with when they were last used; the table holds no secret.
    let listed = app
        .graphql_as(&session, "{ apiKeys { name scope lastUsedAt } }", json!({}))
        .await
        .json();
    let keys = listed["data"]["apiKeys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k["lastUsedAt"].is_string()), "{listed}");
    assert!(!listed.to_string().contains("mw_"));
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = app.db.conn().await;
    let found: Found = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT count(*) AS n FROM api_keys WHERE position($1::bytea IN secret_hash) > 0 OR name = $2",
        )
        .bind::<diesel::sql_types::Bytea, _>(read.as_bytes())
        .bind::<diesel::sql_types::Text, _>(&read),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(found.n, 0);

    // A key cannot manage keys or sign out; a session can.
    let minted = app
        .graphql_as(
            &write,
            "mutation { createApiKey(name: \"more\", scope: WRITE) { secret } }",
            json!({}),
        )
        .await
        .json();
    assert_eq!(code(&minted), "FORBIDDEN", "{minted}");
    let logout = app.graphql_as(&write, "mutation { logout }", json!({})).await.json();
    assert_eq!(code(&logout), "BAD_USER_INPUT", "{logout}");
    // A bad name, and the cap of 20 keys.
    let unnamed = app
        .graphql_as(
            &session,
            "mutation { createApiKey(name: \"a\\nb\", scope: READ) { secret } }",
            json!({}),
        )
        .await
        .json();
    assert_eq!(unnamed["errors"][0]["extensions"]["field"], "name", "{unnamed}");
    for i in 2..20 {
        create_key(&app, &session, &format!("k{i}"), "READ").await;
    }
    let over = app
        .graphql_as(
            &session,
            "mutation { createApiKey(name: \"k20\", scope: READ) { secret } }",
            json!({}),
        )
        .await
        .json();
    assert_eq!(code(&over), "BAD_USER_INPUT", "{over}");
}

#[tokio::test]
async fn revoking_blocking_and_deleting_end_keys_and_their_sockets() {
    let app = TestApp::dispatching(&[]).await;
    let root = app.verified_user("root@example.com", Role::Admin).await;
    let session = app.verified_user("ann@example.com", Role::User).await;
    let ann = app.graphql_as(&session, "{ me { id } }", json!({})).await.json()["data"]["me"]["id"].clone();
    let (key, key_id) = create_key(&app, &session, "Socket app", "READ").await;

    // A socket signs in with the key; revoking the key closes it with 4403.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let mut request = format!("ws://{addr}/graphql/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "token": key } }).to_string(),
    ))
    .await
    .unwrap();
    match tokio::time::timeout(std::time::Duration::from_secs(3), ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => assert!(text.contains("connection_ack"), "{text}"),
        other => panic!("{other:?}"),
    }
    let revoked = app
        .graphql_as(
            &session,
            "mutation($id: ID!) { revokeApiKey(id: $id) }",
            json!({ "id": key_id }),
        )
        .await
        .json();
    assert_eq!(revoked["data"]["revokeApiKey"], true, "{revoked}");
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(3), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(close))))) => {
                assert_eq!(u16::from(close.code), 4403);
                break;
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("the socket of a revoked key stayed open: {other:?}"),
        }
    }
    assert_eq!(
        app.graphql_as(&key, "{ me { id } }", json!({})).await.json()["data"]["me"],
        Value::Null
    );

    // Blocking the owner ends the keys for good (unblocking does not bring them back).
    let (key, _) = create_key(&app, &session, "Second", "WRITE").await;
    for active in [false, true] {
        let reply = app
            .graphql_as(
                &root,
                "mutation($id: ID!, $a: Boolean!) { setUserActive(id: $id, active: $a) { isActive } }",
                json!({ "id": ann, "a": active }),
            )
            .await
            .json();
        assert_eq!(reply["data"]["setUserActive"]["isActive"], active, "{reply}");
    }
    assert_eq!(
        app.graphql_as(&key, "{ me { id } }", json!({})).await.json()["data"]["me"],
        Value::Null
    );

    // Deleting the account ends its keys.
    let session = app.login("ann@example.com", "long enough secret").await;
    let (key, _) = create_key(&app, &session, "Third", "READ").await;
    let deleted = app
        .graphql_as(
            &session,
            "mutation { deleteAccount(password: \"long enough secret\") }",
            json!({}),
        )
        .await
        .json();
    assert_eq!(deleted["data"]["deleteAccount"], true, "{deleted}");
    assert_eq!(
        app.graphql_as(&key, "{ me { id } }", json!({})).await.json()["data"]["me"],
        Value::Null
    );
}
