//! `payctl smoke`: one payment through every state, then its ledger, to prove the running platform
//! correct.

use crate::ops::api::{Api, Target};
use crate::output::steps::Steps;
use anyhow::bail;
use clap::Args;
use payctl_domain::ledger::MERCHANT_PAYABLE;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  payctl smoke                          each step with its time, then \"smoke passed\"
  payctl smoke --json | jq .passed      the steps as JSON
  payctl smoke --junit smoke.xml        also a JUnit report, for CI to show each step")]
pub struct SmokeArgs {
    /// The steps as one JSON document on stdout: {passed, paymentId, steps: [{name, ok, seconds, detail}]}.
    #[arg(long)]
    json: bool,
    /// Also write the steps as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    #[command(flatten)]
    target: Target,
}

/// authorize → capture → partial refund → refund the rest, then the payment's ledger must show every leg,
/// balanced, with the merchant owed captured − refunded (here 0).
pub async fn exec(home: &Path, a: SmokeArgs) -> anyhow::Result<ExitCode> {
    let mut steps = Steps::new("payctl smoke", 34, !a.json);
    let mut id = None;
    let result = run(home, &a, &mut steps, &mut id).await;
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    let written = steps.junit_written(a.junit.as_deref(), error.as_deref());
    if a.json {
        crate::output::json(&json!({
            "passed": result.is_ok(),
            "paymentId": id,
            "steps": steps.list,
            "error": error,
        }))?;
    }
    result?;
    if !a.json {
        println!("smoke passed: payment {}", id.unwrap_or_default());
    }
    Ok(if written {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn run(
    home: &Path,
    a: &SmokeArgs,
    steps: &mut Steps,
    paid: &mut Option<String>,
) -> anyhow::Result<()> {
    let api = &Api::new(home, &a.target)?;
    let key = format!("smoke-{}", uuid::Uuid::new_v4());
    let t = Instant::now();
    let p = api
        .post(
            "/payments/authorize",
            json!({"amount": 50_000, "currency": "KRW"}),
            Some(&key),
        )
        .await?;
    let id = p["paymentId"].as_str().unwrap_or_default().to_owned();
    *paid = Some(id.clone());
    expect(steps, &p, "AUTHORIZED", "authorize 50000 KRW", t)?;

    let t = Instant::now();
    let p = api
        .post(&format!("/payments/capture/{id}"), json!({}), None)
        .await?;
    expect(steps, &p, "CAPTURED", "capture", t)?;

    let t = Instant::now();
    let p = api
        .post(
            &format!("/payments/refund/{id}"),
            json!({"amount": 20_000, "reason": "smoke: partial"}),
            None,
        )
        .await?;
    expect(steps, &p, "PARTIALLY_REFUNDED", "partial refund 20000", t)?;

    let t = Instant::now();
    let p = api
        .post(
            &format!("/payments/refund/{id}"),
            json!({"reason": "smoke: rest"}),
            None,
        )
        .await?;
    expect(steps, &p, "REFUNDED", "refund the remaining 30000", t)?;

    let t = Instant::now();
    let replay = api
        .post(
            "/payments/authorize",
            json!({"amount": 50_000, "currency": "KRW"}),
            Some(&key),
        )
        .await?;
    let same = replay["paymentId"].as_str() == Some(id.as_str());
    steps.record("idempotent replay", t, same, "same payment id");
    if !same {
        bail!("replaying the authorize returned another payment: {replay}");
    }

    let t = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ledger = loop {
        let l = api.get(&format!("/payments/{id}/ledger")).await?;
        if l["entries"].as_array().map_or(0, Vec::len) >= 10 || Instant::now() > deadline {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let entries = ledger["entries"].as_array().cloned().unwrap_or_default();
    let payable: i64 = entries
        .iter()
        .filter(|e| e["account"] == MERCHANT_PAYABLE)
        .map(|e| {
            let a = e["amount"].as_i64().unwrap_or(0);
            if e["side"] == "CREDIT" {
                a
            } else {
                -a
            }
        })
        .sum();
    let ok = entries.len() == 10 && ledger["balanced"] == json!(true) && payable == 0;
    steps.record(
        "ledger: 10 legs, balanced, net 0",
        t,
        ok,
        &format!(
            "{} legs, debits {} credits {}, merchant payable {payable}",
            entries.len(),
            ledger["totalDebits"],
            ledger["totalCredits"]
        ),
    );
    if !ok {
        bail!("the ledger of payment {id} does not match its payment: {ledger}");
    }
    Ok(())
}

fn expect(
    steps: &mut Steps,
    p: &Value,
    status: &str,
    what: &str,
    t: Instant,
) -> anyhow::Result<()> {
    let ok = p["status"] == status;
    steps.record(
        what,
        t,
        ok,
        &format!(
            "{} → {}",
            p["paymentId"].as_str().unwrap_or("?"),
            p["status"].as_str().unwrap_or("?")
        ),
    );
    if !ok {
        bail!("{what}: expected status {status}, got {p}");
    }
    Ok(())
}
