//! GET /export/clients.csv: the caller's clients as CSV (their tags too, when the caller
//! has tags), streamed page by page (a connection is held only while a page is read),
//! formula-like cells defused.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};

use super::HttpState;
use super::auth::Caller;
use crate::clients::{csv, model, tags};
use crate::db::page::Cursor;

const PAGE: i64 = 1_000;

pub async fn clients_csv(State(state): State<HttpState>, caller: Caller) -> Response {
    let Some(viewer) = caller.viewer else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    let owner = viewer.user_id;
    let app = state.app.clone();

    // The header first (its attribute columns read from the database), then the pages
    // after a cursor; done when a page is short.
    enum Step {
        Header,
        /// After this cursor; the attribute keys, and whether the owner has tags.
        After(Option<Cursor>, Arc<Vec<String>>, bool),
        Done,
    }
    let body = stream::unfold(Step::Header, move |step| {
        let app = app.clone();
        async move {
            match step {
                Step::Header => {
                    let columns = async {
                        let mut conn = app.conn().await?;
                        let keys = model::attribute_keys(&mut conn, owner).await?;
                        let with_tags = tags::count(&mut conn, owner).await? > 0;
                        Ok::<_, crate::error::AppError>((keys, with_tags))
                    }
                    .await;
                    match columns {
                        Ok((keys, with_tags)) => Some((
                            Ok::<_, std::io::Error>(Bytes::from(csv::header(with_tags, &keys))),
                            Step::After(None, Arc::new(keys), with_tags),
                        )),
                        Err(err) => Some((Err(std::io::Error::other(err.to_string())), Step::Done)),
                    }
                }
                Step::After(after, keys, with_tags) => {
                    let page = async {
                        let mut conn = app.conn().await?;
                        let rows = model::export_page(&mut conn, owner, after, PAGE).await?;
                        let tags = if with_tags {
                            let ids: Vec<_> = rows.iter().map(|c| c.id).collect();
                            tags::of_clients(&mut conn, &ids).await?
                        } else {
                            Default::default()
                        };
                        Ok::<_, crate::error::AppError>((rows, tags))
                    }
                    .await;
                    match page {
                        Ok((rows, tags)) => {
                            let next = match rows.last() {
                                Some(last) if rows.len() as i64 == PAGE => {
                                    Step::After(Some(last.cursor()), keys.clone(), with_tags)
                                }
                                _ => Step::Done,
                            };
                            let mut chunk = Vec::new();
                            for client in &rows {
                                let names: Option<Vec<String>> = with_tags.then(|| {
                                    tags.get(&client.id)
                                        .map(|t| t.iter().map(|t| t.name.clone()).collect())
                                        .unwrap_or_default()
                                });
                                chunk.extend(csv::client_row(client, names.as_deref(), &keys));
                            }
                            Some((Ok(Bytes::from(chunk)), next))
                        }
                        // The download ends in error rather than looking complete.
                        Err(err) => Some((Err(std::io::Error::other(err.to_string())), Step::Done)),
                    }
                }
                Step::Done => None,
            }
        }
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"clients.csv\""),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        // Fused: the compression layer may poll once more after the end.
        Body::from_stream(body.fuse()),
    )
        .into_response()
}
