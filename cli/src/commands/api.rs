//! `payctl authorize | capture | refund | void | get | list | ledger`: the payment API from the terminal.
//!
//! Human output is a table; `--json` prints the API's own JSON. An API error prints as one line with its
//! code (`error: PAYMENT_NOT_FOUND: payment not found`) and exits with 1.

use crate::ops::api::{Api, Target};
use crate::output::{self, table};
use clap::Args;
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;

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
    #[command(flatten)]
    pub target: Target,
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
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Payment id.
    pub id: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
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
    #[command(flatten)]
    pub target: Target,
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

pub async fn authorize(home: &Path, a: AuthorizeArgs) -> anyhow::Result<ExitCode> {
    let api = &Api::new(home, &a.target)?;
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
        output::json(&p)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_payment(&p);
    eprintln!("idempotency key: {key}");
    Ok(ExitCode::SUCCESS)
}

pub async fn change(home: &Path, verb: &str, a: ChangeArgs) -> anyhow::Result<ExitCode> {
    let api = &Api::new(home, &a.target)?;
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
        output::json(&p)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_payment(&p);
    Ok(ExitCode::SUCCESS)
}

pub async fn get(home: &Path, a: GetArgs) -> anyhow::Result<ExitCode> {
    let api = &Api::new(home, &a.target)?;
    let p = api.get(&format!("/payments/{}", a.id)).await?;
    if a.json {
        output::json(&p)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_payment(&p);
    Ok(ExitCode::SUCCESS)
}

pub async fn list(home: &Path, a: ListArgs) -> anyhow::Result<ExitCode> {
    let api = &Api::new(home, &a.target)?;
    let mut path = format!("/payments?limit={}", a.limit);
    if let Some(s) = &a.status {
        path.push_str(&format!("&status={s}"));
    }
    if let Some(c) = &a.starting_after {
        path.push_str(&format!("&startingAfter={c}"));
    }
    let page = api.get(&path).await?;
    if a.json {
        output::json(&page)?;
        return Ok(ExitCode::SUCCESS);
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
    Ok(ExitCode::SUCCESS)
}

pub async fn ledger(home: &Path, a: GetArgs) -> anyhow::Result<ExitCode> {
    let api = &Api::new(home, &a.target)?;
    let l = api.get(&format!("/payments/{}/ledger", a.id)).await?;
    if a.json {
        output::json(&l)?;
        return Ok(ExitCode::SUCCESS);
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
    Ok(ExitCode::SUCCESS)
}
