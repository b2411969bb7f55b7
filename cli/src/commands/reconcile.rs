//! `payctl reconcile`: the ledger invariants and the outbox against the payments, and nothing
//! unexplained in the DLQ (exit 1 on any violation).

use crate::ops::reconcile::check;
use crate::output::{self, mark, table};
use crate::stack::Ports;
use clap::Args;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  payctl reconcile                      a table of the checks; exit 1 on any violation
  payctl reconcile --json | jq .clean   {clean, violations, checks: [{name, violations: [{subject, detail}]}]}
  payctl reconcile --settle-seconds 0   expect even the last second's changes in the ledger")]
pub struct ReconcileArgs {
    /// The verdict as JSON: {clean, violations, checks}.
    #[arg(long)]
    json: bool,
    /// Changes younger than this are still in flight and not yet expected in the ledger.
    #[arg(long, default_value_t = 5)]
    settle_seconds: u64,
    #[command(flatten)]
    ports: Ports,
}

pub async fn exec(home: &Path, a: ReconcileArgs) -> anyhow::Result<ExitCode> {
    report(
        home,
        &a.ports,
        Duration::from_secs(a.settle_seconds),
        a.json,
    )
    .await
}

/// Runs the checks against the stack's database and prints them; exit 1 on any violation (also how
/// `load` and `bench` end).
pub async fn report(
    home: &Path,
    ports: &Ports,
    settle: Duration,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let report = check(home, ports, settle).await?;
    if as_json {
        output::json(&serde_json::json!({
            "clean": report.is_clean(),
            "violations": report.violations(),
            "checks": report.checks,
        }))?;
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
