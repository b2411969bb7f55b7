//! The services' own `/metrics`, read directly (no Prometheus needed), and the figures of an interval
//! between two readings: rates from counters, p99 from histogram buckets.
//!
//! The exposition parser is a few lines on purpose: our services emit plain `name{labels} value` lines
//! (no timestamps, exemplars or escapes in label values), and nothing more is needed here.

use crate::stack::{saved_plan, Kind, Ports};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// One sample line of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses Prometheus text exposition (comments and malformed lines are skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().ok()?,
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}')?;
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .filter_map(|p| {
                            let (k, v) = p.split_once("=\"")?;
                            Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, Vec::new()),
            };
            Some(Sample {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

/// The `/metrics` of every ingest instance and the consumer, by service name.
pub async fn scrape(home: &Path, ports: &Ports) -> Vec<(String, Kind, Option<Vec<Sample>>)> {
    scrape_kinds(home, ports, &[Kind::Ingest, Kind::Consumer]).await
}

/// The `/metrics` of every service of the given kinds in the saved plan, by service name (`None` for
/// one that does not answer).
pub async fn scrape_kinds(
    home: &Path,
    ports: &Ports,
    kinds: &[Kind],
) -> Vec<(String, Kind, Option<Vec<Sample>>)> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for svc in saved_plan(home, ports) {
        if !kinds.contains(&svc.kind) {
            continue;
        }
        let body = async {
            client
                .get(format!("http://127.0.0.1:{}/metrics", svc.port))
                .timeout(Duration::from_secs(2))
                .send()
                .await?
                .error_for_status()?
                .text()
                .await
        }
        .await
        .ok();
        out.push((svc.name, svc.kind, body.map(|b| parse(&b))));
    }
    out
}

fn sum(samples: &[Sample], name: &str, keep: impl Fn(&Sample) -> bool) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && keep(s))
        .map(|s| s.value)
        .sum()
}

/// The q-quantile of the observations between two cumulative histograms (summed over every label but
/// `le`), as `histogram_quantile` computes it (see `bucket_quantile`; `lowest` is the lower edge of the
/// lowest bucket).
pub fn quantile_between(
    before: &[Sample],
    after: &[Sample],
    name: &str,
    q: f64,
    lowest: f64,
) -> Option<f64> {
    let buckets = |samples: &[Sample]| {
        let mut by_le: HashMap<String, f64> = HashMap::new();
        for s in samples.iter().filter(|s| s.name == name) {
            if let Some(le) = s.label("le") {
                *by_le.entry(le.to_owned()).or_default() += s.value;
            }
        }
        by_le
    };
    let (b, a) = (buckets(before), buckets(after));
    let mut delta: Vec<(f64, f64)> = a
        .iter()
        .filter_map(|(le, v)| {
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, v - b.get(le).copied().unwrap_or(0.0)))
        })
        .collect();
    delta.sort_by(|x, y| x.0.total_cmp(&y.0));
    bucket_quantile(&delta, q, lowest)
}

/// The q-quantile of a histogram given as (upper bound, cumulative count) sorted by bound, the last
/// +Inf, the way Prometheus' `histogram_quantile` does it: find the bucket whose cumulative count first
/// reaches q × total, and interpolate linearly between its lower and upper bound by where the rank lies
/// within its count; a rank in the +Inf bucket gives the highest finite bound. Prometheus takes 0 as the
/// lower edge of the lowest bucket; `lowest` replaces it for a quantity known to be at least that
/// (capped at the bucket's upper bound). `None` when the histogram has no observations.
pub fn bucket_quantile(buckets: &[(f64, f64)], q: f64, lowest: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let mut prev: Option<(f64, f64)> = None;
    for &(bound, count) in buckets {
        if count >= rank {
            let (start, below) = prev.unwrap_or((lowest.min(bound), 0.0));
            if bound.is_infinite() {
                return Some(start);
            }
            let within = (rank - below) / (count - below).max(f64::MIN_POSITIVE);
            return Some(start + (bound - start) * within);
        }
        prev = Some((bound, count));
    }
    None
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub interval_seconds: f64,
    pub requests_per_second: f64,
    pub p99_ms: Option<f64>,
    pub errors_4xx_per_second: f64,
    pub errors_5xx_per_second: f64,
    pub payments_per_second: f64,
    pub breaker: Vec<(String, String)>,
    pub outbox_backlog: f64,
    pub outbox_oldest_age_seconds: f64,
    pub events_consumed_per_second: f64,
    /// Events between the consumer group's committed offsets and the topics' ends, as the broker
    /// counts them (`None` when the broker does not answer).
    pub consumer_lag: Option<i64>,
    /// How old the newest event the consumer applied was when it was applied (holds its last value
    /// while nothing arrives).
    pub ledger_lag_seconds: f64,
    /// Records held in the DLQ topic now, as the broker counts them (`None` when it does not answer).
    pub dlq_records: Option<i64>,
    /// Records the consumer dead-lettered since it started (its counter).
    pub dlq_sent_since_start: f64,
    /// The settlement worker's figures (`None` when no settlement worker answers).
    pub settlement: Option<SettlementFigures>,
    pub unreachable: Vec<String>,
}

