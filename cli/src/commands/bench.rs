//! `payctl bench`: the platform's speed against the database's own limit, in one run.
//!
//! (a) the raw baseline: the same writes an authorize makes (idempotency claim, payment, outbox event,
//! stored response, one commit), straight to MariaDB at the same concurrency, using pay-server's own
//! storage functions; (b) a step search for the highest authorize rate sustained with p99 within the
//! limit, errors under 0.1 % and nothing dropped, driven by payctl's own light driver (or k6), with k6
//! at the rate found as a cross-check; (c) the same for the full flow; (d) ledger catch-up after the
//! runs and peak RSS of the services. Each step shows the API's commits (commits/s, batch sizes) next
//! to its requests, and the CPU per flow of every process, the load generator's apart. Figures are
//! printed, never asserted.

use super::load::k6_duration;
use crate::ops::api::require_api;
use crate::ops::bench::{
    baseline, batches, broker_alone, cpu_per_flow, cpu_sample, judge, judge_driver, peak_rss_mib,
    BrokerRates, Driver, Step,
};
use crate::ops::driver::{drive, DriverRun};
use crate::ops::k6::{parse_duration, run_k6, Flow, K6Run};
use crate::ops::merchants::merchant_keys;
use crate::ops::{metrics, procfs};
use crate::output::{mark, table};
use crate::runtime::{self, Runtime};
use crate::stack::health::require_running;
use crate::stack::secrets::database_url;
use crate::stack::{saved_plan, Kind, Ports};
use clap::Args;
use serde::Serialize;
use std::fmt::Display;
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
    /// Time at each rate of the step search, after a ramp of a tenth of it (k6 duration: 30s, 2m).
    #[arg(long, default_value = "60s", value_parser = k6_duration)]
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
    /// Load generator of the step search: builtin (payctl's own open-model driver, light on CPU, so the
    /// figure is the platform's) or k6. With builtin, k6 runs once more at the highest sustained rate
    /// as a cross-check, e.g. --driver k6 to step with k6 as `payctl load` does.
    #[arg(long, value_enum, default_value_t = Driver::Builtin)]
    pub driver: Driver,
    /// Skip k6's cross-check at the highest sustained rate (e.g. where k6 is not installed).
    #[arg(long)]
    pub no_cross_check: bool,
    /// Flows the builtin driver keeps in flight at most; one due while this many are in flight is
    /// dropped [default: k6's maxVUs for the rate: twice it, 100 to 2000], e.g. --max-in-flight 500.
    #[arg(long, value_name = "FLOWS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: Option<u32>,
    /// Merchants to spread the load over (each has its own API key and rate limit).
    #[arg(long, default_value_t = 20)]
    pub merchants: u32,
    /// The whole report as one JSON object on stdout; progress goes to stderr.
    #[arg(long)]
    pub json: bool,
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

/// Progress for people: on stdout, or on stderr under --json, where stdout holds the JSON alone.
fn say(a: &BenchArgs, line: impl Display) {
    if a.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
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

/// What every step needs besides its flow, rate and driver.
struct Ctx<'a> {
    home: &'a Path,
    runtime: &'a dyn Runtime,
    a: &'a BenchArgs,
    keys: &'a [String],
}

/// One rate with one driver: judged, with the CPU each process spent per flow and the API's commits.
async fn run_step(c: &Ctx<'_>, flow: Flow, rate: u32, driver: Driver) -> anyhow::Result<Step> {
    let a = c.a;
    let pids = service_pids(c.runtime, c.home, &a.ports).await;
    // Scrapes outside the CPU samples: their cost is not the step's.
    let metrics_before = metrics::scrape(c.home, &a.ports).await;
    let started = Instant::now();
    let cpu_before = cpu_sample(&pids);
    let (mut step, generator, flows) = match driver {
        Driver::K6 => {
            let summary = c
                .home
                .join("load")
                .join(format!("bench-{}-{rate}.json", flow.name()));
            let done = run_k6(
                c.home,
                &K6Run {
                    api_url: &a.api_url,
                    keys: c.keys,
                    flow,
                    rate,
                    duration: &a.step,
                    p99_ms: a.p99_ms,
                    summary,
                },
            )
            .await?;
            let step = judge(flow, rate, &done.summary, a.p99_ms);
            // Per flow k6 started, as before: a failed flow cost CPU too.
            let flows = done.summary["metrics"]["iterations"]["count"]
                .as_f64()
                .unwrap_or(0.0);
            (step, done.cpu, flows)
        }
        Driver::Builtin => {
            // The driver runs in this process: its CPU time is payctl's during the step.
            let own = procfs::own_cpu();
            let report = drive(&DriverRun {
                api_url: &a.api_url,
                keys: c.keys,
                flow,
                rate,
                duration: parse_duration(&a.step).map_err(anyhow::Error::msg)?,
                max_in_flight: a.max_in_flight.map(|n| n as usize),
            })
            .await?;
            // Per flow started, as k6's iterations count them.
            let flows = (report.scheduled - report.dropped) as f64;
            (
                judge_driver(flow, rate, &report, a.p99_ms),
                procfs::own_cpu().saturating_sub(own),
                flows,
            )
        }
    };
    let cpu_after = cpu_sample(&pids);
    let metrics_after = metrics::scrape(c.home, &a.ports).await;
    step.cpu_per_flow = cpu_per_flow(&cpu_before, &cpu_after, generator, flows);
    step.batches = batches(
        &metrics_before,
        &metrics_after,
        started.elapsed().as_secs_f64(),
    );
    say(a, step_lines(&step));
    Ok(step)
}

