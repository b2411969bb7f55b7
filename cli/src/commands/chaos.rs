//! `payctl chaos`: kill and freeze parts of the platform on a seeded schedule under load, then show —
//! not tell — that every payment a client was told about exists exactly once, with its ledger.

use crate::ops::api::require_api;
use crate::ops::chaos::driver::Flow;
use crate::ops::chaos::schedule::{self, FaultKind, Plan};
use crate::ops::chaos::{self, Report, Run, Watch, SERVICES};
use crate::output::steps::Steps;
use crate::output::{self, mark, table};
use crate::runtime;
use crate::stack::health::require_running;
use crate::stack::secrets::database_url;
use crate::stack::Ports;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  payctl chaos                                     60 s, a random seed, every service killed then frozen
  payctl chaos --seed 42 --duration 90s --rate 100 replay seed 42's schedule exactly
  payctl chaos --faults pause --services kafka,redis
  payctl chaos --duration 20s --services none      load and verdict only (no faults)
  payctl chaos --services consumer-2,ingest-3      kill instances of a scaled stack (up --scale)
  payctl chaos --json > chaos.json                 the report for machines (exit 1 on any violation)
  payctl chaos --seed 42 --dry-run                 only print seed 42's schedule
  payctl chaos --junit chaos.xml                   also a JUnit report (a case per fault and check)

Each fault is `kill -9` then a start on the same data (Docker: docker kill, docker start), or a freeze
(SIGSTOP/SIGCONT; Docker: pause/unpause). Clients retry with the same idempotency key on no answer,
5xx, 429 and 409 in-progress/locked, for up to 120 s per operation.")]
pub struct ChaosArgs {
    /// The schedule's seed (random when not given; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// How long the load runs, e.g. 60s, 2m.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Flows started per second (open model: late flows start anyway).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rate: u32,
    /// authorize only, or authorize → capture → partial refund.
    #[arg(long, value_enum, default_value_t = Flow::Full)]
    flow: Flow,
    /// Which faults to inject.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [FaultKind::Kill, FaultKind::Pause])]
    faults: Vec<FaultKind>,
    /// Which services to fault (ingest, consumer, kafka, redis, mariadb, or an instance of a scaled
    /// stack: ingest-2, consumer-2), or `none`.
    #[arg(long, value_delimiter = ',', default_value = "ingest,consumer,kafka,redis,mariadb", value_parser = parse_service)]
    services: Vec<String>,
    /// How long to wait for the outbox to drain and the ledger to catch up after the load.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    settle: Duration,
    /// Print the report as JSON (the schedule and progress go to stderr).
    #[arg(long)]
    json: bool,
    /// Also write the verdict as JUnit XML to this file: a case per fault, the drain, the catch-up,
    /// reconcile and the exactly-once check, so CI shows which failed.
    #[arg(long, value_name = "FILE")]
    junit: Option<std::path::PathBuf>,
    /// Print the schedule and the command that replays it, and stop.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    ports: Ports,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 30s, 2m"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("'{s}' is not a duration like 30s, 2m")),
    }
    .and_then(|d| {
        if d.is_zero() {
            Err("the duration must be more than 0".into())
        } else {
            Ok(d)
        }
    })
}

/// A service chaos may fault: one of [`SERVICES`], an instance of a scaled one (`ingest-2`,
/// `consumer-2`: `up --scale`), or `none`.
fn parse_service(s: &str) -> Result<String, String> {
    if s == "none" || SERVICES.contains(&s) || crate::stack::is_extra_instance(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "'{s}' is not one of {}, an instance like consumer-2, or none",
            SERVICES.join(", ")
        ))
    }
}

struct Display {
    bar: Option<ProgressBar>,
}

impl Watch for Display {
    fn fault(&self, what: &str) {
        match &self.bar {
            Some(b) => b.println(what),
            None => eprintln!("{what}"),
        }
    }
    fn phase(&self, what: &str) {
        match &self.bar {
            Some(b) => b.set_message(what.to_owned()),
            None => eprintln!("{what}"),
        }
    }
}

