//! `payctl top`: the platform's key figures live in the terminal, for the native runtime where there is
//! no Grafana. Reads the API instances', the consumer's and the settlement worker's `/metrics` directly
//! (no Prometheus needed), twice per refresh, and shows rates and the interval's p99 from the
//! differences.

use crate::ops::metrics::{broker_figures, figures, scrape_kinds, Figures, SettlementFigures};
use crate::output::table;
use crate::stack::health::not_running;
use crate::stack::{Kind, Ports};
use clap::Args;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Seconds between refreshes (and the window rates and p99 are computed over).
    #[arg(long, default_value_t = 2.0, value_parser = parse_interval)]
    pub interval: f64,
    /// Print one refresh and exit (for scripts; implied by --json).
    #[arg(long)]
    pub once: bool,
    /// One refresh as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub ports: Ports,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| (0.2..=3600.0).contains(v))
        .ok_or_else(|| format!("'{s}' is not a number of seconds from 0.2 to 3600"))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".to_owned(), |v| format!("{v:.1} ms"))
}

/// The settlement worker's lines (issue 15): one line saying it does not answer when it does not.
fn settlement_rows(s: Option<&SettlementFigures>) -> Vec<Vec<String>> {
    let Some(s) = s else {
        return vec![vec![
            "settlement".into(),
            "– (no settlement worker answers)".into(),
        ]];
    };
    vec![
        vec![
            "settlement backlog".into(),
            format!(
                "{:.0} pending, {:.0} submitted, {:.0} failed",
                s.pending, s.submitted, s.failed
            ),
        ],
        vec![
            "oldest pending".into(),
            format!("{:.1} s", s.oldest_pending_age_seconds),
        ],
        vec![
            "acquirer calls".into(),
            format!(
                "{:.1}/s, {} errors, p99 {}",
                s.acquirer_calls_per_second,
                s.acquirer_error_share
                    .map_or("–".to_owned(), |e| format!("{:.1} %", e * 100.0)),
                ms(s.acquirer_p99_ms)
            ),
        ],
        vec![
            "acquirer breaker".into(),
            s.breaker
                .iter()
                .map(|(n, s)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", "),
        ],
        vec![
            "payouts".into(),
            format!(
                "{:.0} made, {:.0} settled records of past days not paid out",
                s.payouts, s.unpaid_settled_records
            ),
        ],
    ]
}

fn render(f: &Figures) -> String {
    let mut rows = vec![
        vec![
            "API requests".into(),
            format!("{:.1}/s", f.requests_per_second),
        ],
        vec!["API p99".into(), ms(f.p99_ms)],
        vec![
            "errors".into(),
            format!(
                "4xx {:.1}/s, 5xx {:.1}/s",
                f.errors_4xx_per_second, f.errors_5xx_per_second
            ),
        ],
        vec!["payments".into(), format!("{:.1}/s", f.payments_per_second)],
        vec![
            "breaker".into(),
            f.breaker
                .iter()
                .map(|(n, s)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", "),
        ],
        vec![
            "outbox backlog".into(),
            format!(
                "{:.0} (oldest {:.1} s)",
                f.outbox_backlog, f.outbox_oldest_age_seconds
            ),
        ],
        vec![
            "consumer".into(),
            format!("{:.1} events/s", f.events_consumed_per_second),
        ],
        vec![
            "consumer lag".into(),
            f.consumer_lag
                .map_or("– (the broker does not answer)".into(), |n| {
                    format!("{n} events (broker: committed offsets to the topics' ends)")
                }),
        ],
        vec![
            "ledger lag".into(),
            format!(
                "{:.2} s (age of the newest event applied, when applied)",
                f.ledger_lag_seconds
            ),
        ],
        vec![
            "DLQ".into(),
            format!(
                "{} records in payment.dlq, {:.0} sent since the consumer started",
                f.dlq_records.map_or("–".to_owned(), |n| n.to_string()),
                f.dlq_sent_since_start
            ),
        ],
    ];
    rows.extend(settlement_rows(f.settlement.as_ref()));
    let mut out = table(&["figure", "value"], rows);
    if !f.unreachable.is_empty() {
        out.push_str(&format!(
            "\nnot answering: {} (is the stack up? payctl status)",
            f.unreachable.join(", ")
        ));
    }
    out
}

