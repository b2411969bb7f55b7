//! Merchant authentication by API key (`Authorization: Bearer sk_…`).
//!
//! Keys are 40 random alphanumerics, so a single SHA-256 is the right hash: there is nothing to brute-force
//! that a slow password hash would protect, and the hot path stays fast. Only the hash and a short prefix
//! are stored. Lookups are cached both ways and guarded (see [`KeyCache`]).

use crate::config::AuthConfig;
use crate::error::ApiError;
use crate::startup::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use payctl_domain::MerchantId;
use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::MySqlPool;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

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

    /// The first characters, stored to recognise a key (`payctl merchant list`); never enough to use it.
    pub fn prefix(&self) -> &str {
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

/// Registers a new merchant with a fresh key and returns the key, which is shown once; None when the id
/// is taken (that merchant and its key are left as they are).
pub async fn register_merchant(
    pool: &MySqlPool,
    id: &MerchantId,
    name: &str,
) -> Result<Option<ApiKey>, sqlx::Error> {
    let key = ApiKey::generate();
    let inserted = sqlx::query(
        "INSERT INTO merchants (merchant_id, name, api_key_hash, api_key_prefix) VALUES (?, ?, ?, ?)",
    )
    .bind(id.as_str())
    .bind(name)
    .bind(&key.hash()[..])
    .bind(key.prefix())
    .execute(pool)
    .await;
    match inserted {
        Ok(_) => Ok(Some(key)),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Gives a merchant a fresh key in place of its old one and returns it (shown once); None when there
/// is no such merchant. The old key stops working once every instance's [`KeyCache`] has let it go
/// (`known_key_ttl_seconds`).
pub async fn rotate_key(pool: &MySqlPool, id: &MerchantId) -> Result<Option<ApiKey>, sqlx::Error> {
    let key = ApiKey::generate();
    let updated = sqlx::query(
        "UPDATE merchants SET api_key_hash = ?, api_key_prefix = ? WHERE merchant_id = ?",
    )
    .bind(&key.hash()[..])
    .bind(key.prefix())
    .bind(id.as_str())
    .execute(pool)
    .await?;
    Ok((updated.rows_affected() == 1).then_some(key))
}

/// API keys already looked up, both ways, and the guards in front of the database for keys that are
/// not: a bearer token nobody issued must not cost a database round trip each time, or a flood of junk
/// tokens takes the pool's connections from real merchants (503s) before any rate limit applies.
///
/// * known keys are cached for `known_key_ttl_seconds` (revoking a key takes that long to reach every
///   instance); after
///   that they are looked up again, but a key that was valid before never counts against its client's
///   budget below, so junk sent from a merchant's address (or in its name, through a forged
///   `X-Forwarded-For`) cannot lock that merchant out;
/// * unknown keys are cached for `unknown_key_ttl_seconds` and answered 401 from memory;
/// * each client address may cause at most `lookups_per_second` failed lookups a second, then gets 429
///   without the database being asked;
/// * at most `lookup_concurrency` lookups run at once, so junk from many addresses still cannot hold
///   more than that many connections; a lookup that cannot start within `wait` is a 503.
pub struct KeyCache {
    known: RwLock<HashMap<[u8; 32], (MerchantId, Instant)>>,
    unknown: RwLock<HashMap<[u8; 32], Instant>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    lookups: Semaphore,
    wait: Duration,
    config: AuthConfig,
}

impl KeyCache {
    /// `wait`: how long a lookup may queue for its turn (the pool's acquire timeout).
    pub fn new(config: AuthConfig, wait: Duration) -> Self {
        Self {
            known: RwLock::default(),
            unknown: RwLock::default(),
            failures: Mutex::default(),
            lookups: Semaphore::new(config.lookup_concurrency.max(1) as usize),
            wait,
            config,
        }
    }

    async fn lookup(
        &self,
        state: &AppState,
        key: &ApiKey,
        client: Option<IpAddr>,
    ) -> Result<Option<MerchantId>, ApiError> {
        let hash = key.hash();
        let known_before = self.known.read().ok().and_then(|m| m.get(&hash).cloned());
        if let Some((id, at)) = &known_before {
            if at.elapsed() < Duration::from_secs(self.config.known_key_ttl_seconds) {
                return Ok(Some(id.clone()));
            }
        }
        let unknown_ttl = Duration::from_secs(self.config.unknown_key_ttl_seconds);
        if let Some(at) = self.unknown.read().ok().and_then(|m| m.get(&hash).copied()) {
            if at.elapsed() < unknown_ttl {
                return Ok(None);
            }
        }
        if let Some(client) = client.filter(|_| known_before.is_none()) {
            if !self.may_look_up(client) {
                state
                    .metrics
                    .rate_limited
                    .with_label_values(&["authentication"])
                    .inc();
                return Err(ApiError::RateLimited {
                    action: "authentication",
                    retry_after_secs: 1,
                    limit: self.config.lookups_per_second,
                });
            }
        }
        let Ok(Ok(_permit)) = tokio::time::timeout(self.wait, self.lookups.acquire()).await else {
            return Err(ApiError::DatabaseUnavailable);
        };
        let row: Option<(String,)> =
            sqlx::query_as("SELECT merchant_id FROM merchants WHERE api_key_hash = ?")
                .bind(&hash[..])
                .fetch_optional(&state.db)
                .await?;
        let Some((id,)) = row else {
            state
                .metrics
                .key_lookups
                .with_label_values(&["unknown"])
                .inc();
            if let Ok(mut m) = self.known.write() {
                m.remove(&hash); // revoked
            }
            remember(&self.unknown, hash, Instant::now());
            if let Some(client) = client {
                self.count_failure(client);
            }
            return Ok(None);
        };
        state
            .metrics
            .key_lookups
            .with_label_values(&["known"])
            .inc();
        let id = MerchantId::parse("merchantId", &id)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored merchant id: {e}")))?;
        if let Ok(mut m) = self.unknown.write() {
            m.remove(&hash);
        }
        remember(&self.known, hash, (id.clone(), Instant::now()));
        Ok(Some(id))
    }

    /// Whether `client` is still within its budget of failed lookups this second.
    fn may_look_up(&self, client: IpAddr) -> bool {
        let Ok(m) = self.failures.lock() else {
            return true;
        };
        match m.get(&client) {
            Some((since, n)) if since.elapsed() < Duration::from_secs(1) => {
                *n < self.config.lookups_per_second
            }
            _ => true,
        }
    }

    fn count_failure(&self, client: IpAddr) {
        let Ok(mut m) = self.failures.lock() else {
            return;
        };
        if m.len() >= CACHE_MAX {
            m.retain(|_, (since, _)| since.elapsed() < Duration::from_secs(1));
        }
        let entry = m.entry(client).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= Duration::from_secs(1) {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// Inserts into a bounded cache; when full it starts over (entries are cheap to look up again).
fn remember<V>(cache: &RwLock<HashMap<[u8; 32], V>>, hash: [u8; 32], value: V) {
    if let Ok(mut m) = cache.write() {
        if m.len() >= CACHE_MAX {
            m.clear();
        }
        m.insert(hash, value);
    }
}

/// The client's address: the peer's, or — when the peer is a gateway on loopback or a private network —
/// the last address the gateway put in `X-Forwarded-For`.
fn client_address(parts: &Parts) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    let behind_gateway = match peer {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    };
    if !behind_gateway {
        return Some(peer);
    }
    let forwarded = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse::<IpAddr>().ok());
    Some(forwarded.unwrap_or(peer))
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
            .lookup(state, &key, client_address(parts))
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
