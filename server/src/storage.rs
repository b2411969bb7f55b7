//! Queries on payments, their ledger, their settlement records and the merchant's payouts (the last two
//! read-only here; see `crate::settlement`). The pool, migrations and error classes live in `payctl-db`.
//!
//! Queries are plain `sqlx::query` (no compile-time checking), so the workspace builds without a
//! database; the integration tests are what check them.

use crate::settlement::{ItemStatus, Payout, PayoutItem, SettlementItem};
pub use payctl_db::{
    from_db, is_duplicate_key, is_lock_wait, is_unavailable, mysql_error_number, now, pool, to_db,
    Tx, MIGRATOR,
};
use payctl_domain::payment::Balances;
use payctl_domain::settlement::SettlementType;
use payctl_domain::{EventId, MerchantId, PaymentId, PaymentStatus, PayoutId};
use sqlx::{MySqlPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

/// One payment as stored.
#[derive(Debug, Clone)]
pub struct PaymentRecord {
    pub id: PaymentId,
    pub merchant_id: String,
    pub status: PaymentStatus,
    pub amount: i64,
    pub captured: i64,
    pub refunded: i64,
    pub voided: i64,
    pub currency: String,
    /// 0 when authorized, +1 per change: also the sequence of the payment's last event − 1.
    pub version: u32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl PaymentRecord {
    pub fn balances(&self) -> Balances {
        Balances {
            status: self.status,
            amount: self.amount,
            captured: self.captured,
            refunded: self.refunded,
            voided: self.voided,
        }
    }

    fn from_row(row: &sqlx::mysql::MySqlRow) -> Result<Self, sqlx::Error> {
        let status: String = row.try_get("status")?;
        Ok(Self {
            id: PaymentId::from_uuid(row.try_get::<Uuid, _>("payment_id")?),
            merchant_id: row.try_get("merchant_id")?,
            status: PaymentStatus::parse(&status).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown payment status {status}").into())
            })?,
            amount: row.try_get("amount")?,
            captured: row.try_get("captured_amount")?,
            refunded: row.try_get("refunded_amount")?,
            voided: row.try_get("voided_amount")?,
            currency: row.try_get("currency")?,
            version: row.try_get("version")?,
            created_at: from_db(row.try_get("created_at")?),
            updated_at: from_db(row.try_get("updated_at")?),
        })
    }
}

const PAYMENT_COLUMNS: &str = "payment_id, merchant_id, status, amount, captured_amount, \
     refunded_amount, voided_amount, currency, version, created_at, updated_at";

