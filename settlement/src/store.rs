//! The settlements table (`domain/migrations/0005_settlements.sql`): every statement the worker runs.
//!
//! Each outcome write is guarded so that a late or stale answer can never undo a newer state: a retry
//! or a failure is written only by the holder of the latest lease (`lease_id`), and SETTLED, being the
//! acquirer's own word for this key (any call with it replays the same settlement), is written by any
//! answer but never over an earlier SETTLED.

use crate::acquirer::{Settled, SettlementRequest};
use payctl_db::{is_data_error, to_db};
use payctl_domain::settlement::SettlementType;
use payctl_domain::{Currency, EventId, MerchantId, PaymentId};
use sqlx::{MySqlPool, Row};
use std::time::Duration;
use uuid::Uuid;

/// A capture or refund as read from Kafka, to be recorded.
#[derive(Debug, Clone)]
pub struct NewSettlement {
    pub request: SettlementRequest,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// The message's value, verbatim: what the DLQ record carries and a replay sends back.
    pub payload: String,
    /// The message carries `replayedFrom` (`payctl dlq replay`): a FAILED record goes back to PENDING.
    pub replayed: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Recorded {
    pub inserted: u64,
    pub reset: u64,
    /// Events the database refused for their data (a value the columns cannot hold): not recorded, so
    /// the caller must dead-letter each before storing its offset.
    pub refused: Vec<Refused>,
}

/// An event the database refused for its data, and why.
#[derive(Debug, Clone)]
pub struct Refused {
    pub settlement: NewSettlement,
    pub error: String,
}

fn in_list(n: usize) -> String {
    let mut s = "?,".repeat(n);
    s.pop();
    s
}

fn micros(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

/// Records a batch in one transaction: new events as PENDING (an event already recorded is left as it
/// is), and replayed FAILED ones back to PENDING with their attempts reset. An error is for the caller
/// to retry, except a data error, which isolates the one bad event (not recorded, returned in `refused`
/// for the caller to dead-letter).
pub async fn record(db: &MySqlPool, batch: &[NewSettlement]) -> Result<Recorded, sqlx::Error> {
    match record_together(db, batch).await {
        Err(e) if is_data_error(&e) && batch.len() > 1 => {
            let mut total = Recorded::default();
            for one in batch {
                let r = Box::pin(record(db, std::slice::from_ref(one))).await?;
                total.inserted += r.inserted;
                total.reset += r.reset;
                total.refused.extend(r.refused);
            }
            Ok(total)
        }
        Err(e) if is_data_error(&e) => {
            tracing::error!(error = %e, event = %batch[0].request.event_id, "the database refused a settlement's data; to the DLQ");
            Ok(Recorded {
                refused: vec![Refused {
                    settlement: batch[0].clone(),
                    error: format!("the settlement could not be recorded: {e}"),
                }],
                ..Recorded::default()
            })
        }
        other => other,
    }
}

async fn record_together(db: &MySqlPool, batch: &[NewSettlement]) -> Result<Recorded, sqlx::Error> {
    let mut out = Recorded::default();
    if batch.is_empty() {
        return Ok(out);
    }
    let mut tx = db.begin().await?;
    for chunk in batch.chunks(500) {
        let mut sql = String::from(
            "INSERT INTO settlements (event_id, payment_id, merchant_id, type, amount, currency, status, \
             next_attempt_at, topic, kafka_partition, kafka_offset, kafka_key, payload, created_at, updated_at) \
             VALUES ",
        );
        sql.push_str(
            &vec![
                "(?, ?, ?, ?, ?, ?, 'PENDING', UTC_TIMESTAMP(6), ?, ?, ?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))";
                chunk.len()
            ]
            .join(", "),
        );
        // A redelivered event is already there: a no-op, not an error (INSERT IGNORE would also turn
        // data errors into silently stored wrong values).
        sql.push_str(" ON DUPLICATE KEY UPDATE event_id = event_id");
        let mut q = sqlx::query(&sql);
        for s in chunk {
            let r = &s.request;
            q = q
                .bind(r.event_id.as_uuid())
                .bind(r.payment_id.as_uuid())
                .bind(r.merchant_id.as_str())
                .bind(r.kind.as_str())
                .bind(r.amount)
                .bind(r.currency.code())
                .bind(&s.topic)
                .bind(s.partition)
                .bind(s.offset)
                .bind(s.key.as_deref())
                .bind(&s.payload);
        }
        out.inserted += q.execute(&mut *tx).await?.rows_affected();
    }
    for s in batch.iter().filter(|s| s.replayed) {
        out.reset += sqlx::query(
            "UPDATE settlements SET status = 'PENDING', attempts = 0, next_attempt_at = UTC_TIMESTAMP(6), \
             last_error = NULL, dlq_published_at = NULL, updated_at = UTC_TIMESTAMP(6) \
             WHERE event_id = ? AND status = 'FAILED'",
        )
        .bind(s.request.event_id.as_uuid())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(out)
}

/// When a record `s` may be sent to the acquirer: only what our books hold is paid out, and a refund
/// only once its payment's captures cover it.
///
/// - Its event is in the ledger with the very payment, merchant, currency and amount the record carries
///   (its `merchant_payable` leg). An event the ledger consumer refused (unknown payment, another
///   merchant's, more than was authorized) is never settled: it waits, and the ledger's DLQ record
///   explains it.
/// - A refund: the payment's SETTLED captures at least equal all of its refunds the ledger holds. A refund
///   settled before its capture (they come on different topics, in no set order) or after its capture
///   failed would debit the merchant at the acquirer for money it was never credited.
const SETTLEABLE: &str = "EXISTS (SELECT 1 FROM ledger_entries l WHERE l.event_id = s.event_id \
     AND l.account = 'merchant_payable' AND l.payment_id = s.payment_id AND l.merchant_id = s.merchant_id \
     AND l.currency = s.currency AND l.amount = s.amount) \
     AND (s.type = 'CAPTURE' OR ( \
       SELECT COALESCE(SUM(c.amount), 0) FROM settlements c \
       WHERE c.payment_id = s.payment_id AND c.type = 'CAPTURE' AND c.status = 'SETTLED') >= ( \
       SELECT COALESCE(SUM(r.amount), 0) FROM settlements r \
       WHERE r.payment_id = s.payment_id AND r.type = 'REFUND' \
         AND EXISTS (SELECT 1 FROM ledger_entries rl WHERE rl.event_id = r.event_id)))";

/// Due records a claim looks at (at least): those that may not be sent yet are put back, so a backlog
/// of them — events the ledger refused, or a ledger behind — is cleared this many at a time instead of
/// standing in front of what may be sent.
const LOOK_AT: usize = 512;

/// `last_error` of a record put back because it may not be sent yet (see [`SETTLEABLE`]).
pub const WAITING: &str =
    "waiting: its event is not in the ledger, or (a refund) its payment's captures are not settled";

/// A settlement this worker holds a lease on and may now submit.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub request: SettlementRequest,
    /// Calls made for it, this one included.
    pub attempts: u32,
    pub lease_id: u64,
}

/// A row that cannot be turned back into a request (edited by hand?): it is failed, never sent.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub event_id: Uuid,
    pub lease_id: u64,
    pub reason: String,
}

/// Claims up to `limit` due settlements (PENDING and due, or SUBMITTED with an expired lease) in one
/// transaction: SKIP LOCKED, so concurrent workers take disjoint sets; marks them SUBMITTED with a
/// lease of `lease` and one more attempt, and commits before anything is sent.
pub async fn claim(
    db: &MySqlPool,
    limit: usize,
    lease: Duration,
) -> Result<(Vec<Claimed>, Vec<Unreadable>), sqlx::Error> {
    if limit == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut tx = db.begin().await?;
    // The oldest due records are read first without locks, with whether each may be sent (a consistent
    // read of the ledger and of the payment's other settlements); only those that may are then locked.
    // Both conditions, once true, stay true (ledger legs are never removed, a SETTLED capture never
    // changes), so a row that is still due when locked may be sent. Those that may not are put back with a
    // delay growing with their age (1 s up to 5 min): a refund waiting for its capture is looked at again
    // soon, while an event the ledger refused, which waits for good, costs a look every few minutes rather
    // than a scan at every claim.
    // One status at a time, so each reads its (status, next_attempt_at) index range in order and stops
    // at the limit (with `status IN (…)` the server reads every due row of both and sorts them).
    let look_at = limit.max(LOOK_AT) as u64;
    let due: Vec<(Uuid, i64)> = sqlx::query_as(&format!(
        "SELECT s.event_id, CAST(({SETTLEABLE}) AS SIGNED) FROM ( \
           (SELECT event_id, payment_id, merchant_id, type, amount, currency, next_attempt_at FROM settlements \
            WHERE status = 'PENDING' AND next_attempt_at <= UTC_TIMESTAMP(6) ORDER BY next_attempt_at LIMIT ?) \
           UNION ALL \
           (SELECT event_id, payment_id, merchant_id, type, amount, currency, next_attempt_at FROM settlements \
            WHERE status = 'SUBMITTED' AND next_attempt_at <= UTC_TIMESTAMP(6) ORDER BY next_attempt_at LIMIT ?) \
         ) s ORDER BY s.next_attempt_at LIMIT ?"
    ))
    .bind(look_at)
    .bind(look_at)
    .bind(look_at)
    .fetch_all(&mut *tx)
    .await?;
    let waiting: Vec<Uuid> = due
        .iter()
        .filter(|(_, ok)| *ok == 0)
        .map(|(id, _)| *id)
        .collect();
    if !waiting.is_empty() {
        let sql = format!(
            "UPDATE settlements SET next_attempt_at = UTC_TIMESTAMP(6) + INTERVAL LEAST(300000000, \
             GREATEST(1000000, TIMESTAMPDIFF(MICROSECOND, created_at, UTC_TIMESTAMP(6)) DIV 4)) MICROSECOND, \
             last_error = COALESCE(last_error, ?), updated_at = UTC_TIMESTAMP(6) \
             WHERE event_id IN ({}) AND status = 'PENDING'",
            in_list(waiting.len())
        );
        let mut q = sqlx::query(&sql).bind(WAITING);
        for id in &waiting {
            q = q.bind(*id);
        }
        q.execute(&mut *tx).await?;
    }
    let candidates: Vec<Uuid> = due
        .iter()
        .filter(|(_, ok)| *ok != 0)
        .map(|(id, _)| *id)
        .take(limit)
        .collect();
    if candidates.is_empty() {
        tx.commit().await?;
        return Ok((Vec::new(), Vec::new()));
    }
    let sql = format!(
        "SELECT event_id FROM settlements WHERE event_id IN ({}) AND status IN ('PENDING', 'SUBMITTED') \
         AND next_attempt_at <= UTC_TIMESTAMP(6) FOR UPDATE SKIP LOCKED",
        in_list(candidates.len())
    );
    let mut q = sqlx::query_scalar(&sql);
    for id in &candidates {
        q = q.bind(*id);
    }
    let ids: Vec<Uuid> = q.fetch_all(&mut *tx).await?;
    if ids.is_empty() {
        tx.commit().await?;
        return Ok((Vec::new(), Vec::new()));
    }
    let list = in_list(ids.len());
    let sql = format!(
        "UPDATE settlements SET status = 'SUBMITTED', attempts = attempts + 1, lease_id = lease_id + 1, \
         next_attempt_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, updated_at = UTC_TIMESTAMP(6) \
         WHERE event_id IN ({list})"
    );
    let mut q = sqlx::query(&sql).bind(micros(lease));
    for id in &ids {
        q = q.bind(*id);
    }
    q.execute(&mut *tx).await?;
    let sql = format!(
        "SELECT event_id, payment_id, merchant_id, type, amount, currency, attempts, lease_id \
         FROM settlements WHERE event_id IN ({list})"
    );
    let mut q = sqlx::query(&sql);
    for id in &ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    let mut claimed = Vec::with_capacity(rows.len());
    let mut unreadable = Vec::new();
    for r in rows {
        let event_id: Uuid = r.try_get("event_id")?;
        let lease_id: u64 = r.try_get("lease_id")?;
        let merchant: String = r.try_get("merchant_id")?;
        let kind: String = r.try_get("type")?;
        let currency: String = r.try_get("currency")?;
        let parsed = (
            MerchantId::parse("merchant_id", &merchant),
            SettlementType::parse(&kind),
            Currency::parse("currency", &currency),
        );
        match parsed {
            (Ok(merchant_id), Some(kind), Ok(currency)) => claimed.push(Claimed {
                request: SettlementRequest {
                    kind,
                    merchant_id,
                    payment_id: PaymentId::from_uuid(r.try_get("payment_id")?),
                    event_id: EventId::from_uuid(event_id),
                    amount: r.try_get("amount")?,
                    currency,
                },
                attempts: r.try_get("attempts")?,
                lease_id,
            }),
            _ => unreadable.push(Unreadable {
                event_id,
                lease_id,
                reason: format!(
                    "unreadable row: merchant {merchant:?}, type {kind:?}, currency {currency:?}"
                ),
            }),
        }
    }
    Ok((claimed, unreadable))
}

/// Records the acquirer's settlement. Returns whether the row changed (false: it was already SETTLED).
pub async fn settled(db: &MySqlPool, s: &Settled) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE settlements SET status = 'SETTLED', acquirer_reference = ?, fee = ?, net = ?, settled_at = ?, \
         business_date = ?, last_error = NULL, updated_at = UTC_TIMESTAMP(6) \
         WHERE event_id = ? AND status <> 'SETTLED'",
    )
    .bind(&s.reference)
    .bind(s.fee)
    .bind(s.net)
    .bind(to_db(s.settled_at))
    .bind(s.business_date)
    .bind(s.event_id.as_uuid())
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn clip(error: &str) -> String {
    error.chars().take(500).collect()
}

