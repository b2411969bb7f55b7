//! The dead-letter queue on the stack's Kafka: the kinds of poison, sending a record, and reading the
//! DLQ back.

use crate::stack::health::require_running;
use crate::stack::Ports;
use anyhow::Context;
use clap::ValueEnum;
use pay_consumer::topics::{read_to_end, Record};
use payctl_domain::event::DLQ_TOPIC;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use serde_json::{json, Value};
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

fn bootstrap(ports: &Ports) -> String {
    format!("127.0.0.1:{}", ports.kafka_port)
}

pub fn producer(ports: &Ports) -> anyhow::Result<FutureProducer> {
    require_running(ports.kafka_port)?;
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap(ports))
        .set("message.timeout.ms", "10000")
        .create()?)
}

pub async fn send(
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

pub async fn dlq_records(ports: &Ports) -> anyhow::Result<Vec<(Record, Value)>> {
    require_running(ports.kafka_port)?;
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

/// Sends one poison message of the given kind; where it went: (topic, partition, offset).
pub async fn inject(ports: &Ports, kind: Poison) -> anyhow::Result<(&'static str, i32, i64)> {
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
        &producer(ports)?,
        topic,
        &id.to_string(),
        &payload,
        OwnedHeaders::new(),
    )
    .await?;
    Ok((topic, partition, offset))
}
