//! What a member that won a claim checks in Kafka before it forwards: of
//! the events it holds that the old leader's progress did not name, which
//! are in Kafka already? The old leader may have died after Kafka took
//! them and before it reported them, or paused with them in flight.
//! "Already in Kafka" is read from Kafka itself: the `gkb-id` header of
//! the records in each partition the held events route to, from the
//! highest offset the old leader reported there (and at least the last
//! [`SCAN_WINDOW`] records) up to the end. Never from the old leader's
//! memory. Runs on a thread of its own, so the coordinator keeps its
//! heartbeats going meanwhile.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::client;
use super::message::parse_id;
use crate::producer::record::HEADER_EVENT_ID;
use crate::producer::Partitioner;

/// Records read back from the end of a partition the old leaders never
/// reported (they wrote to it only after their last heartbeat).
/// Elsewhere the check starts right after the highest offset reported:
/// a heartbeat Kafka did not take costs duplicates (its ids were not
/// named), never a loss. Reading is what makes a takeover slow on a
/// broker that serves fetches slowly (Tansu: about 230 records a second
/// under load), so it reads no more than that.
pub const SCAN_WINDOW: i64 = 1_000;

/// An event held by the member taking over: its id and where the
/// forwarder would send it.
#[derive(Debug, Clone)]
pub struct Held {
    pub id: u64,
    pub topic: String,
    pub key: String,
}

/// What the check found.
#[derive(Debug, Default)]
pub struct Found {
    /// Held events already in Kafka.
    pub ids: HashSet<u64>,
    pub partitions: usize,
    pub records_read: u64,
}

/// Reads the partitions `held` routes to and returns the held ids found
/// there. `written`: the highest offset per partition the old leaders
/// reported.
pub fn check(
    properties: &BTreeMap<String, String>,
    held: &[Held],
    written: &BTreeMap<(String, i32), i64>,
    partitioner: Partitioner,
    deadline: Instant,
) -> Result<Found, String> {
    if held.is_empty() {
        return Ok(Found::default());
    }
    let consumer: BaseConsumer = client::consumer(properties, "takeover")?;
    let timeout = Duration::from_secs(5);
    let wanted: HashSet<u64> = held.iter().map(|h| h.id).collect();
    let mut partitions_of: HashMap<String, i32> = HashMap::new();
    let mut targets: HashSet<(String, i32)> = HashSet::new();
    for h in held {
        let count = match partitions_of.get(&h.topic) {
            Some(n) => *n,
            None => {
                let metadata = consumer
                    .fetch_metadata(Some(&h.topic), timeout)
                    .map_err(|e| format!("metadata of {}: {e}", h.topic))?;
                let n = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == h.topic)
                    .map_or(0, |t| t.partitions().len() as i32);
                partitions_of.insert(h.topic.clone(), n);
                n
            }
        };
        if count > 0 {
            targets.insert((
                h.topic.clone(),
                partitioner.partition(h.key.as_bytes(), count),
            ));
        }
    }
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for (topic, partition) in &targets {
        let (low, high) = consumer
            .fetch_watermarks(topic, *partition, timeout)
            .map_err(|e| format!("watermarks of {topic}/{partition}: {e}"))?;
        let start = written
            .get(&(topic.clone(), *partition))
            .map_or(high - SCAN_WINDOW, |o| o + 1)
            .max(low);
        if high > start {
            ends.insert((topic.clone(), *partition), high);
            assignment
                .add_partition_offset(topic, *partition, Offset::Offset(start))
                .map_err(|e| e.to_string())?;
        }
    }
    let mut found = Found {
        partitions: targets.len(),
        ..Found::default()
    };
    if ends.is_empty() {
        return Ok(found);
    }
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    while !ends.is_empty() {
        if Instant::now() >= deadline {
            return Err(format!(
                "{} partitions not read to their end in time",
                ends.len()
            ));
        }
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = result.map_err(|e| e.to_string())?;
        found.records_read += 1;
        if let Some(id) = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == HEADER_EVENT_ID)
                .and_then(|h| std::str::from_utf8(h.value?).ok())
                .and_then(parse_id)
        }) {
            if wanted.contains(&id) {
                found.ids.insert(id);
            }
        }
        let key = (message.topic().to_owned(), message.partition());
        if ends
            .get(&key)
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            ends.remove(&key);
        }
    }
    Ok(found)
}
