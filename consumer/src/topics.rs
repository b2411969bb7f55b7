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

/// A metadata-and-offsets client of `bootstrap` acting for consumer group `group`; it never joins
/// the group (nothing is subscribed or committed), so asking it disturbs no member.
fn offsets_client(bootstrap: &str, group: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?)
}

fn partitions(c: &BaseConsumer, topic: &str, timeout: Duration) -> anyhow::Result<Vec<i32>> {
    let metadata = c.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// Records now held in `topic` (from each partition's first retained offset to its end), as the broker
/// counts them; 0 for a topic that does not exist yet. Blocking.
pub fn records_held(bootstrap: &str, topic: &str, timeout: Duration) -> anyhow::Result<i64> {
    let c = offsets_client(
        bootstrap,
        &format!("payctl-reader-{}", uuid::Uuid::new_v4()),
    )?;
    let mut held = 0;
    for p in partitions(&c, topic, timeout)? {
        let (low, high) = c.fetch_watermarks(topic, p, timeout)?;
        held += (high - low).max(0);
    }
    Ok(held)
}

/// Per topic, the messages between `group`'s committed offsets and the topic's end, partitions summed,
/// as the broker reports them (not a member's own view, which is stale for partitions it has not read
/// since it started). A partition the group never committed counts from its first retained offset, as
/// the group reads from the earliest. Blocking.
pub fn group_lag(
    bootstrap: &str,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> anyhow::Result<Vec<(String, i64)>> {
    let c = offsets_client(bootstrap, group)?;
    let mut out = Vec::new();
    for topic in topics {
        let mut tpl = TopicPartitionList::new();
        for p in partitions(&c, topic, timeout)? {
            tpl.add_partition(topic, p);
        }
        let committed = if tpl.count() == 0 {
            tpl
        } else {
            c.committed_offsets(tpl, timeout)?
        };
        let mut lag = 0;
        for e in committed.elements() {
            let (low, high) = c.fetch_watermarks(topic, e.partition(), timeout)?;
            let at = match e.offset() {
                Offset::Offset(o) => o.max(low),
                _ => low,
            };
            lag += (high - at).max(0);
        }
        out.push((topic.clone(), lag));
    }
    Ok(out)
}
