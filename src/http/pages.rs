//! The unsubscribe page that links in mailing messages open: server-rendered, so it works
//! in any mail client's browser without scripts. (Account links, /verify-email and
//! /reset-password, land in the web front end.)

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use serde::Deserialize;

use super::HttpState;

use crate::db::types::ClientId;

#[derive(Deserialize)]
pub struct UnsubscribeParams {
    c: Option<String>,
    s: Option<String>,
}

impl UnsubscribeParams {
    /// The client the link was signed for, if the signature holds.
    async fn client(&self, state: &HttpState) -> Result<ClientId, (StatusCode, Html<String>)> {
        let invalid = || {
            (
                StatusCode::BAD_REQUEST,
                page("Link not valid", "This unsubscribe link is incomplete or was changed."),
            )
        };
        let client: ClientId = self.c.as_deref().and_then(|c| c.parse().ok()).ok_or_else(invalid)?;
        let key = state.app.unsubscribe_key().await.map_err(|_| unavailable())?;
        if !crate::dispatch::compose::verify_unsubscribe(key, client, self.s.as_deref().unwrap_or("")) {
            return Err(invalid());
        }
        Ok(client)
    }
}

fn unavailable() -> (StatusCode, Html<String>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        page("Something went wrong", "Please try the link again later."),
    )
}

/// GET /unsubscribe: asks for confirmation (mail scanners follow links; only a POST acts).
pub async fn unsubscribe_form(
    State(state): State<HttpState>,
    Query(params): Query<UnsubscribeParams>,
) -> (StatusCode, Html<String>) {
    if let Err(refusal) = params.client(&state).await {
        return refusal;
    }
    let action = format!(
        "/unsubscribe?c={}&s={}",
        params.c.as_deref().unwrap_or(""),
        params.s.as_deref().unwrap_or("")
    );
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Unsubscribe · mailwarm</title></head>\
         <body><main><h1>Unsubscribe</h1><p>You will get no further mail from this sender.</p>\
         <form method=\"post\" action=\"{}\"><button type=\"submit\">Unsubscribe</button></form></main></body></html>",
        escape(&action)
    );
    (StatusCode::OK, Html(body))
}

/// POST /unsubscribe: the confirmation button, or a mail client's one-click request
/// (RFC 8058: `List-Unsubscribe=One-Click` in the body). Cancels what is still pending.
pub async fn unsubscribe(
    State(state): State<HttpState>,
    Query(params): Query<UnsubscribeParams>,
) -> (StatusCode, Html<String>) {
    let client = match params.client(&state).await {
        Ok(client) => client,
        Err(refusal) => return refusal,
    };
    let done = async {
        use diesel_async::AsyncConnection;
        let mut conn = state.app.conn().await?;
        conn.transaction::<_, crate::error::AppError, _>(async |conn| {
            crate::clients::model::unsubscribe(conn, client).await?;
            crate::deliveries::model::cancel_pending(conn, crate::deliveries::model::Cancel::Client(client)).await?;
            Ok(())
        })
        .await
    };
    match done.await {
        Ok(()) => (
            StatusCode::OK,
            page("Unsubscribed", "You will get no further mail from this sender."),
        ),
        Err(_) => unavailable(),
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
