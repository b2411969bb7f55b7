//! Idempotency with Stripe's semantics, kept in the database inside the effect's own transaction.
//!
//! A keyed request first inserts its (merchant, key) row with a fingerprint of the request, in the
//! transaction that will carry its effect; the response is written into that row before commit. So:
//! * a committed key always points at a committed effect and its exact response bytes;
//! * a concurrent duplicate blocks on the row lock, then finds the committed row and replays it — or, if
//!   the first request is still running when the lock wait runs out, gets `409`;
//! * the same key with a different request gets `422`;
//! * if the first request fails (5xx, database gone) its transaction rolls back and the key is free again.
//!
//! Redis holds completed responses for a few minutes so most replays never touch the database; it is a
//! cache only, never consulted for anything the database has not committed.

use crate::error::ApiError;
use crate::redis_client::RedisClient;
use crate::storage::{self, Tx};
use payctl_domain::{IdempotencyKey, MerchantId};
use sha2::{Digest, Sha256};
use sqlx::Row;
use time::Duration;

/// A stored response: status and exact body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A keyed request: who, which key, and what was asked.
#[derive(Debug, Clone)]
pub struct Keyed {
    pub merchant: MerchantId,
    pub key: IdempotencyKey,
    pub fingerprint: [u8; 32],
}

impl Keyed {
    /// `operation` names the route (and payment) and `canonical` is the parsed request re-serialised, so
    /// whitespace or field order do not make two equal requests differ.
    pub fn new(
        merchant: MerchantId,
        key: IdempotencyKey,
        operation: &str,
        canonical: &serde_json::Value,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(operation.as_bytes());
        h.update([0]);
        h.update(canonical.to_string().as_bytes());
        Self {
            merchant,
            key,
            fingerprint: h.finalize().into(),
        }
    }

    /// Where Redis caches this key's completed response.
    pub fn cache_key(&self, redis: &RedisClient) -> String {
        redis.key(&["idem", self.merchant.as_str(), self.key.as_str()])
    }
}

/// What to do with a keyed request.
#[derive(Debug)]
pub enum Reservation {
    /// The key is ours: carry out the request in this transaction.
    Proceed,
    /// The key was used before for this same request: send back its response.
    Replay(SavedResponse),
}

/// Claims the key inside `tx`, or finds the earlier request's outcome.
pub async fn reserve(
    tx: &mut Tx,
    req: &Keyed,
    retention: Duration,
) -> Result<Reservation, ApiError> {
    for _ in 0..2 {
        let now = storage::now();
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_fingerprint, state, \
             created_at, expires_at) VALUES (?, ?, ?, 'IN_PROGRESS', ?, ?)",
        )
        .bind(req.merchant.as_str())
        .bind(req.key.as_str())
        .bind(&req.fingerprint[..])
        .bind(storage::to_db(now))
        .bind(storage::to_db(now + retention))
        .execute(&mut **tx)
        .await;
        match inserted {
            Ok(_) => return Ok(Reservation::Proceed),
            Err(e) if storage::is_duplicate_key(&e) => {}
            Err(e) if storage::is_lock_wait(&e) => return Err(ApiError::IdempotencyInProgress),
            Err(e) => return Err(e.into()),
        }
        // Under READ COMMITTED this read sees the row the other request committed.
        let row = sqlx::query(
            "SELECT request_fingerprint, state, response_status, response_body, \
             expires_at <= UTC_TIMESTAMP(6) AS expired \
             FROM idempotency_keys WHERE merchant_id = ? AND idempotency_key = ?",
        )
        .bind(req.merchant.as_str())
        .bind(req.key.as_str())
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else {
            continue; // deleted in between (expired and purged): try the insert again
        };
        if row.try_get::<bool, _>("expired")? {
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE merchant_id = ? AND idempotency_key = ? \
                 AND expires_at <= UTC_TIMESTAMP(6)",
            )
            .bind(req.merchant.as_str())
            .bind(req.key.as_str())
            .execute(&mut **tx)
            .await?;
            continue;
        }
        let fingerprint: Vec<u8> = row.try_get("request_fingerprint")?;
        if fingerprint != req.fingerprint {
            return Err(ApiError::IdempotencyMismatch);
        }
        let state: String = row.try_get("state")?;
        if state != "COMPLETED" {
            return Err(ApiError::IdempotencyInProgress);
        }
        return Ok(Reservation::Replay(SavedResponse {
            status: row.try_get::<u16, _>("response_status")?,
            body: row.try_get("response_body")?,
        }));
    }
    Err(ApiError::IdempotencyInProgress)
}

