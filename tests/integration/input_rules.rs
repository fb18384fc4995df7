//! One set of input rules for the API, the CSV import and updates: a value is refused with
//! BAD_USER_INPUT naming its field (per line for CSV, good lines still imported), or kept
//! exactly as the rules say; never an INTERNAL_SERVER_ERROR. Hostile values are generated
//! (proptest) as well as listed.

use crate::common::TestApp;
use mailwarm::accounts::role::Role;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{Value, json};

const CREATE_CLIENT: &str = "mutation($i: ClientInput!) { createClient(input: $i) { id email fullName comment } }";

fn error_of(reply: &Value) -> Option<(String, String)> {
    let error = reply["errors"].get(0)?;
    Some((
        error["extensions"]["code"].as_str().unwrap_or("").to_owned(),
        error["extensions"]["field"].as_str().unwrap_or("").to_owned(),
    ))
}

#[tokio::test]
async fn every_text_field_refuses_control_characters_by_name() {
    let app = TestApp::new().await;
    let token = app.verified_user("owner@example.com", Role::User).await;
    let admin = app.verified_user("admin@example.com", Role::Admin).await;
    let message = app.new_message(&token).await;
    for bad in [
        "a\rb",
        "a\nb",
        "a\0b",
        "a\u{1b}[2Jb",
        "a\u{7}b",
        "a\u{7f}b",
        "a\u{2028}b",
    ] {
        let cases: Vec<(&str, &str, Value, &str)> = vec![
            (
                &token,
                CREATE_CLIENT,
                json!({ "i": { "email": "a@example.com", "fullName": bad } }),
                "input.fullName",
            ),
            (
                &token,
                "mutation($i: MessageInput!) { createMessage(input: $i) { id } }",
                json!({ "i": { "subject": bad, "body": "b" } }),
                "input.subject",
            ),
            (
                &admin,
                "mutation($i: BlogPostInput!) { createBlogPost(input: $i) { id } }",
                json!({ "i": { "title": bad, "body": "b", "published": false } }),
                "input.title",
            ),
            (
                "",
                "mutation($n: String!) { register(email: \"new@example.com\", password: \"long enough secret\", fullName: $n) }",
                json!({ "n": bad }),
                "fullName",
            ),
            (
                &token,
                "query($s: String) { clients(search: $s) { totalCount } }",
                json!({ "s": bad }),
                "search",
            ),
            (
                &token,
                CREATE_CLIENT,
                json!({ "i": { "email": format!("x{bad}@example.com"), "fullName": "N" } }),
                "input.email",
            ),
            (
                &token,
                "mutation($m: ID!, $e: String!) { sendTestMessage(messageId: $m, email: $e) { accepted } }",
                json!({ "m": message, "e": format!("x{bad}@example.com") }),
                "email",
            ),
        ];
        for (who, query, variables, field) in cases {
            let reply = app.graphql_as(who, query, variables.clone()).await.json();
            assert_eq!(
                error_of(&reply),
                Some(("BAD_USER_INPUT".to_owned(), field.to_owned())),
                "{field} = {bad:?}: {reply}"
            );
        }
    }
    // Multi-line fields keep line breaks and tabs, CRLF made LF; other controls are refused.
    let reply = app
        .graphql_as(
            &token,
            CREATE_CLIENT,
            json!({ "i": { "email": "ok@example.com", "fullName": "Ok", "comment": "line 1\r\n\tline 2\rline 3" } }),
        )
        .await
        .json();
    assert_eq!(
        reply["data"]["createClient"]["comment"], "line 1\n\tline 2\nline 3",
        "{reply}"
    );
    for bad in ["a\0b", "a\u{1b}b", "a\u{7f}b"] {
        let reply = app
            .graphql_as(
                &token,
                CREATE_CLIENT,
                json!({ "i": { "email": "c@example.com", "fullName": "C", "comment": bad } }),
            )
            .await
            .json();
        assert_eq!(
            error_of(&reply),
            Some(("BAD_USER_INPUT".into(), "input.comment".into())),
            "{reply}"
        );
        let reply = app
            .graphql_as(
                &token,
                "mutation($i: MessageInput!) { createMessage(input: $i) { id } }",
                json!({ "i": { "subject": "s", "body": bad } }),
            )
            .await
            .json();
        assert_eq!(
            error_of(&reply),
            Some(("BAD_USER_INPUT".into(), "input.body".into())),
            "{reply}"
        );
    }
    // A login with a NUL is a bad input, not a database error.
    let reply = app.try_login("a\0@example.com", "whatever it is").await.json();
    assert_eq!(error_of(&reply).map(|e| e.0), Some("BAD_USER_INPUT".into()), "{reply}");
}

#[tokio::test]
async fn addresses_the_transport_cannot_deliver_are_refused_and_odd_valid_ones_kept() {
    let app = TestApp::new().await;
    let token = app.verified_user("owner@example.com", Role::User).await;
    for (bad, says) in [
        ("\"quoted\"@example.com", "quoted local parts"),
        ("ann@[127.0.0.1]", "address literals"),
        ("ann@[IPv6:::1]", "address literals"),
        ("ann..lee@example.com", "not a valid"),
        (&format!("{}@example.com", "a".repeat(65)), "64"),
    ] {
        let reply = app
            .graphql_as(&token, CREATE_CLIENT, json!({ "i": { "email": bad, "fullName": "N" } }))
            .await
            .json();
        assert_eq!(
            error_of(&reply),
            Some(("BAD_USER_INPUT".into(), "input.email".into())),
            "{reply}"
        );
        assert!(
            reply["errors"][0]["message"].as_str().unwrap().contains(says),
            "{reply}"
        );
    }
    for good in [
        "o'brien+news@sub.example.co.uk",
        "ann@münchen.de",
        "анна@пример.рф",
        "UPPER@Example.COM",
    ] {
        let reply = app
            .graphql_as(
                &token,
                CREATE_CLIENT,
                json!({ "i": { "email": good, "fullName": "N" } }),
            )
            .await
            .json();
        assert_eq!(reply["data"]["createClient"]["email"], good, "{reply}");
    }
}

