//! Live connections follow their session, and no socket or request can exhaust the server:
//! a sign-out, a demotion or a block done through one `server` process reaches a socket
//! open on another within a second; sockets must sign in quickly, are counted per address,
//! run a bounded number of operations and are dropped when their peer goes silent.

use std::time::{Duration, Instant};

use crate::common::smtp::TestSmtpServer;
use crate::common::{ServerProcess, TestApp};
use futures_util::{SinkExt, StreamExt};
use mailwarm::accounts::role::Role;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A graphql-transport-ws socket to `server`, signed in with `token` (acknowledged).
async fn socket(base_url: &str, token: Option<&str>) -> Socket {
    let mut ws = open(base_url).await;
    let payload = token.map_or(json!({}), |t| json!({ "token": t }));
    send(&mut ws, json!({ "type": "connection_init", "payload": payload })).await;
    assert_eq!(next(&mut ws).await["type"], "connection_ack");
    ws
}

/// A signed-in socket, retrying for up to 3 s while the server answers 429 (a socket that
/// just closed may hold its place a moment longer).
async fn socket_when_admitted(base_url: &str, token: &str) -> Socket {
    let url = format!("{}/graphql/ws", base_url.replace("http://", "ws://"));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut request = url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Ok((mut ws, _)) => {
                send(
                    &mut ws,
                    json!({ "type": "connection_init", "payload": { "token": token } }),
                )
                .await;
                assert_eq!(next(&mut ws).await["type"], "connection_ack");
                return ws;
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 429 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("no socket: {err}"),
        }
    }
}

