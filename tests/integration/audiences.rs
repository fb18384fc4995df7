//! Audiences: a mailing reaches all clients, picked clients, tags and a segment, worked out
//! when each run starts; its size is known before; an edit that names no audience keeps it.

use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use mailwarm::accounts::role::Role;
use serde_json::{Value, json};

use crate::common::TestApp;

const SIZE: &str = "query($a: AudienceInput!) { audienceSize(audience: $a) }";
const CREATE: &str = "mutation($i: MailingInput!) { createMailing(input: $i) { id } }";
const UPDATE: &str = "mutation($id: ID!, $i: MailingInput!) { updateMailing(id: $id, input: $i) { id } }";
const AUDIENCE: &str = "query($id: ID!) { mailing(id: $id) { stats { recipients } audience { allClients \
    tags { name } segment { match conditions { field op value } } size clients { nodes { email } } } \
    clients(first: 100) { totalCount nodes { email } } } }";

async fn client(app: &TestApp, token: &str, email: &str, attributes: Value) -> String {
    let reply = app
        .graphql_as(
            token,
            "mutation($i: ClientInput!) { createClient(input: $i) { id } }",
            json!({ "i": { "email": email, "fullName": "C", "attributes": attributes } }),
        )
        .await
        .json();
    reply["data"]["createClient"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"))
        .to_owned()
}

async fn size(app: &TestApp, token: &str, audience: Value) -> Value {
    let reply = app.graphql_as(token, SIZE, json!({ "a": audience })).await.json();
    reply["data"]["audienceSize"].clone()
}

fn pro() -> Value {
    json!({ "match": "ALL", "conditions": [{ "field": "attributes.plan", "op": "EQ", "value": "pro" }] })
}

/// Ann's clients: three on plan pro (one tagged vip), one free (tagged vip), one
/// unsubscribed pro and one deleted pro; Bob has a pro client too.
struct World {
    app: TestApp,
    ann: String,
    bob: String,
    message: String,
    vip: String,
    free: String,
}

async fn world(dispatching: bool) -> World {
    let app = if dispatching {
        TestApp::dispatching(&["--dispatch-interval", "200ms"]).await
    } else {
        TestApp::new().await
    };
    let ann = app.verified_user("ann@example.com", Role::User).await;
    let bob = app.verified_user("bob@example.com", Role::User).await;
    let message = app.new_message(&ann).await.as_str().unwrap().to_owned();
    let p1 = client(&app, &ann, "p1@acme.com", json!({ "plan": "pro" })).await;
    client(&app, &ann, "p2@acme.com", json!({ "plan": "pro", "seats": 3 })).await;
    client(&app, &ann, "p3@acme.com", json!({ "plan": "pro" })).await;
    let free = client(&app, &ann, "free@acme.com", json!({ "plan": "free" })).await;
    let gone = client(&app, &ann, "gone@acme.com", json!({ "plan": "pro" })).await;
    client(&app, &ann, "left@acme.com", json!({ "plan": "pro" })).await;
    client(&app, &bob, "bob-pro@acme.com", json!({ "plan": "pro" })).await;
    let reply = app
        .graphql_as(
            &ann,
            "mutation($id: ID!) { deleteClient(id: $id) }",
            json!({ "id": gone }),
        )
        .await
        .json();
    assert_eq!(reply["data"]["deleteClient"], true, "{reply}");
    let mut conn = app.db.conn().await;
    diesel::sql_query("UPDATE clients SET unsubscribed_at = now() WHERE email = 'left@acme.com'")
        .execute(&mut conn)
        .await
        .unwrap();
    let vip = app
        .graphql_as(&ann, "mutation { createTag(name: \"vip\") { id } }", json!({}))
        .await
        .json()["data"]["createTag"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = app
        .graphql_as(
            &ann,
            "mutation($t: ID!, $c: [ID!]) { tagClients(tagId: $t, clientIds: $c) }",
            json!({ "t": vip, "c": [p1, free] }),
        )
        .await
        .json();
    assert_eq!(reply["data"]["tagClients"], 2, "{reply}");
    World {
        app,
        ann,
        bob,
        message,
        vip,
        free,
    }
}

#[tokio::test]
async fn audience_size_counts_live_subscribed_clients_in_any_part() {
    let w = world(false).await;
    let (app, ann) = (&w.app, &w.ann);
    assert_eq!(size(app, ann, json!({ "allClients": true })).await, 4);
    assert_eq!(size(app, ann, json!({ "segment": pro() })).await, 3);
    assert_eq!(size(app, ann, json!({ "tagIds": [w.vip] })).await, 2);
    // A union: the free vip joins the pro clients.
    assert_eq!(size(app, ann, json!({ "tagIds": [w.vip], "segment": pro() })).await, 4);
    assert_eq!(
        size(app, ann, json!({ "clientIds": [w.free], "segment": pro() })).await,
        4
    );
    assert_eq!(size(app, ann, json!({})).await, 0);
    // Bob's audience of everyone is his one client; Ann's tag is not his to use.
    assert_eq!(size(app, &w.bob, json!({ "allClients": true })).await, 1);
    let reply = app
        .graphql_as(&w.bob, SIZE, json!({ "a": { "tagIds": [w.vip] } }))
        .await;
    assert_eq!(reply.error_code(), "BAD_USER_INPUT");
    assert_eq!(reply.json()["errors"][0]["extensions"]["field"], "audience.tagIds");
    let reply = app
        .graphql_as(
            ann,
            SIZE,
            json!({ "a": { "segment": { "match": "ALL", "conditions": [{ "field": "attributes.x y", "op": "EQ", "value": "1" }] } } }),
        )
        .await;
    assert_eq!(
        reply.json()["errors"][0]["extensions"]["field"],
        "audience.segment.conditions.0.field"
    );
}

#[tokio::test]
async fn an_edit_that_names_no_audience_keeps_it_and_one_that_does_replaces_it() {
    let w = world(false).await;
    let (app, ann) = (&w.app, &w.ann);
    let input = |audience: Option<Value>| {
        let mut input = json!({ "startsAt": "2030-01-01T09:00:00Z", "periodicity": "DAILY", "messageId": w.message });
        if let Some(audience) = audience {
            input["audience"] = audience;
        }
        input
    };
    let reply = app.graphql_as(ann, CREATE, json!({ "i": input(None) })).await;
    assert_eq!(reply.error_code(), "BAD_USER_INPUT", "{}", reply.json());
    assert_eq!(reply.json()["errors"][0]["extensions"]["field"], "input.audience");
    let reply = app
        .graphql_as(ann, CREATE, json!({ "i": input(Some(json!({ "allClients": false }))) }))
        .await;
    assert_eq!(reply.json()["errors"][0]["extensions"]["field"], "input.audience");

    let audience = json!({ "tagIds": [w.vip], "segment": pro(), "clientIds": [w.free] });
    let reply = app
        .graphql_as(ann, CREATE, json!({ "i": input(Some(audience)) }))
        .await
        .json();
    let id = reply["data"]["createMailing"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"))
        .to_owned();
    let read = || async { app.graphql_as(ann, AUDIENCE, json!({ "id": id })).await.json()["data"]["mailing"].clone() };
    let before = read().await;
    assert_eq!(before["audience"]["allClients"], false);
    assert_eq!(before["audience"]["tags"], json!([{ "name": "vip" }]));
    assert_eq!(
        before["audience"]["segment"],
        json!({ "match": "ALL", "conditions": [{ "field": "attributes.plan", "op": "EQ", "value": "pro" }] })
    );
    assert_eq!(before["audience"]["size"], 4);
    assert_eq!(
        before["audience"]["clients"]["nodes"],
        json!([{ "email": "free@acme.com" }])
    );
    assert_eq!(before["stats"]["recipients"], 4);
    assert_eq!(before["clients"]["totalCount"], 4);

    // The schedule changes; the audience stays exactly as it was.
    let mut moved = input(None);
    moved["startsAt"] = json!("2031-01-01T09:00:00Z");
    let reply = app
        .graphql_as(ann, UPDATE, json!({ "id": id, "i": moved }))
        .await
        .json();
    assert!(reply["errors"].is_null(), "{reply}");
    assert_eq!(read().await, before);

    // Naming an audience replaces it whole.
    let reply = app
        .graphql_as(
            ann,
            UPDATE,
            json!({ "id": id, "i": input(Some(json!({ "allClients": true }))) }),
        )
        .await
        .json();
    assert!(reply["errors"].is_null(), "{reply}");
    let after = read().await;
    assert_eq!(after["audience"]["allClients"], true);
    assert_eq!(after["audience"]["tags"], json!([]));
    assert_eq!(after["audience"]["segment"], Value::Null);
    assert_eq!(after["audience"]["clients"]["nodes"], json!([]));
    assert_eq!(after["audience"]["size"], 4);

    // clientIds alone still works as it always did: those clients exactly.
    let mut picked = input(None);
    picked["clientIds"] = json!([w.free]);
    let reply = app
        .graphql_as(ann, UPDATE, json!({ "id": id, "i": picked }))
        .await
        .json();
    assert!(reply["errors"].is_null(), "{reply}");
    let after = read().await;
    assert_eq!(after["audience"]["allClients"], false);
    assert_eq!(after["audience"]["size"], 1);

    // Bob's tag, client or a deleted tag are no part of Ann's audience.
    let bob_tag = app
        .graphql_as(&w.bob, "mutation { createTag(name: \"b\") { id } }", json!({}))
        .await
        .json()["data"]["createTag"]["id"]
        .clone();
    let reply = app
        .graphql_as(
            ann,
            UPDATE,
            json!({ "id": id, "i": input(Some(json!({ "tagIds": [bob_tag] }))) }),
        )
        .await;
    assert_eq!(
        reply.json()["errors"][0]["extensions"]["field"],
        "input.audience.tagIds"
    );
    assert_eq!(read().await["audience"]["size"], 1, "a refused edit changes nothing");
}

/// Waits until the mailing has `runs` runs and every delivery is SENT; returns the e-mail
/// addresses each run reached, oldest run first.
async fn reached(app: &TestApp, token: &str, id: &str, runs: usize) -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = app
            .graphql_as(
                token,
                "query($id: ID!) { mailing(id: $id) { runs(first: 10) { nodes { runAt } } \
                 deliveries(first: 100) { nodes { email status runAt } } } }",
                json!({ "id": id }),
            )
            .await
            .json();
        let mut run_times: Vec<String> = reply["data"]["mailing"]["runs"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| r["runAt"].as_str().unwrap().to_owned())
            .collect();
        run_times.sort();
        let deliveries = reply["data"]["mailing"]["deliveries"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // The two fields are read by separate statements: a run seen without deliveries
        // started between them.
        let every_run_seen = run_times
            .iter()
            .all(|at| deliveries.iter().any(|d| d["runAt"].as_str() == Some(at.as_str())));
        if run_times.len() == runs && every_run_seen && deliveries.iter().all(|d| d["status"] == "SENT") {
            return run_times
                .iter()
                .map(|at| {
                    let mut emails: Vec<String> = deliveries
                        .iter()
                        .filter(|d| d["runAt"].as_str() == Some(at.as_str()))
                        .map(|d| d["email"].as_str().unwrap().to_owned())
                        .collect();
                    emails.sort();
                    emails
                })
                .collect();
        }
        assert!(Instant::now() < deadline, "runs did not settle: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn each_run_reaches_the_segment_as_it_is_when_the_run_starts() {
    let w = world(true).await;
    let (app, ann) = (&w.app, &w.ann);
    let starts = (chrono::Utc::now() - chrono::TimeDelta::seconds(1)).to_rfc3339();
    let reply = app
        .graphql_as(
            ann,
            CREATE,
            json!({ "i": { "startsAt": starts, "periodicity": "DAILY", "messageId": w.message, "audience": { "segment": pro() } } }),
        )
        .await
        .json();
    let id = reply["data"]["createMailing"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"))
        .to_owned();
    let first = reached(app, ann, &id, 1).await;
    assert_eq!(first, vec![vec!["p1@acme.com", "p2@acme.com", "p3@acme.com"]]);

    // A client who arrives after the first run, and one who leaves the segment.
    client(app, ann, "new@acme.com", json!({ "plan": "pro" })).await;
    let reply = app
        .graphql_as(
            ann,
            "mutation { importClients(csv: \"email,full_name,plan\\np3@acme.com,C,free\\n\") { updated } }",
            json!({}),
        )
        .await
        .json();
    assert_eq!(reply["data"]["importClients"]["updated"], 1, "{reply}");
    // The next day comes early: the first run moves a day back, the mailing is due again.
    let mut conn = app.db.conn().await;
    diesel::sql_query(
        "WITH moved AS (UPDATE runs SET run_at = run_at - interval '1 day' WHERE mailing_id = $1::uuid RETURNING 1) \
         UPDATE mailings SET starts_at = starts_at - interval '1 day', next_run_at = now() WHERE id = $1::uuid",
    )
    .bind::<diesel::sql_types::Text, _>(&id)
    .execute(&mut conn)
    .await
    .unwrap();
    let both = reached(app, ann, &id, 2).await;
    assert_eq!(
        both[1],
        vec!["new@acme.com", "p1@acme.com", "p2@acme.com"],
        "runs: {both:?}"
    );
}

#[tokio::test]
async fn a_stored_segment_that_no_longer_reads_matches_nobody_and_stops_nothing() {
    let w = world(true).await;
    let (app, ann) = (&w.app, &w.ann);
    let starts = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let reply = app
        .graphql_as(
            ann,
            CREATE,
            json!({ "i": { "startsAt": starts, "periodicity": "ONCE", "messageId": w.message,
                           "audience": { "clientIds": [w.free], "segment": pro() } } }),
        )
        .await
        .json();
    let id = reply["data"]["createMailing"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"))
        .to_owned();
    // Rows written by hand or by another version: a key the rules refuse, and no segment at all.
    let mut conn = app.db.conn().await;
    for stored in [
        r#"{"match": "ALL", "conditions": [{"field": "attributes.bad key", "op": "EQ", "value": "x"}]}"#,
        r#""garbage""#,
    ] {
        diesel::sql_query("UPDATE mailings SET audience_segment = $2::jsonb WHERE id = $1::uuid")
            .bind::<diesel::sql_types::Text, _>(&id)
            .bind::<diesel::sql_types::Text, _>(stored)
            .execute(&mut conn)
            .await
            .unwrap();
        let read = app.graphql_as(ann, AUDIENCE, json!({ "id": id })).await.json();
        assert!(read["errors"].is_null(), "{read}");
        assert_eq!(read["data"]["mailing"]["audience"]["segment"], Value::Null);
        assert_eq!(
            read["data"]["mailing"]["audience"]["size"], 1,
            "the picked client only: {read}"
        );
    }
    // The run goes out to the part that still reads.
    diesel::sql_query(
        "UPDATE mailings SET starts_at = now() - interval '1 second', next_run_at = now() - interval '1 second' \
         WHERE id = $1::uuid",
    )
    .bind::<diesel::sql_types::Text, _>(&id)
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(reached(app, ann, &id, 1).await, vec![vec!["free@acme.com"]]);
}
