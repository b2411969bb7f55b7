//! The transactional outbox: rows written with each payment change, and the relay that publishes them.
//!
//! The relay claims a batch with `FOR UPDATE SKIP LOCKED` and a short lease, commits, publishes without
//! holding any database connection, then marks what the broker acknowledged. Several relays (one per
//! ingest instance) share the work without taking the same rows. It is woken right after each commit and
//! also polls, so rows left by a crashed instance (its lease runs out) or by an outage are picked up.
//!
//! Each publish is one call through the circuit breaker. While the breaker is OPEN the relay only waits;
//! the API keeps committing payments and their events wait here, durable, until Kafka is back.

use crate::breaker::CircuitBreaker;
use crate::config::{KafkaConfig, RelayConfig};
use crate::metrics::Metrics;
use crate::storage::{self, Tx};
use futures::future::join_all;
use payctl_domain::{EventType, PaymentEvent};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use sqlx::{MySqlPool, Row};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub async fn enqueue(tx: &mut Tx, event: &PaymentEvent) -> Result<(), sqlx::Error> {
    let payload = serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO outbox_events (event_id, payment_id, event_type, payload, created_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(event.event_id.as_uuid())
    .bind(event.payment_id.as_uuid())
    .bind(event.event_type.as_str())
    .bind(payload)
    .bind(storage::to_db(event.occurred_at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Several events in one statement, in the order given (commit batching); nothing for none.
pub async fn enqueue_all(tx: &mut Tx, events: &[PaymentEvent]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let mut payloads = Vec::with_capacity(events.len());
    for event in events {
        payloads.push(serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?);
    }
    let mut q = sqlx::QueryBuilder::<sqlx::MySql>::new(
        "INSERT INTO outbox_events (event_id, payment_id, event_type, payload, created_at) ",
    );
    q.push_values(events.iter().zip(payloads), |mut b, (event, payload)| {
        b.push_bind(event.event_id.as_uuid())
            .push_bind(event.payment_id.as_uuid())
            .push_bind(event.event_type.as_str())
            .push_bind(payload)
            .push_bind(storage::to_db(event.occurred_at));
    });
    // One text per number of rows: not kept prepared (see `storage::insert_payments`).
    q.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}

/// Deletes published rows older than `retention` whose event is in the ledger, a batch at a time until
/// none is left or `budget` has passed. A published event that never reached the ledger (dead-lettered,
/// or older than the consumer's position) is kept: it is the last copy that can be published again, and
/// reconcile goes on reporting it. The newest `recorded_at` of the deleted events' legs goes into
/// `outbox_purged`: reconcile expects an outbox row for every leg recorded after it.
pub async fn purge_published(
    pool: &MySqlPool,
    retention: time::Duration,
    budget: Duration,
) -> Result<u64, sqlx::Error> {
    const BATCH: u32 = 2_000;
    let started = Instant::now();
    let cutoff = storage::to_db(storage::now() - retention);
    let mut total = 0;
    loop {
        // No row locks: two instances purging at once delete the same rows twice, which is harmless.
        let rows: Vec<(u64, time::PrimitiveDateTime)> = sqlx::query_as(
            "SELECT o.id, MAX(l.recorded_at) FROM outbox_events o \
             JOIN ledger_entries l ON l.event_id = o.event_id \
             WHERE o.published_at IS NOT NULL AND o.published_at < ? \
             GROUP BY o.id ORDER BY o.id LIMIT ?",
        )
        .bind(cutoff)
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        let Some(through) = rows.iter().map(|(_, recorded)| *recorded).max() else {
            return Ok(total);
        };
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO outbox_purged (id, purged_through) VALUES (1, ?) \
             ON DUPLICATE KEY UPDATE purged_through = GREATEST(purged_through, VALUES(purged_through))",
        )
        .bind(through)
        .execute(&mut *tx)
        .await?;
        let sql = format!(
            "DELETE FROM outbox_events WHERE id IN ({})",
            placeholders(rows.len())
        );
        let mut q = sqlx::query(&sql);
        for (id, _) in &rows {
            q = q.bind(id);
        }
        q.execute(&mut *tx).await?;
        tx.commit().await?;
        total += rows.len() as u64;
        if rows.len() < BATCH as usize || started.elapsed() >= budget {
            return Ok(total);
        }
    }
}

struct Claimed {
    id: u64,
    payment_id: Uuid,
    event_type: EventType,
    payload: String,
}

pub struct Relay {
    pub db: MySqlPool,
    /// The relay's own producer. After failed deliveries it is replaced before the next attempt: a broker
    /// that restarted may have lost the idempotent producer's state and would refuse its sequence numbers
    /// forever, while a new producer starts a fresh sequence.
    pub producer: Option<FutureProducer>,
    pub breaker: Arc<CircuitBreaker>,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Notify>,
    pub topics_ready: Arc<AtomicBool>,
    pub kafka: KafkaConfig,
    pub config: RelayConfig,
}

impl Relay {
    fn lease(&self) -> time::Duration {
        time::Duration::milliseconds(self.kafka.delivery_timeout_ms as i64 + 10_000)
    }

    /// Runs until `shutdown`; then finishes the batch in hand and flushes the producer.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let mut last_gauges = Instant::now() - Duration::from_secs(10);
        loop {
            let mut pause = poll;
            if self.topics_ready.load(Ordering::Acquire) {
                match self.drain().await {
                    Ok(Some(wait)) => pause = wait.min(poll),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "outbox relay cycle failed"),
                }
            }
            if last_gauges.elapsed() >= Duration::from_millis(500) {
                self.update_gauges().await;
                last_gauges = Instant::now();
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {
                    // Let a few more commits land so one produce request carries many events: the
                    // broker's cost is per request, and a request per commit caps the whole pipeline.
                    if self.config.gather_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(self.config.gather_ms)).await;
                    }
                }
                _ = tokio::time::sleep(pause) => {}
            }
        }
        // Publish what was committed up to now, then flush: a clean stop leaves nothing behind.
        if self.topics_ready.load(Ordering::Acquire) {
            if let Err(e) = tokio::time::timeout(Duration::from_secs(10), self.drain()).await {
                tracing::warn!(error = %e, "final outbox drain did not finish");
            }
        }
        if let Some(producer) = self.producer.take() {
            let _ = tokio::task::spawn_blocking(move || {
                producer.flush(Timeout::After(Duration::from_secs(5)))
            })
            .await;
        }
        tracing::info!("outbox relay stopped");
    }

    /// Publishes batches until the outbox is empty or the breaker says stop; returns how long to wait
    /// when the breaker is open.
    async fn drain(&mut self) -> anyhow::Result<Option<Duration>> {
        loop {
            let (permits, wait) = self.breaker.capacity(self.config.batch_size);
            if permits == 0 {
                return Ok(wait);
            }
            let batch = self.claim(permits).await?;
            if batch.is_empty() {
                return Ok(None);
            }
            let full = batch.len() as u32 == permits;
            self.publish(batch).await?;
            if !full {
                return Ok(None);
            }
        }
    }

    async fn claim(&self, limit: u32) -> Result<Vec<Claimed>, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let rows = sqlx::query(
            "SELECT id, payment_id, event_type, payload FROM outbox_events \
             WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < ?) \
             ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
        )
        .bind(storage::to_db(storage::now()))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut batch = Vec::with_capacity(rows.len());
        for r in &rows {
            let event_type: String = r.try_get("event_type")?;
            batch.push(Claimed {
                id: r.try_get("id")?,
                payment_id: r.try_get("payment_id")?,
                event_type: EventType::parse(&event_type).ok_or_else(|| {
                    sqlx::Error::Decode(format!("event type {event_type}").into())
                })?,
                payload: r.try_get("payload")?,
            });
        }
        if !batch.is_empty() {
            let ids: Vec<u64> = batch.iter().map(|c| c.id).collect();
            let sql = format!(
                "UPDATE outbox_events SET claimed_until = ? WHERE id IN ({})",
                placeholders(ids.len())
            );
            let mut q = sqlx::query(&sql).bind(storage::to_db(storage::now() + self.lease()));
            for id in &ids {
                q = q.bind(id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(batch)
    }

    fn producer(&mut self) -> anyhow::Result<FutureProducer> {
        if let Some(p) = &self.producer {
            return Ok(p.clone());
        }
        let p = crate::kafka::producer(&self.kafka)?;
        self.producer = Some(p.clone());
        Ok(p)
    }

    async fn publish(&mut self, batch: Vec<Claimed>) -> anyhow::Result<()> {
        let producer = self.producer()?;
        let mut sends = Vec::with_capacity(batch.len());
        let mut refused = Vec::new();
        for c in &batch {
            if !self.breaker.try_acquire() {
                refused.push(c.id);
                continue;
            }
            let topic = self.kafka.topic(c.event_type.topic());
            let key = c.payment_id.hyphenated().to_string();
            let producer = &producer;
            let payload = &c.payload;
            let id = c.id;
            sends.push(async move {
                // No Kafka headers: the payload's envelope already names the event and its type, and
                // tansu 0.6 (SQLite) keeps headers in an unindexed table that every fetch scans in full —
                // measured, it slowed the ledger consumer to ~570 events/s and falling as history grew.
                let record = FutureRecord::to(&topic).key(&key).payload(payload);
                let started = Instant::now();
                let result = producer
                    .send(record, Timeout::After(Duration::from_secs(1)))
                    .await;
                (
                    id,
                    started.elapsed(),
                    result.map(|_| ()).map_err(|(e, _)| e.to_string()),
                )
            });
        }
        let results = join_all(sends).await;
        let mut published = Vec::new();
        let mut failed = refused;
        let mut last_error = None;
        for (id, elapsed, result) in results {
            self.breaker.record(elapsed, result.is_err());
            match result {
                Ok(()) => published.push(id),
                Err(e) => {
                    failed.push(id);
                    last_error = Some(e);
                }
            }
        }
        self.metrics.outbox_published.inc_by(published.len() as u64);
        if let Some(e) = &last_error {
            self.metrics.outbox_publish_failures.inc();
            self.producer = None;
            tracing::warn!(error = %e, failed = failed.len(), "publishing outbox events failed; they stay in the outbox");
        }
        self.mark(&published, &failed, last_error.as_deref()).await
    }

    /// Records the outcome; retried because a lost "published" mark means a duplicate publish later.
    async fn mark(
        &self,
        published: &[u64],
        failed: &[u64],
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut delay = Duration::from_millis(100);
        for attempt in 0.. {
            match self.try_mark(published, failed, error).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 20 => {
                    tracing::warn!(error = %e, "marking outbox rows failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn try_mark(
        &self,
        published: &[u64],
        failed: &[u64],
        error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        if !published.is_empty() {
            let sql = format!(
                "UPDATE outbox_events SET published_at = ?, claimed_until = NULL, attempts = attempts + 1 \
                 WHERE id IN ({})",
                placeholders(published.len())
            );
            let mut q = sqlx::query(&sql).bind(storage::to_db(storage::now()));
            for id in published {
                q = q.bind(id);
            }
            q.execute(&self.db).await?;
        }
        if !failed.is_empty() {
            let sql = format!(
                "UPDATE outbox_events SET claimed_until = NULL, attempts = attempts + 1, last_error = ? \
                 WHERE id IN ({})",
                placeholders(failed.len())
            );
            let mut q =
                sqlx::query(&sql).bind(error.map(|e| e.chars().take(500).collect::<String>()));
            for id in failed {
                q = q.bind(id);
            }
            q.execute(&self.db).await?;
        }
        Ok(())
    }

    async fn update_gauges(&self) {
        let row = sqlx::query(
            "SELECT COUNT(*) AS backlog, \
             COALESCE(TIMESTAMPDIFF(MICROSECOND, MIN(created_at), UTC_TIMESTAMP(6)), 0) AS age_us \
             FROM outbox_events WHERE published_at IS NULL",
        )
        .fetch_one(&self.db)
        .await;
        if let Ok(row) = row {
            let backlog: i64 = row.try_get("backlog").unwrap_or(0);
            let age_us: i64 = row.try_get("age_us").unwrap_or(0);
            self.metrics.outbox_backlog.set(backlog);
            self.metrics
                .outbox_oldest_age
                .set(age_us.max(0) as f64 / 1e6);
        }
    }
}

fn placeholders(n: usize) -> String {
    let mut s = "?,".repeat(n);
    s.pop();
    s
}
