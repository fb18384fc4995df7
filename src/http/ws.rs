//! GraphQL subscriptions over WebSocket (`graphql-transport-ws`, and the legacy
//! `graphql-ws` subprotocol).
//!
//! Browsers send cookies with a WebSocket upgrade from any site and CORS does not apply,
//! so an upgrade whose `Origin` is neither PUBLIC_URL's nor one of CORS_ORIGINS is refused
//! (clients that are not browsers send no Origin and sign in with a token instead).

use async_graphql::Data;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use crate::accounts::{authenticate, cookie};
use crate::config::HttpConfig;

pub async fn graphql_ws(
    State(state): State<HttpState>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let http = &state.app.config().http;
    if let Some(origin) = headers.get(header::ORIGIN)
        && !allowed_origin(http, &headers, origin.to_str().unwrap_or(""))
    {
        return (StatusCode::FORBIDDEN, "this origin may not open a GraphQL WebSocket").into_response();
    }
    // Only with an allowed Origin (checked above; a browser always sends one).
    let cookie_token = headers
        .contains_key(header::ORIGIN)
        .then(|| cookie::token_from(&headers))
        .flatten();
    let schema = state.schema.clone();
    let app = state.app.clone();
    upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |stream| {
        GraphQLWebSocket::new(stream, schema, protocol)
            // A client signs in with {"token": "..."} in connection_init, or a browser with
            // its session cookie; a bad token ends the connection, none leaves it anonymous.
            .on_connection_init(move |payload| async move {
                let mut data = Data::default();
                crate::graphql::add_loaders(&mut data, &app);
                let token = payload
                    .get("token")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned)
                    .or(cookie_token);
                if let Some(token) = token {
                    let (viewer, _) = authenticate(&app, &token)
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

/// The page's own origin (its host is the one the upgrade is addressed to, as for
/// `http://localhost:8080` when PUBLIC_URL says 127.0.0.1), PUBLIC_URL's, or one of
/// CORS_ORIGINS. A page elsewhere cannot make its Origin name our host.
pub fn allowed_origin(http: &HttpConfig, headers: &HeaderMap, origin: &str) -> bool {
    let origin = origin.trim_end_matches('/');
    let same_host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| origin == format!("http://{host}") || origin == format!("https://{host}"));
    same_host
        || http.public_url().origin().ascii_serialization() == origin
        || http.cors_origins.iter().any(|o| o == origin)
}
