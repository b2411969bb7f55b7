//! The dead-letter queue on the stack's Kafka: the kinds of poison, sending a record, and reading the
//! DLQ back.

use crate::stack::Ports;
use anyhow::Context;
use clap::ValueEnum;
use pay_consumer::topics::{read_to_end, Record};
use payctl_domain::event::DLQ_TOPIC;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use serde_json::Value;
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