pub async fn insert_payment(tx: &mut Tx, p: &PaymentRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payments (payment_id, merchant_id, status, amount, captured_amount, \
         refunded_amount, voided_amount, currency, version, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(p.id.as_uuid())
    .bind(&p.merchant_id)
    .bind(p.status.as_str())
    .bind(p.amount)
    .bind(p.captured)
    .bind(p.refunded)
    .bind(p.voided)
    .bind(&p.currency)
    .bind(p.version)
    .bind(to_db(p.created_at))
    .bind(to_db(p.updated_at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Several new payments in one statement (commit batching); nothing for none. Multi-row statements have
/// one text per number of rows, so they are not kept prepared: kept, every connection would soon hold
/// one per batch size, and the server's `max_prepared_stmt_count` (shared by all connections) would run
/// out.
pub async fn insert_payments(tx: &mut Tx, payments: &[PaymentRecord]) -> Result<(), sqlx::Error> {
    if payments.is_empty() {
        return Ok(());
    }
    let mut q = sqlx::QueryBuilder::<sqlx::MySql>::new(
        "INSERT INTO payments (payment_id, merchant_id, status, amount, captured_amount, \
         refunded_amount, voided_amount, currency, version, created_at, updated_at) ",
    );
    q.push_values(payments, |mut b, p| {
        b.push_bind(p.id.as_uuid())
            .push_bind(p.merchant_id.clone())
            .push_bind(p.status.as_str())
            .push_bind(p.amount)
            .push_bind(p.captured)
            .push_bind(p.refunded)
            .push_bind(p.voided)
            .push_bind(p.currency.clone())
            .push_bind(p.version)
            .push_bind(to_db(p.created_at))
            .push_bind(to_db(p.updated_at));
    });
    q.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}

/// Reads and locks those of the payments `ids` (sorted) that no other transaction holds, in payment-id
/// order, without waiting: a row held elsewhere is left out, like one that does not exist. Whoever owns
/// them.
pub async fn lock_free_payments(
    tx: &mut Tx,
    ids: &[Uuid],
) -> Result<Vec<PaymentRecord>, sqlx::Error> {
    let mut q = sqlx::QueryBuilder::<sqlx::MySql>::new(format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE payment_id IN ("
    ));
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    q.push(") ORDER BY payment_id FOR UPDATE SKIP LOCKED");
    q.build()
        .persistent(false)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(PaymentRecord::from_row)
        .collect()
}

/// Reads the merchant's payment and locks its row until the transaction ends: the guard that makes two
/// concurrent captures (or refunds) of one payment run one after the other.
pub async fn lock_payment(
    tx: &mut Tx,
    id: PaymentId,
    merchant: &MerchantId,
) -> Result<Option<PaymentRecord>, sqlx::Error> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE payment_id = ? AND merchant_id = ? FOR UPDATE"
    );
    sqlx::query(&sql)
        .bind(id.as_uuid())
        .bind(merchant.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| PaymentRecord::from_row(&r))
        .transpose()
}

/// Writes `p`'s balances over the row read (under its lock) at version `before`.
pub async fn update_balances(
    tx: &mut Tx,
    p: &PaymentRecord,
    before: u32,
) -> Result<(), sqlx::Error> {
    let done = sqlx::query(
        "UPDATE payments SET status = ?, captured_amount = ?, refunded_amount = ?, voided_amount = ?, \
         version = ?, updated_at = ? WHERE payment_id = ? AND version = ?",
    )
    .bind(p.status.as_str())
    .bind(p.captured)
    .bind(p.refunded)
    .bind(p.voided)
    .bind(p.version)
    .bind(to_db(p.updated_at))
    .bind(p.id.as_uuid())
    .bind(before)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        return Err(sqlx::Error::Protocol(format!(
            "payment {} changed under its row lock",
            p.id
        )));
    }
    Ok(())
}

pub async fn get_payment(
    pool: &MySqlPool,
    id: PaymentId,
    merchant: &MerchantId,
) -> Result<Option<PaymentRecord>, sqlx::Error> {
    let sql =
        format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE payment_id = ? AND merchant_id = ?");
    sqlx::query(&sql)
        .bind(id.as_uuid())
        .bind(merchant.as_str())
        .fetch_optional(pool)
        .await?
        .map(|r| PaymentRecord::from_row(&r))
        .transpose()
}

/// The listing query: binds the merchant, then the status and the cursor when present, then the limit.
/// Indexes (merchant, payment) and (merchant, status, payment) serve it in order, without a sort.
pub fn list_sql(with_status: bool, with_cursor: bool) -> String {
    // Forced: with a cursor, the optimizer prefers a primary-key range over all merchants' payments.
    let index = if with_status {
        "ix_payments_merchant_status_payment"
    } else {
        "ix_payments_merchant_payment"
    };
    let mut sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments FORCE INDEX ({index}) WHERE merchant_id = ?"
    );
    if with_status {
        sql.push_str(" AND status = ?");
    }
    if with_cursor {
        sql.push_str(" AND payment_id < ?");
    }
    sql.push_str(" ORDER BY payment_id DESC LIMIT ?");
    sql
}

