//! HTML newsletters: layouts, MARKDOWN and HTML messages, the multipart mail that reaches
//! a real SMTP server on loopback (read back with a MIME parser), the web view and the
//! editor's preview frame, and the errors bad input gets.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use mail_parser::{MessageParser, MimeHeaders};
use mailwarm::accounts::role::Role;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::common::smtp::TestSmtpServer;

const CREATE_LAYOUT: &str = "mutation($i: LayoutInput!) { createLayout(input: $i) { id name html } }";
const CREATE_MESSAGE: &str =
    "mutation($i: MessageInput!) { createMessage(input: $i) { id format textBody layout { id name } } }";
const HOSTILE_NAME: &str = "<script>alert(1)</script> O'Neil & Co";

fn id(reply: &Value, path: &str) -> String {
    reply["data"][path]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"))
        .to_owned()
}

fn field_error(reply: &Value) -> (String, String, String) {
    let error = &reply["errors"][0];
    (
        error["extensions"]["code"].as_str().unwrap_or("").to_owned(),
        error["extensions"]["field"].as_str().unwrap_or("").to_owned(),
        error["message"].as_str().unwrap_or("").to_owned(),
    )
}

/// A client of `token`'s made from `input`; its id.
async fn new_client(app: &TestApp, token: &str, input: Value) -> String {
    let reply = app
        .graphql_as(
            token,
            "mutation($i: ClientInput!) { createClient(input: $i) { id } }",
            json!({ "i": input }),
        )
        .await
        .json();
    id(&reply, "createClient")
}

/// `renderMessage` for `message` and `client`: the reply and its `renderMessage`.
async fn render(app: &TestApp, token: &str, message: &str, client: &str) -> (Value, Value) {
    let reply = app
        .graphql_as(
            token,
            "query($m: ID!, $c: ID) { renderMessage(messageId: $m, clientId: $c) { subject html text } }",
            json!({ "m": message, "c": client }),
        )
        .await
        .json();
    let rendered = reply["data"]["renderMessage"].clone();
    (reply, rendered)
}

/// A layout with a stylesheet and a company line, and an HTML message in it.
async fn newsletter(app: &TestApp, token: &str) -> (String, String) {
    let layout = app
        .graphql_as(
            token,
            CREATE_LAYOUT,
            json!({ "i": { "name": "Brand", "html": "<html><head><style>.box { color: #123456; padding: 8px }</style></head>\
                <body><div class=\"box\">{{ content }}</div><p>For {{ client.attributes.company | default('you') }}</p></body></html>" } }),
        )
        .await
        .json();
    let layout = id(&layout, "createLayout");
    let message = app
        .graphql_as(
            token,
            CREATE_MESSAGE,
            json!({ "i": {
                "subject": "News for {{ client.full_name }}",
                "format": "HTML",
                "body": "<h1>Hello {{ client.full_name }}</h1><p><a href=\"{{ web_view_url }}\">View in browser</a></p>",
                "layoutId": layout,
            } }),
        )
        .await
        .json();
    assert_eq!(message["data"]["createMessage"]["format"], "HTML", "{message}");
    assert_eq!(message["data"]["createMessage"]["layout"]["name"], "Brand", "{message}");
    (layout, id(&message, "createMessage"))
}

