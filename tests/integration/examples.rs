//! graphql/examples/ is a worked session (the README walks through it): every file runs
//! here, in order, as written, against the real router.

use crate::common::TestApp;
use serde_json::{Value, json};

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/graphql/examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn data(reply: &crate::common::Reply) -> Value {
    let body = reply.json();
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

#[tokio::test]
async fn the_worked_session_runs_as_written() {
    let app = TestApp::with_args(&["--credentials-key", &"ab".repeat(32)]).await;
    let mut files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/graphql/examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 15, "a new example needs a step here: {files:?}");

    assert_eq!(
        data(&app.graphql(&example("01-register.graphql"), json!({})).await)["register"],
        true
    );
    let token = app.mailed_token("ann@example.com").await;
    let verified = app
        .graphql(&example("02-verify-email.graphql"), json!({ "token": token }))
        .await;
    assert_eq!(data(&verified)["verifyEmail"], true);
    let login = data(&app.graphql(&example("03-login.graphql"), json!({})).await);
    let session = login["login"]["token"].as_str().unwrap().to_owned();
    assert_eq!(login["login"]["user"]["role"], "USER");

    let client = data(
        &app.graphql_as(&session, &example("04-create-client.graphql"), json!({}))
            .await,
    );
    let message = data(
        &app.graphql_as(&session, &example("05-create-message.graphql"), json!({}))
            .await,
    );
    let mailing = data(
        &app.graphql_as(
            &session,
            &example("06-create-mailing.graphql"),
            json!({ "messageId": message["createMessage"]["id"], "clientIds": [client["createClient"]["id"]] }),
        )
        .await,
    );
    assert_eq!(mailing["createMailing"]["status"], "CREATED");
    assert_eq!(mailing["createMailing"]["nextRunAt"], "2030-01-31T08:00:00+00:00");

    let overview = data(
        &app.graphql_as(&session, &example("07-overview.graphql"), json!({}))
            .await,
    );
    assert_eq!(overview["me"]["email"], "ann@example.com");
    assert_eq!(overview["clients"]["totalCount"], 1);
    assert_eq!(overview["messages"]["nodes"][0]["subject"], "News from Ann's bakery");
    let listed = &overview["mailings"]["nodes"][0];
    assert_eq!(listed["periodicity"], "MONTHLY");
    assert_eq!(listed["timeZone"], "Europe/Berlin");
    assert_eq!(listed["clients"]["nodes"][0]["email"], "bob@example.com");

    let layout = data(
        &app.graphql_as(&session, &example("08-create-layout.graphql"), json!({}))
            .await,
    );
    let newsletter = data(
        &app.graphql_as(
            &session,
            &example("09-create-newsletter.graphql"),
            json!({ "layoutId": layout["createLayout"]["id"] }),
        )
        .await,
    );
    assert_eq!(newsletter["createMessage"]["format"], "HTML");
    assert_eq!(newsletter["createMessage"]["layout"]["name"], "Bakery");
    let preview = data(
        &app.graphql_as(
            &session,
            &example("10-preview.graphql"),
            json!({ "messageId": newsletter["createMessage"]["id"], "clientId": client["createClient"]["id"] }),
        )
        .await,
    );
    let rendered = &preview["renderMessage"];
    assert_eq!(rendered["subject"], "Bob Stone, rye bread is back");
    let html = rendered["html"].as_str().unwrap();
    assert!(
        html.contains("<h1 style=\"color: #8a4b08;\">Hello Bob Stone</h1><p>met at the fair: this month"),
        "{html}"
    );
    assert!(html.contains("Unsubscribe"), "{html}");
    assert!(
        rendered["text"].as_str().unwrap().starts_with("# Hello Bob Stone"),
        "{rendered}"
    );

    let tag = data(
        &app.graphql_as(&session, &example("11-create-tag.graphql"), json!({}))
            .await,
    );
    let audience = data(
        &app.graphql_as(
            &session,
            &example("12-mailing-to-an-audience.graphql"),
            json!({ "tagId": tag["createTag"]["id"], "clientId": client["createClient"]["id"], "messageId": message["createMessage"]["id"] }),
        )
        .await,
    );
    assert_eq!(audience["tagClients"], 1);
    assert_eq!(
        audience["createMailing"]["audience"],
        json!({
            "allClients": false,
            "tags": [{ "name": "regulars" }],
            "segment": { "match": "ANY", "conditions": [{ "field": "comment", "op": "CONTAINS", "value": "fair" }] },
            "size": 1
        })
    );

    // An admin sets up sending; Ann's next mailing goes out as the bakery, on weekdays.
    let admin = app
        .verified_user("admin@example.com", mailwarm::accounts::role::Role::Admin)
        .await;
    let server = data(
        &app.graphql_as(&admin, &example("13-create-smtp-server.graphql"), json!({}))
            .await,
    );
    let server = &server["createSmtpServer"];
    assert_eq!(server["host"], "relay.example.com");
    assert_eq!(server["hasCredentials"], true);
    assert!(!server.to_string().contains("s3cret"));
    let identity = data(
        &app.graphql_as(
            &admin,
            &example("14-create-sender-identity.graphql"),
            json!({ "serverId": server["id"] }),
        )
        .await,
    );
    assert_eq!(
        identity["createSenderIdentity"]["smtpServers"],
        json!([{ "name": "relay" }])
    );
    let mailing = data(
        &app.graphql_as(
            &session,
            &example("15-mailing-with-a-sender.graphql"),
            json!({ "identityId": identity["createSenderIdentity"]["id"], "messageId": message["createMessage"]["id"],
                    "clientId": client["createClient"]["id"] }),
        )
        .await,
    );
    assert_eq!(
        mailing["createMailing"]["senderIdentity"]["email"],
        "news@bakery.example"
    );
    assert_eq!(
        mailing["createMailing"]["sendingWindow"],
        json!({ "days": [1, 2, 3, 4, 5], "fromHour": 9, "toHour": 17 })
    );
}