/// Settlement with the acquirer (issue 15), from the settlement workers' `/metrics`. The record and
/// payout gauges count the whole table, so every worker reports the same: the largest is taken.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementFigures {
    pub pending: f64,
    pub submitted: f64,
    pub failed: f64,
    /// Age of the oldest record not yet SETTLED or FAILED (0 when none).
    pub oldest_pending_age_seconds: f64,
    pub acquirer_calls_per_second: f64,
    /// Share of the interval's calls whose outcome was neither `settled` nor `replayed` (`None` when
    /// there were no calls).
    pub acquirer_error_share: Option<f64>,
    pub acquirer_p99_ms: Option<f64>,
    /// The acquirer breaker's state on each settlement worker.
    pub breaker: Vec<(String, String)>,
    /// Payout records made (every currency).
    pub payouts: f64,
    /// SETTLED records of a business day that is over that no payout covers.
    pub unpaid_settled_records: f64,
}

/// The outcomes of an acquirer call that are not an error: the acquirer settled it, or answered a
/// retry with the settlement it had already made.
const ACQUIRER_SUCCESSES: [&str; 2] = ["settled", "replayed"];

/// What the broker says: the consumer group's lag over the event topics, and the DLQ's records
/// (each `None` when the broker at `kafka_port` does not answer).
pub async fn broker_figures(kafka_port: u16) -> (Option<i64>, Option<i64>) {
    let bootstrap = format!("127.0.0.1:{kafka_port}");
    tokio::task::spawn_blocking(move || {
        // Short: a broker that does not answer must not hold up each refresh for long.
        let timeout = Duration::from_secs(1);
        let topics: Vec<String> = payctl_domain::EventType::ALL
            .iter()
            .map(|t| t.topic().to_owned())
            .collect();
        let lag = pay_consumer::topics::group_lag(
            &bootstrap,
            pay_consumer::config::DEFAULT_GROUP,
            &topics,
            timeout,
        )
        .ok()
        .map(|per_topic| per_topic.iter().map(|(_, lag)| lag).sum());
        let dlq = pay_consumer::topics::records_held(
            &bootstrap,
            payctl_domain::event::DLQ_TOPIC,
            timeout,
        )
        .ok();
        (lag, dlq)
    })
    .await
    .unwrap_or((None, None))
}

