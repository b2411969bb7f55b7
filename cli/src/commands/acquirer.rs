//! `payctl acquirer`: drive the mock acquirer the platform settles with — make it refuse everything
//! for a while, change how slow and unreliable it is, and fetch the settlement statement of a business
//! date as it would deliver it, clean or with chosen discrepancies (for `payctl reconcile`).

use crate::ops::acquirer::{date_text, parse_date, Acquirer};
use crate::ops::k6::parse_duration;
use crate::output::{self, table};
use crate::stack::Ports;
use anyhow::Context;
use clap::{Args, Subcommand};
use payctl_domain::settlement::{business_date, parse_statement, parse_time_zone, Injection};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct AcquirerArgs {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make the acquirer refuse every settlement call (503) for a while, as a real one does in an
    /// outage; the settlement worker must retry, and settle everything once it is back.
    #[command(after_help = "Examples:
  payctl acquirer outage --for 30s   refuse everything for 30 s
  payctl acquirer outage --for 0s    end an outage now")]
    Outage {
        /// How long (e.g. 30s, 2m); 0s ends the outage.
        #[arg(long = "for", value_parser = parse_duration)]
        duration: Duration,
        #[command(flatten)]
        ports: Ports,
    },
    /// Show or change the acquirer's latency and failure rate (defaults: 1–3 s, 5 %).
    #[command(after_help = "Examples:
  payctl acquirer settings                          show them
  payctl acquirer settings --latency-ms 0 --failure-rate 0   fast and reliable (load tests)
  payctl acquirer settings --failure-rate 0.2 --json")]
    Settings {
        /// Latency of each settlement call, as a range in milliseconds ("1000-3000") or one value.
        #[arg(long)]
        latency_ms: Option<String>,
        /// Share of settlement calls that fail with a 503 (0 to 1); half of them after settling.
        #[arg(long)]
        failure_rate: Option<f64>,
        /// The settings as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ports: Ports,
    },
    /// Write the settlement statement of a business date as the acquirer delivers it (CSV), clean or
    /// with exactly the discrepancies asked for, and say what was injected.
    #[command(after_help = "Examples:
  payctl acquirer statement --date 2026-12-05
  payctl acquirer statement --date 2026-12-05 --inject drop=2,amount=1,duplicate=1,unknown=1 --seed 7
  payctl acquirer statement --json | jq '.injected[] | .kind'

The business date is the calendar date in the acquirer's cutoff time zone (Asia/Seoul by default):
a capture settled at 2026-12-05T15:00:00Z belongs to 2026-12-06.")]
    Statement {
        /// The business date (YYYY-MM-DD); today in Asia/Seoul when absent.
        #[arg(long, value_parser = parse_date)]
        date: Option<time::Date>,
        /// Discrepancies to put in: drop=N (lines left out), amount=N (wrong amounts),
        /// duplicate=N (lines twice), unknown=N (transactions we never sent).
        #[arg(long)]
        inject: Option<String>,
        /// Seed of the choice of lines to alter: the same seed, the same statement.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write it; acquirer-statement-DATE.csv when absent, - for standard output.
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// What was written and injected as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ports: Ports,
    },
}

pub async fn exec(args: AcquirerArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Outage { duration, ports } => {
            let v = Acquirer::new(&ports)?.outage(duration).await?;
            match v["outageUntil"].as_str() {
                Some(until) if !duration.is_zero() => {
                    println!("the acquirer refuses every settlement call until {until}")
                }
                _ => println!("no outage: the acquirer answers again"),
            }
        }
        Command::Settings {
            latency_ms,
            failure_rate,
            json,
            ports,
        } => {
            if let Some(f) = failure_rate {
                anyhow::ensure!(
                    (0.0..=1.0).contains(&f),
                    "--failure-rate must be between 0 and 1, not {f}"
                );
            }
            let acquirer = Acquirer::new(&ports)?;
            let v = if latency_ms.is_some() || failure_rate.is_some() {
                acquirer
                    .set_settings(latency_ms.as_deref(), failure_rate)
                    .await?
            } else {
                acquirer.settings().await?
            };
            if json {
                output::json(&v)?;
            } else {
                println!(
                    "latency {} ms, failure rate {}",
                    output::text(&v["latencyMs"]),
                    output::text(&v["failureRate"])
                );
            }
        }
        Command::Statement {
            date,
            inject,
            seed,
            out,
            json,
            ports,
        } => {
            let injection = inject
                .as_deref()
                .map(Injection::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--inject: {e}"))?;
            let date = match date {
                Some(d) => d,
                None => business_date(
                    time::OffsetDateTime::now_utc(),
                    &parse_time_zone("Asia/Seoul")?,
                ),
            };
            let (csv, injected) = Acquirer::new(&ports)?
                .statement(date, injection.as_ref().map(|i| (i, seed)))
                .await?;
            let lines = parse_statement(&csv)
                .context("the acquirer's statement does not parse")?
                .len();
            let out = out.unwrap_or_else(|| {
                PathBuf::from(format!("acquirer-statement-{}.csv", date_text(date)))
            });
            let to_stdout = out.as_os_str() == "-";
            if to_stdout {
                print!("{csv}");
            } else {
                std::fs::write(&out, &csv).with_context(|| format!("writing {}", out.display()))?;
            }
            if json {
                output::json(&json!({
                    "date": date_text(date),
                    "file": (!to_stdout).then(|| out.display().to_string()),
                    "lines": lines,
                    "seed": injection.is_some().then_some(seed),
                    "injected": injected,
                }))?;
            } else if !to_stdout {
                println!(
                    "wrote {} ({lines} line(s), business date {})",
                    out.display(),
                    date_text(date)
                );
                if !injected.is_empty() {
                    println!(
                        "{}",
                        table(
                            &["injected", "acquirer reference", "event", "detail"],
                            injected.iter().map(|i| vec![
                                format!("{:?}", i.kind).to_lowercase(),
                                i.acquirer_reference.clone(),
                                i.event_id.to_string(),
                                i.detail.clone(),
                            ])
                        )
                    );
                    println!(
                        "replay: --inject {} --seed {seed}",
                        inject.unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
