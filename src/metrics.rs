//! Prometheus metrics, served at GET /metrics in the text format.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Status {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Server {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Task {
    pub task: String,
}

/// The service's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Deliveries by what their attempt did to them: sent, retry, failed, unknown.
    pub deliveries: Family<Outcome, Counter>,
    /// Attempts by status: success, temporary_failure, permanent_failure, unknown.
    pub attempts: Family<Status, Counter>,
    /// Seconds one SMTP exchange took.
    pub send_seconds: Histogram,
    /// Deliveries waiting in the queue (set when scraped).
    pub queue_depth: Gauge,
    /// 1 while this instance's circuit breakers hold all sending back (every server's open).
    pub breaker_open: Gauge,
    /// 1 while this instance's circuit breaker for the SMTP server (by name) is open.
    pub smtp_breaker_open: Family<Server, Gauge>,
    /// HTTP responses by status code.
    pub http_requests: Family<Status, Counter>,
    /// Background tasks restarted after they ended unexpectedly, by task.
    pub task_restarts: Family<Task, Counter>,
    /// Unix time of the dispatcher's last tick (a step or a recorded group).
    pub dispatch_last_tick: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mailwarm");
        let deliveries = Family::<Outcome, Counter>::default();
        let attempts = Family::<Status, Counter>::default();
        let send_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let queue_depth = Gauge::default();
        let breaker_open = Gauge::default();
        let smtp_breaker_open = Family::<Server, Gauge>::default();
        let http_requests = Family::<Status, Counter>::default();
        let task_restarts = Family::<Task, Counter>::default();
        let dispatch_last_tick = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "deliveries",
            "Delivery outcomes recorded by this instance",
            deliveries.clone(),
        );
        registry.register(
            "attempts",
            "Attempts logged by this instance, by status",
            attempts.clone(),
        );
        registry.register("send_seconds", "Duration of one SMTP exchange", send_seconds.clone());
        registry.register("queue_depth", "Deliveries pending in the queue", queue_depth.clone());
        registry.register(
            "breaker_open",
            "1 while the circuit breaker holds sending back",
            breaker_open.clone(),
        );
        registry.register(
            "smtp_breaker_open",
            "1 while the circuit breaker for this SMTP server is open",
            smtp_breaker_open.clone(),
        );
        registry.register("http_requests", "HTTP responses by status code", http_requests.clone());
        registry.register(
            "task_restarts",
            "Background tasks restarted after they ended unexpectedly",
            task_restarts.clone(),
        );
        registry.register(
            "dispatch_last_tick_seconds",
            "Unix time of the dispatcher's last tick",
            dispatch_last_tick.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            deliveries,
            attempts,
            send_seconds,
            queue_depth,
            breaker_open,
            smtp_breaker_open,
            http_requests,
            task_restarts,
            dispatch_last_tick,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
}
