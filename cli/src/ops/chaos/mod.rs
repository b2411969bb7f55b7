//! `payctl chaos`: a seeded schedule of kills and freezes under an open-model load, then a verdict
//! against what every client was told (acknowledged ⇒ present exactly once, with its ledger).
//!
//! The run: print the schedule and the command that replays it → create the run's own merchants →
//! start the load → carry out each fault through the [`Runtime`] (kill + start, or freeze + thaw), timing
//! each recovery → wait (bounded) for the outbox to drain and the ledger to catch up → judge.

pub mod driver;
pub mod schedule;
pub mod verdict;

use crate::runtime::Runtime;
use crate::stack::Ports;
use driver::{Flow, Merchant, Progress, Record};
use schedule::{Fault, FaultKind};
use serde::Serialize;
use sqlx::MySqlPool;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use verdict::Violation;

/// Everything a run needs besides the runtime.
pub struct Run {
    pub seed: u64,
    pub duration: Duration,
    pub rate: u32,
    pub flow: Flow,
    pub faults: Vec<Fault>,
    pub api_url: String,
    pub database_url: String,
    /// The stack's state directory and ports, for reconcile.
    pub home: std::path::PathBuf,
    pub ports: Ports,
    /// How long to wait for the outbox and the ledger after the load.
    pub settle_limit: Duration,
    pub merchants: usize,
}

/// One fault as it happened.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Happened {
    #[serde(flatten)]
    pub fault: Fault,
    /// When the fault began and when the service was back (started and healthy, or thawed), in ms
    /// since the load started.
    pub began_ms: u64,
    pub back_ms: Option<u64>,
    /// From back to the first answered payment operation through the gateway.
    pub first_success_ms: Option<u64>,
    /// From back to every event committed until then being in the ledger.
    pub ledger_caught_up_ms: Option<u64>,
    /// Left out: recoveries before it took the time it needed, and it would have outlasted the load.
    pub skipped: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadFigures {
    pub flows_started: u64,
    pub dropped: u64,
    pub answered: usize,
    pub gave_up: usize,
    pub attempts: u64,
    pub outcomes: std::collections::BTreeMap<String, u64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub seed: u64,
    pub replay: String,
    pub faults: Vec<Happened>,
    pub load: LoadFigures,
    pub outbox_drained_ms: Option<u64>,
    pub ledger_caught_up_ms: Option<u64>,
    pub reconcile_violations: usize,
    pub violations: Vec<Violation>,
    pub passed: bool,
}

/// What a run reports while it goes.
pub trait Watch: Send + Sync {
    fn fault(&self, what: &str);
    fn phase(&self, what: &str);
}