pub async fn exec(home: &Path, a: ChaosArgs) -> anyhow::Result<ExitCode> {
    if !a.dry_run {
        require_running(a.ports.mariadb_port)?;
        require_api(&format!("http://127.0.0.1:{}/api", a.ports.gateway_port))?;
    }
    let seed = a.seed.unwrap_or_else(rand::random);
    let services: Vec<String> = a
        .services
        .iter()
        .filter(|s| *s != "none")
        .cloned()
        .collect();
    let faults = schedule::draw(&Plan {
        seed,
        duration: a.duration,
        kinds: &a.faults,
        services: &services,
    });
    let replay =
        format!(
        "payctl chaos --seed {seed} --duration {}s --rate {} --flow {} --faults {} --services {}",
        a.duration.as_secs(),
        a.rate,
        match a.flow {
            Flow::Authorize => "authorize",
            Flow::Full => "full",
        },
        a.faults.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(","),
        if services.is_empty() {
            "none".to_owned()
        } else {
            services.join(",")
        },
    );
    eprintln!(
        "chaos: seed {seed}, {} flows/s for {}s, {} fault(s)",
        a.rate,
        a.duration.as_secs(),
        faults.len()
    );
    for f in &faults {
        eprintln!(
            "  at {:>5.1}s  {:<5} {:<8} for {:.1}s",
            f.at.as_secs_f64(),
            f.kind,
            f.service,
            f.down.as_secs_f64()
        );
    }
    eprintln!("replay: {replay}");
    let want = services.len() * a.faults.len().min(1);
    if faults.len() < want {
        eprintln!(
            "note: only {} of {} services get a fault in {}s; --duration {}s fits every one",
            faults.len(),
            services.len(),
            a.duration.as_secs(),
            schedule::duration_for(want).as_secs()
        );
    }

    if a.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = runtime::open(home, &a.ports);
    let progress = chaos::progress();
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(a.duration.as_secs());
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len}s {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        b
    });
    let ticker = bar.clone().map(|b| {
        let started = progress.started.clone();
        let finished = progress.finished.clone();
        tokio::spawn(async move {
            let t0 = std::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                b.set_position(t0.elapsed().as_secs());
                b.set_message(format!(
                    "{} flows started, {} finished",
                    started.load(std::sync::atomic::Ordering::Relaxed),
                    finished.load(std::sync::atomic::Ordering::Relaxed)
                ));
            }
        })
    });
    let run = Run {
        seed,
        duration: a.duration,
        rate: a.rate,
        flow: a.flow,
        faults,
        api_url: format!("http://127.0.0.1:{}/api", a.ports.gateway_port),
        database_url: database_url(home, &a.ports)?,
        home: home.to_path_buf(),
        ports: a.ports.clone(),
        settle_limit: a.settle,
        merchants: 8,
    };
    let display = Display { bar: bar.clone() };
    // Ctrl-C mid-run must not leave a service frozen or dead: the services run in sessions of their own
    // (the signal never reaches them), so give back every one the schedule may have touched.
    let report = tokio::select! {
        r = chaos::run(runtime.as_ref(), run, replay, &progress, &display) => r,
        _ = tokio::signal::ctrl_c() => {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            eprintln!("interrupted: giving every faulted service back …");
            for service in &services {
                if let Err(e) = chaos::restore(runtime.as_ref(), service).await {
                    eprintln!("warning: {service}: {e:#}; `payctl up` starts what is missing");
                }
            }
            return Ok(ExitCode::from(130));
        }
    };
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let report = report?;
    if a.json {
        output::json(&report)?;
    } else {
        print(&report);
    }
    // After the report: a JUnit file that cannot be written must not hide the verdict.
    let written = junit_steps(&report).junit_written(a.junit.as_deref(), None);
    if report.passed && written {
        Ok(ExitCode::SUCCESS)
    } else if report.passed {
        Ok(ExitCode::from(1))
    } else {
        eprintln!(
            "error: chaos found {} violation(s); replay: {}",
            report.violations.len(),
            report.replay
        );
        Ok(ExitCode::from(1))
    }
}

