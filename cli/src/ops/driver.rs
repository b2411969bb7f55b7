//! A light open-model load driver inside payctl, for `payctl bench`'s step search: the figure of a step
//! should be the platform's capacity, not that of k6's JavaScript VUs, which on this two-core machine
//! take CPU the platform would otherwise have.
//!
//! Open model, as k6's `ramping-arrival-rate`: flows start on a fixed schedule whether or not earlier
//! ones have finished, so a slow server shows up as latency and dropped flows rather than as a lower
//! offered rate. The schedule is k6's too (a linear ramp from a tenth of the rate over a tenth of the
//! duration, then the rate for the duration), and so are the requests (`k6/payment-scenario.js`), so
//! that k6 at the same rate is a cross-check of the same thing. In flight is capped like k6's `maxVUs`;
//! a flow that cannot start because of the cap is counted as dropped, as k6's `dropped_iterations`.

use super::k6::Flow;
use rand::Rng;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// A request's limit; k6's default is 60 s, but a step with requests this slow has failed anyway.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the flows in flight at the end of the schedule may take to finish (three requests each).
const DRAIN: Duration = Duration::from_secs(3 * 30 + 5);

/// Latencies in microseconds with fixed memory, HDR-style: exact below 128 µs, above that 128
/// sub-buckets per power of two (under 0.8 % error), so a 60 s step at thousands of requests per
/// second costs a few kilobytes and no sorting.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Values up to 2^40 µs (12 days) are kept apart; larger ones land in the last bucket.
const MAX_EXP: u32 = 40;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; (SUB + u64::from(MAX_EXP - SUB_BITS + 1) * SUB) as usize],
            total: 0,
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let exp = (63 - v.leading_zeros()).min(MAX_EXP);
        let v = v.min((1 << (MAX_EXP + 1)) - 1);
        let mantissa = v >> (exp - SUB_BITS); // in [SUB, 2 SUB)
        (SUB + u64::from(exp - SUB_BITS) * SUB + (mantissa - SUB)) as usize
    }

    /// The highest value that lands in bucket `i` (what HDR reports: a quantile is never understated).
    fn highest(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let exp = (i - SUB) / SUB + u64::from(SUB_BITS);
        let mantissa = (i - SUB) % SUB + SUB;
        ((mantissa + 1) << (exp - u64::from(SUB_BITS))) - 1
    }

    pub fn record(&mut self, micros: u64) {
        self.counts[Self::index(micros)] += 1;
        self.total += 1;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0–1) in microseconds: the smallest bucket holding at least
    /// ⌈q × count⌉ values (at least one), as HDR's valueAtPercentile; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::highest(i);
            }
        }
        Self::highest(self.counts.len() - 1)
    }
}

/// When the flows start: k6's ramping-arrival-rate with the stages `payctl load` gives it.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Rate at the start of the ramp, and the target, per second.
    from: f64,
    to: f64,
    ramp: f64,
    hold: f64,
}

impl Schedule {
    /// The ramp is a tenth of `hold` (at least one second) from a tenth of `rate`, as `run_k6` sets k6.
    pub fn new(rate: u32, hold: Duration) -> Schedule {
        let to = f64::from(rate.max(1));
        Schedule {
            from: (to / 10.0).floor().max(1.0),
            to,
            // run_k6 gives k6 whole seconds: the duration rounded up, a tenth of it rounded down.
            ramp: ((hold.as_secs_f64().ceil() as u64) / 10).max(1) as f64,
            hold: hold.as_secs_f64(),
        }
    }

    /// Flows due in the first `t` seconds.
    fn due(&self, t: f64) -> f64 {
        let r = t.min(self.ramp);
        let ramped = self.from * r + (self.to - self.from) * r * r / (2.0 * self.ramp);
        ramped + self.to * (t - self.ramp).clamp(0.0, self.hold)
    }

    /// Flows in the whole schedule.
    pub fn total(&self) -> u64 {
        // The small epsilon keeps 27.999999 from losing a flow to rounding.
        (self.due(self.ramp + self.hold) + 1e-9).floor() as u64
    }

    /// When flow `n` (from 0) starts, in seconds: the time its cumulative count reaches n + 1.
    pub fn start(&self, n: u64) -> f64 {
        let n = n as f64 + 1.0;
        let at_ramp_end = self.due(self.ramp);
        if n <= at_ramp_end {
            let a = (self.to - self.from) / (2.0 * self.ramp);
            if a <= 0.0 {
                return n / self.from;
            }
            let b = self.from;
            (-b + (b * b + 4.0 * a * n).sqrt()) / (2.0 * a)
        } else {
            self.ramp + (n - at_ramp_end) / self.to
        }
    }