/// Runs the load and the faults, then judges, reconcile included (the same checks as `payctl
/// reconcile`).
pub async fn run(
    runtime: &dyn Runtime,
    run: Run,
    replay: String,
    progress: &Progress,
    watch: &dyn Watch,
) -> anyhow::Result<Report> {
    let db = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&run.database_url)
        .await?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut merchants = Vec::with_capacity(run.merchants);
    for i in 0..run.merchants {
        let id = payctl_domain::MerchantId::parse("merchantId", &format!("chaos-{run_id}-{i}"))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let key = pay_server::auth::create_merchant(&db, &id, "payctl chaos").await?;
        merchants.push(Merchant {
            id: id.as_str().to_owned(),
            key: key.expose().to_owned(),
        });
    }
    let merchant_ids: Vec<String> = merchants.iter().map(|m| m.id.clone()).collect();
    let first_event = last_event(&db).await?;

    let config = driver::Config {
        api_url: run.api_url.clone(),
        merchants,
        rate: run.rate,
        duration: run.duration,
        flow: run.flow,
        seed: run.seed,
        run: run_id,
        max_in_flight: 20_000,
        attempt_timeout: Duration::from_secs(5),
        op_deadline: Duration::from_secs(120),
    };
    let started = Instant::now();
    // Its own task: a runtime that blocks a thread while it restarts a service must not hold back the
    // flows due meanwhile.
    let load = tokio::spawn(driver::run(config, progress.clone()));
    let faults = carry_out(
        runtime,
        &run.faults,
        run.duration,
        &db,
        first_event,
        started,
        watch,
    );
    let (record, mut happened) = tokio::join!(load, faults);
    let record = record??;

    watch.phase("waiting for the outbox to drain");
    let outbox_drained = verdict::wait_for_zero(
        &db,
        &verdict::unpublished(merchant_ids.len()),
        &merchant_ids,
        run.settle_limit,
    )
    .await?;
    watch.phase("waiting for the ledger to catch up");
    let ledger_caught_up = verdict::wait_for_zero(
        &db,
        &verdict::unapplied(merchant_ids.len()),
        &merchant_ids,
        run.settle_limit,
    )
    .await?;
    for h in &mut happened {
        h.first_success_ms = h.back_ms.and_then(|back| {
            record
                .answers
                .iter()
                .find(|a| a.status == 200 && a.at_ms >= back)
                .map(|a| a.at_ms - back)
        });
    }

    watch.phase("judging");
    let mut violations = Vec::new();
    if outbox_drained.is_none() {
        violations.push(Violation {
            subject: "outbox".into(),
            detail: format!("not drained {:?} after the load", run.settle_limit),
        });
    }
    if ledger_caught_up.is_none() {
        violations.push(Violation {
            subject: "ledger".into(),
            detail: format!("not caught up {:?} after the load", run.settle_limit),
        });
    }
    for h in &happened {
        let subject = format!("{} {}", h.fault.kind, h.fault.service);
        if let Some(e) = &h.error {
            violations.push(Violation {
                subject,
                detail: e.clone(),
            });
        } else if !h.skipped && h.first_success_ms.is_none() {
            violations.push(Violation {
                subject,
                detail: "no payment operation succeeded after the service was back".into(),
            });
        }
    }
    // A run that tested nothing does not pass: every operation must get an answer in time.
    if record.answers.is_empty() {
        violations.push(Violation {
            subject: "load".into(),
            detail: "no operation was answered".into(),
        });
    }
    if let Some(g) = record.gave_up.first() {
        violations.push(Violation {
            subject: "load".into(),
            detail: format!(
                "{} operation(s) got no answer within their 120 s, e.g. {} {} ({} attempts, last: {})",
                record.gave_up.len(),
                verdict::op_name(g.op),
                g.key,
                g.attempts,
                g.last_error
            ),
        });
    }
    if record.dropped > 0 {
        violations.push(Violation {
            subject: "load".into(),
            detail: format!(
                "{} flows could not start: 20,000 were still waiting for answers",
                record.dropped
            ),
        });
    }
    violations.extend(verdict::judge(&db, &merchant_ids, &record).await?);
    // The whole stack's invariants, with the usual settle time so another client's change in flight is
    // not taken for a violation; this run's own payments are checked to the last one above.
    let reconcile =
        crate::ops::reconcile::check(&run.home, &run.ports, Duration::from_secs(5)).await?;
    let reconcile_violations = reconcile.violations();
    for c in &reconcile.checks {
        violations.extend(c.violations.iter().map(|v| Violation {
            subject: v.subject.clone(),
            detail: format!("reconcile: {}: {}", c.name, v.detail),
        }));
    }
    db.close().await;
    Ok(Report {
        seed: run.seed,
        replay,
        faults: happened,
        load: figures(&record),
        outbox_drained_ms: outbox_drained.map(|d| d.as_millis() as u64),
        ledger_caught_up_ms: ledger_caught_up.map(|d| d.as_millis() as u64),
        reconcile_violations,
        passed: violations.is_empty(),
        violations,
    })
}

fn figures(r: &Record) -> LoadFigures {
    LoadFigures {
        flows_started: r.flows_started,
        dropped: r.dropped,
        answered: r.answers.len(),
        gave_up: r.gave_up.len(),
        attempts: r.attempts,
        outcomes: r.outcomes.clone(),
        p50_ms: driver::quantile(&r.latencies_ms, 0.5),
        p99_ms: driver::quantile(&r.latencies_ms, 0.99),
        max_ms: driver::quantile(&r.latencies_ms, 1.0),
        seconds: r.took.as_secs_f64(),
    }
}

