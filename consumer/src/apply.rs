//! Turning a batch of events into ledger legs: checks against the payment, dedup, one transaction.
//!
//! Exactly-once in effect comes from the schema: legs are unique on (event id, leg). Events already in
//! the ledger are skipped; if a concurrent writer (a rebalance) slips one in between the check and the
//! insert, the duplicate-key error makes us re-check and retry.

use payctl_db::{is_data_error, is_duplicate_key, to_db};
use payctl_domain::ledger::legs;
use payctl_domain::{EventType, PaymentEvent, EVENT_SCHEMA_VERSION};
use serde_json::Value;
use sqlx::{MySqlPool, Row};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// Why a message can never be applied: it goes to the DLQ with this type and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    pub error_type: &'static str,
    pub message: String,
}

impl Poison {
    fn new(error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            error_type,
            message: message.into(),
        }
    }
}

/// Parses and checks a message on its own (no database): envelope, type, version, topic.
pub fn parse(
    topic: &str,
    topic_prefix: &str,
    payload: Option<&[u8]>,
) -> Result<PaymentEvent, Poison> {
    let payload = payload.ok_or_else(|| Poison::new("EmptyPayload", "the message has no value"))?;
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| Poison::new("InvalidJson", e.to_string()))?;
    let event_type = value
        .get("eventType")
        .and_then(Value::as_str)
        .ok_or_else(|| Poison::new("InvalidEnvelope", "missing eventType"))?;
    let event_type = EventType::parse(event_type).ok_or_else(|| {
        Poison::new(
            "UnknownEventType",
            format!("unknown event type {event_type}"),
        )
    })?;
    let version = value.get("schemaVersion").and_then(Value::as_u64);
    if version != Some(u64::from(EVENT_SCHEMA_VERSION)) {
        return Err(Poison::new(
            "UnsupportedSchemaVersion",
            format!("schema version {version:?}; this consumer reads {EVENT_SCHEMA_VERSION}"),
        ));
    }
    let event: PaymentEvent =
        serde_json::from_value(value).map_err(|e| Poison::new("InvalidEnvelope", e.to_string()))?;
    let expected_topic = format!("{topic_prefix}{}", event_type.topic());
    if topic != expected_topic {
        return Err(Poison::new(
            "TopicMismatch",
            format!("{} event on topic {topic}", event_type.as_str()),
        ));
    }
    if event.amount <= 0 {
        return Err(Poison::new(
            "InvalidAmount",
            format!("amount {} is not positive", event.amount),
        ));
    }
    Ok(event)
}

/// Whether a failed batch is retried (held until it applies) rather than dead-lettered: every error
/// except one saying the event's own data is wrong. An unknown error is not the event's fault (the
/// database down, read-only, out of connections or disk, a revoked grant, a killed statement, a bad
/// deploy), and skipping a valid event loses money movements from the ledger; stalling only delays them.
pub fn is_transient(e: &sqlx::Error) -> bool {
    !is_data_error(e)
}

struct PaymentFacts {
    merchant_id: String,
    currency: String,
    amount: i64,
}

/// The outcome of a batch: per event index, `None` = applied (or already there), `Some` = poison.
pub struct Outcome {
    pub verdicts: Vec<Option<Poison>>,
    pub legs_written: u64,
    pub duplicates: u64,
}

/// Applies `events` in one transaction. Errors are returned for the caller to retry, except data errors
/// ([`is_data_error`]): those fall back to applying events one at a time, so the one bad event is
/// dead-lettered (`DatabaseRejected`) and the rest of the batch applied.
pub async fn apply(db: &MySqlPool, events: &[PaymentEvent]) -> Result<Outcome, sqlx::Error> {
    let mut result = apply_together(db, events).await;
    if matches!(&result, Err(e) if is_duplicate_key(e)) {
        // A concurrent writer (a rebalance) inserted some of these events between our check and our
        // insert: check again, which now skips them.
        result = apply_together(db, events).await;
    }
    match result {
        Ok(outcome) => Ok(outcome),
        Err(e) if is_transient(&e) => Err(e),
        Err(e) if events.len() == 1 => Ok(Outcome {
            verdicts: vec![Some(Poison::new("DatabaseRejected", e.to_string()))],
            legs_written: 0,
            duplicates: 0,
        }),
        Err(_) => {
            let mut total = Outcome {
                verdicts: Vec::with_capacity(events.len()),
                legs_written: 0,
                duplicates: 0,
            };
            for e in events {
                let one = Box::pin(apply(db, std::slice::from_ref(e))).await?;
                total.verdicts.extend(one.verdicts);
                total.legs_written += one.legs_written;
                total.duplicates += one.duplicates;
            }
            Ok(total)
        }
    }
}

fn in_list(n: usize) -> String {
    let mut s = "?,".repeat(n);
    s.pop();
    s
}

