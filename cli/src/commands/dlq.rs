//! `payctl dlq`: put poison on purpose (to see the DLQ work), read the DLQ, and re-drive messages once
//! their cause is fixed.

use crate::ops::dlq::{dlq_records, inject, producer, send, Poison};
use crate::output::{self, table};
use crate::stack::Ports;
use anyhow::bail;
use clap::{Args, Subcommand};
use pay_consumer::topics::Record;
use payctl_domain::event::DLQ_TOPIC;
use rdkafka::message::{Header, OwnedHeaders};
use serde_json::{json, Value};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: Dlq,
}

#[derive(Debug, Subcommand)]
pub enum Dlq {
    /// Send a poison message of the given kind; the consumer must dead-letter it and go on.
    #[command(after_help = "Examples:
  payctl dlq inject invalid-json     not JSON at all
  payctl dlq inject unknown-payment  a valid event for a payment that does not exist")]
    Inject {
        /// What is wrong with the message.
        kind: Poison,
        #[command(flatten)]
        ports: Ports,
    },
    /// Show what is in the DLQ (oldest first).
    #[command(after_help = "Examples:
  payctl dlq tail                    the newest 20 records as a table
  payctl dlq tail -n 5 --json | jq '.[].record.errorType'")]
    Tail {
        /// How many of the newest records.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// The records as JSON: [{partition, offset, record}].
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ports: Ports,
    },
    /// Send DLQ records back to their original topic (all, or the one at --id PARTITION:OFFSET).
    #[command(after_help = "Examples:
  payctl dlq replay --id 0:3         the record at partition 0, offset 3
  payctl dlq replay                  every record (each is applied once: the ledger deduplicates)")]
    Replay {
        /// The record to replay, as PARTITION:OFFSET (as `dlq tail` shows it); all when absent.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        ports: Ports,
    },
}

pub async fn exec(a: DlqArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        Dlq::Inject { kind, ports } => {
            let (topic, partition, offset) = inject(&ports, kind).await?;
            println!("injected {kind:?} into {topic} (partition {partition}, offset {offset}); see it with `payctl dlq tail`");
        }
        Dlq::Tail { lines, json, ports } => {
            let records = dlq_records(&ports).await?;
            let shown = &records[records.len().saturating_sub(lines)..];
            if json {
                output::json(&shown.iter().map(|(r, v)| json!({"partition": r.partition, "offset": r.offset, "record": v})).collect::<Vec<_>>())?;
            } else {
                let s = output::text;
                println!(
                    "{}",
                    table(
                        &["id", "errorType", "from", "key", "attempts", "error"],
                        shown.iter().map(|(r, v)| vec![
                            format!("{}:{}", r.partition, r.offset),
                            s(&v["errorType"]),
                            format!(
                                "{}@{}:{}",
                                s(&v["originalTopic"]),
                                s(&v["partition"]),
                                s(&v["offset"])
                            ),
                            s(&v["key"]),
                            s(&v["attempts"]),
                            s(&v["errorMessage"]).chars().take(60).collect(),
                        ])
                    )
                );
                println!("{} record(s) in {DLQ_TOPIC}", records.len());
            }
        }
        Dlq::Replay { id, ports } => {
            let records = dlq_records(&ports).await?;
            let chosen: Vec<&(Record, Value)> = match &id {
                Some(id) => records
                    .iter()
                    .filter(|(r, _)| format!("{}:{}", r.partition, r.offset) == *id)
                    .collect(),
                None => records.iter().collect(),
            };
            if chosen.is_empty() {
                bail!(
                    "nothing to replay{}",
                    id.map(|i| format!(": no DLQ record {i}"))
                        .unwrap_or_default()
                );
            }
            let p = producer(&ports)?;
            for (r, v) in chosen {
                let (Some(topic), Some(payload)) =
                    (v["originalTopic"].as_str(), v["payload"].as_str())
                else {
                    eprintln!(
                        "skipping DLQ record {}:{}: not a DLQ record",
                        r.partition, r.offset
                    );
                    continue;
                };
                let from = format!("{DLQ_TOPIC}:{}:{}", r.partition, r.offset);
                let headers = OwnedHeaders::new().insert(Header {
                    key: "replayedFrom",
                    value: Some(from.as_str()),
                });
                let key = v["key"].as_str().unwrap_or_default();
                let (partition, offset) = send(&p, topic, key, payload.as_bytes(), headers).await?;
                println!("replayed {from} → {topic} (partition {partition}, offset {offset})");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
