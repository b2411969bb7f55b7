//! The consume loop: read a batch, apply it in one transaction, send poison to the DLQ (awaited), and
//! only then store the offsets for the next commit.
//!
//! Database failures are retried with backoff for as long as they last, whatever they are (down,
//! read-only, out of connections, a revoked grant, …): only an error that says an event's own data is
//! wrong dead-letters it (see `apply`). The loop does not move past a message it has not applied or
//! dead-lettered, so a stalled batch stores no offsets; the stall shows as `consumer_retries_total`,
//! `consumer_stalled_seconds` and a warning per retry. The DLQ send is retried the same way, so no message
//! is ever lost between the topic and the DLQ.

use crate::apply::{self, Poison};
use crate::config::Config;
use crate::metrics::Metrics;
use payctl_domain::event::DLQ_TOPIC;
use payctl_domain::PaymentEvent;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;
use sqlx::MySqlPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What the DLQ holds for each poison message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqRecord {
    pub original_topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Option<String>,
    pub error_type: String,
    pub error_message: String,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: time::OffsetDateTime,
    pub attempts: u32,
}

/// The settings of a consumer group member that stores offsets only after its work is durable: shared
/// by the ledger consumer and the settlement worker, so both read the topics with the same guarantees.
pub fn group_member(
    bootstrap: &str,
    group_id: &str,
    client_id: &str,
    fetch_wait_ms: u32,
    debug: Option<&str>,
    instance_id: Option<&str>,
) -> ClientConfig {
    let mut client = ClientConfig::new();
    if let Some(debug) = debug.filter(|d| !d.is_empty()) {
        client.set("debug", debug);
    }
    if let Some(id) = instance_id.filter(|d| !d.is_empty()) {
        client.set("group.instance.id", id);
    }
    client
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group_id)
        .set("client.id", client_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // Also the rebalance timeout: how long a rebalance waits for a member that died (kill -9) before
        // going on without it. Librdkafka's 5-minute default would stall a restarted consumer that long.
        // A worker blocked longer than this on a database outage leaves the group and rejoins; its
        // uncommitted batch is redelivered and deduplicated.
        .set("max.poll.interval.ms", "20000")
        .set("socket.connection.setup.timeout.ms", "3000");
    client
}

/// The ledger consumer's Kafka client: a member of the group subscribed to the event topics, or with
/// `partition_share` one that reads its fixed share of their partitions (it waits for the topics, up
/// to `TOPICS_WAIT`, since pay-server creates them).
pub async fn consumer(config: &Config) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = group_member(
        &config.kafka_bootstrap,
        &config.group_id,
        "pay-consumer",
        config.fetch_wait_ms,
        config.kafka_debug.as_deref(),
        config
            .instance_id
            .as_deref()
            .filter(|_| config.partition_share.is_none()),
    )
    .create()?;
    let topics = config.event_topics();
    match config.partition_share {
        None => {
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            consumer.subscribe(&topics)?;
        }
        Some(share) => {
            let mut list = TopicPartitionList::new();
            for (topic, partitions) in partitions_of(&config.kafka_bootstrap, &topics).await? {
                for p in (0..partitions).filter(|p| share.holds(*p)) {
                    // Where the group committed, else auto.offset.reset (earliest).
                    list.add_partition_offset(&topic, p, Offset::Stored)?;
                }
            }
            tracing::info!(%share, partitions = list.count(), "reading a fixed share of the partitions");
            consumer.assign(&list)?;
        }
    }
    Ok(consumer)
}

/// How long a consumer with a partition share waits for pay-server to create the topics.
const TOPICS_WAIT: Duration = Duration::from_secs(60);

/// The partition count of each of `topics`, once every one of them exists.
async fn partitions_of(bootstrap: &str, topics: &[String]) -> anyhow::Result<Vec<(String, i32)>> {
    use rdkafka::consumer::BaseConsumer;
    let client: Arc<BaseConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("socket.connection.setup.timeout.ms", "3000")
            .create()?,
    );
    let deadline = tokio::time::Instant::now() + TOPICS_WAIT;
    loop {
        let c = client.clone();
        let metadata =
            tokio::task::spawn_blocking(move || c.fetch_metadata(None, Duration::from_secs(5)))
                .await?;
        let found: Vec<(String, i32)> = match &metadata {
            Ok(m) => m
                .topics()
                .iter()
                .filter(|t| topics.iter().any(|n| n == t.name()) && !t.partitions().is_empty())
                .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
                .collect(),
            Err(_) => Vec::new(),
        };
        if found.len() == topics.len() {
            return Ok(found);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "the topics {topics:?} do not all exist after {}s (found {found:?}; pay-server creates them)",
                TOPICS_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub fn dlq_producer(config: &Config) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &config.kafka_bootstrap)
        .set("client.id", "pay-consumer-dlq")
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()?)
}

pub struct Worker {
    pub config: Arc<Config>,
    pub db: MySqlPool,
    pub consumer: Arc<StreamConsumer>,
    pub dlq: FutureProducer,
    pub metrics: Arc<Metrics>,
}

