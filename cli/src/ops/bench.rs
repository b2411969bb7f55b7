//! `payctl bench`'s measurements: the database's own limit (an authorize's writes straight to MariaDB),
//! the broker's alone, CPU time per service from /proc, a step (k6's or payctl's own driver's) judged
//! against its limits, the API's commit batches, and peak RSS.

use super::driver::{DriverReport, Latency};
use super::k6::Flow;
use super::metrics::{quantile_between, Sample};
use super::procfs;
use crate::stack::{Kind, Ports};
use pay_server::idempotency::{self, Keyed, SavedResponse};
use pay_server::storage::{self, PaymentRecord};
use payctl_domain::{
    EventId, EventType, IdempotencyKey, MerchantId, PaymentEvent, PaymentId, PaymentStatus,
    EVENT_SCHEMA_VERSION,
};
use serde::Serialize;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Transactions per second for the writes of one authorize, `concurrency` at a time.
pub async fn baseline(url: &str, concurrency: u32, seconds: u64) -> anyhow::Result<f64> {
    let db = storage::pool(url, concurrency, Duration::from_secs(5), 5)?;
    let merchant =
        MerchantId::parse("merchantId", "bench-baseline").map_err(|e| anyhow::anyhow!("{e}"))?;
    pay_server::auth::create_merchant(&db, &merchant, "payctl bench baseline").await?;
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (db, done, merchant) = (db.clone(), done.clone(), merchant.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let key = IdempotencyKey::parse("k", &uuid::Uuid::new_v4().to_string())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let keyed = Keyed::new(
                    merchant.clone(),
                    key,
                    "authorize",
                    &serde_json::json!({"amount": 1000, "currency": "KRW"}),
                );
                let now = storage::now();
                let payment = PaymentRecord {
                    id: PaymentId::new(),
                    merchant_id: merchant.as_str().to_owned(),
                    status: PaymentStatus::Authorized,
                    amount: 1000,
                    captured: 0,
                    refunded: 0,
                    voided: 0,
                    currency: "KRW".into(),
                    version: 0,
                    created_at: now,
                    updated_at: now,
                };
                let event = PaymentEvent {
                    event_id: EventId::new(),
                    event_type: EventType::PaymentAuthorized,
                    schema_version: EVENT_SCHEMA_VERSION,
                    payment_id: payment.id,
                    sequence: 1,
                    merchant_id: payment.merchant_id.clone(),
                    amount: 1000,
                    currency: "KRW".into(),
                    occurred_at: now,
                    status: PaymentStatus::Authorized,
                    authorized_amount: 1000,
                    captured_amount: 0,
                    refunded_amount: 0,
                    voided_amount: 0,
                    reason: None,
                };
                let mut tx = db.begin().await?;
                idempotency::reserve(&mut tx, &keyed, time::Duration::hours(24))
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                storage::insert_payment(&mut tx, &payment).await?;
                pay_server::outbox::enqueue(&mut tx, &event).await?;
                let body = serde_json::to_vec(
                    &serde_json::json!({"paymentId": payment.id, "status": "AUTHORIZED"}),
                )?;
                idempotency::complete(
                    &mut tx,
                    &keyed,
                    &SavedResponse { status: 200, body },
                    Some(payment.id.as_uuid()),
                )
                .await?;
                tx.commit().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Messages per second the broker accepts from one producer, with the relay's settings, on a scratch
/// topic: separates the broker's limit from the API's.
/// Produce and consume rates of the broker alone, in messages/s.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerRates {
    pub produce: f64,
    pub consume: f64,
}

/// The broker without our services in the way: `messages` event-sized messages from one idempotent
/// producer (acks=all, 1,000 in flight), then the whole scratch topic read back with the ledger
/// consumer's fetch settings.
pub async fn broker_alone(ports: &Ports, messages: u32) -> anyhow::Result<BrokerRates> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::ClientConfig;
    let bootstrap = format!("127.0.0.1:{}", ports.kafka_port);
    let topic = "payctl.bench.broker";
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    let _ = admin
        .create_topics(
            &[NewTopic::new(topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "60000")
        .create()?;
    // About the size of a payment event.
    let payload = "x".repeat(420);
    let started = Instant::now();
    for chunk in (0..messages).collect::<Vec<_>>().chunks(1000) {
        let sends = chunk.iter().map(|i| {
            let key = i.to_string();
            let producer = &producer;
            let payload = &payload;
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(&key).payload(payload),
                        rdkafka::util::Timeout::After(Duration::from_secs(5)),
                    )
                    .await
                    .map_err(|(e, _)| e)
            }
        });
        for r in futures::future::join_all(sends).await {
            r?;
        }
    }
    let produce = f64::from(messages) / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let read = tokio::task::spawn_blocking(move || {
        pay_consumer::topics::read_to_end(&bootstrap, topic, Duration::from_secs(600))
    })
    .await??;
    let consume = read.len() as f64 / started.elapsed().as_secs_f64();
    Ok(BrokerRates { produce, consume })
}

