//! The ledger's invariants (DESIGN §7), as one function `payctl reconcile` and the tests call.
//!
//! Each check is one SQL query that lists its violations, so a report names exactly which currency,
//! event or payment is wrong.

use payctl_domain::ledger::{AUTHORIZATION_HOLD, MERCHANT_PAYABLE, PAYOUT_EVENT_TYPE};
use serde::Serialize;
use sqlx::{MySqlPool, Row};
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub subject: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub violations: Vec<Violation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.checks.iter().all(|c| c.violations.is_empty())
    }

    pub fn violations(&self) -> usize {
        self.checks.iter().map(|c| c.violations.len()).sum()
    }
}

/// Runs every check. Events younger than `settle` are not yet expected to be published or in the
/// ledger (the relay and the consumer are asynchronous).
pub async fn check(db: &MySqlPool, settle: Duration) -> Result<Report, sqlx::Error> {
    let settle_us = settle.as_micros() as i64;
    let mut checks = Vec::new();

    let rows = sqlx::query(
        "SELECT currency, CAST(SUM(IF(side = 'D', amount, 0)) AS SIGNED) AS d, \
         CAST(SUM(IF(side = 'C', amount, 0)) AS SIGNED) AS c \
         FROM ledger_entries GROUP BY currency HAVING d <> c",
    )
    .fetch_all(db)
    .await?;
    checks.push(Check {
        name: "debits equal credits in every currency",
        violations: rows
            .iter()
            .map(|r| Violation {
                subject: r.get::<String, _>("currency"),
                // The imbalance alone, not the totals: balanced traffic leaves it as it was, so a
                // report taken later (`payctl load`'s before and after) tells an old imbalance from
                // a grown one.
                detail: format!(
                    "debits − credits = {}",
                    r.get::<i64, _>("d") - r.get::<i64, _>("c")
                ),
            })
            .collect(),
    });

    let rows = sqlx::query(
        "SELECT event_id, CAST(SUM(IF(side = 'D', amount, -amount)) AS SIGNED) AS net, \
         COUNT(DISTINCT currency) AS currencies FROM ledger_entries GROUP BY event_id \
         HAVING net <> 0 OR currencies <> 1",
    )
    .fetch_all(db)
    .await?;
    checks.push(Check {
        name: "every event's legs balance",
        violations: rows
            .iter()
            .map(|r| Violation {
                subject: format!("event {}", r.get::<uuid::Uuid, _>("event_id")),
                detail: format!("debits − credits = {}", r.get::<i64, _>("net")),
            })
            .collect(),
    });

    let rows = sqlx::query(
        "SELECT p.payment_id, p.captured_amount - p.refunded_amount AS expected, \
         CAST(COALESCE(l.net, 0) AS SIGNED) AS actual FROM payments p LEFT JOIN ( \
           SELECT payment_id, SUM(IF(side = 'C', amount, -amount)) AS net FROM ledger_entries \
           WHERE account = ? AND event_type <> ? GROUP BY payment_id) l ON l.payment_id = p.payment_id \
         WHERE p.updated_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND \
           AND p.captured_amount - p.refunded_amount <> COALESCE(l.net, 0)",
    )
    .bind(MERCHANT_PAYABLE)
    // Payouts move it on to the acquirer's remittance (`payctl settle`); their legs are checked with the
    // payouts (pay-settlement's invariants).
    .bind(PAYOUT_EVENT_TYPE)
    .bind(settle_us)
    .fetch_all(db)
    .await?;
    checks.push(Check {
        name: "ledger net equals captured − refunded for every payment",
        violations: rows
            .iter()
            .map(|r| Violation {
                subject: format!("payment {}", r.get::<uuid::Uuid, _>("payment_id")),
                detail: format!(
                    "expected {}, ledger has {}",
                    r.get::<i64, _>("expected"),
                    r.get::<i64, _>("actual")
                ),
            })
            .collect(),
    });

    let rows = sqlx::query(
        "SELECT p.payment_id, p.amount - p.captured_amount - p.voided_amount AS expected, \
         CAST(COALESCE(l.net, 0) AS SIGNED) AS actual FROM payments p LEFT JOIN ( \
           SELECT payment_id, SUM(IF(side = 'D', amount, -amount)) AS net FROM ledger_entries \
           WHERE account = ? GROUP BY payment_id) l ON l.payment_id = p.payment_id \
         WHERE p.updated_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND \
           AND p.amount - p.captured_amount - p.voided_amount <> COALESCE(l.net, 0)",
    )
    .bind(AUTHORIZATION_HOLD)
    .bind(settle_us)
    .fetch_all(db)
    .await?;
    checks.push(Check {
        name: "authorization hold equals authorized − captured − voided for every payment",
        violations: rows
            .iter()
            .map(|r| Violation {
                subject: format!("payment {}", r.get::<uuid::Uuid, _>("payment_id")),
                detail: format!(
                    "expected {} held, ledger holds {}",
                    r.get::<i64, _>("expected"),
                    r.get::<i64, _>("actual")
                ),
            })
            .collect(),
    });

    let rows = sqlx::query(
        "SELECT event_id, event_type, created_at FROM outbox_events WHERE published_at IS NULL \
         AND created_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND ORDER BY id LIMIT 100",
    )
    .bind(settle_us)
    .fetch_all(db)
    .await?;
    checks.push(Check {
        name: "nothing is stuck in the outbox",
        violations: rows
            .iter()
            .map(|r| Violation {
                subject: format!("event {}", r.get::<uuid::Uuid, _>("event_id")),
                detail: format!("{} not published", r.get::<String, _>("event_type")),
            })
            .collect(),
    });

    let rows = sqlx::query(
        "SELECT o.event_id, o.event_type, COUNT(l.entry_id) AS legs FROM outbox_events o \
         LEFT JOIN ledger_entries l ON l.event_id = o.event_id \
         WHERE o.published_at IS NOT NULL AND o.published_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND \
         GROUP BY o.id, o.event_id, o.event_type \
         HAVING legs <> IF(o.event_type = 'PAYMENT_CAPTURED', 4, 2) LIMIT 100",
    )
    .bind(settle_us)
    .fetch_all(db)
    .await?;
    checks.push(Check {
        name: "every published event has exactly its ledger legs",
        violations: rows
            .iter()
            .map(|r| Violation {
                subject: format!("event {}", r.get::<uuid::Uuid, _>("event_id")),
                detail: format!(
                    "{} has {} legs",
                    r.get::<String, _>("event_type"),
                    r.get::<i64, _>("legs")
                ),
            })
            .collect(),
    });

    let rows = sqlx::query(
        "SELECT DISTINCT l.event_id FROM ledger_entries l LEFT JOIN outbox_events o ON o.event_id = l.event_id \
         WHERE o.id IS NULL AND l.event_type <> ? AND l.recorded_at > \
           COALESCE((SELECT purged_through FROM outbox_purged WHERE id = 1), '1000-01-01') LIMIT 100",
    )
    .bind(PAYOUT_EVENT_TYPE)
    .fetch_all(db)
    .await?;
    checks.push(Check {
        name: "every ledger leg comes from a committed event",
        violations: rows
            .iter()
            .map(|r| Violation {
                subject: format!("event {}", r.get::<uuid::Uuid, _>("event_id")),
                detail: "ledger legs without an outbox event".into(),
            })
            .collect(),
    });
    Ok(Report { checks })
}