/// A page of the merchant's payments, newest first, after the cursor (a payment id: ids are time-ordered).
pub async fn list_payments(
    pool: &MySqlPool,
    merchant: &MerchantId,
    status: Option<PaymentStatus>,
    starting_after: Option<PaymentId>,
    limit: u32,
) -> Result<Vec<PaymentRecord>, sqlx::Error> {
    let sql = list_sql(status.is_some(), starting_after.is_some());
    let mut q = sqlx::query(&sql).bind(merchant.as_str());
    if let Some(s) = status {
        q = q.bind(s.as_str());
    }
    if let Some(after) = starting_after {
        q = q.bind(after.as_uuid());
    }
    q.bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(PaymentRecord::from_row)
        .collect()
}

/// One leg of the ledger as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerLine {
    pub entry_id: u64,
    pub event_id: String,
    pub event_type: String,
    pub leg: u8,
    pub account: String,
    pub side: String,
    pub amount: i64,
    pub currency: String,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
}

pub async fn ledger_for_payment(
    pool: &MySqlPool,
    id: PaymentId,
) -> Result<Vec<LedgerLine>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT entry_id, event_id, event_type, leg, account, side, amount, currency, occurred_at \
         FROM ledger_entries WHERE payment_id = ? ORDER BY entry_id",
    )
    .bind(id.as_uuid())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(LedgerLine {
                entry_id: r.try_get("entry_id")?,
                event_id: r.try_get::<Uuid, _>("event_id")?.hyphenated().to_string(),
                event_type: r.try_get("event_type")?,
                leg: r.try_get("leg")?,
                account: r.try_get("account")?,
                side: if r.try_get::<String, _>("side")? == "D" {
                    "DEBIT"
                } else {
                    "CREDIT"
                }
                .to_owned(),
                amount: r.try_get("amount")?,
                currency: r.try_get("currency")?,
                occurred_at: from_db(r.try_get("occurred_at")?),
            })
        })
        .collect()
}

fn settlement_type(row: &sqlx::mysql::MySqlRow) -> Result<SettlementType, sqlx::Error> {
    let kind: String = row.try_get("type")?;
    SettlementType::parse(&kind)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown settlement type {kind}").into()))
}

/// The payment's settlement records in the order of their events: by the event's `sequence` (the
/// payment's own order of changes, kept in the payload as read), then by event id (time-ordered) for
/// events written before sequences existed.
pub async fn settlements_for_payment(
    pool: &MySqlPool,
    id: PaymentId,
    merchant: &MerchantId,
) -> Result<Vec<SettlementItem>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT event_id, type, amount, currency, status, attempts, acquirer_reference, fee, net, \
         settled_at, business_date, payout_id FROM settlements \
         WHERE payment_id = ? AND merchant_id = ? \
         ORDER BY CAST(JSON_VALUE(payload, '$.sequence') AS UNSIGNED), event_id",
    )
    .bind(id.as_uuid())
    .bind(merchant.as_str())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let status: String = r.try_get("status")?;
            Ok(SettlementItem {
                event_id: EventId::from_uuid(r.try_get("event_id")?),
                kind: settlement_type(r)?,
                amount: r.try_get("amount")?,
                currency: r.try_get("currency")?,
                status: ItemStatus::parse(&status).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown settlement status {status}").into())
                })?,
                attempts: r.try_get("attempts")?,
                acquirer_reference: r.try_get("acquirer_reference")?,
                fee: r.try_get("fee")?,
                net: r.try_get("net")?,
                settled_at: r
                    .try_get::<Option<time::PrimitiveDateTime>, _>("settled_at")?
                    .map(from_db),
                business_date: r.try_get("business_date")?,
                payout_id: r
                    .try_get::<Option<Uuid>, _>("payout_id")?
                    .map(PayoutId::from_uuid),
            })
        })
        .collect()
}

const PAYOUT_COLUMNS: &str = "payout_id, business_date, seq, currency, captures, refunds, \
     gross_captured, gross_refunded, fees, net, time_zone, created_at";

