//! `payctl smoke`: one payment through every state, then its ledger, its settlement at the acquirer, a
//! payout of today (twice: paid once) and today's statement reconciled, to prove the running platform
//! correct.

use crate::ops::acquirer::{date_text, Acquirer};
use crate::ops::api::{Api, Target};
use crate::ops::{payouts, reconcile};
use crate::output::steps::Steps;
use crate::stack::Ports;
use anyhow::bail;
use clap::Args;
use payctl_domain::ledger::MERCHANT_PAYABLE;
use payctl_domain::settlement::{
    business_date, parse_statement, parse_time_zone, DEFAULT_TIME_ZONE,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  payctl smoke                          each step with its time, then \"smoke passed\"
  payctl smoke --json | jq .passed      the steps as JSON
  payctl smoke --junit smoke.xml        also a JUnit report, for CI to show each step
  payctl smoke --no-settlement          stop after the ledger (no acquirer wait, no payout)

After the ledger, smoke waits for the capture and both refunds to settle at the acquirer, pays out
today (`payctl settle` for today, run twice: one payout) and matches today's statement from the
acquirer with our books. Paying out today closes today early for the stack's merchants: what settles
later today is paid by the next `payctl settle` of today.")]
pub struct SmokeArgs {
    /// The steps as one JSON document on stdout: {passed, paymentId, steps: [{name, ok, seconds, detail}]}.
    #[arg(long)]
    json: bool,
    /// Also write the steps as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Stop after the ledger: don't wait for the acquirer, pay out or reconcile the statement.
    #[arg(long)]
    no_settlement: bool,
    /// The cutoff time zone of business dates (the acquirer's).
    #[arg(long, env = "PAYCTL_TIME_ZONE", default_value = DEFAULT_TIME_ZONE)]
    time_zone: String,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    ports: Ports,
}

/// How long the capture and refunds may take to settle: 1–3 s per acquirer call, the refunds only after
/// the capture, retries with backoff on its 5 % failures.
const SETTLEMENT_WAIT: Duration = Duration::from_secs(90);

/// authorize → capture → partial refund → refund the rest, then the payment's ledger must show every leg,
/// balanced, with the merchant owed captured − refunded (here 0).
pub async fn exec(home: &Path, a: SmokeArgs) -> anyhow::Result<ExitCode> {
    let mut steps = Steps::new("payctl smoke", 40, !a.json);
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
    if a.no_settlement {
        return Ok(());
    }
    settlement(home, a, api, steps, &id).await
}

/// The payment's capture and refunds settle at the acquirer, today is paid out with them, and today's
/// statement from the acquirer matches our books.
async fn settlement(
    home: &Path,
    a: &SmokeArgs,
    api: &Api,
    steps: &mut Steps,
    id: &str,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let deadline = Instant::now() + SETTLEMENT_WAIT;
    let payment = loop {
        let p = api.get(&format!("/payments/{id}")).await?;
        let done = p["settlement"]["items"].as_array().map_or(0, Vec::len) == 3
            && matches!(
                p["settlement"]["status"].as_str(),
                Some("SETTLED" | "PAID_OUT" | "FAILED")
            );
        if done || Instant::now() > deadline {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let settlement = &payment["settlement"];
    let ok = matches!(settlement["status"].as_str(), Some("SETTLED" | "PAID_OUT"));
    let summary = |s: &Value| {
        s["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| {
                        format!(
                            "{} {} {}",
                            i["type"].as_str().unwrap_or("?"),
                            i["amount"],
                            i["status"].as_str().unwrap_or("?")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    steps.record(
        "settlement: capture and refunds settled",
        t,
        ok,
        &summary(settlement),
    );
    if !ok {
        bail!(
            "payment {id} is not settled at the acquirer after {} s: {settlement}",
            SETTLEMENT_WAIT.as_secs()
        );
    }

    let t = Instant::now();
    let zone = parse_time_zone(&a.time_zone)?;
    let today = business_date(time::OffsetDateTime::now_utc(), &zone);
    let first = payouts::settle(home, &a.ports, today, &a.time_zone).await?;
    let again = payouts::settle(home, &a.ports, today, &a.time_zone).await?;
    let p = api.get(&format!("/payments/{id}")).await?;
    let paid = p["settlement"]["status"] == "PAID_OUT";
    let ok = paid && again.made.is_empty() && again.all.len() == first.all.len();
    steps.record(
        "settle today twice: paid out once",
        t,
        ok,
        &format!(
            "{} payout(s) made, then {}; payment {}",
            first.made.len(),
            again.made.len(),
            p["settlement"]["status"].as_str().unwrap_or("?")
        ),
    );
    if !ok {
        bail!(
            "settling {} twice: first made {}, then {}; payment {id}: {}",
            date_text(today),
            first.made.len(),
            again.made.len(),
            p["settlement"]
        );
    }

    let t = Instant::now();
    let (csv, _) = Acquirer::new(&a.ports)?.statement(today, None).await?;
    let lines =
        parse_statement(&csv).map_err(|e| anyhow::anyhow!("the acquirer's statement: {e}"))?;
    let m = reconcile::statement(home, &a.ports, today, &lines).await?;
    let ok = m.exceptions.is_empty() && m.matched >= 3;
    steps.record(
        "reconcile: today's statement matches",
        t,
        ok,
        &format!(
            "{} line(s), {} matched, {} exception(s)",
            m.lines,
            m.matched,
            m.exceptions.len()
        ),
    );
    if !ok {
        bail!(
            "the acquirer's statement of {} does not match our books: {:?}",
            date_text(today),
            m.exceptions
        );
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
