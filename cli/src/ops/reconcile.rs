//! Reconcile: the ledger invariants and the outbox against the payments in the stack's database,
//! settlement and payouts against the ledger, and the DLQ's records against what explains them.

use crate::stack::health::require_running;
use crate::stack::secrets::database_url;
use crate::stack::Ports;
use pay_consumer::invariants::Report;
use std::path::Path;
use std::time::Duration;

/// Every check, against the stack under `home`; changes younger than `settle` are still in flight, and
/// captures and refunds may take up to pay-settlement's default bound to settle at the acquirer.
pub async fn check(home: &Path, ports: &Ports, settle: Duration) -> anyhow::Result<Report> {
    check_bounded(
        home,
        ports,
        settle,
        pay_settlement::invariants::DEFAULT_BOUND,
    )
    .await
}

/// [`check`], with captures and refunds booked more than `settled_within` ago expected settled.
pub async fn check_bounded(
    home: &Path,
    ports: &Ports,
    settle: Duration,
    settled_within: Duration,
) -> anyhow::Result<Report> {
    require_running(ports.mariadb_port)?;
    let db = sqlx::MySqlPool::connect(&database_url(home, ports)?).await?;
    let mut report = pay_consumer::invariants::check(&db, settle).await?;
    report
        .checks
        .extend(pay_settlement::invariants::check(&db, settled_within).await?);
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
    Ok(report)
}

/// The acquirer's statement of business date `date` matched with our settlements and ledger.
pub async fn statement(
    home: &Path,
    ports: &Ports,
    date: time::Date,
    lines: &[payctl_domain::settlement::StatementLine],
) -> anyhow::Result<pay_settlement::statement::Matching> {
    require_running(ports.mariadb_port)?;
    let db = sqlx::MySqlPool::connect(&database_url(home, ports)?).await?;
    let (ours, of_the_date) = pay_settlement::statement::records_for(&db, date, lines).await?;
    Ok(pay_settlement::statement::match_statement(
        lines,
        &ours,
        &of_the_date,
    ))
}
