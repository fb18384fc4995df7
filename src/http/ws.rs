//! GraphQL subscriptions over WebSocket (`graphql-transport-ws`, and the legacy
//! `graphql-ws` subprotocol).

use async_graphql::Data;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;

use super::HttpState;

pub async fn graphql_ws(
    State(state): State<HttpState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let schema = state.schema.clone();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| {
            GraphQLWebSocket::new(stream, schema, protocol)
                // The connection_init payload is where a client signs in ({"token": "..."}).
                .on_connection_init(|_payload| async move { Ok(Data::default()) })
                .serve()
        })
}
