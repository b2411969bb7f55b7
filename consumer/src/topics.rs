//! Reading a topic from the start up to its current end: for DLQ inspection and replay (`payctl dlq`)
//! and for tests. Not a consumer-group read: nothing is committed.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One message as read.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
}

/// The fetch wait of every consumer of ours (see `Config::fetch_wait_ms`): a ledger at most ~0.1 s behind,
/// ~10 % of a core of idle work for tansu.
pub const FETCH_WAIT_MAX_MS: u32 = 100;

/// Every message now on `topic`, in partition then offset order. Blocking: call from a blocking task.
pub fn read_to_end(bootstrap: &str, topic: &str, timeout: Duration) -> anyhow::Result<Vec<Record>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // librdkafka's 500 ms default would make every read of a topic take seconds on tansu.
        .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS.to_string())
        .set(
            "group.id",
            format!("payctl-reader-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    anyhow::ensure!(!partitions.is_empty(), "topic {topic} does not exist");
    let mut high = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let (_, h) = consumer.fetch_watermarks(topic, *p, timeout)?;
        high.insert(*p, h);
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut position: HashMap<i32, i64> = partitions.iter().map(|p| (*p, 0)).collect();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while partitions.iter().any(|p| position[p] < high[p]) {
        anyhow::ensure!(Instant::now() < deadline, "reading {topic} timed out");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            position.insert(m.partition(), m.offset() + 1);
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: m.payload().unwrap_or_default().to_vec(),
            });
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}