/// Back to PENDING, due after `delay`, if this lease is still the latest.
pub async fn retry_later(
    db: &MySqlPool,
    event_id: Uuid,
    lease_id: u64,
    delay: Duration,
    error: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE settlements SET status = 'PENDING', next_attempt_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, \
         last_error = ?, updated_at = UTC_TIMESTAMP(6) \
         WHERE event_id = ? AND lease_id = ? AND status = 'SUBMITTED'",
    )
    .bind(micros(delay))
    .bind(clip(error))
    .bind(event_id)
    .bind(lease_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// FAILED for good (to be published to the DLQ), if this lease is still the latest.
pub async fn fail(
    db: &MySqlPool,
    event_id: Uuid,
    lease_id: u64,
    error: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE settlements SET status = 'FAILED', last_error = ?, dlq_published_at = NULL, \
         updated_at = UTC_TIMESTAMP(6) WHERE event_id = ? AND lease_id = ? AND status = 'SUBMITTED'",
    )
    .bind(clip(error))
    .bind(event_id)
    .bind(lease_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives a claim back unused (the breaker refused the call): due now, the attempt not counted.
pub async fn release(db: &MySqlPool, event_id: Uuid, lease_id: u64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE settlements SET status = 'PENDING', attempts = attempts - 1, next_attempt_at = UTC_TIMESTAMP(6), \
         updated_at = UTC_TIMESTAMP(6) WHERE event_id = ? AND lease_id = ? AND status = 'SUBMITTED'",
    )
    .bind(event_id)
    .bind(lease_id)
    .execute(db)
    .await?;
    Ok(())
}

/// A FAILED settlement whose DLQ record is not yet published.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub event_id: Uuid,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: String,
    pub last_error: Option<String>,
    pub attempts: u32,
}

