//! Who is calling, found the same way for every endpoint: `Authorization: Bearer` with a
//! session token or an API key, else the browser's session cookie, through the one
//! sign-in function (`accounts::authenticate`). An unknown, expired or revoked credential
//! leaves the caller anonymous (each endpoint then answers as it does to anonymous
//! callers); a database that does not answer is 503 everywhere. Which requests a cookie may
//! sign in is each handler's call (see `graphql` and `ws`): `Caller::via_cookie` says.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use crate::accounts::{Viewer, authenticate, cookie};

/// The session token or API key a request carries.
pub struct SessionToken {
    pub value: String,
    /// From the browser's cookie rather than an `Authorization` header.
    pub from_cookie: bool,
}

/// `Authorization: Bearer <token>`, else the session cookie.
pub fn session_token(headers: &HeaderMap) -> Option<SessionToken> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty());
    match bearer {
        Some(token) => Some(SessionToken {
            value: token.to_owned(),
            from_cookie: false,
        }),
        None => cookie::token_from(headers).map(|value| SessionToken {
            value,
            from_cookie: true,
        }),
    }
}

/// The caller of a request.
pub struct Caller {
    /// None: anonymous (no credential, or one that no longer works).
    pub viewer: Option<Viewer>,
    /// Signed in by the session cookie rather than a header.
    pub via_cookie: bool,
    /// The session's expiry slid forward: the browser's cookie follows (Set-Cookie value).
    pub refresh_cookie: Option<String>,
}

impl FromRequestParts<HttpState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, Self::Rejection> {
        let Some(token) = session_token(&parts.headers) else {
            return Ok(Caller {
                viewer: None,
                via_cookie: false,
                refresh_cookie: None,
            });
        };
        match authenticate(&state.app, &token.value).await {
            Ok(found) => {
                let refresh_cookie = found
                    .as_ref()
                    .filter(|(_, slid)| *slid && token.from_cookie)
                    .map(|_| cookie::session_cookie(state.app.config(), &token.value));
                Ok(Caller {
                    viewer: found.map(|(viewer, _)| viewer),
                    via_cookie: token.from_cookie,
                    refresh_cookie,
                })
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot check a request's credential");
                let body = serde_json::json!({ "errors": [{
                    "message": "the service cannot check who is asking now; try again",
                    "extensions": { "code": "INTERNAL_SERVER_ERROR" },
                }] });
                Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                    body.to_string(),
                )
                    .into_response())
            }
        }
    }
}
