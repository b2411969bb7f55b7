//! Prometheus metrics of one acquirer instance, in a registry of its own (tests run several in one
//! process), plus the middleware that counts and times every request by route.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use payctl_domain::settlement::SettlementType;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::sync::Arc;
use std::time::Instant;

pub struct Metrics {
    pub registry: Registry,
    /// By matched route and outcome (`ok`, `client_error`, `unavailable`, `error`).
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    /// Settlements written, by type (replays are not counted).
    pub settlements: IntCounterVec,
    /// Injected failures, by `when`: `before` (nothing settled) or `after` (settled, but answered 503).
    pub failures_injected: IntCounterVec,
    pub outage_active: IntGauge,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: T) -> T {
    // Names are static and distinct, so registration cannot fail.
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let r = Registry::new_custom(None, None).expect("an empty registry");
        let metrics = Self {
            requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "acquirer_requests_total",
                        "Acquirer HTTP requests by route and outcome",
                    ),
                    &["route", "outcome"],
                )
                .expect("valid"),
            ),
            duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "acquirer_request_duration_seconds",
                        "Acquirer HTTP request latency, injected latency included",
                    )
                    .buckets(vec![
                        0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0,
                        10.0,
                    ]),
                    &["route"],
                )
                .expect("valid"),
            ),
            settlements: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "acquirer_settlements_total",
                        "Settlements written (first requests only, not replays), by type",
                    ),
                    &["type"],
                )
                .expect("valid"),
            ),
            failures_injected: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "acquirer_failures_injected_total",
                        "Settlement requests answered 503 on purpose: before (nothing settled) or after (settled, answer lost)",
                    ),
                    &["when"],
                )
                .expect("valid"),
            ),
            outage_active: register(
                &r,
                IntGauge::new(
                    "acquirer_outage_active",
                    "1 while an outage started through /v1/admin/outage lasts",
                )
                .expect("valid"),
            ),
            registry: r,
        };
        // Every label value at zero, so dashboards and rate() see the series from the start.
        for kind in [SettlementType::Capture, SettlementType::Refund] {
            metrics.settlements.with_label_values(&[kind.as_str()]);
        }
        for when in ["before", "after"] {
            metrics.failures_injected.with_label_values(&[when]);
        }
        Arc::new(metrics)
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Counts and times each request under its matched route (never the raw path, which would make a
/// series per reference).
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| format!("{} {}", method_label(request.method()), p.as_str()))
        .unwrap_or_else(|| "unmatched".to_owned());
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let outcome = if status.is_success() {
        "ok"
    } else if status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
        "unavailable"
    } else if status.is_client_error() {
        "client_error"
    } else {
        "error"
    };
    metrics
        .duration
        .with_label_values(&[&route])
        .observe(start.elapsed().as_secs_f64());
    metrics.requests.with_label_values(&[&route, outcome]).inc();
    response
}

/// From a fixed set: a made-up method must not become a new series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        _ => "OTHER",
    }
}
