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

    /// Read a fixed share of the partitions instead of taking part in the group's rebalancing: `K/N`
    /// reads, of every topic, the partitions p with p mod N = K − 1 (offsets are still the group's).
    /// For a broker whose group coordinator cannot hand a dead member's partitions to the others
    /// (tansu 0.6.0, docs/SCALING.md): N consumers started with 1/N … N/N cover every partition once,
    /// and one that dies keeps its share until it is back. Changing N means restarting all of them.
    #[arg(long, env = "APP_CONSUMER_PARTITION_SHARE")]
    pub partition_share: Option<PartitionShare>,

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

/// `K/N`: the K-th of N consumers that divide every topic's partitions among them by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionShare {
    /// From 0: the partitions p with p mod `of` = `index`.
    index: u16,
    of: u16,
}

impl PartitionShare {
    /// Whether `partition` is in this share.
    pub fn holds(&self, partition: i32) -> bool {
        partition.rem_euclid(i32::from(self.of)) == i32::from(self.index)
    }
}

impl std::str::FromStr for PartitionShare {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not a share like 1/2 (the first of two consumers)");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (u16, u16) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || k == 0 || k > n {
            return Err(bad());
        }
        Ok(Self {
            index: k - 1,
            of: n,
        })
    }
}

impl std::fmt::Display for PartitionShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.of)
    }
}

#[cfg(test)]
mod share_tests {
    use super::PartitionShare;

    #[test]
    fn shares_cover_every_partition_once() {
        let shares: Vec<PartitionShare> = ["1/3", "2/3", "3/3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        for p in 0..12 {
            assert_eq!(shares.iter().filter(|s| s.holds(p)).count(), 1, "{p}");
        }
        assert!(shares[1].holds(4) && !shares[1].holds(3));
        assert_eq!(shares[2].to_string(), "3/3");
        for bad in ["0/2", "3/2", "1/0", "1", "a/b", "1/2/3"] {
            assert!(bad.parse::<PartitionShare>().is_err(), "{bad}");
        }
    }
}