#[tokio::test]
async fn an_html_newsletter_in_a_layout_arrives_as_multipart_alternative_and_shows_in_a_browser() {
    let smtp = TestSmtpServer::start().await;
    let url = smtp.url();
    let app = TestApp::dispatching(&[
        "--smtp-url",
        &url,
        "--dispatch-interval",
        "1s",
        "--public-url",
        "https://news.example/",
    ])
    .await;
    let token = app.verified_user("ann@example.com", Role::User).await;
    let (layout, message) = newsletter(&app, &token).await;
    let client = new_client(
        &app,
        &token,
        json!({ "email": "bo@example.com", "fullName": HOSTILE_NAME, "attributes": { "company": "ACME <b>" } }),
    )
    .await;

    // The preview is what the client will get.
    let (preview, rendered) = render(&app, &token, &message, &client).await;
    assert_eq!(rendered["subject"], format!("News for {HOSTILE_NAME}"), "{preview}");
    let html = rendered["html"].as_str().unwrap_or_else(|| panic!("{preview}"));
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; O&#39;Neil &amp; Co"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");

    app.start_mailing_now(&token, &message, std::slice::from_ref(&client))
        .await;
    let accepted = smtp.wait_accepted(1, Duration::from_secs(20)).await;
    let mail = MessageParser::default()
        .parse(accepted[0].data.as_bytes())
        .expect("a MIME message");
    let top = mail.content_type().expect("a Content-Type");
    assert_eq!(
        (top.ctype(), top.subtype()),
        ("multipart", Some("alternative")),
        "{}",
        accepted[0].data
    );
    assert_eq!(mail.subject(), Some(format!("News for {HOSTILE_NAME}").as_str()));
    assert!(mail.header("List-Unsubscribe").is_some());
    // Two parts, text first, HTML last (RFC 2046: the richest last).
    let parts: Vec<(String, String)> = mail.parts[0]
        .sub_parts()
        .expect("parts")
        .iter()
        .map(|&i| {
            let part = &mail.parts[i as usize];
            let ct = part.content_type().unwrap();
            (
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")),
                part.text_contents().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        parts.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["text/plain", "text/html"]
    );
    let (text, html) = (&parts[0].1, &parts[1].1);
    // Filled and escaped in the HTML, plain in the text.
    assert!(
        html.contains("Hello &lt;script&gt;alert(1)&lt;/script&gt; O&#39;Neil &amp; Co"),
        "{html}"
    );
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("For ACME &lt;b&gt;"), "{html}");
    assert!(
        html.contains("style=\"color: #123456;padding: 8px;\""),
        "the CSS is inlined: {html}"
    );
    assert!(
        html.contains("Unsubscribe"),
        "a footer, as the message links no unsubscribe_url: {html}"
    );
    assert!(text.contains(&format!("Hello {HOSTILE_NAME}")), "{text}");
    assert!(text.contains("https://news.example/unsubscribe?c="), "{text}");

    // "View in browser": the signed link opens the message as it was sent, under a policy
    // that lets it run nothing; a changed signature opens nothing.
    let view = html
        .split("href=\"")
        .map(|rest| rest.split('"').next().unwrap().replace("&amp;", "&"))
        .find(|link| link.starts_with("https://news.example/view/"))
        .unwrap_or_else(|| panic!("no web view link in {html}"));
    let path = view.trim_start_matches("https://news.example");
    // A later edit of the layout changes later runs, not what this delivery was.
    let update = app
        .graphql_as(
            &token,
            "mutation($id: ID!, $i: LayoutInput!) { updateLayout(id: $id, input: $i) { id } }",
            json!({ "id": layout, "i": { "name": "Brand 2", "html": "<main>NEW {{ content }}</main>" } }),
        )
        .await
        .json();
    assert!(update["errors"].is_null(), "{update}");
    let page = app.send(Request::get(path).body(Body::empty()).unwrap()).await;
    assert_eq!(page.status, StatusCode::OK);
    let policy = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains("default-src 'none'") && policy.contains("sandbox"),
        "{policy}"
    );
    assert!(!policy.contains("script-src"), "{policy}");
    let body = String::from_utf8(page.body).unwrap();
    assert!(body.contains("Hello &lt;script&gt;alert(1)&lt;/script&gt;"), "{body}");
    assert!(body.contains("For ACME") && !body.contains("NEW"), "{body}");
    let forged = format!("{}x", path.trim_end_matches(|c| c != '='));
    let refused = app.send(Request::get(&forged).body(Body::empty()).unwrap()).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{forged}");
}

#[tokio::test]
async fn markdown_messages_get_html_and_a_text_part_and_a_hand_written_one_wins() {
    let app = TestApp::new().await;
    let token = app.verified_user("ann@example.com", Role::User).await;
    let reply = app
        .graphql_as(
            &token,
            CREATE_MESSAGE,
            json!({ "i": { "subject": "s", "format": "MARKDOWN", "body": "# Hi {{ client.full_name }}\n\n* one\n* two\n" } }),
        )
        .await
        .json();
    let markdown = id(&reply, "createMessage");
    let render = "query($m: ID!) { renderMessage(messageId: $m) { html text } }";
    let reply = app.graphql_as(&token, render, json!({ "m": markdown })).await.json();
    let html = reply["data"]["renderMessage"]["html"].as_str().unwrap();
    assert!(
        html.contains("<h1>Hi Ann Example</h1>") && html.contains("<li>one</li>"),
        "{html}"
    );
    let text = reply["data"]["renderMessage"]["text"].as_str().unwrap();
    assert!(text.contains("Hi Ann Example") && text.contains("one"), "{text}");

    let reply = app
        .graphql_as(
            &token,
            CREATE_MESSAGE,
            json!({ "i": { "subject": "s", "format": "HTML", "body": "<p>{{ full_name }}</p>", "textBody": "Plain {{ full_name }}" } }),
        )
        .await
        .json();
    assert_eq!(reply["data"]["createMessage"]["textBody"], "Plain {{ full_name }}");
    let reply = app
        .graphql_as(&token, render, json!({ "m": id(&reply, "createMessage") }))
        .await
        .json();
    let text = reply["data"]["renderMessage"]["text"].as_str().unwrap();
    assert!(text.starts_with("Plain Ann Example\n\n--\nUnsubscribe: "), "{text}");
}

