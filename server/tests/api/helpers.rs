//! Test harness: real MariaDB, Redis and tansu on free ports, started once per test binary and shared;
//! each test gets its own database, Redis key prefix and Kafka topic prefix, so tests run in parallel.
//! Tests that stop a dependency get private instances of their own (`Dedicated`).

use pay_server::auth::{create_merchant, ApiKey};
use pay_server::config::Config;
use pay_server::startup::{AppState, Application};
use payctl_domain::MerchantId;
use payctl_stack::testing::{self, Services};

use serde_json::Value;
use sqlx::MySqlPool;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs blocking work (starting or stopping a service) off the test's runtime thread.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

fn shared() -> &'static Mutex<Services> {
    testing::shared(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

pub struct TestMerchant {
    pub id: MerchantId,
    pub key: ApiKey,
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: MySqlPool,
    pub state: AppState,
    pub merchant: TestMerchant,
    pub other_merchant: TestMerchant,
    pub kafka_bootstrap: String,
    pub topic_prefix: String,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub struct Endpoints {
    pub mariadb_port: u16,
    pub redis_url: String,
    pub kafka: String,
}

impl Endpoints {
    fn of(s: &Services) -> Self {
        Self {
            mariadb_port: s.mariadb.port(),
            redis_url: s.redis.url(),
            kafka: s.tansu.bootstrap(),
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let endpoints = tokio::task::spawn_blocking(|| {
        Endpoints::of(&shared().lock().unwrap_or_else(|p| p.into_inner()))
    })
    .await
    .unwrap();
    spawn_app_on(endpoints, tweak).await
}

/// An app on private services the test may stop and start.
pub async fn spawn_dedicated(tweak: impl FnOnce(&mut Config)) -> (TestApp, Services) {
    let services = blocking(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        Services::start(root, &uuid::Uuid::new_v4().simple().to_string()).expect("private services")
    })
    .await;
    let app = spawn_app_on(Endpoints::of(&services), tweak).await;
    (app, services)
}

pub async fn spawn_app_on(endpoints: Endpoints, tweak: impl FnOnce(&mut Config)) -> TestApp {
    // Logs only when asked for: RUST_LOG=pay_server=debug cargo test … -- --nocapture
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let database = format!("t_{}", &unique[..16]);
    let root = format!("mysql://root@127.0.0.1:{}/", endpoints.mariadb_port);
    let admin = MySqlPool::connect(&root).await.expect("connect as root");
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;

    let db_url = format!("{root}{database}");
    let mut config = Config::for_tests(&db_url, &endpoints.redis_url, &endpoints.kafka);
    config.redis_key_prefix = format!("{unique}:");
    config.kafka.topic_prefix = format!("{}.", &unique[..12]);
    config.kafka.partitions = 2;
    config.kafka.delivery_timeout_ms = 3000;
    config.relay.poll_interval_ms = 200;
    tweak(&mut config);
    let topic_prefix = config.kafka.topic_prefix.clone();

    let app = Application::build(config).await.expect("the app builds");
    let address = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run());

    let db = MySqlPool::connect(&db_url).await.unwrap();
    let merchant = new_merchant(&db, "M-TEST-1").await;
    let other_merchant = new_merchant(&db, "M-TEST-2").await;
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        db,
        state,
        merchant,
        other_merchant,
        kafka_bootstrap: endpoints.kafka,
        topic_prefix,
        shutdown,
        server: Some(server),
    }
}

pub async fn new_merchant(db: &MySqlPool, id: &str) -> TestMerchant {
    let id = MerchantId::parse("merchantId", id).unwrap();
    let key = create_merchant(db, &id, "Test merchant").await.unwrap();
    TestMerchant { id, key }
}

/// A response read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.bytes)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the error shape and code.
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        let body = self.json();
        assert_eq!(self.status, status, "status; body: {body}");
        assert_eq!(body["code"], code, "code; body: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "message; body: {body}"
        );
        body
    }
}

