//! The consume loop: read a batch of captures and refunds, record each as a settlement (one
//! transaction, committed), and only then store the offsets for the next commit. A crash or rebalance
//! before that redelivers the batch, and recording it again changes nothing.
//!
//! Unlike the ledger consumer this loop dead-letters nothing it reads: a message that is not an event
//! is already dead-lettered by the ledger consumer (two DLQ records for one message would be one too
//! many), so here it is counted (`settlement_unparseable_messages_total`), logged and skipped. A money
//! event the settlements table refuses for its data is not skipped: it is dead-lettered here
//! (`SETTLEMENT_FAILED`) before its offset is stored. Database and DLQ failures are retried with backoff
//! for as long as they last, holding the batch.

use crate::acquirer::SettlementRequest;
use crate::config::Config;
use crate::dlq;
use crate::metrics::Metrics;
use crate::store::{self, NewSettlement};
use pay_consumer::worker::DlqRecord;
use payctl_domain::settlement::SettlementType;
use payctl_domain::{Currency, EventType, MerchantId};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::MySqlPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The header `payctl dlq replay` puts on what it sends back.
pub const REPLAYED_FROM: &str = "replayedFrom";

pub fn consumer(config: &Config) -> anyhow::Result<StreamConsumer> {
    // The ledger consumer's settings (see its worker.rs for why each is what it is).
    let consumer: StreamConsumer = pay_consumer::worker::group_member(
        &config.kafka_bootstrap,
        &config.group_id,
        "pay-settlement",
        config.fetch_wait_ms,
        config.kafka_debug.as_deref(),
        config.instance_id.as_deref(),
    )
    .create()?;
    let topics = config.event_topics();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok(consumer)
}

/// What one message is to this worker.
#[derive(Debug)]
pub enum Read {
    Settle(Box<NewSettlement>),
    /// An event, but not one that moves money through the acquirer.
    Ignored(EventType),
    /// Not an event we can read (the ledger consumer dead-letters it).
    Unparseable(String),
}

/// Parses one message: the ledger consumer's envelope checks, then the settlement's own fields as the
/// domain's types.
pub fn read(m: &OwnedMessage, topic_prefix: &str) -> Read {
    let event = match pay_consumer::apply::parse(m.topic(), topic_prefix, m.payload()) {
        Ok(e) => e,
        Err(p) => return Read::Unparseable(format!("{}: {}", p.error_type, p.message)),
    };
    let kind = match event.event_type {
        EventType::PaymentCaptured => SettlementType::Capture,
        EventType::PaymentRefunded => SettlementType::Refund,
        other => return Read::Ignored(other),
    };
    let merchant_id = match MerchantId::parse("merchantId", &event.merchant_id) {
        Ok(m) => m,
        Err(e) => return Read::Unparseable(e.to_string()),
    };
    let currency = match Currency::parse("currency", &event.currency) {
        Ok(c) => c,
        Err(e) => return Read::Unparseable(e.to_string()),
    };
    let replayed = m
        .headers()
        .is_some_and(|h| h.iter().any(|h| h.key == REPLAYED_FROM));
    Read::Settle(Box::new(NewSettlement {
        request: SettlementRequest {
            kind,
            merchant_id,
            payment_id: event.payment_id,
            event_id: event.event_id,
            amount: event.amount,
            currency,
        },
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        // parse() accepted it, so it is UTF-8 JSON.
        payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        replayed,
    }))
}

pub struct ConsumeLoop {
    pub config: Arc<Config>,
    pub db: MySqlPool,
    pub consumer: Arc<StreamConsumer>,
    /// Dead-letters the events that cannot be recorded.
    pub producer: FutureProducer,
    pub metrics: Arc<Metrics>,
    /// Wakes the dispatcher when new settlements are committed.
    pub recorded: Arc<Notify>,
}

impl ConsumeLoop {
    pub async fn run(self, shutdown: CancellationToken) {
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
            while batch.len() < self.config.batch_size {
                match tokio::time::timeout(Duration::from_millis(2), self.consumer.recv()).await {
                    Ok(Ok(m)) => batch.push(m.detach()),
                    _ => break,
                }
            }
            if !self.handle(&batch, &shutdown).await {
                break; // shutting down mid-retry: not acknowledged, so redelivered
            }
            self.store_offsets(&batch);
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final offset commit");
        }
        tracing::info!("settlement consumer stopped");
    }

    /// Records the batch's settlements. Returns false if interrupted by shutdown.
    async fn handle(&self, batch: &[OwnedMessage], shutdown: &CancellationToken) -> bool {
        let mut settlements = Vec::new();
        for m in batch {
            match read(m, &self.config.topic_prefix) {
                Read::Settle(s) => {
                    let t = match s.request.kind {
                        SettlementType::Capture => EventType::PaymentCaptured,
                        SettlementType::Refund => EventType::PaymentRefunded,
                    };
                    self.metrics.consumed.with_label_values(&[t.as_str()]).inc();
                    settlements.push(*s);
                }
                Read::Ignored(t) => {
                    self.metrics.consumed.with_label_values(&[t.as_str()]).inc();
                }
                Read::Unparseable(why) => {
                    self.metrics.unparseable.inc();
                    tracing::warn!(
                        topic = m.topic(),
                        partition = m.partition(),
                        offset = m.offset(),
                        reason = why,
                        "skipping a message that is not a readable event (the ledger consumer dead-letters it)"
                    );
                }
            }
        }
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 1u32;
        loop {
            match store::record(&self.db, &settlements).await {
                Ok(r) => {
                    for refused in &r.refused {
                        let record = dlq::refused_record(&refused.settlement, &refused.error);
                        if !self.dead_letter(&record, shutdown).await {
                            return false;
                        }
                    }
                    self.metrics.replays.inc_by(r.reset);
                    if r.reset > 0 {
                        tracing::info!(
                            settlements = r.reset,
                            "replayed FAILED settlements are PENDING again"
                        );
                    }
                    if !settlements.is_empty() {
                        self.recorded.notify_one();
                    }
                    return true;
                }
                Err(e) => {
                    self.metrics.db_retries.inc();
                    tracing::warn!(
                        error = %e,
                        errno = payctl_db::mysql_error_number(&e),
                        attempts,
                        events = settlements.len(),
                        stalled_secs = started.elapsed().as_secs(),
                        "recording settlements failed; the batch is held and retried"
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
        }
    }

    /// Publishes a DLQ record for an event that is not recorded, retrying until the broker has it (the
    /// batch, and so its offset, is held meanwhile). Returns false if interrupted by shutdown.
    async fn dead_letter(&self, record: &DlqRecord, shutdown: &CancellationToken) -> bool {
        let mut backoff = Duration::from_millis(200);
        loop {
            match dlq::send(&self.producer, &self.config, record).await {
                Ok(()) => {
                    self.metrics.dlq.inc();
                    tracing::warn!(
                        topic = record.original_topic,
                        partition = record.partition,
                        offset = record.offset,
                        error = record.error_message,
                        "an event that cannot be settled sent to the DLQ"
                    );
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dead-lettering a refused event failed; the batch is held and retried");
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
            // After a rebalance took the partition away; the new owner re-reads, and recording is idempotent.
            tracing::debug!(error = %e, "storing offsets");
        }
    }
}
