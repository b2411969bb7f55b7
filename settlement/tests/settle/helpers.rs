//! Harness for the settlement worker: real MariaDB and tansu (shared), the real pay-acquirer over HTTP
//! on its own SQLite file, a database and topic prefix per test, events produced straight to Kafka.

use pay_acquirer::startup::{AppState as AcquirerState, Application as Acquirer};
use pay_settlement::config::Config;
use pay_settlement::metrics::Metrics;
use pay_settlement::startup::App;
use payctl_breaker::CircuitBreaker;
use payctl_domain::{
    EventId, EventType, PaymentEvent, PaymentId, PaymentStatus, EVENT_SCHEMA_VERSION,
};
use payctl_stack::testing;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use sqlx::MySqlPool;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const MERCHANT: &str = "M-SETTLE";

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

pub struct Env {
    pub db: MySqlPool,
    pub db_url: String,
    pub bootstrap: String,
    pub prefix: String,
    pub producer: FutureProducer,
    pub acquirer: AcquirerHandle,
    pub http: reqwest::Client,
}

/// The real acquirer, served over HTTP on a port of its own, on a database file of its own.
pub struct AcquirerHandle {
    pub url: String,
    pub state: AcquirerState,
    token: CancellationToken,
    dir: PathBuf,
}

impl Drop for AcquirerHandle {
    fn drop(&mut self) {
        self.token.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh payments database (migrated, one merchant), topic prefix (topics created) and acquirer.
pub async fn env() -> Env {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let (port, bootstrap) = blocking(|| {
        let s = testing::shared(root())
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (s.mariadb.port(), s.tansu.bootstrap())
    })
    .await;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let root_url = format!("mysql://root@127.0.0.1:{port}/");
    let admin = MySqlPool::connect(&root_url).await.unwrap();
    let name = format!("s_{}", &unique[..16]);
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let db_url = format!("{root_url}{name}");
    let db = MySqlPool::connect(&db_url).await.unwrap();
    payctl_db::MIGRATOR.run(&db).await.unwrap();
    sqlx::query("INSERT INTO merchants (merchant_id, name, api_key_hash, api_key_prefix) VALUES (?, 'settlement tests', RANDOM_BYTES(32), 'sk_test')")
        .bind(MERCHANT)
        .execute(&db)
        .await
        .unwrap();
    let prefix = format!("{}.", &unique[..12]);
    let mut kafka =
        pay_server::config::Config::for_tests("mysql://unused", "redis://unused", &bootstrap).kafka;
    kafka.topic_prefix = prefix.clone();
    kafka.partitions = 2;
    pay_server::kafka::ensure_topics(&kafka).await.unwrap();
    let producer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let dir = root().join("acquirer-db").join(&unique);
    let acq_url = format!("sqlite://{}?mode=rwc", dir.join("acquirer.db").display());
    let app = Acquirer::build(pay_acquirer::config::Config::for_tests(&acq_url))
        .await
        .expect("the acquirer builds");
    let url = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    let token = app.shutdown_token();
    tokio::spawn(app.run());
    Env {
        db,
        db_url,
        bootstrap,
        prefix,
        producer,
        acquirer: AcquirerHandle {
            url,
            state,
            token,
            dir,
        },
        http: reqwest::Client::new(),
    }
}

pub struct Running {
    pub metrics: Arc<Metrics>,
    pub breaker: Arc<CircuitBreaker>,
    pub address: String,
    token: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Graceful stop; the worker's own result must be Ok.
    pub async fn stop(self) {
        self.token.cancel();
        self.handle
            .await
            .expect("the worker task does not panic")
            .expect("the worker stops cleanly");
    }

    /// Stops it as a crash would: every task dropped wherever it is, calls in flight cut off.
    pub async fn crash(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }

    pub fn metric(&self, name: &str) -> f64 {
        testing::metric_sum(&self.metrics.render(), name)
    }

    /// One sample, e.g. `settlement_acquirer_requests_total{outcome="settled"}`.
    pub fn sample(&self, name_and_labels: &str) -> f64 {
        self.metrics
            .render()
            .lines()
            .find(|l| l.starts_with(name_and_labels))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    }
}

impl Env {
    pub fn config(&self) -> Config {
        Config::for_tests(
            &self.db_url,
            &self.bootstrap,
            &self.prefix,
            &self.acquirer.url,
        )
    }

    pub async fn start(&self, config: Config) -> Running {
        let app = App::build(config).await.expect("worker builds");
        let address = format!("http://{}", app.local_addr());
        let metrics = app.metrics();
        let breaker = app.breaker();
        let token = app.shutdown_token();
        let handle = tokio::spawn(app.run());
        Running {
            metrics,
            breaker,
            address,
            token,
            handle,
        }
    }

    /// Changes the acquirer's latency ("a-b" ms) and failure rate at run time, as an operator would.
    pub async fn acquirer_settings(&self, latency_ms: &str, failure_rate: f64) {
        let r = self
            .http
            .put(format!("{}/v1/admin/settings", self.acquirer.url))
            .json(&json!({"latencyMs": latency_ms, "failureRate": failure_rate}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "settings: {}", r.status());
    }

    pub async fn acquirer_outage(&self, seconds: u64) {
        let r = self
            .http
            .post(format!("{}/v1/admin/outage", self.acquirer.url))
            .json(&json!({ "seconds": seconds }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "outage: {}", r.status());
    }

    /// The acquirer's rows: event id → (count, reference, fee, net), read from its own database.
    pub async fn acquirer_rows(&self) -> HashMap<String, (i64, String, i64, i64)> {
        let rows: Vec<(String, String, i64, i64)> =
            sqlx::query_as("SELECT event_id, reference, fee, net FROM acquirer_settlements")
                .fetch_all(&self.acquirer.state.db)
                .await
                .unwrap();
        let mut out: HashMap<String, (i64, String, i64, i64)> = HashMap::new();
        for (event, reference, fee, net) in rows {
            out.entry(event)
                .and_modify(|e| e.0 += 1)
                .or_insert((1, reference, fee, net));
        }
        out
    }

    /// Our records by event id.
    pub async fn records(&self) -> HashMap<String, Record> {
        type Row = (
            uuid::Uuid,
            String,
            u32,
            Option<String>,
            Option<i64>,
            Option<i64>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT event_id, status, attempts, acquirer_reference, fee, net FROM settlements",
        )
        .fetch_all(&self.db)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(e, status, attempts, reference, fee, net)| {
                (
                    e.hyphenated().to_string(),
                    Record {
                        status,
                        attempts,
                        reference,
                        fee,
                        net,
                    },
                )
            })
            .collect()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    pub async fn settled(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM settlements WHERE status = 'SETTLED'")
            .await
    }

    /// Puts events in the books as the ledger consumer would (its own `apply`, on a payment made for
    /// them): the worker settles only what the ledger holds.
    pub async fn book(&self, events: &[PaymentEvent]) {
        let mut payments: HashMap<PaymentId, (&str, &str, i64)> = HashMap::new();
        for e in events {
            let p = payments
                .entry(e.payment_id)
                .or_insert((&e.merchant_id, &e.currency, 0));
            p.2 = p.2.max(e.amount);
        }
        for (payment, (merchant, currency, amount)) in payments {
            sqlx::query("INSERT IGNORE INTO merchants (merchant_id, name, api_key_hash, api_key_prefix) VALUES (?, 'settlement tests', RANDOM_BYTES(32), 'sk_test')")
                .bind(merchant)
                .execute(&self.db)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO payments (payment_id, merchant_id, status, amount, captured_amount, currency, created_at, updated_at) \
                 VALUES (?, ?, 'CAPTURED', ?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6)) \
                 ON DUPLICATE KEY UPDATE amount = GREATEST(amount, VALUES(amount)), captured_amount = amount",
            )
            .bind(payment.as_uuid())
            .bind(merchant)
            .bind(amount)
            .bind(amount)
            .bind(currency)
            .execute(&self.db)
            .await
            .unwrap();
        }
        let outcome = pay_consumer::apply::apply(&self.db, events).await.unwrap();
        assert!(
            outcome.verdicts.iter().all(Option::is_none),
            "the ledger refused a test event: {:?}",
            outcome.verdicts
        );
        // The payment as the API would have left it, so the ledger's own invariants hold.
        for e in events {
            sqlx::query(
                "UPDATE payments p JOIN (SELECT payment_id, \
                   SUM(IF(event_type = 'PAYMENT_CAPTURED', amount, 0)) AS captured, \
                   SUM(IF(event_type = 'PAYMENT_REFUNDED', amount, 0)) AS refunded \
                   FROM ledger_entries WHERE payment_id = ? AND account = 'merchant_payable' GROUP BY payment_id) l \
                 ON l.payment_id = p.payment_id \
                 SET p.amount = GREATEST(p.amount, l.captured), p.captured_amount = l.captured, \
                   p.refunded_amount = l.refunded, \
                   p.status = CASE WHEN l.refunded = 0 THEN 'CAPTURED' WHEN l.refunded = l.captured THEN 'REFUNDED' \
                                   ELSE 'PARTIALLY_REFUNDED' END, \
                   p.updated_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND",
            )
            .bind(e.payment_id.as_uuid())
            .execute(&self.db)
            .await
            .unwrap();
        }
    }

    /// Every check of `reconcile` (the ledger's and settlement's) with nothing in flight: the names of
    /// those that fail, with their first violation. Two ledger checks are left out: events booked with
    /// [`Env::book`] come alone, without their authorization or outbox rows.
    pub async fn failing_checks(&self) -> Vec<String> {
        let mut checks = pay_consumer::invariants::check(&self.db, Duration::ZERO)
            .await
            .unwrap()
            .checks;
        checks.extend(
            pay_settlement::invariants::check(&self.db, Duration::ZERO)
                .await
                .unwrap(),
        );
        checks
            .into_iter()
            .filter(|c| {
                c.name
                    != "authorization hold equals authorized − captured − voided for every payment"
                    && c.name != "every ledger leg comes from a committed event"
            })
            .filter(|c| !c.violations.is_empty())
            .map(|c| format!("{}: {:?}", c.name, c.violations[0]))
            .collect()
    }

    /// Books the event (see [`Env::book`]) and produces it.
    pub async fn produce_with(&self, e: &PaymentEvent, headers: OwnedHeaders) {
        self.book(std::slice::from_ref(e)).await;
        self.produce_unbooked(e, headers).await;
    }

    /// Produces the event without putting it in the books.
    pub async fn produce_unbooked(&self, e: &PaymentEvent, headers: OwnedHeaders) {
        let topic = format!("{}{}", self.prefix, e.event_type.topic());
        let payload = serde_json::to_vec(e).unwrap();
        let key = e.payment_id.to_string();
        self.producer
            .send(
                FutureRecord::to(&topic)
                    .key(&key)
                    .payload(&payload)
                    .headers(headers),
                Timeout::After(Duration::from_secs(10)),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    pub async fn produce_raw(&self, base_topic: &str, payload: &[u8]) {
        let topic = format!("{}{}", self.prefix, base_topic);
        self.producer
            .send(
                FutureRecord::to(&topic).key("k").payload(payload),
                Timeout::After(Duration::from_secs(10)),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    pub async fn produce_all(&self, events: &[PaymentEvent]) {
        self.book(events).await;
        let sends = events
            .iter()
            .map(|e| self.produce_unbooked(e, OwnedHeaders::new()));
        futures::future::join_all(sends).await;
    }

    /// Produces the events without putting them in the books.
    pub async fn produce_all_unbooked(&self, events: &[PaymentEvent]) {
        let sends = events
            .iter()
            .map(|e| self.produce_unbooked(e, OwnedHeaders::new()));
        futures::future::join_all(sends).await;
    }

    /// Every message now on the DLQ topic.
    pub async fn dlq(&self) -> Vec<Value> {
        let bootstrap = self.bootstrap.clone();
        let topic = format!("{}payment.dlq", self.prefix);
        blocking(move || {
            pay_consumer::topics::read_to_end(&bootstrap, &topic, Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("reading {topic}: {e:#}"))
                .into_iter()
                .map(|r| serde_json::from_slice(&r.payload).unwrap())
                .collect()
        })
        .await
    }

    /// Sends a DLQ record's payload back to its original topic as `payctl dlq replay` does.
    pub async fn replay(&self, record: &Value) {
        let topic = record["originalTopic"].as_str().unwrap();
        let payload = record["payload"].as_str().unwrap();
        let key = record["key"].as_str().unwrap_or_default();
        let headers = OwnedHeaders::new().insert(Header {
            key: "replayedFrom",
            value: Some("payment.dlq:0:0"),
        });
        self.producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(payload)
                    .headers(headers),
                Timeout::After(Duration::from_secs(10)),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    /// `n` events: captures of fresh payments, every third a partial refund of the capture before it.
    pub fn events(&self, n: usize) -> Vec<PaymentEvent> {
        let mut out: Vec<PaymentEvent> = Vec::with_capacity(n);
        for i in 0..n {
            let e = match out.last() {
                Some(capture) if i % 3 == 2 => event(
                    EventType::PaymentRefunded,
                    capture.payment_id,
                    capture.amount / 2,
                ),
                _ => event(
                    EventType::PaymentCaptured,
                    PaymentId::new(),
                    1000 + i as i64,
                ),
            };
            out.push(e);
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub status: String,
    pub attempts: u32,
    pub reference: Option<String>,
    pub fee: Option<i64>,
    pub net: Option<i64>,
}

pub fn event(event_type: EventType, payment: PaymentId, amount: i64) -> PaymentEvent {
    PaymentEvent {
        event_id: EventId::new(),
        event_type,
        schema_version: EVENT_SCHEMA_VERSION,
        payment_id: payment,
        sequence: 2,
        merchant_id: MERCHANT.into(),
        amount,
        currency: "KRW".into(),
        occurred_at: time::OffsetDateTime::now_utc(),
        status: PaymentStatus::Captured,
        authorized_amount: amount,
        captured_amount: amount,
        refunded_amount: 0,
        voided_amount: 0,
        reason: None,
    }
}

/// Every event settled exactly once: one acquirer row per event id and none other, and our record of
/// each SETTLED with the acquirer's reference, fee and net.
pub async fn assert_settled_exactly_once(env: &Env, events: &[PaymentEvent]) {
    let acquirer = env.acquirer_rows().await;
    let records = env.records().await;
    assert_eq!(
        records.len(),
        events.len(),
        "one record per event, no duplicates"
    );
    assert_eq!(
        acquirer.len(),
        events.len(),
        "the acquirer settled exactly our events"
    );
    for e in events {
        let id = e.event_id.to_string();
        let (count, reference, fee, net) = acquirer
            .get(&id)
            .unwrap_or_else(|| panic!("the acquirer never settled {id}"));
        assert_eq!(*count, 1, "event {id} settled {count} times");
        let r = &records[&id];
        assert_eq!(r.status, "SETTLED", "{id}: {r:?}");
        assert_eq!(r.reference.as_deref(), Some(reference.as_str()), "{id}");
        assert_eq!(r.fee, Some(*fee), "{id}");
        assert_eq!(r.net, Some(*net), "{id}");
    }
}

/// A pass-through in front of the real acquirer that, while `failing`, answers every
/// `POST /v1/settlements` 503 *without* forwarding it (nothing is settled: the acquirer's own injected
/// failures may commit first, and the worker then finds the settlement by lookup); every other request,
/// the lookup included, always goes through.
pub struct FailingProxy {
    pub url: String,
    pub failing: Arc<std::sync::atomic::AtomicBool>,
    token: CancellationToken,
}

impl Drop for FailingProxy {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl FailingProxy {
    pub fn set_failing(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Env {
    pub async fn failing_proxy(&self) -> FailingProxy {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, StatusCode, Uri};
        use axum::response::{IntoResponse, Response};
        #[derive(Clone)]
        struct State {
            target: String,
            http: reqwest::Client,
            failing: Arc<std::sync::atomic::AtomicBool>,
        }
        async fn forward(
            axum::extract::State(s): axum::extract::State<State>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            if method == Method::POST
                && uri.path() == "/v1/settlements"
                && s.failing.load(std::sync::atomic::Ordering::SeqCst)
            {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("content-type", "application/json")],
                    r#"{"code":"acquirer_unavailable","message":"injected by the test proxy"}"#,
                )
                    .into_response();
            }
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            let mut request = s
                .http
                .request(method, format!("{}{path}", s.target))
                .body(body);
            for (name, value) in &headers {
                if name != "host" && name != "content-length" {
                    request = request.header(name, value);
                }
            }
            let answer = request.send().await.unwrap();
            let status = answer.status();
            let mut out = HeaderMap::new();
            for (name, value) in answer.headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    out.insert(name.clone(), value.clone());
                }
            }
            let body = answer.bytes().await.unwrap();
            (status, out, body).into_response()
        }
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let app = axum::Router::new().fallback(forward).with_state(State {
            target: self.acquirer.url.clone(),
            http: reqwest::Client::new(),
            failing: failing.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let token = CancellationToken::new();
        let stop = token.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        FailingProxy {
            url,
            failing,
            token,
        }
    }
}
