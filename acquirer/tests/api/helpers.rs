//! Test harness: a fresh SQLite file per test (under the target's tmp directory, removed afterwards) and
//! the acquirer started through `startup` on port 0, as `main` starts it.

use pay_acquirer::config::Config;
use pay_acquirer::startup::{AppState, Application};
use payctl_stack::testing;
use serde_json::{json, Value};
use sqlx::SqlitePool;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// A pool of the test's own on the app's database file, for looking at the rows.
    pub db: SqlitePool,
    pub state: AppState,
    shutdown: CancellationToken,
    /// The database file's directory when this app owns it (removed when the app is dropped).
    _file: Option<TempDb>,
}

/// A directory of its own holding one database file, removed (with the file) when dropped.
pub struct TempDb {
    dir: PathBuf,
    pub url: String,
}

impl TempDb {
    pub fn new() -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("acquirer-tests")
            .join(uuid::Uuid::new_v4().simple().to_string());
        // The app creates the directory and the file: this is what a fresh volume looks like.
        let url = format!("sqlite://{}?mode=rwc", dir.join("acquirer.db").display());
        Self { dir, url }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An acquirer with no latency and no failures.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// An acquirer on a fresh database file of its own.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let file = TempDb::new();
    let mut app = spawn_app_on(&file.url, tweak).await;
    app._file = Some(file);
    app
}

/// An acquirer on the database at `url`, which outlives it (for restarts on the same file).
pub async fn spawn_app_on(url: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
    // Logs only when asked for: RUST_LOG=pay_acquirer=debug cargo test … -- --nocapture
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let mut config = Config::for_tests(url);
    tweak(&mut config);
    let app = Application::build(config).await.expect("the app builds");
    let address = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    let shutdown = app.shutdown_token();
    tokio::spawn(app.run());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        db: pay_acquirer::db::connect(url, 2).await.unwrap(),
        state,
        shutdown,
        _file: None,
    }
}

impl TestApp {
    /// Stops the app as a restart would: no more requests served, every connection to the file closed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.state.db.close().await;
        self.db.close().await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
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
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and the error shape `{code, message}`; returns the body.
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

/// A settlement body with fresh payment and event ids.
pub fn settlement(kind: &str, merchant: &str, amount: i64, currency: &str) -> Value {
    json!({
        "type": kind,
        "merchantId": merchant,
        "paymentId": uuid::Uuid::now_v7().to_string(),
        "eventId": uuid::Uuid::now_v7().to_string(),
        "amount": amount,
        "currency": currency,
    })
}

impl TestApp {
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.address, path));
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

    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(body), &[])
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(reqwest::Method::PUT, path, Some(body), &[]).await
    }

    /// `POST /v1/settlements` with `key`.
    pub async fn settle(&self, key: &str, body: &Value) -> Reply {
        self.send(
            reqwest::Method::POST,
            "/v1/settlements",
            Some(body),
            &[("Idempotency-Key", key)],
        )
        .await
    }

    pub async fn rows(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM acquirer_settlements")
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    pub fn metric(&self, name: &str) -> f64 {
        testing::metric_sum(&self.state.metrics.render(), name)
    }
}
