//! The acquirer's settlements table: writing a settlement exactly once per idempotency key, and the reads
//! behind the settlement and statement routes.
//!
//! Idempotency lives in the row itself: `idempotency_key` is UNIQUE, and the row carries the hash of the
//! request and the response it was answered with, written by one INSERT (one transaction). A second
//! request with the key finds the row and replays the stored bytes, or is refused (422) when its hash
//! differs. Two requests racing with one key both INSERT; InnoDB makes the second wait on the first's
//! key lock and then fail with a duplicate key, after which it reads the committed row like any replay —
//! so there is never a second row, and nothing to clean up.

use crate::clock::Clock;
use crate::error::ApiError;
use payctl_domain::settlement::{business_date, fee_and_net, SettlementType, StatementLine};
use payctl_domain::{Amount, Currency, EventId, IdempotencyKey, MerchantId, PaymentId};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::MySqlPool;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, PrimitiveDateTime};
use uuid::Uuid;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A settlement request as parsed at the edge: the canonical form whose hash identifies it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementRequest {
    #[serde(rename = "type")]
    pub kind: SettlementType,
    pub merchant_id: MerchantId,
    pub payment_id: PaymentId,
    pub event_id: EventId,
    pub amount: Amount,
    pub currency: Currency,
}

impl SettlementRequest {
    /// SHA-256 of the parsed request re-serialised (fields in one order, ids in one spelling), so two
    /// spellings of one request (whitespace, field order, upper-case UUIDs) are the same request.
    pub fn hash(&self) -> String {
        // Serialising plain strings and integers cannot fail.
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(canonical))
    }
}

/// What the acquirer answers for a settlement, first time and every replay.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SettlementResponse<'a> {
    reference: &'a str,
    status: &'static str,
    #[serde(rename = "type")]
    kind: SettlementType,
    merchant_id: &'a MerchantId,
    payment_id: PaymentId,
    event_id: EventId,
    amount: i64,
    fee: i64,
    net: i64,
    currency: Currency,
    settled_at: String,
    business_date: String,
}

pub enum Outcome {
    /// Written now; the response body.
    Settled(String),
    /// Written earlier with this key and the same request; the stored response body.
    Replayed(String),
}