async fn apply_together(db: &MySqlPool, events: &[PaymentEvent]) -> Result<Outcome, sqlx::Error> {
    let mut verdicts: Vec<Option<Poison>> = vec![None; events.len()];
    if events.is_empty() {
        return Ok(Outcome {
            verdicts,
            legs_written: 0,
            duplicates: 0,
        });
    }
    let payment_ids: HashSet<Uuid> = events.iter().map(|e| e.payment_id.as_uuid()).collect();
    let sql = format!(
        "SELECT payment_id, merchant_id, currency, amount FROM payments WHERE payment_id IN ({})",
        in_list(payment_ids.len())
    );
    let mut q = sqlx::query(&sql);
    for id in &payment_ids {
        q = q.bind(*id);
    }
    let mut payments = HashMap::new();
    for r in q.fetch_all(db).await? {
        payments.insert(
            r.try_get::<Uuid, _>("payment_id")?,
            PaymentFacts {
                merchant_id: r.try_get("merchant_id")?,
                currency: r.try_get("currency")?,
                amount: r.try_get("amount")?,
            },
        );
    }
    for (i, e) in events.iter().enumerate() {
        verdicts[i] = match payments.get(&e.payment_id.as_uuid()) {
            None => Some(Poison::new(
                "UnknownPayment",
                format!("payment {} does not exist", e.payment_id),
            )),
            Some(p) if p.merchant_id != e.merchant_id => Some(Poison::new(
                "MerchantMismatch",
                format!(
                    "event says merchant {}, payment belongs to {}",
                    e.merchant_id, p.merchant_id
                ),
            )),
            Some(p) if p.currency != e.currency => Some(Poison::new(
                "CurrencyMismatch",
                format!("event says {}, payment is in {}", e.currency, p.currency),
            )),
            Some(p) if e.amount > p.amount => Some(Poison::new(
                "AmountMismatch",
                format!(
                    "event moves {}, payment was authorized for {}",
                    e.amount, p.amount
                ),
            )),
            Some(_) => None,
        };
    }

    let event_ids: HashSet<Uuid> = events.iter().map(|e| e.event_id.as_uuid()).collect();
    let sql = format!(
        "SELECT DISTINCT event_id FROM ledger_entries WHERE event_id IN ({})",
        in_list(event_ids.len())
    );
    let mut q = sqlx::query_scalar::<_, Uuid>(&sql);
    for id in &event_ids {
        q = q.bind(*id);
    }
    let mut seen: HashSet<Uuid> = q.fetch_all(db).await?.into_iter().collect();
    let mut duplicates = 0;
    let mut rows = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if verdicts[i].is_some() {
            continue;
        }
        if !seen.insert(e.event_id.as_uuid()) {
            duplicates += 1;
            continue;
        }
        for leg in legs(e.event_type, e.amount) {
            rows.push((e, leg));
        }
    }
    if !rows.is_empty() {
        let mut tx = db.begin().await?;
        for chunk in rows.chunks(1000) {
            let mut sql = String::from(
                "INSERT INTO ledger_entries (event_id, leg, payment_id, merchant_id, event_type, account, \
                 side, amount, currency, occurred_at) VALUES ",
            );
            sql.push_str(&vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", "));
            let mut q = sqlx::query(&sql);
            for (e, leg) in chunk {
                q = q
                    .bind(e.event_id.as_uuid())
                    .bind(leg.leg)
                    .bind(e.payment_id.as_uuid())
                    .bind(&e.merchant_id)
                    .bind(e.event_type.as_str())
                    .bind(leg.account)
                    .bind(leg.side.code())
                    .bind(leg.amount)
                    .bind(&e.currency)
                    .bind(to_db(e.occurred_at));
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    Ok(Outcome {
        verdicts,
        legs_written: rows.len() as u64,
        duplicates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_sorts_poison_by_kind() {
        let cases: [(&[u8], &str); 4] = [
            (b"not json", "InvalidJson"),
            (
                br#"{"eventType":"PAYMENT_EXPLODED","schemaVersion":1}"#,
                "UnknownEventType",
            ),
            (
                br#"{"eventType":"PAYMENT_CAPTURED","schemaVersion":9}"#,
                "UnsupportedSchemaVersion",
            ),
            (
                br#"{"eventType":"PAYMENT_CAPTURED","schemaVersion":1}"#,
                "InvalidEnvelope",
            ),
        ];
        for (payload, kind) in cases {
            let err = parse("payment.captured", "", Some(payload)).unwrap_err();
            assert_eq!(err.error_type, kind, "{}", String::from_utf8_lossy(payload));
        }
        assert_eq!(parse("t", "", None).unwrap_err().error_type, "EmptyPayload");
    }

    #[test]
    fn only_data_errors_are_not_retried() {
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_transient(&sqlx::Error::RowNotFound));
        assert!(is_transient(&sqlx::Error::Decode("schema drift".into())));
        assert!(!is_transient(&sqlx::Error::Encode(
            "a value that cannot be sent".into()
        )));
    }
}
