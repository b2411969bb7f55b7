//! Merchant authentication by API key (`Authorization: Bearer sk_…`).
//!
//! Keys are 40 random alphanumerics, so a single SHA-256 is the right hash: there is nothing to brute-force
//! that a slow password hash would protect, and the hot path stays fast. Only the hash and a short prefix
//! are stored. Verified keys are cached in memory for a minute; revoking a key takes that long to reach
//! every instance.

use crate::error::ApiError;
use crate::startup::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use payctl_domain::MerchantId;
use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::MySqlPool;
use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;
use std::time::{Duration, Instant};

const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_MAX: usize = 10_000;

/// An API key in clear text. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn generate() -> Self {
        let random: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        Self(format!("sk_{random}"))
    }

    pub fn from_string(key: String) -> Self {
        Self(key)
    }

    /// The secret itself, for handing to the merchant once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    fn prefix(&self) -> &str {
        &self.0[..self.0.len().min(10)]
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.prefix())
    }
}

/// Registers a merchant with a fresh key (or replaces its key) and returns the key, which is shown once.
pub async fn create_merchant(
    pool: &MySqlPool,
    id: &MerchantId,
    name: &str,
) -> Result<ApiKey, sqlx::Error> {
    let key = ApiKey::generate();
    sqlx::query(
        "INSERT INTO merchants (merchant_id, name, api_key_hash, api_key_prefix) VALUES (?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE name = VALUES(name), api_key_hash = VALUES(api_key_hash), \
         api_key_prefix = VALUES(api_key_prefix)",
    )
    .bind(id.as_str())
    .bind(name)
    .bind(&key.hash()[..])
    .bind(key.prefix())
    .execute(pool)
    .await?;
    Ok(key)
}

/// Known keys (by hash) and when they were verified.
#[derive(Default)]
pub struct KeyCache {
    entries: RwLock<HashMap<[u8; 32], (MerchantId, Instant)>>,
}

impl KeyCache {
    async fn lookup(&self, pool: &MySqlPool, key: &ApiKey) -> Result<Option<MerchantId>, ApiError> {
        let hash = key.hash();
        if let Some((id, at)) = self.entries.read().ok().and_then(|m| m.get(&hash).cloned()) {
            if at.elapsed() < CACHE_TTL {
                return Ok(Some(id));
            }
        }
        let row: Option<(String,)> =
            sqlx::query_as("SELECT merchant_id FROM merchants WHERE api_key_hash = ?")
                .bind(&hash[..])
                .fetch_optional(pool)
                .await?;
        let Some((id,)) = row else {
            return Ok(None);
        };
        let id = MerchantId::parse("merchantId", &id)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored merchant id: {e}")))?;
        if let Ok(mut m) = self.entries.write() {
            if m.len() >= CACHE_MAX {
                m.clear();
            }
            m.insert(hash, (id.clone(), Instant::now()));
        }
        Ok(Some(id))
    }
}

/// The authenticated merchant of a request.
#[derive(Debug, Clone)]
pub struct Merchant(pub MerchantId);

impl FromRequestParts<AppState> for Merchant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let key = ApiKey::from_string(token.to_owned());
        state
            .keys
            .lookup(&state.db, &key)
            .await?
            .map(Merchant)
            .ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_never_printed() {
        let a = ApiKey::generate();
        let b = ApiKey::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        let shown = format!("{a:?}");
        assert!(!shown.contains(&a.expose()[10..]), "{shown}");
    }
}