/// Text made of what breaks things: line breaks, NUL, ESC, DEL, Unicode breaks,
/// placeholders, quotes, non-ASCII, long runs, arbitrary Unicode.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\r".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("\0".to_owned()),
        Just("\u{1b}".to_owned()),
        Just("\u{7f}".to_owned()),
        Just("\t".to_owned()),
        Just("\u{2028}".to_owned()),
        Just("{{full_name}}".to_owned()),
        Just("\"".to_owned()),
        Just("'=".to_owned()),
        Just(",".to_owned()),
        Just(" ".to_owned()),
        Just("Анна".to_owned()),
        "[a-z]{1,8}",
        "[a-z]{150,250}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..6).prop_map(|p| p.concat())
}

fn single_line_ok(value: &str) -> bool {
    line_ok(value, 200)
}

fn line_ok(value: &str, max: usize) -> bool {
    let value = value.trim();
    !value.is_empty()
        && value.chars().count() <= max
        && !value
            .chars()
            .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}'))
}

fn multi_line(value: &str) -> Option<String> {
    let value = value.trim().replace("\r\n", "\n").replace('\r', "\n");
    let ok = value.chars().count() <= 2_000 && !value.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    ok.then_some(value)
}

#[test]
fn generated_values_are_refused_by_field_or_stored_as_the_rules_say() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (app, token) = runtime.block_on(async {
        let app = TestApp::new().await;
        let token = app.verified_user("owner@example.com", Role::User).await;
        (app, token)
    });
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    let counter = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&(hostile(), hostile(), hostile()), |(name, comment, subject)| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            runtime.block_on(async {
                // Through createClient, then updateClient with the values swapped.
                let email = format!("c{n}@example.com");
                let reply = app
                    .graphql_as(
                        &token,
                        CREATE_CLIENT,
                        json!({ "i": { "email": email, "fullName": name, "comment": comment } }),
                    )
                    .await
                    .json();
                let expected = (single_line_ok(&name), multi_line(&comment));
                match (error_of(&reply), expected) {
                    (None, (true, Some(comment))) => {
                        let client = &reply["data"]["createClient"];
                        assert_eq!(client["fullName"], name.trim(), "{reply}");
                        assert_eq!(client["comment"], comment, "{reply}");
                        let reply = app
                            .graphql_as(
                                &token,
                                "mutation($id: ID!, $i: ClientInput!) { updateClient(id: $id, input: $i) { fullName } }",
                                json!({ "id": client["id"], "i": { "email": email, "fullName": subject, "comment": name } }),
                            )
                            .await
                            .json();
                        match error_of(&reply) {
                            None => assert!(single_line_ok(&subject) && multi_line(&name).is_some(), "{reply}"),
                            Some((code, field)) => {
                                assert_eq!(code, "BAD_USER_INPUT", "{reply}");
                                assert!(["input.fullName", "input.comment"].contains(&field.as_str()), "{reply}");
                            }
                        }
                    }
                    (Some((code, field)), (name_ok, comment_ok)) => {
                        assert_eq!(code, "BAD_USER_INPUT", "{reply}");
                        let expected_field = if !name_ok { "input.fullName" } else { "input.comment" };
                        assert!(!name_ok || comment_ok.is_none(), "refused a good value: {reply}");
                        assert_eq!(field, expected_field, "{reply}");
                    }
                    (None, _) => panic!("accepted a bad value: {name:?} / {comment:?}: {reply}"),
                }

                // Through a message.
                let reply = app
                    .graphql_as(
                        &token,
                        "mutation($i: MessageInput!) { createMessage(input: $i) { subject body } }",
                        json!({ "i": { "subject": subject, "body": comment } }),
                    )
                    .await
                    .json();
                match error_of(&reply) {
                    None => {
                        assert_eq!(reply["data"]["createMessage"]["subject"], subject.trim());
                        assert!(line_ok(&subject, 998), "accepted a bad subject: {reply}");
                    }
                    Some((code, field)) => {
                        assert_eq!(code, "BAD_USER_INPUT", "{reply}");
                        assert!(["input.subject", "input.body"].contains(&field.as_str()), "{reply}");
                    }
                }

                // Through the CSV import: one line each, errors per line.
                let mut writer = csv::Writer::from_writer(Vec::new());
                writer.write_record(["email", "full_name", "comment"]).unwrap();
                writer.write_record([&format!("csv{n}@example.com"), &name, &comment]).unwrap();
                writer.write_record([&format!("good{n}@example.com"), "Good", ""]).unwrap();
                let csv = String::from_utf8(writer.into_inner().unwrap()).unwrap();
                let reply = app
                    .graphql_as(
                        &token,
                        "mutation($c: String!) { importClients(csv: $c) { created updated errors { line message } } }",
                        json!({ "c": csv }),
                    )
                    .await
                    .json();
                let result = &reply["data"]["importClients"];
                assert!(reply["errors"].is_null(), "a whole import failed: {reply}");
                let imported = result["created"].as_i64().unwrap() + result["updated"].as_i64().unwrap();
                let errors = result["errors"].as_array().unwrap();
                assert_eq!(imported + errors.len() as i64, 2, "{reply}");
                assert!(imported >= 1, "the good line was not imported: {reply}");
            });
            Ok(())
        })
        .unwrap();
}
