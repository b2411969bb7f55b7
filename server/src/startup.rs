//! Assembling the application: one place that wires configuration to pools, clients, background tasks
//! and routes, used by `main` and by the integration tests alike.

use crate::auth::KeyCache;
use crate::batch::{Batcher, Writer};
use crate::breaker::CircuitBreaker;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::outbox::Relay;
use crate::ratelimit::RateLimiter;
use crate::redis_client::RedisClient;
use crate::{idempotency, kafka, outbox, routes, storage};

/// How often expired records are purged, and the most time one purge may take: a purge deletes
/// everything due (in batches), so one every 10 s keeps up with any request rate the database can take.
const RETENTION_INTERVAL: Duration = Duration::from_secs(10);
const RETENTION_BUDGET: Duration = Duration::from_secs(5);
use rdkafka::producer::FutureProducer;
use sqlx::MySqlPool;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Everything a request handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: MySqlPool,
    pub redis: RedisClient,
    pub limiter: Arc<RateLimiter>,
    pub keys: Arc<KeyCache>,
    /// Database reads a rate-limited request may make to find its stored answer, at once.
    pub limited_replay_lookups: Arc<tokio::sync::Semaphore>,
    pub metrics: Arc<Metrics>,
    pub breaker: Arc<CircuitBreaker>,
    pub producer: FutureProducer,
    pub relay_wake: Arc<Notify>,
    pub topics_ready: Arc<AtomicBool>,
    /// Commit batching; `None` when disabled (every request in a transaction of its own).
    pub batcher: Option<Batcher>,
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
}

impl Application {
    /// Connects to everything, applies migrations and binds the listener; does not serve yet.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = storage::pool(
            &config.database_url,
            config.database_pool_size,
            Duration::from_millis(config.database_acquire_timeout_ms),
            config.database_lock_wait_timeout_seconds,
        )?;
        payctl_db::migrate_when_available(&db).await?;

        let redis = RedisClient::new(
            &config.redis_url,
            &config.redis_key_prefix,
            config.redis_timeout(),
        )?;
        if !redis.connect(Duration::from_secs(2)).await {
            tracing::warn!("Redis is not reachable; rate limits fail open and replays use the database until it is");
        }
        let metrics = Metrics::new();
        metrics
            .known_key_ttl
            .set(i64::try_from(config.auth.known_key_ttl_seconds).unwrap_or(i64::MAX));
        let breaker = Arc::new(CircuitBreaker::new(config.breaker.settings()));
        let producer = kafka::producer(&config.kafka)?;
        let listener = TcpListener::bind(config.listen).await?;
        let batcher = (!config.batch.disabled).then(|| {
            Batcher::start(
                Writer {
                    db: db.clone(),
                    metrics: metrics.clone(),
                    retention: time::Duration::hours(i64::from(config.idempotency.retention_hours)),
                },
                config.batch,
            )
        });
        let state = AppState {
            batcher,
            limiter: Arc::new(RateLimiter::new(redis.clone(), config.rate_limit)),
            keys: Arc::new(KeyCache::new(
                config.auth,
                Duration::from_millis(config.database_acquire_timeout_ms),
            )),
            config: Arc::new(config),
            db,
            redis,
            limited_replay_lookups: Arc::new(tokio::sync::Semaphore::new(4)),
            metrics,
            breaker,
            producer,
            relay_wake: Arc::new(Notify::new()),
            topics_ready: Arc::new(AtomicBool::new(false)),
        };
        Ok(Self {
            listener,
            state,
            shutdown: CancellationToken::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A token that stops the server gracefully when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled: stops accepting, lets in-flight requests finish,
    /// then stops the relay (which flushes the producer).
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            shutdown,
        } = self;
        let background = spawn_background(&state, shutdown.clone());
        let app = routes::router(state);
        let stop = shutdown.clone();
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
        shutdown.cancel();
        for task in background {
            let _ = task.await;
        }
        Ok(())
    }
}

fn spawn_background(state: &AppState, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();

    // Topics: created once Kafka answers; the relay waits for them.
    let kafka_config = state.config.kafka.clone();
    let topics_ready = state.topics_ready.clone();
    let wake = state.relay_wake.clone();
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            match kafka::ensure_topics(&kafka_config).await {
                Ok(()) => {
                    topics_ready.store(true, Ordering::Release);
                    wake.notify_one();
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "cannot create Kafka topics yet; retrying"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }));

    if !state.config.relay.disabled {
        let relay = Relay {
            db: state.db.clone(),
            producer: None,
            breaker: state.breaker.clone(),
            metrics: state.metrics.clone(),
            wake: state.relay_wake.clone(),
            topics_ready: state.topics_ready.clone(),
            kafka: state.config.kafka.clone(),
            config: state.config.relay,
        };
        tasks.push(tokio::spawn(relay.run(shutdown.clone())));
    }

    // Retention: expired idempotency records and old published outbox rows.
    let db = state.db.clone();
    let outbox_retention = state.config.relay.outbox_retention_hours;
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RETENTION_INTERVAL) => {}
            }
            if let Err(e) = idempotency::purge_expired(&db, RETENTION_BUDGET).await {
                tracing::warn!(error = %e, "purging idempotency records failed");
            }
            if outbox_retention > 0 {
                let keep = time::Duration::hours(i64::from(outbox_retention));
                if let Err(e) = outbox::purge_published(&db, keep, RETENTION_BUDGET).await {
                    tracing::warn!(error = %e, "purging published outbox rows failed");
                }
            }
        }
    }));
    tasks
}