/// The `errorType` of the settlement worker's DLQ records (pay-settlement's `dlq::ERROR_TYPE`).
pub const SETTLEMENT_FAILED: &str = "SETTLEMENT_FAILED";

/// "Nothing is left unexplained in the DLQ": a record is explained when it can never apply (not an
/// event, unknown payment, contradicts the payment) or its event is in the ledger after all. A record
/// that would apply now — its cause was fixed — must be replayed, and is reported.
///
/// A settlement worker's record (`SETTLEMENT_FAILED`) is about the acquirer, not the ledger (its event
/// is usually in the ledger): it is explained once its settlement is SETTLED (replayed, or a late
/// answer), and reported while the settlement is anything else.
/// `records` are (id as `partition:offset`, the DLQ record's JSON).
pub async fn dlq_check(
    db: &MySqlPool,
    records: &[(String, serde_json::Value)],
) -> Result<Check, sqlx::Error> {
    let mut violations = Vec::new();
    for (id, record) in records {
        if record["errorType"].as_str() == Some(SETTLEMENT_FAILED) {
            if let Some(v) = settlement_violation(db, id, record).await? {
                violations.push(v);
            }
            continue;
        }
        let topic = record["originalTopic"].as_str().unwrap_or_default();
        let payload = record["payload"].as_str().map(str::as_bytes);
        // The topic prefix is whatever precedes the base topic name.
        let prefix = payctl_domain::EventType::ALL
            .iter()
            .find_map(|t| topic.strip_suffix(t.topic()))
            .unwrap_or_default();
        let Ok(event) = crate::apply::parse(topic, prefix, payload) else {
            continue; // poison by shape: explained by its errorType
        };
        let payment: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT merchant_id, currency, amount FROM payments WHERE payment_id = ?",
        )
        .bind(event.payment_id.as_uuid())
        .fetch_optional(db)
        .await?;
        let Some((merchant, currency, amount)) = payment else {
            continue; // unknown payment: explained
        };
        if merchant != event.merchant_id || currency != event.currency || event.amount > amount {
            continue; // contradicts the payment: explained
        }
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries WHERE event_id = ?")
                .bind(event.event_id.as_uuid())
                .fetch_one(db)
                .await?;
        if applied == 0 {
            violations.push(Violation {
                subject: format!("DLQ record {id}"),
                detail: format!(
                    "{} for payment {} would apply now; replay it: payctl dlq replay --id {id}",
                    event.event_type.as_str(),
                    event.payment_id
                ),
            });
        }
    }
    Ok(Check {
        name: "nothing unexplained in the DLQ",
        violations,
    })
}

/// A `SETTLEMENT_FAILED` record is explained only by its settlement being SETTLED.
async fn settlement_violation(
    db: &MySqlPool,
    id: &str,
    record: &serde_json::Value,
) -> Result<Option<Violation>, sqlx::Error> {
    let event_id = record["payload"]
        .as_str()
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .and_then(|p| {
            p["eventId"]
                .as_str()
                .and_then(|e| uuid::Uuid::parse_str(e).ok())
        });
    let Some(event_id) = event_id else {
        return Ok(Some(Violation {
            subject: format!("DLQ record {id}"),
            detail: "SETTLEMENT_FAILED record without a readable event id".into(),
        }));
    };
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM settlements WHERE event_id = ?")
            .bind(event_id)
            .fetch_optional(db)
            .await?;
    Ok(match status.as_deref() {
        Some("SETTLED") => None,
        other => Some(Violation {
            subject: format!("DLQ record {id}"),
            detail: format!(
                "settlement of event {event_id} is {}; fix the cause and replay it: payctl dlq replay --id {id}",
                other.unwrap_or("missing")
            ),
        }),
    })
}
