//! Small server-rendered pages that links in mails open (the web front end may replace them).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use serde::Deserialize;

use super::HttpState;
use crate::accounts::flows;

#[derive(Deserialize)]
pub struct TokenParam {
    token: Option<String>,
}

/// GET /verify-email?token=...: verifies the address and says so.
pub async fn verify_email(
    State(state): State<HttpState>,
    Query(param): Query<TokenParam>,
) -> (StatusCode, Html<String>) {
    let token = param.token.unwrap_or_default();
    match flows::verify_email(&state.app, &token).await {
        Ok(()) => (
            StatusCode::OK,
            page(
                "E-mail address confirmed",
                "Your address is confirmed. You can sign in now.",
            ),
        ),
        Err(crate::error::AppError::BadUserInput { message, .. }) => {
            (StatusCode::BAD_REQUEST, page("Link not valid", &message))
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            page("Something went wrong", "Please try the link again later."),
        ),
    }
}

fn page(title: &str, text: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title} · mailwarm</title></head>\
         <body><main><h1>{title}</h1><p>{text}</p><p><a href=\"/\">mailwarm</a></p></main></body></html>",
        title = escape(title),
        text = escape(text)
    ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