fn payout_from_row(r: &sqlx::mysql::MySqlRow) -> Result<Payout, sqlx::Error> {
    Ok(Payout {
        payout_id: PayoutId::from_uuid(r.try_get("payout_id")?),
        business_date: r.try_get("business_date")?,
        seq: r.try_get("seq")?,
        currency: r.try_get("currency")?,
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

/// Which of a merchant's payouts a page shows.
#[derive(Debug, Clone, Copy)]
pub struct PayoutFilter {
    /// Business dates, both inclusive.
    pub from: Option<time::Date>,
    pub to: Option<time::Date>,
    /// The last payout of the previous page.
    pub starting_after: Option<PayoutId>,
    pub limit: u32,
}

/// A page of the merchant's payouts, newest business date first (then newest payout first). The cursor
/// is a payout id; its business date is looked up, so a cursor that is not one of the merchant's payouts
/// has nothing after it (an empty page, and another merchant's id reveals nothing).
pub async fn list_payouts(
    pool: &MySqlPool,
    merchant: &MerchantId,
    filter: PayoutFilter,
) -> Result<Vec<Payout>, sqlx::Error> {
    let cursor = match filter.starting_after {
        None => None,
        Some(after) => {
            let date: Option<time::Date> = sqlx::query_scalar(
                "SELECT business_date FROM payouts WHERE payout_id = ? AND merchant_id = ?",
            )
            .bind(after.as_uuid())
            .bind(merchant.as_str())
            .fetch_optional(pool)
            .await?;
            match date {
                Some(date) => Some((date, after)),
                None => return Ok(Vec::new()),
            }
        }
    };
    let mut q = sqlx::QueryBuilder::<sqlx::MySql>::new(format!(
        "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE merchant_id = "
    ));
    q.push_bind(merchant.as_str().to_owned());
    if let Some(from) = filter.from {
        q.push(" AND business_date >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        q.push(" AND business_date <= ").push_bind(to);
    }
    if let Some((date, id)) = cursor {
        q.push(" AND (business_date < ")
            .push_bind(date)
            .push(" OR (business_date = ")
            .push_bind(date)
            .push(" AND payout_id < ")
            .push_bind(id.as_uuid())
            .push("))");
    }
    q.push(" ORDER BY business_date DESC, payout_id DESC LIMIT ")
        .push_bind(filter.limit);
    q.build()
        .fetch_all(pool)
        .await?
        .iter()
        .map(payout_from_row)
        .collect()
}

/// The merchant's payout `id`, or `None` (also when it is another merchant's).
pub async fn get_payout(
    pool: &MySqlPool,
    id: PayoutId,
    merchant: &MerchantId,
) -> Result<Option<Payout>, sqlx::Error> {
    let sql =
        format!("SELECT {PAYOUT_COLUMNS} FROM payouts WHERE payout_id = ? AND merchant_id = ?");
    sqlx::query(&sql)
        .bind(id.as_uuid())
        .bind(merchant.as_str())
        .fetch_optional(pool)
        .await?
        .map(|r| payout_from_row(&r))
        .transpose()
}

/// The settlements payout `id` covers, in the order they settled.
pub async fn payout_items(pool: &MySqlPool, id: PayoutId) -> Result<Vec<PayoutItem>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT event_id, payment_id, type, amount, fee, net, acquirer_reference FROM settlements \
         WHERE payout_id = ? ORDER BY settled_at, event_id",
    )
    .bind(id.as_uuid())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PayoutItem {
                event_id: EventId::from_uuid(r.try_get("event_id")?),
                payment_id: PaymentId::from_uuid(r.try_get("payment_id")?),
                kind: settlement_type(r)?,
                amount: r.try_get("amount")?,
                fee: r.try_get("fee")?,
                net: r.try_get("net")?,
                acquirer_reference: r.try_get("acquirer_reference")?,
            })
        })
        .collect()
}