/// Settles `request` under `key` once: the first call writes the row and its response, later calls with
/// the same request replay that response, with another request they are refused.
pub async fn settle(
    db: &MySqlPool,
    key: &IdempotencyKey,
    request: &SettlementRequest,
    bps: u32,
    tz: &jiff::tz::TimeZone,
    clock: &Clock,
) -> Result<Outcome, ApiError> {
    let hash = request.hash();
    // Three rounds at most: find → insert → (duplicate) find again. A third round only follows a lock
    // wait or deadlock, which a retry resolves.
    for _ in 0..3 {
        if let Some(outcome) = existing(db, key, &hash).await? {
            return Ok(outcome);
        }
        let reference = new_reference();
        let settled_at = clock.now();
        let day = business_date(settled_at, tz);
        let gross = request.amount.minor_units();
        let (fee, net) = fee_and_net(request.kind, gross, bps);
        let response = serde_json::to_string(&SettlementResponse {
            reference: &reference,
            status: "SETTLED",
            kind: request.kind,
            merchant_id: &request.merchant_id,
            payment_id: request.payment_id,
            event_id: request.event_id,
            amount: gross,
            fee,
            net,
            currency: request.currency,
            settled_at: settled_at
                .format(&Rfc3339)
                .map_err(|e| ApiError::Internal(e.into()))?,
            business_date: day.to_string(),
        })
        .map_err(|e| ApiError::Internal(e.into()))?;
        // One statement, so the settlement and its stored answer commit together.
        let inserted = sqlx::query(
            "INSERT INTO acquirer_settlements (reference, idempotency_key, request_hash, type, \
             merchant_id, payment_id, event_id, gross, fee, net, currency, settled_at, \
             business_date, response) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&reference)
        .bind(key.as_str())
        .bind(&hash)
        .bind(request.kind.as_str())
        .bind(request.merchant_id.as_str())
        .bind(request.payment_id.as_uuid())
        .bind(request.event_id.as_uuid())
        .bind(gross)
        .bind(fee)
        .bind(net)
        .bind(request.currency.code())
        .bind(payctl_db::to_db(settled_at))
        .bind(day)
        .bind(&response)
        .execute(db)
        .await;
        match inserted {
            Ok(_) => return Ok(Outcome::Settled(response)),
            // Another request with this key committed first: replay (or refuse) from its row.
            Err(e) if payctl_db::is_duplicate_key(&e) || payctl_db::is_lock_wait(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::DatabaseUnavailable)
}

/// The answer for a key already used: its response when the request is the same, 422 otherwise.
async fn existing(
    db: &MySqlPool,
    key: &IdempotencyKey,
    hash: &str,
) -> Result<Option<Outcome>, ApiError> {
    let row: Option<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT request_hash, response FROM acquirer_settlements WHERE idempotency_key = ?",
    )
    .bind(key.as_str())
    .fetch_optional(db)
    .await?;
    match row {
        None => Ok(None),
        Some((stored, response)) if stored == hash => Ok(Some(Outcome::Replayed(utf8(response)?))),
        Some(_) => Err(ApiError::IdempotencyKeyReused),
    }
}

/// `ACQ-` and a UUIDv7's 32 hex digits, upper case: unique without coordination, ordered by time.
fn new_reference() -> String {
    format!("ACQ-{}", Uuid::now_v7().simple()).to_ascii_uppercase()
}

/// The stored response of settlement `reference`.
pub async fn response_by_reference(
    db: &MySqlPool,
    reference: &str,
) -> Result<Option<String>, ApiError> {
    let response: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT response FROM acquirer_settlements WHERE reference = ?")
            .bind(reference)
            .fetch_optional(db)
            .await?;
    response.map(utf8).transpose()
}

/// A stored response. MariaDB's JSON is a LONGTEXT with a binary collation, which the driver hands over
/// as bytes; they are the bytes we stored, so they are UTF-8.
fn utf8(bytes: Vec<u8>) -> Result<String, ApiError> {
    String::from_utf8(bytes).map_err(|e| ApiError::Internal(e.into()))
}

/// The stored responses of every settlement of event `event_id`, oldest first.
pub async fn responses_by_event(
    db: &MySqlPool,
    event_id: EventId,
) -> Result<Vec<String>, ApiError> {
    let responses: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT response FROM acquirer_settlements WHERE event_id = ? ORDER BY settled_at, reference",
    )
    .bind(event_id.as_uuid())
    .fetch_all(db)
    .await?;
    responses.into_iter().map(utf8).collect()
}

type LineRow = (
    String,
    Uuid,
    Uuid,
    String,
    String,
    i64,
    i64,
    i64,
    String,
    PrimitiveDateTime,
);

/// Every settlement of business date `day`, as statement lines ordered by settled_at, then reference.
pub async fn statement_lines(db: &MySqlPool, day: Date) -> Result<Vec<StatementLine>, ApiError> {
    let rows: Vec<LineRow> = sqlx::query_as(
        "SELECT reference, payment_id, event_id, merchant_id, type, gross, fee, net, currency, \
         settled_at FROM acquirer_settlements WHERE business_date = ? ORDER BY settled_at, reference",
    )
    .bind(day)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(
            |(
                reference,
                payment_id,
                event_id,
                merchant_id,
                kind,
                gross,
                fee,
                net,
                currency,
                at,
            )| {
                Ok(StatementLine {
                    kind: SettlementType::parse(&kind).ok_or_else(|| {
                        ApiError::Internal(anyhow::anyhow!(
                            "settlement {reference} has type {kind:?}"
                        ))
                    })?,
                    acquirer_reference: reference,
                    payment_id,
                    event_id,
                    merchant_id,
                    gross,
                    fee,
                    net,
                    currency,
                    settled_at: payctl_db::from_db(at),
                })
            },
        )
        .collect()
}

/// Used by health checks: does the database answer?
pub async fn ping(db: &MySqlPool) -> bool {
    sqlx::query("SELECT 1").execute(db).await.is_ok()
}

/// `OffsetDateTime` in RFC 3339, for responses.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}
