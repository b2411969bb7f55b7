//! `payctl bench`: the platform's speed against the database's own limit, in one run.
//!
//! (a) the raw baseline: the same writes an authorize makes (idempotency claim, payment, outbox event,
//! stored response, one commit), straight to MariaDB at the same concurrency, using pay-server's own
//! storage functions; (b) a step search for the highest authorize rate k6 sustains with p99 within the
//! limit, errors under 0.1 % and nothing dropped; (c) the same for the full flow; (d) ledger catch-up
//! after the runs and peak RSS of the services. Figures are printed, never asserted.

use crate::ops::api::require_api;
use crate::ops::bench::{
    baseline, broker_alone, cpu_per_flow, cpu_sample, judge, peak_rss_mib, Step,
};
use crate::ops::k6::{run_k6, Flow, K6Run};
use crate::ops::merchants::merchant_keys;
use crate::output::{mark, table};
use crate::runtime::{self, Runtime};
use crate::stack::health::require_running;
use crate::stack::secrets::database_url;
use crate::stack::{saved_plan, Kind, Ports};
use clap::Args;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Connections for the baseline (pay-server's default pool is 32).
    #[arg(long, default_value_t = 32)]
    pub concurrency: u32,
    /// How long the database baseline runs, in seconds.
    #[arg(long, default_value_t = 10)]
    pub baseline_seconds: u64,
    /// Messages for the broker-alone measurement (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    pub broker_messages: u32,
    /// Time at each rate of the step search (k6 duration).
    #[arg(long, default_value = "60s")]
    pub step: String,
    /// Authorize rates to try, in order, per second.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,2000,3000,4000,5000,6000,8000"
    )]
    pub rates: Vec<u32>,
    /// Full-flow rates to try, in order, per second.
    #[arg(long, value_delimiter = ',', default_value = "300,600,1000,1500,2000")]
    pub full_rates: Vec<u32>,
    /// p99 limit per step, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub p99_ms: u32,
    /// Merchants to spread the load over (each has its own API key and rate limit).
    #[arg(long, default_value_t = 20)]
    pub merchants: u32,
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

/// The pid of each service whose runtime keeps one (the native runtime's processes).
async fn service_pids(runtime: &dyn Runtime, home: &Path, ports: &Ports) -> Vec<(String, u32)> {
    let mut pids = Vec::new();
    for svc in saved_plan(home, ports) {
        if let Some(pid) = runtime.pid(&svc.name).await {
            pids.push((svc.name, pid));
        }
    }
    pids
}

