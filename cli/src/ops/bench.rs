//! `payctl bench`'s measurements: the database's own limit (an authorize's writes straight to MariaDB),
//! the broker's alone, CPU time per service from /proc, a k6 step judged against its limits, and peak
//! RSS.

use super::procfs;
use crate::stack::Ports;
use pay_server::idempotency::{self, Keyed, SavedResponse};
use pay_server::storage::{self, PaymentRecord};
use payctl_domain::{
    EventId, EventType, IdempotencyKey, MerchantId, PaymentEvent, PaymentId, PaymentStatus,
    EVENT_SCHEMA_VERSION,
};
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

pub struct Step {
    pub rate: u32,
    pub achieved: f64,
    pub p99: Vec<(String, f64)>,
    pub error_pct: f64,
    pub dropped: f64,
    pub passed: bool,
    /// CPU milliseconds per flow, by service, then "other" (k6, the kernel, everything else).
    pub cpu_per_flow: Vec<(String, f64)>,
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

/// CPU milliseconds per flow between two samples.
pub fn cpu_per_flow(before: &CpuSample, after: &CpuSample, flows: f64) -> Vec<(String, f64)> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ms = |ticks: u64| ticks as f64 * 1000.0 / hz / flows.max(1.0);
    let mut out = Vec::new();
    let mut services_total = 0;
    for (name, t) in &after.services {
        let start = before
            .services
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, t)| *t);
        let used = t.saturating_sub(start);
        services_total += used;
        out.push((name.clone(), ms(used)));
    }
    let machine = after.machine.saturating_sub(before.machine);
    out.push(("other".into(), ms(machine.saturating_sub(services_total))));
    out
}

pub fn judge(rate: u32, r: &Value, p99_ms: u32) -> Step {
    let m = &r["metrics"];
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let p99: Vec<(String, f64)> = [
        ("authorize", "payment_authorize_duration"),
        ("capture", "payment_capture_duration"),
        ("refund", "payment_refund_duration"),
    ]
    .iter()
    .filter(|(_, n)| m[*n].is_object())
    .map(|(s, n)| (s.to_string(), num(&m[*n]["p(99)"])))
    .collect();
    let error_pct = num(&m["payment_errors"]["value"]) * 100.0;
    let dropped = num(&m["dropped_iterations"]["count"]);
    Step {
        rate,
        achieved: num(&m["iterations"]["rate"]),
        passed: p99.iter().all(|(_, v)| *v <= f64::from(p99_ms))
            && error_pct < 0.1
            && dropped == 0.0,
        p99,
        error_pct,
        dropped,
        cpu_per_flow: Vec::new(),
    }
}

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
