//! A Redis connection that never holds a request up: every command has a short time limit, and while
//! Redis is down callers get `None` at once while one background task keeps trying to reconnect.
//!
//! Both users of Redis are optional by design: the idempotency cache falls back to the database, and the
//! rate limiter fails open (and counts it).

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[derive(Clone)]
pub struct RedisClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    manager: RwLock<Option<ConnectionManager>>,
    connecting: AtomicBool,
    prefix: String,
    timeout: Duration,
}

impl RedisClient {
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                manager: RwLock::new(None),
                connecting: AtomicBool::new(false),
                prefix: prefix.to_owned(),
                timeout,
            }),
        })
    }

    /// The namespaced key for `parts`.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = self.inner.prefix.clone();
        key.push_str(&parts.join(":"));
        key
    }

    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// A connection if one is established; otherwise starts (at most one) reconnect task and returns None.
    pub fn connection(&self) -> Option<ConnectionManager> {
        if let Some(m) = self.inner.manager.read().ok().and_then(|g| g.clone()) {
            return Some(m);
        }
        self.reconnect_in_background();
        None
    }

    /// Connects now (at start-up), waiting at most `wait`.
    pub async fn connect(&self, wait: Duration) -> bool {
        let config = self.manager_config();
        match tokio::time::timeout(
            wait,
            ConnectionManager::new_with_config(self.inner.client.clone(), config),
        )
        .await
        {
            Ok(Ok(m)) => {
                if let Ok(mut g) = self.inner.manager.write() {
                    *g = Some(m);
                }
                true
            }
            _ => false,
        }
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_millis(500))
            .set_response_timeout(self.inner.timeout)
            .set_number_of_retries(1)
            .set_max_delay(1000)
    }

    fn reconnect_in_background(&self) {
        if self.inner.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            while !this.connect(Duration::from_secs(2)).await {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            tracing::info!("connected to Redis");
            this.inner.connecting.store(false, Ordering::Release);
        });
    }

    /// Forgets the connection after a failure: until the background task reconnects, callers get `None`
    /// at once instead of each waiting out the timeout.
    fn mark_down(&self, why: &str) {
        let was_up = self
            .inner
            .manager
            .write()
            .map(|mut g| g.take().is_some())
            .unwrap_or(false);
        if was_up {
            tracing::warn!(
                reason = why,
                "Redis unavailable; failing open until it is back"
            );
        }
        self.reconnect_in_background();
    }

    /// Runs a command with the time limit. `None` means Redis did not answer in time or failed.
    pub async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        let mut conn = self.connection()?;
        match tokio::time::timeout(self.inner.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                self.mark_down("connection error");
                None
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis command failed");
                None
            }
            Err(_) => {
                self.mark_down("timeout");
                None
            }
        }
    }

    /// Runs a Lua script with the time limit.
    pub async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[i64],
    ) -> Option<T> {
        let mut conn = self.connection()?;
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(*k);
        }
        for a in args {
            invocation.arg(*a);
        }
        match tokio::time::timeout(self.inner.timeout, invocation.invoke_async::<T>(&mut conn))
            .await
        {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                self.mark_down("connection error");
                None
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis script failed");
                None
            }
            Err(_) => {
                self.mark_down("timeout");
                None
            }
        }
    }

    pub async fn ping(&self) -> bool {
        self.run::<String>(&redis::cmd("PING")).await.as_deref() == Some("PONG")
    }
}