#[tokio::test]
async fn layouts_are_owned_checked_and_kept_while_a_message_uses_them() {
    let app = TestApp::new().await;
    let ann = app.verified_user("ann@example.com", Role::User).await;
    let bob = app.verified_user("bob@example.com", Role::User).await;

    // Bad input names its field.
    for (input, field, says) in [
        (
            json!({ "name": "x", "html": "<p>no message here</p>" }),
            "input.html",
            "{{ content }}",
        ),
        (
            json!({ "name": "x", "html": "<div>\n{% if %}{{ content }}</div>" }),
            "input.html",
            "line 2",
        ),
        (json!({ "name": " ", "html": "{{ content }}" }), "input.name", ""),
    ] {
        let reply = app.graphql_as(&ann, CREATE_LAYOUT, json!({ "i": input })).await.json();
        let (code, got_field, message) = field_error(&reply);
        assert_eq!(
            (code.as_str(), got_field.as_str()),
            ("BAD_USER_INPUT", field),
            "{reply}"
        );
        assert!(message.contains(says), "{reply}");
    }
    let (layout, message) = newsletter(&app, &ann).await;
    let bobs = app
        .graphql_as(
            &bob,
            CREATE_LAYOUT,
            json!({ "i": { "name": "Bob's", "html": "{{ content }}" } }),
        )
        .await
        .json();
    let bobs = id(&bobs, "createLayout");

    for (input, field) in [
        (
            json!({ "subject": "s", "body": "b", "textBody": "t" }),
            "input.textBody",
        ),
        (
            json!({ "subject": "s", "body": "b", "layoutId": layout }),
            "input.layoutId",
        ),
        (
            json!({ "subject": "s", "body": "b", "format": "HTML", "layoutId": bobs }),
            "input.layoutId",
        ),
        (
            json!({ "subject": "s", "body": "<p>{{ oops </p>", "format": "HTML" }),
            "input.body",
        ),
        (
            json!({ "subject": "s", "body": "b", "format": "HTML", "textBody": "{% for %}" }),
            "input.textBody",
        ),
    ] {
        let reply = app.graphql_as(&ann, CREATE_MESSAGE, json!({ "i": input })).await.json();
        let (code, got_field, _) = field_error(&reply);
        assert_eq!(
            (code.as_str(), got_field.as_str()),
            ("BAD_USER_INPUT", field),
            "{reply}"
        );
    }

    // Each sees their own.
    let list = "{ layouts(first: 10) { totalCount nodes { name } } }";
    let reply = app.graphql_as(&ann, list, json!({})).await.json();
    assert_eq!(reply["data"]["layouts"]["totalCount"], 1, "{reply}");
    assert_eq!(reply["data"]["layouts"]["nodes"][0]["name"], "Brand");
    let reply = app
        .graphql_as(
            &bob,
            "query($id: ID!) { layout(id: $id) { name } }",
            json!({ "id": layout }),
        )
        .await
        .json();
    assert!(reply["data"]["layout"].is_null(), "{reply}");
    for mutation in [
        "mutation($id: ID!) { deleteLayout(id: $id) }",
        "mutation($id: ID!) { updateLayout(id: $id, input: { name: \"x\", html: \"{{ content }}\" }) { id } }",
    ] {
        let reply = app.graphql_as(&bob, mutation, json!({ "id": layout })).await;
        assert_eq!(reply.error_code(), "NOT_FOUND", "{}", reply.json());
    }

    // Kept while a message uses it.
    let delete = "mutation($id: ID!) { deleteLayout(id: $id) }";
    let reply = app.graphql_as(&ann, delete, json!({ "id": layout })).await;
    assert_eq!(reply.error_code(), "CONFLICT", "{}", reply.json());
    let reply = app
        .graphql_as(
            &ann,
            "mutation($id: ID!) { deleteMessage(id: $id) }",
            json!({ "id": message }),
        )
        .await
        .json();
    assert_eq!(reply["data"]["deleteMessage"], true, "{reply}");
    let reply = app.graphql_as(&ann, delete, json!({ "id": layout })).await.json();
    assert_eq!(reply["data"]["deleteLayout"], true, "{reply}");
}

