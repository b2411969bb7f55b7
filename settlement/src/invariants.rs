//! Settlement's part of `payctl reconcile` (without a statement): every capture and refund the ledger
//! holds is settled at the acquirer in time or explained, and every payout is exactly the net of what it
//! covers, in its records and in the ledger. Same report shape as the ledger's checks
//! ([`pay_consumer::invariants`]).

use pay_consumer::invariants::{Check, Violation};
use payctl_domain::ledger::{payout_legs, FEES, PAYOUTS};
use sqlx::{MySqlPool, Row};
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// How long a capture or refund may take to settle before `reconcile` calls it late: the acquirer's
/// 1–3 s calls, retries with backoff and a breaker that waits out an outage fit well inside it.
pub const DEFAULT_BOUND: Duration = Duration::from_secs(600);

/// Runs the settlement checks; captures and refunds booked less than `bound` ago may still be settling.
pub async fn check(db: &MySqlPool, bound: Duration) -> Result<Vec<Check>, sqlx::Error> {
    Ok(vec![
        settled_or_explained(db, bound).await?,
        payouts_add_up(db).await?,
        payout_legs_are_exactly_the_payouts(db).await?,
        nothing_left_out_of_a_payout(db).await?,
    ])
}

fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 120 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// A capture or refund in the ledger for longer than `bound` is SETTLED, or FAILED and in the DLQ (which
/// `payctl dlq` shows and a replay settles), or a refund held back because its capture is exactly that.
async fn settled_or_explained(db: &MySqlPool, bound: Duration) -> Result<Check, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT l.event_id, l.event_type, s.status, s.attempts, s.last_error, s.dlq_published_at IS NOT NULL AS dead, \
         CAST(TIMESTAMPDIFF(SECOND, l.recorded_at, UTC_TIMESTAMP(6)) AS SIGNED) AS age \
         FROM ledger_entries l LEFT JOIN settlements s ON s.event_id = l.event_id \
         WHERE l.leg = 0 AND l.event_type IN ('PAYMENT_CAPTURED', 'PAYMENT_REFUNDED') \
           AND l.recorded_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND \
           AND (s.event_id IS NULL OR (s.status <> 'SETTLED' \
             AND NOT (s.status = 'FAILED' AND s.dlq_published_at IS NOT NULL) \
             AND NOT (s.type = 'REFUND' AND EXISTS (SELECT 1 FROM settlements c WHERE c.payment_id = s.payment_id \
               AND c.type = 'CAPTURE' AND c.status = 'FAILED' AND c.dlq_published_at IS NOT NULL)))) \
         ORDER BY l.entry_id LIMIT 100",
    )
    .bind(bound.as_micros() as i64)
    .fetch_all(db)
    .await?;
    let mut violations = Vec::with_capacity(rows.len());
    for r in rows {
        let event: Uuid = r.try_get("event_id")?;
        let kind: String = r.try_get("event_type")?;
        let age = Duration::from_secs(r.try_get::<i64, _>("age")?.max(0) as u64);
        let status: Option<String> = r.try_get("status")?;
        let detail = match status {
            None => format!(
                "{kind} in the ledger for {} and never read by the settlement worker",
                minutes(age)
            ),
            Some(status) => {
                let attempts: u32 = r.try_get("attempts")?;
                let error: Option<String> = r.try_get("last_error")?;
                let dead: bool = r.try_get("dead")?;
                let mut d = format!(
                    "{kind} in the ledger for {}, settlement {status} after {attempts} attempt(s)",
                    minutes(age)
                );
                if status == "FAILED" && !dead {
                    d.push_str(", not yet in the DLQ");
                }
                if let Some(e) = error {
                    d.push_str(&format!(": {e}"));
                }
                d
            }
        };
        violations.push(Violation {
            subject: format!("event {event}"),
            detail,
        });
    }
    Ok(Check {
        name: "every capture and refund is settled or explained",
        violations,
    })
}

