//! GraphQL subscriptions over WebSocket (`graphql-transport-ws`, and the legacy
//! `graphql-ws` subprotocol).

use async_graphql::Data;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;

use super::HttpState;
use crate::accounts::authenticate;

pub async fn graphql_ws(
    State(state): State<HttpState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let schema = state.schema.clone();
    let app = state.app.clone();
    upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |stream| {
        GraphQLWebSocket::new(stream, schema, protocol)
            // A client signs in with {"token": "..."} in connection_init; a bad token ends
            // the connection, no token leaves it anonymous.
            .on_connection_init(move |payload| async move {
                let mut data = Data::default();
                crate::graphql::add_loaders(&mut data, &app);
                if let Some(token) = payload.get("token").and_then(|t| t.as_str()) {
                    let viewer = authenticate(&app, token)
                        .await
                        .map_err(|_| async_graphql::Error::new("sign-in failed"))?
                        .ok_or_else(|| async_graphql::Error::new("invalid or expired token"))?;
                    data.insert(viewer);
                }
                Ok(data)
            })
            .serve()
    })
}
