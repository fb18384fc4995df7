//! `POST /webhooks/bounces`: bounces and complaints from a relay or a script, in the
//! generic signed JSON of `deliverability::webhooks` (the README shows it). Each event is
//! recorded in a transaction of its own, like a report from the bounce mailbox; one that
//! names no delivery of ours is counted and skipped, never an error for the rest.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use diesel_async::AsyncConnection;

use super::HttpState;
use crate::deliverability::bounces::{self, Recorded, Source};
use crate::deliverability::webhooks::{self, Events, Named};

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

pub async fn bounces(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let app = &state.app;
    let Some(secret) = app.config().bounces.bounce_webhook_secret.as_deref() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "this webhook is off (BOUNCE_WEBHOOK_SECRET is not set)",
        );
    };
    if body.len() > webhooks::MAX_BODY {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "at most 1 MiB per request");
    }
    let signature = headers
        .get("x-mailwarm-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Err(why) = webhooks::verify(secret.as_bytes(), signature, &body, chrono::Utc::now().timestamp()) {
        return refuse(StatusCode::UNAUTHORIZED, why);
    }
    let events: Events = match serde_json::from_slice(&body) {
        Ok(events) => events,
        Err(err) => return refuse(StatusCode::BAD_REQUEST, &format!("not a list of events: {err}")),
    };
    if events.events.len() > webhooks::MAX_EVENTS {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "at most 1000 events per request");
    }
    let key = match app.unsubscribe_key().await {
        Ok(key) => key.to_vec(),
        Err(_) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; send again later",
            );
        }
    };
    let Ok(mut conn) = app.conn().await else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is unavailable; send again later",
        );
    };
    let policy = app.config().bounces.policy();
    let (mut recorded, mut repeated, mut unknown) = (0, 0, 0);
    for event in &events.events {
        let delivery = match event.delivery(&key) {
            Named::Signed(id) => Some(id),
            Named::MessageId(id) => match bounces::delivered_to(&mut conn, id, event.recipient.as_deref()).await {
                Ok(true) => Some(id),
                Ok(false) => None,
                Err(_) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "the database failed; send again later"),
            },
            Named::Nothing => None,
        };
        let Some(delivery) = delivery else {
            unknown += 1;
            continue;
        };
        let report = bounces::Report {
            delivery,
            kind: event.kind.into(),
            diagnostic: event.diagnostic.clone(),
            source: Source::Webhook,
        };
        let result = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| bounces::record(conn, &report, &policy).await)
            .await;
        match result {
            Ok(Recorded::New { .. }) => recorded += 1,
            Ok(Recorded::Repeat) => repeated += 1,
            Ok(Recorded::UnknownDelivery) => unknown += 1,
            // Those before it are recorded; sending the request again records the rest
            // (and counts the first ones as repeats).
            Err(_) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "the database failed; send again later"),
        }
    }
    Json(serde_json::json!({ "recorded": recorded, "repeated": repeated, "unknown": unknown })).into_response()
}
