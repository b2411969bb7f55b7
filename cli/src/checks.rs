//! `payctl smoke` and `payctl reconcile`: prove the running platform correct.

use crate::api::Api;
use crate::native::{self, Ports};
use crate::output::{self, mark, table};
use anyhow::bail;
use payctl_domain::ledger::MERCHANT_PAYABLE;
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn step(name: &str, started: Instant, ok: bool, detail: &str) {
    println!(
        "{} {name:<34} {:>7.1?}  {detail}",
        mark(ok),
        started.elapsed()
    );
}

/// authorize → capture → partial refund → refund the rest, then the payment's ledger must show every leg,
/// balanced, with the merchant owed captured − refunded (here 0).
pub async fn smoke(api: &Api) -> anyhow::Result<ExitCode> {
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
    expect(&p, "AUTHORIZED", "authorize 50000 KRW", t)?;

    let t = Instant::now();
    let p = api
        .post(&format!("/payments/capture/{id}"), json!({}), None)
        .await?;
    expect(&p, "CAPTURED", "capture", t)?;

    let t = Instant::now();
    let p = api
        .post(
            &format!("/payments/refund/{id}"),
            json!({"amount": 20_000, "reason": "smoke: partial"}),
            None,
        )
        .await?;
    expect(&p, "PARTIALLY_REFUNDED", "partial refund 20000", t)?;

    let t = Instant::now();
    let p = api
        .post(
            &format!("/payments/refund/{id}"),
            json!({"reason": "smoke: rest"}),
            None,
        )
        .await?;
    expect(&p, "REFUNDED", "refund the remaining 30000", t)?;

    let t = Instant::now();
    let replay = api
        .post(
            "/payments/authorize",
            json!({"amount": 50_000, "currency": "KRW"}),
            Some(&key),
        )
        .await?;
    let same = replay["paymentId"].as_str() == Some(id.as_str());
    step("idempotent replay", t, same, "same payment id");
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
    step(
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
    println!("smoke passed: payment {id}");
    Ok(ExitCode::SUCCESS)
}

fn expect(p: &Value, status: &str, what: &str, t: Instant) -> anyhow::Result<()> {
    let ok = p["status"] == status;
    step(
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

/// Runs the ledger invariants against the stack's database; exit 1 on any violation.
pub async fn reconcile(
    home: &Path,
    ports: &Ports,
    settle: Duration,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let db = sqlx::MySqlPool::connect(&native::database_url(home, ports)?).await?;
    let mut report = pay_consumer::invariants::check(&db, settle).await?;
    let bootstrap = format!("127.0.0.1:{}", ports.kafka_port);
    let dlq = tokio::task::spawn_blocking(move || {
        pay_consumer::topics::read_to_end(
            &bootstrap,
            payctl_domain::event::DLQ_TOPIC,
            Duration::from_secs(10),
        )
    })
    .await?;
    match dlq {
        Ok(records) => {
            let records: Vec<(String, serde_json::Value)> = records
                .into_iter()
                .map(|r| {
                    let v = serde_json::from_slice(&r.payload).unwrap_or(serde_json::Value::Null);
                    (format!("{}:{}", r.partition, r.offset), v)
                })
                .collect();
            report
                .checks
                .push(pay_consumer::invariants::dlq_check(&db, &records).await?);
        }
        Err(e) => report.checks.push(pay_consumer::invariants::Check {
            name: "nothing unexplained in the DLQ",
            violations: vec![pay_consumer::invariants::Violation {
                subject: "payment.dlq".into(),
                detail: format!("cannot read the DLQ: {e:#}"),
            }],
        }),
    }
    if as_json {
        output::json(&report)?;
    } else {
        println!(
            "{}",
            table(
                &["", "check", "violations", "first"],
                report.checks.iter().map(|c| vec![
                    mark(c.violations.is_empty()),
                    c.name.to_owned(),
                    c.violations.len().to_string(),
                    c.violations
                        .first()
                        .map(|v| format!("{}: {}", v.subject, v.detail))
                        .unwrap_or_default(),
                ])
            )
        );
    }
    if report.is_clean() {
        if !as_json {
            println!("reconcile: clean");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: reconcile found {} violation(s)",
            report.violations()
        );
        Ok(ExitCode::from(1))
    }
}
