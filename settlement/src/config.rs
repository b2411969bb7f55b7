//! Configuration by flags and environment, with documented defaults. Kafka, topic and database settings
//! have the same names as the ledger consumer's, so one environment serves both.

use clap::{Args, Parser};
use pay_consumer::config::LogFormat;
use pay_consumer::topics::FETCH_WAIT_MAX_MS;
use payctl_breaker::InitialState;
use payctl_domain::settlement::{parse_time_zone, DEFAULT_TIME_ZONE};
use payctl_domain::EventType;
use std::net::SocketAddr;
use std::time::Duration;

/// The settlement workers' consumer group: apart from the ledger consumer's, so each reads every event.
pub const DEFAULT_GROUP: &str = "payctl-settlement";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "pay-settlement",
    version,
    about = "payctl settlement worker: captures and refunds → the acquirer, idempotently",
    long_about = "payctl settlement worker. Reads PAYMENT_CAPTURED and PAYMENT_REFUNDED events (its own \
consumer group), records each as a settlement in the payments database, and submits it to the acquirer \
(POST /v1/settlements, Idempotency-Key = the event id) with bounded concurrency, retries with backoff and \
jitter, and a circuit breaker. A settlement refused for good, or still failing after the last attempt, is \
FAILED and published once to the DLQ; `payctl dlq replay` sends it back and it is tried again.\n\n\
Several instances may run on one database: a settlement is claimed with a lease (FOR UPDATE SKIP LOCKED) \
before it is sent, so no two instances call the acquirer for it at once.",
    after_help = "Examples:\n  \
APP_DATABASE_URL=mysql://root@127.0.0.1:13306/payments pay-settlement\n  \
pay-settlement --database-url mysql://root@127.0.0.1:13306/payments --acquirer-url http://127.0.0.1:18095 \\\n    \
--concurrency 64 --max-attempts 10"
)]
pub struct Config {
    /// Address of the health, readiness and metrics endpoints.
    #[arg(long, env = "APP_LISTEN", default_value = "127.0.0.1:18092")]
    pub listen: SocketAddr,

    /// MariaDB URL of the payments database (the settlements table lives there), e.g.
    /// mysql://user:password@127.0.0.1:13306/payments. Migrations are applied at start-up.
    #[arg(long, env = "APP_DATABASE_URL")]
    pub database_url: String,

    #[arg(long, env = "APP_DATABASE_POOL_SIZE", default_value_t = 8)]
    pub database_pool_size: u32,

