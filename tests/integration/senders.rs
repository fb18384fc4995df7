//! Sending infrastructure through the API and the dispatcher: SMTP servers and sender
//! identities managed by admins (credentials sealed, never returned), an identity's From,
//! Reply-To and DKIM on the wire (verified by dkimpy), the server each attempt went
//! through, a domain limit, and a sending window that holds deliveries back and releases
//! them. Several real instances sharing a limit and failing over: `dispatch_processes`.

use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use mailwarm::accounts::role::Role;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::common::smtp::TestSmtpServer;

const KEY: &str = "0101010101010101010101010101010101010101010101010101010101010101";

const SERVER_FIELDS: &str = "id name host maxConnections priority limits { perSecond perMinute perHour perDay } \
                             breakerOpen builtin hasCredentials createdAt";

async fn create_server(app: &TestApp, admin: &str, input: Value) -> Value {
    app.graphql_as(
        admin,
        &format!("mutation($i: SmtpServerInput!) {{ createSmtpServer(input: $i) {{ {SERVER_FIELDS} }} }}"),
        json!({ "i": input }),
    )
    .await
    .json()
}

async fn create_identity(app: &TestApp, admin: &str, input: Value) -> Value {
    app.graphql_as(
        admin,
        "mutation($i: SenderIdentityInput!) { createSenderIdentity(input: $i) { id name email replyTo dkimDomain \
         dkimSelector allowEveryone smtpServers { name } } }",
        json!({ "i": input }),
    )
    .await
    .json()
}

/// An instance dispatching, its SMTP_URL `fallback`, senders re-read every second.
async fn dispatching_to(fallback: &TestSmtpServer, extra: &[&str]) -> TestApp {
    let url = fallback.url();
    let mut args = vec![
        "--credentials-key",
        KEY,
        "--smtp-url",
        &url,
        "--dispatch-interval",
        "1s",
        "--senders-refresh",
        "1s",
    ];
    args.extend_from_slice(extra);
    TestApp::dispatching(&args).await
}

fn field(reply: &Value) -> &str {
    reply["errors"][0]["extensions"]["field"].as_str().unwrap_or("")
}