/// Carries out the schedule. A fault starts at its time, or `MIN_GAP` after the previous one's service
/// is back, whichever is later (a killed consumer takes a group rebalance to be back); one that would
/// then outlast the load is left out. The times that actually happened are recorded.
async fn carry_out(
    runtime: &dyn Runtime,
    faults: &[Fault],
    load_for: Duration,
    db: &MySqlPool,
    first_event: u64,
    started: Instant,
    watch: &dyn Watch,
) -> Vec<Happened> {
    let since = |t: Instant| t.duration_since(started).as_millis() as u64;
    let mut happened = Vec::with_capacity(faults.len());
    let mut catch_ups = Vec::new();
    let mut free_from = started;
    for f in faults {
        // On time, or once the platform had a moment after a slow recovery; never past the load.
        let at = (started + f.at).max(free_from + schedule::MIN_GAP);
        if at + f.down > started + load_for - schedule::QUIET_END {
            watch.fault(&format!(
                "{:>6.1}s  {} {} left out: recoveries took the time it needed",
                since(Instant::now()) as f64 / 1000.0,
                f.kind,
                f.service
            ));
            happened.push(Happened {
                fault: f.clone(),
                began_ms: since(Instant::now()),
                back_ms: None,
                first_success_ms: None,
                ledger_caught_up_ms: None,
                skipped: true,
                error: None,
            });
            catch_ups.push(tokio::spawn(async { None }));
            continue;
        }
        tokio::time::sleep_until(at.into()).await;
        let began = Instant::now();
        watch.fault(&format!(
            "{:>6.1}s  {} {} for {:.1}s",
            since(began) as f64 / 1000.0,
            f.kind,
            f.service,
            f.down.as_secs_f64()
        ));
        let result = fault(runtime, f).await;
        let back = result.is_ok().then(Instant::now);
        let mut h = Happened {
            fault: f.clone(),
            began_ms: since(began),
            back_ms: back.map(since),
            first_success_ms: None,
            ledger_caught_up_ms: None,
            skipped: false,
            error: result.err().map(|e| format!("{e:#}")),
        };
        free_from = back.unwrap_or_else(Instant::now);
        if let Some(back) = back {
            watch.fault(&format!(
                "{:>6.1}s  {} back after {:.1}s",
                since(back) as f64 / 1000.0,
                f.service,
                back.duration_since(began).as_secs_f64()
            ));
            let db = db.clone();
            catch_ups.push(tokio::spawn(async move {
                caught_up_after(&db, first_event, back).await
            }));
        } else {
            catch_ups.push(tokio::spawn(async { None }));
        }
        h.ledger_caught_up_ms = None;
        happened.push(h);
    }
    for (h, c) in happened.iter_mut().zip(catch_ups) {
        h.ledger_caught_up_ms = c.await.ok().flatten();
    }
    happened
}

/// One fault and the recovery from it. Whatever fails on the way, the service is given back: thawed
/// after a freeze that may have half happened, started after a kill that may have.
async fn fault(runtime: &dyn Runtime, f: &Fault) -> anyhow::Result<()> {
    let done = match f.kind {
        FaultKind::Kill => match runtime.kill(&f.service).await {
            Ok(true) => {
                tokio::time::sleep(f.down).await;
                Ok(())
            }
            Ok(false) => Err(anyhow::anyhow!(
                "{} was not running when its fault came",
                f.service
            )),
            Err(e) => Err(e),
        },
        FaultKind::Pause => match runtime.freeze(&f.service).await {
            Ok(()) => {
                tokio::time::sleep(f.down).await;
                Ok(())
            }
            Err(e) => Err(e),
        },
    };
    let back = restore(runtime, &f.service).await;
    done.and(back)
}

