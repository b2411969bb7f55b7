//! Commit batching (DESIGN §12): concurrent money-moving requests written in one shared transaction.
//!
//! Requests that reach this point within a short window (or until a batch is full) are written together —
//! multi-row INSERTs of idempotency keys, payments and outbox events, one UPDATE per changed payment — and
//! committed once. Each request is answered only after that commit, so durability and every idempotency
//! and state-machine guarantee are those of a transaction of its own; a crash before the commit loses the
//! whole batch, none of whose requests had an answer.
//!
//! Locks are taken in one order by every batch and by a request alone: idempotency keys first (a batch
//! inserts them sorted), then payment rows (a batch locks them sorted, in one statement). So batches cannot
//! deadlock each other or a lone request.
//!
//! A batch that cannot be written whole never fails its requests: when keys were already used, those
//! requests go on alone (replay, 422 or a fresh claim of an expired key, as without batching) and the rest
//! are written again as a smaller batch; on any other error before the commit the transaction is rolled
//! back and every request is written again alone, answered exactly as it would have been without batching.

use crate::config::BatchConfig;
use crate::effect::{self, Command, Effect, Written};
use crate::error::ApiError;
use crate::idempotency::{Keyed, SavedResponse};
use crate::metrics::Metrics;
use crate::storage::{self, PaymentRecord, Tx};
use payctl_domain::{MerchantId, PaymentEvent};
use sqlx::{MySql, MySqlPool, QueryBuilder, Row};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::{timeout_at, Instant};
use uuid::Uuid;

/// How a batched request came out.
#[derive(Debug)]
pub enum Outcome {
    /// Committed in a batch.
    Written(Written),
    /// Not written: carry it out alone (its key was used before, or the batch failed before its commit).
    Alone,
}

struct Job {
    merchant: MerchantId,
    command: Command,
    keyed: Option<Keyed>,
    reply: oneshot::Sender<Result<Outcome, ApiError>>,
}

/// The queue in front of the batch writer. Cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Job>,
}

/// What a batch writer needs: the pool, where to count, and how long keys are kept.
#[derive(Clone)]
pub struct Writer {
    pub db: MySqlPool,
    pub metrics: Arc<Metrics>,
    pub retention: time::Duration,
}

impl Batcher {
    /// Starts the task that gathers requests into batches and writes them; it ends when every `Batcher`
    /// is dropped, after writing what was queued.
    pub fn start(writer: Writer, config: BatchConfig) -> Self {
        let (queue, jobs) = mpsc::channel(config.max as usize * 8);
        tokio::spawn(gather(jobs, writer, config));
        Self { queue }
    }

    /// Queues one request and waits until its batch is committed (or the request must go on alone).
    pub async fn submit(
        &self,
        merchant: MerchantId,
        command: Command,
        keyed: Option<Keyed>,
    ) -> Result<Outcome, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            merchant,
            command,
            keyed,
            reply,
        };
        if self.queue.send(job).await.is_err() {
            return Ok(Outcome::Alone); // the writer is gone (shutting down): nothing was written
        }
        // A writer that vanished without answering may have committed: never write the request again.
        answer.await.unwrap_or_else(|_| {
            Err(ApiError::Internal(anyhow::anyhow!(
                "the batch writer stopped before answering"
            )))
        })
    }
}