pub async fn exec(home: &Path, a: TopArgs) -> anyhow::Result<ExitCode> {
    let interval = Duration::from_secs_f64(a.interval);
    let kinds = [Kind::Ingest, Kind::Consumer, Kind::Settlement];
    let mut before = scrape_kinds(home, &a.ports, &kinds).await;
    // Not one service answers: the platform is not up (one stopped instance is shown as such).
    if before.iter().all(|(_, _, s)| s.is_none()) {
        return Err(not_running(a.ports.ingest_port));
    }
    let mut taken = Instant::now();
    let live = !a.once && !a.json && std::io::stdout().is_terminal();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(interval) => {}
        }
        let after = scrape_kinds(home, &a.ports, &kinds).await;
        let now = Instant::now();
        let mut f = figures(&before, &after, (now - taken).as_secs_f64());
        (f.consumer_lag, f.dlq_records) = broker_figures(a.ports.kafka_port).await;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&f)?);
            return Ok(ExitCode::SUCCESS);
        }
        if live {
            // Clear the screen and go home, like top(1).
            print!("\x1b[2J\x1b[H");
            println!("payctl top — every {:.1} s, Ctrl-C to quit", a.interval);
        }
        println!("{}", render(&f));
        if a.once {
            return Ok(ExitCode::SUCCESS);
        }
        before = after;
        taken = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settlement() -> SettlementFigures {
        SettlementFigures {
            pending: 12.0,
            submitted: 4.0,
            failed: 2.0,
            oldest_pending_age_seconds: 7.5,
            acquirer_calls_per_second: 40.0,
            acquirer_error_share: Some(0.25),
            acquirer_p99_ms: Some(2345.6),
            breaker: vec![("settlement".into(), "CLOSED".into())],
            payouts: 4.0,
            unpaid_settled_records: 5.0,
        }
    }

    fn line<'a>(rows: &'a [Vec<String>], figure: &str) -> &'a str {
        rows.iter()
            .find(|r| r[0] == figure)
            .map(|r| r[1].as_str())
            .unwrap_or_else(|| panic!("no {figure} line in {rows:?}"))
    }

    #[test]
    fn settlement_lines_show_backlog_acquirer_breaker_and_payouts() {
        let rows = settlement_rows(Some(&settlement()));
        assert_eq!(
            line(&rows, "settlement backlog"),
            "12 pending, 4 submitted, 2 failed"
        );
        assert_eq!(line(&rows, "oldest pending"), "7.5 s");
        assert_eq!(
            line(&rows, "acquirer calls"),
            "40.0/s, 25.0 % errors, p99 2345.6 ms"
        );
        assert_eq!(line(&rows, "acquirer breaker"), "settlement CLOSED");
        assert_eq!(
            line(&rows, "payouts"),
            "4 made, 5 settled records of past days not paid out"
        );
        let idle = SettlementFigures {
            acquirer_calls_per_second: 0.0,
            acquirer_error_share: None,
            acquirer_p99_ms: None,
            ..settlement()
        };
        assert_eq!(
            line(&settlement_rows(Some(&idle)), "acquirer calls"),
            "0.0/s, – errors, p99 –"
        );
        assert_eq!(
            line(&settlement_rows(None), "settlement"),
            "– (no settlement worker answers)"
        );
    }

    #[test]
    fn json_names_the_settlement_figures_in_camel_case() {
        let v = serde_json::to_value(settlement()).unwrap();
        for key in [
            "pending",
            "submitted",
            "failed",
            "oldestPendingAgeSeconds",
            "acquirerCallsPerSecond",
            "acquirerErrorShare",
            "acquirerP99Ms",
            "breaker",
            "payouts",
            "unpaidSettledRecords",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
    }
}
