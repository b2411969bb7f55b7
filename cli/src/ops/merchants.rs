//! The merchants payctl provisions and their API keys: the dev merchant (`payctl up` prints its key),
//! the demo store's (the gateway adds it on /store-api) and the load generator's; and the ones a
//! developer adds with `payctl merchant` (create, list, rotate-key). Keys are stored hashed by the
//! server's own functions (`pay_server::auth`); the ones payctl provisions are also kept in files.

use crate::ops::metrics::scrape;
use crate::stack::health::require_running;
use crate::stack::secrets::{database_url, write_private};
use crate::stack::{Kind, Ports};
use anyhow::Context;
use pay_server::auth::{create_merchant, register_merchant, rotate_key, ApiKey};
use payctl_domain::MerchantId;
use serde::Serialize;
use std::path::Path;

pub const DEV_MERCHANT: &str = "dev-merchant";

/// The merchant the demo store (frontend/) sells as.
pub const STORE_MERCHANT: &str = "store-merchant";

/// The dev merchant's API key: created (and stored, 0600) on the first `up`, reused after.
pub async fn dev_merchant_key(home: &Path, ports: &Ports) -> anyhow::Result<ApiKey> {
    merchant_key(home, ports, DEV_MERCHANT, "Dev merchant (payctl up)").await
}

/// The demo store's key, which the gateway adds on /store-api: a browser never holds an API key.
pub async fn store_key(home: &Path, ports: &Ports) -> anyhow::Result<ApiKey> {
    merchant_key(
        home,
        ports,
        STORE_MERCHANT,
        "Demo store (gateway /store-api)",
    )
    .await
}

/// The API key of a merchant payctl provisions (kept in `secrets/<merchant>.key`, mode 0600), created
/// with the merchant on first use. Dev-only.
async fn merchant_key(
    home: &Path,
    ports: &Ports,
    merchant: &str,
    description: &str,
) -> anyhow::Result<ApiKey> {
    let path = home.join("secrets").join(format!("{merchant}.key"));
    let db = sqlx::MySqlPool::connect(&database_url(home, ports)?).await?;
    let id = MerchantId::parse("merchantId", merchant).map_err(|e| anyhow::anyhow!("{e}"))?;
    let known: Option<(String,)> =
        sqlx::query_as("SELECT merchant_id FROM merchants WHERE merchant_id = ?")
            .bind(merchant)
            .fetch_optional(&db)
            .await?;
    if let (Ok(key), Some(_)) = (std::fs::read_to_string(&path), known) {
        return Ok(ApiKey::from_string(key.trim().to_owned()));
    }
    let key = create_merchant(&db, &id, description).await?;
    std::fs::create_dir_all(home.join("secrets"))?;
    write_private(&path, key.expose().as_bytes())?;
    Ok(key)
}

/// The name of the merchants `load`, `bench` and `chaos` provision: whose keys payctl may replace.
const PROVISIONED: &str = "payctl load";

/// `n` merchants named `{prefix}-1…` with fresh keys, and their API keys. A merchant of that id that
/// payctl did not provision (one made with `payctl merchant create`) is passed over, never taken over:
/// its key and name stay its owner's.
pub async fn merchant_keys(
    db: &sqlx::MySqlPool,
    n: u32,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut i = 0;
    while keys.len() < n.max(1) as usize {
        i += 1;
        let id = MerchantId::parse("merchantId", &format!("{prefix}-{i}"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let owner: Option<(String,)> =
            sqlx::query_as("SELECT name FROM merchants WHERE merchant_id = ?")
                .bind(id.as_str())
                .fetch_optional(db)
                .await?;
        if owner.is_some_and(|(name,)| name != PROVISIONED) {
            continue;
        }
        keys.push(
            create_merchant(db, &id, PROVISIONED)
                .await?
                .expose()
                .to_owned(),
        );
    }
    Ok(keys)
}

/// The stack's database, failing at once when it does not run.
async fn database(home: &Path, ports: &Ports) -> anyhow::Result<sqlx::MySqlPool> {
    require_running(ports.mariadb_port)?;
    Ok(sqlx::MySqlPool::connect(&database_url(home, ports)?).await?)
}

/// A merchant as `payctl merchant list` shows it: never its key, only the key's first characters.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MerchantRow {
    pub merchant_id: String,
    pub name: String,
    /// UTC, RFC 3339.
    pub created_at: String,
    pub key_prefix: String,
}

/// Every merchant, oldest first.
pub async fn list(home: &Path, ports: &Ports) -> anyhow::Result<Vec<MerchantRow>> {
    let db = database(home, ports).await?;
    let rows: Vec<(String, String, time::PrimitiveDateTime, String)> = sqlx::query_as(
        "SELECT merchant_id, name, created_at, api_key_prefix FROM merchants \
         ORDER BY created_at, merchant_id",
    )
    .fetch_all(&db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(merchant_id, name, created, key_prefix)| MerchantRow {
            merchant_id,
            name,
            created_at: created
                .assume_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| created.to_string()),
            key_prefix,
        })
        .collect())
}

