//! Messages shown in a browser, each response under its own strict Content-Security-Policy
//! (no script, nothing loaded but images, a sandbox): whatever the HTML of a newsletter
//! holds, it runs nothing and reaches nothing on our origin.
//!
//! - GET /view/<delivery>?s=<signature>: the `web_view_url` of a mail, the delivery's
//!   message as it was sent (from the run's snapshot), for whoever holds the link.
//! - POST /preview: a draft as the editor's `<iframe>` shows it, for the signed-in user
//!   (the session cookie is SameSite=Lax, so another site cannot post with it).

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::HttpState;
use super::auth::Caller;
use crate::db::types::{ClientId, DeliveryId, LayoutId};
use crate::messages::graphql::{PlaceholderLinks, PreviewFor, PreviewOf, preview};
use crate::messages::model::{MessageFields, MessageFormat};
use crate::messages::template::Rendered;

/// Images from anywhere (newsletters link theirs), inline styles (mail HTML is styled
/// inline); no script, no fetch, no form, no plugin, and a sandbox on top.
const VIEW_POLICY: &str = "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox allow-popups allow-popups-to-escape-sandbox";
/// The same for the editor's preview, which our own pages may frame.
const PREVIEW_POLICY: &str = "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox";

#[derive(Deserialize)]
pub struct ViewParams {
    s: Option<String>,
}

/// GET /view/<delivery>?s=<signature>.
pub async fn web_view(
    State(state): State<HttpState>,
    Path(delivery): Path<String>,
    Query(params): Query<ViewParams>,
) -> Response {
    if delivery == "preview" {
        return page(
            VIEW_POLICY,
            StatusCode::OK,
            &notice("In the mail, this link shows the message in a browser."),
        );
    }
    let not_found = || page(VIEW_POLICY, StatusCode::NOT_FOUND, &notice("This link is not valid."));
    let Ok(delivery) = delivery.parse::<DeliveryId>() else {
        return not_found();
    };
    let key = match state.app.unsubscribe_key().await {
        Ok(key) => key,
        Err(_) => return unavailable(),
    };
    if !crate::dispatch::compose::verify_web_view(key, delivery, params.s.as_deref().unwrap_or("")) {
        return not_found();
    }
    match crate::dispatch::web_view::render(&state.app, delivery).await {
        Ok(Some(Ok(rendered))) => page(VIEW_POLICY, StatusCode::OK, &document(&rendered)),
        Ok(Some(Err(why))) => {
            tracing::info!(delivery = %delivery, why, "a web view cannot be rendered");
            page(VIEW_POLICY, StatusCode::OK, &notice("This message cannot be shown."))
        }
        Ok(None) => not_found(),
        Err(err) => {
            tracing::warn!(error = %err, "cannot render a web view");
            unavailable()
        }
    }
}

/// A draft from the message editor (field names as in `MessageInput`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DraftForm {
    subject: String,
    body: String,
    format: Option<String>,
    text_body: Option<String>,
    layout_id: Option<String>,
    client_id: Option<String>,
}

/// POST /preview: the draft's HTML (or its text, for a TEXT message) for the editor's frame.
pub async fn preview_frame(
    State(state): State<HttpState>,
    caller: Caller,
    headers: HeaderMap,
    Form(draft): Form<DraftForm>,
) -> Response {
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() != b"same-origin");
    let Some(viewer) = caller.viewer.filter(|_| !cross_site) else {
        return page(
            PREVIEW_POLICY,
            StatusCode::UNAUTHORIZED,
            &notice("Sign in to preview messages."),
        );
    };
    let format = match draft.format.as_deref().unwrap_or("TEXT") {
        "MARKDOWN" => MessageFormat::Markdown,
        "HTML" => MessageFormat::Html,
        _ => MessageFormat::Text,
    };
    let id = |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_owned);
    let fields = MessageFields {
        subject: draft.subject,
        body: draft.body,
        format,
        text_body: id(&draft.text_body).filter(|_| format != MessageFormat::Text),
        layout_id: id(&draft.layout_id)
            .and_then(|v| v.parse::<LayoutId>().ok())
            .filter(|_| format != MessageFormat::Text),
    };
    let client = id(&draft.client_id).and_then(|v| v.parse::<ClientId>().ok());
    let placeholders = PlaceholderLinks::new(&state.app.config().http, "preview");
    let rendered = async {
        let mut conn = state.app.conn().await?;
        preview(
            &mut conn,
            viewer.user_id,
            &fields,
            PreviewFor::client_or_sample(client),
            placeholders.links(),
            state.app.config().mail.max_message_size,
            PreviewOf::Draft,
        )
        .await
    }
    .await;
    match rendered {
        Ok(rendered) => page(PREVIEW_POLICY, StatusCode::OK, &document(&rendered)),
        Err(err) => page(PREVIEW_POLICY, StatusCode::OK, &notice(&err.to_string())),
    }
}

/// The HTML part as it is, or the text part in a page.
fn document(rendered: &Rendered) -> String {
    match &rendered.html {
        Some(html) => html.clone(),
        None => format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head>\
             <body><pre style=\"white-space:pre-wrap;font:15px/1.5 system-ui,sans-serif\">{}</pre></body></html>",
            minijinja::HtmlEscape(&crate::mail::message::one_line(&rendered.subject)),
            minijinja::HtmlEscape(&rendered.text)
        ),
    }
}

fn notice(text: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mailwarm</title></head>\
         <body><p style=\"font:15px/1.5 system-ui,sans-serif\">{}</p></body></html>",
        minijinja::HtmlEscape(text)
    )
}

fn unavailable() -> Response {
    page(
        VIEW_POLICY,
        StatusCode::SERVICE_UNAVAILABLE,
        &notice("Please try the link again later."),
    )
}

fn page(policy: &'static str, status: StatusCode, html: &str) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (header::CACHE_CONTROL, HeaderValue::from_static("private, no-store")),
        ],
        html.to_owned(),
    )
        .into_response()
}
