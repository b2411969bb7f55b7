//! The load of a chaos run: an open model of careful merchants.
//!
//! Flows start on a fixed schedule (`rate` a second) whether or not earlier ones finished — an outage
//! piles work up as it would in production. Each operation has its own idempotency key and is retried
//! with that same key when there is no answer, a 5xx, a 429 or a 409 that says "in progress / locked",
//! until an answer comes or its deadline passes. Every answer is recorded, so the verdict can compare
//! the platform with what each client was told.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A merchant the load pays as.
#[derive(Debug, Clone)]
pub struct Merchant {
    pub id: String,
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Flow {
    /// One authorize per flow.
    Authorize,
    /// authorize → capture → partial refund.
    Full,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The API's base URL (e.g. the gateway's `/api`).
    pub api_url: String,
    pub merchants: Vec<Merchant>,
    /// Flows started per second.
    pub rate: u32,
    pub duration: Duration,
    pub flow: Flow,
    /// Amounts and merchants per flow come from it; keys also carry `run` so two runs never share one.
    pub seed: u64,
    pub run: String,
    /// Flows that may be unfinished at once; a flow due beyond it is dropped (and counted).
    pub max_in_flight: usize,
    /// One attempt's time limit, and how long one operation is retried before the client gives up.
    pub attempt_timeout: Duration,
    pub op_deadline: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Authorize,
    Capture,
    Refund,
}

/// An answer the client accepted as final: 200, or a refusal that retrying cannot change.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    /// Since the load started.
    pub at_ms: u64,
    pub op: Op,
    pub merchant: String,
    pub key: String,
    pub payment_id: Option<String>,
    /// What the client asked to move.
    pub amount: i64,
    pub status: u16,
    /// The error code of a refusal.
    pub code: Option<String>,
    /// The payment as the answer showed it (200 only).
    pub answered_amount: Option<i64>,
    pub answered_merchant: Option<String>,
    pub captured: Option<i64>,
    pub refunded: Option<i64>,
    pub replayed: bool,
    pub attempts: u32,
}

/// An operation the client gave up on without a final answer: it may or may not have happened.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GaveUp {
    pub op: Op,
    pub merchant: String,
    pub key: String,
    pub payment_id: Option<String>,
    pub amount: i64,
    pub attempts: u32,
    pub last_error: String,
}

/// Everything the load saw.
#[derive(Debug, Default)]
pub struct Record {
    pub answers: Vec<Answer>,
    pub gave_up: Vec<GaveUp>,
    pub flows_started: u64,
    pub dropped: u64,
    pub attempts: u64,
    /// Attempts by what came back: an HTTP status, or `none` for no answer.
    pub outcomes: BTreeMap<String, u64>,
    /// Milliseconds from first attempt to final answer, per answered operation.
    pub latencies_ms: Vec<f64>,
    pub took: Duration,
}

struct Shared {
    record: Mutex<Record>,
    attempts: AtomicU64,
    started: Instant,
}

impl Shared {
    fn outcome(&self, what: String) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut r) = self.record.lock() {
            *r.outcomes.entry(what).or_default() += 1;
        }
    }
}

/// Progress while the load runs, for a display.
#[derive(Clone)]
pub struct Progress {
    pub started: Arc<AtomicU64>,
    pub finished: Arc<AtomicU64>,
}