#[tokio::test]
async fn the_preview_frame_renders_a_draft_for_its_user_only() {
    let app = TestApp::new().await;
    let token = app.verified_user("ann@example.com", Role::User).await;
    let form = |extra: &str| {
        format!(
            "subject=Hi&format=HTML&body={}&textBody=&layoutId=&clientId={extra}",
            percent_encoding::utf8_percent_encode(
                "<p>Dear {{ client.full_name }}</p>",
                percent_encoding::NON_ALPHANUMERIC
            )
        )
    };
    let post = |auth: Option<&str>, site: Option<&str>, body: String| {
        let mut request = Request::post("/preview").header("content-type", "application/x-www-form-urlencoded");
        if let Some(token) = auth {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        request.body(Body::from(body)).unwrap()
    };
    let page = app.send(post(Some(&token), Some("same-origin"), form(""))).await;
    assert_eq!(page.status, StatusCode::OK);
    let policy = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains("sandbox") && policy.contains("frame-ancestors 'self'"),
        "{policy}"
    );
    let body = String::from_utf8(page.body).unwrap();
    assert!(body.contains("Dear Ann Example"), "{body}");

    // A template error is shown in the frame, not a crash.
    let broken = "subject=Hi&format=HTML&body=%7B%25+if+%25%7D".to_owned();
    let page = app.send(post(Some(&token), None, broken)).await;
    assert!(
        String::from_utf8(page.body).unwrap().contains("template"),
        "{}",
        page.status
    );

    for (auth, site) in [(None, None), (Some(token.as_str()), Some("cross-site"))] {
        let page = app.send(post(auth, site, form(""))).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
}

/// The README's worked example ("The template language") says what Cy gets: this checks it.
#[tokio::test]
async fn the_readme_newsletter_example_renders_as_the_readme_says() {
    let app = TestApp::new().await;
    let token = app.verified_user("ann@example.com", Role::User).await;
    let layout = app
        .graphql_as(
            &token,
            "mutation($h: String!) { createLayout(input: {name: \"Brand\", html: $h}) { id } }",
            json!({ "h": "<html><head><style>.card { max-width: 600px; padding: 24px } h1 { color: #b8441a }</style></head><body><div class=\"card\">{{ content }}</div><p>Acme Ltd, 1 Main Street</p></body></html>" }),
        )
        .await
        .json();
    let layout = id(&layout, "createLayout");
    let client = new_client(
        &app,
        &token,
        json!({ "email": "cy@example.com", "fullName": "Cy <Boss>", "attributes": { "plan": "pro", "seats": 4 } }),
    )
    .await;
    let message = app
        .graphql_as(
            &token,
            "mutation($b: String!, $l: ID!) { createMessage(input: {subject: \"{{ client.full_name }}, your {{ client.attributes.plan | upper }} plan\", format: HTML, layoutId: $l, body: $b}) { id } }",
            json!({ "l": layout, "b": "<h1>Hello {{ client.full_name }}</h1>{% if client.attributes.seats > 3 %}<p>Thanks for your team of {{ client.attributes.seats }}!</p>{% endif %}<p><a href=\"{{ web_view_url }}\">View in browser</a></p>" }),
        )
        .await
        .json();
    let message = id(&message, "createMessage");
    let (reply, rendered) = render(&app, &token, &message, &client).await;
    assert_eq!(rendered["subject"], "Cy <Boss>, your PRO plan", "{reply}");
    let html = rendered["html"].as_str().unwrap();
    assert!(
        html.contains("<h1 style=\"color: #b8441a;\">Hello Cy &lt;Boss&gt;</h1><p>Thanks for your team of 4!</p>"),
        "{html}"
    );
    assert!(
        html.contains("max-width: 600px;padding: 24px;") && html.contains("Unsubscribe"),
        "{html}"
    );
    let text = rendered["text"].as_str().unwrap();
    for line in [
        "# Hello Cy <Boss>",
        "Thanks for your team of 4!",
        "/view/preview?preview=1",
        "\n--\nUnsubscribe: http",
    ] {
        assert!(text.contains(line), "{text}");
    }
}
