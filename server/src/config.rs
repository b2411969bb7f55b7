//! Configuration: every setting is a flag and an environment variable with a documented default.
//!
//! Names follow the original (`APP_RATE_LIMIT_*`, `APP_IDEMPOTENCY_CACHE_TTL_SECONDS`, the breaker's
//! Resilience4j settings) so an operator of the old system finds the same knobs; unlike the original, the
//! breaker's are actually read.

use clap::{Args, Parser, ValueEnum};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "pay-server",
    version,
    about = "payctl ingest service: the payment API"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "APP_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    /// MariaDB URL, e.g. mysql://user:password@127.0.0.1:13306/payments
    #[arg(long, env = "APP_DATABASE_URL")]
    pub database_url: String,

    /// Largest number of open database connections.
    #[arg(long, env = "APP_DATABASE_POOL_SIZE", default_value_t = 32)]
    pub database_pool_size: u32,

    /// How long a request waits for a database connection before it answers 503.
    #[arg(long, env = "APP_DATABASE_ACQUIRE_TIMEOUT_MS", default_value_t = 2000)]
    pub database_acquire_timeout_ms: u64,

    /// How long a request waits on another request's row lock (e.g. the same idempotency key) before 409.
    #[arg(
        long,
        env = "APP_DATABASE_LOCK_WAIT_TIMEOUT_SECONDS",
        default_value_t = 5
    )]
    pub database_lock_wait_timeout_seconds: u32,

    /// Redis URL (idempotency cache and rate limits).
    #[arg(
        long,
        env = "APP_REDIS_URL",
        default_value = "redis://127.0.0.1:16379/"
    )]
    pub redis_url: String,

    /// Prefix of every Redis key, so several stacks can share one Redis.
    #[arg(long, env = "APP_REDIS_KEY_PREFIX", default_value = "payctl:")]
    pub redis_key_prefix: String,

    /// Redis command timeout; past it the rate limiter fails open and the cache is skipped.
    #[arg(long, env = "APP_REDIS_TIMEOUT_MS", default_value_t = 200)]
    pub redis_timeout_ms: u64,

    /// Token for the operator endpoints (breaker control). Unset: those endpoints answer 403.
    #[arg(long, env = "APP_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    #[command(flatten)]
    pub kafka: KafkaConfig,

    #[command(flatten)]
    pub rate_limit: RateLimitConfig,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub idempotency: IdempotencyConfig,

    #[command(flatten)]
    pub breaker: BreakerConfig,

    #[command(flatten)]
    pub relay: RelayConfig,

    #[command(flatten)]
    pub batch: BatchConfig,

    /// Log format: `text` for people, `json` for containers.
    #[arg(long, env = "APP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers.
    #[arg(
        long = "kafka-bootstrap",
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:19092"
    )]
    pub bootstrap: String,

    /// Prefix put in front of every topic name (e.g. `staging.`); empty in a normal deployment.
    #[arg(
        long = "kafka-topic-prefix",
        env = "APP_KAFKA_TOPIC_PREFIX",
        default_value = ""
    )]
    pub topic_prefix: String,

    /// Partitions of each topic when the service creates it.
    #[arg(
        long = "kafka-partitions",
        env = "APP_KAFKA_PARTITIONS",
        default_value_t = 3
    )]
    pub partitions: i32,

    /// How long the producer keeps trying one message before it reports failure (message.timeout.ms).
    #[arg(
        long = "kafka-delivery-timeout-ms",
        env = "APP_KAFKA_DELIVERY_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub delivery_timeout_ms: u64,
}

impl KafkaConfig {
    pub fn topic(&self, base: &str) -> String {
        format!("{}{}", self.topic_prefix, base)
    }
}