/// Runs the load to its end (and every flow to its answer or deadline) and returns what it saw.
pub async fn run(config: Config, progress: Progress) -> anyhow::Result<Record> {
    anyhow::ensure!(config.rate > 0, "the rate must be at least 1 flow a second");
    anyhow::ensure!(!config.merchants.is_empty(), "no merchants to pay as");
    let client = reqwest::Client::builder()
        .timeout(config.attempt_timeout)
        .pool_max_idle_per_host(256)
        .build()?;
    let shared = Arc::new(Shared {
        record: Mutex::new(Record::default()),
        attempts: AtomicU64::new(0),
        started: Instant::now(),
    });
    let config = Arc::new(config);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let total = u64::from(config.rate) * config.duration.as_secs().max(1);
    let interval = Duration::from_secs_f64(1.0 / f64::from(config.rate));
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(total as usize);
    let mut dropped = 0;
    for n in 0..total {
        // Open model: flow n starts at n / rate, late or not.
        let due = shared.started + interval * n as u32;
        tokio::time::sleep_until(due.into()).await;
        let merchant = config.merchants[rng.gen_range(0..config.merchants.len())].clone();
        let amount: i64 = rng.gen_range(1_000..=500_000);
        if in_flight.load(Ordering::Relaxed) as usize >= config.max_in_flight {
            dropped += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        progress.started.fetch_add(1, Ordering::Relaxed);
        let (client, config, shared, in_flight) = (
            client.clone(),
            config.clone(),
            shared.clone(),
            in_flight.clone(),
        );
        let finished = progress.finished.clone();
        tasks.push(tokio::spawn(async move {
            flow(&client, &config, &shared, n, &merchant, amount).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            finished.fetch_add(1, Ordering::Relaxed);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut record = shared
        .record
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    record.flows_started = total - dropped;
    record.dropped = dropped;
    record.attempts = shared.attempts.load(Ordering::Relaxed);
    record.took = shared.started.elapsed();
    record.answers.sort_by_key(|a| a.at_ms);
    Ok(record)
}

async fn flow(
    client: &reqwest::Client,
    config: &Config,
    shared: &Shared,
    n: u64,
    merchant: &Merchant,
    amount: i64,
) {
    let key = |op: &str| format!("chaos-{}-{n}-{op}", config.run);
    let Some(payment) = operation(
        client,
        config,
        shared,
        merchant,
        Op::Authorize,
        &key("authorize"),
        None,
        amount,
        json!({"amount": amount, "currency": "KRW"}),
    )
    .await
    else {
        return;
    };
    if config.flow == Flow::Authorize {
        return;
    }
    if operation(
        client,
        config,
        shared,
        merchant,
        Op::Capture,
        &key("capture"),
        Some(&payment),
        amount,
        json!({}),
    )
    .await
    .is_none()
    {
        return;
    }
    let part = (amount / 2).max(1);
    operation(
        client,
        config,
        shared,
        merchant,
        Op::Refund,
        &key("refund"),
        Some(&payment),
        part,
        json!({"amount": part, "reason": "chaos partial refund"}),
    )
    .await;
}

/// Whether an answer is worth waiting for with the same key.
fn retryable(status: u16, code: Option<&str>) -> bool {
    status >= 500
        || status == 429
        || (status == 409 && matches!(code, Some("IDEMPOTENCY_IN_PROGRESS" | "LOCK_TIMEOUT")))
}

/// One operation, retried with its key until a final answer or the deadline. Returns the payment id
/// when the answer was a 200.
#[allow(clippy::too_many_arguments)]
async fn operation(
    client: &reqwest::Client,
    config: &Config,
    shared: &Shared,
    merchant: &Merchant,
    op: Op,
    key: &str,
    payment: Option<&str>,
    amount: i64,
    body: Value,
) -> Option<String> {
    let url = match (op, payment) {
        (Op::Authorize, _) => format!("{}/payments/authorize", config.api_url),
        (Op::Capture, Some(p)) => format!("{}/payments/capture/{p}", config.api_url),
        (Op::Refund, Some(p)) => format!("{}/payments/refund/{p}", config.api_url),
        _ => return None,
    };
    let first = Instant::now();
    let mut attempts = 0;
    let mut backoff = Duration::from_millis(100);
    let last_error = loop {
        attempts += 1;
        let sent = client
            .post(&url)
            .bearer_auth(&merchant.key)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await;
        let mut wait = backoff;
        let error = match sent {
            Err(e) => {
                shared.outcome("none".into());
                format!("no answer: {e}")
            }
            Ok(res) => {
                let status = res.status().as_u16();
                shared.outcome(status.to_string());
                let replayed = res.headers().contains_key("idempotent-replayed");
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                // An answer cut off on the way, or not the API's JSON, is no answer: retry the key.
                let v: Option<Value> = match res.bytes().await {
                    Ok(bytes) => serde_json::from_slice(&bytes).ok(),
                    Err(_) => None,
                };
                let complete = v
                    .as_ref()
                    .is_some_and(|v| status != 200 || v["paymentId"].is_string());
                let v = v.unwrap_or(Value::Null);
                let code = v["code"].as_str().map(str::to_owned);
                if complete && !retryable(status, code.as_deref()) {
                    let payment_id = v["paymentId"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| payment.map(str::to_owned));
                    let answer = Answer {
                        at_ms: shared.started.elapsed().as_millis() as u64,
                        op,
                        merchant: merchant.id.clone(),
                        key: key.to_owned(),
                        payment_id: payment_id.clone(),
                        amount,
                        status,
                        code,
                        answered_amount: v["amount"].as_i64(),
                        answered_merchant: v["merchantId"].as_str().map(str::to_owned),
                        captured: v["capturedAmount"].as_i64(),
                        refunded: v["refundedAmount"].as_i64(),
                        replayed,
                        attempts,
                    };
                    if let Ok(mut r) = shared.record.lock() {
                        r.latencies_ms.push(first.elapsed().as_secs_f64() * 1000.0);
                        r.answers.push(answer);
                    }
                    return (status == 200).then_some(payment_id).flatten();
                }
                if let Some(s) = retry_after {
                    wait = wait.max(Duration::from_secs(s.min(5)));
                }
                format!("{status} {}", code.unwrap_or_default())
            }
        };
        if first.elapsed() + wait >= config.op_deadline {
            break error;
        }
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    };
    if let Ok(mut r) = shared.record.lock() {
        r.gave_up.push(GaveUp {
            op,
            merchant: merchant.id.clone(),
            key: key.to_owned(),
            payment_id: payment.map(str::to_owned),
            amount,
            attempts,
            last_error,
        });
    }
    None
}

/// The value at quantile `q` (0–1) of `values`, or 0 for none.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_that_may_change_are_retried() {
        for (status, code, retry) in [
            (503, Some("DATABASE_UNAVAILABLE"), true),
            (502, None, true),
            (429, Some("RATE_LIMIT_EXCEEDED"), true),
            (409, Some("IDEMPOTENCY_IN_PROGRESS"), true),
            (409, Some("LOCK_TIMEOUT"), true),
            (409, Some("INVALID_STATE"), false),
            (422, Some("IDEMPOTENCY_KEY_REUSED"), false),
            (400, Some("VALIDATION_FAILED"), false),
            (200, None, false),
        ] {
            assert_eq!(retryable(status, code), retry, "{status} {code:?}");
        }
    }

    #[test]
    fn quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 51.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.99), 0.0);
    }
}
