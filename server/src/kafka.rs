//! Kafka plumbing for the relay: the producer, topic creation and a reachability probe.

use crate::config::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::FutureProducer;
use std::time::Duration;

/// An idempotent producer (no duplicates from its own retries, per-partition order kept) with a bounded
/// delivery time: a message it cannot deliver within `delivery_timeout_ms` fails instead of waiting.
pub fn producer(config: &KafkaConfig) -> anyhow::Result<FutureProducer> {
    let producer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap)
        .set("client.id", "pay-server")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", config.delivery_timeout_ms.to_string())
        .set(
            "request.timeout.ms",
            config.delivery_timeout_ms.min(30_000).to_string(),
        )
        .set("socket.connection.setup.timeout.ms", "3000")
        .set("reconnect.backoff.max.ms", "1000")
        .set("topic.metadata.refresh.interval.ms", "10000")
        .create()?;
    Ok(producer)
}

/// Creates the platform's topics (tansu does not auto-create them). Existing topics are fine.
pub async fn ensure_topics(config: &KafkaConfig) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap)
        .set("socket.connection.setup.timeout.ms", "3000")
        .create()?;
    let names: Vec<String> = payctl_domain::event::all_topics()
        .map(|t| config.topic(t))
        .collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, config.partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
    let results = admin.create_topics(&topics, &options).await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// True when the broker answers a metadata request within `timeout`.
pub async fn reachable(producer: &FutureProducer, timeout: Duration) -> bool {
    use rdkafka::producer::Producer;
    let producer = producer.clone();
    tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout).is_ok())
        .await
        .unwrap_or(false)
}
