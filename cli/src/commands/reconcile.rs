//! `payctl reconcile`: the ledger invariants and the outbox against the payments, and nothing
//! unexplained in the DLQ (exit 1 on any violation).

use crate::output::{self, mark, table};
use crate::stack::secrets::database_url;
use crate::stack::Ports;
use clap::Args;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[arg(long)]
    json: bool,
    /// Changes younger than this are still in flight and not yet expected in the ledger.
    #[arg(long, default_value_t = 5)]
    settle_seconds: u64,
    #[command(flatten)]
    ports: Ports,
}

pub async fn exec(home: &Path, a: ReconcileArgs) -> anyhow::Result<ExitCode> {
    reconcile(
        home,
        &a.ports,
        Duration::from_secs(a.settle_seconds),
        a.json,
    )
    .await
}

/// Runs the ledger invariants against the stack's database; exit 1 on any violation.
pub async fn reconcile(
    home: &Path,
    ports: &Ports,
    settle: Duration,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let db = sqlx::MySqlPool::connect(&database_url(home, ports)?).await?;
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