/// Which load generator drives a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Driver {
    /// payctl's own open-model driver (ops/driver.rs): little CPU of its own
    Builtin,
    /// the real k6, as `payctl load` runs it
    K6,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Builtin => "builtin",
            Driver::K6 => "k6",
        }
    }
}

/// One rate of a step search, judged.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub flow: String,
    pub driver: Driver,
    pub rate: u32,
    /// Flows completed (every request answered 200).
    pub flows: f64,
    /// Flows per second that ran (k6's iterations rate: failed ones too, over the whole run, ramp
    /// included).
    pub achieved: f64,
    /// HTTP requests per second the generator sent.
    pub requests_per_second: f64,
    pub latency: Vec<Latency>,
    pub error_pct: f64,
    pub dropped: f64,
    pub passed: bool,
    /// What the API instances committed, from their `payment_commit_batch_size` histogram (`None`
    /// when they do not export it: a server without group commit).
    pub batches: Option<Batches>,
    /// CPU milliseconds per flow, by service, then "generator" (the load generator's own process), then
    /// "other" (the kernel and everything else).
    pub cpu_per_flow: Vec<ProcessCpu>,
}

/// CPU milliseconds per flow of one process (or group of them).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessCpu {
    pub process: String,
    pub ms: f64,
}

/// The shared commits of the API instances during a step.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Batches {
    pub commits_per_second: f64,
    /// Requests the commits carried (the histogram's sum).
    pub requests_committed: f64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// The step's verdict: every request kind's p99 within the limit, errors under 0.1 %, nothing dropped.
fn sustained(latency: &[Latency], error_pct: f64, dropped: f64, p99_ms: u32) -> bool {
    latency.iter().all(|l| l.p99_ms <= f64::from(p99_ms)) && error_pct < 0.1 && dropped == 0.0
}

/// CPU time used so far (user + system, in clock ticks) by each service with its child processes (nginx's
/// workers), and by the whole machine.
pub struct CpuSample {
    services: Vec<(String, u64)>,
    machine: u64,
}

/// CPU time so far of each service (name, pid) with its children, and of the machine.
pub fn cpu_sample(services: &[(String, u32)]) -> CpuSample {
    let all = procfs::processes();
    let services = services
        .iter()
        .map(|(name, pid)| {
            let t = all
                .iter()
                .filter(|p| p.pid == *pid || p.ppid == *pid)
                .map(|p| p.ticks)
                .sum();
            (name.clone(), t)
        })
        .collect();
    // /proc/stat "cpu" line: user nice system idle iowait irq softirq steal …; busy = all but idle+iowait.
    let machine = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let v: Vec<u64> = s
                .lines()
                .next()?
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            Some(v.iter().sum::<u64>() - v.get(3)? - v.get(4)?)
        })
        .unwrap_or(0);
    CpuSample { services, machine }
}

/// CPU milliseconds per flow between two samples: each service, then the load generator's `generator`
/// CPU time, then "other", the rest of the machine's busy time.
pub fn cpu_per_flow(
    before: &CpuSample,
    after: &CpuSample,
    generator: Duration,
    flows: f64,
) -> Vec<ProcessCpu> {
    let hz = procfs::ticks_per_second();
    let per_flow = |ms: f64| ms / flows.max(1.0);
    let ms = |ticks: u64| ticks as f64 * 1000.0 / hz;
    let mut out = Vec::new();
    let mut services_ms = 0.0;
    for (name, t) in &after.services {
        let start = before
            .services
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, t)| *t);
        let used = ms(t.saturating_sub(start));
        services_ms += used;
        out.push(ProcessCpu {
            process: name.clone(),
            ms: per_flow(used),
        });
    }
    let generator = generator.as_secs_f64() * 1000.0;
    out.push(ProcessCpu {
        process: "generator".into(),
        ms: per_flow(generator),
    });
    let machine = ms(after.machine.saturating_sub(before.machine));
    out.push(ProcessCpu {
        process: "other".into(),
        ms: per_flow((machine - services_ms - generator).max(0.0)),
    });
    out
}