/// A new merchant with a fresh key (its only copy: the database keeps the hash).
pub async fn create(
    home: &Path,
    ports: &Ports,
    id: &MerchantId,
    name: &str,
) -> anyhow::Result<ApiKey> {
    let db = database(home, ports).await?;
    register_merchant(&db, id, name).await?.with_context(|| {
        format!(
            "merchant '{}' exists; give another --id, or a new key with: payctl merchant rotate-key {}",
            id.as_str(),
            id.as_str()
        )
    })
}

/// A fresh key for merchant `id` in place of its old one. The dev merchant, whose key payctl keeps in
/// `secrets/dev-merchant.key`, gets that file rewritten, so payctl's own commands follow.
pub async fn rotate(home: &Path, ports: &Ports, id: &MerchantId) -> anyhow::Result<ApiKey> {
    if id.as_str() == STORE_MERCHANT {
        anyhow::bail!(
            "{STORE_MERCHANT}'s key is written into the gateway's config; it is not rotated from here"
        );
    }
    let db = database(home, ports).await?;
    let key = rotate_key(&db, id)
        .await?
        .with_context(|| format!("no merchant '{}' (see: payctl merchant list)", id.as_str()))?;
    // Only the dev merchant's own id: on a case-insensitive filesystem (macOS) `Dev-Merchant.key`
    // would be dev-merchant's file.
    if id.as_str() == DEV_MERCHANT {
        let kept = home.join("secrets").join(format!("{DEV_MERCHANT}.key"));
        write_private(&kept, key.expose().as_bytes())?;
    }
    Ok(key)
}

/// pay-server's default `known_key_ttl_seconds`, for an instance too old to export it.
const DEFAULT_KNOWN_KEY_TTL_SECONDS: u64 = 60;

/// How long an old key may still work after a rotation: the longest `auth_known_key_ttl_seconds` of the
/// API instances that answer (each trusts a key it has seen for that long); 0 when none runs.
pub async fn old_key_grace(home: &Path, ports: &Ports) -> u64 {
    scrape(home, ports)
        .await
        .into_iter()
        .filter(|(_, kind, _)| *kind == Kind::Ingest)
        .filter_map(|(_, _, samples)| samples)
        .map(|samples| {
            samples
                .iter()
                .find(|s| s.name == "auth_known_key_ttl_seconds")
                .map_or(DEFAULT_KNOWN_KEY_TTL_SECONDS, |s| s.value.max(0.0) as u64)
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod review_tests {
    use super::*;

    /// Review (issue 17): `payctl merchant create "Load Merchant 1"` makes merchant `load-merchant-1`
    /// (its id is the name, lower-cased) and shows its key once. The next `payctl load` provisions its
    /// merchants `load-merchant-1…n` with `create_merchant`, an upsert: that merchant's name becomes
    /// "payctl load" and its key is replaced, so the key its owner stored stops working (the same for
    /// `bench-merchant-N` and `payctl bench`).
    #[tokio::test(flavor = "multi_thread")]
    async fn load_does_not_take_over_a_merchant_made_with_merchant_create() {
        let root = std::env::temp_dir().join("payctl-review-merchants");
        let services = payctl_stack::testing::Services::start(&root, "takeover").unwrap();
        let admin = sqlx::MySqlPool::connect(&services.mariadb.url(""))
            .await
            .unwrap();
        sqlx::query("CREATE DATABASE takeover")
            .execute(&admin)
            .await
            .unwrap();
        let db = sqlx::MySqlPool::connect(&services.mariadb.url("takeover"))
            .await
            .unwrap();
        payctl_db::MIGRATOR.run(&db).await.unwrap();

        let id = MerchantId::parse("merchantId", "load-merchant-1").unwrap();
        let mine = register_merchant(&db, &id, "Load Merchant 1")
            .await
            .unwrap()
            .expect("a new merchant");
        // The stored prefix tells the keys apart (the hash is the server's private function).
        let stored = || async {
            sqlx::query_as::<_, (String, String)>(
                "SELECT name, api_key_prefix FROM merchants WHERE merchant_id = 'load-merchant-1'",
            )
            .fetch_one(&db)
            .await
            .unwrap()
        };
        assert_eq!(stored().await.1, mine.prefix());

        // What `payctl load --merchants 2` does first.
        merchant_keys(&db, 2, "load-merchant").await.unwrap();
        let (name, key_prefix) = stored().await;
        assert_eq!(
            key_prefix,
            mine.prefix(),
            "load replaced the key `merchant create` gave its owner"
        );
        assert_eq!(name, "Load Merchant 1", "load renamed the merchant");
    }
}