fn code(reply: &Value) -> &str {
    reply["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

async fn user_id(app: &TestApp, token: &str) -> String {
    app.graphql_as(token, "{ me { id } }", json!({})).await.json()["data"]["me"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn scalar(app: &TestApp, sql: &str) -> String {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        v: String,
    }
    let mut conn = app.db.conn().await;
    diesel::sql_query(sql).get_result::<Row>(&mut conn).await.unwrap().v
}

/// A mailing of `token`'s message to its clients, starting a second ago, with `extra` fields.
async fn mailing(app: &TestApp, token: &str, message: &Value, clients: &[Value], extra: Value) -> Value {
    let mut input = json!({
        "startsAt": (chrono::Utc::now() - chrono::TimeDelta::seconds(1)).to_rfc3339(),
        "periodicity": "ONCE",
        "messageId": message,
        "clientIds": clients,
    });
    for (k, v) in extra.as_object().unwrap() {
        input[k] = v.clone();
    }
    app.graphql_as(
        token,
        "mutation($i: MailingInput!) { createMailing(input: $i) { id senderIdentity { name } \
         sendingWindow { days fromHour toHour } } }",
        json!({ "i": input }),
    )
    .await
    .json()
}

#[tokio::test]
async fn admins_manage_servers_and_identities_and_credentials_stay_sealed() {
    let app = TestApp::with_args(&["--credentials-key", KEY]).await;
    let admin = app.verified_user("admin@example.com", Role::Admin).await;
    let user = app.verified_user("user@example.com", Role::User).await;
    let other = app.verified_user("other@example.com", Role::User).await;

    // The built-in server (SMTP_URL) is there from the start.
    let listed = app
        .graphql_as(&admin, &format!("{{ smtpServers {{ {SERVER_FIELDS} }} }}"), json!({}))
        .await
        .json();
    let servers = listed["data"]["smtpServers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{listed}");
    assert_eq!(servers[0]["name"], "SMTP_URL");
    assert_eq!(servers[0]["builtin"], true);
    let builtin = servers[0]["id"].as_str().unwrap().to_owned();

    // Users neither see nor make servers.
    let denied = app.graphql_as(&user, "{ smtpServers { id } }", json!({})).await.json();
    assert_eq!(code(&denied), "FORBIDDEN", "{denied}");
    let denied = create_server(&app, &user, json!({ "name": "x", "url": "smtp://127.0.0.1:25" })).await;
    assert_eq!(code(&denied), "FORBIDDEN", "{denied}");

    // Credentials are sealed in the database and never come back.
    let created = create_server(
        &app,
        &admin,
        json!({ "name": "relay-a", "url": "smtp://mailer:s3cr%2Bt@127.0.0.1:2525", "priority": 10,
                "maxConnections": 4, "limits": { "perSecond": 5, "perDay": 1000 } }),
    )
    .await;
    let server = &created["data"]["createSmtpServer"];
    assert_eq!(server["host"], "127.0.0.1", "{created}");
    assert_eq!(server["hasCredentials"], true);
    assert_eq!(server["breakerOpen"], false);
    assert_eq!(
        server["limits"],
        json!({ "perSecond": 5, "perMinute": null, "perHour": null, "perDay": 1000 })
    );
    assert!(!created.to_string().contains("s3cr"), "{created}");
    let id = server["id"].as_str().unwrap().to_owned();
    let stored = scalar(&app, &format!("SELECT url AS v FROM smtp_servers WHERE id = '{id}'")).await;
    assert!(
        stored.starts_with("sealed:") && !stored.contains("s3cr") && !stored.contains("mailer"),
        "{stored}"
    );

    // Each input names its field.
    for (input, expected) in [
        (
            json!({ "name": "relay-a", "url": "smtp://127.0.0.1:26" }),
            ("CONFLICT", "input.name"),
        ),
        (
            json!({ "name": "b", "url": "http://127.0.0.1:26" }),
            ("BAD_USER_INPUT", "input.url"),
        ),
        (json!({ "name": "b" }), ("BAD_USER_INPUT", "input.url")),
        (
            json!({ "name": " ", "url": "smtp://127.0.0.1:26" }),
            ("BAD_USER_INPUT", "input.name"),
        ),
        (
            json!({ "name": "b", "url": "smtp://h:26", "maxConnections": 0 }),
            ("BAD_USER_INPUT", "input.maxConnections"),
        ),
        (
            json!({ "name": "b", "url": "smtp://h:26", "limits": { "perMinute": 0 } }),
            ("BAD_USER_INPUT", "input.limits.perMinute"),
        ),
    ] {
        let reply = create_server(&app, &admin, input.clone()).await;
        assert_eq!((code(&reply), field(&reply)), expected, "{input}: {reply}");
    }
    // Without CREDENTIALS_KEY an instance refuses to store credentials, and says why.
    let keyless = app.another_instance(&[]).await;
    let reply = create_server(
        &keyless,
        &admin,
        json!({ "name": "c", "url": "smtp://u:p@127.0.0.1:26" }),
    )
    .await;
    assert_eq!(field(&reply), "input.url", "{reply}");
    assert!(reply.to_string().contains("CREDENTIALS_KEY"), "{reply}");

    // An update without a URL keeps it; the built-in server takes no URL and stays.
    let updated = app
        .graphql_as(
            &admin,
            "mutation($id: ID!) { updateSmtpServer(id: $id, input: { name: \"relay-a\", priority: 3 }) { priority hasCredentials } }",
            json!({ "id": id }),
        )
        .await
        .json();
    assert_eq!(
        updated["data"]["updateSmtpServer"],
        json!({ "priority": 3, "hasCredentials": true }),
        "{updated}"
    );
    assert_eq!(
        scalar(&app, &format!("SELECT url AS v FROM smtp_servers WHERE id = '{id}'")).await,
        stored
    );
    let reply = app
        .graphql_as(
            &admin,
            "mutation($id: ID!) { updateSmtpServer(id: $id, input: { name: \"SMTP_URL\", url: \"smtp://h:1\" }) { id } }",
            json!({ "id": builtin }),
        )
        .await
        .json();
    assert_eq!(field(&reply), "input.url", "{reply}");
    let reply = app
        .graphql_as(
            &admin,
            "mutation($id: ID!) { deleteSmtpServer(id: $id) }",
            json!({ "id": builtin }),
        )
        .await
        .json();
    assert_eq!(code(&reply), "BAD_USER_INPUT", "{reply}");

    // An identity for one user: they see it and may send as it; another user may not.
    let user_id = user_id(&app, &user).await;
    let identity = create_identity(
        &app,
        &admin,
        json!({ "name": "News", "email": "news@example.com", "replyTo": "desk@example.com",
                "smtpServerIds": [id], "allowedUserIds": [user_id] }),
    )
    .await;
    let identity_id = identity["data"]["createSenderIdentity"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        identity["data"]["createSenderIdentity"]["smtpServers"],
        json!([{ "name": "relay-a" }])
    );
    for (input, expected) in [
        (
            json!({ "name": "N", "email": "not an address", "smtpServerIds": [id] }),
            "input.email",
        ),
        (
            json!({ "name": "N", "email": "n@example.com", "smtpServerIds": [] }),
            "input.smtpServerIds",
        ),
        (
            json!({ "name": "N", "email": "n@example.com", "smtpServerIds": [builtin], "replyTo": "x" }),
            "input.replyTo",
        ),
        (
            json!({ "name": "N", "email": "n@example.com", "smtpServerIds": [id], "dkimDomain": "example.com" }),
            "input.dkimSelector",
        ),
        (
            json!({ "name": "N", "email": "n@example.com", "smtpServerIds": [id], "dkimDomain": "example.com",
                 "dkimSelector": "s1", "dkimPrivateKey": "not a key" }),
            "input.dkimPrivateKey",
        ),
        (
            json!({ "name": "N", "email": "n@example.com", "smtpServerIds": [id], "allowedUserIds": [builtin] }),
            "input.allowedUserIds",
        ),
    ] {
        let reply = create_identity(&app, &admin, input.clone()).await;
        assert_eq!(field(&reply), expected, "{input}: {reply}");
    }
    let seen = |token: String| {
        let app = &app;
        async move {
            app.graphql_as(&token, "{ senderIdentities { name } }", json!({}))
                .await
                .json()["data"]["senderIdentities"]
                .clone()
        }
    };
    assert_eq!(seen(user.clone()).await, json!([{ "name": "News" }]));
    assert_eq!(seen(other.clone()).await, json!([]));

    let message = app.new_message(&user).await;
    let client = app.new_client(&user, "c@example.com").await;
    let made = mailing(
        &app,
        &user,
        &message,
        &[client],
        json!({ "senderIdentityId": identity_id, "sendingWindow": { "days": [5, 1], "fromHour": 9, "toHour": 17 } }),
    )
    .await;
    let made = &made["data"]["createMailing"];
    assert_eq!(made["senderIdentity"]["name"], "News", "{made}");
    assert_eq!(
        made["sendingWindow"],
        json!({ "days": [1, 5], "fromHour": 9, "toHour": 17 })
    );
    let other_message = app.new_message(&other).await;
    let other_client = app.new_client(&other, "d@example.com").await;
    let refused = mailing(
        &app,
        &other,
        &other_message,
        std::slice::from_ref(&other_client),
        json!({ "senderIdentityId": identity_id }),
    )
    .await;
    assert_eq!(field(&refused), "input.senderIdentityId", "{refused}");
    for (window, expected) in [
        (
            json!({ "days": [], "fromHour": 9, "toHour": 17 }),
            "input.sendingWindow.days",
        ),
        (
            json!({ "days": [0], "fromHour": 9, "toHour": 17 }),
            "input.sendingWindow.days",
        ),
        (
            json!({ "days": [1], "fromHour": 24, "toHour": 24 }),
            "input.sendingWindow.fromHour",
        ),
        (
            json!({ "days": [1], "fromHour": 9, "toHour": 9 }),
            "input.sendingWindow.toHour",
        ),
    ] {
        let reply = mailing(
            &app,
            &other,
            &other_message,
            std::slice::from_ref(&other_client),
            json!({ "sendingWindow": window }),
        )
        .await;
        assert_eq!(field(&reply), expected, "{reply}");
    }

    // An identity in use stays; a server deleted leaves its identities.
    let reply = app
        .graphql_as(
            &admin,
            "mutation($id: ID!) { deleteSenderIdentity(id: $id) }",
            json!({ "id": identity_id }),
        )
        .await
        .json();
    assert_eq!(code(&reply), "CONFLICT", "{reply}");
    let reply = app
        .graphql_as(
            &admin,
            "mutation($id: ID!) { deleteSmtpServer(id: $id) }",
            json!({ "id": id }),
        )
        .await
        .json();
    assert_eq!(reply["data"]["deleteSmtpServer"], true, "{reply}");
    let left = app
        .graphql_as(
            &admin,
            "{ smtpServers { name } senderIdentities { smtpServers { name } } }",
            json!({}),
        )
        .await
        .json();
    assert_eq!(left["data"]["smtpServers"], json!([{ "name": "SMTP_URL" }]), "{left}");
    assert_eq!(left["data"]["senderIdentities"][0]["smtpServers"], json!([]), "{left}");
}

#[tokio::test]
async fn an_identity_sends_with_its_from_reply_to_and_dkim_through_its_own_server() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestSmtpServer::start().await;
    let fallback = TestSmtpServer::start().await;
    let app = dispatching_to(&fallback, &["--domain-limits", "slow.example=2/1s"]).await;
    let admin = app.verified_user("admin@example.com", Role::Admin).await;
    let user = app.verified_user("user@example.com", Role::User).await;
    let server = create_server(&app, &admin, json!({ "name": "relay", "url": relay.url() })).await;
    let server_id = server["data"]["createSmtpServer"]["id"].clone();
    let pem_path = crate::dkim::key(dir.path(), "ED25519");
    let pem = std::fs::read_to_string(&pem_path).unwrap();
    let record = mailwarm::mail::dkim::DkimKey::from_pem(&pem).unwrap().txt_record();
    let identity = create_identity(
        &app,
        &admin,
        json!({ "name": "Acme \"News\"", "email": "news@acme.example", "replyTo": "desk@acme.example",
                "smtpServerIds": [server_id], "allowEveryone": true,
                "dkimDomain": "acme.example", "dkimSelector": "s2026", "dkimPrivateKey": pem }),
    )
    .await;
    let identity = &identity["data"]["createSenderIdentity"];
    assert_eq!(identity["dkimDomain"], "acme.example", "{identity}");
    assert!(
        !scalar(&app, "SELECT dkim_key AS v FROM sender_identities")
            .await
            .contains("PRIVATE")
    );

    let message = app.new_message(&user).await;
    let mut clients = vec![app.new_client(&user, "c@example.com").await];
    for i in 0..6 {
        clients.push(app.new_client(&user, &format!("r{i}@slow.example")).await);
    }
    let started = std::time::Instant::now();
    let made = mailing(
        &app,
        &user,
        &message,
        &clients,
        json!({ "senderIdentityId": identity["id"] }),
    )
    .await;
    assert!(made["errors"].is_null(), "{made}");
    let received = relay.wait_accepted(7, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 7, "the identity's server carried all");
    assert!(fallback.accepted().is_empty(), "not the default server");
    // Six to slow.example at 2 a second: three windows at least.
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
    // The limiter spaces a domain's sends at most one per aligned half second (2/1s,
    // `budget::windows`), counted when the budget is taken, not when the mail arrives: so
    // any three in a row are more than half a second apart and the six span more than two
    // seconds, less the jitter between taking a budget and the relay's receipt. (Counting
    // arrivals per calendar second would fail now and then: a send taken just before a
    // second ends can arrive just after it, beside that second's two.)
    let mut slow: Vec<_> = received
        .iter()
        .filter(|m| m.rcpt_to[0].ends_with("@slow.example"))
        .map(|m| m.at)
        .collect();
    slow.sort();
    let jitter = Duration::from_millis(250);
    let gaps: Vec<_> = slow.windows(3).map(|w| w[2].duration_since(w[0]).unwrap()).collect();
    assert!(
        gaps.iter().all(|gap| *gap + jitter > Duration::from_millis(500)),
        "three sends to slow.example within half a second: {gaps:?}"
    );
    let span = slow[5].duration_since(slow[0]).unwrap();
    assert!(span + jitter > Duration::from_secs(2), "six sends in {span:?}");

    let mail = received.iter().find(|m| m.rcpt_to[0] == "c@example.com").unwrap();
    assert!(
        mail.data.contains("From: \"Acme \\\"News\\\"\" <news@acme.example>"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("Reply-To: desk@acme.example"), "{}", mail.data);
    assert!(
        mail.data.contains("d=acme.example") && mail.data.contains("s=s2026"),
        "{}",
        mail.data
    );
    let raw = mail.data.clone();
    assert!(
        crate::dkim::dkimpy_verifies(dir.path(), &raw, &record),
        "dkimpy refuses\n{raw}"
    );

    // The log names the server that carried each attempt.
    let mut carried = Vec::new();
    for _ in 0..50 {
        let log = app
            .graphql_as(
                &user,
                "{ attempts(first: 20) { nodes { status smtpServer { name host } } } }",
                json!({}),
            )
            .await
            .json();
        carried = log["data"]["attempts"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("{log}"));
        if carried.len() == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(carried.len(), 7);
    for attempt in carried {
        assert_eq!(
            attempt["smtpServer"],
            json!({ "name": "relay", "host": "127.0.0.1" }),
            "{attempt}"
        );
    }
}

#[tokio::test]
async fn a_sending_window_holds_deliveries_back_and_releases_them() {
    let app = TestApp::dispatching(&["--dispatch-interval", "1s", "--senders-refresh", "1s"]).await;
    let user = app.verified_user("user@example.com", Role::User).await;
    let message = app.new_message(&user).await;
    let mut clients = Vec::new();
    for i in 0..5 {
        clients.push(app.new_client(&user, &format!("w{i}@example.com")).await);
    }
    // Every day but today (UTC): closed now, open from midnight.
    let today = chrono::Datelike::weekday(&chrono::Utc::now()).number_from_monday() as i64;
    let days: Vec<i64> = (1..=7).filter(|d| *d != today).collect();
    let made = mailing(
        &app,
        &user,
        &message,
        &clients,
        json!({ "timeZone": "UTC", "sendingWindow": { "days": days, "fromHour": 0, "toHour": 24 } }),
    )
    .await;
    let id = made["data"]["createMailing"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"))
        .to_owned();
    let count = |sql: String| {
        let app = &app;
        async move {
            #[derive(diesel::QueryableByName)]
            struct N {
                #[diesel(sql_type = BigInt)]
                n: i64,
            }
            let mut conn = app.db.conn().await;
            diesel::sql_query(sql).get_result::<N>(&mut conn).await.unwrap().n
        }
    };
    let waiting = format!(
        "SELECT count(*) AS n FROM deliveries WHERE mailing_id = '{id}' AND status = 'pending' AND attempt_count = 0 \
         AND abs(extract(epoch FROM next_attempt_at - (date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' \
         + interval '1 day'))) < 2"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count(waiting.clone()).await < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run's deliveries never waited for midnight"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Due by the clock but outside the window (a run the window closed on): its slice
    // claimed, its deliveries given back to wait for the opening on their own, with no
    // attempt spent.
    {
        let mut conn = app.db.conn().await;
        for table in ["deliveries", "run_slices"] {
            diesel::sql_query(format!(
                "UPDATE {table} SET next_attempt_at = now() WHERE mailing_id = '{id}'"
            ))
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    app.state.dispatch_wakeup().notify_one();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count(waiting.clone()).await < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the deliveries were not given back to wait"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        app.outbox.all().is_empty(),
        "nothing goes out while the window is closed"
    );
    assert_eq!(count("SELECT count(*) AS n FROM attempts".to_owned()).await, 0);
    assert_eq!(
        count(format!(
            "SELECT count(*) AS n FROM deliveries WHERE mailing_id = '{id}' AND slice_id IS NULL"
        ))
        .await,
        5,
        "deferred deliveries wait on their own"
    );

    // The window opens (here: the mailing's window is changed to include now): released.
    let update = app
        .graphql_as(
            &user,
            "mutation($id: ID!, $i: MailingInput!) { updateMailing(id: $id, input: $i) { id } }",
            json!({ "id": id, "i": {
                "startsAt": (chrono::Utc::now() - chrono::TimeDelta::seconds(1)).to_rfc3339(),
                "periodicity": "ONCE", "messageId": message, "timeZone": "UTC",
                "sendingWindow": { "days": [1, 2, 3, 4, 5, 6, 7], "fromHour": 0, "toHour": 24 } } }),
        )
        .await
        .json();
    assert!(update["errors"].is_null(), "{update}");
    app.state.dispatch_wakeup().notify_one();
    for client in 0..5 {
        let address = format!("w{client}@example.com");
        assert!(
            app.outbox.wait_for(&address, Duration::from_secs(20)).await.is_some(),
            "{address} was never sent"
        );
    }
    assert_eq!(app.outbox.all().len(), 5);
}

/// An admin's relay `name` at `url` with `input`'s other fields; its id.
async fn server_id(app: &TestApp, admin: &str, name: &str, url: &str, extra: Value) -> Value {
    let mut input = json!({ "name": name, "url": url });
    for (k, v) in extra.as_object().unwrap() {
        input[k] = v.clone();
    }
    let created = create_server(app, admin, input).await;
    created["data"]["createSmtpServer"]["id"].clone()
}

/// An identity every user may use, carried by `servers`; its id.
async fn identity_for_all(app: &TestApp, admin: &str, servers: &[&Value]) -> Value {
    let made = create_identity(
        app,
        admin,
        json!({ "name": "News", "email": "news@example.com", "smtpServerIds": servers, "allowEveryone": true }),
    )
    .await;
    made["data"]["createSenderIdentity"]["id"].clone()
}

/// Server processes that send as the senders tests need: senders re-read every second, a
/// breaker that opens after two connection failures and stays open, retries a second apart.
fn senders_env<'a>(db: &'a str, smtp: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut env = crate::dispatch_processes::dispatcher_env(db, smtp);
    env.extend([
        ("CREDENTIALS_KEY", KEY),
        ("SENDERS_REFRESH", "1s"),
        ("BREAKER_FAILURES", "2"),
        ("BREAKER_COOLDOWN", "60s"),
        ("RETRY_BASE", "1s"),
        ("RETRY_MAX", "2s"),
    ]);
    env
}

/// A ONCE mailing of `clients` clients, sent as an identity carried by `servers` (name,
/// server, more input), by `instances` `server --dispatch-only` processes whose own
/// SMTP_URL is `default`.
struct ProcessRun {
    app: TestApp,
    admin: String,
    instances: Vec<crate::common::ServerProcess>,
    logs: tempfile::TempDir,
}

async fn process_run(
    clients: usize,
    instances: usize,
    default: &TestSmtpServer,
    servers: &[(&str, &TestSmtpServer, Value)],
) -> ProcessRun {
    let app = TestApp::with_args(&["--credentials-key", KEY]).await;
    let admin = app.verified_user("admin@example.com", Role::Admin).await;
    let (token, message, clients) = crate::dispatch_processes::audience(&app, clients).await;
    let mut ids = Vec::new();
    for (name, server, extra) in servers {
        ids.push(server_id(&app, &admin, name, &server.url(), extra.clone()).await);
    }
    let identity = identity_for_all(&app, &admin, &ids.iter().collect::<Vec<_>>()).await;
    let logs = tempfile::tempdir().unwrap();
    let default_url = default.url();
    let env = senders_env(&app.db.url, &default_url);
    let instances = crate::dispatch_processes::dispatchers(instances, &env, logs.path()).await;
    let clients: Vec<Value> = clients.into_iter().map(Value::from).collect();
    let made = mailing(
        &app,
        &token,
        &json!(message),
        &clients,
        json!({ "senderIdentityId": identity }),
    )
    .await;
    assert!(made["errors"].is_null(), "{made}");
    ProcessRun {
        app,
        admin,
        instances,
        logs,
    }
}

#[tokio::test]
async fn two_servers_the_first_killed_mid_run_every_delivery_goes_out_once_through_the_second() {
    use crate::dispatch_processes::{CONCURRENCY, assert_sent_once, received_per_address, wait_settled};
    let first = TestSmtpServer::start_with_delay(Duration::from_millis(10)).await;
    let second = TestSmtpServer::start().await;
    let default = TestSmtpServer::start().await;
    let servers = [
        ("first", &first, json!({ "priority": 1 })),
        ("second", &second, json!({ "priority": 2 })),
    ];
    let ProcessRun {
        app,
        admin,
        mut instances,
        logs: _logs,
    } = process_run(600, 2, &default, &servers).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while first.accepted().len() < 100 {
        assert!(std::time::Instant::now() < deadline, "the first server never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill();

    let statuses = wait_settled(&app, Duration::from_secs(90), &instances).await;
    let unknown = statuses.get("unknown").copied().unwrap_or(0);
    let sent = statuses.get("sent").copied().unwrap_or(0);
    assert_eq!(sent + unknown, 600, "{statuses:?}");
    assert!(unknown as usize <= 2 * CONCURRENCY, "{statuses:?}");
    assert!(default.accepted().is_empty(), "the identity's servers only");
    let (by_first, by_second) = (first.accepted().len(), second.accepted().len());
    assert!(by_first >= 100 && by_second > 0, "first {by_first}, second {by_second}");

    // Each client got the message once, from one server or the other; an UNKNOWN one (lost
    // mid-message when the first died) at most once.
    let mut received = received_per_address(&first);
    for (address, n) in received_per_address(&second) {
        *received.entry(address).or_insert(0) += n;
    }
    assert_sent_once(&app, &received).await;
    // The log says which server carried each attempt: every message the second server
    // took is a successful attempt through it.
    let carried = |sql: &str| {
        let sql = sql.to_owned();
        let app = &app;
        async move { scalar(app, &sql).await.parse::<usize>().unwrap() }
    };
    let through = |name: &str, status: &str| {
        format!(
            "SELECT count(*)::text AS v FROM attempts a JOIN smtp_servers s ON s.id = a.smtp_server_id \
             WHERE s.name = '{name}' AND a.status = '{status}'"
        )
    };
    assert_eq!(carried(&through("second", "success")).await, by_second);
    assert!(carried(&through("first", "success")).await <= by_first);
    // Killed, it failed some exchanges (retried later, or handed on at once when nothing
    // had been sent); none is a permanent failure.
    assert_eq!(carried(&through("first", "permanent_failure")).await, 0);
    assert_eq!(
        carried("SELECT count(*)::text AS v FROM attempts WHERE smtp_server_id IS NULL AND status <> 'unknown'").await,
        0
    );
    let shown = app
        .graphql_as(&admin, "{ smtpServers { name breakerOpen } }", json!({}))
        .await
        .json();
    assert!(
        shown["data"]["smtpServers"]
            .as_array()
            .unwrap()
            .contains(&json!({ "name": "first", "breakerOpen": true })),
        "{shown}"
    );
    for instance in &mut instances {
        assert!(instance.terminate(Duration::from_secs(10)).await.success());
    }
}

#[tokio::test]
async fn three_instances_hold_a_shared_rate_limit() {
    use crate::dispatch_processes::{received_per_address, wait_settled};
    let relay = TestSmtpServer::start().await;
    let default = TestSmtpServer::start().await;
    let servers = [("limited", &relay, json!({ "limits": { "perSecond": 10 } }))];
    let ProcessRun {
        app,
        mut instances,
        logs: _logs,
        ..
    } = process_run(60, 3, &default, &servers).await;
    let statuses = wait_settled(&app, Duration::from_secs(60), &instances).await;
    assert_eq!(statuses.get("sent").copied(), Some(60), "{statuses:?}");
    assert!(received_per_address(&relay).values().all(|n| *n == 1));
    assert!(default.accepted().is_empty());
    let mut per_second: std::collections::BTreeMap<u64, usize> = Default::default();
    for mail in relay.accepted() {
        *per_second
            .entry(mail.at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
            .or_insert(0) += 1;
    }
    // Ten a second whatever the number of instances (a message leased at the end of one
    // second may arrive a millisecond into the next: one of slack), and in any sliding
    // second no more than a tenth over (the limit's tenths: one per 100 ms).
    assert!(per_second.values().all(|n| *n <= 11), "{per_second:?}");
    let mut times: Vec<f64> = relay
        .accepted()
        .iter()
        .map(|m| m.at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64())
        .collect();
    times.sort_by(f64::total_cmp);
    let sliding = (0..times.len())
        .map(|i| times[i..].iter().take_while(|t| **t - times[i] < 1.0).count())
        .max()
        .unwrap();
    assert!(sliding <= 12, "{sliding} in one sliding second: {times:?}");
    assert!(per_second.len() >= 6, "{per_second:?}");
    // No attempt was spent waiting for the budget.
    assert_eq!(scalar(&app, "SELECT count(*)::text AS v FROM attempts").await, "60");
    for instance in &mut instances {
        assert!(instance.terminate(Duration::from_secs(10)).await.success());
    }
}

#[tokio::test]
async fn an_unreachable_server_hands_its_messages_to_the_next_and_shows_its_breaker_open() {
    use axum::body::Body;
    use axum::http::Request;
    let fallback = TestSmtpServer::start().await;
    // A port nobody listens on: every connection is refused.
    let dead_port = crate::common::free_port();
    let app = dispatching_to(&fallback, &["--breaker-failures", "2", "--breaker-cooldown", "1h"]).await;
    let admin = app.verified_user("admin@example.com", Role::Admin).await;
    let user = app.verified_user("user@example.com", Role::User).await;
    let dead = server_id(
        &app,
        &admin,
        "dead",
        &format!("smtp://127.0.0.1:{dead_port}"),
        json!({ "priority": 1 }),
    )
    .await;
    let builtin = app
        .graphql_as(&admin, "{ smtpServers { id builtin } }", json!({}))
        .await
        .json()["data"]["smtpServers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["builtin"] == true)
        .unwrap()["id"]
        .clone();
    let identity = identity_for_all(&app, &admin, &[&dead, &builtin]).await;
    let message = app.new_message(&user).await;
    let mut clients = Vec::new();
    for i in 0..5 {
        clients.push(app.new_client(&user, &format!("f{i}@example.com")).await);
    }
    let made = mailing(&app, &user, &message, &clients, json!({ "senderIdentityId": identity })).await;
    assert!(made["errors"].is_null(), "{made}");
    // Each goes out at its first attempt: a refused connection sends nothing, so the
    // message moves to the next server at once, no retry needed.
    assert_eq!(fallback.wait_accepted(5, Duration::from_secs(20)).await.len(), 5);
    let mut log = Value::Null;
    for _ in 0..50 {
        log = app
            .graphql_as(
                &user,
                "{ attempts(first: 20) { nodes { status smtpServer { name } } } }",
                json!({}),
            )
            .await
            .json();
        if log["data"]["attempts"]["nodes"]
            .as_array()
            .is_some_and(|a| a.len() == 5)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for attempt in log["data"]["attempts"]["nodes"].as_array().unwrap() {
        assert_eq!(
            attempt,
            &json!({ "status": "SUCCESS", "smtpServer": { "name": "SMTP_URL" } }),
            "{log}"
        );
    }
    // The breaker for the dead server opened: in the API (from the server's row), in the
    // metrics of this instance.
    let mut shown = Value::Null;
    for _ in 0..50 {
        shown = app
            .graphql_as(&admin, "{ smtpServers { name breakerOpen } }", json!({}))
            .await
            .json();
        if shown.to_string().contains(r#"{"breakerOpen":true,"name":"dead"}"#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        shown.to_string().contains(r#"{"breakerOpen":true,"name":"dead"}"#),
        "{shown}"
    );
    let metrics = app.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(text.contains("mailwarm_smtp_breaker_open{server=\"dead\"} 1"), "{text}");
}
