//! Tags: a user's labels for clients, each user's own; tagging in bulk, `Client.tags`,
//! `ClientInput.tagIds`, counts that leave deleted clients out.

use mailwarm::accounts::role::Role;
use serde_json::{Value, json};

use crate::common::TestApp;

const CREATE: &str = "mutation($n: String!) { createTag(name: $n) { id name clientCount } }";
const TAG: &str = "mutation($t: ID!, $c: [ID!]!) { tagClients(tagId: $t, clientIds: $c) }";
const UNTAG: &str = "mutation($t: ID!, $c: [ID!]!) { untagClients(tagId: $t, clientIds: $c) }";
const TAGS: &str = "{ tags { id name clientCount } }";

async fn tag(app: &TestApp, token: &str, name: &str) -> String {
    let reply = app.graphql_as(token, CREATE, json!({ "n": name })).await.json();
    reply["data"]["createTag"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"))
        .to_owned()
}

async fn client_tags(app: &TestApp, token: &str, client: &Value) -> Vec<String> {
    let reply = app
        .graphql_as(
            token,
            "query($id: ID!) { client(id: $id) { tags { name } } }",
            json!({ "id": client }),
        )
        .await
        .json();
    reply["data"]["client"]["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn tags_label_a_users_own_clients_in_bulk_and_one_by_one() {
    let app = TestApp::new().await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    let bob = app.verified_user("bob@example.com", Role::User).await;
    let vip = tag(&app, &ann, "VIP").await;
    let news = tag(&app, &ann, "newsletter").await;

    // Names are unique per user whatever the case, and checked.
    let reply = app.graphql_as(&ann, CREATE, json!({ "n": "vip" })).await.json();
    assert_eq!(reply["errors"][0]["extensions"]["code"], "CONFLICT", "{reply}");
    assert_eq!(reply["errors"][0]["extensions"]["field"], "name", "{reply}");
    let reply = app.graphql_as(&ann, CREATE, json!({ "n": "a\nb" })).await.json();
    assert_eq!(reply["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{reply}");
    // Another user may have the same name.
    let bobs = tag(&app, &bob, "VIP").await;

    let c1 = app.new_client(&ann, "one@example.com").await;
    let c2 = app.new_client(&ann, "two@example.com").await;
    let c3 = app.new_client(&ann, "three@example.com").await;
    let foreign = app.new_client(&bob, "bobs@example.com").await;

    // Bulk: Ann's clients get the tag; Bob's client is skipped; twice is once.
    let reply = app
        .graphql_as(&ann, TAG, json!({ "t": vip, "c": [c1, c2, foreign] }))
        .await
        .json();
    assert_eq!(reply["data"]["tagClients"], 2, "{reply}");
    let reply = app
        .graphql_as(&ann, TAG, json!({ "t": vip, "c": [c1, c3] }))
        .await
        .json();
    assert_eq!(reply["data"]["tagClients"], 1, "{reply}");
    assert!(client_tags(&app, &bob, &foreign).await.is_empty());

    // One by one: tagIds sets a client's tags; absent leaves them; a tag not yours is refused.
    let update = "mutation($id: ID!, $i: ClientInput!) { updateClient(id: $id, input: $i) { tags { name } } }";
    let reply = app
        .graphql_as(
            &ann,
            update,
            json!({ "id": c1, "i": { "email": "one@example.com", "fullName": "One", "tagIds": [news, vip] } }),
        )
        .await
        .json();
    assert_eq!(
        reply["data"]["updateClient"]["tags"],
        json!([{ "name": "newsletter" }, { "name": "VIP" }]),
        "{reply}"
    );
    let reply = app
        .graphql_as(
            &ann,
            update,
            json!({ "id": c1, "i": { "email": "one@example.com", "fullName": "Uno" } }),
        )
        .await
        .json();
    assert_eq!(
        reply["data"]["updateClient"]["tags"].as_array().unwrap().len(),
        2,
        "{reply}"
    );
    let reply = app
        .graphql_as(
            &ann,
            update,
            json!({ "id": c2, "i": { "email": "two@example.com", "fullName": "Two", "tagIds": [bobs] } }),
        )
        .await
        .json();
    assert_eq!(reply["errors"][0]["extensions"]["field"], "input.tagIds", "{reply}");
    assert_eq!(
        client_tags(&app, &ann, &c2).await,
        ["VIP"],
        "a refused update changes nothing"
    );
    let reply = app
        .graphql_as(
            &ann,
            "mutation($i: ClientInput!) { createClient(input: $i) { tags { name } } }",
            json!({ "i": { "email": "four@example.com", "fullName": "Four", "tagIds": [news] } }),
        )
        .await
        .json();
    assert_eq!(
        reply["data"]["createClient"]["tags"],
        json!([{ "name": "newsletter" }]),
        "{reply}"
    );

    // Counts leave deleted clients out.
    app.graphql_as(
        &ann,
        "mutation($id: ID!) { deleteClient(id: $id) }",
        json!({ "id": c3 }),
    )
    .await;
    let reply = app.graphql_as(&ann, TAGS, json!({})).await.json();
    assert_eq!(
        reply["data"]["tags"],
        json!([
            { "id": news, "name": "newsletter", "clientCount": 2 },
            { "id": vip, "name": "VIP", "clientCount": 2 },
        ]),
        "{reply}"
    );

    // The list filters by tag; someone else's tag is NOT_FOUND.
    let by_tag = "query($t: ID!) { clients(first: 10, tagId: $t) { totalCount nodes { email } } }";
    let reply = app.graphql_as(&ann, by_tag, json!({ "t": vip })).await.json();
    assert_eq!(reply["data"]["clients"]["totalCount"], 2, "{reply}");
    let reply = app.graphql_as(&ann, by_tag, json!({ "t": bobs })).await;
    assert_eq!(reply.error_code(), "NOT_FOUND", "{}", reply.json());

    // Untag, rename, delete.
    let reply = app
        .graphql_as(&ann, UNTAG, json!({ "t": vip, "c": [c1, c2] }))
        .await
        .json();
    assert_eq!(reply["data"]["untagClients"], 2, "{reply}");
    let reply = app
        .graphql_as(
            &ann,
            "mutation($id: ID!) { renameTag(id: $id, name: \"Letters\") { name } }",
            json!({ "id": news }),
        )
        .await
        .json();
    assert_eq!(reply["data"]["renameTag"]["name"], "Letters", "{reply}");
    assert_eq!(client_tags(&app, &ann, &c1).await, ["Letters"]);
    let reply = app
        .graphql_as(&ann, "mutation($id: ID!) { deleteTag(id: $id) }", json!({ "id": news }))
        .await
        .json();
    assert_eq!(reply["data"]["deleteTag"], true, "{reply}");
    assert!(client_tags(&app, &ann, &c1).await.is_empty());

    // Bob's tag is not Ann's to see, use, rename or delete.
    let reply = app.graphql_as(&ann, TAGS, json!({})).await.json();
    assert_eq!(reply["data"]["tags"].as_array().unwrap().len(), 1, "{reply}");
    for (query, variables) in [
        (TAG, json!({ "t": bobs, "c": [c1] })),
        (UNTAG, json!({ "t": bobs, "c": [foreign] })),
        (
            "mutation($t: ID!) { renameTag(id: $t, name: \"x\") { id } }",
            json!({ "t": bobs }),
        ),
        ("mutation($t: ID!) { deleteTag(id: $t) }", json!({ "t": bobs })),
    ] {
        let reply = app.graphql_as(&ann, query, variables).await;
        assert_eq!(reply.error_code(), "NOT_FOUND", "{}", reply.json());
    }
    let reply = app.graphql_as(&bob, TAGS, json!({})).await.json();
    assert_eq!(reply["data"]["tags"][0]["clientCount"], 0, "{reply}");
}
