//! POST /import/clients.csv: a CSV file of any size as the request body, streamed into
//! PostgreSQL and imported by a background job; answers 202 with {"importJob": "<id>"}
//! (progress: the `importJob` query). GET /import/{id}/errors.csv: the lines it left out.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::json;

use super::HttpState;
use super::auth::Caller;
use crate::clients::{csv, import};
use crate::db::types::{ImportJobId, UserId};
use crate::error::AppError;

/// Uploads this instance takes at once: each holds a database connection of its own (the
/// COPY) for as long as the file takes to arrive.
static UPLOADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The caller who may import: signed in (a session cookie only from this site's own
/// pages), and not with a READ API key.
fn importer(caller: &Caller, headers: &HeaderMap) -> Result<UserId, (StatusCode, &'static str)> {
    let cross_site = caller.via_cookie
        && headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() != b"same-origin");
    match &caller.viewer {
        None => Err((StatusCode::UNAUTHORIZED, "sign in first")),
        Some(_) if cross_site => Err((StatusCode::FORBIDDEN, "uploads come from this site's pages")),
        Some(viewer) if viewer.read_only() => Err((StatusCode::FORBIDDEN, "a READ API key cannot import")),
        Some(viewer) => Ok(viewer.user_id),
    }
}

pub async fn clients_csv(State(state): State<HttpState>, caller: Caller, headers: HeaderMap, body: Body) -> Response {
    let owner = match importer(&caller, &headers) {
        Ok(owner) => owner,
        Err((status, why)) => return refuse(status, why),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if !matches!(
        content_type.as_deref(),
        Some("text/csv" | "text/plain" | "application/vnd.ms-excel")
    ) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the CSV file itself as the body, with Content-Type: text/csv",
        );
    }
    let Ok(_slot) = UPLOADS.try_acquire() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many uploads at once on this instance; try again in a minute",
        );
    };
    let Some(database_url) = state.app.config().db.database_url.clone() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the database is not ready");
    };
    let upload = tokio_util::io::StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    match import::stage(state.app.pool(), &database_url, owner, upload).await {
        Ok(job) => {
            state.app.jobs_queued().notify_one();
            (StatusCode::ACCEPTED, Json(json!({ "importJob": job.to_string() }))).into_response()
        }
        Err(AppError::BadUserInput { field, message }) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": message, "field": field })),
        )
            .into_response(),
        Err(other) => {
            let status = match other {
                AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::warn!(error = %other, "an upload of clients failed");
            refuse(status, "the upload could not be stored; try again")
        }
    }
}

const PAGE: i64 = 1_000;

/// The job's line errors as `line,message` CSV, streamed a page at a time.
pub async fn errors_csv(State(state): State<HttpState>, caller: Caller, Path(id): Path<String>) -> Response {
    let Some(viewer) = caller.viewer else {
        return refuse(StatusCode::UNAUTHORIZED, "sign in first");
    };
    let Ok(id) = id.parse::<ImportJobId>() else {
        return refuse(StatusCode::NOT_FOUND, "no such import");
    };
    let found = async {
        let mut conn = state.app.conn().await?;
        Ok::<_, AppError>(import::find(&mut conn, viewer.user_id, id).await?)
    }
    .await;
    match found {
        Ok(Some(_)) => {}
        Ok(None) => return refuse(StatusCode::NOT_FOUND, "no such import"),
        Err(_) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "try again"),
    }
    let app = state.app.clone();
    let header_row = stream::once(async { Ok::<_, std::io::Error>(Bytes::from(csv::row(&["line", "message"]))) });
    let pages = stream::unfold(Some(0), move |after| {
        let app = app.clone();
        async move {
            let after = after?;
            let page = async {
                let mut conn = app.conn().await?;
                Ok::<_, AppError>(import::errors(&mut conn, id, Some(after), PAGE).await?)
            }
            .await;
            match page {
                Ok(errors) => {
                    let next = (errors.len() as i64 == PAGE).then(|| errors.last().map_or(after, |e| e.line));
                    let mut chunk = Vec::new();
                    for error in &errors {
                        chunk.extend(csv::row(&[&error.line.to_string(), &error.message]));
                    }
                    Some((Ok(Bytes::from(chunk)), next))
                }
                Err(err) => Some((Err(std::io::Error::other(err.to_string())), None)),
            }
        }
    });
    let mut response = Body::from_stream(header_row.chain(pages).fuse()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"import-errors.csv\""),
    );
    response
}
