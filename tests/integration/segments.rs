//! Segments: conditions on built-in fields and attributes, compiled to SQL with bound
//! values; listing clients by segment and tagging a segment in one statement.

use mailwarm::accounts::role::Role;
use serde_json::{Value, json};

use crate::common::TestApp;

const LIST: &str = "query($s: SegmentInput) { clients(first: 100, segment: $s) { totalCount nodes { email } } }";

async fn emails(app: &TestApp, token: &str, segment: Value) -> Vec<String> {
    let reply = app.graphql_as(token, LIST, json!({ "s": segment })).await.json();
    let mut emails: Vec<String> = reply["data"]["clients"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{segment} -> {reply}"))
        .iter()
        .map(|c| c["email"].as_str().unwrap().to_owned())
        .collect();
    emails.sort();
    emails
}

fn all(conditions: Value) -> Value {
    json!({ "match": "ALL", "conditions": conditions })
}

#[tokio::test]
async fn segments_select_clients_by_fields_and_attributes_with_values_bound() {
    let app = TestApp::new().await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    let bob = app.verified_user("bob@example.com", Role::User).await;
    let create = "mutation($i: ClientInput!) { createClient(input: $i) { id } }";
    for input in [
        json!({ "email": "a@acme.com", "fullName": "Alice 100%_sure", "attributes": { "plan": "pro", "seats": 12, "renews": "2030-05-01" } }),
        json!({ "email": "b@acme.com", "fullName": "Bob", "comment": "met at the fair", "attributes": { "plan": "free", "seats": 3 } }),
        json!({ "email": "c@other.org", "fullName": "Carol", "attributes": { "plan": "pro", "seats": "many", "renews": "2029-01-01" } }),
        json!({ "email": "d@other.org", "fullName": "Dan" }),
    ] {
        let reply = app.graphql_as(&ann, create, json!({ "i": input })).await.json();
        assert!(reply["errors"].is_null(), "{reply}");
    }
    // Bob's client matches everything below, and is never Ann's.
    app.graphql_as(
        &bob,
        create,
        json!({ "i": { "email": "z@acme.com", "fullName": "Zed", "attributes": { "plan": "pro", "seats": 99 } } }),
    )
    .await;

    let cases = [
        (
            all(json!([{ "field": "attributes.plan", "op": "EQ", "value": "pro" }])),
            vec!["a@acme.com", "c@other.org"],
        ),
        (
            all(json!([{ "field": "attributes.plan", "op": "NE", "value": "pro" }])),
            vec!["b@acme.com", "d@other.org"],
        ),
        (
            all(json!([{ "field": "attributes.seats", "op": "GT", "value": "5" }])),
            vec!["a@acme.com"],
        ),
        (
            all(json!([{ "field": "attributes.seats", "op": "LT", "value": "5.5" }])),
            vec!["b@acme.com"],
        ),
        (
            all(json!([{ "field": "attributes.renews", "op": "LT", "value": "2030-01-01" }])),
            vec!["c@other.org"],
        ),
        (
            all(json!([{ "field": "attributes.renews", "op": "EXISTS" }])),
            vec!["a@acme.com", "c@other.org"],
        ),
        (
            all(json!([{ "field": "email", "op": "CONTAINS", "value": "ACME" }])),
            vec!["a@acme.com", "b@acme.com"],
        ),
        (
            all(json!([{ "field": "email", "op": "EQ", "value": "B@ACME.COM" }])),
            vec!["b@acme.com"],
        ),
        (
            all(json!([{ "field": "fullName", "op": "CONTAINS", "value": "100%_" }])),
            vec!["a@acme.com"],
        ),
        (
            all(json!([{ "field": "fullName", "op": "CONTAINS", "value": "%" }])),
            vec!["a@acme.com"],
        ),
        (all(json!([{ "field": "comment", "op": "EXISTS" }])), vec!["b@acme.com"]),
        (
            all(json!([{ "field": "createdAt", "op": "GT", "value": "2000-01-01" }])),
            vec!["a@acme.com", "b@acme.com", "c@other.org", "d@other.org"],
        ),
        (
            all(json!([{ "field": "createdAt", "op": "LT", "value": "2000-01-01T00:00:00Z" }])),
            vec![],
        ),
        (
            all(json!([
                { "field": "attributes.plan", "op": "EQ", "value": "pro" },
                { "field": "email", "op": "CONTAINS", "value": "other" },
            ])),
            vec!["c@other.org"],
        ),
        (
            json!({ "match": "ANY", "conditions": [
                { "field": "attributes.seats", "op": "LT", "value": "5" },
                { "field": "fullName", "op": "EQ", "value": "Dan" },
            ] }),
            vec!["b@acme.com", "d@other.org"],
        ),
        // A value is a value: it matches as text, and runs nothing.
        (
            all(json!([{ "field": "fullName", "op": "EQ", "value": "x' OR '1'='1" }])),
            vec![],
        ),
        (
            all(json!([{ "field": "attributes.plan", "op": "EQ", "value": "pro'); DROP TABLE clients; --" }])),
            vec![],
        ),
    ];
    for (segment, expected) in cases {
        assert_eq!(emails(&app, &ann, segment.clone()).await, expected, "{segment}");
    }
    assert_eq!(
        emails(&app, &ann, Value::Null).await.len(),
        4,
        "the table is still there"
    );

    // Bad conditions name their place.
    for (segment, field) in [
        (
            all(json!([{ "field": "password_hash", "op": "EQ", "value": "x" }])),
            "segment.conditions.0.field",
        ),
        (
            all(json!([{ "field": "attributes.a b", "op": "EXISTS" }])),
            "segment.conditions.0.field",
        ),
        (
            all(json!([{ "field": "email", "op": "EQ" }])),
            "segment.conditions.0.value",
        ),
        (
            all(
                json!([{ "field": "email", "op": "EXISTS" }, { "field": "attributes.seats", "op": "GT", "value": "lots" }]),
            ),
            "segment.conditions.1.value",
        ),
        (
            all(json!([{ "field": "createdAt", "op": "EQ", "value": "2020-01-01" }])),
            "segment.conditions.0.op",
        ),
        (all(json!([])), "segment.conditions"),
    ] {
        let reply = app.graphql_as(&ann, LIST, json!({ "s": segment })).await.json();
        assert_eq!(reply["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{reply}");
        assert_eq!(reply["errors"][0]["extensions"]["field"], field, "{reply}");
    }

    // Tagging a segment: one statement, the owner's clients only, twice is once.
    let tag = app
        .graphql_as(&ann, "mutation { createTag(name: \"pro\") { id } }", json!({}))
        .await
        .json()["data"]["createTag"]["id"]
        .clone();
    let tag_segment = "mutation($t: ID!, $s: SegmentInput) { tagClients(tagId: $t, segment: $s) }";
    let segment = all(json!([{ "field": "attributes.plan", "op": "EQ", "value": "pro" }]));
    for expected in [2, 0] {
        let reply = app
            .graphql_as(&ann, tag_segment, json!({ "t": tag, "s": segment }))
            .await
            .json();
        assert_eq!(reply["data"]["tagClients"], expected, "{reply}");
    }
    let reply = app
        .graphql_as(&ann, "mutation($t: ID!) { tagClients(tagId: $t) }", json!({ "t": tag }))
        .await
        .json();
    assert_eq!(reply["errors"][0]["extensions"]["field"], "clientIds", "{reply}");
    let reply = app
        .graphql_as(&ann, "{ tags { name clientCount } }", json!({}))
        .await
        .json();
    assert_eq!(
        reply["data"]["tags"],
        json!([{ "name": "pro", "clientCount": 2 }]),
        "{reply}"
    );
}
