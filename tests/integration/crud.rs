//! Clients, messages and mailings through the HTTP layer: round trips, validation errors
//! that name the field, and isolation between accounts.

use crate::common::TestApp;
use serde_json::{Value, json};

const CREATE_CLIENT: &str =
    "mutation($i: ClientInput!) { createClient(input: $i) { id email fullName comment unsubscribedAt createdAt } }";
const CREATE_MESSAGE: &str = "mutation($i: MessageInput!) { createMessage(input: $i) { id subject body } }";
const CREATE_MAILING: &str = "mutation($i: MailingInput!) { createMailing(input: $i) { \
    id startsAt endsAt periodicity timeZone status paused nextRunAt \
    message { id subject } owner { email } clients { totalCount nodes { email } } } }";

async fn client(app: &TestApp, token: &str, email: &str) -> String {
    let reply = app
        .graphql_as(
            token,
            CREATE_CLIENT,
            json!({ "i": { "email": email, "fullName": "Client Name" } }),
        )
        .await;
    reply.json()["data"]["createClient"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", reply.json()))
        .to_owned()
}

async fn message(app: &TestApp, token: &str) -> String {
    let reply = app
        .graphql_as(
            token,
            CREATE_MESSAGE,
            json!({ "i": { "subject": "Hello", "body": "Hi {{full_name}}" } }),
        )
        .await;
    reply.json()["data"]["createMessage"]["id"].as_str().unwrap().to_owned()
}

fn mailing_input(message: &str, clients: &[&str]) -> Value {
    json!({
        "startsAt": "2030-01-31T09:00:00Z",
        "endsAt": "2030-06-30T09:00:00Z",
        "periodicity": "MONTHLY",
        "timeZone": "Europe/Berlin",
        "messageId": message,
        "clientIds": clients,
    })
}

fn assert_field_error(reply: &crate::common::Reply, field: &str) {
    assert_eq!(reply.error_code(), "BAD_USER_INPUT", "{}", reply.json());
    assert_eq!(
        reply.json()["errors"][0]["extensions"]["field"],
        field,
        "{}",
        reply.json()
    );
}

#[tokio::test]
async fn clients_round_trip_search_and_page() {
    let app = TestApp::new().await;
    let token = app.sign_up("owner@example.com").await;

    let reply = app
        .graphql_as(
            &token,
            CREATE_CLIENT,
            json!({ "i": { "email": "ann@example.com", "fullName": "Ann Lee", "comment": "VIP" } }),
        )
        .await;
    let ann = &reply.json()["data"]["createClient"];
    assert_eq!(ann["comment"], "VIP");
    assert_eq!(ann["unsubscribedAt"], Value::Null);
    let ann_id = ann["id"].as_str().unwrap().to_owned();
    for i in 0..4 {
        client(&app, &token, &format!("bob{i}@example.com")).await;
    }

    let updated = app
        .graphql_as(
            &token,
            "mutation($id: ID!, $i: ClientInput!) { updateClient(id: $id, input: $i) { email fullName comment } }",
            json!({ "id": ann_id, "i": { "email": "ann@example.org", "fullName": "Ann Smith" } }),
        )
        .await;
    assert_eq!(
        updated.json()["data"]["updateClient"],
        json!({ "email": "ann@example.org", "fullName": "Ann Smith", "comment": "" })
    );

    let search = app
        .graphql_as(
            &token,
            "{ clients(search: \"smith\") { totalCount nodes { email } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        search.json()["data"]["clients"],
        json!({ "totalCount": 1, "nodes": [{ "email": "ann@example.org" }] })
    );
    // LIKE wildcards in a search are plain characters.
    let wildcard = app
        .graphql_as(&token, "{ clients(search: \"%\") { totalCount } }", json!({}))
        .await;
    assert_eq!(wildcard.json()["data"]["clients"]["totalCount"], 0);

    // Pages of 2 over 5 clients, newest first, no row twice.
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = app
            .graphql_as(
                &token,
                "query($a: String) { clients(first: 2, after: $a) { totalCount pageInfo { hasNextPage endCursor } nodes { email } } }",
                json!({ "a": after }),
            )
            .await
            .json();
        let clients = &page["data"]["clients"];
        assert_eq!(clients["totalCount"], 5);
        seen.extend(
            clients["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["email"].as_str().unwrap().to_owned()),
        );
        if !clients["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = clients["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0], "bob3@example.com");
    assert_eq!(seen.iter().collect::<std::collections::HashSet<_>>().len(), 5);

    let bad_page = app
        .graphql_as(&token, "{ clients(first: 500) { totalCount } }", json!({}))
        .await;
    assert_field_error(&bad_page, "first");
    let bad_cursor = app
        .graphql_as(&token, "{ clients(after: \"xyz\") { totalCount } }", json!({}))
        .await;
    assert_field_error(&bad_cursor, "after");

    let deleted = app
        .graphql_as(
            &token,
            "mutation($id: ID!) { deleteClient(id: $id) }",
            json!({ "id": ann_id }),
        )
        .await;
    assert_eq!(deleted.json()["data"]["deleteClient"], true);
    let gone = app
        .graphql_as(
            &token,
            "query($id: ID!) { client(id: $id) { id } }",
            json!({ "id": ann_id }),
        )
        .await;
    assert_eq!(gone.json()["data"]["client"], Value::Null);
    // The address is free again once the client is deleted.
    client(&app, &token, "ann@example.org").await;
}

#[tokio::test]
async fn client_validation_and_duplicates() {
    let app = TestApp::new().await;
    let token = app.sign_up("owner@example.com").await;
    let cases = [
        (json!({ "email": "nope", "fullName": "X" }), "input.email"),
        (json!({ "email": "a@example.com", "fullName": " " }), "input.fullName"),
        (
            json!({ "email": "a@example.com", "fullName": "x".repeat(201) }),
            "input.fullName",
        ),
        (
            json!({ "email": "a@example.com", "fullName": "X", "comment": "c".repeat(2001) }),
            "input.comment",
        ),
    ];
    for (input, field) in cases {
        assert_field_error(
            &app.graphql_as(&token, CREATE_CLIENT, json!({ "i": input })).await,
            field,
        );
    }
    client(&app, &token, "dup@example.com").await;
    let twice = app
        .graphql_as(
            &token,
            CREATE_CLIENT,
            json!({ "i": { "email": "DUP@example.com", "fullName": "X" } }),
        )
        .await;
    assert_eq!(twice.error_code(), "CONFLICT");
    assert_eq!(twice.json()["errors"][0]["extensions"]["field"], "input.email");

    // Another owner may have a client with the same address.
    let other = app.sign_up("other@example.com").await;
    client(&app, &other, "dup@example.com").await;

    let anonymous = app
        .graphql(
            CREATE_CLIENT,
            json!({ "i": { "email": "a@example.com", "fullName": "X" } }),
        )
        .await;
    assert_eq!(anonymous.error_code(), "UNAUTHENTICATED");
}

#[tokio::test]
async fn messages_round_trip_validate_and_refuse_deletion_in_use() {
    let app = TestApp::new().await;
    let token = app.sign_up("owner@example.com").await;
    let id = message(&app, &token).await;

    let updated = app
        .graphql_as(
            &token,
            "mutation($id: ID!, $i: MessageInput!) { updateMessage(id: $id, input: $i) { subject body } }",
            json!({ "id": id, "i": { "subject": "New", "body": "Text" } }),
        )
        .await;
    assert_eq!(
        updated.json()["data"]["updateMessage"],
        json!({ "subject": "New", "body": "Text" })
    );
    let listed = app
        .graphql_as(&token, "{ messages { totalCount nodes { subject } } }", json!({}))
        .await;
    assert_eq!(
        listed.json()["data"]["messages"],
        json!({ "totalCount": 1, "nodes": [{ "subject": "New" }] })
    );

    for (input, field) in [
        (json!({ "subject": "", "body": "x" }), "input.subject"),
        (json!({ "subject": "s".repeat(999), "body": "x" }), "input.subject"),
        (json!({ "subject": "two\nlines", "body": "x" }), "input.subject"),
        (
            json!({ "subject": "s", "body": "b".repeat(1024 * 1024 + 1) }),
            "input.body",
        ),
    ] {
        assert_field_error(
            &app.graphql_as(&token, CREATE_MESSAGE, json!({ "i": input })).await,
            field,
        );
    }

    let c = client(&app, &token, "c@example.com").await;
    let mailing = app
        .graphql_as(&token, CREATE_MAILING, json!({ "i": mailing_input(&id, &[&c]) }))
        .await;
    let mailing_id = mailing.json()["data"]["createMailing"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = app
        .graphql_as(
            &token,
            "mutation($id: ID!) { deleteMessage(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(refused.error_code(), "CONFLICT");
    app.graphql_as(
        &token,
        "mutation($id: ID!) { deleteMailing(id: $id) }",
        json!({ "id": mailing_id }),
    )
    .await;
    let allowed = app
        .graphql_as(
            &token,
            "mutation($id: ID!) { deleteMessage(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(allowed.json()["data"]["deleteMessage"], true, "{}", allowed.json());
}

#[tokio::test]
async fn mailings_round_trip_with_schedule_status_and_next_run() {
    let app = TestApp::new().await;
    let token = app.sign_up("owner@example.com").await;
    let m = message(&app, &token).await;
    let a = client(&app, &token, "a@example.com").await;
    let b = client(&app, &token, "b@example.com").await;

    let created = app
        .graphql_as(&token, CREATE_MAILING, json!({ "i": mailing_input(&m, &[&a, &b, &a]) }))
        .await;
    let mailing = &created.json()["data"]["createMailing"];
    assert_eq!(mailing["status"], "CREATED", "{}", created.json());
    assert_eq!(mailing["periodicity"], "MONTHLY");
    assert_eq!(mailing["timeZone"], "Europe/Berlin");
    assert_eq!(mailing["paused"], false);
    assert_eq!(mailing["nextRunAt"], "2030-01-31T09:00:00+00:00");
    assert_eq!(mailing["message"]["subject"], "Hello");
    assert_eq!(mailing["owner"]["email"], "owner@example.com");
    assert_eq!(mailing["clients"]["totalCount"], 2, "duplicate ids count once");
    let id = mailing["id"].as_str().unwrap().to_owned();

    // Update: one client, weekly, UTC by default; the next run is recomputed.
    let mut input = mailing_input(&m, &[&b]);
    input["periodicity"] = json!("WEEKLY");
    input["timeZone"] = Value::Null;
    input["startsAt"] = json!("2031-03-03T10:00:00Z");
    input["endsAt"] = Value::Null;
    let updated = app
        .graphql_as(
            &token,
            "mutation($id: ID!, $i: MailingInput!) { updateMailing(id: $id, input: $i) { periodicity timeZone nextRunAt endsAt clients { nodes { email } } } }",
            json!({ "id": id, "i": input }),
        )
        .await;
    assert_eq!(
        updated.json()["data"]["updateMailing"],
        json!({ "periodicity": "WEEKLY", "timeZone": "UTC", "nextRunAt": "2031-03-03T10:00:00+00:00", "endsAt": null,
                "clients": { "nodes": [{ "email": "b@example.com" }] } })
    );

    let listed = app
        .graphql_as(
            &token,
            "{ mailings(status: CREATED) { totalCount } all: mailings { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed.json()["data"],
        json!({ "mailings": { "totalCount": 1 }, "all": { "totalCount": 1 } })
    );
    let running = app
        .graphql_as(&token, "{ mailings(status: RUNNING) { totalCount } }", json!({}))
        .await;
    assert_eq!(running.json()["data"]["mailings"]["totalCount"], 0);

    // A deleted client drops out of the mailing's clients.
    app.graphql_as(
        &token,
        "mutation($id: ID!) { deleteClient(id: $id) }",
        json!({ "id": b }),
    )
    .await;
    let after_delete = app
        .graphql_as(
            &token,
            "query($id: ID!) { mailing(id: $id) { clients { totalCount } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(after_delete.json()["data"]["mailing"]["clients"]["totalCount"], 0);

    let deleted = app
        .graphql_as(
            &token,
            "mutation($id: ID!) { deleteMailing(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(deleted.json()["data"]["deleteMailing"], true);
    let gone = app
        .graphql_as(
            &token,
            "query($id: ID!) { mailing(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(gone.json()["data"]["mailing"], Value::Null);
}

#[tokio::test]
async fn mailing_validation_names_the_field() {
    let app = TestApp::new().await;
    let token = app.sign_up("owner@example.com").await;
    let other = app.sign_up("other@example.com").await;
    let m = message(&app, &token).await;
    let c = client(&app, &token, "c@example.com").await;
    let foreign_client = client(&app, &other, "x@example.com").await;
    let foreign_message = message(&app, &other).await;

    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut input = mailing_input(&m, &[&c]);
    input["endsAt"] = json!("2030-01-31T09:00:00Z");
    cases.push((input, "input.endsAt"));
    let mut input = mailing_input(&m, &[&c]);
    input["timeZone"] = json!("Mars/Olympus_Mons");
    cases.push((input, "input.timeZone"));
    cases.push((mailing_input(&m, &[]), "input.clientIds"));
    cases.push((mailing_input(&m, &[&foreign_client]), "input.clientIds"));
    cases.push((mailing_input(&m, &["not-a-uuid"]), "input.clientIds"));
    cases.push((mailing_input(&foreign_message, &[&c]), "input.messageId"));
    let too_many: Vec<String> = (0..10_001).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    cases.push((mailing_input(&m, &too_many), "input.clientIds"));
    for (input, field) in cases {
        assert_field_error(
            &app.graphql_as(&token, CREATE_MAILING, json!({ "i": input })).await,
            field,
        );
    }
    let none = app.graphql_as(&token, "{ mailings { totalCount } }", json!({})).await;
    assert_eq!(none.json()["data"]["mailings"]["totalCount"], 0, "nothing half-created");
}

#[tokio::test]
async fn another_account_sees_and_changes_nothing() {
    let app = TestApp::new().await;
    let owner = app.sign_up("owner@example.com").await;
    let intruder = app.sign_up("intruder@example.com").await;
    let m = message(&app, &owner).await;
    let c = client(&app, &owner, "c@example.com").await;
    let created = app
        .graphql_as(&owner, CREATE_MAILING, json!({ "i": mailing_input(&m, &[&c]) }))
        .await;
    let mailing = created.json()["data"]["createMailing"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Reads: null, exactly like a missing id.
    let reads = app
        .graphql_as(
            &intruder,
            "query($c: ID!, $m: ID!, $g: ID!) { client(id: $c) { id } message(id: $m) { id } mailing(id: $g) { id } }",
            json!({ "c": c, "m": m, "g": mailing }),
        )
        .await;
    assert_eq!(
        reads.json()["data"],
        json!({ "client": null, "message": null, "mailing": null })
    );

    // Lists and counts contain none of the owner's rows.
    let lists = app
        .graphql_as(
            &intruder,
            "{ clients { totalCount nodes { id } } messages { totalCount } mailings { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(
        lists.json()["data"],
        json!({ "clients": { "totalCount": 0, "nodes": [] }, "messages": { "totalCount": 0 }, "mailings": { "totalCount": 0 } })
    );

    // Writes: NOT_FOUND, exactly like a missing id, and nothing changes.
    let writes = [
        (
            "mutation($id: ID!) { updateClient(id: $id, input: { email: \"h@x.io\", fullName: \"H\" }) { id } }",
            &c,
        ),
        ("mutation($id: ID!) { deleteClient(id: $id) }", &c),
        (
            "mutation($id: ID!) { updateMessage(id: $id, input: { subject: \"H\", body: \"H\" }) { id } }",
            &m,
        ),
        ("mutation($id: ID!) { deleteMessage(id: $id) }", &m),
        ("mutation($id: ID!) { deleteMailing(id: $id) }", &mailing),
    ];
    for (query, id) in writes {
        let reply = app.graphql_as(&intruder, query, json!({ "id": id })).await;
        assert_eq!(reply.error_code(), "NOT_FOUND", "{query}: {}", reply.json());
        let missing = app
            .graphql_as(&intruder, query, json!({ "id": uuid::Uuid::new_v4().to_string() }))
            .await;
        assert_eq!(
            reply.json()["errors"][0]["message"],
            missing.json()["errors"][0]["message"]
        );
    }
    let update = app
        .graphql_as(
            &intruder,
            "mutation($id: ID!, $i: MailingInput!) { updateMailing(id: $id, input: $i) { id } }",
            json!({ "id": mailing, "i": mailing_input(&m, &[&c]) }),
        )
        .await;
    assert_eq!(update.error_code(), "NOT_FOUND");

    let still = app
        .graphql_as(
            &owner,
            "query($c: ID!, $g: ID!) { client(id: $c) { email } mailing(id: $g) { clients { totalCount } } }",
            json!({ "c": c, "g": mailing }),
        )
        .await;
    assert_eq!(
        still.json()["data"],
        json!({ "client": { "email": "c@example.com" }, "mailing": { "clients": { "totalCount": 1 } } })
    );
}
