//! `renderMessage`: a message as one of the viewer's clients (or a sample client) would get
//! it, through the same templates the dispatcher renders.

use crate::common::TestApp;
use mailwarm::accounts::role::Role;
use serde_json::json;

const RENDER: &str = "query($m: ID!, $c: ID) { renderMessage(messageId: $m, clientId: $c) { subject html text } }";

#[tokio::test]
async fn a_message_renders_for_a_client_or_a_sample_and_only_for_its_owner() {
    let app = TestApp::new().await;
    let token = app.verified_user("ann@example.com", Role::User).await;
    let message = app
        .graphql_as(
            &token,
            "mutation($s: String!, $b: String!) { createMessage(input: { subject: $s, body: $b }) { id } }",
            json!({ "s": "Hi {{ client.full_name }}", "b": "{{ full_name }}, plan {{ client.attributes.plan | default('free') }}.\nBye: {{ unsubscribe_url }}" }),
        )
        .await
        .json()["data"]["createMessage"]["id"]
        .clone();
    let client = app
        .graphql_as(
            &token,
            "mutation($i: ClientInput!) { createClient(input: $i) { id } }",
            json!({ "i": { "email": "bo@example.com", "fullName": "Bo", "attributes": { "plan": "pro" } } }),
        )
        .await
        .json()["data"]["createClient"]["id"]
        .clone();

    let reply = app
        .graphql_as(&token, RENDER, json!({ "m": message, "c": client }))
        .await
        .json();
    let rendered = &reply["data"]["renderMessage"];
    assert_eq!(rendered["subject"], "Hi Bo", "{reply}");
    assert!(rendered["html"].is_null(), "a text message has no HTML part: {reply}");
    let text = rendered["text"].as_str().unwrap();
    assert!(text.starts_with("Bo, plan pro.\nBye: http"), "{text}");
    assert!(
        text.contains("unsubscribe?preview=1"),
        "a preview's link unsubscribes nobody: {text}"
    );

    let reply = app.graphql_as(&token, RENDER, json!({ "m": message })).await.json();
    assert_eq!(reply["data"]["renderMessage"]["subject"], "Hi Ann Example", "{reply}");
    assert!(
        reply["data"]["renderMessage"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Ann Example, plan free.")
    );

    // Another account's message or client is NOT_FOUND, as if it did not exist.
    let other = app.verified_user("eve@example.com", Role::User).await;
    for variables in [json!({ "m": message }), json!({ "m": message, "c": client })] {
        let reply = app.graphql_as(&other, RENDER, variables).await;
        assert_eq!(reply.error_code(), "NOT_FOUND", "{}", reply.json());
    }
    let own = app
        .graphql_as(
            &other,
            "mutation { createMessage(input: { subject: \"S\", body: \"B\" }) { id } }",
            json!({}),
        )
        .await
        .json()["data"]["createMessage"]["id"]
        .clone();
    let reply = app.graphql_as(&other, RENDER, json!({ "m": own, "c": client })).await;
    assert_eq!(reply.error_code(), "NOT_FOUND", "{}", reply.json());

    // A template that fails for these values says why, on messageId.
    let failing = app
        .graphql_as(
            &token,
            "mutation($b: String!) { createMessage(input: { subject: \"S\", body: $b }) { id } }",
            json!({ "b": "{{ client.attributes.plan + 1 }}" }),
        )
        .await
        .json()["data"]["createMessage"]["id"]
        .clone();
    let reply = app
        .graphql_as(&token, RENDER, json!({ "m": failing, "c": client }))
        .await;
    assert_eq!(reply.error_code(), "BAD_USER_INPUT", "{}", reply.json());
    assert_eq!(reply.json()["errors"][0]["extensions"]["field"], "messageId");
    assert!(
        reply.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("body template failed")
    );
}