/// The completed, unexpired response for `req`'s key, read without locking; `Err` on a fingerprint
/// mismatch. For deciding before any effect (e.g. a rate-limited retry) whether this is a replay.
pub async fn stored(
    pool: &sqlx::MySqlPool,
    req: &Keyed,
) -> Result<Option<SavedResponse>, ApiError> {
    let row = sqlx::query(
        "SELECT request_fingerprint, response_status, response_body FROM idempotency_keys \
         WHERE merchant_id = ? AND idempotency_key = ? AND state = 'COMPLETED' \
         AND expires_at > UTC_TIMESTAMP(6)",
    )
    .bind(req.merchant.as_str())
    .bind(req.key.as_str())
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let fingerprint: Vec<u8> = row.try_get("request_fingerprint")?;
    if fingerprint != req.fingerprint {
        return Err(ApiError::IdempotencyMismatch);
    }
    Ok(Some(SavedResponse {
        status: row.try_get::<u16, _>("response_status")?,
        body: row.try_get("response_body")?,
    }))
}

/// Records the response in the key's row, in the same transaction as the effect.
pub async fn complete(
    tx: &mut Tx,
    req: &Keyed,
    response: &SavedResponse,
    payment_id: Option<uuid::Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET state = 'COMPLETED', response_status = ?, response_body = ?, \
         payment_id = ? WHERE merchant_id = ? AND idempotency_key = ?",
    )
    .bind(response.status)
    .bind(&response.body)
    .bind(payment_id)
    .bind(req.merchant.as_str())
    .bind(req.key.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Cache layout: 32 bytes of fingerprint, 2 bytes of status (big-endian), then the body.
fn encode(req: &Keyed, response: &SavedResponse) -> Vec<u8> {
    let mut v = Vec::with_capacity(34 + response.body.len());
    v.extend_from_slice(&req.fingerprint);
    v.extend_from_slice(&response.status.to_be_bytes());
    v.extend_from_slice(&response.body);
    v
}

/// Reads a cache entry of `req`'s key: `Err` when it holds another request's response, `Ok(None)` when
/// it is not an entry this code wrote.
pub fn decode(req: &Keyed, v: &[u8]) -> Result<Option<SavedResponse>, ApiError> {
    if v.len() < 34 {
        return Ok(None);
    }
    if v[..32] != req.fingerprint {
        return Err(ApiError::IdempotencyMismatch);
    }
    Ok(Some(SavedResponse {
        status: u16::from_be_bytes([v[32], v[33]]),
        body: v[34..].to_vec(),
    }))
}

/// Puts a committed response into Redis (best effort).
pub async fn cache(redis: &RedisClient, req: &Keyed, response: &SavedResponse, ttl_secs: u64) {
    if ttl_secs == 0 {
        return;
    }
    let _: Option<()> = redis
        .run(
            redis::cmd("SET")
                .arg(req.cache_key(redis))
                .arg(encode(req, response))
                .arg("EX")
                .arg(ttl_secs),
        )
        .await;
}

/// Rows one purge statement deletes: small enough that no statement holds locks for long.
pub const PURGE_BATCH: u64 = 2_000;

/// Deletes every expired record, a batch at a time, until none is left or `budget` has passed; run
/// periodically. Must keep up with the busiest configuration (every merchant at its authorize limit, each
/// request a new key), so it does not stop after one batch.
pub async fn purge_expired(
    pool: &sqlx::MySqlPool,
    budget: std::time::Duration,
) -> Result<u64, sqlx::Error> {
    let started = std::time::Instant::now();
    let mut total = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM idempotency_keys WHERE expires_at <= UTC_TIMESTAMP(6) LIMIT ?",
        )
        .bind(PURGE_BATCH)
        .execute(pool)
        .await?;
        total += done.rows_affected();
        if done.rows_affected() < PURGE_BATCH || started.elapsed() >= budget {
            return Ok(total);
        }
    }
}