/// An upgraded socket that has said nothing yet.
async fn open(base_url: &str) -> Socket {
    let url = format!("{}/graphql/ws", base_url.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

async fn send(ws: &mut Socket, message: Value) {
    ws.send(Message::text(message.to_string())).await.unwrap();
}

/// The next protocol message, within 5 s.
async fn next(ws: &mut Socket) -> Value {
    match tokio::time::timeout(Duration::from_secs(5), next_frame(ws)).await {
        Ok(Some(Message::Text(text))) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn next_frame(ws: &mut Socket) -> Option<Message> {
    loop {
        match ws.next().await? {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(frame) => return Some(frame),
            Err(_) => return None,
        }
    }
}

/// Runs one query or mutation over the socket; its payload (after its `complete`).
async fn operation(ws: &mut Socket, id: &str, query: &str) -> Value {
    send(
        ws,
        json!({ "id": id, "type": "subscribe", "payload": { "query": query } }),
    )
    .await;
    let reply = next(ws).await;
    assert_eq!(
        (reply["id"].as_str(), reply["type"].as_str()),
        (Some(id), Some("next")),
        "{reply}"
    );
    let complete = next(ws).await;
    assert_eq!(
        (complete["id"].as_str(), complete["type"].as_str()),
        (Some(id), Some("complete")),
        "{complete}"
    );
    reply["payload"].clone()
}

/// The code of the close frame that ends the socket within `within`.
async fn closed_with(ws: &mut Socket, within: Duration) -> u16 {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, next_frame(ws)).await {
            Ok(Some(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Ok(Some(Message::Close(None))) | Ok(None) => return 0,
            Ok(Some(_)) => continue,
            Err(_) => panic!("the socket stayed open for {within:?}"),
        }
    }
}

/// POST /graphql to a server process as `token`.
async fn http(base_url: &str, token: &str, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{base_url}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn user_id(app: &TestApp, token: &str) -> String {
    app.graphql_as(token, "{ me { id } }", json!({})).await.json()["data"]["me"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `n` serving instances over `app`'s database (the first one dispatches into `smtp`).
async fn instances(
    app: &TestApp,
    smtp: &TestSmtpServer,
    logs: &std::path::Path,
    extra: &[(&str, &str)],
) -> Vec<ServerProcess> {
    let smtp_url = smtp.url();
    let mut env = vec![
        ("DATABASE_URL", app.db.url.as_str()),
        ("SMTP_URL", smtp_url.as_str()),
        ("DISPATCH_INTERVAL", "1s"),
        ("RUST_LOG", "warn,mailwarm=info"),
    ];
    env.extend_from_slice(extra);
    let mut servers = vec![
        ServerProcess::spawn(&[], &env, logs),
        ServerProcess::spawn(&["--no-dispatch"], &env, logs),
    ];
    for server in &mut servers {
        server.wait_ready(Duration::from_secs(30)).await;
    }
    servers
}

#[tokio::test]
async fn sign_out_demotion_and_blocking_on_one_instance_reach_sockets_on_another() {
    let app = TestApp::new().await;
    let smtp = TestSmtpServer::start().await;
    let logs = tempfile::tempdir().unwrap();
    let servers = instances(&app, &smtp, logs.path(), &[]).await;
    let (a, b) = (&servers[0].base_url, &servers[1].base_url);
    let root = app.verified_user("root@example.com", Role::Admin).await;

    // A refused sign-in is 4403; an operation before the acknowledgement 4401.
    let mut refused = open(a).await;
    send(
        &mut refused,
        json!({ "type": "connection_init", "payload": { "token": "not a token" } }),
    )
    .await;
    assert_eq!(closed_with(&mut refused, Duration::from_secs(3)).await, 4403);
    drop(refused);
    let mut early = open(a).await;
    send(
        &mut early,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ me { id } }" } }),
    )
    .await;
    assert_eq!(closed_with(&mut early, Duration::from_secs(3)).await, 4401);
    drop(early);

    // Sign-out through B closes the socket on A with 4403; the session's token is dead.
    let user = app.verified_user("ann@example.com", Role::User).await;
    let mut ws = socket(a, Some(&user)).await;
    let made = operation(
        &mut ws,
        "1",
        "mutation { createClient(input: { email: \"c@example.com\", fullName: \"C\" }) { id } }",
    )
    .await;
    assert!(made["data"]["createClient"]["id"].is_string(), "{made}");
    let started = Instant::now();
    let out = http(b, &user, "mutation { logout }", json!({})).await;
    assert_eq!(out["data"]["logout"], true, "{out}");
    assert_eq!(closed_with(&mut ws, Duration::from_secs(1)).await, 4403);
    assert!(started.elapsed() < Duration::from_secs(1));

    // An admin demoted through B can no longer act as one on A; blocked, the socket closes.
    let admin = app.verified_user("admin2@example.com", Role::Admin).await;
    let admin_id = user_id(&app, &admin).await;
    let mut ws = socket(a, Some(&admin)).await;
    let create_admin = |n: u32| {
        format!(
            "mutation {{ createUser(email: \"new{n}@example.com\", fullName: \"N\", password: \"long enough secret\", role: ADMIN) {{ id }} }}"
        )
    };
    assert!(operation(&mut ws, "1", &create_admin(1)).await["data"]["createUser"]["id"].is_string());
    let demoted = http(
        b,
        &root,
        "mutation($id: ID!) { setUserRole(id: $id, role: USER) { role } }",
        json!({ "id": admin_id }),
    )
    .await;
    assert_eq!(demoted["data"]["setUserRole"]["role"], "USER", "{demoted}");
    let refused = operation(&mut ws, "2", &create_admin(2)).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN", "{refused}");
    let blocked = http(
        b,
        &root,
        "mutation($id: ID!) { setUserActive(id: $id, active: false) { isActive } }",
        json!({ "id": admin_id }),
    )
    .await;
    assert_eq!(blocked["data"]["setUserActive"]["isActive"], false, "{blocked}");
    assert_eq!(closed_with(&mut ws, Duration::from_secs(1)).await, 4403);

    // A manager sees every tenant's attempts; demoted through B, that subscription ends at
    // once, and a new one shows only the manager's own.
    let manager = app.verified_user("boss@example.com", Role::Manager).await;
    let manager_id = user_id(&app, &manager).await;
    let tenant = app.verified_user("tenant@example.com", Role::User).await;
    let message = app.new_message(&tenant).await;
    let mut ws = socket(a, Some(&manager)).await;
    send(
        &mut ws,
        json!({ "id": "all", "type": "subscribe", "payload": { "query": "subscription { attempts { email } }" } }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = app.new_client(&tenant, "first@example.com").await;
    app.start_mailing_now(
        &tenant,
        message.as_str().unwrap(),
        &[client.as_str().unwrap().to_owned()],
    )
    .await;
    let seen = next(&mut ws).await;
    assert_eq!(
        seen["payload"]["data"]["attempts"]["email"], "first@example.com",
        "{seen}"
    );
    http(
        b,
        &root,
        "mutation($id: ID!) { setUserRole(id: $id, role: USER) { role } }",
        json!({ "id": manager_id }),
    )
    .await;
    let ended = next(&mut ws).await;
    assert_eq!(
        (ended["type"].as_str(), ended["id"].as_str()),
        (Some("complete"), Some("all")),
        "{ended}"
    );
    send(
        &mut ws,
        json!({ "id": "own", "type": "subscribe", "payload": { "query": "subscription { attempts { email } }" } }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = app.new_client(&tenant, "second@example.com").await;
    app.start_mailing_now(
        &tenant,
        message.as_str().unwrap(),
        &[client.as_str().unwrap().to_owned()],
    )
    .await;
    smtp.wait_accepted(2, Duration::from_secs(10)).await;
    let leaked = tokio::time::timeout(Duration::from_secs(2), next_frame(&mut ws)).await;
    assert!(
        leaked.is_err(),
        "a demoted manager still sees other tenants: {leaked:?}"
    );
}

#[tokio::test]
async fn sockets_sign_in_quickly_are_counted_and_dead_peers_are_dropped() {
    let app = TestApp::new().await;
    let smtp = TestSmtpServer::start().await;
    let logs = tempfile::tempdir().unwrap();
    let servers = instances(
        &app,
        &smtp,
        logs.path(),
        &[
            ("WS_INIT_TIMEOUT", "500ms"),
            ("WS_MAX_PER_IP", "3"),
            ("WS_MAX_OPERATIONS", "2"),
            ("WS_KEEPALIVE", "1s"),
        ],
    )
    .await;
    let base = &servers[0].base_url;
    let token = app.verified_user("ann@example.com", Role::User).await;

    // No connection_init within WS_INIT_TIMEOUT: closed 4408.
    let mut silent = open(base).await;
    assert_eq!(closed_with(&mut silent, Duration::from_secs(3)).await, 4408);
    drop(silent);

    // WS_MAX_OPERATIONS running at once on one socket.
    // (The closed socket's place is freed just after its close frame goes out.)
    let mut ws = socket_when_admitted(base, &token).await;
    for id in ["a", "b"] {
        send(
            &mut ws,
            json!({ "id": id, "type": "subscribe", "payload": { "query": "subscription { attempts { email } }" } }),
        )
        .await;
    }
    // Let both start (the server starts the operations of one read in any order).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = operation(&mut ws, "c", "{ me { id } }").await;
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("WS_MAX_OPERATIONS"),
        "{refused}"
    );

    // WS_MAX_PER_IP sockets from one address; the next upgrade is refused with 429.
    let _second = socket_when_admitted(base, &token).await;
    let _third = socket_when_admitted(base, &token).await;
    let url = format!("{}/graphql/ws", base.replace("http://", "ws://"));
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!("a fourth socket was not refused: {:?}", other.map(|_| ())),
    }

    // Peers that stop answering pings are dropped, and their places freed: none of the
    // three sockets above is read again, so none answers the server's pings.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut request = url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
        if tokio_tungstenite::connect_async(request).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "silent peers kept their places");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(ws);
}

#[tokio::test]
async fn lists_cost_by_their_size_and_cursors_are_checked() {
    let app = TestApp::with_args(&["--response-limit", "64KiB"]).await;
    let token = app.verified_user("ann@example.com", Role::User).await;
    // The fan-out of nested lists fails before anything runs, with a clear error.
    let fan_out = "{ mailings(first: 100) { nodes { deliveries(first: 100) { nodes { mailing { clients(first: 100) { nodes { email } } } } } } } }";
    let started = Instant::now();
    let reply = app.graphql_as(&token, fan_out, json!({})).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error_code(), "GRAPHQL_VALIDATION_FAILED");
    let message = reply.json()["errors"][0]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("too complex") && message.contains("first"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // So does the same through variables.
    let reply = app
        .graphql_as(
            &token,
            "query($n: Int) { mailings(first: $n) { nodes { clients(first: $n) { nodes { email fullName comment } } } } }",
            json!({ "n": 100 }),
        )
        .await;
    assert_eq!(reply.error_code(), "GRAPHQL_VALIDATION_FAILED", "{}", reply.json());
    // The web front end's heaviest query stays far below the limit.
    let heaviest = "query($s: MailingStatus) { mailings(first: 100, status: $s) { nodes { id status paused periodicity timeZone startsAt endsAt nextRunAt createdAt message { id subject } stats { recipients sent failed unknown pending } } } }";
    let reply = app.graphql_as(&token, heaviest, json!({ "s": "CREATED" })).await;
    assert!(reply.json()["errors"].is_null(), "{}", reply.json());

    // An answer over RESPONSE_LIMIT is replaced by an error saying so.
    let long = "x".repeat(1_900);
    for i in 0..60 {
        let reply = app
            .graphql_as(
                &token,
                "mutation($i: ClientInput!) { createClient(input: $i) { id } }",
                json!({ "i": { "email": format!("c{i}@example.com"), "fullName": "C", "comment": long } }),
            )
            .await;
        assert!(reply.json()["errors"].is_null(), "{}", reply.json());
    }
    let reply = app
        .graphql_as(&token, "{ clients(first: 100) { nodes { comment } } }", json!({}))
        .await;
    assert_eq!(reply.error_code(), "BAD_USER_INPUT", "{}", reply.json());
    assert!(
        reply.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("RESPONSE_LIMIT"),
        "{}",
        reply.json()
    );

    // A cursor naming a time outside the database's range is bad input on `after`.
    use base64::Engine;
    let far =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", i64::MAX / 2, uuid::Uuid::new_v4()));
    for list in [
        "clients(first: 1, after: $a) { totalCount }",
        "messages(first: 1, after: $a) { totalCount }",
        "mailings(first: 1, after: $a) { totalCount }",
        "attempts(first: 1, after: $a) { totalCount }",
        "blogPosts(first: 1, after: $a) { totalCount }",
    ] {
        let reply = app
            .graphql_as(&token, &format!("query($a: String) {{ {list} }}"), json!({ "a": far }))
            .await;
        let error = &reply.json()["errors"][0];
        assert_eq!(
            error["extensions"]["code"],
            "BAD_USER_INPUT",
            "{list}: {}",
            reply.json()
        );
        assert_eq!(error["extensions"]["field"], "after", "{list}");
    }
}

#[allow(dead_code)]
fn _close_code_is_numeric(code: CloseCode) -> u16 {
    u16::from(code)
}