#[derive(Debug, Clone, Copy, Args)]
pub struct RateLimitConfig {
    /// Authorize requests a merchant may make per window (0 disables the limit).
    #[arg(
        long,
        env = "APP_RATE_LIMIT_AUTHORIZE_CAPACITY",
        default_value_t = 60_000
    )]
    pub authorize_capacity: u32,
    #[arg(
        long,
        env = "APP_RATE_LIMIT_AUTHORIZE_WINDOW_SECONDS",
        default_value_t = 60
    )]
    pub authorize_window_seconds: u32,
    #[arg(
        long,
        env = "APP_RATE_LIMIT_CAPTURE_CAPACITY",
        default_value_t = 60_000
    )]
    pub capture_capacity: u32,
    #[arg(
        long,
        env = "APP_RATE_LIMIT_CAPTURE_WINDOW_SECONDS",
        default_value_t = 60
    )]
    pub capture_window_seconds: u32,
    #[arg(long, env = "APP_RATE_LIMIT_REFUND_CAPACITY", default_value_t = 30_000)]
    pub refund_capacity: u32,
    #[arg(
        long,
        env = "APP_RATE_LIMIT_REFUND_WINDOW_SECONDS",
        default_value_t = 60
    )]
    pub refund_window_seconds: u32,
    #[arg(long, env = "APP_RATE_LIMIT_VOID_CAPACITY", default_value_t = 30_000)]
    pub void_capacity: u32,
    #[arg(long, env = "APP_RATE_LIMIT_VOID_WINDOW_SECONDS", default_value_t = 60)]
    pub void_window_seconds: u32,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct IdempotencyConfig {
    /// How long Redis keeps a completed response for fast replays (0 disables the cache).
    #[arg(
        long = "idempotency-cache-ttl-seconds",
        env = "APP_IDEMPOTENCY_CACHE_TTL_SECONDS",
        default_value_t = 600
    )]
    pub cache_ttl_seconds: u64,

    /// How long the database keeps an idempotency record; after that the key may be reused.
    #[arg(
        long = "idempotency-retention-hours",
        env = "APP_IDEMPOTENCY_RETENTION_HOURS",
        default_value_t = 24
    )]
    pub retention_hours: u32,
}

/// Guards in front of the API-key lookup, so junk bearer tokens cannot take the database's connections
/// from real merchants.
#[derive(Debug, Clone, Copy, Args)]
pub struct AuthConfig {
    /// Database lookups of keys not already known, per client address per second; past it the client
    /// gets 429 before the database is asked. Behind a gateway on loopback or a private network the
    /// address is the `X-Forwarded-For` it sets.
    #[arg(
        long = "auth-lookups-per-second",
        env = "APP_AUTH_LOOKUPS_PER_SECOND",
        default_value_t = 20
    )]
    pub lookups_per_second: u32,
    /// Key lookups running at once, all clients together: the most connections of the pool unknown keys
    /// can ever hold.
    #[arg(
        long = "auth-lookup-concurrency",
        env = "APP_AUTH_LOOKUP_CONCURRENCY",
        default_value_t = 4
    )]
    pub lookup_concurrency: u32,
    /// How long a valid key is trusted from memory before it is looked up again (how long revoking a
    /// key takes to reach every instance).
    #[arg(
        long = "auth-known-key-ttl-seconds",
        env = "APP_AUTH_KNOWN_KEY_TTL_SECONDS",
        default_value_t = 60
    )]
    pub known_key_ttl_seconds: u64,
    /// How long a key the database does not know is answered 401 from memory.
    #[arg(
        long = "auth-unknown-key-ttl-seconds",
        env = "APP_AUTH_UNKNOWN_KEY_TTL_SECONDS",
        default_value_t = 30
    )]
    pub unknown_key_ttl_seconds: u64,
}

/// The breaker's state at start-up (shared with every breaker of payctl's).
pub use payctl_breaker::InitialState as InitialBreakerState;

/// The Kafka publisher's circuit breaker: Resilience4j's settings with the original's values as defaults.
#[derive(Debug, Clone, Copy, Args)]
pub struct BreakerConfig {
    /// Calls in the count-based sliding window.
    #[arg(
        long = "cb-sliding-window-size",
        env = "APP_CB_KAFKA_SLIDING_WINDOW_SIZE",
        default_value_t = 100
    )]
    pub sliding_window_size: u32,
    /// Calls needed in the window before rates are computed.
    #[arg(
        long = "cb-minimum-calls",
        env = "APP_CB_KAFKA_MIN_CALLS",
        default_value_t = 5
    )]
    pub minimum_calls: u32,
    /// Failure rate (%) at or above which the breaker opens.
    #[arg(
        long = "cb-failure-threshold",
        env = "APP_CB_KAFKA_FAILURE_THRESHOLD",
        default_value_t = 50.0
    )]
    pub failure_rate_threshold: f64,
    /// Slow-call rate (%) at or above which the breaker opens.
    #[arg(
        long = "cb-slow-call-rate",
        env = "APP_CB_KAFKA_SLOW_CALL_RATE",
        default_value_t = 50.0
    )]
    pub slow_call_rate_threshold: f64,
    /// A call lasting at least this long is slow.
    #[arg(
        long = "cb-slow-call-threshold-ms",
        env = "APP_CB_KAFKA_SLOW_CALL_THRESHOLD",
        default_value_t = 5000
    )]
    pub slow_call_duration_ms: u64,
    /// Time in OPEN before probing (HALF_OPEN).
    #[arg(
        long = "cb-wait-duration-ms",
        env = "APP_CB_KAFKA_WAIT_DURATION",
        default_value_t = 30_000
    )]
    pub wait_in_open_ms: u64,
    /// Probe calls permitted in HALF_OPEN.
    #[arg(
        long = "cb-half-open-calls",
        env = "APP_CB_KAFKA_HALF_OPEN_CALLS",
        default_value_t = 3
    )]
    pub permitted_in_half_open: u32,
    /// State at start-up.
    #[arg(long = "cb-initial-state", env = "APP_CB_KAFKA_INITIAL_STATE", value_enum, default_value_t = InitialBreakerState::Closed)]
    pub initial_state: InitialBreakerState,
}

