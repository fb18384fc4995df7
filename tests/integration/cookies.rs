//! Browser sessions: login sets an HttpOnly SameSite=Lax cookie; a cookie authenticates
//! only JSON POSTs and GET queries (a cross-site form cannot send either); a WebSocket from
//! a foreign Origin is refused.

use crate::common::{Reply, TestApp};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::{SinkExt, StreamExt};
use mailwarm::accounts::role::Role;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Logs in and returns the `name=value` part of the session cookie and the whole header.
async fn cookie_login(app: &TestApp) -> (String, String) {
    app.verified_user("ann@example.com", Role::User).await;
    let reply = app.try_login("ann@example.com", "long enough secret").await;
    let header = reply.headers["set-cookie"].to_str().unwrap().to_owned();
    let pair = header.split(';').next().unwrap().to_owned();
    (pair, header)
}

async fn post_with_cookie(app: &TestApp, cookie: &str, content_type: &str, body: String) -> Reply {
    app.send(
        Request::post("/graphql")
            .header("content-type", content_type)
            .header("cookie", cookie)
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

const CREATE_CLIENT: &str =
    "mutation { createClient(input: { email: \"zed@example.com\", fullName: \"Zed\" }) { id } }";

#[tokio::test]
async fn the_session_cookie_is_httponly_lax_and_signs_in_json_posts_and_get_queries() {
    let app = TestApp::new().await;
    let (cookie, header) = cookie_login(&app).await;
    assert!(cookie.starts_with("mailwarm_session="), "{header}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(header.contains(attribute), "{attribute} missing: {header}");
    }
    assert!(!header.contains("Secure"), "PUBLIC_URL is http here: {header}");

    let me = post_with_cookie(
        &app,
        &cookie,
        "application/json",
        json!({ "query": "{ me { email } }" }).to_string(),
    )
    .await;
    assert_eq!(me.json()["data"]["me"]["email"], "ann@example.com");

    let get = app
        .send(
            Request::get("/graphql?query=%7B%20me%20%7B%20email%20%7D%20%7D")
                .header("cookie", &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(get.json()["data"]["me"]["email"], "ann@example.com");

    // Logging out clears the cookie and ends the session.
    let logout = post_with_cookie(
        &app,
        &cookie,
        "application/json",
        json!({ "query": "mutation { logout }" }).to_string(),
    )
    .await;
    assert!(logout.headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let after = post_with_cookie(
        &app,
        &cookie,
        "application/json",
        json!({ "query": "{ me { email } }" }).to_string(),
    )
    .await;
    assert_eq!(after.json()["data"]["me"], json!(null));
}

#[tokio::test]
async fn cross_site_form_and_text_posts_execute_nothing() {
    let app = TestApp::new().await;
    let (cookie, _) = cookie_login(&app).await;
    let text = post_with_cookie(
        &app,
        &cookie,
        "text/plain",
        json!({ "query": CREATE_CLIENT }).to_string(),
    )
    .await;
    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let form_body = format!(
        "query={}",
        url::form_urlencoded::byte_serialize(CREATE_CLIENT.as_bytes()).collect::<String>()
    );
    let form = post_with_cookie(&app, &cookie, "application/x-www-form-urlencoded", form_body).await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let multipart = post_with_cookie(&app, &cookie, "multipart/form-data; boundary=x", "--x--".to_owned()).await;
    assert_eq!(multipart.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A mutation over GET (what an <img> or a link could send) is refused too.
    let get = app
        .send(
            Request::get(format!(
                "/graphql?query={}",
                url::form_urlencoded::byte_serialize(CREATE_CLIENT.as_bytes()).collect::<String>()
            ))
            .header("cookie", &cookie)
            .body(Body::empty())
            .unwrap(),
        )
        .await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);

    let clients = post_with_cookie(
        &app,
        &cookie,
        "application/json",
        json!({ "query": "{ clients { totalCount } }" }).to_string(),
    )
    .await;
    assert_eq!(
        clients.json()["data"]["clients"]["totalCount"],
        0,
        "nothing was created"
    );
}

#[tokio::test]
async fn websockets_accept_the_cookie_from_our_origin_and_refuse_foreign_origins() {
    let app = TestApp::new().await;
    let (cookie, _) = cookie_login(&app).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let url = format!("ws://{addr}/graphql/ws");
    let request = |origin: &str| {
        let mut request = url.as_str().into_client_request().unwrap();
        let headers = request.headers_mut();
        headers.insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
        headers.insert("origin", origin.parse().unwrap());
        headers.insert("cookie", cookie.parse().unwrap());
        request
    };

    let foreign = tokio_tungstenite::connect_async(request("http://evil.example")).await;
    match foreign {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a foreign origin was let in: {other:?}"),
    }

    // PUBLIC_URL defaults to http://127.0.0.1:8080: that origin signs in with the cookie.
    let (mut ws, _) = tokio_tungstenite::connect_async(request("http://127.0.0.1:8080"))
        .await
        .unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": {} }).to_string(),
    ))
    .await
    .unwrap();
    let next = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| loop {
        if let Message::Text(text) = ws.next().await.unwrap().unwrap() {
            return serde_json::from_str::<serde_json::Value>(&text).unwrap();
        }
    };
    assert_eq!(next(&mut ws).await["type"], "connection_ack");
    // Signed in: a subscription that needs a viewer starts instead of failing.
    ws.send(Message::text(
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { attempts { id } }" } })
            .to_string(),
    ))
    .await
    .unwrap();
    let outcome = tokio::time::timeout(std::time::Duration::from_millis(500), next(&mut ws)).await;
    assert!(outcome.is_err(), "the subscription failed: {outcome:?}");

    // Without the cookie the same subscription is refused: the cookie is what signed in.
    let mut anonymous = request("http://127.0.0.1:8080");
    anonymous.headers_mut().remove("cookie");
    let (mut ws, _) = tokio_tungstenite::connect_async(anonymous).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": {} }).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next(&mut ws).await["type"], "connection_ack");
    ws.send(Message::text(
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { attempts { id } }" } })
            .to_string(),
    ))
    .await
    .unwrap();
    let refused = next(&mut ws).await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );
}
