//! `payctl dlq`: put poison on purpose (to see the DLQ work), read the DLQ, and re-drive messages once
//! their cause is fixed.

use crate::native::Ports;
use crate::output::{self, table};
use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use pay_consumer::topics::{read_to_end, Record};
use payctl_domain::event::DLQ_TOPIC;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Poison {
    /// Not JSON at all.
    InvalidJson,
    /// A well-formed event for a payment that does not exist.
    UnknownPayment,
    /// An event type the consumer does not know.
    UnknownType,
    /// A schema version the consumer does not read.
    BadVersion,
}

#[derive(Debug, Subcommand)]
pub enum Dlq {
    /// Send a poison message of the given kind; the consumer must dead-letter it and go on.
    Inject {
        kind: Poison,
        #[command(flatten)]
        ports: Ports,
    },
    /// Show what is in the DLQ (oldest first).
    Tail {
        /// How many of the newest records.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ports: Ports,
    },
    /// Send DLQ records back to their original topic (all, or the one at --id PARTITION:OFFSET).
    Replay {
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        ports: Ports,
    },
}

fn bootstrap(ports: &Ports) -> String {
    format!("127.0.0.1:{}", ports.kafka_port)
}

fn producer(ports: &Ports) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap(ports))
        .set("message.timeout.ms", "10000")
        .create()?)
}

async fn send(
    p: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    headers: OwnedHeaders,
) -> anyhow::Result<(i32, i64)> {
    let record = FutureRecord::to(topic)
        .key(key)
        .payload(payload)
        .headers(headers);
    let delivery = p
        .send(record, Timeout::After(Duration::from_secs(5)))
        .await
        .map_err(|(e, _)| e)
        .with_context(|| format!("sending to {topic} (is Kafka up?)"))?;
    Ok((delivery.partition, delivery.offset))
}

async fn dlq_records(ports: &Ports) -> anyhow::Result<Vec<(Record, Value)>> {
    let b = bootstrap(ports);
    let records =
        tokio::task::spawn_blocking(move || read_to_end(&b, DLQ_TOPIC, Duration::from_secs(20)))
            .await??;
    Ok(records
        .into_iter()
        .map(|r| {
            let v = serde_json::from_slice(&r.payload).unwrap_or(Value::Null);
            (r, v)
        })
        .collect())
}

pub async fn run(cmd: Dlq) -> anyhow::Result<ExitCode> {
    match cmd {
        Dlq::Inject { kind, ports } => {
            let id = uuid::Uuid::now_v7();
            let envelope = |event_type: &str, version: u32| {
                json!({
                    "eventId": uuid::Uuid::now_v7(), "eventType": event_type, "schemaVersion": version,
                    "paymentId": id, "merchantId": "dev-merchant", "amount": 1000, "currency": "KRW",
                    "occurredAt": "2026-01-01T00:00:00Z", "status": "CAPTURED",
                    "authorizedAmount": 1000, "capturedAmount": 1000, "refundedAmount": 0
                })
                .to_string()
                .into_bytes()
            };
            let (topic, payload) = match kind {
                Poison::InvalidJson => ("payment.captured", b"{\"this is\": not json".to_vec()),
                Poison::UnknownPayment => ("payment.captured", envelope("PAYMENT_CAPTURED", 1)),
                Poison::UnknownType => ("payment.captured", envelope("PAYMENT_TELEPORTED", 1)),
                Poison::BadVersion => ("payment.captured", envelope("PAYMENT_CAPTURED", 99)),
            };
            let (partition, offset) = send(
                &producer(&ports)?,
                topic,
                &id.to_string(),
                &payload,
                OwnedHeaders::new(),
            )
            .await?;
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
