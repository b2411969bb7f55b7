//! The acquirer's settlements table: writing a settlement exactly once per idempotency key, and the reads
//! behind the settlement and statement routes.
//!
//! Idempotency lives in the row itself: `(merchant_id, idempotency_key)` is UNIQUE (a key is the
//! merchant's own, as at a real acquirer), and the row carries the hash of the
//! request and the response it was answered with, written by one INSERT (one transaction). A second
//! request with the key finds the row and replays the stored bytes, or is refused (422) when its hash
//! differs. Two requests racing with one key both INSERT … ON CONFLICT DO NOTHING:
//! SQLite runs one write at a time (the other waits up to the busy timeout), so the second finds the
//! first's committed row, inserts nothing, and reads that row like any replay — there is never a second
//! row, and nothing to clean up.
//!
//! Stored representations (see the migration): ids as hyphenated lower-case UUID text, `settled_at` as
//! INTEGER microseconds since the Unix epoch (UTC), `business_date` as TEXT YYYY-MM-DD, the response as
//! a BLOB of the bytes sent.

use crate::clock::Clock;
use crate::error::ApiError;
use payctl_domain::settlement::{business_date, fee_and_net, SettlementType, StatementLine};
use payctl_domain::{Amount, Currency, EventId, IdempotencyKey, MerchantId, PaymentId};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
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
    db: &SqlitePool,
    key: &IdempotencyKey,
    request: &SettlementRequest,
    bps: u32,
    tz: &jiff::tz::TimeZone,
    clock: &Clock,
) -> Result<Outcome, ApiError> {
    let hash = request.hash();
    // Two rounds at most: find → insert → (the key was taken meanwhile) find again, which finds it.
    for _ in 0..2 {
        if let Some(outcome) = existing(db, &request.merchant_id, key, &hash).await? {
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
             business_date, response) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (merchant_id, idempotency_key) DO NOTHING",
        )
        .bind(&reference)
        .bind(key.as_str())
        .bind(&hash)
        .bind(request.kind.as_str())
        .bind(request.merchant_id.as_str())
        .bind(uuid_text(request.payment_id.as_uuid()))
        .bind(uuid_text(request.event_id.as_uuid()))
        .bind(gross)
        .bind(fee)
        .bind(net)
        .bind(request.currency.code())
        .bind(to_micros(settled_at))
        .bind(date_text(day))
        .bind(response.as_bytes())
        .execute(db)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Outcome::Settled(response));
        }
        // Another request with this key committed first: replay (or refuse) from its row.
    }
    Err(ApiError::DatabaseUnavailable)
}

/// The answer for a key already used: its response when the request is the same, 422 otherwise.
async fn existing(
    db: &SqlitePool,
    merchant: &MerchantId,
    key: &IdempotencyKey,
    hash: &str,
) -> Result<Option<Outcome>, ApiError> {
    let row: Option<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT request_hash, response FROM acquirer_settlements \
         WHERE merchant_id = ? AND idempotency_key = ?",
    )
    .bind(merchant.as_str())
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
    db: &SqlitePool,
    reference: &str,
) -> Result<Option<String>, ApiError> {
    let response: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT response FROM acquirer_settlements WHERE reference = ?")
            .bind(reference)
            .fetch_optional(db)
            .await?;
    response.map(utf8).transpose()
}

/// A stored response: the BLOB of the bytes we sent, which were UTF-8.
fn utf8(bytes: Vec<u8>) -> Result<String, ApiError> {
    String::from_utf8(bytes).map_err(|e| ApiError::Internal(e.into()))
}

/// The stored responses of every settlement of event `event_id`, oldest first.
pub async fn responses_by_event(
    db: &SqlitePool,
    event_id: EventId,
) -> Result<Vec<String>, ApiError> {
    let responses: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT response FROM acquirer_settlements WHERE event_id = ? ORDER BY settled_at, reference",
    )
    .bind(uuid_text(event_id.as_uuid()))
    .fetch_all(db)
    .await?;
    responses.into_iter().map(utf8).collect()
}

type LineRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    String,
    i64,
);

/// The settlements of business date `day` written up to `version` (all of them when `None`), as
/// statement lines ordered by settled_at, then reference; and the version read.
///
/// A version is the table's highest rowid: SQLite writes one row at a time and never reuses a rowid
/// here (no row is ever deleted), so every settlement committed after a read has a higher one. Two
/// reads at one version see the same lines, whatever settled in between.
pub async fn statement_lines(
    db: &SqlitePool,
    day: Date,
    version: Option<i64>,
) -> Result<(Vec<StatementLine>, i64), ApiError> {
    let version = match version {
        Some(v) => v,
        None => {
            sqlx::query_scalar("SELECT COALESCE(MAX(rowid), 0) FROM acquirer_settlements")
                .fetch_one(db)
                .await?
        }
    };
    let rows: Vec<LineRow> = sqlx::query_as(
        "SELECT reference, payment_id, event_id, merchant_id, type, gross, fee, net, currency, \
         settled_at FROM acquirer_settlements WHERE business_date = ? AND rowid <= ? \
         ORDER BY settled_at, reference",
    )
    .bind(date_text(day))
    .bind(version)
    .fetch_all(db)
    .await?;
    let lines = rows
        .into_iter()
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
                    payment_id: parse_uuid(&reference, &payment_id)?,
                    event_id: parse_uuid(&reference, &event_id)?,
                    settled_at: from_micros(&reference, at)?,
                    acquirer_reference: reference,
                    merchant_id,
                    gross,
                    fee,
                    net,
                    currency,
                })
            },
        )
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok((lines, version))
}

/// How ids are stored: hyphenated lower-case UUID text.
fn uuid_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

fn parse_uuid(reference: &str, text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!(
            "settlement {reference} has id {text:?}: {e}"
        ))
    })
}

/// How `business_date` is stored: YYYY-MM-DD.
fn date_text(day: Date) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    day.format(&format).unwrap_or_else(|_| day.to_string())
}

/// How `settled_at` is stored: microseconds since the Unix epoch, UTC. (Any time the service makes,
/// [`now`] or a test's fixed time, has whole microseconds; finer parts would be dropped.)
pub fn to_micros(t: OffsetDateTime) -> i64 {
    // ±292,000 years fit in an i64 of microseconds; `time`'s range (±9999 years) is far inside.
    (t.unix_timestamp_nanos() / 1_000) as i64
}

fn from_micros(reference: &str, micros: i64) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!(
            "settlement {reference} has settled_at {micros}: {e}"
        ))
    })
}

/// Now, in UTC, to the microsecond (what `settled_at` keeps).
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

/// Used by health checks: does the database answer?
pub async fn ping(db: &SqlitePool) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT 1")
        .fetch_one(db)
        .await
        .is_ok_and(|one| one == 1)
}

/// `OffsetDateTime` in RFC 3339, for responses.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}
