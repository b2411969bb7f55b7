//! `payctl authorize | capture | refund | void | get | list | ledger`: the payment API from the terminal.
//!
//! Human output is a table; `--json` prints the API's own JSON. An API error prints as one line with its
//! code (`error: PAYMENT_NOT_FOUND: payment not found`) and exits with 1.

use crate::output::{self, table};
use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Where the API is and which key to use.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Base URL of the payment API (through the gateway: …/api).
    #[arg(
        long,
        global = true,
        env = "PAYCTL_API_URL",
        default_value = "http://127.0.0.1:8080/api"
    )]
    pub api_url: String,
    /// Merchant API key; defaults to the dev merchant's key that `payctl up` created.
    #[arg(long, global = true, env = "PAYCTL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// An error answer of the API, in its `{code, message}` shape.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (HTTP {})", self.code, self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

pub struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(home: &Path, target: &Target) -> anyhow::Result<Self> {
        let key = match &target.api_key {
            Some(k) => k.clone(),
            None => std::fs::read_to_string(home.join("secrets/dev-merchant.key"))
                .map(|k| k.trim().to_owned())
                .with_context(|| {
                    format!(
                        "no API key: pass --api-key, set PAYCTL_API_KEY, or run `payctl up` (which writes {})",
                        home.join("secrets/dev-merchant.key").display()
                    )
                })?,
        };
        Ok(Self {
            base: target.api_url.trim_end_matches('/').to_owned(),
            key,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    /// Calls the API; a non-2xx answer becomes an [`ApiError`].
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.with_context(|| {
            format!(
                "cannot reach the API at {} (is the platform up? `payctl up`)",
                self.base
            )
        })?;
        let status = res.status().as_u16();
        let bytes = res.bytes().await?;
        let value: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
        if !(200..300).contains(&status) {
            let mut message = value["message"]
                .as_str()
                .unwrap_or("unexpected answer")
                .to_owned();
            if let Some(details) = value["details"].as_array() {
                let fields: Vec<String> = details
                    .iter()
                    .map(|d| {
                        format!(
                            "{}: {}",
                            d["field"].as_str().unwrap_or("?"),
                            d["reason"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                message = format!("{message} ({})", fields.join("; "));
            }
            return Err(ApiError {
                status,
                code: value["code"].as_str().unwrap_or("HTTP_ERROR").to_owned(),
                message,
            }
            .into());
        }
        Ok(value)
    }

    pub async fn post(&self, path: &str, body: Value, key: Option<&str>) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body), key)
            .await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None, None).await
    }
}

#[derive(Debug, Args)]
pub struct AuthorizeArgs {
    /// Amount in minor units (KRW has none: 50000 is ₩50,000).
    #[arg(long)]
    pub amount: i64,
    /// ISO-4217 currency.
    #[arg(long, default_value = "KRW")]
    pub currency: String,
    /// Idempotency key; a fresh one is generated when absent. Re-run with the same key to retry safely.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// Payment id.
    pub id: String,
    /// Partial amount (minor units); all that remains when absent.
    #[arg(long)]
    pub amount: Option<i64>,
    /// Reason (refund, void).
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Payment id.
    pub id: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Page size (1–100).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Only payments in this status (AUTHORIZED, CAPTURED, PARTIALLY_REFUNDED, REFUNDED, VOIDED).
    #[arg(long)]
    pub status: Option<String>,
    /// Cursor: the nextCursor of the previous page.
    #[arg(long)]
    pub starting_after: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn print_payment(p: &Value) {
    let field = |k: &str| match &p[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    };
    let rows = [
        ("payment", "paymentId"),
        ("status", "status"),
        ("amount", "amount"),
        ("captured", "capturedAmount"),
        ("refunded", "refundedAmount"),
        ("currency", "currency"),
        ("merchant", "merchantId"),
        ("created", "createdAt"),
        ("updated", "updatedAt"),
    ];
    println!(
        "{}",
        table(
            &["field", "value"],
            rows.iter()
                .map(|(label, key)| vec![label.to_string(), field(key)])
        )
    );
}

pub async fn authorize(api: &Api, a: AuthorizeArgs) -> anyhow::Result<()> {
    let key = a
        .idempotency_key
        .unwrap_or_else(|| format!("payctl-{}", uuid::Uuid::new_v4()));
    let p = api
        .post(
            "/payments/authorize",
            json!({"amount": a.amount, "currency": a.currency}),
            Some(&key),
        )
        .await?;
    if a.json {
        return output::json(&p);
    }
    print_payment(&p);
    eprintln!("idempotency key: {key}");
    Ok(())
}

pub async fn change(api: &Api, verb: &str, a: ChangeArgs) -> anyhow::Result<()> {
    let mut body = json!({});
    if let Some(amount) = a.amount {
        body["amount"] = json!(amount);
    }
    if let Some(reason) = &a.reason {
        body["reason"] = json!(reason);
    }
    let p = api
        .post(
            &format!("/payments/{verb}/{}", a.id),
            body,
            a.idempotency_key.as_deref(),
        )
        .await?;
    if a.json {
        return output::json(&p);
    }
    print_payment(&p);
    Ok(())
}

pub async fn get(api: &Api, a: GetArgs) -> anyhow::Result<()> {
    let p = api.get(&format!("/payments/{}", a.id)).await?;
    if a.json {
        return output::json(&p);
    }
    print_payment(&p);
    Ok(())
}

pub async fn list(api: &Api, a: ListArgs) -> anyhow::Result<()> {
    let mut path = format!("/payments?limit={}", a.limit);
    if let Some(s) = &a.status {
        path.push_str(&format!("&status={s}"));
    }
    if let Some(c) = &a.starting_after {
        path.push_str(&format!("&startingAfter={c}"));
    }
    let page = api.get(&path).await?;
    if a.json {
        return output::json(&page);
    }
    let rows = page["data"].as_array().cloned().unwrap_or_default();
    let s = output::text;
    println!(
        "{}",
        table(
            &["payment", "status", "amount", "captured", "refunded", "currency", "created"],
            rows.iter().map(|p| vec![
                s(&p["paymentId"]),
                s(&p["status"]),
                s(&p["amount"]),
                s(&p["capturedAmount"]),
                s(&p["refundedAmount"]),
                s(&p["currency"]),
                s(&p["createdAt"]),
            ])
        )
    );
    if let Some(next) = page["nextCursor"].as_str() {
        eprintln!("more: payctl list --starting-after {next}");
    }
    Ok(())
}

pub async fn ledger(api: &Api, a: GetArgs) -> anyhow::Result<()> {
    let l = api.get(&format!("/payments/{}/ledger", a.id)).await?;
    if a.json {
        return output::json(&l);
    }
    let entries = l["entries"].as_array().cloned().unwrap_or_default();
    let s = output::text;
    println!(
        "{}",
        table(
            &["event", "leg", "account", "side", "amount", "currency"],
            entries.iter().map(|e| vec![
                s(&e["eventType"]),
                s(&e["leg"]),
                s(&e["account"]),
                s(&e["side"]),
                s(&e["amount"]),
                s(&e["currency"])
            ])
        )
    );
    println!(
        "debits {}  credits {}  {}",
        l["totalDebits"],
        l["totalCredits"],
        if l["balanced"] == json!(true) {
            output::green("balanced")
        } else {
            output::red("NOT balanced")
        }
    );
    Ok(())
}