/// Every payout's figures are the sums of the settlements it covers (all SETTLED, of its merchant,
/// currency and date), and its `PAYOUT` legs pay out exactly its net and charge exactly its fees.
async fn payouts_add_up(db: &MySqlPool) -> Result<Check, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT p.payout_id, p.captures, p.refunds, p.gross_captured, p.gross_refunded, p.fees, p.net, \
         CAST(COALESCE(c.captures, 0) AS SIGNED) AS c_captures, CAST(COALESCE(c.refunds, 0) AS SIGNED) AS c_refunds, \
         CAST(COALESCE(c.gross_captured, 0) AS SIGNED) AS c_gross_captured, \
         CAST(COALESCE(c.gross_refunded, 0) AS SIGNED) AS c_gross_refunded, \
         CAST(COALESCE(c.fees, 0) AS SIGNED) AS c_fees, CAST(COALESCE(c.foreign_, 0) AS SIGNED) AS c_foreign, \
         CAST(COALESCE(b.paid, 0) AS SIGNED) AS b_paid, CAST(COALESCE(b.fees, 0) AS SIGNED) AS b_fees \
         FROM payouts p \
         LEFT JOIN (SELECT s.payout_id, SUM(s.type = 'CAPTURE') AS captures, SUM(s.type = 'REFUND') AS refunds, \
             SUM(IF(s.type = 'CAPTURE', s.amount, 0)) AS gross_captured, \
             SUM(IF(s.type = 'REFUND', s.amount, 0)) AS gross_refunded, SUM(s.fee) AS fees, \
             SUM(s.status <> 'SETTLED' OR s.merchant_id <> q.merchant_id OR s.currency <> q.currency \
                 OR s.business_date <> q.business_date) AS foreign_ \
           FROM settlements s JOIN payouts q ON q.payout_id = s.payout_id GROUP BY s.payout_id) c \
           ON c.payout_id = p.payout_id \
         LEFT JOIN (SELECT s.payout_id, \
             SUM(IF(l.account = ?, IF(l.side = 'C', l.amount, -l.amount), 0)) AS paid, \
             SUM(IF(l.account = ?, IF(l.side = 'C', l.amount, -l.amount), 0)) AS fees \
           FROM settlements s JOIN ledger_entries l ON l.event_id = s.payout_event_id \
           WHERE s.payout_id IS NOT NULL GROUP BY s.payout_id) b ON b.payout_id = p.payout_id",
    )
    .bind(PAYOUTS)
    .bind(FEES)
    .fetch_all(db)
    .await?;
    let mut violations = Vec::new();
    for r in rows {
        let id: Uuid = r.try_get("payout_id")?;
        let mut wrong = Vec::new();
        let recorded = [
            ("captures", i64::from(r.try_get::<u32, _>("captures")?)),
            ("refunds", i64::from(r.try_get::<u32, _>("refunds")?)),
            ("gross captured", r.try_get("gross_captured")?),
            ("gross refunded", r.try_get("gross_refunded")?),
            ("fees", r.try_get("fees")?),
        ];
        let covered: [i64; 5] = [
            r.try_get("c_captures")?,
            r.try_get("c_refunds")?,
            r.try_get("c_gross_captured")?,
            r.try_get("c_gross_refunded")?,
            r.try_get("c_fees")?,
        ];
        for ((what, payout), settlements) in recorded.iter().zip(covered) {
            if *payout != settlements {
                wrong.push(format!(
                    "{what} {payout}, its settlements add up to {settlements}"
                ));
            }
        }
        let foreign: i64 = r.try_get("c_foreign")?;
        if foreign != 0 {
            wrong.push(format!(
                "{foreign} of its settlements are not SETTLED or of another merchant, currency or date"
            ));
        }
        let net: i64 = r.try_get("net")?;
        let paid: i64 = r.try_get("b_paid")?;
        if paid != net {
            wrong.push(format!("net {net}, its ledger legs pay out {paid}"));
        }
        let fees: i64 = r.try_get("fees")?;
        let booked: i64 = r.try_get("b_fees")?;
        if booked != fees {
            wrong.push(format!("fees {fees}, its ledger legs charge {booked}"));
        }
        if !wrong.is_empty() {
            violations.push(Violation {
                subject: format!("payout {id}"),
                detail: wrong.join("; "),
            });
        }
    }
    Ok(Check {
        name: "every payout equals the net of what it covers",
        violations,
    })
}