    pub fn seconds(&self) -> f64 {
        self.ramp + self.hold
    }
}

/// One run of the driver.
pub struct DriverRun<'a> {
    pub api_url: &'a str,
    pub keys: &'a [String],
    pub flow: Flow,
    pub rate: u32,
    pub duration: Duration,
    /// Flows in flight at most (k6's maxVUs for the same rate when `None`).
    pub max_in_flight: Option<usize>,
}

/// Latency of one kind of request, in milliseconds.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub request: String,
    /// Requests measured (k6's summary does not say).
    pub count: Option<u64>,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverReport {
    /// Flows the schedule had.
    pub scheduled: u64,
    /// Flows that could not start because `max_in_flight` were in flight.
    pub dropped: u64,
    /// Flows whose every request answered 200.
    pub completed: u64,
    /// Flows still in flight when the wait for them ended (a request hanging past its timeout).
    pub unfinished: u64,
    pub requests: u64,
    /// Requests answered with anything but 200, or not answered (transport error, timeout).
    pub errors: u64,
    /// Errors by status ("none" when there was no answer), for a first look at why.
    pub errors_by_status: Vec<(String, u64)>,
    /// From the first start to the last answer (k6's iterations rate divides by the same).
    pub seconds: f64,
    pub latency: Vec<Latency>,
}

/// The request kinds of a flow, in order.
const REQUESTS: [&str; 3] = ["authorize", "capture", "refund"];

