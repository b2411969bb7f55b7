//! The consumer's Prometheus metrics, in a registry of its own.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use std::sync::Arc;

pub struct Metrics {
    pub registry: Registry,
    pub consumed: IntCounterVec,
    pub legs_written: IntCounter,
    pub duplicates: IntCounter,
    pub dlq_sent: IntCounterVec,
    pub retries: IntCounter,
    pub lag: IntGaugeVec,
    pub processing: HistogramVec,
    pub ledger_lag: Gauge,
    pub stalled: Gauge,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
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
    /// `topics`: the topics this consumer reads, as named on the broker.
    pub fn new(topics: &[String]) -> Arc<Self> {
        let r = Registry::new();
        reg(&r, build_info());
        let metrics = Self {
            consumed: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("consumer_events_consumed_total", "Events read, by topic"),
                    &["topic"],
                )
                .expect("valid"),
            ),
            legs_written: reg(
                &r,
                IntCounter::new("ledger_legs_written_total", "Ledger legs inserted")
                    .expect("valid"),
            ),
            duplicates: reg(
                &r,
                IntCounter::new(
                    "consumer_duplicate_events_total",
                    "Redelivered events that were already in the ledger",
                )
                .expect("valid"),
            ),
            dlq_sent: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "consumer_dlq_sent_total",
                        "Poison messages sent to the DLQ, by error type",
                    ),
                    &["error_type"],
                )
                .expect("valid"),
            ),
            retries: reg(
                &r,
                IntCounter::new("consumer_retries_total", "Retries after transient failures")
                    .expect("valid"),
            ),
            lag: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "consumer_lag",
                        "Messages behind the high watermark, by topic and partition",
                    ),
                    &["topic", "partition"],
                )
                .expect("valid"),
            ),
            processing: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "consumer_batch_processing_seconds",
                        "Time to apply one batch",
                    )
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    ]),
                    &["outcome"],
                )
                .expect("valid"),
            ),
            ledger_lag: reg(
                &r,
                Gauge::new(
                    "ledger_lag_seconds",
                    "Now minus occurredAt of the last applied event",
                )
                .expect("valid"),
            ),
            stalled: reg(
                &r,
                Gauge::new(
                    "consumer_stalled_seconds",
                    "How long the batch in hand has been failing and retried (0 while the consumer moves)",
                )
                .expect("valid"),
            ),
            registry: r,
        };
        // The series every dashboard panel reads exist from the start, at zero.
        for topic in topics {
            metrics.consumed.with_label_values(&[topic.as_str()]);
        }
        Arc::new(metrics)
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_say_which_build_answers() {
        let text = Metrics::new(&[]).render();
        let line = format!(
            "build_info{{commit=\"{}\",version=\"{}\"}} 1",
            env!("PAYCTL_GIT_COMMIT"),
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&line), "{line} not in:\n{text}");
    }
}
