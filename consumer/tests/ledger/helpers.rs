//! Harness for the consumer: real MariaDB and tansu (shared, or private for outage tests), a database and
//! topic prefix per test, payments written straight into the schema, events produced straight to Kafka.

use pay_consumer::config::Config;
use pay_consumer::metrics::Metrics;
use pay_consumer::startup::App;
use payctl_domain::{
    EventId, EventType, PaymentEvent, PaymentId, PaymentStatus, EVENT_SCHEMA_VERSION,
};
use payctl_stack::testing::{self, Services};

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use serde_json::Value;
use sqlx::MySqlPool;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const MERCHANT: &str = "M-LEDGER";

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
}

/// A fresh database (migrated) and topic prefix (topics created) on the shared services.
pub async fn env() -> Env {
    let (port, bootstrap) = blocking(|| {
        let s = testing::shared(root())
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (s.mariadb.port(), s.tansu.bootstrap())
    })
    .await;
    env_on(port, &bootstrap).await
}

/// Private services the test may stop, and an env on them.
pub async fn dedicated() -> (Env, Services) {
    let services = blocking(|| {
        Services::start(root(), &uuid::Uuid::new_v4().simple().to_string()).expect("services")
    })
    .await;
    let env = env_on(services.mariadb.port(), &services.tansu.bootstrap()).await;
    (env, services)
}

pub async fn env_on(mariadb_port: u16, bootstrap: &str) -> Env {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let root_url = format!("mysql://root@127.0.0.1:{mariadb_port}/");
    let admin = MySqlPool::connect(&root_url).await.unwrap();
    let name = format!("l_{}", &unique[..16]);
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let db_url = format!("{root_url}{name}");
    let db = MySqlPool::connect(&db_url).await.unwrap();
    payctl_db::MIGRATOR.run(&db).await.unwrap();
    sqlx::query("INSERT INTO merchants (merchant_id, name, api_key_hash, api_key_prefix) VALUES (?, 'ledger tests', RANDOM_BYTES(32), 'sk_test')")
        .bind(MERCHANT)
        .execute(&db)
        .await
        .unwrap();
    let prefix = format!("{}.", &unique[..12]);
    let mut kafka =
        pay_server::config::Config::for_tests("mysql://unused", "redis://unused", bootstrap).kafka;
    kafka.topic_prefix = prefix.clone();
    kafka.partitions = 2;
    pay_server::kafka::ensure_topics(&kafka).await.unwrap();
    let producer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    Env {
        db,
        db_url,
        bootstrap: bootstrap.to_owned(),
        prefix,
        producer,
    }
}

pub struct Running {
    pub metrics: Arc<Metrics>,
    pub address: String,
    token: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn stop(self) {
        self.token.cancel();
        let _ = self.handle.await;
    }

    pub fn metric(&self, name: &str) -> f64 {
        payctl_stack::testing::metric_sum(&self.metrics.render(), name)
    }
}

impl Env {
    pub fn config(&self) -> Config {
        Config::for_tests(&self.db_url, &self.bootstrap, &self.prefix)
    }

    pub async fn start_consumer(&self) -> Running {
        self.start_consumer_with(self.config()).await
    }

    /// A consumer with a changed configuration (e.g. another database user).
    pub async fn start_consumer_with(&self, config: Config) -> Running {
        let app = App::build(config).await.expect("consumer builds");
        let address = format!("http://{}", app.local_addr());
        let metrics = app.metrics();
        let token = app.shutdown_token();
        let handle = tokio::spawn(app.run());
        Running {
            metrics,
            address,
            token,
            handle,
        }
    }

    /// A payment row as the ingest service would have left it.
    pub async fn payment(
        &self,
        amount: i64,
        captured: i64,
        refunded: i64,
        status: PaymentStatus,
    ) -> PaymentId {
        let id = PaymentId::new();
        self.payment_with_id(id, amount, captured, refunded, status)
            .await;
        id
    }

    /// A payment row with a given id (e.g. one an event already named).
    pub async fn payment_with_id(
        &self,
        id: PaymentId,
        amount: i64,
        captured: i64,
        refunded: i64,
        status: PaymentStatus,
    ) {
        sqlx::query(
            "INSERT INTO payments (payment_id, merchant_id, status, amount, captured_amount, refunded_amount, \
             voided_amount, currency, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'KRW', \
             UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE, UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE)",
        )
        .bind(id.as_uuid())
        .bind(MERCHANT)
        .bind(status.as_str())
        .bind(amount)
        .bind(captured)
        .bind(refunded)
        .bind(if status == PaymentStatus::Voided { amount } else { 0 })
        .execute(&self.db)
        .await
        .unwrap();
    }