    /// Kafka bootstrap servers.
    #[arg(
        long = "kafka-bootstrap",
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:19092"
    )]
    pub kafka_bootstrap: String,

    /// Prefix in front of every topic name (the same as the ingest service's).
    #[arg(
        long = "kafka-topic-prefix",
        env = "APP_KAFKA_TOPIC_PREFIX",
        default_value = ""
    )]
    pub topic_prefix: String,

    /// Consumer group of the settlement workers; instances in it share the partitions.
    #[arg(long, env = "APP_SETTLEMENT_GROUP_ID", default_value = DEFAULT_GROUP)]
    pub group_id: String,

    /// Static group membership (Kafka's `group.instance.id`), as the ledger consumer's: a restarted
    /// instance with the same id takes its place in the group at once. Give each instance a stable id.
    #[arg(long, env = "APP_CONSUMER_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// How long the broker may hold a fetch (see pay-consumer's APP_CONSUMER_FETCH_WAIT_MS).
    #[arg(long, env = "APP_CONSUMER_FETCH_WAIT_MS", default_value_t = FETCH_WAIT_MAX_MS)]
    pub fetch_wait_ms: u32,

    /// Most events recorded in one database transaction.
    #[arg(long, env = "APP_SETTLEMENT_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,

    /// Base URL of the acquirer.
    #[arg(
        long,
        env = "APP_ACQUIRER_URL",
        default_value = "http://127.0.0.1:18095"
    )]
    pub acquirer_url: String,

    /// Most acquirer calls in flight at once. The acquirer takes 1–3 s per call, so throughput is about
    /// concurrency ÷ latency: 64 ≈ 30 settlements/s at 2 s.
    #[arg(long, env = "APP_SETTLEMENT_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,

    /// Calls made for one settlement before it is FAILED and dead-lettered.
    #[arg(long, env = "APP_SETTLEMENT_MAX_ATTEMPTS", default_value_t = 10)]
    pub max_attempts: u32,

    /// Retry backoff: the n-th retry waits a random time between 0 and min(cap, base × 2ⁿ⁻¹) ("full
    /// jitter", so retries of an outage's backlog spread out instead of arriving together).
    #[arg(long, env = "APP_SETTLEMENT_BACKOFF_BASE_MS", default_value_t = 500)]
    pub backoff_base_ms: u64,

    /// Longest retry backoff.
    #[arg(long, env = "APP_SETTLEMENT_BACKOFF_CAP_MS", default_value_t = 30_000)]
    pub backoff_cap_ms: u64,

    /// Timeout of one acquirer call. A claimed settlement's lease is this plus
    /// APP_SETTLEMENT_LEASE_MARGIN_MS: a worker that dies mid-call leaves it to be retried (with the
    /// same key, so the acquirer replays) once the lease expires.
    #[arg(long, env = "APP_SETTLEMENT_CALL_TIMEOUT_MS", default_value_t = 10_000)]
    pub call_timeout_ms: u64,

    /// Time added to the call timeout for a lease (writing the outcome must fit in it).
    #[arg(long, env = "APP_SETTLEMENT_LEASE_MARGIN_MS", default_value_t = 5_000)]
    pub lease_margin_ms: u64,

    /// How often the dispatcher looks for due settlements when nothing woke it.
    #[arg(long, env = "APP_SETTLEMENT_POLL_MS", default_value_t = 200)]
    pub poll_ms: u64,

    /// Longest wait between retries of a database failure while recording events.
    #[arg(
        long,
        env = "APP_SETTLEMENT_RETRY_MAX_BACKOFF_MS",
        default_value_t = 5000
    )]
    pub retry_max_backoff_ms: u64,

    /// The acquirer's cutoff time zone (IANA name; set it as the acquirer's APP_ACQUIRER_TIME_ZONE). A
    /// SETTLED record whose business date is before today there and that no payout covers is counted
    /// in settlement_unpaid_settled_records.
    #[arg(long, env = "APP_SETTLEMENT_TIME_ZONE", default_value = DEFAULT_TIME_ZONE, value_parser = parse_time_zone)]
    pub time_zone: jiff::tz::TimeZone,

    #[command(flatten)]
    pub breaker: BreakerConfig,

    /// librdkafka debug contexts (e.g. `cgrp,topic`).
    #[arg(long, env = "APP_KAFKA_DEBUG")]
    pub kafka_debug: Option<String>,

    #[arg(long, env = "APP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The acquirer's circuit breaker (the publisher's semantics, `APP_SETTLEMENT_CB_*`). A failed call is
/// a 5xx, a timeout or a connection error; a 4xx is the request's fault and counts as a success. While
/// OPEN no settlement is claimed, so an outage burns no attempts.
#[derive(Debug, Clone, Copy, Args)]
pub struct BreakerConfig {
    /// Calls in the count-based sliding window.
    #[arg(
        long = "cb-sliding-window-size",
        env = "APP_SETTLEMENT_CB_SLIDING_WINDOW_SIZE",
        default_value_t = 50
    )]
    pub sliding_window_size: u32,
    /// Calls needed in the window before rates are computed.
    #[arg(
        long = "cb-minimum-calls",
        env = "APP_SETTLEMENT_CB_MIN_CALLS",
        default_value_t = 10
    )]
    pub minimum_calls: u32,
    /// Failure rate (%) at or above which the breaker opens. The acquirer fails ~5 % of calls on a
    /// normal day; retries absorb that, an outage (all failing) opens it.
    #[arg(
        long = "cb-failure-threshold",
        env = "APP_SETTLEMENT_CB_FAILURE_THRESHOLD",
        default_value_t = 50.0
    )]
    pub failure_rate_threshold: f64,
    /// Slow-call rate (%) at or above which the breaker opens.
    #[arg(
        long = "cb-slow-call-rate",
        env = "APP_SETTLEMENT_CB_SLOW_CALL_RATE",
        default_value_t = 100.0
    )]
    pub slow_call_rate_threshold: f64,
    /// A call lasting at least this long is slow (the acquirer's normal 1–3 s is not).
    #[arg(
        long = "cb-slow-call-threshold-ms",
        env = "APP_SETTLEMENT_CB_SLOW_CALL_THRESHOLD_MS",
        default_value_t = 8000
    )]
    pub slow_call_duration_ms: u64,
    /// Time in OPEN before probing (HALF_OPEN).
    #[arg(
        long = "cb-wait-duration-ms",
        env = "APP_SETTLEMENT_CB_WAIT_DURATION_MS",
        default_value_t = 5_000
    )]
    pub wait_in_open_ms: u64,
    /// Probe calls permitted in HALF_OPEN.
    #[arg(
        long = "cb-half-open-calls",
        env = "APP_SETTLEMENT_CB_HALF_OPEN_CALLS",
        default_value_t = 3
    )]
    pub permitted_in_half_open: u32,
    /// State at start-up.
    #[arg(long = "cb-initial-state", env = "APP_SETTLEMENT_CB_INITIAL_STATE", value_enum, default_value_t = InitialState::Closed)]
    pub initial_state: InitialState,
}

