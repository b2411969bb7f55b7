//! The Kafka publisher's circuit breaker through an API instance's admin endpoints, the outbox backlog
//! it reports, and what of a set of payments reached Kafka and the ledger.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::Path;

pub async fn breaker(api_url: &str) -> anyhow::Result<Value> {
    let url = format!(
        "{}/circuit-breaker/kafka-publisher",
        api_url.trim_end_matches('/')
    );
    Ok(reqwest::get(&url)
        .await
        .with_context(|| format!("cannot reach {url}"))?
        .json()
        .await?)
}

pub async fn set_state(home: &Path, api_url: &str, state: &str) -> anyhow::Result<Value> {
    let token = std::env::var("PAYCTL_ADMIN_TOKEN").or_else(|_| {
        std::fs::read_to_string(home.join("secrets/admin-token"))
            .map(|t| t.trim().to_owned())
            .context("no admin token: set PAYCTL_ADMIN_TOKEN or run `payctl up`")
    })?;
    let url = format!(
        "{}/circuit-breaker/kafka-publisher/state",
        api_url.trim_end_matches('/')
    );
    let res = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .json(&json!({"state": state}))
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "{}: {}",
            body["code"].as_str().unwrap_or("HTTP_ERROR"),
            body["message"].as_str().unwrap_or("failed")
        );
    }
    Ok(body)
}

pub async fn backlog(api_url: &str) -> Option<i64> {
    let text = reqwest::get(format!("{}/metrics", api_url.trim_end_matches('/')))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("outbox_backlog "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|v| v as i64)
}

pub async fn outage_counts(db: &sqlx::MySqlPool, ids: &[String]) -> anyhow::Result<(i64, i64)> {
    if ids.is_empty() {
        return Ok((0, 0));
    }
    let list = vec!["?"; ids.len()].join(",");
    let uuids: Vec<uuid::Uuid> = ids
        .iter()
        .filter_map(|i| uuid::Uuid::parse_str(i).ok())
        .collect();
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM outbox_events WHERE published_at IS NOT NULL AND payment_id IN ({list})), \
                (SELECT COUNT(*) FROM ledger_entries WHERE payment_id IN ({list}))"
    );
    let mut q = sqlx::query_as::<_, (i64, i64)>(&sql);
    for u in uuids.iter().chain(uuids.iter()) {
        q = q.bind(*u);
    }
    Ok(q.fetch_one(db).await?)
}
