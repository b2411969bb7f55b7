//! The verdict of a chaos run: the platform's state compared with what every client was told.
//!
//! * every acknowledged operation is there exactly once, with the acknowledged amounts;
//! * no payment exists for these merchants that no client asked for, and each key has one payment;
//! * each payment change has exactly one event, and the ledger holds what the payments say;
//! * an operation a client gave up on (no answer before its deadline) may or may not have happened;
//!   either is accepted, nothing in between.

use super::driver::{Answer, Op, Record};
use serde::Serialize;
use sqlx::{MySqlPool, Row};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub subject: String,
    pub detail: String,
}

fn violation(subject: impl Into<String>, detail: impl Into<String>) -> Violation {
    Violation {
        subject: subject.into(),
        detail: detail.into(),
    }
}

/// What the answers say one payment must look like.
#[derive(Debug, Default)]
struct Expected {
    merchant: String,
    amount: i64,
    /// Acknowledged captures and refunds, and the amounts of ones whose fate is unknown.
    captured: i64,
    refunded: i64,
    maybe_captured: i64,
    maybe_refunded: i64,
}

/// One payment as stored.
struct Stored {
    merchant: String,
    amount: i64,
    captured: i64,
    refunded: i64,
}

/// Waits (polling, bounded) until `query` counts 0; returns how long it took, or None on time-out.
pub async fn wait_for_zero(
    db: &MySqlPool,
    query: &str,
    binds: &[String],
    limit: Duration,
) -> anyhow::Result<Option<Duration>> {
    let started = Instant::now();
    loop {
        let mut q = sqlx::query_scalar::<_, i64>(query);
        for b in binds {
            q = q.bind(b);
        }
        match q.fetch_one(db).await {
            Ok(0) => return Ok(Some(started.elapsed())),
            Ok(_) => {}
            Err(e) if payctl_db::is_unavailable(&e) => {}
            Err(e) => return Err(e.into()),
        }
        if started.elapsed() >= limit {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub fn in_list(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Unpublished events of these merchants' payments.
pub fn unpublished(merchants: usize) -> String {
    format!(
        "SELECT COUNT(*) FROM outbox_events o JOIN payments p ON p.payment_id = o.payment_id \
         WHERE p.merchant_id IN ({}) AND o.published_at IS NULL",
        in_list(merchants)
    )
}

/// Events of these merchants' payments without ledger legs.
pub fn unapplied(merchants: usize) -> String {
    format!(
        "SELECT COUNT(*) FROM outbox_events o JOIN payments p ON p.payment_id = o.payment_id \
         WHERE p.merchant_id IN ({}) AND NOT EXISTS \
         (SELECT 1 FROM ledger_entries l WHERE l.event_id = o.event_id)",
        in_list(merchants)
    )
}

/// Compares the database with the record. `merchants` are the run's own (no one else pays as them).
pub async fn judge(
    db: &MySqlPool,
    merchants: &[String],
    record: &Record,
) -> anyhow::Result<Vec<Violation>> {
    let mut violations = Vec::new();
    let mut expected: HashMap<String, Expected> = HashMap::new();
    let mut asked_keys: Vec<(String, String)> = Vec::new();

    for a in &record.answers {
        if a.status != 200 {
            violations.push(violation(
                format!("{} {}", op_name(a.op), a.key),
                format!(
                    "a valid request was refused: {} {}",
                    a.status,
                    a.code.as_deref().unwrap_or("")
                ),
            ));
            continue;
        }
        let Some(id) = &a.payment_id else {
            violations.push(violation(
                format!("{} {}", op_name(a.op), a.key),
                "answered 200 without a payment id",
            ));
            continue;
        };
        // What the client was told must be what it asked for.
        let told = match a.op {
            Op::Authorize => a.answered_amount == Some(a.amount),
            Op::Capture => a.captured.is_some(),
            Op::Refund => a.refunded == Some(a.amount),
        } && a.answered_merchant.as_deref() == Some(a.merchant.as_str());
        if !told {
            violations.push(violation(
                format!("{} {}", op_name(a.op), a.key),
                format!(
                    "asked for {} as {}, answered amount {:?}, captured {:?}, refunded {:?} for {:?}",
                    a.amount,
                    a.merchant,
                    a.answered_amount,
                    a.captured,
                    a.refunded,
                    a.answered_merchant
                ),
            ));
        }
        let e = expected.entry(id.clone()).or_default();
        match a.op {
            Op::Authorize => {
                e.merchant = a.merchant.clone();
                e.amount = a.amount;
                asked_keys.push((a.merchant.clone(), a.key.clone()));
            }
            Op::Capture => e.captured += acknowledged(a, a.captured, &mut violations),
            Op::Refund => e.refunded += a.amount,
        }
    }
    for g in &record.gave_up {
        match (g.op, &g.payment_id) {
            (Op::Authorize, _) => asked_keys.push((g.merchant.clone(), g.key.clone())),
            (Op::Capture, Some(id)) => {
                expected.entry(id.clone()).or_default().maybe_captured += g.amount
            }
            (Op::Refund, Some(id)) => {
                expected.entry(id.clone()).or_default().maybe_refunded += g.amount
            }
            _ => {}
        }
    }

    // Every payment of the run's merchants — read before the keys: a key row commits with its payment,
    // so a payment that commits between the two reads cannot look like one nobody asked for.
    let sql = format!(
        "SELECT payment_id, merchant_id, amount, captured_amount, refunded_amount FROM payments \
         WHERE merchant_id IN ({})",
        in_list(merchants.len())
    );
    let mut q = sqlx::query(&sql);
    for m in merchants {
        q = q.bind(m);
    }
    let mut stored: HashMap<String, Stored> = HashMap::new();
    for r in q.fetch_all(db).await? {
        let id: uuid::Uuid = r.try_get("payment_id")?;
        stored.insert(
            id.hyphenated().to_string(),
            Stored {
                merchant: r.try_get("merchant_id")?,
                amount: r.try_get("amount")?,
                captured: r.try_get("captured_amount")?,
                refunded: r.try_get("refunded_amount")?,
            },
        );
    }

    // Which payment each key the clients used made (at most one row per key, by the primary key).
    let mut key_payment: HashMap<(String, String), Option<String>> = HashMap::new();
    for chunk in asked_keys.chunks(500) {
        let mut sql = String::from(
            "SELECT merchant_id, idempotency_key, payment_id FROM idempotency_keys WHERE ",
        );
        sql.push_str(&vec!["(merchant_id = ? AND idempotency_key = ?)"; chunk.len()].join(" OR "));
        let mut q = sqlx::query(&sql);
        for (m, k) in chunk {
            q = q.bind(m).bind(k);
        }
        for r in q.fetch_all(db).await? {
            let id: Option<uuid::Uuid> = r.try_get("payment_id")?;
            key_payment.insert(
                (r.try_get("merchant_id")?, r.try_get("idempotency_key")?),
                id.map(|u| u.hyphenated().to_string()),
            );
        }
    }

    // Acknowledged authorizations: their key made exactly that payment.
    for a in record
        .answers
        .iter()
        .filter(|a| a.op == Op::Authorize && a.status == 200)
    {
        let Some(id) = &a.payment_id else { continue };
        match key_payment.get(&(a.merchant.clone(), a.key.clone())) {
            Some(Some(p)) if p == id => {}
            Some(other) => violations.push(violation(
                format!("authorize {}", a.key),
                format!("the client was told payment {id}; the key's record names {other:?}"),
            )),
            None => violations.push(violation(
                format!("authorize {}", a.key),
                format!("acknowledged payment {id}, but its idempotency record is gone"),
            )),
        }
    }

    // Keys whose answer never came: the payment they made, if any, is asked for.
    let mut asked_for: HashSet<String> = expected.keys().cloned().collect();
    for g in record.gave_up.iter().filter(|g| g.op == Op::Authorize) {
        if let Some(Some(p)) = key_payment.get(&(g.merchant.clone(), g.key.clone())) {
            asked_for.insert(p.clone());
            let e = expected.entry(p.clone()).or_default();
            e.merchant = g.merchant.clone();
            e.amount = g.amount;
        }
    }

    for (id, s) in &stored {
        if !asked_for.contains(id) {
            violations.push(violation(
                format!("payment {id}"),
                format!(
                    "{} for {} exists, but no client asked for it",
                    s.amount, s.merchant
                ),
            ));
        }
    }
    for (id, e) in &expected {
        if e.merchant.is_empty() {
            continue; // a capture or refund of a payment whose authorize is judged above
        }
        let Some(s) = stored.get(id) else {
            violations.push(violation(
                format!("payment {id}"),
                format!(
                    "acknowledged to {} for {}, but it does not exist",
                    e.merchant, e.amount
                ),
            ));
            continue;
        };
        if s.merchant != e.merchant || s.amount != e.amount {
            violations.push(violation(
                format!("payment {id}"),
                format!(
                    "acknowledged as {} for {}, stored as {} for {}",
                    e.amount, e.merchant, s.amount, s.merchant
                ),
            ));
        }
        if !within(s.captured, e.captured, e.maybe_captured) {
            violations.push(violation(
                format!("payment {id}"),
                format!(
                    "captured {} but clients were told {} (+{} unanswered)",
                    s.captured, e.captured, e.maybe_captured
                ),
            ));
        }
        if !within(s.refunded, e.refunded, e.maybe_refunded) {
            violations.push(violation(
                format!("payment {id}"),
                format!(
                    "refunded {} but clients were told {} (+{} unanswered)",
                    s.refunded, e.refunded, e.maybe_refunded
                ),
            ));
        }
    }

    // One event per change, and the ledger's view of each payment.
    let sql = format!(
        "SELECT o.payment_id, o.event_type, COUNT(*) AS n FROM outbox_events o \
         JOIN payments p ON p.payment_id = o.payment_id WHERE p.merchant_id IN ({}) \
         GROUP BY o.payment_id, o.event_type",
        in_list(merchants.len())
    );
    let mut q = sqlx::query(&sql);
    for m in merchants {
        q = q.bind(m);
    }
    let mut events: HashMap<String, BTreeMap<String, i64>> = HashMap::new();
    for r in q.fetch_all(db).await? {
        let id: uuid::Uuid = r.try_get("payment_id")?;
        events
            .entry(id.hyphenated().to_string())
            .or_default()
            .insert(r.try_get("event_type")?, r.try_get("n")?);
    }
    let payable = balances(db, merchants, payctl_domain::ledger::MERCHANT_PAYABLE, "C").await?;
    let held = balances(
        db,
        merchants,
        payctl_domain::ledger::AUTHORIZATION_HOLD,
        "D",
    )
    .await?;
    for (id, s) in &stored {
        let e = events.get(id).cloned().unwrap_or_default();
        let count = |t: &str| e.get(t).copied().unwrap_or(0);
        let want = [
            ("PAYMENT_AUTHORIZED", 1),
            ("PAYMENT_CAPTURED", i64::from(s.captured > 0)),
            ("PAYMENT_REFUNDED", i64::from(s.refunded > 0)),
        ];
        for (t, n) in want {
            if count(t) != n {
                violations.push(violation(
                    format!("payment {id}"),
                    format!("{} {t} events, expected {n}", count(t)),
                ));
            }
        }
        // No void in these flows: the hold is what is authorized and not captured.
        let hold = held.get(id).copied().unwrap_or(0);
        if hold != s.amount - s.captured {
            violations.push(violation(
                format!("payment {id}"),
                format!(
                    "the ledger holds {hold}, the payment says {} − {}",
                    s.amount, s.captured
                ),
            ));
        }
        let net = payable.get(id).copied().unwrap_or(0);
        if net != s.captured - s.refunded {
            violations.push(violation(
                format!("payment {id}"),
                format!(
                    "the ledger owes the merchant {net}, the payment says {} − {}",
                    s.captured, s.refunded
                ),
            ));
        }
    }
    Ok(violations)
}

/// Per payment of these merchants, the balance of `account` in the ledger, counted positive on `side`
/// (`C` for a liability such as merchant_payable, `D` for the hold), before payouts (`payctl settle`, which
/// `smoke` runs for today, moves what was settled on to the acquirer; reconcile checks those legs).
async fn balances(
    db: &MySqlPool,
    merchants: &[String],
    account: &str,
    side: &str,
) -> anyhow::Result<HashMap<String, i64>> {
    let sql = format!(
        "SELECT l.payment_id, CAST(SUM(IF(l.side = ?, l.amount, -l.amount)) AS SIGNED) AS balance \
         FROM ledger_entries l JOIN payments p ON p.payment_id = l.payment_id \
         WHERE p.merchant_id IN ({}) AND l.account = ? AND l.event_type <> 'PAYOUT' GROUP BY l.payment_id",
        in_list(merchants.len())
    );
    let mut q = sqlx::query(&sql).bind(side);
    for m in merchants {
        q = q.bind(m);
    }
    let mut out = HashMap::new();
    for r in q.bind(account).fetch_all(db).await? {
        let id: uuid::Uuid = r.try_get("payment_id")?;
        out.insert(id.hyphenated().to_string(), r.try_get("balance")?);
    }
    Ok(out)
}

fn within(actual: i64, sure: i64, maybe: i64) -> bool {
    actual == sure || (maybe > 0 && actual == sure + maybe)
}

/// A capture's acknowledged amount: what the answer says was captured.
fn acknowledged(a: &Answer, captured: Option<i64>, violations: &mut Vec<Violation>) -> i64 {
    match captured {
        Some(c) if c == a.amount => c,
        Some(c) => {
            violations.push(violation(
                format!("capture {}", a.key),
                format!("asked to capture all {}, answered captured {c}", a.amount),
            ));
            c
        }
        None => a.amount,
    }
}

pub fn op_name(op: Op) -> &'static str {
    match op {
        Op::Authorize => "authorize",
        Op::Capture => "capture",
        Op::Refund => "refund",
    }
}

#[cfg(test)]
mod tests {
    use super::within;

    #[test]
    fn an_unanswered_change_may_or_may_not_have_happened_but_nothing_in_between() {
        assert!(within(500, 500, 0));
        assert!(within(500, 0, 500));
        assert!(within(0, 0, 500));
        assert!(!within(250, 0, 500));
        assert!(!within(1000, 500, 0));
    }
}
