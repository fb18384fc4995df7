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

/// The database answers: 200, else 503 (a load balancer stops sending traffic here).
pub async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    let check = async {
        let mut conn = state.app.conn().await.ok()?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await.ok()
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Some(_)) => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable"),
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
