//! Publishing FAILED settlements to the DLQ: one record per failure, in the ledger consumer's
//! [`DlqRecord`] shape (`errorType` `SETTLEMENT_FAILED`, `payload` the event as read), awaited before
//! the row is marked published (`dlq_published_at`).
//!
//! Each row is locked (SKIP LOCKED) in its own transaction across the send, so two workers never
//! publish one settlement; a crash between the broker's acknowledgement and the commit republishes it
//! (at least once — a duplicate record names the same event and is explained the same way).
//!
//! `payctl dlq replay` sends the payload back to its topic with `replayedFrom`; the consume loop then
//! resets the FAILED row to PENDING with attempts 0 and it is tried again (a plain redelivery does not).

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store;
use pay_consumer::worker::DlqRecord;
use payctl_domain::event::DLQ_TOPIC;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use sqlx::MySqlPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub const ERROR_TYPE: &str = "SETTLEMENT_FAILED";

pub fn producer(config: &Config) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &config.kafka_bootstrap)
        .set("client.id", "pay-settlement-dlq")
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()?)
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("encoding the DLQ record: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Sends one DLQ record (keyed by the original message's key) and waits for the broker's acknowledgement.
pub async fn send(
    producer: &FutureProducer,
    config: &Config,
    record: &DlqRecord,
) -> Result<(), PublishError> {
    let body = serde_json::to_string(record)?;
    let topic = config.topic(DLQ_TOPIC);
    let key = record.key.clone().unwrap_or_default();
    producer
        .send(
            FutureRecord::to(&topic).key(&key).payload(&body),
            Timeout::After(Duration::from_secs(10)),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}

/// The DLQ record of an event that is never recorded as a settlement (refused when it was read).
pub fn refused_record(s: &store::NewSettlement, error: &str) -> DlqRecord {
    DlqRecord {
        original_topic: s.topic.clone(),
        partition: s.partition,
        offset: s.offset,
        key: s.key.clone(),
        payload: Some(s.payload.clone()),
        error_type: ERROR_TYPE.to_owned(),
        error_message: error.to_owned(),
        timestamp: time::OffsetDateTime::now_utc(),
        attempts: 0,
    }
}

pub struct DlqPublisher {
    pub config: Arc<Config>,
    pub db: MySqlPool,
    pub producer: FutureProducer,
    pub metrics: Arc<Metrics>,
    pub failed: Arc<Notify>,
}

impl DlqPublisher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.publish_one().await {
                Ok(true) => {
                    backoff = Duration::from_millis(200);
                    continue;
                }
                Ok(false) => {
                    // Nothing left: wait for a failure (or look again now and then: another worker's).
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.failed.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "publishing a FAILED settlement to the DLQ failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Publishes one FAILED settlement; false when there was none.
    pub async fn publish_one(&self) -> Result<bool, PublishError> {
        let mut tx = self.db.begin().await?;
        let Some(d) = store::dead_letters(&mut tx, 1).await?.into_iter().next() else {
            tx.commit().await?;
            return Ok(false);
        };
        let record = DlqRecord {
            original_topic: d.topic.clone(),
            partition: d.partition,
            offset: d.offset,
            key: d.key.clone(),
            payload: Some(d.payload.clone()),
            error_type: ERROR_TYPE.to_owned(),
            error_message: d.last_error.clone().unwrap_or_default(),
            timestamp: time::OffsetDateTime::now_utc(),
            attempts: d.attempts,
        };
        send(&self.producer, &self.config, &record).await?;
        store::dead_letter_published(&mut tx, d.event_id).await?;
        tx.commit().await?;
        self.metrics.dlq.inc();
        tracing::warn!(event = %d.event_id, attempts = d.attempts, error = record.error_message, "FAILED settlement sent to the DLQ");
        Ok(true)
    }
}