struct Shared {
    client: reqwest::Client,
    base: String,
    keys: Vec<String>,
    flow: Flow,
    latency: [Mutex<Histogram>; 3],
    requests: AtomicU64,
    errors: AtomicU64,
    completed: AtomicU64,
    ended: AtomicU64,
    errors_by_status: Mutex<Vec<(String, u64)>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Authorized {
    payment_id: String,
}

impl Shared {
    /// One POST; its latency is recorded, and its body returned when it answered 200.
    async fn post(
        &self,
        kind: usize,
        path: &str,
        key: &str,
        idempotency_key: Option<&str>,
        body: String,
    ) -> Option<Vec<u8>> {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {key}"))
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let started = Instant::now();
        // The whole body is read: a connection goes back to the pool only once its answer is consumed.
        let answer = async {
            let res = req.send().await?;
            let status = res.status();
            let body = res.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        }
        .await;
        let micros = started.elapsed().as_micros() as u64;
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut h) = self.latency[kind].lock() {
            h.record(micros);
        }
        match answer {
            Ok((status, body)) if status == reqwest::StatusCode::OK => Some(body.to_vec()),
            other => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let why = other.map_or_else(|_| "none".to_owned(), |(s, _)| s.as_u16().to_string());
                if let Ok(mut by) = self.errors_by_status.lock() {
                    match by.iter_mut().find(|(s, _)| *s == why) {
                        Some((_, n)) => *n += 1,
                        None => by.push((why, 1)),
                    }
                }
                None
            }
        }
    }

    /// One flow, with k6's requests: the same bodies and headers, a random merchant, and an
    /// Idempotency-Key shaped like k6's (`drv-` instead of `k6-`, so the origin shows in the database).
    async fn flow(&self, n: u64) {
        let (key, amount, nonce) = {
            let mut rng = rand::thread_rng();
            (
                &self.keys[rng.gen_range(0..self.keys.len())],
                rng.gen_range(1..=50u64) * 1000,
                rng.gen_range(0..36u64.pow(6)),
            )
        };
        let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let idempotency_key = format!("drv-{n}-{millis}-{}", base36(nonce));
        let Some(body) = self
            .post(
                0,
                "/payments/authorize",
                key,
                Some(&idempotency_key),
                format!(r#"{{"amount":{amount},"currency":"KRW"}}"#),
            )
            .await
        else {
            return;
        };
        if matches!(self.flow, Flow::Authorize) {
            self.completed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Ok(Authorized { payment_id: id }) = serde_json::from_slice(&body) else {
            // A 200 without a payment id is the server's error, not a flow.
            self.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let capture = format!("/payments/capture/{id}");
        if self
            .post(1, &capture, key, None, "{}".into())
            .await
            .is_none()
        {
            return;
        }
        if matches!(self.flow, Flow::Capture) {
            self.completed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let refund = format!(
            r#"{{"amount":{},"reason":"k6 partial refund"}}"#,
            amount / 2
        );
        let path = format!("/payments/refund/{id}");
        if self.post(2, &path, key, None, refund).await.is_some() {
            self.completed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn base36(mut n: u64) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; 6];
    for d in out.iter_mut().rev() {
        *d = digits[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// k6's maxVUs in `k6/payment-scenario.js` for this rate: the same cap, so both drop at the same point.
pub fn k6_max_vus(rate: u32) -> usize {
    (rate as usize * 2).clamp(100, 2000)
}

/// Runs the schedule against the API, with a progress bar on stderr.
pub async fn drive(run: &DriverRun<'_>) -> anyhow::Result<DriverReport> {
    anyhow::ensure!(!run.keys.is_empty(), "no merchant API keys to drive with");
    let cap = run.max_in_flight.unwrap_or_else(|| k6_max_vus(run.rate));
    let client = reqwest::Client::builder()
        // Keep-alive: every connection opened under load stays for the next flow.
        .pool_max_idle_per_host(cap)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let shared = Arc::new(Shared {
        client,
        base: run.api_url.trim_end_matches('/').to_owned(),
        keys: run.keys.to_vec(),
        flow: run.flow,
        latency: Default::default(),
        requests: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        ended: AtomicU64::new(0),
        errors_by_status: Mutex::new(Vec::new()),
    });
    let permits = Arc::new(Semaphore::new(cap));
    let schedule = Schedule::new(run.rate, run.duration);
    let total = schedule.total();

    let bar = indicatif::ProgressBar::new(schedule.seconds().ceil() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("driver {msg} [{bar:30}] {pos}/{len} s")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{} at {}/s", run.flow.name(), run.rate));

    let started = Instant::now();
    let mut n = 0;
    let mut dropped = 0;
    while n < total {
        tokio::time::sleep_until(started + Duration::from_secs_f64(schedule.start(n))).await;
        // The timer wakes at millisecond granularity: start every flow that is due by now.
        let now = started.elapsed().as_secs_f64();
        while n < total && schedule.start(n) <= now {
            match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        shared.flow(n).await;
                        shared.ended.fetch_add(1, Ordering::Relaxed);
                        drop(permit);
                    });
                }
                Err(_) => dropped += 1,
            }
            n += 1;
        }
        bar.set_position(now as u64);
    }
    // Every permit back means every flow has finished: no polling, no sleeps.
    let drained = tokio::time::timeout(DRAIN, permits.acquire_many(cap as u32))
        .await
        .is_ok();
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if !drained {
        eprintln!(
            "driver: flows still in flight {} s after the schedule ended; counted as not completed",
            DRAIN.as_secs()
        );
    }

    let requests = match run.flow {
        Flow::Authorize => 1,
        Flow::Capture => 2,
        Flow::Full => 3,
    };
    let latency = REQUESTS[..requests]
        .iter()
        .zip(&shared.latency)
        .map(|(name, h)| {
            let h = h.lock().map(|h| h.clone()).unwrap_or_default();
            let ms = |q| h.quantile(q) as f64 / 1000.0;
            Latency {
                request: (*name).to_owned(),
                count: Some(h.count()),
                p50_ms: ms(0.5),
                p95_ms: ms(0.95),
                p99_ms: ms(0.99),
            }
        })
        .collect();
    let errors_by_status = shared
        .errors_by_status
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    Ok(DriverReport {
        scheduled: total,
        dropped,
        completed: shared.completed.load(Ordering::Relaxed),
        unfinished: (total - dropped).saturating_sub(shared.ended.load(Ordering::Relaxed)),
        requests: shared.requests.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        errors_by_status,
        seconds,
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_one_percent_and_never_below() {
        let mut h = Histogram::default();
        // 1 ms … 100 ms, one of each microsecond value in steps of 10 µs.
        let values: Vec<u64> = (100..=10_000).map(|i| i * 10).collect();
        for &v in &values {
            h.record(v);
        }
        assert_eq!(h.count(), values.len() as u64);
        for q in [0.5, 0.95, 0.99, 1.0] {
            let exact = values[((q * values.len() as f64).ceil() as usize).max(1) - 1];
            let got = h.quantile(q);
            assert!(
                got >= exact && (got - exact) as f64 <= exact as f64 * 0.008,
                "q {q}: {got} against {exact}"
            );
        }
        // Small values are exact; an empty histogram says 0.
        let mut small = Histogram::default();
        for v in [3, 5, 7, 9] {
            small.record(v);
        }
        assert_eq!((small.quantile(0.5), small.quantile(1.0)), (5, 9));
        assert_eq!(Histogram::default().quantile(0.99), 0);
        // Every value lands in a bucket whose range holds it.
        for v in [0, 127, 128, 129, 255, 256, 1_000_003, u64::from(u32::MAX)] {
            let i = Histogram::index(v);
            assert!(Histogram::highest(i) >= v, "{v}");
            assert!(i == 0 || Histogram::highest(i - 1) < v, "{v}");
        }
    }

    #[test]
    fn schedule_ramps_then_holds_like_k6() {
        // 50/s for 2 s: a 1 s ramp from 5/s to 50/s (27.5 flows), then 100 flows.
        let s = Schedule::new(50, Duration::from_secs(2));
        assert_eq!(s.total(), 127);
        assert!((s.seconds() - 3.0).abs() < 1e-9);
        let starts: Vec<f64> = (0..s.total()).map(|n| s.start(n)).collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
        assert!(starts[0] > 0.0 && *starts.last().unwrap() <= 3.0 + 1e-9);
        // Each start is where the cumulative count reaches its number.
        for (n, t) in starts.iter().enumerate() {
            assert!((s.due(*t) - (n as f64 + 1.0)).abs() < 1e-6, "{n} at {t}");
        }
        // In the hold, flows are 1/rate apart.
        assert!((starts[100] - starts[99] - 0.02).abs() < 1e-9);
        // A 60 s step at 1000/s: 6 s ramp from 100/s (3,300 flows) and 60,000 at the rate.
        assert_eq!(Schedule::new(1000, Duration::from_secs(60)).total(), 63_300);
    }

    #[test]
    fn in_flight_cap_is_k6s_max_vus() {
        assert_eq!([10, 300, 5000].map(k6_max_vus), [100, 600, 2000]);
        assert_eq!(base36(35), "00000z");
        assert_eq!(base36(36u64.pow(6) - 1), "zzzzzz");
    }

    /// A stand-in API on a free port: answers every request (HTTP/1.1, keep-alive) after `delay` with
    /// `status` and a payment id; returns its base URL.
    async fn stand_in(status: u16, delay: Duration) -> String {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = socket.into_split();
                    let mut r = tokio::io::BufReader::new(r);
                    loop {
                        let mut length = 0;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; length];
                        r.read_exact(&mut body).await.unwrap();
                        tokio::time::sleep(delay).await;
                        let body = r#"{"paymentId":"p-1","status":"AUTHORIZED"}"#;
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if w.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    static KEYS: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| vec!["sk_a".into(), "sk_b".into()]);

    /// One second at `rate` (after k6's one-second ramp) against `url`.
    fn run(url: &str, flow: Flow, rate: u32, max_in_flight: Option<usize>) -> DriverRun<'_> {
        DriverRun {
            api_url: url,
            keys: &KEYS,
            flow,
            rate,
            duration: Duration::from_secs(1),
            max_in_flight,
        }
    }

    #[tokio::test]
    async fn every_scheduled_flow_runs_its_three_requests() {
        let url = stand_in(200, Duration::ZERO).await;
        let r = drive(&run(&url, Flow::Full, 100, None)).await.unwrap();
        // 100/s for 1 s after a 1 s ramp from 10/s: 55 + 100 flows.
        assert_eq!(
            (
                r.scheduled,
                r.completed,
                r.requests,
                r.errors,
                r.dropped,
                r.unfinished
            ),
            (155, 155, 465, 0, 0, 0),
            "{r:?}"
        );
        let counts: Vec<Option<u64>> = r.latency.iter().map(|l| l.count).collect();
        assert_eq!(counts, [Some(155); 3]);
        // The schedule's 2 s, and not much more: nothing waited for anything but the clock.
        assert!((2.0..3.5).contains(&r.seconds), "{r:?}");
    }

    #[tokio::test]
    async fn flows_due_while_the_cap_is_in_flight_are_dropped_not_delayed() {
        // Each answer takes 400 ms and 5 may be in flight: about 12 flows a second can start.
        let url = stand_in(200, Duration::from_millis(400)).await;
        let r = drive(&run(&url, Flow::Authorize, 100, Some(5)))
            .await
            .unwrap();
        assert_eq!(r.completed + r.dropped, r.scheduled, "{r:?}");
        assert!(r.dropped > 100 && r.completed >= 10, "{r:?}");
        assert_eq!(r.errors, 0, "{r:?}");
    }

    #[tokio::test]
    async fn answers_other_than_200_are_errors_counted_by_status() {
        let url = stand_in(503, Duration::ZERO).await;
        let r = drive(&run(&url, Flow::Full, 20, None)).await.unwrap();
        // A flow stops at its first failed request, as k6's does: only authorizes were sent.
        assert_eq!(r.scheduled, 31, "{r:?}");
        assert_eq!((r.completed, r.requests, r.errors), (0, 31, 31), "{r:?}");
        assert_eq!(r.errors_by_status, [("503".to_string(), 31)]);
        let counts: Vec<Option<u64>> = r.latency.iter().map(|l| l.count).collect();
        assert_eq!(counts, [Some(31), Some(0), Some(0)]);
    }
}