async fn search(
    home: &Path,
    runtime: &dyn Runtime,
    a: &BenchArgs,
    keys: &[String],
    flow: Flow,
    rates: &[u32],
) -> anyhow::Result<(Option<u32>, Vec<Step>)> {
    let mut steps = Vec::new();
    let mut best = None;
    for &rate in rates {
        let summary = home
            .join("load")
            .join(format!("bench-{}-{rate}.json", flow.name()));
        let cpu_before = cpu_sample(&service_pids(runtime, home, &a.ports).await);
        let (_, report, _) = run_k6(
            home,
            &K6Run {
                api_url: &a.api_url,
                keys,
                flow,
                rate,
                duration: &a.step,
                p99_ms: a.p99_ms,
                summary,
            },
        )
        .await?;
        let mut step = judge(rate, &report, a.p99_ms);
        let flows = report["metrics"]["iterations"]["count"]
            .as_f64()
            .unwrap_or(0.0);
        let cpu_after = cpu_sample(&service_pids(runtime, home, &a.ports).await);
        step.cpu_per_flow = cpu_per_flow(&cpu_before, &cpu_after, flows);
        println!(
            "{} {:<9} {:>6}/s → achieved {:>8.1}/s, p99 {}, errors {:.3} %, dropped {}",
            mark(step.passed),
            flow.name(),
            step.rate,
            step.achieved,
            step.p99
                .iter()
                .map(|(s, v)| format!("{s} {v:.1} ms"))
                .collect::<Vec<_>>()
                .join(", "),
            step.error_pct,
            step.dropped
        );
        let total: f64 = step.cpu_per_flow.iter().map(|(_, v)| v).sum();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "    CPU per flow {total:.2} ms, machine {:.0} % busy: {}",
            total * step.achieved / (cores as f64 * 10.0),
            step.cpu_per_flow
                .iter()
                .map(|(s, v)| format!("{s} {v:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let passed = step.passed;
        steps.push(step);
        if !passed {
            break;
        }
        best = Some(rate);
    }
    Ok((best, steps))
}

pub async fn exec(home: &Path, a: BenchArgs) -> anyhow::Result<ExitCode> {
    require_running(a.ports.mariadb_port)?;
    require_api(&a.api_url)?;
    let runtime = &*runtime::open(home, &a.ports);
    let url = database_url(home, &a.ports)?;
    println!(
        "(a) baseline: authorize's writes straight to MariaDB, {} connections, {} s …",
        a.concurrency, a.baseline_seconds
    );
    let base = baseline(&url, a.concurrency, a.baseline_seconds).await?;
    println!("    {base:.0} transactions/s");
    let broker = if a.broker_messages > 0 {
        println!(
            "    broker alone: {} event-sized messages, idempotent producer, acks=all …",
            a.broker_messages
        );
        let rates = broker_alone(&a.ports, a.broker_messages).await?;
        println!(
            "    produce {:.0} messages/s, consume {:.0} messages/s",
            rates.produce, rates.consume
        );
        Some(rates)
    } else {
        None
    };

    let db = sqlx::MySqlPool::connect(&url).await?;
    let keys = merchant_keys(&db, a.merchants, "bench-merchant").await?;
    println!(
        "(b) authorize step search ({} per step, p99 ≤ {} ms, errors < 0.1 %, none dropped)",
        a.step, a.p99_ms
    );
    let (best_auth, _) = search(home, runtime, &a, &keys, Flow::Authorize, &a.rates).await?;
    println!("(c) full-flow step search");
    let (best_full, _) = search(home, runtime, &a, &keys, Flow::Full, &a.full_rates).await?;

    println!("(d) ledger catch-up and memory");
    let ended = Instant::now();
    loop {
        let behind: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox_events o WHERE NOT EXISTS (SELECT 1 FROM ledger_entries l WHERE l.event_id = o.event_id)",
        )
        .fetch_one(&db)
        .await?;
        if behind == 0 || ended.elapsed() > Duration::from_secs(300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let catch_up = ended.elapsed();
    let mut rss = Vec::new();
    for svc in saved_plan(home, &a.ports) {
        if matches!(svc.kind, Kind::Ingest | Kind::Consumer) {
            if let Some(mib) = runtime.pid(&svc.name).await.and_then(peak_rss_mib) {
                rss.push(vec![
                    format!("peak RSS {}", svc.name),
                    format!("{mib:.1} MiB"),
                ]);
            }
        }
    }
    let ratio = |r: Option<u32>| {
        r.map(|r| format!("{r}/s ({:.2} × baseline)", f64::from(r) / base))
            .unwrap_or_else(|| "none passed".into())
    };
    let mut rows = vec![
        vec![
            "database baseline".to_owned(),
            format!("{base:.0} tx/s at {} connections", a.concurrency),
        ],
        vec!["authorize sustained".to_owned(), ratio(best_auth)],
        vec![
            "full flow sustained".to_owned(),
            best_full
                .map(|r| format!("{r} flows/s"))
                .unwrap_or_else(|| "none passed".into()),
        ],
        vec![
            "ledger catch-up".to_owned(),
            format!("{catch_up:.1?} after the last run"),
        ],
    ];
    if let Some(rates) = broker {
        rows.insert(
            1,
            vec![
                "broker alone".to_owned(),
                format!(
                    "produce {:.0} messages/s, consume {:.0} messages/s",
                    rates.produce, rates.consume
                ),
            ],
        );
    }
    rows.extend(rss);
    println!("{}", table(&["figure", "value"], rows));
    super::reconcile::report(home, &a.ports, Duration::ZERO, false).await
}