async fn gather(mut jobs: mpsc::Receiver<Job>, writer: Writer, config: BatchConfig) {
    let writing = Arc::new(Semaphore::new(config.concurrency as usize));
    let max = config.max as usize;
    loop {
        // Wait for a free writer first: meanwhile requests queue up and the next batch is fuller.
        let Ok(permit) = writing.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = jobs.recv().await else {
            return;
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + config.window();
        while batch.len() < max {
            match timeout_at(deadline, jobs.recv()).await {
                Ok(Some(job)) => batch.push(job),
                Ok(None) | Err(_) => break,
            }
        }
        let writer = writer.clone();
        tokio::spawn(async move {
            writer.write(batch).await;
            drop(permit);
        });
    }
}

/// Why a batch was not committed.
enum Failure {
    /// No connection (the database is down or the pool exhausted): alone, each would wait for one again.
    NoConnection(sqlx::Error),
    /// Some of the batch's idempotency keys exist already (or were inserted meanwhile).
    KeysTaken,
    /// Before the commit: rolled back, nothing written.
    BeforeCommit(sqlx::Error),
    /// The COMMIT itself failed: its outcome is unknown, so the requests must not be written again.
    Commit(sqlx::Error),
}

impl Writer {
    async fn write(&self, jobs: Vec<Job>) {
        // One use of a key per batch: a second use waits for the first's commit, then goes alone (and
        // replays it, or gets 422 for a different request).
        let mut claimed = HashSet::new();
        let (mut batch, mut alone): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|job| {
            job.keyed
                .as_ref()
                .is_none_or(|k| claimed.insert(identity(k)))
        });
        // Keys taken between our check and our insert send us round again; twice more at most.
        for _ in 0..3 {
            if batch.is_empty() {
                break;
            }
            match self.try_write(&batch).await {
                Ok(results) => {
                    self.metrics.commit_batch_size.observe(batch.len() as f64);
                    for (job, result) in batch.drain(..).zip(results) {
                        let _ = job.reply.send(result);
                    }
                }
                Err(Failure::KeysTaken) => {
                    self.metrics
                        .commit_batch_split
                        .with_label_values(&["duplicate_key"])
                        .inc();
                    match self.taken_keys(&batch).await {
                        Ok(taken) if !taken.is_empty() => {
                            let (keep, go): (Vec<Job>, Vec<Job>) =
                                batch.into_iter().partition(|job| {
                                    job.keyed
                                        .as_ref()
                                        .is_none_or(|k| !taken.contains(&identity(k)))
                                });
                            batch = keep;
                            alone.extend(go);
                        }
                        // None visible (a key that compares equal to ours but is spelt otherwise,
                        // or one rolled back since), or the read failed: every request alone.
                        Ok(_) | Err(_) => alone.append(&mut batch),
                    }
                }
                Err(Failure::NoConnection(e)) => {
                    // Alone, each would wait for a connection again and get the same 503.
                    tracing::warn!(error = %e, "no database connection for a batch");
                    for job in batch.drain(..) {
                        let _ = job.reply.send(Err(ApiError::DatabaseUnavailable));
                    }
                }
                // Even an "unavailable" error here may be this batch's alone (its statement killed,
                // its connection lost): the others must not pay for it, so every request goes on alone.
                Err(Failure::BeforeCommit(e)) => {
                    tracing::debug!(error = %e, size = batch.len(), "batch rolled back; its requests go on alone");
                    self.metrics
                        .commit_batch_split
                        .with_label_values(&["error"])
                        .inc();
                    alone.append(&mut batch);
                }
                Err(Failure::Commit(e)) => {
                    let unavailable = storage::is_unavailable(&e);
                    tracing::warn!(error = %e, size = batch.len(), "batch commit failed; outcome unknown");
                    for job in batch.drain(..) {
                        let _ = job.reply.send(Err(if unavailable {
                            ApiError::DatabaseUnavailable
                        } else {
                            ApiError::Internal(anyhow::anyhow!("commit failed"))
                        }));
                    }
                }
            }
        }
        alone.append(&mut batch);
        for job in alone {
            let _ = job.reply.send(Ok(Outcome::Alone));
        }
    }

    /// The batch's keys that exist now (committed), read without locking.
    async fn taken_keys(&self, batch: &[Job]) -> Result<HashSet<(String, String)>, sqlx::Error> {
        let keys: Vec<&Keyed> = batch.iter().filter_map(|j| j.keyed.as_ref()).collect();
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let mut q = QueryBuilder::<MySql>::new(
            "SELECT merchant_id, idempotency_key FROM idempotency_keys WHERE ",
        );
        push_key_list(&mut q, &keys);
        // One text per number of keys: not kept prepared (see `storage::insert_payments`).
        let rows = q.build().persistent(false).fetch_all(&self.db).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("merchant_id")?, r.try_get("idempotency_key")?)))
            .collect()
    }

    /// Writes the whole batch in one transaction; on success, each request's result in batch order.
    async fn try_write(&self, batch: &[Job]) -> Result<Vec<Result<Outcome, ApiError>>, Failure> {
        let mut tx = self.db.begin().await.map_err(|e| {
            if storage::is_unavailable(&e) {
                Failure::NoConnection(e)
            } else {
                Failure::BeforeCommit(e)
            }
        })?;
        match self.stage(&mut tx, batch).await {
            Ok(results) => {
                tx.commit().await.map_err(Failure::Commit)?;
                Ok(results)
            }
            Err(failure) => {
                // Rolled back before anyone goes on alone: a dropped transaction is rolled back only
                // when its connection is next used, and until then its uncommitted keys hold off the
                // same keys' requests on other connections (they got 409 IN_PROGRESS after the lock
                // wait, CI stop 21). A failed rollback closes the connection, which ends it as well.
                if let Err(e) = tx.rollback().await {
                    tracing::debug!(error = %e, "rolling back a failed batch");
                }
                Err(failure)
            }
        }
    }

    /// Everything of the batch's transaction but its commit; on success, each request's result in
    /// batch order.
    async fn stage(
        &self,
        tx: &mut Tx,
        batch: &[Job],
    ) -> Result<Vec<Result<Outcome, ApiError>>, Failure> {
        let now = storage::now();

        // 1. Keys, sorted. An authorize's answer is known before the commit, so its key is written
        // COMPLETED with the response; a change's key is claimed now and completed below.
        let mut authorizations: Vec<Option<Result<Effect, ApiError>>> =
            Vec::with_capacity(batch.len());
        for job in batch {
            authorizations.push(match &job.command {
                Command::Authorize { amount, currency } => {
                    Some(effect::authorization(&job.merchant, *amount, *currency))
                }
                Command::Change { .. } => None,
            });
        }
        let mut keys: Vec<KeyRow> = Vec::new();
        for (job, auth) in batch.iter().zip(&authorizations) {
            let Some(k) = &job.keyed else { continue };
            keys.push(match auth {
                Some(Ok(e)) => KeyRow::completed(k, &e.saved, Some(e.payment.id.as_uuid())),
                Some(Err(err)) if effect::is_recorded_refusal(err) => {
                    KeyRow::completed(k, &effect::saved_refusal(err), None)
                }
                Some(Err(_)) | None => KeyRow::claimed(k),
            });
        }
        keys.sort_by(|a, b| (&a.merchant, &a.key).cmp(&(&b.merchant, &b.key)));
        if !keys.is_empty() {
            match insert_keys(tx, &keys, now, self.retention, false).await {
                Ok(()) => {}
                Err(e) if storage::is_duplicate_key(&e) => return Err(Failure::KeysTaken),
                Err(e) => return Err(Failure::BeforeCommit(e)),
            }
        }

        // 2. The payments changed, locked in payment-id order without waiting: a row another transaction
        // holds (a busy payment, the consumer's foreign-key check) is skipped, and its requests go on alone
        // after this batch, so one busy payment never holds up the rest of the batch nor the writers.
        let mut ids: Vec<Uuid> = batch
            .iter()
            .filter_map(|j| match &j.command {
                Command::Change { payment_id, .. } => Some(payment_id.as_uuid()),
                Command::Authorize { .. } => None,
            })
            .collect();
        ids.sort();
        ids.dedup();
        let mut locked: HashMap<Uuid, (PaymentRecord, u32)> = HashMap::new();
        if !ids.is_empty() {
            for p in storage::lock_free_payments(tx, &ids)
                .await
                .map_err(Failure::BeforeCommit)?
            {
                let version = p.version;
                locked.insert(p.id.as_uuid(), (p, version));
            }
        }

        // 3. Each request's effect in arrival order: several changes of one payment apply in turn.
        let mut results: Vec<Result<Outcome, ApiError>> = Vec::with_capacity(batch.len());
        let mut new_payments: Vec<PaymentRecord> = Vec::new();
        let mut events: Vec<PaymentEvent> = Vec::new();
        let mut completions: Vec<KeyRow> = Vec::new();
        // Keys claimed above for requests left out of the batch: freed in it.
        let mut abandoned: Vec<&Keyed> = Vec::new();
        for (job, auth) in batch.iter().zip(authorizations) {
            // The requester is gone (client hung up, gateway timed out): alone, its transaction would
            // have been dropped and rolled back, so it is left out — nothing written, its key freed — and
            // a retry finds nothing done.
            if job.reply.is_closed() {
                abandoned.extend(&job.keyed);
                results.push(Err(ApiError::Internal(anyhow::anyhow!(
                    "the requester left before the commit"
                ))));
                continue;
            }
            let outcome = match (auth, &job.command) {
                (Some(Ok(e)), _) => {
                    new_payments.push(e.payment.clone());
                    Ok(e)
                }
                (Some(Err(e)), _) => Err(e),
                (
                    None,
                    Command::Change {
                        payment_id,
                        transition,
                        reason,
                    },
                ) => match locked.get_mut(&payment_id.as_uuid()) {
                    // Busy (skipped) or absent: alone it waits for the row or answers 404.
                    None => {
                        abandoned.extend(&job.keyed);
                        results.push(Ok(Outcome::Alone));
                        continue;
                    }
                    Some((p, _)) if p.merchant_id == job.merchant.as_str() => {
                        match effect::change(p.clone(), *transition, reason.clone()) {
                            Ok(e) => {
                                *p = e.payment.clone();
                                Ok(e)
                            }
                            Err(err) => Err(err),
                        }
                    }
                    _ => Err(ApiError::PaymentNotFound),
                },
                (None, Command::Authorize { .. }) => Err(ApiError::Internal(anyhow::anyhow!(
                    "an authorize without its effect"
                ))),
            };
            let is_change = matches!(job.command, Command::Change { .. });
            results.push(match outcome {
                Ok(e) => {
                    if is_change {
                        if let Some(k) = &job.keyed {
                            completions.push(KeyRow::completed(
                                k,
                                &e.saved,
                                Some(e.payment.id.as_uuid()),
                            ));
                        }
                    }
                    let effect = Some(e.event.event_type);
                    events.push(e.event);
                    Ok(Outcome::Written(Written {
                        saved: e.saved,
                        effect,
                    }))
                }
                Err(err) if effect::is_recorded_refusal(&err) && job.keyed.is_some() => {
                    let saved = effect::saved_refusal(&err);
                    if let (true, Some(k)) = (is_change, &job.keyed) {
                        completions.push(KeyRow::completed(k, &saved, None));
                    }
                    Ok(Outcome::Written(Written {
                        saved,
                        effect: None,
                    }))
                }
                // Alone, this request would have failed before writing anything: roll back and let it.
                Err(_) if job.keyed.is_some() => {
                    return Err(Failure::BeforeCommit(sqlx::Error::Protocol(
                        "a keyed request failed in its batch".into(),
                    )))
                }
                Err(err) => Err(err),
            });
        }

        // 4. The writes: changed rows (from the version read under the lock), new payments, events, and the
        // changes' keys completed with their responses.
        let mut changed: BTreeMap<Uuid, &(PaymentRecord, u32)> = BTreeMap::new();
        for (id, entry) in &locked {
            if entry.0.version != entry.1 {
                changed.insert(*id, entry);
            }
        }
        for (p, before) in changed.values() {
            storage::update_balances(tx, p, *before)
                .await
                .map_err(Failure::BeforeCommit)?;
        }
        storage::insert_payments(tx, &new_payments)
            .await
            .map_err(Failure::BeforeCommit)?;
        crate::outbox::enqueue_all(tx, &events)
            .await
            .map_err(Failure::BeforeCommit)?;
        if !abandoned.is_empty() {
            delete_keys(tx, &abandoned)
                .await
                .map_err(Failure::BeforeCommit)?;
        }
        if !completions.is_empty() {
            completions.sort_by(|a, b| (&a.merchant, &a.key).cmp(&(&b.merchant, &b.key)));
            insert_keys(tx, &completions, now, self.retention, true)
                .await
                .map_err(Failure::BeforeCommit)?;
        }
        Ok(results)
    }
}