    /// Many AUTHORIZED payments at once.
    pub async fn payments(&self, n: usize, amount: i64) -> Vec<PaymentId> {
        let ids: Vec<PaymentId> = (0..n).map(|_| PaymentId::new()).collect();
        for chunk in ids.chunks(1000) {
            let mut sql = String::from(
                "INSERT INTO payments (payment_id, merchant_id, status, amount, currency, created_at, updated_at) VALUES ",
            );
            sql.push_str(
                &vec![
                    "(?, ?, 'AUTHORIZED', ?, 'KRW', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))";
                    chunk.len()
                ]
                .join(","),
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.as_uuid()).bind(MERCHANT).bind(amount);
            }
            q.execute(&self.db).await.unwrap();
        }
        ids
    }

    /// Records the event in the outbox as published, as the relay would have.
    pub async fn outbox(&self, e: &PaymentEvent) {
        sqlx::query(
            "INSERT INTO outbox_events (event_id, payment_id, event_type, payload, created_at, published_at) \
             VALUES (?, ?, ?, ?, UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE, UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE)",
        )
        .bind(e.event_id.as_uuid())
        .bind(e.payment_id.as_uuid())
        .bind(e.event_type.as_str())
        .bind(serde_json::to_string(e).unwrap())
        .execute(&self.db)
        .await
        .unwrap();
    }

    pub async fn produce_raw(&self, base_topic: &str, key: &str, payload: &[u8]) {
        let topic = format!("{}{}", self.prefix, base_topic);
        self.producer
            .send(
                FutureRecord::to(&topic).key(key).payload(payload),
                Timeout::After(Duration::from_secs(5)),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    pub async fn produce(&self, e: &PaymentEvent) {
        let payload = serde_json::to_vec(e).unwrap();
        self.produce_raw(e.event_type.topic(), &e.payment_id.to_string(), &payload)
            .await;
    }

    pub async fn produce_all(&self, events: &[PaymentEvent]) {
        let payloads: Vec<(String, String, Vec<u8>)> = events
            .iter()
            .map(|e| {
                (
                    format!("{}{}", self.prefix, e.event_type.topic()),
                    e.payment_id.to_string(),
                    serde_json::to_vec(e).unwrap(),
                )
            })
            .collect();
        for chunk in payloads.chunks(1000) {
            let sends = chunk.iter().map(|(t, k, p)| {
                self.producer.send(
                    FutureRecord::to(t).key(k).payload(p),
                    Timeout::After(Duration::from_secs(10)),
                )
            });
            for r in futures::future::join_all(sends).await {
                r.map_err(|(e, _)| e).unwrap();
            }
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// The name of this test's database.
    pub fn database(&self) -> &str {
        self.db_url.rsplit('/').next().unwrap_or_default()
    }

    pub async fn legs(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM ledger_entries").await
    }

    pub async fn eventually<F, Fut>(&self, what: &str, timeout: Duration, condition: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        payctl_stack::testing::eventually(what, timeout, condition).await
    }

    /// Every message now on the DLQ topic.
    pub async fn dlq(&self) -> Vec<Value> {
        let bootstrap = self.bootstrap.clone();
        let topic = format!("{}payment.dlq", self.prefix);
        blocking(move || read_all(&bootstrap, &topic)).await
    }
}

pub fn event(event_type: EventType, payment: PaymentId, amount: i64) -> PaymentEvent {
    PaymentEvent {
        event_id: EventId::new(),
        event_type,
        schema_version: EVENT_SCHEMA_VERSION,
        payment_id: payment,
        sequence: 1,
        merchant_id: MERCHANT.into(),
        amount,
        currency: "KRW".into(),
        occurred_at: time::OffsetDateTime::now_utc(),
        status: PaymentStatus::Authorized,
        authorized_amount: amount,
        captured_amount: 0,
        refunded_amount: 0,
        voided_amount: 0,
        reason: None,
    }
}

fn read_all(bootstrap: &str, topic: &str) -> Vec<Value> {
    pay_consumer::topics::read_to_end(bootstrap, topic, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("reading {topic}: {e:#}"))
        .into_iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .collect()
}
