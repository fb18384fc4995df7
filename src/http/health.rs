//! Liveness and readiness probes.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use diesel_async::RunQueryDsl;

use super::HttpState;

/// The process is up and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// 200 when the database answers and every background task runs (and, on a dispatching
/// instance, the dispatcher ticks); else 503 with the reasons, one per line, so a load
/// balancer stops sending traffic here and an operator sees why.
pub async fn readyz(State(state): State<HttpState>) -> (StatusCode, String) {
    let check = async {
        let mut conn = state.app.conn().await.ok()?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await.ok()
    };
    let mut problems = state.app.health().problems();
    if !matches!(tokio::time::timeout(Duration::from_secs(2), check).await, Ok(Some(_))) {
        problems.insert(0, "database unreachable".to_owned());
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n"))
    }
}

/// Prometheus metrics of this instance (queue depth read from the database now).
pub async fn metrics(State(state): State<HttpState>) -> impl axum::response::IntoResponse {
    let metrics = state.app.metrics();
    if let Ok(mut conn) = state.app.conn().await
        && let Ok(depth) = crate::dispatch::queue::depth(&mut conn).await
    {
        metrics.queue_depth.set(depth);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.encode(),
    )
}
