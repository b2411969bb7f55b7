//! `payctl load`: the real k6 against the running platform, with many merchants, then reconcile.
//!
//! Figures come from k6's own summary; k6's exit code (99 when a threshold failed) is payctl's.

use crate::ops::api::require_api;
use crate::ops::k6::{run_k6, Flow, K6Run};
use crate::ops::merchants::merchant_keys;
use crate::output::{mark, table};
use crate::stack::health::require_running;
use crate::stack::secrets::database_url;
use crate::stack::Ports;
use clap::Args;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A k6 duration: numbers with units, e.g. 30s, 2m, 1m30s, 500ms, 1h.
pub fn k6_duration(s: &str) -> Result<String, String> {
    let bad = || {
        format!("{s:?} is not a duration: a number and a unit (ms, s, m, h), e.g. 30s, 2m, 1m30s")
    };
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        if digits == 0 || rest[..digits].parse::<f64>().is_err() {
            return Err(bad());
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u))
            .ok_or_else(bad)?;
        rest = &rest[unit.len()..];
    }
    Ok(s.to_owned())
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Target iterations (flows) per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Time at the target rate, after a ramp of a tenth of it (k6 duration: 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = k6_duration)]
    pub duration: String,
    #[arg(long, value_enum, default_value_t = Flow::Authorize)]
    pub flow: Flow,
    /// Merchants to spread the load over (each has its own API key and rate limit).
    #[arg(long, default_value_t = 10)]
    pub merchants: u32,
    /// p99 threshold per step, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub p99_ms: u32,
    /// Where to write k6's summary JSON (default: .payctl/load/summary-<time>.json).
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// API base URL (the gateway's /api).
    #[arg(
        long,
        env = "PAYCTL_API_URL",
        default_value = "http://127.0.0.1:8080/api"
    )]
    pub api_url: String,
    #[command(flatten)]
    pub ports: Ports,
}

pub async fn exec(home: &Path, a: LoadArgs) -> anyhow::Result<ExitCode> {
    require_running(a.ports.mariadb_port)?;
    require_api(&a.api_url)?;
    let dir = home.join("load");
    let summary = a.summary.clone().unwrap_or_else(|| {
        dir.join(format!(
            "summary-{}.json",
            time::OffsetDateTime::now_utc().unix_timestamp()
        ))
    });
    let db = sqlx::MySqlPool::connect(&database_url(home, &a.ports)?).await?;
    let keys = merchant_keys(&db, a.merchants, "load-merchant").await?;
    let flow = a.flow.name();
    let (code, report, took) = run_k6(
        home,
        &K6Run {
            api_url: &a.api_url,
            keys: &keys,
            flow: a.flow,
            rate: a.rate,
            duration: &a.duration,
            p99_ms: a.p99_ms,
            summary: summary.clone(),
        },
    )
    .await?;
    let log = dir.join("k6.log");
    print_summary(&report, flow, a.rate, took);
    println!(
        "summary: {}   k6 output: {}",
        summary.display(),
        log.display()
    );

    // The ledger is asynchronous: give the consumer a moment to catch up, then prove it correct.
    let caught_up = Instant::now();
    let mut clean = false;
    while caught_up.elapsed() < Duration::from_secs(60) {
        let report = pay_consumer::invariants::check(&db, Duration::ZERO).await?;
        if report.is_clean() {
            clean = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("ledger caught up {:.1?} after the run", caught_up.elapsed());
    let reconciled = super::reconcile::report(home, &a.ports, Duration::ZERO, false).await?;
    if code != 0 {
        eprintln!("error: k6 thresholds failed (exit {code})");
        return Ok(ExitCode::from(code.clamp(1, 255) as u8));
    }
    if !clean {
        return Ok(reconciled);
    }
    Ok(reconciled)
}

fn print_summary(r: &Value, flow: &str, rate: u32, took: Duration) {
    let m = &r["metrics"];
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let iterations = &m["iterations"];
    let dropped = num(&m["dropped_iterations"]["count"]);
    let errors = num(&m["payment_errors"]["value"]);
    println!(
        "{}",
        table(
            &["figure", "value"],
            [
                vec!["flow".into(), flow.to_owned()],
                vec!["target rate".into(), format!("{rate}/s")],
                vec![
                    "achieved rate".into(),
                    format!("{:.1}/s", num(&iterations["rate"]))
                ],
                vec![
                    "flows completed".into(),
                    format!("{}", num(&m["payment_flows_completed"]["count"]))
                ],
                vec![
                    "HTTP requests".into(),
                    format!(
                        "{} ({:.1}/s)",
                        num(&m["http_reqs"]["count"]),
                        num(&m["http_reqs"]["rate"])
                    )
                ],
                vec!["error rate".into(), format!("{:.3} %", errors * 100.0)],
                vec!["dropped iterations".into(), format!("{dropped}")],
                vec!["run time".into(), format!("{took:.1?}")],
            ]
        )
    );
    let steps = [
        ("authorize", "payment_authorize_duration"),
        ("capture", "payment_capture_duration"),
        ("refund", "payment_refund_duration"),
    ];
    println!(
        "{}",
        table(
            &["step", "p50 ms", "p95 ms", "p99 ms", "max ms"],
            steps
                .iter()
                .filter(|(_, name)| m[*name].is_object())
                .map(|(step, name)| {
                    let t = &m[*name];
                    vec![
                        step.to_string(),
                        format!("{:.2}", num(&t["med"])),
                        format!("{:.2}", num(&t["p(95)"])),
                        format!("{:.2}", num(&t["p(99)"])),
                        format!("{:.2}", num(&t["max"])),
                    ]
                })
        )
    );
    let by_status = [
        ("4xx", "payment_status_4xx"),
        ("429", "payment_status_429"),
        ("5xx", "payment_status_5xx"),
        ("no answer", "payment_status_none"),
    ];
    println!(
        "errors by status: {}",
        by_status
            .iter()
            .map(|(label, name)| format!("{label} {}", num(&m[*name]["count"])))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let passed = r["metrics"]
        .as_object()
        .map(|all| {
            all.values()
                .filter_map(|v| v["thresholds"].as_object())
                .flat_map(|t| t.values())
                .all(|failed| failed == &Value::Bool(false))
        })
        .unwrap_or(false);
    println!("{} thresholds", mark(passed));
}

#[cfg(test)]
mod duration_tests {
    use super::k6_duration;

    #[test]
    fn k6_durations_are_numbers_with_units() {
        for ok in ["30s", "2m", "1m30s", "500ms", "1h", "1.5s"] {
            assert_eq!(k6_duration(ok).as_deref(), Ok(ok));
        }
        for bad in ["abc", "", "30", "s", "30x", "-5s"] {
            assert!(k6_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