impl TestApp {
    pub fn key(&self) -> &str {
        self.merchant.key.expose()
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.address, path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let res = req.send().await.expect("request sent");
        Reply {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            bytes: res.bytes().await.unwrap().to_vec(),
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.request(
            reqwest::Method::POST,
            path,
            Some(self.key()),
            Some(body),
            &[],
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(reqwest::Method::GET, path, Some(self.key()), None, &[])
            .await
    }

    pub async fn authorize(&self, amount: i64, key: &str) -> Reply {
        self.post(
            "/payments/authorize",
            &serde_json::json!({"merchantId": self.merchant.id.as_str(), "amount": amount, "currency": "KRW", "idempotencyKey": key}),
        )
        .await
    }

    /// Authorizes and returns the new payment id.
    pub async fn authorized_payment(&self, amount: i64) -> String {
        let r = self
            .authorize(amount, &uuid::Uuid::new_v4().to_string())
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
        r.json()["paymentId"].as_str().unwrap().to_owned()
    }

    /// Drops this app's idempotency responses from Redis, so replays must come from the database.
    pub async fn forget_cached_responses(&self) {
        // Our own connection: the app's has a deliberately short timeout.
        let client = redis::Client::open(self.state.config.redis_url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(self.state.redis.key(&["idem", "*"]))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }

    /// A transaction holding payment `id`'s row lock until it ends (another request's change, slowed).
    pub async fn hold_payment_lock(&self, id: &str) -> sqlx::Transaction<'static, sqlx::MySql> {
        let mut holder = self.db.begin().await.unwrap();
        sqlx::query(
            "SELECT 1 FROM payments WHERE payment_id = UNHEX(REPLACE(?, '-', '')) FOR UPDATE",
        )
        .bind(id)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
        holder
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    pub async fn unpublished(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM outbox_events WHERE published_at IS NULL")
            .await
    }

    /// Waits for `condition` to hold, polling; panics with `what` after `timeout`.
    pub async fn eventually<F, Fut>(&self, what: &str, timeout: Duration, condition: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        payctl_stack::testing::eventually(what, timeout, condition).await
    }

    pub fn metric(&self, name: &str) -> f64 {
        payctl_stack::testing::metric_sum(&self.state.metrics.render(), name)
    }

    /// Every message on `base` topic, read up to the high watermark of each partition.
    pub async fn read_topic(&self, base: &str) -> Vec<Value> {
        TopicReader::of(self).read(base).await
    }

    /// A second instance of the server on this app's database, Redis prefix and topics (as two ingest
    /// instances behind a load balancer), with the same merchants.
    pub async fn peer(&self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = (*self.state.config).clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        tweak(&mut config);
        let app = Application::build(config.clone())
            .await
            .expect("the peer builds");
        let address = format!("http://{}", app.local_addr());
        let state = app.state().clone();
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(app.run());
        TestApp {
            address,
            client: self.client.clone(),
            db: self.db.clone(),
            state,
            merchant: TestMerchant {
                id: self.merchant.id.clone(),
                key: self.merchant.key.clone(),
            },
            other_merchant: TestMerchant {
                id: self.other_merchant.id.clone(),
                key: self.other_merchant.key.clone(),
            },
            kafka_bootstrap: self.kafka_bootstrap.clone(),
            topic_prefix: config.kafka.topic_prefix.clone(),
            shutdown,
            server: Some(server),
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Reads this app's topics; outlives the app.
pub struct TopicReader {
    bootstrap: String,
    prefix: String,
}

impl TopicReader {
    pub fn of(app: &TestApp) -> Self {
        Self {
            bootstrap: app.kafka_bootstrap.clone(),
            prefix: app.topic_prefix.clone(),
        }
    }

    pub async fn read(&self, base: &str) -> Vec<Value> {
        let topic = format!("{}{}", self.prefix, base);
        let bootstrap = self.bootstrap.clone();
        tokio::task::spawn_blocking(move || read_all(&bootstrap, &topic))
            .await
            .unwrap()
    }
}

fn read_all(bootstrap: &str, topic: &str) -> Vec<Value> {
    pay_consumer::topics::read_to_end(bootstrap, topic, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("reading {topic}: {e:#}"))
        .into_iter()
        .map(|r| {
            let mut v: Value = serde_json::from_slice(&r.payload).unwrap();
            v["_key"] = Value::String(r.key.unwrap_or_default());
            v
        })
        .collect()
}