/// Gives a service back whatever state a fault left it in: thawed (a no-op unless frozen), started
/// unless it runs, then healthy. Tried three times.
pub async fn restore(runtime: &dyn Runtime, service: &str) -> anyhow::Result<()> {
    let mut last = None;
    for _ in 0..3 {
        let attempt = async {
            let _ = runtime.thaw(service).await;
            runtime.start(service).await?;
            let limit = Instant::now() + Duration::from_secs(60);
            while runtime.health(service).await? != crate::runtime::Health::Healthy {
                anyhow::ensure!(
                    Instant::now() < limit,
                    "{service} is not healthy 60 s after it was given back"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("{service} could not be given back")))
}

/// How long after `back` every event committed by then is in the ledger (bounded: 120 s).
async fn caught_up_after(db: &MySqlPool, first_event: u64, back: Instant) -> Option<u64> {
    let limit = Duration::from_secs(120);
    let upto: u64 = loop {
        match last_event(db).await {
            Ok(n) => break n,
            Err(_) if back.elapsed() < limit => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(_) => return None,
        }
    };
    loop {
        let left: Result<i64, _> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox_events o WHERE o.id > ? AND o.id <= ? AND NOT EXISTS \
             (SELECT 1 FROM ledger_entries l WHERE l.event_id = o.event_id)",
        )
        .bind(first_event)
        .bind(upto)
        .fetch_one(db)
        .await;
        if let Ok(0) = left {
            return Some(back.elapsed().as_millis() as u64);
        }
        if back.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The id of the newest outbox row (0 for none).
async fn last_event(db: &MySqlPool) -> Result<u64, sqlx::Error> {
    let id: Option<u64> = sqlx::query_scalar("SELECT MAX(id) FROM outbox_events")
        .fetch_one(db)
        .await?;
    Ok(id.unwrap_or(0))
}

/// The services a chaos run may fault, in the stack's names.
pub const SERVICES: [&str; 5] = ["ingest", "consumer", "kafka", "redis", "mariadb"];

/// Keeps the live counters for a progress display.
pub fn progress() -> Progress {
    Progress {
        started: Arc::new(AtomicU64::new(0)),
        finished: Arc::new(AtomicU64::new(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Health, LogStream, ServiceStatus};
    use crate::stack::Kind;
    use async_trait::async_trait;
    use std::sync::Mutex;

    /// A runtime that records what it was asked and fails where told to.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
        fail: Vec<&'static str>,
    }

    impl Recorder {
        fn call(&self, what: &'static str, service: &str) -> anyhow::Result<()> {
            self.calls.lock().unwrap().push(format!("{what} {service}"));
            anyhow::ensure!(!self.fail.contains(&what), "{what} failed");
            Ok(())
        }
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Runtime for Recorder {
        fn supports(&self, _: Kind) -> bool {
            true
        }
        async fn up(&self, _: crate::stack::Scale) -> anyhow::Result<()> {
            Ok(())
        }
        async fn down(&self, _: bool) -> anyhow::Result<()> {
            Ok(())
        }
        async fn status(&self) -> anyhow::Result<Vec<ServiceStatus>> {
            Ok(Vec::new())
        }
        async fn logs(&self, _: &str, _: usize, _: bool) -> anyhow::Result<LogStream> {
            anyhow::bail!("no logs")
        }
        async fn start(&self, s: &str) -> anyhow::Result<()> {
            self.call("start", s)
        }
        async fn stop(&self, s: &str) -> anyhow::Result<bool> {
            self.call("stop", s).map(|()| true)
        }
        async fn kill(&self, s: &str) -> anyhow::Result<bool> {
            self.call("kill", s).map(|()| true)
        }
        async fn freeze(&self, s: &str) -> anyhow::Result<()> {
            self.call("freeze", s)
        }
        async fn thaw(&self, s: &str) -> anyhow::Result<()> {
            self.call("thaw", s)
        }
        async fn health(&self, _: &str) -> anyhow::Result<Health> {
            Ok(Health::Healthy)
        }
        async fn pid(&self, _: &str) -> Option<u32> {
            None
        }
    }

    fn fault(kind: FaultKind) -> Fault {
        Fault {
            at: Duration::ZERO,
            service: "redis".into(),
            kind,
            down: Duration::from_millis(1),
        }
    }

    #[tokio::test]
    async fn a_freeze_that_fails_half_way_is_still_thawed_and_reported() {
        let r = Recorder {
            fail: vec!["freeze"],
            ..Default::default()
        };
        let e = super::fault(&r, &fault(FaultKind::Pause))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("freeze failed"), "{e}");
        assert_eq!(r.calls(), ["freeze redis", "thaw redis", "start redis"]);
    }

    #[tokio::test]
    async fn a_kill_that_errs_is_still_followed_by_a_start() {
        let r = Recorder {
            fail: vec!["kill"],
            ..Default::default()
        };
        assert!(super::fault(&r, &fault(FaultKind::Kill)).await.is_err());
        assert_eq!(r.calls(), ["kill redis", "thaw redis", "start redis"]);
    }

    #[tokio::test]
    async fn giving_a_service_back_is_tried_three_times() {
        let r = Recorder {
            fail: vec!["start"],
            ..Default::default()
        };
        assert!(restore(&r, "kafka").await.is_err());
        assert_eq!(r.calls().iter().filter(|c| *c == "start kafka").count(), 3);
    }
}