/// Up to `limit` FAILED, unpublished settlements, locked (SKIP LOCKED) in `tx` until it ends, so two
/// workers never publish one twice.
pub async fn dead_letters(
    tx: &mut payctl_db::Tx,
    limit: usize,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT event_id, topic, kafka_partition, kafka_offset, kafka_key, payload, last_error, attempts \
         FROM settlements WHERE status = 'FAILED' AND dlq_published_at IS NULL LIMIT ? FOR UPDATE SKIP LOCKED",
    )
    .bind(limit as u64)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(DeadLetter {
                event_id: r.try_get("event_id")?,
                topic: r.try_get("topic")?,
                partition: r.try_get("kafka_partition")?,
                offset: r.try_get("kafka_offset")?,
                key: r.try_get("kafka_key")?,
                payload: r.try_get("payload")?,
                last_error: r.try_get("last_error")?,
                attempts: r.try_get("attempts")?,
            })
        })
        .collect()
}

pub async fn dead_letter_published(
    tx: &mut payctl_db::Tx,
    event_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE settlements SET dlq_published_at = UTC_TIMESTAMP(6), updated_at = UTC_TIMESTAMP(6) \
         WHERE event_id = ?",
    )
    .bind(event_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// (records per status, age in seconds of the oldest record not yet SETTLED or FAILED and not put back as
/// [`WAITING`]). A record waiting for the ledger is the ledger's backlog (or a refusal in its DLQ), not
/// ours; one waiting for its capture is counted with the capture.
pub async fn gauges(db: &MySqlPool) -> Result<(Vec<(String, i64)>, f64), sqlx::Error> {
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM settlements GROUP BY status")
            .fetch_all(db)
            .await?;
    let oldest: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(TIMESTAMPDIFF(MICROSECOND, MIN(created_at), UTC_TIMESTAMP(6)) AS SIGNED) \
         FROM settlements WHERE status IN ('PENDING', 'SUBMITTED') AND NOT (last_error <=> ?)",
    )
    .bind(WAITING)
    .fetch_one(db)
    .await?;
    Ok((counts, oldest.unwrap_or(0).max(0) as f64 / 1e6))
}
