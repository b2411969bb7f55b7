//! `payctl cb`: the Kafka publisher's circuit breaker — look at it, force it, and prove it works.
//!
//! `cb test` is the original's 9-step scenario done right: it asserts every step (the original passed
//! whenever one call had succeeded), and it checks what matters — that no payment made during the
//! outage lost its event or its ledger legs.

use crate::ops::api::{require_api, Api, Target};
use crate::ops::breaker::{backlog, breaker, outage_counts, set_state};
use crate::output::steps::Steps;
use crate::output::{self, table};
use crate::runtime;
use crate::stack::secrets::database_url;
use crate::stack::{self, saved_plan, Kind, Ports, Svc};
use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct CbArgs {
    #[command(subcommand)]
    command: Cb,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Subcommand)]
pub enum Cb {
    /// Show the breaker's state and counters.
    #[command(after_help = "Examples:
  payctl cb status
  payctl cb status --json | jq .state")]
    Status {
        /// The breaker as the API reports it, in JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop Kafka, drive payments, and assert: fast answers, OPEN, HALF_OPEN → CLOSED, outbox drained,
    /// every payment of the outage published once and in the ledger.
    #[command(after_help = "Examples:
  payctl cb test                     ten numbered steps, exit 1 if one fails
  payctl cb test --payments 50 --junit reports/cb.xml")]
    Test {
        #[command(flatten)]
        ports: Ports,
        /// Payments to make while Kafka is down (at most; stops earlier once the breaker is OPEN and at
        /// least this many were made).
        #[arg(long, default_value_t = 20)]
        payments: usize,
        /// The steps as one JSON document on stdout: {passed, steps: [{name, ok, seconds, detail}]}.
        #[arg(long)]
        json: bool,
        /// Also write the steps as JUnit XML to this file.
        #[arg(long, value_name = "FILE")]
        junit: Option<std::path::PathBuf>,
    },
    /// Stop publishing (events wait in the outbox) until `reset`. Applies to every API instance.
    #[command(after_help = "Examples:
  payctl cb force-open               payments go on; their events wait in the outbox
  payctl cb reset                    publish again")]
    ForceOpen {
        #[command(flatten)]
        ports: Ports,
    },
    /// Publish regardless of failures (the breaker only counts). Applies to every API instance.
    #[command(after_help = "Examples:
  payctl cb disable                  publish even when Kafka fails (the breaker only counts)
  payctl cb reset")]
    Disable {
        #[command(flatten)]
        ports: Ports,
    },
    /// Back to CLOSED with a fresh window. Applies to every API instance.
    #[command(after_help = "Examples:
  payctl cb reset                    CLOSED, with a fresh window, on every API instance")]
    Reset {
        #[command(flatten)]
        ports: Ports,
    },
}

fn print(b: &Value) {
    let keys = [
        "state",
        "failureRate",
        "slowCallRate",
        "numberOfBufferedCalls",
        "numberOfSuccessfulCalls",
        "numberOfFailedCalls",
        "numberOfSlowCalls",
        "numberOfNotPermittedCalls",
    ];
    let v = |k: &str| output::text(&b[k]);
    println!(
        "{}",
        table(
            &["field", "value"],
            keys.iter().map(|k| vec![k.to_string(), v(k)])
        )
    );
}

/// Each API instance has its own breaker: set them all (the instances of the local stack, straight
/// rather than through the gateway), or the one behind --api-url when there is no local stack.
async fn set_everywhere(home: &Path, url: &str, ports: &Ports, state: &str) -> anyhow::Result<()> {
    let instances: Vec<Svc> = if stack::saved_file(home).exists() {
        saved_plan(home, ports)
            .into_iter()
            .filter(|s| s.kind == Kind::Ingest)
            .collect()
    } else {
        Vec::new()
    };
    if instances.is_empty() {
        print(&set_state(home, url, state).await?);
        return Ok(());
    }
    let mut rows = Vec::new();
    for svc in &instances {
        let now = match set_state(home, &format!("http://127.0.0.1:{}", svc.port), state).await {
            Ok(b) => b["state"].as_str().unwrap_or("?").to_owned(),
            // A stopped instance publishes nothing anyway.
            Err(e) => format!("unreachable ({e:#})"),
        };
        rows.push(vec![svc.name.clone(), now]);
    }
    println!("{}", table(&["instance", "state"], rows));
    Ok(())
}

pub async fn exec(home: &Path, a: CbArgs) -> anyhow::Result<ExitCode> {
    let (target, cmd) = (&a.target, a.command);
    let url = target.api_url.as_str();
    require_api(url)?;
    match cmd {
        Cb::Status { json } => {
            let b = breaker(url).await?;
            if json {
                output::json(&b)?;
            } else {
                print(&b);
            }
        }
        Cb::ForceOpen { ports } => set_everywhere(home, url, &ports, "FORCED_OPEN").await?,
        Cb::Disable { ports } => set_everywhere(home, url, &ports, "DISABLED").await?,
        Cb::Reset { ports } => set_everywhere(home, url, &ports, "CLOSED").await?,
        Cb::Test {
            ports,
            payments,
            json,
            junit,
        } => {
            let mut steps = Steps::new("payctl cb test", 49, !json);
            let result = test(home, target, &ports, payments, &mut steps).await;
            let error = result.as_ref().err().map(|e| format!("{e:#}"));
            let written = steps.junit_written(junit.as_deref(), error.as_deref());
            let passed = result.is_ok() && !steps.failed();
            if json {
                output::json(&json!({"passed": passed, "steps": steps.list, "error": error}))?;
            }
            result?;
            if !passed {
                eprintln!("error: circuit-breaker test failed");
                return Ok(ExitCode::from(1));
            }
            if !json {
                println!("circuit-breaker test passed");
            }
            if !written {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_for<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn test(
    home: &Path,
    target: &Target,
    ports: &Ports,
    outage_payments: usize,
    steps: &mut Steps,
) -> anyhow::Result<()> {
    let api = Api::new(home, target)?;
    let url = target.api_url.as_str();

    let t = Instant::now();
    let ready = reqwest::get(format!("{url}/ready"))
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    steps.record("1. API ready", t, ready, url);
    if !ready {
        bail!("the API is not ready at {url}; start the platform with `payctl up`");
    }

    let t = Instant::now();
    let mut b = breaker(url).await?;
    if b["state"] != "CLOSED" {
        b = set_state(home, url, "CLOSED").await?;
    }
    steps.record(
        "2. breaker CLOSED",
        t,
        b["state"] == "CLOSED",
        b["state"].as_str().unwrap_or("?"),
    );

    let t = Instant::now();
    let mut ok = true;
    for i in 0..5 {
        let key = format!("cb-normal-{i}-{}", uuid::Uuid::new_v4());
        ok &= api
            .post(
                "/payments/authorize",
                json!({"amount": 50_000, "currency": "KRW"}),
                Some(&key),
            )
            .await
            .is_ok();
    }
    ok &= wait_for(Duration::from_secs(30), || async {
        backlog(url).await == Some(0)
    })
    .await;
    steps.record("3. 5 payments with Kafka up, all published", t, ok, "");

    let t = Instant::now();
    // The Kafka process natively, its container on the Docker runtime.
    let runtime = runtime::open(home, ports);
    let stopped = runtime.stop("kafka").await?;
    steps.record("4. stop Kafka", t, stopped, "");
    if !stopped {
        bail!("Kafka was not running under {}", home.display());
    }
    let outage_started = time::OffsetDateTime::now_utc();

    let t = Instant::now();
    let mut latencies = Vec::new();
    let mut ids = Vec::new();
    let mut errors = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut open = false;
    while (!open || ids.len() < outage_payments) && Instant::now() < deadline {
        let key = format!("cb-outage-{}", uuid::Uuid::new_v4());
        let started = Instant::now();
        match api
            .post(
                "/payments/authorize",
                json!({"amount": 1_000, "currency": "KRW"}),
                Some(&key),
            )
            .await
        {
            Ok(p) => ids.push(p["paymentId"].as_str().unwrap_or_default().to_owned()),
            Err(_) => errors += 1,
        }
        latencies.push(started.elapsed());
        open = breaker(url)
            .await
            .map(|b| b["state"] == "OPEN")
            .unwrap_or(false);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    latencies.sort();
    let p = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    let max = latencies.last().copied().unwrap_or_default();
    steps.record(
        "5. payments answer fast while Kafka is down",
        t,
        errors == 0 && max < Duration::from_secs(1),
        &format!(
            "{} ok, {errors} failed, p50 {:.1?}, p99 {:.1?}, max {max:.1?}",
            ids.len(),
            p(0.5),
            p(0.99)
        ),
    );
    let b = breaker(url).await?;
    steps.record(
        "6. breaker OPEN",
        t,
        open,
        &format!("failure rate {}", b["failureRate"].as_str().unwrap_or("?")),
    );

    let t = Instant::now();
    let restarted = runtime.start("kafka").await;
    steps.record(
        "7. start Kafka",
        t,
        restarted.is_ok(),
        &restarted
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default(),
    );
    restarted?;

    let t = Instant::now();
    let closed = wait_for(Duration::from_secs(120), || async {
        breaker(url)
            .await
            .map(|b| b["state"] == "CLOSED")
            .unwrap_or(false)
    })
    .await;
    let b = breaker(url).await?;
    let path: Vec<String> = b["recentTransitions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|tr| {
            tr["at"].as_str().and_then(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            }) >= Some(outage_started)
        })
        .map(|tr| tr["to"].as_str().unwrap_or("?").to_owned())
        .collect();
    let half_then_closed = path
        .windows(2)
        .any(|w| w[0] == "HALF_OPEN" && w[1] == "CLOSED");
    steps.record(
        "8. breaker HALF_OPEN → CLOSED",
        t,
        closed && half_then_closed,
        &path.join(" → "),
    );

    let t = Instant::now();
    let drained = wait_for(Duration::from_secs(60), || async {
        backlog(url).await == Some(0)
    })
    .await;
    steps.record("9. outbox drained", t, drained, "");

    let t = Instant::now();
    let db = sqlx::MySqlPool::connect(&database_url(home, ports)?).await?;
    let mut complete = false;
    let mut detail = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let (events, legs) = outage_counts(&db, &ids).await?;
        detail = format!(
            "{} payments, {events} published events, {legs} ledger legs",
            ids.len()
        );
        if events == ids.len() as i64 && legs == 2 * ids.len() as i64 {
            complete = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    steps.record(
        "10. each outage payment: one event, its ledger legs",
        t,
        complete,
        &detail,
    );

    Ok(())
}
