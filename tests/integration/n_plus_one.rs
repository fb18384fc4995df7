//! Nested fields of a list (`Mailing.message`, `owner`, `clients`, `status`, `Client.tags`,
//! `Tag.clientCount`, `Message.layout`) go through
//! DataLoaders: one request for many mailings runs a fixed number of SQL statements.
//! Counts the statements run on this test's thread (its runtime is single-threaded, and the
//! app's resolvers and loaders run on it), leaving out the job runner's: the other tests of
//! the binary and background jobs run statements of their own meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::TestApp;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use serde_json::json;

static STATEMENTS: AtomicUsize = AtomicUsize::new(0);
static COUNTED_THREAD: std::sync::OnceLock<std::thread::ThreadId> = std::sync::OnceLock::new();

struct CountStatements;

impl Instrumentation for CountStatements {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event
            && COUNTED_THREAD.get() == Some(&std::thread::current().id())
            && !query.to_string().contains("background_jobs")
        {
            STATEMENTS.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn statements_for(app: &TestApp, token: &str, query: &str) -> usize {
    let before = STATEMENTS.load(Ordering::SeqCst);
    let reply = app.graphql_as(token, query, json!({})).await;
    assert!(reply.json().get("errors").is_none(), "{}", reply.json());
    STATEMENTS.load(Ordering::SeqCst) - before
}

#[tokio::test]
async fn a_list_of_mailings_with_nested_fields_takes_a_fixed_number_of_statements() {
    COUNTED_THREAD.set(std::thread::current().id()).unwrap();
    diesel::connection::set_default_instrumentation(|| Some(Box::new(CountStatements))).unwrap();
    let app = TestApp::new().await;
    let token = app.sign_up("owner@example.com").await;
    let message = app
        .graphql_as(
            &token,
            "mutation { createMessage(input: { subject: \"S\", body: \"B\" }) { id } }",
            json!({}),
        )
        .await
        .json()["data"]["createMessage"]["id"]
        .clone();
    let client = app
        .graphql_as(
            &token,
            "mutation { createClient(input: { email: \"c@example.com\", fullName: \"C\" }) { id } }",
            json!({}),
        )
        .await
        .json()["data"]["createClient"]["id"]
        .clone();
    let create = "mutation($i: MailingInput!) { createMailing(input: $i) { id } }";
    let input = json!({ "startsAt": "2030-01-01T00:00:00Z", "periodicity": "DAILY", "messageId": message, "clientIds": [client] });

    let tag = app
        .graphql_as(&token, "mutation { createTag(name: \"vip\") { id } }", json!({}))
        .await
        .json()["data"]["createTag"]["id"]
        .clone();
    app.graphql_as(
        &token,
        "mutation($t: ID!, $c: [ID!]!) { tagClients(tagId: $t, clientIds: $c) }",
        json!({ "t": tag, "c": [client] }),
    )
    .await;

    let query = "{ mailings(first: 100) { nodes { status message { subject layout { name } } owner { email } \
                 clients { totalCount nodes { email tags { name clientCount } } } } } }";
    app.graphql_as(&token, create, json!({ "i": input })).await;
    statements_for(&app, &token, query).await; // warm the pool: new connections run set-up statements
    let one = statements_for(&app, &token, query).await;
    for _ in 0..19 {
        app.graphql_as(&token, create, json!({ "i": input })).await;
    }
    let twenty = statements_for(&app, &token, query).await;
    eprintln!("statements for a list of 1 mailing: {one}, of 20 mailings: {twenty}");
    assert!(one > 3, "the counter counts nothing ({one})");
    // One statement per nested field would add 4 × 19 here; a cold pool connection adds 1-2.
    assert!(
        twenty <= one + 3,
        "more mailings must not mean more statements ({one} → {twenty})"
    );
}