/// Seen from the ledger: every `PAYOUT` leg belongs to exactly one paid-out settlement (its
/// `payout_event_id`) and each paid-out settlement's legs are exactly what paying it out posts — on all
/// five accounts, for its payment, merchant and currency. Legs posted twice, or by hand, or missing would
/// pay a merchant twice or not at all while the payouts' own figures still add up.
async fn payout_legs_are_exactly_the_payouts(db: &MySqlPool) -> Result<Check, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT l.event_id, l.leg, l.account, l.side, l.amount, l.payment_id, l.merchant_id, l.currency, \
           s.event_id AS settlement, s.type, s.amount AS gross, s.fee, s.payment_id AS s_payment, \
           s.merchant_id AS s_merchant, s.currency AS s_currency \
         FROM ledger_entries l LEFT JOIN settlements s ON s.payout_event_id = l.event_id \
         WHERE l.event_type = ? ORDER BY l.event_id, l.leg",
    )
    .bind(payctl_domain::ledger::PAYOUT_EVENT_TYPE)
    .fetch_all(db)
    .await?;
    type Posted = Vec<(u8, String, String, i64)>;
    let mut by_event: BTreeMap<Uuid, (Posted, Option<sqlx::mysql::MySqlRow>)> = BTreeMap::new();
    for r in rows {
        let event: Uuid = r.try_get("event_id")?;
        let entry = by_event.entry(event).or_default();
        entry.0.push((
            r.try_get("leg")?,
            r.try_get("account")?,
            r.try_get("side")?,
            r.try_get("amount")?,
        ));
        let same_subject = r.try_get::<Uuid, _>("payment_id")?
            == r.try_get::<Option<Uuid>, _>("s_payment")?
                .unwrap_or_default()
            && r.try_get::<String, _>("merchant_id")?
                == r.try_get::<Option<String>, _>("s_merchant")?
                    .unwrap_or_default()
            && r.try_get::<String, _>("currency")?
                == r.try_get::<Option<String>, _>("s_currency")?
                    .unwrap_or_default();
        if entry.1.is_none() || !same_subject {
            entry.1 = Some(r);
        }
    }
    let mut violations = Vec::new();
    for (event, (posted, row)) in by_event {
        let Some(row) = row else { continue };
        let Some(settlement) = row.try_get::<Option<Uuid>, _>("settlement")? else {
            violations.push(Violation {
                subject: format!("PAYOUT event {event}"),
                detail: format!(
                    "{} ledger leg(s) no paid-out settlement posted",
                    posted.len()
                ),
            });
            continue;
        };
        let refund = row.try_get::<Option<String>, _>("type")?.as_deref() == Some("REFUND");
        let gross: i64 = row.try_get::<Option<i64>, _>("gross")?.unwrap_or_default();
        let fee: i64 = row.try_get::<Option<i64>, _>("fee")?.unwrap_or_default();
        let expected: Posted = payout_legs(refund, gross, fee)
            .into_iter()
            .map(|l| {
                (
                    l.leg,
                    l.account.to_owned(),
                    l.side.code().to_owned(),
                    l.amount,
                )
            })
            .collect();
        let same_subject = row.try_get::<Uuid, _>("payment_id")?
            == row
                .try_get::<Option<Uuid>, _>("s_payment")?
                .unwrap_or_default()
            && row.try_get::<String, _>("merchant_id")?
                == row
                    .try_get::<Option<String>, _>("s_merchant")?
                    .unwrap_or_default()
            && row.try_get::<String, _>("currency")?
                == row
                    .try_get::<Option<String>, _>("s_currency")?
                    .unwrap_or_default();
        if posted != expected || !same_subject {
            violations.push(Violation {
                subject: format!("settlement {settlement}"),
                detail: format!(
                    "its payout legs (event {event}) are {posted:?}{}, paying it out posts {expected:?}",
                    if same_subject { "" } else { " on another payment, merchant or currency" }
                ),
            });
        }
    }
    let missing: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT s.event_id, s.payout_event_id FROM settlements s WHERE s.payout_event_id IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM ledger_entries l WHERE l.event_id = s.payout_event_id) LIMIT 100",
    )
    .fetch_all(db)
    .await?;
    for (settlement, event) in missing {
        violations.push(Violation {
            subject: format!("settlement {settlement}"),
            detail: format!("paid out, but its payout legs (event {event}) are not in the ledger"),
        });
    }
    Ok(Check {
        name: "every payout leg is exactly what paying its settlement out posts",
        violations,
    })
}

/// A settlement that was SETTLED before its date's payout was made belongs in that payout: left out, it
/// is money the merchant is never paid. (One settled after it waits for the next `settle` of that date;
/// the minute's margin covers a settlement whose timestamp was taken while it waited for the payout's
/// row locks.)
async fn nothing_left_out_of_a_payout(db: &MySqlPool) -> Result<Check, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.event_id, s.business_date FROM settlements s WHERE s.status = 'SETTLED' AND s.payout_id IS NULL \
         AND EXISTS (SELECT 1 FROM payouts p WHERE p.merchant_id = s.merchant_id AND p.currency = s.currency \
           AND p.business_date = s.business_date AND p.created_at > s.updated_at + INTERVAL 1 MINUTE) LIMIT 100",
    )
    .fetch_all(db)
    .await?;
    let mut violations = Vec::with_capacity(rows.len());
    for r in rows {
        let event: Uuid = r.try_get("event_id")?;
        let date: time::Date = r.try_get("business_date")?;
        violations.push(Violation {
            subject: format!("event {event}"),
            detail: format!("settled on {date} before that date's payout, and not in it"),
        });
    }
    Ok(Check {
        name: "every settlement of a paid-out date is in a payout",
        violations,
    })
}
