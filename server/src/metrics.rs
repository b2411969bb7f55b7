//! Prometheus metrics of one ingest instance, in a registry of its own (so tests can run several apps in
//! one process and read each one's figures), plus the HTTP middleware that times every request by route.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};
use std::sync::Arc;
use std::time::Instant;

pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub payments: IntCounterVec,
    pub idempotent_replays: IntCounter,
    pub rate_limited: IntCounterVec,
    pub ratelimit_fail_open: IntCounter,
    pub key_lookups: IntCounterVec,
    /// The configured `known_key_ttl_seconds`: how long a revoked or rotated key may still work here.
    pub known_key_ttl: IntGauge,
    pub outbox_backlog: IntGauge,
    pub outbox_oldest_age: Gauge,
    pub outbox_published: IntCounter,
    pub outbox_publish_failures: IntCounter,
    pub breaker_state: GaugeVec,
    pub breaker_failure_rate: Gauge,
    pub breaker_slow_call_rate: Gauge,
    pub breaker_buffered_calls: GaugeVec,
    pub breaker_not_permitted: IntGauge,
    /// Requests per shared commit (commit batching): `_count` is commits, `_sum` requests committed.
    pub commit_batch_size: prometheus::Histogram,
    /// Batches that could not be written whole, by why; their requests went on alone or in a smaller batch.
    pub commit_batch_split: IntCounterVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: T) -> T {
    // Names are static and distinct, so registration cannot fail.
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

/// `build_info{version, commit} 1`: which build answers (`payctl version` reads it; the commit comes
/// from `build/git_commit.rs`).
fn build_info() -> IntGauge {
    let gauge = IntGauge::with_opts(
        Opts::new(
            "build_info",
            "The version and git commit of this build (always 1)",
        )
        .const_label("version", env!("CARGO_PKG_VERSION"))
        .const_label("commit", env!("PAYCTL_GIT_COMMIT")),
    )
    .expect("valid");
    gauge.set(1);
    gauge
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let r = Registry::new_custom(None, None).expect("an empty registry");
        register(&r, build_info());
        let latency_buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25,
            0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let metrics = Self {
            http_requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new("http_requests_total", "HTTP requests by route and status"),
                    &["method", "route", "status"],
                )
                .expect("valid"),
            ),
            http_duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                        .buckets(latency_buckets),
                    &["method", "route"],
                )
                .expect("valid"),
            ),
            payments: register(
                &r,
                IntCounterVec::new(
                    Opts::new("payments_total", "Payment operations that took effect"),
                    &["operation"],
                )
                .expect("valid"),
            ),
            idempotent_replays: register(
                &r,
                IntCounter::new(
                    "idempotent_replays_total",
                    "Responses replayed for a repeated idempotency key",
                )
                .expect("valid"),
            ),
            rate_limited: register(
                &r,
                IntCounterVec::new(
                    Opts::new("rate_limited_total", "Requests refused by the rate limiter"),
                    &["action"],
                )
                .expect("valid"),
            ),
            ratelimit_fail_open: register(
                &r,
                IntCounter::new(
                    "ratelimit_fail_open_total",
                    "Requests let through because Redis did not answer the rate limiter in time",
                )
                .expect("valid"),
            ),
            key_lookups: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "auth_key_lookups_total",
                        "API keys looked up in the database (not found in the in-memory caches), by result",
                    ),
                    &["result"],
                )
                .expect("valid"),
            ),
            known_key_ttl: register(
                &r,
                IntGauge::new(
                    "auth_known_key_ttl_seconds",
                    "How long a valid API key is trusted from memory: a rotated or revoked key stops working here within that long",
                )
                .expect("valid"),
            ),
            outbox_backlog: register(
                &r,
                IntGauge::new("outbox_backlog", "Outbox events not yet published").expect("valid"),
            ),
            outbox_oldest_age: register(
                &r,
                Gauge::new(
                    "outbox_oldest_unpublished_age_seconds",
                    "Age of the oldest unpublished outbox event (0 when none)",
                )
                .expect("valid"),
            ),
            outbox_published: register(
                &r,
                IntCounter::new("outbox_published_total", "Outbox events published to Kafka")
                    .expect("valid"),
            ),
            outbox_publish_failures: register(
                &r,
                IntCounter::new("outbox_publish_failures_total", "Failed publish attempts")
                    .expect("valid"),
            ),
            breaker_state: register(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "circuit_breaker_state",
                        "1 for the breaker's current state, 0 for the others",
                    ),
                    &["name", "state"],
                )
                .expect("valid"),
            ),
            breaker_failure_rate: register(
                &r,
                Gauge::new(
                    "circuit_breaker_failure_rate",
                    "Failure rate % of the breaker's window (-1 below minimum calls)",
                )
                .expect("valid"),
            ),
            breaker_slow_call_rate: register(
                &r,
                Gauge::new(
                    "circuit_breaker_slow_call_rate",
                    "Slow-call rate % of the breaker's window (-1 below minimum calls)",
                )
                .expect("valid"),
            ),
            breaker_buffered_calls: register(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "circuit_breaker_buffered_calls",
                        "Calls in the breaker's window by kind",
                    ),
                    &["kind"],
                )
                .expect("valid"),
            ),
            breaker_not_permitted: register(
                &r,
                IntGauge::new(
                    "circuit_breaker_not_permitted_calls_total",
                    "Calls the breaker refused",
                )
                .expect("valid"),
            ),
            commit_batch_size: register(
                &r,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "payment_commit_batch_size",
                        "Requests written per shared commit (commit batching)",
                    )
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
                )
                .expect("valid"),
            ),
            commit_batch_split: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "payment_commit_batch_split_total",
                        "Batches not written whole: duplicate_key (a key already used: those requests went on alone) or error (every request went on alone)",
                    ),
                    &["reason"],
                )
                .expect("valid"),
            ),
            registry: r,
        };
        for reason in ["duplicate_key", "error"] {
            metrics.commit_batch_split.with_label_values(&[reason]);
        }
        // Every label value the code can use, at zero: dashboards and alerts see the series (and rate()
        // has a starting point) before the first payment or the first 429.
        for operation in ["authorized", "captured", "refunded", "voided"] {
            metrics.payments.with_label_values(&[operation]);
        }
        for action in crate::ratelimit::Action::ALL {
            metrics.rate_limited.with_label_values(&[action.as_str()]);
        }
        metrics.rate_limited.with_label_values(&["authentication"]);
        for result in ["known", "unknown"] {
            metrics.key_lookups.with_label_values(&[result]);
        }
        Arc::new(metrics)
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Counts and times each request under its matched route (never the raw path, which would explode the
/// label set with payment ids).
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method());
    let start = Instant::now();
    let response = next.run(request).await;
    metrics
        .http_duration
        .with_label_values(&[method, &route])
        .observe(start.elapsed().as_secs_f64());
    metrics
        .http_requests
        .with_label_values(&[method, &route, response.status().as_str()])
        .inc();
    response
}

/// Label values must come from a fixed set, or every made-up method a client sends becomes new series
/// (memory here and in Prometheus without bound). The route is already bounded: the matched route
/// template or `unmatched`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_say_which_build_answers() {
        let text = Metrics::new().render();
        let line = format!(
            "build_info{{commit=\"{}\",version=\"{}\"}} 1",
            env!("PAYCTL_GIT_COMMIT"),
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&line), "{line} not in:\n{text}");
    }
}