/// Frees keys this transaction claimed for requests it leaves out.
async fn delete_keys(tx: &mut Tx, keys: &[&Keyed]) -> Result<(), sqlx::Error> {
    let mut q = QueryBuilder::<MySql>::new("DELETE FROM idempotency_keys WHERE ");
    push_key_list(&mut q, keys);
    q.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}

/// `(merchant_id = ? AND idempotency_key = ?) OR …` for `keys` (at least one).
fn push_key_list(q: &mut QueryBuilder<'_, MySql>, keys: &[&Keyed]) {
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            q.push(" OR ");
        }
        let (merchant, key) = identity(k);
        q.push("(merchant_id = ")
            .push_bind(merchant)
            .push(" AND idempotency_key = ")
            .push_bind(key)
            .push(")");
    }
}

/// A key as the database tells keys apart: (merchant, key).
fn identity(k: &Keyed) -> (String, String) {
    (k.merchant.as_str().to_owned(), k.key.as_str().to_owned())
}

/// One idempotency row as a batch writes it.
struct KeyRow {
    merchant: String,
    key: String,
    fingerprint: [u8; 32],
    response: Option<SavedResponse>,
    payment_id: Option<Uuid>,
}

impl KeyRow {
    fn claimed(k: &Keyed) -> Self {
        Self {
            merchant: k.merchant.as_str().to_owned(),
            key: k.key.as_str().to_owned(),
            fingerprint: k.fingerprint,
            response: None,
            payment_id: None,
        }
    }

