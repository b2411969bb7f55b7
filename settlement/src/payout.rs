//! Payouts (`payctl settle --date D`): closing a business date pays each merchant, per currency, the net
//! of what the acquirer settled for that date — settled captures − settled refunds − fees — as one payout
//! record and, per settlement it covers, balanced `PAYOUT` ledger legs
//! ([`payctl_domain::ledger::payout_legs`]), all in one transaction.
//!
//! Exactly once: a settlement is paid out when its `payout_id` is set, which happens in the transaction
//! that writes the payout and the legs, under a lock on the settlement's row. Running `settle` again finds
//! nothing unpaid and changes nothing; two runs at once serialize on those rows. A settlement of date D
//! recorded after D was paid out (D closed early, or a late answer from the acquirer) is paid by the next
//! `settle --date D` as that date's next payout (`seq` 2, 3, …).

use payctl_db::{from_db, to_db};
use payctl_domain::ledger::{payout_legs, PAYOUT_EVENT_TYPE};
use serde::Serialize;
use sqlx::{MySqlPool, Row};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// One payout record (`payouts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Payout {
    pub payout_id: Uuid,
    pub merchant_id: String,
    pub currency: String,
    pub business_date: Date,
    pub seq: u32,
    pub captures: u32,
    pub refunds: u32,
    pub gross_captured: i64,
    pub gross_refunded: i64,
    pub fees: i64,
    pub net: i64,
    pub time_zone: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("the payout of {merchant} {currency} overflows 64 bits")]
    Overflow { merchant: String, currency: String },
}

/// A settled, not yet paid out settlement, as read under lock.
struct Unpaid {
    event_id: Uuid,
    payment_id: Uuid,
    merchant_id: String,
    currency: String,
    refund: bool,
    amount: i64,
    fee: i64,
}

/// The totals of one merchant's settlements in one currency.
#[derive(Default)]
struct Totals {
    captures: u32,
    refunds: u32,
    gross_captured: i64,
    gross_refunded: i64,
    fees: i64,
}

impl Totals {
    fn add(&mut self, s: &Unpaid) -> Option<()> {
        if s.refund {
            self.refunds += 1;
            self.gross_refunded = self.gross_refunded.checked_add(s.amount)?;
        } else {
            self.captures += 1;
            self.gross_captured = self.gross_captured.checked_add(s.amount)?;
        }
        self.fees = self.fees.checked_add(s.fee)?;
        Some(())
    }

    fn net(&self) -> Option<i64> {
        self.gross_captured
            .checked_sub(self.gross_refunded)?
            .checked_sub(self.fees)
    }
}

