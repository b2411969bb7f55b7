//! `payctl top`: the platform's key figures live in the terminal, for the native runtime where there is
//! no Grafana. Reads every service's `/metrics` directly (no Prometheus needed), twice per refresh, and
//! shows rates and the interval's p99 from the differences.

use crate::ops::metrics::{broker_figures, figures, scrape, Figures};
use crate::output::table;
use crate::stack::health::not_running;
use crate::stack::Ports;
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

fn render(f: &Figures) -> String {
    let ms = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1} ms"));
    let rows = vec![
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
    let mut before = scrape(home, &a.ports).await;
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
        let after = scrape(home, &a.ports).await;
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