/// A k6 step from its summary.
pub fn judge(flow: Flow, rate: u32, r: &Value, p99_ms: u32) -> Step {
    let m = &r["metrics"];
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let latency: Vec<Latency> = [
        ("authorize", "payment_authorize_duration"),
        ("capture", "payment_capture_duration"),
        ("refund", "payment_refund_duration"),
    ]
    .iter()
    .filter(|(_, n)| m[*n].is_object())
    .map(|(s, n)| Latency {
        request: s.to_string(),
        // k6's trend summary has no count; the requests are in http_reqs.
        count: None,
        p50_ms: num(&m[*n]["med"]),
        p95_ms: num(&m[*n]["p(95)"]),
        p99_ms: num(&m[*n]["p(99)"]),
    })
    .collect();
    let error_pct = num(&m["payment_errors"]["value"]) * 100.0;
    let dropped = num(&m["dropped_iterations"]["count"]);
    Step {
        flow: flow.name().into(),
        driver: Driver::K6,
        rate,
        flows: num(&m["payment_flows_completed"]["count"]),
        achieved: num(&m["iterations"]["rate"]),
        requests_per_second: num(&m["http_reqs"]["rate"]),
        passed: sustained(&latency, error_pct, dropped, p99_ms),
        latency,
        error_pct,
        dropped,
        batches: None,
        cpu_per_flow: Vec::new(),
    }
}

/// A step of payctl's own driver.
pub fn judge_driver(flow: Flow, rate: u32, r: &DriverReport, p99_ms: u32) -> Step {
    let seconds = r.seconds.max(f64::MIN_POSITIVE);
    let error_pct = if r.requests == 0 {
        0.0
    } else {
        r.errors as f64 * 100.0 / r.requests as f64
    };
    let dropped = r.dropped as f64;
    Step {
        flow: flow.name().into(),
        driver: Driver::Builtin,
        rate,
        flows: r.completed as f64,
        // As k6's iterations rate: flows that ran to their end, failed ones too.
        achieved: (r.scheduled - r.dropped - r.unfinished) as f64 / seconds,
        requests_per_second: r.requests as f64 / seconds,
        passed: sustained(&r.latency, error_pct, dropped, p99_ms) && r.unfinished == 0,
        latency: r.latency.clone(),
        error_pct,
        dropped,
        batches: None,
        cpu_per_flow: Vec::new(),
    }
}

/// The API instances' (`Kind::Ingest`) shared commits between two scrapes `seconds` apart, from the
/// `payment_commit_batch_size` histogram (one observation per commit: the requests it carried).
pub fn batches(
    before: &[(String, Kind, Option<Vec<Sample>>)],
    after: &[(String, Kind, Option<Vec<Sample>>)],
    seconds: f64,
) -> Option<Batches> {
    let ingest = |v: &[(String, Kind, Option<Vec<Sample>>)]| -> Vec<Sample> {
        v.iter()
            .filter(|(_, k, _)| *k == Kind::Ingest)
            .filter_map(|(_, _, s)| s.clone())
            .flatten()
            .filter(|s| s.name.starts_with(BATCH))
            .collect()
    };
    let (b, a) = (ingest(before), ingest(after));
    let total = |samples: &[Sample], name: &str| -> Option<f64> {
        let found: Vec<f64> = samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .collect();
        (!found.is_empty()).then(|| found.iter().sum())
    };
    let commits =
        total(&a, &format!("{BATCH}_count"))? - total(&b, &format!("{BATCH}_count")).unwrap_or(0.0);
    let carried = total(&a, &format!("{BATCH}_sum")).unwrap_or(0.0)
        - total(&b, &format!("{BATCH}_sum")).unwrap_or(0.0);
    let bucket = format!("{BATCH}_bucket");
    // No batch is smaller than one request: the lowest bucket (le="1") starts at 1, not at 0 as
    // Prometheus assumes, or a run without any batching would read as "p50 0.5".
    let quantile = |q| quantile_between(&b, &a, &bucket, q, 1.0);
    Some(Batches {
        commits_per_second: (commits / seconds.max(f64::MIN_POSITIVE)).max(0.0),
        requests_committed: carried.max(0.0),
        mean: (commits > 0.0).then(|| carried / commits),
        p50: quantile(0.5),
        p99: quantile(0.99),
    })
}

