//! The ceiling: a plain librdkafka producer (idempotent, acks=all, the
//! properties the bridge enforces, default linger) sending the frames the
//! simulator emitted, as the bridge would send them: same Kafka topic,
//! key, headers and byte-identical value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde::Deserialize;

use crate::support::{http, ledger};

/// One record as the bridge would produce it.
pub struct Frame {
    pub kafka_topic: &'static str,
    pub genesys_topic: String,
    pub key: String,
    pub correlation_id: String,
    pub value: String,
}

/// The Kafka topic of a Genesys topic under `support::bridge_config`'s
/// routes (first match wins, else the default topic).
fn route(genesys_topic: &str) -> &'static str {
    let parts: Vec<&str> = genesys_topic.split('.').collect();
    match parts.as_slice() {
        ["v2", "analytics", "queues", _, "observations"] => "genesys.queue-observations",
        ["v2", "routing", "queues", ..] => "genesys.queue-conversations",
        _ => "genesys.events",
    }
}

/// The frames of events `first_seq..=last_seq` the simulator still
/// remembers (its log keeps at most 256 MiB of frame text), read in pages.
pub fn frames(sim_url: &str, first_seq: u64, last_seq: u64) -> Vec<Frame> {
    #[derive(Deserialize)]
    struct Reply {
        events: Vec<ledger::Emitted>,
    }
    const PAGE: u64 = 10_000;
    let mut out = Vec::new();
    let mut since = first_seq.saturating_sub(1);
    let mut last_pushed = since;
    while since < last_seq {
        let reply = http::get(&format!(
            "{sim_url}/sim/emitted?since_seq={since}&frames=true&limit={PAGE}"
        ))
        .expect("/sim/emitted answers");
        assert_eq!(reply.status, 200, "/sim/emitted: {}", reply.body);
        let reply: Reply = serde_json::from_str(&reply.body).expect("/sim/emitted parses");
        let Some(last) = reply.events.last().map(|e| e.seq) else {
            break;
        };
        for e in reply.events {
            if e.seq > last_seq || !e.delivered {
                continue;
            }
            // One entry per receiving channel: the first is enough.
            if e.seq <= last_pushed {
                continue;
            }
            let Some(value) = e.frame else { continue };
            last_pushed = e.seq;
            out.push(Frame {
                kafka_topic: route(&e.topic),
                key: ledger::expected_key(&e.topic).to_owned(),
                genesys_topic: e.topic,
                correlation_id: e.correlation_id,
                value,
            });
        }
        since = last;
    }
    out
}

#[derive(Default)]
struct Counting {
    acked: AtomicU64,
    failed: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

struct Context(Arc<Counting>);

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.acked.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                *self.0.last_error.lock().unwrap() = Some(e.to_string());
                self.0.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

pub struct Run {
    pub records: u64,
    pub secs: f64,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.secs
    }
}

/// The plain producer, configured as the bridge's (what
/// src/producer/config.rs ENFORCED sets, aliases left out; the bridge's
/// partitioner, so keys land on the same partitions), with the metadata of
/// `topics` fetched before any clock starts.
fn plain_producer<C: ProducerContext>(
    bootstrap: &str,
    partitioner: &str,
    topics: &[&str],
    context: C,
) -> ThreadedProducer<C> {
    let producer: ThreadedProducer<C> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0")
        .set("retries", "2147483647")
        .set("partitioner", partitioner)
        .create_with_context(context)
        .expect("the plain producer builds");
    for topic in topics {
        producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .expect("topic metadata for the plain producer");
    }
    producer
}

/// Sends every frame once; times first send to last acknowledgement (the
/// connection and metadata are set up before the clock starts).
pub fn run(bootstrap: &str, partitioner: &str, frames: &[Frame], topics: &[&str]) -> Run {
    let counting = Arc::new(Counting::default());
    let producer = plain_producer(bootstrap, partitioner, topics, Context(counting.clone()));

    let started = Instant::now();
    for frame in frames {
        let received_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .to_string();
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: "genesys-topic",
                value: Some(frame.genesys_topic.as_bytes()),
            })
            .insert(Header {
                key: "genesys-correlation-id",
                value: Some(frame.correlation_id.as_bytes()),
            })
            .insert(Header {
                key: "genesys-received-at-ms",
                value: Some(received_at.as_bytes()),
            });
        let mut record = BaseRecord::to(frame.kafka_topic)
            .key(frame.key.as_str())
            .payload(frame.value.as_str())
            .headers(headers);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    assert!(
                        Instant::now() < deadline,
                        "the plain producer's queue stayed full for 120 s"
                    );
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("the plain producer refused a record: {e}"),
            }
        }
    }
    producer
        .flush(Duration::from_secs(600))
        .expect("the plain producer's records acknowledged within 600 s");
    let secs = started.elapsed().as_secs_f64();
    let acked = counting.acked.load(Ordering::Relaxed);
    let failed = counting.failed.load(Ordering::Relaxed);
    assert!(
        failed == 0 && acked == frames.len() as u64,
        "plain producer: {acked} acknowledged, {failed} failed of {} (last error: {:?})",
        frames.len(),
        counting.last_error.lock().unwrap()
    );
    Run {
        records: acked,
        secs,
    }
}

/// Send → acknowledged times of the plain producer, in ms.
#[derive(Default)]
struct Timing(std::sync::Mutex<Vec<f64>>);

struct TimingContext(Arc<Timing>);

impl ClientContext for TimingContext {}

impl ProducerContext for TimingContext {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        if result.is_ok() {
            let ms = sent.elapsed().as_secs_f64() * 1e3;
            self.0 .0.lock().unwrap().push(ms);
        }
    }
}

/// The plain producer's own send → acknowledged latency at `rate` records
/// a second for `secs` (the frames reused in turn): what the broker alone
/// costs, to read the bridge's receive → acknowledged latency against.
/// Returns the sorted latencies in ms.
pub fn latency(
    bootstrap: &str,
    partitioner: &str,
    frames: &[Frame],
    topics: &[&str],
    rate: f64,
    secs: u64,
) -> Vec<f64> {
    let timing = Arc::new(Timing::default());
    let producer = plain_producer(
        bootstrap,
        partitioner,
        topics,
        TimingContext(timing.clone()),
    );
    let count = (rate * secs as f64) as usize;
    let started = Instant::now();
    for i in 0..count {
        // Paced as the simulator paces: record i leaves at i / rate.
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let frame = &frames[i % frames.len()];
        let record = BaseRecord::with_opaque_to(frame.kafka_topic, Box::new(Instant::now()))
            .key(frame.key.as_str())
            .payload(frame.value.as_str());
        producer
            .send(record)
            .map_err(|(e, _)| e)
            .expect("the plain producer takes a record at this rate");
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("the plain producer's records acknowledged");
    let mut out = std::mem::take(&mut *timing.0.lock().unwrap());
    out.sort_by(f64::total_cmp);
    out
}

/// The `q` quantile of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