/// The verdict as steps, for JUnit.
fn junit_steps(r: &Report) -> Steps {
    let mut steps = Steps::new("payctl chaos", 0, false);
    let secs = |ms: Option<u64>| Duration::from_millis(ms.unwrap_or(0));
    for h in r.faults.iter().filter(|h| !h.skipped) {
        steps.record_took(
            &format!(
                "{} {} at {:.1}s for {:.1}s",
                h.fault.kind,
                h.fault.service,
                h.began_ms as f64 / 1000.0,
                h.fault.down.as_secs_f64()
            ),
            secs(h.back_ms.map(|b| b.saturating_sub(h.began_ms))),
            h.error.is_none(),
            h.error.as_deref().unwrap_or("back, answering"),
        );
    }
    steps.record_took(
        "outbox drained",
        secs(r.outbox_drained_ms),
        r.outbox_drained_ms.is_some(),
        &ms(r.outbox_drained_ms),
    );
    steps.record_took(
        "ledger caught up",
        secs(r.ledger_caught_up_ms),
        r.ledger_caught_up_ms.is_some(),
        &ms(r.ledger_caught_up_ms),
    );
    steps.record_took(
        "reconcile",
        Duration::ZERO,
        r.reconcile_violations == 0,
        &format!("{} violation(s)", r.reconcile_violations),
    );
    let first: Vec<String> = r
        .violations
        .iter()
        .take(20)
        .map(|v| format!("{}: {}", v.subject, v.detail))
        .collect();
    steps.record_took(
        "every acknowledged operation exactly once, with its ledger",
        Duration::ZERO,
        r.passed,
        &if r.passed {
            format!("seed {}", r.seed)
        } else {
            format!(
                "{} violation(s); replay: {}\n{}",
                r.violations.len(),
                r.replay,
                first.join("\n")
            )
        },
    );
    steps
}

fn ms(v: Option<u64>) -> String {
    v.map(|v| format!("{:.2}s", v as f64 / 1000.0))
        .unwrap_or_else(|| "-".into())
}

fn print(r: &Report) {
    if !r.faults.is_empty() {
        println!(
            "{}",
            table(
                &[
                    "",
                    "at",
                    "fault",
                    "service",
                    "down",
                    "back after",
                    "first success",
                    "ledger caught up"
                ],
                r.faults.iter().map(|h| vec![
                    if h.skipped {
                        "-".into()
                    } else {
                        mark(h.error.is_none())
                    },
                    format!("{:.1}s", h.began_ms as f64 / 1000.0),
                    h.fault.kind.to_string(),
                    h.fault.service.clone(),
                    format!("{:.1}s", h.fault.down.as_secs_f64()),
                    if h.skipped {
                        "left out".into()
                    } else {
                        h.back_ms
                            .map(|b| format!("{:.1}s", (b - h.began_ms) as f64 / 1000.0))
                            .unwrap_or_else(|| "-".into())
                    },
                    ms(h.first_success_ms),
                    ms(h.ledger_caught_up_ms),
                ])
            )
        );
    }
    let l = &r.load;
    println!(
        "load: {} flows in {:.1}s ({} dropped), {} operations answered, {} given up, {} attempts; p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms",
        l.flows_started, l.seconds, l.dropped, l.answered, l.gave_up, l.attempts, l.p50_ms, l.p99_ms, l.max_ms
    );
    println!(
        "      attempts by answer: {}",
        l.outcomes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "after the load: outbox drained in {}, ledger caught up in {}; reconcile: {} violation(s)",
        ms(r.outbox_drained_ms),
        ms(r.ledger_caught_up_ms),
        r.reconcile_violations
    );
    if r.passed {
        println!("{} chaos passed: every acknowledged operation is there exactly once, with its ledger (seed {})", mark(true), r.seed);
    } else {
        for v in r.violations.iter().take(20) {
            println!("{} {}: {}", mark(false), v.subject, v.detail);
        }
        if r.violations.len() > 20 {
            println!("… and {} more (--json shows all)", r.violations.len() - 20);
        }
        eprintln!(
            "error: chaos found {} violation(s); replay: {}",
            r.violations.len(),
            r.replay
        );
    }
}