/// The histogram pay-server observes once per shared commit.
const BATCH: &str = "payment_commit_batch_size";

pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::metrics::parse;

    /// One scrape: an API instance with the batch histogram at `counts` (cumulative, le 1, 2, 4, +Inf;
    /// `sum` requests) and a consumer whose metrics must not count.
    fn scrape(counts: [u32; 4], sum: u32) -> Vec<(String, Kind, Option<Vec<Sample>>)> {
        let les = ["1", "2", "4", "+Inf"];
        let mut text: String = les
            .iter()
            .zip(counts)
            .map(|(le, n)| format!("{BATCH}_bucket{{le=\"{le}\"}} {n}\n"))
            .collect();
        text += &format!("{BATCH}_sum {sum}\n{BATCH}_count {}\n", counts[3]);
        vec![
            ("ingest".into(), Kind::Ingest, Some(parse(&text))),
            (
                "consumer".into(),
                Kind::Consumer,
                Some(parse(&format!("{BATCH}_count 1000\n"))),
            ),
        ]
    }

    #[test]
    fn batches_are_the_api_histograms_change_over_the_step() {
        let before = scrape([5, 5, 5, 5], 5);
        // 100 commits in 10 s carrying 250 requests: 10 of one, 40 of two, 50 of three or four.
        let after = scrape([15, 55, 105, 105], 255);
        let b = batches(&before, &after, 10.0).unwrap();
        assert_eq!((b.commits_per_second, b.requests_committed), (10.0, 250.0));
        assert_eq!(b.mean, Some(2.5));
        // p50: rank 50 is the last of the (1, 2] bucket (10 + 40) → 2; p99: rank 99 is 49 into the
        // (2, 4] bucket's 50 → 3.96.
        assert!((b.p50.unwrap() - 2.0).abs() < 1e-9, "{b:?}");
        assert!(
            (b.p99.unwrap() - (2.0 + 2.0 * 49.0 / 50.0)).abs() < 1e-9,
            "{b:?}"
        );
        // A server without group commit exports no such histogram: no figures, no failure.
        let none = vec![(
            "ingest".to_string(),
            Kind::Ingest,
            Some(parse("http_requests_total 3\n")),
        )];
        assert!(batches(&none, &none, 10.0).is_none());
        // Nothing committed during the step: zero commits, no quantiles.
        let idle = batches(&after, &after, 10.0).unwrap();
        assert_eq!(
            (idle.commits_per_second, idle.mean, idle.p50),
            (0.0, None, None)
        );
    }

    #[test]
    fn generator_cpu_is_its_own_column_and_not_in_other() {
        let hz = procfs::ticks_per_second() as u64;
        let sample = |svc: u64, machine: u64| CpuSample {
            services: vec![("mariadb".into(), svc)],
            machine,
        };
        // One second of machine time: half MariaDB, 0.3 s the generator, the rest other; 100 flows.
        let cpu = cpu_per_flow(
            &sample(0, 0),
            &sample(hz / 2, hz),
            Duration::from_millis(300),
            100.0,
        );
        let by: Vec<(&str, f64)> = cpu.iter().map(|p| (p.process.as_str(), p.ms)).collect();
        assert_eq!(by.len(), 3, "{by:?}");
        assert_eq!(by[0].0, "mariadb");
        assert!((by[0].1 - 5.0).abs() < 0.2, "{by:?}");
        assert_eq!(by[1], ("generator", 3.0));
        assert_eq!(by[2].0, "other");
        assert!((by[2].1 - 2.0).abs() < 0.2, "{by:?}");
    }
}
