//! GraphQL over HTTP through the real router: status codes, media types, limits and
//! error codes as the GraphQL-over-HTTP spec and our API contract define them.

use crate::common::TestApp;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

fn post(body: &str, content_type: &str, accept: &str) -> Request<Body> {
    Request::post("/graphql")
        .header("content-type", content_type)
        .header("accept", accept)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn queries_answer_over_post_and_get_in_the_type_asked_for() {
    let app = TestApp::new().await;

    let reply = app.graphql("{ __typename me { id } }", json!({})).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.content_type().starts_with("application/graphql-response+json"));
    assert_eq!(reply.json(), json!({ "data": { "__typename": "Query", "me": null } }));

    let reply = app
        .send(post(
            r#"{"query":"{ __typename }"}"#,
            "application/json; charset=utf-8",
            "application/json",
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.content_type().starts_with("application/json"));

    let reply = app
        .send(
            Request::get("/graphql?query=%7B__typename%7D")
                .header("accept", "*/*")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["data"]["__typename"], "Query");
}

#[tokio::test]
async fn mutations_over_get_are_405_and_run_nothing() {
    let app = TestApp::new().await;
    let reply = app
        .send(
            Request::get("/graphql?query=mutation%20%7B%20__typename%20%7D")
                .header("accept", "application/graphql-response+json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "POST");
    assert!(reply.json().get("data").is_none());
}

#[tokio::test]
async fn bodies_that_are_not_json_are_415_and_run_nothing() {
    let app = TestApp::new().await;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let reply = app
            .send(post(r#"{"query":"{ __typename }"}"#, content_type, "application/json"))
            .await;
        assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
        assert!(reply.json().get("data").is_none());
    }
    let no_type = Request::post("/graphql")
        .body(Body::from(r#"{"query":"{ __typename }"}"#))
        .unwrap();
    assert_eq!(app.send(no_type).await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let app = TestApp::with_args(&["--body-limit", "1KiB"]).await;
    let padding = " ".repeat(2048);
    let reply = app
        .send(post(
            &format!(r#"{{"query":"{{ __typename }}"{padding}}}"#),
            "application/json",
            "*/*",
        ))
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let small = app
        .send(post(r#"{"query":"{ __typename }"}"#, "application/json", "*/*"))
        .await;
    assert_eq!(small.status, StatusCode::OK);
}

#[tokio::test]
async fn malformed_requests_are_400_naming_the_parameter() {
    let app = TestApp::new().await;
    let cases = [
        ("{ \"not json", "body"),
        (r#"{"qeury":"{ __typename }"}"#, "query"),
        (r#"{"query":42}"#, "query"),
        (r#"{"query":"{ __typename }","variables":"x"}"#, "variables"),
        (r#"[{"query":"{ __typename }"}]"#, "body"),
    ];
    for (body, field) in cases {
        let reply = app
            .send(post(body, "application/json", "application/graphql-response+json"))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.error_code(), "BAD_USER_INPUT", "{body}");
        assert_eq!(reply.json()["errors"][0]["extensions"]["field"], field, "{body}");
    }
}

#[tokio::test]
async fn parse_and_validation_errors_are_4xx_with_codes_and_no_data() {
    let app = TestApp::new().await;

    let reply = app.graphql("{ __typename", json!({})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "GRAPHQL_PARSE_FAILED");
    assert!(reply.json().get("data").is_none());

    let reply = app.graphql("{ noSuchField }", json!({})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "GRAPHQL_VALIDATION_FAILED");
    assert!(reply.json().get("data").is_none());

    // The legacy media type keeps 200 for the same errors (the spec asks so).
    let legacy = app
        .send(post(
            r#"{"query":"{ noSuchField }"}"#,
            "application/json",
            "application/json",
        ))
        .await;
    assert_eq!(legacy.status, StatusCode::OK);
    assert_eq!(legacy.error_code(), "GRAPHQL_VALIDATION_FAILED");
}

#[tokio::test]
async fn queries_over_the_depth_limit_are_rejected() {
    let app = TestApp::new().await;
    // Introspection's ofType chain nests as deep as we like.
    let mut selection = "name".to_owned();
    for _ in 0..mailwarm::graphql::MAX_DEPTH + 2 {
        selection = format!("ofType {{ {selection} }}");
    }
    let reply = app
        .graphql(&format!("{{ __type(name: \"User\") {{ {selection} }} }}"), json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "GRAPHQL_VALIDATION_FAILED");
    assert!(
        reply.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too deep")
    );
}

#[tokio::test]
async fn thousands_of_aliases_are_rejected_by_the_complexity_limit() {
    let app = TestApp::new().await;
    let aliases: String = (0..5_000).map(|i| format!("a{i}: __typename ")).collect();
    let reply = app.graphql(&format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "GRAPHQL_VALIDATION_FAILED");
    assert!(
        reply.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too many fields")
    );

    let fine: String = (0..100).map(|i| format!("a{i}: __typename ")).collect();
    assert_eq!(
        app.graphql(&format!("{{ {fine} }}"), json!({})).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bad_argument_values_are_bad_user_input() {
    let app = TestApp::new().await;
    let reply = app
        .graphql("query($n: String!) { __type(name: $n) { name } }", json!({ "n": 5 }))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "GRAPHQL_VALIDATION_FAILED");
}

#[tokio::test]
async fn introspection_can_be_switched_off() {
    let app = TestApp::with_args(&["--introspection", "false"]).await;
    let reply = app.graphql("{ __schema { queryType { name } } }", json!({})).await;
    assert!(reply.json()["data"]["__schema"].is_null(), "{}", reply.json());
    let open = TestApp::new().await;
    assert_eq!(
        open.graphql("{ __schema { queryType { name } } }", json!({}))
            .await
            .json()["data"]["__schema"]["queryType"]["name"],
        "Query"
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::new().await;
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    assert_eq!(app.send(get("/healthz")).await.status, StatusCode::OK);
    assert_eq!(app.send(get("/readyz")).await.status, StatusCode::OK);

    // A database nobody listens on: alive, but not ready.
    let port = crate::common::free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/none");
    let config =
        mailwarm::config::Config::from_args(["server", "--database-url", &url, "--db-pool-timeout", "200ms"]).unwrap();
    let pool = mailwarm::db::build_pool(&url, 2, config.db.db_pool_timeout).unwrap();
    let mailer = mailwarm::mail::Mailer::Memory(Default::default());
    let state = mailwarm::app::AppState::new(config, pool, mailer);
    let router = mailwarm::http::router(state.clone(), mailwarm::graphql::build_schema(Some(state), true));
    use tower::ServiceExt;
    assert_eq!(
        router.clone().oneshot(get("/healthz")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        router.oneshot(get("/readyz")).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn graphiql_is_served_with_local_assets_only() {
    let app = TestApp::new().await;
    let page = app.send(Request::get("/graphiql").body(Body::empty()).unwrap()).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = String::from_utf8(page.body).unwrap();
    let sources: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.ends_with(".js") || s.ends_with(".css"))
        .collect();
    assert!(sources.len() >= 5, "{sources:?}");
    for source in sources {
        assert!(source.starts_with('/'), "{source} is not served by us");
        let asset = app.send(Request::get(source).body(Body::empty()).unwrap()).await;
        assert_eq!(asset.status, StatusCode::OK, "{source}");
    }

    let off = TestApp::with_args(&["--graphiql", "false"]).await;
    assert_eq!(
        off.send(Request::get("/graphiql").body(Body::empty()).unwrap())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_front_page_is_served() {
    let app = TestApp::new().await;
    let reply = app.send(Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.content_type().starts_with("text/html"));
    assert_eq!(
        app.send(Request::get("/no/such/file.js").body(Body::empty()).unwrap())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