/// Pays out every settlement of business date `date` not yet paid out; returns the payouts made (none
/// when everything of that date is already paid out). `time_zone` is the cutoff time zone `date` is in,
/// recorded on each payout.
pub async fn settle(
    db: &MySqlPool,
    date: Date,
    time_zone: &str,
) -> Result<Vec<Payout>, PayoutError> {
    let mut tx = db.begin().await?;
    let rows = sqlx::query(
        "SELECT event_id, payment_id, merchant_id, currency, type, amount, fee FROM settlements \
         WHERE status = 'SETTLED' AND business_date = ? AND payout_id IS NULL \
         ORDER BY merchant_id, currency, settled_at, event_id FOR UPDATE",
    )
    .bind(date)
    .fetch_all(&mut *tx)
    .await?;
    let mut unpaid = Vec::with_capacity(rows.len());
    for r in rows {
        unpaid.push(Unpaid {
            event_id: r.try_get("event_id")?,
            payment_id: r.try_get("payment_id")?,
            merchant_id: r.try_get("merchant_id")?,
            currency: r.try_get("currency")?,
            refund: r.try_get::<String, _>("type")? == "REFUND",
            amount: r.try_get("amount")?,
            fee: r.try_get("fee")?,
        });
    }
    let now = payctl_db::now();
    let mut made = Vec::new();
    for group in unpaid.chunk_by(|a, b| a.merchant_id == b.merchant_id && a.currency == b.currency)
    {
        let first = &group[0];
        let overflow = || PayoutError::Overflow {
            merchant: first.merchant_id.clone(),
            currency: first.currency.clone(),
        };
        let mut totals = Totals::default();
        for s in group {
            totals.add(s).ok_or_else(overflow)?;
        }
        let net = totals.net().ok_or_else(overflow)?;
        let seq: u32 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(seq), 0) + 1 AS UNSIGNED) FROM payouts \
             WHERE merchant_id = ? AND currency = ? AND business_date = ? FOR UPDATE",
        )
        .bind(&first.merchant_id)
        .bind(&first.currency)
        .bind(date)
        .fetch_one(&mut *tx)
        .await?;
        let payout = Payout {
            payout_id: Uuid::now_v7(),
            merchant_id: first.merchant_id.clone(),
            currency: first.currency.clone(),
            business_date: date,
            seq,
            captures: totals.captures,
            refunds: totals.refunds,
            gross_captured: totals.gross_captured,
            gross_refunded: totals.gross_refunded,
            fees: totals.fees,
            net,
            time_zone: time_zone.to_owned(),
            created_at: now,
        };
        sqlx::query(
            "INSERT INTO payouts (payout_id, merchant_id, currency, business_date, seq, captures, refunds, \
             gross_captured, gross_refunded, fees, net, time_zone, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(payout.payout_id)
        .bind(&payout.merchant_id)
        .bind(&payout.currency)
        .bind(date)
        .bind(seq)
        .bind(payout.captures)
        .bind(payout.refunds)
        .bind(payout.gross_captured)
        .bind(payout.gross_refunded)
        .bind(payout.fees)
        .bind(payout.net)
        .bind(time_zone)
        .bind(to_db(now))
        .execute(&mut *tx)
        .await?;
        let mut legs = Vec::new();
        for s in group {
            let leg_event = Uuid::now_v7();
            sqlx::query(
                "UPDATE settlements SET payout_id = ?, payout_event_id = ?, updated_at = UTC_TIMESTAMP(6) \
                 WHERE event_id = ?",
            )
            .bind(payout.payout_id)
            .bind(leg_event)
            .bind(s.event_id)
            .execute(&mut *tx)
            .await?;
            for leg in payout_legs(s.refund, s.amount, s.fee) {
                legs.push((leg_event, s, leg));
            }
        }
        for chunk in legs.chunks(1000) {
            let mut sql = String::from(
                "INSERT INTO ledger_entries (event_id, leg, payment_id, merchant_id, event_type, account, \
                 side, amount, currency, occurred_at) VALUES ",
            );
            sql.push_str(&vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", "));
            let mut q = sqlx::query(&sql);
            for (leg_event, s, leg) in chunk {
                q = q
                    .bind(*leg_event)
                    .bind(leg.leg)
                    .bind(s.payment_id)
                    .bind(&s.merchant_id)
                    .bind(PAYOUT_EVENT_TYPE)
                    .bind(leg.account)
                    .bind(leg.side.code())
                    .bind(leg.amount)
                    .bind(&s.currency)
                    .bind(to_db(now));
            }
            q.execute(&mut *tx).await?;
        }
        made.push(payout);
    }
    tx.commit().await?;
    Ok(made)
}

fn payout_from_row(r: &sqlx::mysql::MySqlRow) -> Result<Payout, sqlx::Error> {
    Ok(Payout {
        payout_id: r.try_get("payout_id")?,
        merchant_id: r.try_get("merchant_id")?,
        currency: r.try_get("currency")?,
        business_date: r.try_get("business_date")?,
        seq: r.try_get("seq")?,
        captures: r.try_get("captures")?,
        refunds: r.try_get("refunds")?,
        gross_captured: r.try_get("gross_captured")?,
        gross_refunded: r.try_get("gross_refunded")?,
        fees: r.try_get("fees")?,
        net: r.try_get("net")?,
        time_zone: r.try_get("time_zone")?,
        created_at: from_db(r.try_get("created_at")?),
    })
}

/// Every payout of business date `date`, by merchant, currency and sequence.
pub async fn payouts_of(db: &MySqlPool, date: Date) -> Result<Vec<Payout>, sqlx::Error> {
    sqlx::query(
        "SELECT payout_id, merchant_id, currency, business_date, seq, captures, refunds, gross_captured, \
         gross_refunded, fees, net, time_zone, created_at FROM payouts WHERE business_date = ? \
         ORDER BY merchant_id, currency, seq",
    )
    .bind(date)
    .fetch_all(db)
    .await?
    .iter()
    .map(payout_from_row)
    .collect()
}

/// Captures and refunds not yet SETTLED (nor FAILED): they are paid out with the date they settle on.
pub async fn unsettled(db: &MySqlPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM settlements WHERE status IN ('PENDING', 'SUBMITTED')")
        .fetch_one(db)
        .await
}