fn or_dash(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

/// A step as the search goes: verdict, latency, then commits next to requests, then CPU per flow.
fn step_lines(step: &Step) -> String {
    let b = step.batches.as_ref();
    let total: f64 = step.cpu_per_flow.iter().map(|p| p.ms).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "{} {:<9} {:>6}/s {:<7} → achieved {:>8.1}/s, p99 {}, errors {:.3} %, dropped {}\n    \
         requests/s {:.1}, commits/s {}, batch p50 {} p99 {}\n    \
         CPU per flow {total:.2} ms, machine {:.0} % busy: {}",
        mark(step.passed),
        step.flow,
        step.rate,
        step.driver.name(),
        step.achieved,
        step.latency
            .iter()
            .map(|l| format!("{} {:.1} ms", l.request, l.p99_ms))
            .collect::<Vec<_>>()
            .join(", "),
        step.error_pct,
        step.dropped,
        step.requests_per_second,
        or_dash(b.map(|b| b.commits_per_second), 1),
        or_dash(b.and_then(|b| b.p50), 1),
        or_dash(b.and_then(|b| b.p99), 1),
        total * step.achieved / (cores as f64 * 10.0),
        step.cpu_per_flow
            .iter()
            .map(|p| format!("{} {:.2}", p.process, p.ms))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A step search's result: every step, the highest sustained rate, and k6 at that rate.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Search {
    flow: String,
    steps: Vec<Step>,
    sustained: Option<u32>,
    /// k6 at the sustained rate, when the steps were the builtin driver's.
    cross_check: Option<Step>,
    /// Why the cross-check did not run to the end (k6 missing, say).
    cross_check_error: Option<String>,
}

async fn search(c: &Ctx<'_>, flow: Flow, rates: &[u32]) -> anyhow::Result<Search> {
    let mut steps = Vec::new();
    let mut sustained = None;
    for &rate in rates {
        let step = run_step(c, flow, rate, c.a.driver).await?;
        let passed = step.passed;
        steps.push(step);
        if !passed {
            break;
        }
        sustained = Some(rate);
    }
    let (mut cross_check, mut cross_check_error) = (None, None);
    if c.a.driver == Driver::Builtin && !c.a.no_cross_check {
        match sustained {
            Some(rate) => {
                say(c.a, format!("    cross-check: k6 at {rate}/s"));
                match run_step(c, flow, rate, Driver::K6).await {
                    Ok(step) => cross_check = Some(step),
                    Err(e) => {
                        say(c.a, format!("{} cross-check failed: {e:#}", mark(false)));
                        cross_check_error = Some(format!("{e:#}"));
                    }
                }
            }
            None => say(c.a, "    no sustained rate: no k6 cross-check"),
        }
    }
    let result = Search {
        flow: flow.name().to_owned(),
        steps,
        sustained,
        cross_check,
        cross_check_error,
    };
    say(c.a, steps_table(&result));
    say(c.a, cpu_table(&result));
    Ok(result)
}

/// The steps and the cross-check: verdict, rates, the API's commits beside its requests, latency.
fn steps_table(s: &Search) -> String {
    let rows = s.steps.iter().chain(&s.cross_check).map(|st| {
        let b = st.batches.as_ref();
        vec![
            mark(st.passed),
            st.rate.to_string(),
            st.driver.name().to_owned(),
            format!("{:.1}", st.achieved),
            format!("{:.1}", st.requests_per_second),
            or_dash(b.map(|b| b.commits_per_second), 1),
            or_dash(b.and_then(|b| b.p50), 1),
            or_dash(b.and_then(|b| b.p99), 1),
            st.latency
                .iter()
                .map(|l| format!("{:.1}", l.p99_ms))
                .collect::<Vec<_>>()
                .join(" / "),
            format!("{:.3}", st.error_pct),
            format!("{}", st.dropped),
        ]
    });
    table(
        &[
            "",
            &format!("{} rate/s", s.flow),
            "driver",
            "achieved/s",
            "requests/s",
            "commits/s",
            "batch p50",
            "batch p99",
            "p99 ms",
            "errors %",
            "dropped",
        ],
        rows,
    )
}

/// CPU milliseconds per flow of each process in each step; `generator` is the load generator's own
/// process (payctl's driver or k6), `other` the kernel and the rest.
fn cpu_table(s: &Search) -> String {
    let all: Vec<&Step> = s.steps.iter().chain(&s.cross_check).collect();
    let processes: Vec<String> = all
        .first()
        .map(|st| st.cpu_per_flow.iter().map(|p| p.process.clone()).collect())
        .unwrap_or_default();
    let mut header = vec![
        format!("{} rate/s", s.flow),
        "driver".into(),
        "CPU per flow".into(),
    ];
    header.extend(processes.iter().cloned());
    let rows = all.iter().map(|st| {
        let mut row = vec![
            st.rate.to_string(),
            st.driver.name().to_owned(),
            format!(
                "{:.2} ms",
                st.cpu_per_flow.iter().map(|p| p.ms).sum::<f64>()
            ),
        ];
        row.extend(processes.iter().map(|name| {
            or_dash(
                st.cpu_per_flow
                    .iter()
                    .find(|p| p.process == *name)
                    .map(|p| p.ms),
                2,
            )
        }));
        row
    });
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    table(&header, rows)
}

/// The whole measurement, as --json prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    baseline_transactions_per_second: f64,
    baseline_connections: u32,
    broker: Option<BrokerRates>,
    driver: Driver,
    authorize: Search,
    full: Search,
    ledger_catch_up_seconds: f64,
    peak_rss: Vec<Rss>,
    reconcile: serde_json::Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Rss {
    service: String,
    mib: f64,
}

pub async fn exec(home: &Path, a: BenchArgs) -> anyhow::Result<ExitCode> {
    require_running(a.ports.mariadb_port)?;
    require_api(&a.api_url)?;
    let runtime = &*runtime::open(home, &a.ports);
    let url = database_url(home, &a.ports)?;
    say(
        &a,
        format!(
            "(a) baseline: authorize's writes straight to MariaDB, {} connections, {} s …",
            a.concurrency, a.baseline_seconds
        ),
    );
    let base = baseline(&url, a.concurrency, a.baseline_seconds).await?;
    say(&a, format!("    {base:.0} transactions/s"));
    let broker = if a.broker_messages > 0 {
        say(
            &a,
            format!(
                "    broker alone: {} event-sized messages, idempotent producer, acks=all …",
                a.broker_messages
            ),
        );
        let rates = broker_alone(&a.ports, a.broker_messages).await?;
        say(
            &a,
            format!(
                "    produce {:.0} messages/s, consume {:.0} messages/s",
                rates.produce, rates.consume
            ),
        );
        Some(rates)
    } else {
        None
    };

    let db = sqlx::MySqlPool::connect(&url).await?;
    let keys = merchant_keys(&db, a.merchants, "bench-merchant").await?;
    let c = Ctx {
        home,
        runtime,
        a: &a,
        keys: &keys,
    };
    say(
        &a,
        format!(
            "(b) authorize step search ({} per step, {} driver, p99 ≤ {} ms, errors < 0.1 %, none dropped)",
            a.step,
            a.driver.name(),
            a.p99_ms
        ),
    );
    let authorize = search(&c, Flow::Authorize, &a.rates).await?;
    say(&a, "(c) full-flow step search");
    let full = search(&c, Flow::Full, &a.full_rates).await?;

    say(&a, "(d) ledger catch-up and memory");
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
                rss.push(Rss {
                    service: svc.name,
                    mib,
                });
            }
        }
    }

    if a.json {
        let check = crate::ops::reconcile::check(home, &a.ports, Duration::ZERO).await?;
        let (clean, violations) = (check.is_clean(), check.violations());
        crate::output::json(&Report {
            baseline_transactions_per_second: base,
            baseline_connections: a.concurrency,
            broker,
            driver: a.driver,
            authorize,
            full,
            ledger_catch_up_seconds: catch_up.as_secs_f64(),
            peak_rss: rss,
            reconcile: serde_json::json!({
                "clean": clean,
                "violations": violations,
                "checks": check.checks,
            }),
        })?;
        if !clean {
            eprintln!("error: reconcile found {violations} violation(s)");
            return Ok(ExitCode::from(1));
        }
        return Ok(ExitCode::SUCCESS);
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
        vec!["authorize sustained".to_owned(), ratio(authorize.sustained)],
        vec![
            "full flow sustained".to_owned(),
            full.sustained
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
    rows.extend(rss.into_iter().map(|r| {
        vec![
            format!("peak RSS {}", r.service),
            format!("{:.1} MiB", r.mib),
        ]
    }));
    println!("{}", table(&["figure", "value"], rows));
    super::reconcile::report(home, &a.ports, Duration::ZERO, false).await
}