pub fn figures(
    before: &[(String, Kind, Option<Vec<Sample>>)],
    after: &[(String, Kind, Option<Vec<Sample>>)],
    seconds: f64,
) -> Figures {
    let all = |v: &[(String, Kind, Option<Vec<Sample>>)], kind: Kind| -> Vec<Sample> {
        v.iter()
            .filter(|(_, k, _)| *k == kind)
            .filter_map(|(_, _, s)| s.clone())
            .flatten()
            .collect()
    };
    let (ib, ia) = (all(before, Kind::Ingest), all(after, Kind::Ingest));
    let (cb, ca) = (all(before, Kind::Consumer), all(after, Kind::Consumer));
    let rate = |b: &[Sample], a: &[Sample], name: &str, keep: &dyn Fn(&Sample) -> bool| {
        ((sum(a, name, keep) - sum(b, name, keep)) / seconds).max(0.0)
    };
    let status_class =
        |c: char| move |s: &Sample| s.label("status").is_some_and(|v| v.starts_with(c));
    let max = |samples: &[Sample], name: &str| {
        samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .fold(0.0, f64::max)
    };
    // The state whose gauge is 1, per instance of `kind`.
    let breaker_states = |kind: Kind, metric: &str| -> Vec<(String, String)> {
        after
            .iter()
            .filter(|(_, k, _)| *k == kind)
            .map(|(name, _, samples)| {
                let state = samples
                    .as_ref()
                    .and_then(|s| {
                        s.iter()
                            .find(|s| s.name == metric && s.value >= 1.0)
                            .and_then(|s| s.label("state"))
                            .map(str::to_uppercase)
                    })
                    .unwrap_or_else(|| "unknown".into());
                (name.clone(), state)
            })
            .collect()
    };
    let breaker = breaker_states(Kind::Ingest, "circuit_breaker_state");
    let (sb, sa) = (all(before, Kind::Settlement), all(after, Kind::Settlement));
    let settlement_answers = after
        .iter()
        .any(|(_, k, s)| *k == Kind::Settlement && s.is_some());
    let settlement = settlement_answers.then(|| {
        let records = |status: &str| {
            sa.iter()
                .filter(|s| s.name == "settlement_records" && s.label("status") == Some(status))
                .map(|s| s.value)
                .fold(0.0, f64::max)
        };
        let calls = rate(&sb, &sa, "settlement_acquirer_requests_total", &|_| true);
        let errors = rate(&sb, &sa, "settlement_acquirer_requests_total", &|s| {
            !s.label("outcome")
                .is_some_and(|o| ACQUIRER_SUCCESSES.contains(&o))
        });
        // Every worker has its own payout series per currency, the same figures: the largest of each
        // currency, summed over currencies.
        let mut payouts: HashMap<&str, f64> = HashMap::new();
        for s in sa.iter().filter(|s| s.name == "settlement_payouts") {
            let v = payouts
                .entry(s.label("currency").unwrap_or(""))
                .or_default();
            *v = v.max(s.value);
        }
        SettlementFigures {
            pending: records("PENDING"),
            submitted: records("SUBMITTED"),
            failed: records("FAILED"),
            oldest_pending_age_seconds: max(&sa, "settlement_oldest_pending_age_seconds"),
            acquirer_calls_per_second: calls,
            acquirer_error_share: (calls > 0.0).then(|| errors / calls),
            acquirer_p99_ms: quantile_between(
                &sb,
                &sa,
                "settlement_acquirer_request_duration_seconds_bucket",
                0.99,
                0.0,
            )
            .map(|s| s * 1000.0),
            breaker: breaker_states(Kind::Settlement, "settlement_breaker_state"),
            payouts: payouts.values().sum(),
            unpaid_settled_records: max(&sa, "settlement_unpaid_settled_records"),
        }
    });
    Figures {
        interval_seconds: seconds,
        requests_per_second: rate(&ib, &ia, "http_requests_total", &|_| true),
        p99_ms: quantile_between(&ib, &ia, "http_request_duration_seconds_bucket", 0.99, 0.0)
            .map(|s| s * 1000.0),
        errors_4xx_per_second: rate(&ib, &ia, "http_requests_total", &status_class('4')),
        errors_5xx_per_second: rate(&ib, &ia, "http_requests_total", &status_class('5')),
        payments_per_second: rate(&ib, &ia, "payments_total", &|_| true),
        breaker,
        // Every instance reports the same table-wide backlog: take the largest, not the sum.
        outbox_backlog: max(&ia, "outbox_backlog"),
        outbox_oldest_age_seconds: max(&ia, "outbox_oldest_unpublished_age_seconds"),
        events_consumed_per_second: rate(&cb, &ca, "consumer_events_consumed_total", &|_| true),
        // From the broker, filled in by the caller: the consumer's own lag gauge is per member.
        consumer_lag: None,
        ledger_lag_seconds: max(&ca, "ledger_lag_seconds"),
        dlq_records: None,
        dlq_sent_since_start: sum(&ca, "consumer_dlq_sent_total", |_| true),
        settlement,
        unreachable: after
            .iter()
            .filter(|(_, _, s)| s.is_none())
            .map(|(n, _, _)| n.clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x y\n# TYPE h histogram\n\
        h_bucket{route=\"/a\",le=\"0.01\"} 10\nh_bucket{route=\"/a\",le=\"0.1\"} 20\n\
        h_bucket{route=\"/a\",le=\"+Inf\"} 20\nplain 3.5\n";

    #[test]
    fn parses_names_labels_and_values() {
        let s = parse(TEXT);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].name, "h_bucket");
        assert_eq!(s[0].label("route"), Some("/a"));
        assert_eq!(s[2].label("le"), Some("+Inf"));
        assert_eq!(s[3].value, 3.5);
        assert!(s[3].labels.is_empty());
    }

    #[test]
    fn quantile_interpolates_within_the_bucket_of_the_interval() {
        let before = parse(TEXT);
        // 100 new observations: 50 under 10 ms, 50 between 10 and 100 ms.
        let after = parse(
            "h_bucket{route=\"/a\",le=\"0.01\"} 60\nh_bucket{route=\"/a\",le=\"0.1\"} 120\n\
             h_bucket{route=\"/a\",le=\"+Inf\"} 120\n",
        );
        let p50 = quantile_between(&before, &after, "h_bucket", 0.5, 0.0).unwrap();
        assert!((p50 - 0.01).abs() < 1e-9, "{p50}");
        let p99 = quantile_between(&before, &after, "h_bucket", 0.99, 0.0).unwrap();
        assert!((p99 - 0.0982).abs() < 1e-6, "{p99}");
        assert_eq!(
            quantile_between(&after, &after, "h_bucket", 0.99, 0.0),
            None
        );
    }

    /// One scrape: each service's samples, `None` for one that does not answer.
    type Readings = Vec<(String, Kind, Option<Vec<Sample>>)>;

    /// Two readings of a settlement worker (the second 2 s later) and of a second one that reports the
    /// same table-wide gauges but is stopped at the second reading.
    fn settlement_readings() -> (Readings, Readings) {
        let worker = |calls: [u32; 3], le_1: u32, le_5: u32, breaker_open: bool| {
            let [settled, replayed, timeout] = calls;
            let total = settled + replayed + timeout;
            let (open, closed) = if breaker_open { (1, 0) } else { (0, 1) };
            parse(&format!(
                "settlement_records{{status=\"PENDING\"}} 12\n\
                 settlement_records{{status=\"SUBMITTED\"}} 4\n\
                 settlement_records{{status=\"SETTLED\"}} 900\n\
                 settlement_records{{status=\"FAILED\"}} 2\n\
                 settlement_oldest_pending_age_seconds 7.5\n\
                 settlement_acquirer_requests_total{{outcome=\"settled\"}} {settled}\n\
                 settlement_acquirer_requests_total{{outcome=\"replayed\"}} {replayed}\n\
                 settlement_acquirer_requests_total{{outcome=\"timeout\"}} {timeout}\n\
                 settlement_acquirer_request_duration_seconds_bucket{{le=\"1\"}} {le_1}\n\
                 settlement_acquirer_request_duration_seconds_bucket{{le=\"5\"}} {le_5}\n\
                 settlement_acquirer_request_duration_seconds_bucket{{le=\"+Inf\"}} {total}\n\
                 settlement_breaker_state{{state=\"closed\"}} {closed}\n\
                 settlement_breaker_state{{state=\"open\"}} {open}\n\
                 settlement_payouts{{currency=\"KRW\"}} 3\n\
                 settlement_payouts{{currency=\"USD\"}} 1\n\
                 settlement_payout_net{{currency=\"KRW\"}} 29250\n\
                 settlement_unpaid_settled_records 5\n"
            ))
        };
        let svc = |name: &str, samples| (name.to_owned(), Kind::Settlement, samples);
        let before = vec![
            svc("settlement", Some(worker([100, 10, 0], 100, 110, false))),
            svc("settlement-2", Some(worker([0, 0, 0], 0, 0, false))),
        ];
        // 2 s later: 80 more calls, 20 of them timeouts (beyond 5 s); the first worker's breaker open.
        let after = vec![
            svc("settlement", Some(worker([150, 20, 20], 150, 170, true))),
            svc("settlement-2", None),
        ];
        (before, after)
    }

    #[test]
    fn settlement_figures_take_the_table_gauges_once_and_rate_the_acquirer_calls() {
        let (before, after) = settlement_readings();
        let f = figures(&before, &after, 2.0);
        let s = f.settlement.expect("a settlement worker answers");
        assert_eq!((s.pending, s.submitted, s.failed), (12.0, 4.0, 2.0));
        assert_eq!(s.oldest_pending_age_seconds, 7.5);
        assert_eq!(s.acquirer_calls_per_second, 40.0);
        // Replays are successes: 20 timeouts of 80 calls.
        assert_eq!(s.acquirer_error_share, Some(0.25));
        // Rank 79.2 of 80 is in the (5, +Inf] bucket: its lower bound, as histogram_quantile answers.
        assert_eq!(s.acquirer_p99_ms, Some(5000.0));
        assert_eq!(
            s.breaker,
            vec![
                ("settlement".into(), "OPEN".into()),
                ("settlement-2".into(), "unknown".into())
            ]
        );
        assert_eq!(s.payouts, 4.0);
        assert_eq!(s.unpaid_settled_records, 5.0);
        assert_eq!(f.unreachable, vec!["settlement-2".to_owned()]);
    }

    #[test]
    fn no_settlement_figures_without_a_settlement_worker_and_no_error_share_without_calls() {
        let (before, _) = settlement_readings();
        let stopped: Vec<_> = before
            .iter()
            .map(|(n, k, _)| (n.clone(), *k, None))
            .collect();
        assert!(figures(&before, &stopped, 2.0).settlement.is_none());
        assert!(figures(&[], &[], 2.0).settlement.is_none());
        let idle = figures(&before, &before, 2.0).settlement.unwrap();
        assert_eq!(idle.acquirer_calls_per_second, 0.0);
        assert_eq!(idle.acquirer_error_share, None);
        assert_eq!(idle.acquirer_p99_ms, None);
    }

    /// Batch sizes (buckets 1, 2, 4, …, 256 as pay-server exports them), as (le, cumulative count).
    fn batch_buckets(counts: [f64; 9]) -> Vec<(f64, f64)> {
        let mut cumulative = 0.0;
        let mut out: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
            .into_iter()
            .zip(counts)
            .map(|(le, n)| {
                cumulative += n;
                (le, cumulative)
            })
            .collect();
        out.push((f64::INFINITY, cumulative));
        out
    }

    #[test]
    fn bucket_quantile_interpolates_as_histogram_quantile_does() {
        let close = |got: Option<f64>, want: f64| {
            got.is_some_and(|g| (g - want).abs() < 1e-9)
                .then_some(())
                .ok_or(format!("{got:?}, expected {want}"))
        };
        // 100 commits: 10 of one request, 20 of two, 70 of five to eight.
        let b = batch_buckets([10.0, 20.0, 0.0, 70.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        // p50: rank 50 lies 20 into the (4, 8] bucket's 70 → 4 + 4 × 20/70.
        close(bucket_quantile(&b, 0.5, 1.0), 4.0 + 4.0 * 20.0 / 70.0).unwrap();
        // p99: rank 99, 69 into the same bucket.
        close(bucket_quantile(&b, 0.99, 1.0), 4.0 + 4.0 * 69.0 / 70.0).unwrap();
        // p20: rank 20 is 10 into the (1, 2] bucket's 20.
        close(bucket_quantile(&b, 0.2, 1.0), 1.5).unwrap();
        // Rank within the lowest bucket: from `lowest` (Prometheus: 0) to its bound.
        close(bucket_quantile(&b, 0.05, 0.0), 0.5).unwrap();
        close(bucket_quantile(&b, 0.05, 1.0), 1.0).unwrap();
        // No batching at all: every commit carried one request, and every quantile says 1.
        let ones = batch_buckets([500.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        close(bucket_quantile(&ones, 0.99, 1.0), 1.0).unwrap();
        // Beyond the highest finite bucket: its bound, as Prometheus answers.
        let mut big = batch_buckets([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 10.0]);
        big.last_mut().unwrap().1 = 20.0;
        close(bucket_quantile(&big, 0.99, 1.0), 256.0).unwrap();
        // An interval without observations has no quantile.
        assert_eq!(bucket_quantile(&batch_buckets([0.0; 9]), 0.5, 1.0), None);
        assert_eq!(bucket_quantile(&[], 0.5, 1.0), None);
    }
}
