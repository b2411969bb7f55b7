//! The settlement worker's Prometheus metrics, in a registry of its own.

use crate::gauges::Payouts;
use payctl_breaker::State as BreakerState;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;

pub const STATUSES: [&str; 4] = ["PENDING", "SUBMITTED", "SETTLED", "FAILED"];
pub const OUTCOMES: [&str; 7] = [
    "settled",
    "replayed",
    "rejected",
    "unavailable",
    "timeout",
    "connection_error",
    "protocol_error",
];

pub struct Metrics {
    pub registry: Registry,
    pub records: IntGaugeVec,
    pub oldest_pending_age: Gauge,
    pub requests: IntCounterVec,
    pub request_duration: Histogram,
    pub breaker_state: GaugeVec,
    pub dlq: IntCounter,
    pub consumed: IntCounterVec,
    pub unparseable: IntCounter,
    pub replays: IntCounter,
    pub db_retries: IntCounter,
    pub in_flight: IntGauge,
    pub payouts: IntGaugeVec,
    pub payout_net: IntGaugeVec,
    pub unpaid_settled: IntGauge,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

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
        let r = Registry::new();
        reg(&r, build_info());
        let m = Self {
            records: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "settlement_records",
                        "Settlement records by status (a count query every few seconds)",
                    ),
                    &["status"],
                )
                .expect("valid"),
            ),
            oldest_pending_age: reg(
                &r,
                Gauge::new(
                    "settlement_oldest_pending_age_seconds",
                    "Age of the oldest settlement not yet SETTLED or FAILED (0 when none)",
                )
                .expect("valid"),
            ),
            requests: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "settlement_acquirer_requests_total",
                        "Calls to the acquirer by outcome",
                    ),
                    &["outcome"],
                )
                .expect("valid"),
            ),
            request_duration: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "settlement_acquirer_request_duration_seconds",
                        "Duration of calls to the acquirer, whatever their outcome",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0,
                        10.0,
                    ]),
                )
                .expect("valid"),
            ),
            breaker_state: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "settlement_breaker_state",
                        "1 for the acquirer breaker's current state, 0 for the others",
                    ),
                    &["state"],
                )
                .expect("valid"),
            ),
            dlq: reg(
                &r,
                IntCounter::new(
                    "settlement_dlq_total",
                    "FAILED settlements published to the DLQ",
                )
                .expect("valid"),
            ),
            consumed: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "settlement_events_consumed_total",
                        "Events read, by event type (only captures and refunds are settled)",
                    ),
                    &["type"],
                )
                .expect("valid"),
            ),
            unparseable: reg(
                &r,
                IntCounter::new(
                    "settlement_unparseable_messages_total",
                    "Messages skipped as not an event (the ledger consumer dead-letters them)",
                )
                .expect("valid"),
            ),
            replays: reg(
                &r,
                IntCounter::new(
                    "settlement_replays_total",
                    "FAILED settlements put back to PENDING by a DLQ replay",
                )
                .expect("valid"),
            ),
            db_retries: reg(
                &r,
                IntCounter::new(
                    "settlement_database_retries_total",
                    "Retries after a database failure",
                )
                .expect("valid"),
            ),
            in_flight: reg(
                &r,
                IntGauge::new(
                    "settlement_acquirer_in_flight",
                    "Acquirer calls in flight now",
                )
                .expect("valid"),
            ),
            payouts: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "settlement_payouts",
                        "Payout records by currency (`payctl settle`; a count query every few seconds)",
                    ),
                    &["currency"],
                )
                .expect("valid"),
            ),
            payout_net: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "settlement_payout_net",
                        "Sum of the payouts' net by currency, in minor units (negative when merchants owe)",
                    ),
                    &["currency"],
                )
                .expect("valid"),
            ),
            unpaid_settled: reg(
                &r,
                IntGauge::new(
                    "settlement_unpaid_settled_records",
                    "SETTLED records not paid out whose business date (in the cutoff time zone) is over",
                )
                .expect("valid"),
            ),
            registry: r,
        };
        // The series dashboards read exist from the start, at zero.
        for s in STATUSES {
            m.records.with_label_values(&[s]);
        }
        for o in OUTCOMES {
            m.requests.with_label_values(&[o]);
        }
        for t in payctl_domain::EventType::ALL {
            m.consumed.with_label_values(&[t.as_str()]);
        }
        m.set_breaker_state(BreakerState::Closed);
        Arc::new(m)
    }

    pub fn set_breaker_state(&self, state: BreakerState) {
        for s in BreakerState::ALL {
            self.breaker_state
                .with_label_values(&[s.label()])
                .set(if s == state { 1.0 } else { 0.0 });
        }
    }

    /// Sets the payout gauges from one reading. Payouts are never deleted, so a currency once seen keeps
    /// its series and no stale one needs removing.
    pub fn set_payouts(&self, p: &Payouts) {
        for (currency, count, net) in &p.by_currency {
            self.payouts.with_label_values(&[currency]).set(*count);
            self.payout_net.with_label_values(&[currency]).set(*net);
        }
        self.unpaid_settled.set(p.unpaid_settled);
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
    fn every_series_exists_from_the_start() {
        let text = Metrics::new().render();
        for line in [
            "settlement_records{status=\"PENDING\"} 0",
            "settlement_acquirer_requests_total{outcome=\"unavailable\"} 0",
            "settlement_breaker_state{state=\"closed\"} 1",
            "settlement_breaker_state{state=\"open\"} 0",
            "settlement_dlq_total 0",
            "settlement_events_consumed_total{type=\"PAYMENT_CAPTURED\"} 0",
            "settlement_oldest_pending_age_seconds 0",
            "settlement_acquirer_request_duration_seconds_count 0",
            "settlement_unpaid_settled_records 0",
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }

    #[test]
    fn payout_gauges_show_each_currency_and_the_unpaid_records() {
        let m = Metrics::new();
        m.set_payouts(&Payouts {
            by_currency: vec![("KRW".into(), 3, 29_250), ("USD".into(), 1, -120)],
            unpaid_settled: 7,
        });
        let text = m.render();
        for line in [
            "# HELP settlement_payouts Payout records by currency",
            "# HELP settlement_payout_net Sum of the payouts' net by currency",
            "# HELP settlement_unpaid_settled_records SETTLED records not paid out",
            "settlement_payouts{currency=\"KRW\"} 3",
            "settlement_payouts{currency=\"USD\"} 1",
            "settlement_payout_net{currency=\"KRW\"} 29250",
            "settlement_payout_net{currency=\"USD\"} -120",
            "settlement_unpaid_settled_records 7",
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }
}
