//! The merchants payctl provisions and their API keys: the dev merchant (`payctl up` prints its key),
//! the demo store's (the gateway adds it on /store-api) and the load generator's. Dev-only.

use crate::stack::secrets::{database_url, write_private};
use crate::stack::Ports;
use pay_server::auth::{create_merchant, ApiKey};
use payctl_domain::MerchantId;
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

/// Registers `n` merchants named `{prefix}-1…n` (fresh keys) and returns their API keys.
pub async fn merchant_keys(
    db: &sqlx::MySqlPool,
    n: u32,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    for i in 1..=n.max(1) {
        let id = MerchantId::parse("merchantId", &format!("{prefix}-{i}"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        keys.push(
            create_merchant(db, &id, "payctl load")
                .await?
                .expose()
                .to_owned(),
        );
    }
    Ok(keys)
}
