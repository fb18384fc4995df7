//! The blog: admins write, anyone reads published posts, views are counted exactly.

use crate::common::TestApp;
use mailwarm::accounts::role::Role;
use serde_json::{Value, json};

const CREATE: &str =
    "mutation($i: BlogPostInput!) { createBlogPost(input: $i) { id published publishedAt authorName } }";
const UPDATE: &str =
    "mutation($id: ID!, $i: BlogPostInput!) { updateBlogPost(id: $id, input: $i) { published publishedAt } }";
const LIST: &str =
    "{ blogPosts { totalCount nodes { id title published authorName body imageUrl views publishedAt createdAt } } }";

async fn create(app: &TestApp, admin: &str, title: &str, published: bool) -> Value {
    let reply = app
        .graphql_as(
            admin,
            CREATE,
            json!({ "i": { "title": title, "body": "# Hello\n\n<script>alert(1)</script>", "imageUrl": "https://example.com/a.png", "published": published } }),
        )
        .await;
    reply.json()["data"]["createBlogPost"].clone()
}

#[tokio::test]
async fn drafts_are_hidden_from_the_public_and_publication_is_stamped_once() {
    let app = TestApp::new().await;
    let admin = app.verified_user("root@example.com", Role::Admin).await;
    let user = app.verified_user("ann@example.com", Role::User).await;
    let published = create(&app, &admin, "Out now", true).await;
    let draft = create(&app, &admin, "Not yet", false).await;
    assert_eq!(published["authorName"], "Test User");
    assert!(published["publishedAt"].is_string());
    assert_eq!(draft["publishedAt"], json!(null));

    for reader in [None, Some(&user)] {
        let list = match reader {
            None => app.graphql(LIST, json!({})).await,
            Some(token) => app.graphql_as(token, LIST, json!({})).await,
        };
        assert_eq!(list.json()["data"]["blogPosts"]["totalCount"], 1);
        assert_eq!(list.json()["data"]["blogPosts"]["nodes"][0]["title"], "Out now");
        let one = app
            .graphql(
                "query($id: ID!) { blogPost(id: $id) { title } }",
                json!({ "id": draft["id"] }),
            )
            .await;
        assert_eq!(one.json()["data"]["blogPost"], json!(null));
    }
    let all = app.graphql_as(&admin, LIST, json!({})).await;
    assert_eq!(all.json()["data"]["blogPosts"]["totalCount"], 2);

    // Publishing stamps publishedAt; unpublishing and publishing again keep the first stamp.
    let input = json!({ "title": "Not yet", "body": "B", "published": true });
    let first = app
        .graphql_as(&admin, UPDATE, json!({ "id": draft["id"], "i": input }))
        .await
        .json();
    let stamp = first["data"]["updateBlogPost"]["publishedAt"].clone();
    assert!(stamp.is_string(), "{first}");
    let hidden = json!({ "title": "Not yet", "body": "B", "published": false });
    app.graphql_as(&admin, UPDATE, json!({ "id": draft["id"], "i": hidden }))
        .await;
    let again = app
        .graphql_as(&admin, UPDATE, json!({ "id": draft["id"], "i": input }))
        .await
        .json();
    assert_eq!(again["data"]["updateBlogPost"]["publishedAt"], stamp);

    // Images must be http(s) URLs; the error names the field.
    let bad = app
        .graphql_as(
            &admin,
            CREATE,
            json!({ "i": { "title": "T", "body": "B", "imageUrl": "javascript:alert(1)", "published": true } }),
        )
        .await;
    assert_eq!(bad.json()["errors"][0]["extensions"]["field"], "input.imageUrl");

    // Deleted posts are gone for everyone.
    app.graphql_as(
        &admin,
        "mutation($id: ID!) { deleteBlogPost(id: $id) }",
        json!({ "id": published["id"] }),
    )
    .await;
    let after = app.graphql(LIST, json!({})).await;
    assert_eq!(after.json()["data"]["blogPosts"]["nodes"][0]["title"], "Not yet");
    assert_eq!(after.json()["data"]["blogPosts"]["totalCount"], 1);
}

#[tokio::test]
async fn views_grow_by_exactly_the_number_of_concurrent_reads() {
    let app = TestApp::new().await;
    let admin = app.verified_user("root@example.com", Role::Admin).await;
    let post = create(&app, &admin, "Popular", true).await;
    const READS: usize = 40;
    let reads = (0..READS).map(|_| {
        app.graphql(
            "query($id: ID!) { blogPost(id: $id) { views } }",
            json!({ "id": post["id"] }),
        )
    });
    let replies = futures_util::future::join_all(reads).await;
    let mut seen: Vec<i64> = replies
        .iter()
        .map(|r| r.json()["data"]["blogPost"]["views"].as_i64().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, (1..=READS as i64).collect::<Vec<_>>(), "each read counted once");
    let list = app.graphql(LIST, json!({})).await;
    assert_eq!(list.json()["data"]["blogPosts"]["nodes"][0]["views"], READS as i64);
}

#[tokio::test]
async fn no_public_field_shows_an_email_address() {
    let app = TestApp::new().await;
    let admin = app.verified_user("root@example.com", Role::Admin).await;
    create(&app, &admin, "Hello", true).await;
    let public = app.graphql(LIST, json!({})).await;
    let home = app
        .graphql(
            "{ homeStats { randomPosts { id title body authorName imageUrl views published publishedAt createdAt } } }",
            json!({}),
        )
        .await;
    for reply in [public, home] {
        let text = String::from_utf8(reply.body.clone()).unwrap();
        assert!(!text.contains("root@example.com"), "{text}");
        assert!(!text.contains("\"errors\""), "{text}");
    }
}
