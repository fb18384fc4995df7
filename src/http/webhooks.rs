//! The bounce webhooks: `POST /webhooks/bounces`, bounces and complaints from a relay or a
//! script in the generic signed JSON of `deliverability::webhooks` (the README shows it),
//! and `POST /webhooks/bounces/ses`, Amazon SES's notifications through SNS
//! (`deliverability::ses`). Each event is recorded in a transaction of its own, like a
//! report from the bounce mailbox; one that names no delivery of ours is counted and
//! skipped, never an error for the rest.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use diesel_async::AsyncConnection;

use super::HttpState;
use crate::deliverability::bounces::{self, Recorded, Source};
use crate::deliverability::ses;
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
    match record(app, &events.events).await {
        Ok(counts) => Json(counts).into_response(),
        Err(refused) => refused,
    }
}

/// `POST /webhooks/bounces/ses`: SNS messages from the topics of SES_TOPIC_ARNS, signed by
/// SNS; a subscription is confirmed, a notification's bounces and complaints recorded.
pub async fn ses(State(state): State<HttpState>, body: Bytes) -> Response {
    let app = &state.app;
    let topics = &app.config().bounces.ses_topic_arns;
    if topics.is_empty() {
        return refuse(StatusCode::NOT_FOUND, "this webhook is off (SES_TOPIC_ARNS is not set)");
    }
    if body.len() > webhooks::MAX_BODY {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "at most 1 MiB per request");
    }
    let message: ses::SnsMessage = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(err) => return refuse(StatusCode::BAD_REQUEST, &format!("not an SNS message: {err}")),
    };
    if !topics.contains(&message.topic_arn) {
        return refuse(StatusCode::FORBIDDEN, "not a topic of SES_TOPIC_ARNS");
    }
    if let Err(why) = state.sns.verify(&message).await {
        tracing::warn!(topic = message.topic_arn, why, "an SNS message that does not verify");
        return refuse(StatusCode::UNAUTHORIZED, &why);
    }
    match message.kind.as_str() {
        "SubscriptionConfirmation" => match state.sns.confirm(&message).await {
            Ok(()) => {
                tracing::info!(topic = message.topic_arn, "SNS subscription confirmed");
                Json(serde_json::json!({ "confirmed": true })).into_response()
            }
            // SNS sends the confirmation again; nothing is lost.
            Err(why) => refuse(StatusCode::BAD_GATEWAY, &why),
        },
        "Notification" => {
            let events = match ses::events(&message.message) {
                Ok(events) => events,
                Err(why) => return refuse(StatusCode::BAD_REQUEST, &why),
            };
            match record(app, &events).await {
                Ok(counts) => Json(counts).into_response(),
                Err(refused) => refused,
            }
        }
        _ => Json(serde_json::json!({})).into_response(),
    }
}

#[derive(serde::Serialize, Default)]
struct Counts {
    recorded: usize,
    repeated: usize,
    unknown: usize,
}

/// Records each event in a transaction of its own; an event that names no delivery of
/// ours is counted and skipped. A database failure ends the request (503): sending it again
/// records the rest and counts the first ones as repeats.
async fn record(app: &crate::app::AppState, events: &[webhooks::Event]) -> Result<Counts, Response> {
    let unavailable = || {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is unavailable; send again later",
        )
    };
    let key = app.unsubscribe_key().await.map_err(|_| unavailable())?.to_vec();
    let mut conn = app.conn().await.map_err(|_| unavailable())?;
    let policy = app.config().bounces.policy();
    let mut counts = Counts::default();
    for event in events {
        let delivery = match event.delivery(&key) {
            Named::Signed(id) => Some(id),
            Named::MessageId(id) => bounces::delivered_to(&mut conn, id, event.recipient.as_deref())
                .await
                .map_err(|_| unavailable())?
                .then_some(id),
            Named::Nothing => None,
        };
        let Some(delivery) = delivery else {
            counts.unknown += 1;
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
            .await
            .map_err(|_| unavailable())?;
        match result {
            Recorded::New { .. } => counts.recorded += 1,
            Recorded::Repeat => counts.repeated += 1,
            Recorded::UnknownDelivery => counts.unknown += 1,
        }
    }
    Ok(counts)
}