impl Worker {
    pub async fn run(self, shutdown: CancellationToken) {
        let lag_task = tokio::spawn(report_lag(
            self.consumer.clone(),
            self.metrics.clone(),
            shutdown.clone(),
        ));
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = self.consumer.recv() => m,
            };
            let mut batch = match first {
                Ok(m) => vec![m.detach()],
                Err(e) => {
                    tracing::warn!(error = %e, "kafka receive error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            // Take whatever else is already waiting, up to a batch.
            while batch.len() < self.config.batch_size {
                match tokio::time::timeout(Duration::from_millis(2), self.consumer.recv()).await {
                    Ok(Ok(m)) => batch.push(m.detach()),
                    _ => break,
                }
            }
            if !self.handle(&batch, &shutdown).await {
                break; // shutting down mid-retry: the batch is not acknowledged and will be redelivered
            }
            self.store_offsets(&batch);
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final offset commit");
        }
        lag_task.abort();
        tracing::info!("consumer stopped");
    }

    /// Applies the batch and dead-letters its poison. Returns false if interrupted by shutdown.
    async fn handle(&self, batch: &[OwnedMessage], shutdown: &CancellationToken) -> bool {
        let started = Instant::now();
        let mut events: Vec<PaymentEvent> = Vec::new();
        let mut event_index: Vec<usize> = Vec::new();
        let mut poison: Vec<(usize, Poison)> = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            self.metrics.consumed.with_label_values(&[m.topic()]).inc();
            match apply::parse(m.topic(), &self.config.topic_prefix, m.payload()) {
                Ok(e) => {
                    events.push(e);
                    event_index.push(i);
                }
                Err(p) => poison.push((i, p)),
            }
        }
        let mut attempts = 1u32;
        let mut backoff = Duration::from_millis(100);
        let outcome = loop {
            match apply::apply(&self.db, &events).await {
                Ok(o) => break o,
                Err(e) => {
                    self.metrics.retries.inc();
                    self.metrics.stalled.set(started.elapsed().as_secs_f64());
                    tracing::warn!(
                        error = %e,
                        errno = payctl_db::mysql_error_number(&e),
                        attempts,
                        events = events.len(),
                        stalled_secs = started.elapsed().as_secs(),
                        "applying events failed; the batch is held and retried"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    attempts += 1;
                    backoff =
                        (backoff * 2).min(Duration::from_millis(self.config.retry_max_backoff_ms));
                }
            }
        };
        self.metrics.stalled.set(0.0);
        self.metrics.legs_written.inc_by(outcome.legs_written);
        self.metrics.duplicates.inc_by(outcome.duplicates);
        for (n, verdict) in outcome.verdicts.into_iter().enumerate() {
            match verdict {
                Some(p) => poison.push((event_index[n], p)),
                None => {
                    let lag = time::OffsetDateTime::now_utc() - events[n].occurred_at;
                    self.metrics.ledger_lag.set(lag.as_seconds_f64().max(0.0));
                }
            }
        }
        for (i, p) in poison {
            if !self.dead_letter(&batch[i], &p, attempts, shutdown).await {
                return false;
            }
        }
        self.metrics
            .processing
            .with_label_values(&["ok"])
            .observe(started.elapsed().as_secs_f64());
        true
    }

    /// Sends one poison message to the DLQ and waits for the broker's acknowledgement, retrying until it
    /// comes (or shutdown).
    async fn dead_letter(
        &self,
        m: &OwnedMessage,
        p: &Poison,
        attempts: u32,
        shutdown: &CancellationToken,
    ) -> bool {
        let record = DlqRecord {
            original_topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
            error_type: p.error_type.to_owned(),
            error_message: p.message.clone(),
            timestamp: time::OffsetDateTime::now_utc(),
            attempts,
        };
        let body = match serde_json::to_string(&record) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode DLQ record");
                return false;
            }
        };
        let topic = self.config.topic(DLQ_TOPIC);
        let key = record.key.clone().unwrap_or_default();
        let mut backoff = Duration::from_millis(100);
        loop {
            let send = self
                .dlq
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&body),
                    Timeout::After(Duration::from_secs(5)),
                )
                .await;
            match send {
                Ok(_) => {
                    tracing::warn!(
                        error_type = p.error_type,
                        topic = m.topic(),
                        offset = m.offset(),
                        "message sent to the DLQ"
                    );
                    self.metrics
                        .dlq_sent
                        .with_label_values(&[p.error_type])
                        .inc();
                    return true;
                }
                Err((e, _)) => {
                    tracing::warn!(error = %e, "DLQ send failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn store_offsets(&self, batch: &[OwnedMessage]) {
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        for m in batch {
            let e = next
                .entry((m.topic().to_owned(), m.partition()))
                .or_insert(0);
            *e = (*e).max(m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset));
        }
        if let Err(e) = self.consumer.store_offsets(&tpl) {
            // Happens after a rebalance took the partition away; the new owner re-reads and dedups.
            tracing::debug!(error = %e, "storing offsets");
        }
    }
}

/// Every few seconds: high watermark − position per assigned partition.
async fn report_lag(
    consumer: Arc<StreamConsumer>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let c = consumer.clone();
        let m = metrics.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(positions) = c.position() else { return };
            // A partition not read since this member started has no position: its lag counts from
            // the group's committed offset (else the whole partition would count as behind).
            let committed = c.committed(Duration::from_secs(1)).ok();
            for e in positions.elements() {
                if let Ok((low, high)) =
                    c.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1))
                {
                    let pos = match e.offset() {
                        Offset::Offset(o) => o,
                        _ => match committed
                            .as_ref()
                            .and_then(|t| t.find_partition(e.topic(), e.partition()))
                            .map(|c| c.offset())
                        {
                            Some(Offset::Offset(o)) => o,
                            _ => low,
                        },
                    };
                    m.lag
                        .with_label_values(&[e.topic(), &e.partition().to_string()])
                        .set((high - pos).max(0));
                }
            }
        })
        .await;
    }
}
