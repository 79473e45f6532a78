//! An independent Kafka consumer: reads every record of some topics, from
//! the beginning up to the high watermark each partition has now.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

#[derive(Debug, Clone)]
pub struct Consumed {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: HashMap<String, Vec<u8>>,
}

impl Consumed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

pub fn read_all(bootstrap: &str, topics: &[&str], limit: Duration) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("e2e-check-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // Tansu answers a fetch with little at a time: asking again at
        // once, not after librdkafka's default 500 ms, reads a backlog
        // several times faster.
        .set("fetch.wait.max.ms", "10")
        .set("max.partition.fetch.bytes", "16777216")
        .create()
        .expect("consumer builds");
    let timeout = Duration::from_secs(10);
    let mut assignment = TopicPartitionList::new();
    let mut targets: HashMap<(String, i32), i64> = HashMap::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .expect("topic metadata");
        let partitions = metadata.topics()[0].partitions().len() as i32;
        assert!(partitions > 0, "topic {topic} has no partitions");
        for p in 0..partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, timeout)
                .expect("watermarks");
            if high > low {
                targets.insert(((*topic).to_owned(), p), high);
                assignment
                    .add_partition_offset(topic, p, Offset::Offset(low))
                    .unwrap();
            }
        }
    }
    if targets.is_empty() {
        return Vec::new();
    }
    consumer.assign(&assignment).expect("assign");
    // Tansu serves about 200-250 records a second to one consumer on two
    // busy cores (tests/end_to_end.rs: 10,060 in 43 s; more consumers
    // side by side read no faster): a large read gets the time it needs.
    let records: i64 = targets.values().sum();
    let limit = limit.max(Duration::from_secs(60 + records as u64 / 100));
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut reached: HashMap<(String, i32), i64> = HashMap::new();
    while !targets.is_empty() {
        assert!(
            Instant::now() < deadline,
            "consumer did not reach the high watermarks within {limit:?}; left (high watermarks): \
             {targets:?}; last offsets read there: {:?}",
            targets
                .keys()
                .map(|k| (k, reached.get(k)))
                .collect::<Vec<_>>()
        );
        let Some(result) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = result.expect("consume");
        let key = (message.topic().to_owned(), message.partition());
        reached.insert(key.clone(), message.offset());
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|header| {
                        (
                            header.key.to_owned(),
                            header.value.unwrap_or_default().to_vec(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Consumed {
            topic: key.0.clone(),
            partition: key.1,
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
        if targets
            .get(&key)
            .is_some_and(|high| message.offset() + 1 >= *high)
        {
            targets.remove(&key);
        }
    }
    out
}
