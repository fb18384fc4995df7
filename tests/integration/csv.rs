//! CSV import and export of clients.

use crate::common::TestApp;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use mailwarm::accounts::role::Role;
use serde_json::json;

const IMPORT: &str = "mutation($csv: String!) { importClients(csv: $csv) { created updated errors { line message } } }";

async fn export(app: &TestApp, token: &str) -> (StatusCode, String) {
    let reply = app
        .send(
            Request::get("/export/clients.csv")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    (reply.status, String::from_utf8(reply.body).unwrap())
}

#[tokio::test]
async fn good_lines_are_imported_and_the_rest_reported_by_line() {
    let app = TestApp::new().await;
    let token = app.verified_user("ann@example.com", Role::User).await;
    app.graphql_as(
        &token,
        "mutation { createClient(input: { email: \"old@example.com\", fullName: \"Old Name\" }) { id } }",
        json!({}),
    )
    .await;
    let csv = "email,full_name,comment\n\
               new@example.com,New Client,likes tea\n\
               OLD@example.com,New Name,\n\
               broken,Nobody,\n\
               new@example.com,Again,\n\
               \"quoted@example.com\",\"Lee, Ann\",\"multi\nline\"\n\
               missing@example.com\n";
    let reply = app.graphql_as(&token, IMPORT, json!({ "csv": csv })).await;
    let result = &reply.json()["data"]["importClients"];
    assert_eq!(result["created"], 2, "{}", reply.json());
    assert_eq!(result["updated"], 1);
    let lines: Vec<i64> = result["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [4, 5, 8], "{result}");

    let clients = app
        .graphql_as(
            &token,
            "{ clients(search: \"old@\") { nodes { fullName } } }",
            json!({}),
        )
        .await;
    assert_eq!(clients.json()["data"]["clients"]["nodes"][0]["fullName"], "New Name");

    let no_header = app
        .graphql_as(&token, IMPORT, json!({ "csv": "a@example.com,A,\n" }))
        .await;
    assert_eq!(no_header.json()["errors"][0]["extensions"]["field"], "csv");
}

#[tokio::test]
async fn export_round_trips_and_defuses_formulas() {
    let app = TestApp::new().await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    let bob = app.verified_user("bob@example.com", Role::User).await;
    let csv = "email,full_name,comment\n\
               a@example.com,=cmd|' /C calc'!A0,+1\n\
               b@example.com,\"Lee, Ann\",@home\n\
               c@example.com,Cy,-\n";
    app.graphql_as(&ann, IMPORT, json!({ "csv": csv })).await;
    app.graphql_as(
        &bob,
        IMPORT,
        json!({ "csv": "email,full_name,comment\nbobs@example.com,Bobs client,\n" }),
    )
    .await;

    let (status, exported) = export(&app, &ann).await;
    assert_eq!(status, StatusCode::OK);
    assert!(exported.starts_with("email,full_name,comment\n"), "{exported}");
    assert!(
        exported.contains("a@example.com,'=cmd|' /C calc'!A0,'+1\n"),
        "{exported}"
    );
    assert!(exported.contains("b@example.com,\"Lee, Ann\",'@home\n"), "{exported}");
    assert!(!exported.contains("bobs@example.com"), "another user's client leaked");

    // Imported into another account, the export reads back the same clients.
    let cy = app.verified_user("cy@example.com", Role::User).await;
    let reply = app.graphql_as(&cy, IMPORT, json!({ "csv": exported })).await;
    assert_eq!(reply.json()["data"]["importClients"]["created"], 3, "{}", reply.json());
    let names = app
        .graphql_as(&cy, "{ clients { nodes { email fullName comment } } }", json!({}))
        .await
        .json()["data"]["clients"]["nodes"]
        .clone();
    let mut names: Vec<String> = names.as_array().unwrap().iter().map(|n| n.to_string()).collect();
    names.sort();
    let mut expected = [
        json!({ "email": "a@example.com", "fullName": "=cmd|' /C calc'!A0", "comment": "+1" }).to_string(),
        json!({ "email": "b@example.com", "fullName": "Lee, Ann", "comment": "@home" }).to_string(),
        json!({ "email": "c@example.com", "fullName": "Cy", "comment": "-" }).to_string(),
    ];
    expected.sort();
    assert_eq!(names, expected);

    let (anonymous, _) = export(&app, "not a token").await;
    assert_eq!(anonymous, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn csv_lines_fail_alone_and_cells_round_trip_through_export() {
    let app = TestApp::new().await;
    let token = app.verified_user("owner@example.com", Role::User).await;
    let csv = "email,full_name,comment\n\
               good1@example.com,Good One,\n\
               \"crlf@example.com\",\"Eve\r\nBcc: x@example.com\",\n\
               nul@example.com,Nul\u{0}Name,\n\
               \"quoted\"\"x\"\"@example.com\",Q,\n\
               good2@example.com,Good Two,\"multi\r\nline\"\n";
    let reply = app.graphql_as(&token, IMPORT, json!({ "csv": csv })).await.json();
    let result = &reply["data"]["importClients"];
    assert_eq!(result["created"], 2, "{reply}");
    let lines: Vec<i64> = result["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [3, 5, 6], "{reply}");
    let messages: Vec<&str> = result["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages[0].starts_with("full_name: must be a single line"),
        "{messages:?}"
    );
    assert!(
        messages[1].starts_with("full_name: must not contain control characters"),
        "{messages:?}"
    );
    assert!(messages[2].starts_with("email:"), "{messages:?}");

    // Cells starting with ' or a formula character go out defused and come back unchanged.
    for (email, name, comment) in [
        ("q1@example.com", "'quoted", "'=1+1"),
        ("q2@example.com", "=SUM(A1)", "''twice"),
        ("q3@example.com", "-minus", "@at"),
    ] {
        let reply = app
            .graphql_as(
                &token,
                "mutation($i: ClientInput!) { createClient(input: $i) { id } }",
                json!({ "i": { "email": email, "fullName": name, "comment": comment } }),
            )
            .await
            .json();
        assert!(reply["errors"].is_null(), "{reply}");
    }
    let before = clients(&app, &token).await;
    let (status, exported) = export(&app, &token).await;
    assert_eq!(status, 200);
    assert!(exported.contains("q1@example.com,''quoted,''=1+1"), "{exported}");
    let reply = app.graphql_as(&token, IMPORT, json!({ "csv": exported })).await.json();
    assert_eq!(reply["data"]["importClients"]["created"], 0, "{reply}");
    assert_eq!(reply["data"]["importClients"]["errors"], json!([]), "{reply}");
    assert_eq!(clients(&app, &token).await, before);
}

/// (email, fullName, comment) of every client, sorted.
async fn clients(app: &TestApp, token: &str) -> Vec<(String, String, String)> {
    let reply = app
        .graphql_as(
            token,
            "{ clients(first: 100) { nodes { email fullName comment } } }",
            json!({}),
        )
        .await
        .json();
    let mut rows: Vec<(String, String, String)> = reply["data"]["clients"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["email"].as_str().unwrap().to_owned(),
                c["fullName"].as_str().unwrap().to_owned(),
                c["comment"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    rows.sort();
    rows
}

const ATTRIBUTES: &str = "{ clients(first: 100) { nodes { email attributes } } }";

async fn attributes_of(app: &TestApp, token: &str) -> serde_json::Map<String, serde_json::Value> {
    let reply = app.graphql_as(token, ATTRIBUTES, json!({})).await.json();
    reply["data"]["clients"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|c| (c["email"].as_str().unwrap().to_owned(), c["attributes"].clone()))
        .collect()
}

#[tokio::test]
async fn attributes_are_set_checked_by_field_and_kept_unless_given() {
    let app = TestApp::new().await;
    let token = app.verified_user("ann@example.com", Role::User).await;
    let create = "mutation($i: ClientInput!) { createClient(input: $i) { id attributes } }";
    let reply = app
        .graphql_as(
            &token,
            create,
            json!({ "i": { "email": "bo@example.com", "fullName": "Bo",
                    "attributes": { "company": "Acme, Inc.", "seats": 12, "trial": false } } }),
        )
        .await
        .json();
    let id = reply["data"]["createClient"]["id"].clone();
    assert_eq!(
        reply["data"]["createClient"]["attributes"],
        json!({ "company": "Acme, Inc.", "seats": 12, "trial": false }),
        "{reply}"
    );
    // A client made without attributes has {}.
    let reply = app
        .graphql_as(
            &token,
            create,
            json!({ "i": { "email": "cy@example.com", "fullName": "Cy" } }),
        )
        .await
        .json();
    assert_eq!(reply["data"]["createClient"]["attributes"], json!({}), "{reply}");

    // Bad attributes name the field, and nothing is stored.
    for (attributes, field) in [
        (json!(["not", "an", "object"]), "input.attributes"),
        (json!({ "first name": "Bo" }), "input.attributes"),
        (json!({ "9lives": "x" }), "input.attributes"),
        (json!({ "plan": { "nested": true } }), "input.attributes.plan"),
        (json!({ "plan": null }), "input.attributes.plan"),
        (json!({ "note": "two\nlines" }), "input.attributes.note"),
        (json!({ "note": "x".repeat(501) }), "input.attributes.note"),
    ] {
        let reply = app
            .graphql_as(
                &token,
                create,
                json!({ "i": { "email": "dee@example.com", "fullName": "Dee", "attributes": attributes } }),
            )
            .await;
        assert_eq!(reply.error_code(), "BAD_USER_INPUT", "{attributes}: {}", reply.json());
        assert_eq!(
            reply.json()["errors"][0]["extensions"]["field"],
            field,
            "{}",
            reply.json()
        );
    }
    let many: serde_json::Map<String, serde_json::Value> = (0..51).map(|n| (format!("k{n}"), json!(n))).collect();
    let reply = app
        .graphql_as(
            &token,
            create,
            json!({ "i": { "email": "dee@example.com", "fullName": "Dee", "attributes": many } }),
        )
        .await;
    assert_eq!(reply.error_code(), "BAD_USER_INPUT", "{}", reply.json());
    assert!(!attributes_of(&app, &token).await.contains_key("dee@example.com"));

    // Updating without attributes keeps them; {} clears them.
    let update = "mutation($id: ID!, $i: ClientInput!) { updateClient(id: $id, input: $i) { attributes } }";
    let reply = app
        .graphql_as(
            &token,
            update,
            json!({ "id": id, "i": { "email": "bo@example.com", "fullName": "Bo B." } }),
        )
        .await
        .json();
    assert_eq!(reply["data"]["updateClient"]["attributes"]["seats"], 12, "{reply}");
    let reply = app
        .graphql_as(
            &token,
            update,
            json!({ "id": id, "i": { "email": "bo@example.com", "fullName": "Bo", "attributes": {} } }),
        )
        .await
        .json();
    assert_eq!(reply["data"]["updateClient"]["attributes"], json!({}), "{reply}");
}

#[tokio::test]
async fn extra_csv_columns_are_attributes_and_come_back_in_the_export() {
    let app = TestApp::new().await;
    let token = app.verified_user("ann@example.com", Role::User).await;
    let csv = "email,full_name,comment,company,plan\n\
               bo@example.com,Bo,,Acme,pro\n\
               cy@example.com,Cy,,,basic\n\
               dee@example.com,Dee,,\"=HYPERLINK(\"\"x\"\")\",\n";
    let reply = app.graphql_as(&token, IMPORT, json!({ "csv": csv })).await.json();
    assert_eq!(reply["data"]["importClients"]["created"], 3, "{reply}");
    let attributes = attributes_of(&app, &token).await;
    assert_eq!(
        attributes["bo@example.com"],
        json!({ "company": "Acme", "plan": "pro" })
    );
    // An empty cell sets nothing.
    assert_eq!(attributes["cy@example.com"], json!({ "plan": "basic" }));
    assert_eq!(attributes["dee@example.com"], json!({ "company": "=HYPERLINK(\"x\")" }));

    // A later import sets what it names and keeps the rest.
    let reply = app
        .graphql_as(
            &token,
            IMPORT,
            json!({ "csv": "email,full_name,city\nbo@example.com,Bo,Oslo\n" }),
        )
        .await
        .json();
    assert_eq!(reply["data"]["importClients"]["updated"], 1, "{reply}");
    assert_eq!(
        attributes_of(&app, &token).await["bo@example.com"],
        json!({ "company": "Acme", "plan": "pro", "city": "Oslo" })
    );

    // The export has a column per key, formulas defused, and imports back unchanged.
    let (status, exported) = export(&app, &token).await;
    assert_eq!(status, StatusCode::OK);
    let mut lines = exported.lines();
    assert_eq!(lines.next(), Some("email,full_name,comment,city,company,plan"));
    assert!(exported.contains("bo@example.com,Bo,,Oslo,Acme,pro"), "{exported}");
    assert!(
        exported.contains("dee@example.com,Dee,,,\"'=HYPERLINK(\"\"x\"\")\","),
        "{exported}"
    );
    let before = attributes_of(&app, &token).await;
    let reply = app.graphql_as(&token, IMPORT, json!({ "csv": exported })).await.json();
    assert_eq!(reply["data"]["importClients"]["errors"], json!([]), "{reply}");
    assert_eq!(attributes_of(&app, &token).await, before);

    // A header that cannot be an attribute's name fails the file, naming it.
    let reply = app
        .graphql_as(
            &token,
            IMPORT,
            json!({ "csv": "email,full_name,first name\nx@example.com,X,Y\n" }),
        )
        .await;
    assert_eq!(reply.error_code(), "BAD_USER_INPUT", "{}", reply.json());
    assert!(
        reply.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("first name")
    );
}

#[tokio::test]
async fn a_tags_column_tags_clients_creating_names_and_comes_back_in_the_export() {
    let app = TestApp::new().await;
    let token = app.verified_user("ann@example.com", Role::User).await;
    // A tag of the same name in another case is the same tag.
    app.graphql_as(&token, "mutation { createTag(name: \"VIP\") { id } }", json!({}))
        .await;
    let csv = "email,full_name,comment,tags,plan\n\
               a@example.com,A,,vip; Newsletter ;,pro\n\
               b@example.com,B,,,free\n\
               c@example.com,C,,\"bad\nname\",\n";
    let reply = app.graphql_as(&token, IMPORT, json!({ "csv": csv })).await.json();
    let result = &reply["data"]["importClients"];
    assert_eq!(result["created"], 2, "{reply}");
    assert_eq!(result["errors"][0]["line"], 4, "{reply}");
    assert!(
        result["errors"][0]["message"].as_str().unwrap().starts_with("tags:"),
        "{reply}"
    );
    let tags = app
        .graphql_as(&token, "{ tags { name clientCount } }", json!({}))
        .await
        .json();
    assert_eq!(
        tags["data"]["tags"],
        json!([{ "name": "Newsletter", "clientCount": 1 }, { "name": "VIP", "clientCount": 1 }]),
        "{tags}"
    );
    // `tags` is no attribute.
    let attributes = attributes_of(&app, &token).await;
    assert_eq!(attributes["a@example.com"], json!({ "plan": "pro" }));

    let (_, exported) = export(&app, &token).await;
    let mut lines = exported.lines();
    assert_eq!(lines.next(), Some("email,full_name,comment,tags,plan"));
    let rows: Vec<&str> = lines.collect();
    assert!(rows.contains(&"a@example.com,A,,Newsletter; VIP,pro"), "{exported}");
    assert!(rows.contains(&"b@example.com,B,,,free"), "{exported}");

    // Importing again adds tags and keeps the ones a row does not name.
    let again = "email,full_name,tags\na@example.com,A,gold\n";
    app.graphql_as(&token, IMPORT, json!({ "csv": again })).await;
    let (_, exported) = export(&app, &token).await;
    assert!(
        exported.contains("a@example.com,A,,gold; Newsletter; VIP,pro"),
        "{exported}"
    );
}