impl BreakerConfig {
    pub fn settings(&self) -> payctl_breaker::Settings {
        payctl_breaker::Settings {
            name: "acquirer",
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

impl Config {
    pub fn topic(&self, base: &str) -> String {
        format!("{}{}", self.topic_prefix, base)
    }

    /// The topics this worker reads: captures and refunds only (nothing else is settled).
    pub fn event_topics(&self) -> Vec<String> {
        [EventType::PaymentCaptured, EventType::PaymentRefunded]
            .iter()
            .map(|t| self.topic(t.topic()))
            .collect()
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    /// How long a claim holds a settlement: the call's timeout plus the margin to write its outcome.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms + self.lease_margin_ms)
    }

    /// A configuration for tests: any free port, the test's topic prefix and group, short waits.
    pub fn for_tests(
        database_url: &str,
        kafka_bootstrap: &str,
        topic_prefix: &str,
        acquirer_url: &str,
    ) -> Self {
        let mut c = Config::parse_from([
            "pay-settlement",
            "--database-url",
            database_url,
            "--kafka-bootstrap",
            kafka_bootstrap,
            "--acquirer-url",
            acquirer_url,
            "--listen",
            "127.0.0.1:0",
        ]);
        c.topic_prefix = topic_prefix.to_owned();
        c.group_id = format!("{topic_prefix}{DEFAULT_GROUP}");
        c.retry_max_backoff_ms = 500;
        c.backoff_base_ms = 50;
        c.backoff_cap_ms = 1000;
        c.call_timeout_ms = 5000;
        c.lease_margin_ms = 2000;
        c.poll_ms = 50;
        c.breaker.wait_in_open_ms = 1000;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_defaults_parse() {
        Config::command().debug_assert();
        let c = Config::parse_from(["pay-settlement", "--database-url", "mysql://x/y"]);
        assert_eq!(c.group_id, DEFAULT_GROUP);
        assert_eq!(c.concurrency, 64);
        assert_eq!(c.max_attempts, 10);
        assert_eq!(c.listen.port(), 18092);
        assert_eq!(c.acquirer_url, "http://127.0.0.1:18095");
        assert_eq!(c.time_zone.iana_name(), Some("Asia/Seoul"));
        assert_eq!(
            c.event_topics(),
            vec!["payment.captured".to_owned(), "payment.refunded".to_owned()]
        );
    }

    #[test]
    fn the_time_zone_is_an_iana_name() {
        let c = Config::parse_from([
            "pay-settlement",
            "--database-url",
            "mysql://x/y",
            "--time-zone",
            "UTC",
        ]);
        assert_eq!(c.time_zone.iana_name(), Some("UTC"));
        let e = Config::try_parse_from([
            "pay-settlement",
            "--database-url",
            "mysql://x/y",
            "--time-zone",
            "Mars/Olympus",
        ])
        .expect_err("an unknown zone is refused");
        assert!(e.to_string().contains("Mars/Olympus"), "{e}");
    }
}
