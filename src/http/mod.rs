//! The HTTP edge: one axum router for the GraphQL endpoint (HTTP and WebSocket), the
//! playground, health checks, the unsubscribe and message pages and the static web front end.

pub mod auth;
mod client_ip;
mod export;
mod graphql;
mod health;
mod import;
mod pages;
mod view;
mod webhooks;
pub mod sockets;
mod web;
mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode};
use axum::routing::get;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::graphql::MailwarmSchema;

/// What handlers get: the shared state and the schema built over it.
#[derive(Clone)]
pub struct HttpState {
    pub app: AppState,
    pub schema: MailwarmSchema,
    /// The WebSockets this instance holds, by client address.
    pub sockets: std::sync::Arc<sockets::Sockets>,
    /// SNS signing certificates, fetched and kept (the SES webhook).
    pub sns: std::sync::Arc<crate::deliverability::ses::Sns>,
}

pub fn router(app: AppState, schema: MailwarmSchema) -> Router {
    let http = app.config().http.clone();
    let metrics = app.metrics().clone();
    let sockets = std::sync::Arc::new(sockets::Sockets::new(app.config()));
    let sns = std::sync::Arc::new(crate::deliverability::ses::Sns::new(
        app.outgoing_tls(),
        app.config().bounces.sns_cert_host.clone(),
    ));
    let state = HttpState {
        app,
        schema,
        sockets,
        sns,
    };

    let mut router = Router::new()
        .route(
            "/graphql",
            get(graphql::graphql_get)
                .post(graphql::graphql_post)
                .fallback(graphql::graphql_method_not_allowed),
        )
        .route("/graphql/ws", get(ws::graphql_ws))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/unsubscribe", get(pages::unsubscribe_form).post(pages::unsubscribe))
        .route("/view/{delivery}", get(view::web_view))
        .route("/preview", axum::routing::post(view::preview_frame))
        .route("/export/clients.csv", get(export::clients_csv))
        .route("/webhooks/bounces", axum::routing::post(webhooks::bounces))
        .route("/webhooks/bounces/ses", axum::routing::post(webhooks::ses))
        .route("/metrics", get(health::metrics));
    router = if http.graphiql {
        router.route("/graphiql", get(web::graphiql))
    } else {
        // Not the single page either: the playground is off.
        router.route("/graphiql", get(|| async { StatusCode::NOT_FOUND }))
    };
    router = router.fallback(web::static_file);

    // Uploads of any size: no body limit and no request timeout (a million-line file takes
    // longer to send than a request may take).
    let uploads = Router::new()
        .route("/import/clients.csv", axum::routing::post(import::clients_csv))
        .with_state(state.clone());
    let mut router = router
        .route("/import/{id}/errors.csv", get(import::errors_csv))
        .with_state(state)
        .layer(DefaultBodyLimit::max(http.body_limit))
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            http.request_timeout,
        ))
        .merge(uploads)
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn_with_state(metrics, count_responses));
    if !http.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = http
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        router = router.layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
                .allow_headers([
                    axum::http::header::CONTENT_TYPE,
                    axum::http::header::AUTHORIZATION,
                    axum::http::header::ACCEPT,
                ])
                .allow_credentials(true),
        );
    }
    router
}

/// Counts responses by status code for /metrics.
async fn count_responses(
    axum::extract::State(metrics): axum::extract::State<crate::metrics::Metrics>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let response = next.run(request).await;
    metrics
        .http_requests
        .get_or_create(&crate::metrics::Status {
            status: response.status().as_u16().to_string(),
        })
        .inc();
    response
}
