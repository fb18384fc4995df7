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
use crate::accounts::cookie::{self, SESSION_COOKIE};
use crate::accounts::{Viewer, authenticate};
use crate::error::{AppError, UNAVAILABLE_RETRY_AFTER_SECS};

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
        None => cookie_token(headers).map(|value| SessionToken {
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
                tracing::warn!(error = %err, "cannot check a request's credential");
                let code = err.code();
                let status = match err {
                    AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                let body = serde_json::json!({ "errors": [{
                    "message": "the service cannot check who is asking now; try again",
                    "extensions": { "code": code, "retryAfter": UNAVAILABLE_RETRY_AFTER_SECS },
                }] });
                Err((
                    status,
                    [
                        (header::CONTENT_TYPE, "application/json; charset=utf-8".to_owned()),
                        (header::RETRY_AFTER, UNAVAILABLE_RETRY_AFTER_SECS.to_string()),
                    ],
                    body.to_string(),
                )
                    .into_response())
            }
        }
    }
}

/// The session token from the request's `Cookie` headers.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(::cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == SESSION_COOKIE && !cookie.value().is_empty())
        .map(|cookie| cookie.value().to_owned())
}
