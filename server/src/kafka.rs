//! Kafka plumbing for the relay: the producer, topic creation and a reachability probe.

use crate::config::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
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

/// Creates the platform's topics (tansu does not auto-create them) with `config.partitions` each, and
/// grows a topic that exists with fewer to that many where the broker can add partitions (Kafka can;
/// tansu 0.6.0 answers CreatePartitions with an error). A topic never shrinks. Growing is refused
/// loudly but not fatally: the relay still publishes to the partitions there are, and a consumer
/// beyond them stays idle.
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
    let mut existing = Vec::new();
    for result in results {
        match result {
            Ok(_) => {}
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => existing.push(topic),
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    if existing.is_empty() {
        return Ok(());
    }
    // Growing is best effort: the topics are there, so the relay can publish either way.
    if let Err(e) = grow_partitions(&admin, config, &existing, &options).await {
        tracing::error!(
            error = %e, asked = config.partitions,
            "cannot grow the topics' partitions: they keep what they have; consumers beyond that stay idle (recreate the topics to change it)"
        );
    }
    Ok(())
}

/// Asks the broker to give each of `existing` `config.partitions` partitions, where it has fewer.
async fn grow_partitions(
    admin: &AdminClient<DefaultClientContext>,
    config: &KafkaConfig,
    existing: &[String],
    options: &AdminOptions,
) -> anyhow::Result<()> {
    let counts = partition_counts(&config.bootstrap, existing).await?;
    let grow: Vec<NewPartitions<'_>> = counts
        .iter()
        .filter(|(_, n)| *n < config.partitions)
        .map(|(t, _)| NewPartitions::new(t, config.partitions as usize))
        .collect();
    if grow.is_empty() {
        return Ok(());
    }
    for result in admin.create_partitions(&grow, options).await? {
        match result {
            Ok(topic) => tracing::info!(
                %topic, partitions = config.partitions, "grew the topic's partitions"
            ),
            Err((topic, code)) => {
                let had = counts
                    .iter()
                    .find(|(t, _)| *t == topic)
                    .map_or(0, |(_, n)| *n);
                anyhow::bail!("{topic} keeps {had} partitions: the broker answered {code}");
            }
        }
    }
    Ok(())
}

/// The number of partitions of each of `topics`, from the broker's metadata.
async fn partition_counts(
    bootstrap: &str,
    topics: &[String],
) -> anyhow::Result<Vec<(String, i32)>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.connection.setup.timeout.ms", "3000")
        .create()?;
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let metadata = client.fetch_metadata(None, Duration::from_secs(5))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| topics.iter().any(|n| n == t.name()))
            .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
            .collect())
    })
    .await?
}

/// True when the broker answers a metadata request within `timeout`.
pub async fn reachable(producer: &FutureProducer, timeout: Duration) -> bool {
    use rdkafka::producer::Producer;
    let producer = producer.clone();
    tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout).is_ok())
        .await
        .unwrap_or(false)
}