impl BreakerConfig {
    pub fn slow_call_duration(&self) -> Duration {
        Duration::from_millis(self.slow_call_duration_ms)
    }
    pub fn wait_in_open(&self) -> Duration {
        Duration::from_millis(self.wait_in_open_ms)
    }

    /// The shared breaker's settings, named after what this one guards.
    pub fn settings(&self) -> payctl_breaker::Settings {
        payctl_breaker::Settings {
            name: "kafka-publisher",
            sliding_window_size: self.sliding_window_size,
            minimum_calls: self.minimum_calls,
            failure_rate_threshold: self.failure_rate_threshold,
            slow_call_rate_threshold: self.slow_call_rate_threshold,
            slow_call_duration_ms: self.slow_call_duration_ms,
            wait_in_open_ms: self.wait_in_open_ms,
            permitted_in_half_open: self.permitted_in_half_open,
            initial_state: self.initial_state,
        }
    }
}

#[derive(Debug, Clone, Copy, Args)]
pub struct RelayConfig {
    /// Outbox rows one relay claims and publishes at a time.
    #[arg(
        long = "relay-batch-size",
        env = "APP_RELAY_BATCH_SIZE",
        default_value_t = 500
    )]
    pub batch_size: u32,
    /// How often the relay looks for rows even when not woken (other instances' rows, retries).
    #[arg(
        long = "relay-poll-interval-ms",
        env = "APP_RELAY_POLL_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub poll_interval_ms: u64,
    /// After a wake-up, how long the relay waits for more commits before it publishes (bigger batches).
    #[arg(
        long = "relay-gather-ms",
        env = "APP_RELAY_GATHER_MS",
        default_value_t = 5
    )]
    pub gather_ms: u64,
    /// How long published outbox rows are kept (0 keeps them for ever). Every instance purges.
    #[arg(
        long = "outbox-retention-hours",
        env = "APP_OUTBOX_RETENTION_HOURS",
        default_value_t = 168
    )]
    pub outbox_retention_hours: u32,
    /// Disable the relay in this instance (another instance or process publishes).
    #[arg(
        long = "relay-disabled",
        env = "APP_RELAY_DISABLED",
        default_value_t = false
    )]
    pub disabled: bool,
}

/// Commit batching (DESIGN §12): concurrent money-moving requests share one transaction.
#[derive(Debug, Clone, Copy, Args)]
pub struct BatchConfig {
    /// How long the first request of a batch waits for others before the batch is written, in ms.
    #[arg(
        id = "commit-batch-window-ms",
        long = "commit-batch-window-ms",
        env = "APP_COMMIT_BATCH_WINDOW_MS",
        default_value_t = 2
    )]
    pub window_ms: u64,
    /// Most requests in one shared transaction: a full batch is written at once.
    #[arg(
        id = "commit-batch-max",
        long = "commit-batch-max",
        env = "APP_COMMIT_BATCH_MAX",
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub max: u32,
    /// Batches being written at once; more requests wait in the next batch (which grows meanwhile).
    #[arg(
        id = "commit-batch-concurrency",
        long = "commit-batch-concurrency",
        env = "APP_COMMIT_BATCH_CONCURRENCY",
        default_value_t = 4,
        value_parser = clap::value_parser!(u32).range(1..=64)
    )]
    pub concurrency: u32,
    /// Give every request its own transaction, as before batching.
    #[arg(
        id = "commit-batch-disabled",
        long = "commit-batch-disabled",
        env = "APP_COMMIT_BATCH_DISABLED",
        default_value_t = false
    )]
    pub disabled: bool,
}

impl BatchConfig {
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }
}

impl Config {
    /// A configuration for tests: every setting at its default except the connections given.
    pub fn for_tests(database_url: &str, redis_url: &str, kafka_bootstrap: &str) -> Self {
        let mut config = Config::parse_from([
            "pay-server",
            "--database-url",
            database_url,
            "--redis-url",
            redis_url,
            "--kafka-bootstrap",
            kafka_bootstrap,
            "--listen",
            "127.0.0.1:0",
        ]);
        config.log_format = LogFormat::Text;
        config
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}