    fn completed(k: &Keyed, saved: &SavedResponse, payment_id: Option<Uuid>) -> Self {
        Self {
            response: Some(saved.clone()),
            payment_id,
            ..Self::claimed(k)
        }
    }
}

/// Inserts `rows` in one statement; with `complete`, rows this transaction claimed are completed instead
/// (their response written over the claim).
async fn insert_keys(
    tx: &mut Tx,
    rows: &[KeyRow],
    now: time::OffsetDateTime,
    retention: time::Duration,
    complete: bool,
) -> Result<(), sqlx::Error> {
    let mut q = QueryBuilder::<MySql>::new(
        "INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_fingerprint, state, \
         response_status, response_body, payment_id, created_at, expires_at) ",
    );
    q.push_values(rows, |mut b, row| {
        let state = if row.response.is_some() {
            "COMPLETED"
        } else {
            "IN_PROGRESS"
        };
        b.push_bind(row.merchant.clone())
            .push_bind(row.key.clone())
            .push_bind(row.fingerprint.to_vec())
            .push_bind(state)
            .push_bind(row.response.as_ref().map(|r| r.status))
            .push_bind(row.response.as_ref().map(|r| r.body.clone()))
            .push_bind(row.payment_id)
            .push_bind(storage::to_db(now))
            .push_bind(storage::to_db(now + retention));
    });
    if complete {
        q.push(
            " ON DUPLICATE KEY UPDATE state = VALUES(state), response_status = VALUES(response_status), \
             response_body = VALUES(response_body), payment_id = VALUES(payment_id)",
        );
    }
    // One text per number of rows: not kept prepared (see `storage::insert_payments`).
    q.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}
