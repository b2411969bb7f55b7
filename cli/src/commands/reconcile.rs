//! `payctl reconcile`: the ledger invariants and the outbox against the payments, every capture and
//! refund settled in time and every payout equal to the net it covers, and nothing unexplained in the DLQ; or, with `--statement`/`--date`, the acquirer's settlement statement against
//! our settlements and ledger (exit 1 on any violation or exception).

use crate::ops::acquirer::{date_text, parse_date, Acquirer};
use crate::ops::reconcile::check;
use crate::output::{self, mark, table};
use crate::stack::Ports;
use anyhow::Context;
use clap::Args;
use pay_settlement::statement::{ExceptionKind, Matching};
use payctl_domain::settlement::{
    business_date, parse_statement, parse_time_zone, StatementLine, DEFAULT_TIME_ZONE,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  payctl reconcile                      a table of the checks; exit 1 on any violation
  payctl reconcile --json | jq .clean   {clean, violations, checks: [{name, violations: [{subject, detail}]}]}
  payctl reconcile --settle-seconds 0   expect even the last second's changes in the ledger
  payctl reconcile --settled-within 60  captures and refunds older than a minute must be settled
  payctl reconcile --statement acquirer-statement-2026-12-05.csv   the acquirer's statement against our books
  payctl reconcile --date 2026-12-05 --exceptions exceptions.csv   ask the acquirer for it; the exceptions as CSV

Against a statement, every line is matched to our settlement (by acquirer reference, else event id) and
its ledger legs; exceptions: missing_at_acquirer, missing_at_us, amount_mismatch, fee_mismatch,
duplicate, not_in_ledger.")]
pub struct ReconcileArgs {
    /// The verdict as JSON: {clean, violations, checks}.
    #[arg(long)]
    json: bool,
    /// Changes younger than this are still in flight and not yet expected in the ledger.
    #[arg(long, default_value_t = 5)]
    settle_seconds: u64,
    /// Captures and refunds in the ledger for longer than this must be settled at the acquirer (or be
    /// explained by the DLQ).
    #[arg(long, value_name = "SECONDS", default_value_t = pay_settlement::invariants::DEFAULT_BOUND.as_secs())]
    settled_within: u64,
    /// An acquirer's settlement statement (CSV, as `payctl acquirer statement` writes it) to match.
    #[arg(long, value_name = "FILE")]
    statement: Option<PathBuf>,
    /// The business date to reconcile: with --statement, the file's date (else the one most of its
    /// lines fall on); alone, the statement is asked of the acquirer.
    #[arg(long, value_parser = parse_date)]
    date: Option<time::Date>,
    /// Write the statement's exceptions to this CSV file.
    #[arg(long, value_name = "FILE")]
    exceptions: Option<PathBuf>,
    #[command(flatten)]
    ports: Ports,
}

pub async fn exec(home: &Path, a: ReconcileArgs) -> anyhow::Result<ExitCode> {
    if a.statement.is_some() || a.date.is_some() {
        return against_statement(home, &a).await;
    }
    anyhow::ensure!(
        a.exceptions.is_none(),
        "--exceptions needs a statement: add --statement FILE or --date D"
    );
    let report = crate::ops::reconcile::check_bounded(
        home,
        &a.ports,
        Duration::from_secs(a.settle_seconds),
        Duration::from_secs(a.settled_within),
    )
    .await?;
    print_report(&report, a.json)
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
    print_report(&report, as_json)
}

fn print_report(
    report: &pay_consumer::invariants::Report,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
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

/// The business date most of `lines` fall on in the cutoff zone.
fn date_of(lines: &[StatementLine]) -> anyhow::Result<time::Date> {
    let zone = parse_time_zone(DEFAULT_TIME_ZONE)?;
    let mut counts: std::collections::BTreeMap<time::Date, usize> = Default::default();
    for l in lines {
        *counts
            .entry(business_date(l.settled_at, &zone))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(d, _)| d)
        .context("the statement has no lines: say which business date it is with --date")
}

async fn against_statement(home: &Path, a: &ReconcileArgs) -> anyhow::Result<ExitCode> {
    let (lines, date, source) = match &a.statement {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let lines =
                parse_statement(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let date = match a.date {
                Some(d) => d,
                None => date_of(&lines)?,
            };
            (lines, date, file.display().to_string())
        }
        None => {
            let date = a.date.context("--date or --statement")?;
            let (csv, _) = Acquirer::new(&a.ports)?.statement(date, None).await?;
            let lines = parse_statement(&csv)
                .map_err(|e| anyhow::anyhow!("the acquirer's statement: {e}"))?;
            (lines, date, "the acquirer".to_owned())
        }
    };
    let m = crate::ops::reconcile::statement(home, &a.ports, date, &lines).await?;
    if let Some(path) = &a.exceptions {
        write_exceptions(path, &m)?;
    }
    if a.json {
        output::json(&serde_json::json!({
            "date": date_text(date),
            "source": source,
            "clean": m.exceptions.is_empty(),
            "lines": m.lines,
            "ours": m.ours,
            "matched": m.matched,
            "counts": ExceptionKind::ALL
                .iter()
                .map(|k| (k.as_str(), m.count(*k)))
                .collect::<std::collections::BTreeMap<_, _>>(),
            "exceptions": m.exceptions,
        }))?;
    } else {
        print_statement_report(date, &source, &m);
    }
    if m.exceptions.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: the statement of {} has {} exception(s)",
            date_text(date),
            m.exceptions.len()
        );
        Ok(ExitCode::from(1))
    }
}

fn print_statement_report(date: time::Date, source: &str, m: &Matching) {
    println!(
        "statement of {} from {source}: {} line(s), {} settlement(s) of ours, {} matched",
        date_text(date),
        m.lines,
        m.ours,
        m.matched
    );
    println!(
        "{}",
        table(
            &["", "exception", "count"],
            ExceptionKind::ALL.iter().map(|k| vec![
                mark(m.count(*k) == 0),
                k.as_str().to_owned(),
                m.count(*k).to_string(),
            ])
        )
    );
    if !m.exceptions.is_empty() {
        println!(
            "{}",
            table(
                &["exception", "acquirer reference", "event", "detail"],
                m.exceptions.iter().map(|e| vec![
                    e.kind.as_str().to_owned(),
                    e.acquirer_reference.clone(),
                    e.event_id.to_string(),
                    e.detail.clone(),
                ])
            )
        );
    } else {
        println!("reconcile: the statement matches");
    }
}

/// kind,acquirer_reference,event_id,payment_id,detail — one line per exception.
fn write_exceptions(path: &Path, m: &Matching) -> anyhow::Result<()> {
    let mut csv = String::from("kind,acquirer_reference,event_id,payment_id,detail\n");
    for e in &m.exceptions {
        csv.push_str(&format!(
            "{},{},{},{},\"{}\"\n",
            e.kind.as_str(),
            e.acquirer_reference,
            e.event_id,
            e.payment_id,
            e.detail.replace('"', "\"\"")
        ));
    }
    std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))
}
