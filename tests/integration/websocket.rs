//! Subscriptions endpoint: a real WebSocket client speaks graphql-transport-ws (and the
//! legacy graphql-ws) to a real listener.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn serve(app: &crate::common::TestApp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("ws://{addr}/graphql/ws")
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await.expect("socket open").unwrap() {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test]
async fn connection_init_is_acknowledged_on_both_subprotocols() {
    let app = crate::common::TestApp::new().await;
    let url = serve(&app).await;
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let mut request = url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().unwrap());
        let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
        ws.send(Message::text(
            json!({ "type": "connection_init", "payload": {} }).to_string(),
        ))
        .await
        .unwrap();
        assert_eq!(next_json(&mut ws).await["type"], "connection_ack", "{protocol}");
    }
}

#[tokio::test]
async fn an_unknown_subprotocol_is_refused() {
    let app = crate::common::TestApp::new().await;
    let url = serve(&app).await;
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "chat".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
}
