//! Configuration by flags and environment, with documented defaults.

use crate::topics::FETCH_WAIT_MAX_MS;
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;

/// The consumer group of the stack's consumers (payctl runs them with this default).
pub const DEFAULT_GROUP: &str = "pay-consumer";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "pay-consumer",
    version,
    about = "payctl ledger consumer: payment events → double-entry ledger"
)]
pub struct Config {
    /// Address of the health, readiness and metrics endpoints.
    #[arg(long, env = "APP_LISTEN", default_value = "127.0.0.1:18091")]
    pub listen: SocketAddr,

    /// MariaDB URL, e.g. mysql://user:password@127.0.0.1:13306/payments
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

    /// Consumer group; instances in one group share the partitions.
    #[arg(long, env = "APP_CONSUMER_GROUP", default_value = DEFAULT_GROUP)]
    pub group_id: String,

    /// Static group membership (Kafka's `group.instance.id`): a restarted instance with the same id takes
    /// its place in the group at once instead of waiting for the old member to time out. Give each
    /// instance a stable id (payctl uses the service name).
    #[arg(long, env = "APP_CONSUMER_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// How long the broker may hold a fetch (Kafka's `fetch.wait.max.ms`). tansu 0.6 holds every
    /// fetch this long, even when records are waiting, so it is the period of the consumer's reads;
    /// each read takes everything available (up to 5 MB). Shorter means a fresher ledger and more idle
    /// work for the broker (measured on tansu/SQLite: 10 ms cost 72 % of a core while idle).
    #[arg(long, env = "APP_CONSUMER_FETCH_WAIT_MS", default_value_t = FETCH_WAIT_MAX_MS)]
    pub fetch_wait_ms: u32,

    /// Most events applied in one database transaction.
    #[arg(long, env = "APP_CONSUMER_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,

    /// Longest wait between retries of a transient failure (database down, lock timeout).
    #[arg(
        long,
        env = "APP_CONSUMER_RETRY_MAX_BACKOFF_MS",
        default_value_t = 5000
    )]
    pub retry_max_backoff_ms: u64,

    /// librdkafka debug contexts (e.g. `cgrp,topic`), for diagnosing group or broker trouble.
    #[arg(long, env = "APP_KAFKA_DEBUG")]
    pub kafka_debug: Option<String>,

    #[arg(long, env = "APP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    pub fn topic(&self, base: &str) -> String {
        format!("{}{}", self.topic_prefix, base)
    }

    /// The four payment event topics this consumer reads, as named on the broker.
    pub fn event_topics(&self) -> Vec<String> {
        payctl_domain::EventType::ALL
            .iter()
            .map(|t| self.topic(t.topic()))
            .collect()
    }

    pub fn for_tests(database_url: &str, kafka_bootstrap: &str, topic_prefix: &str) -> Self {
        let mut c = Config::parse_from([
            "pay-consumer",
            "--database-url",
            database_url,
            "--kafka-bootstrap",
            kafka_bootstrap,
            "--listen",
            "127.0.0.1:0",
        ]);
        c.topic_prefix = topic_prefix.to_owned();
        c.group_id = format!("{topic_prefix}pay-consumer");
        c.retry_max_backoff_ms = 500;
        c
    }
}
