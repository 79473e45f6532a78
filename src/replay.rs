//! Dead-letter replay: sends the records the bridge kept aside as refused
//! by Kafka (`dead_letter` tree of the buffer) to Kafka again, once the
//! cause is fixed (a broker size limit raised, a topic policy relaxed), and
//! removes from the dead-letter tree exactly those Kafka acknowledged.
//! Records refused again stay, with the new reason.
//!
//! Decisions, and why:
//! - **Same record as the bridge would send.** Key, headers and value
//!   come from [`crate::producer::record`] applied to the dead letter turned
//!   back into a buffer [`Record`], so a replayed record is byte for byte
//!   what the bridge sends for a live event.
//! - **Routing from the configuration given now**, not the `kafka_topic`
//!   recorded at the time: a dead letter is treated like an event still
//!   waiting in the buffer, which the bridge routes with its current
//!   configuration at start-up; and a refusal caused by the route itself is
//!   then fixed by fixing the route. The summary names the topic used.
//! - **Partitions as the bridge picks them**: the producer is built from
//!   `Settings::kafka_properties`, which carry the configured `partitioner`
//!   (the bridge computes the same algorithm itself).
//! - **Every record gets an answer.** The bridge runs librdkafka with
//!   `message.timeout.ms=0` (never give up, so per-key order holds). A
//!   replay is a one-shot command that must end, and its records are
//!   already out of order with what followed them, so here
//!   `message.timeout.ms` is the replay's timeout: librdkafka reports each
//!   record as acknowledged, refused or timed out, and a timed-out one
//!   stays a dead letter (if the broker wrote it after all, a later replay
//!   duplicates it; nothing is lost).
//! - **Acknowledged first, removed after**: removals happen only once every
//!   delivery report is in, so a crash during a replay leaves records in
//!   the dead-letter tree (sent again by the next replay: a duplicate,
//!   never a loss).
//! - **The bridge must be stopped**: the buffer is locked while a bridge
//!   runs on it ([`BufferError::Locked`]), and the replay never touches a
//!   buffer behind a running bridge's back.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::Message as _;

use crate::buffer::{Buffer, BufferError, DeadLetter, Record};
use crate::config::{ConfigError, Settings};
use crate::producer::record;

/// Extra time past the replay timeout for librdkafka's last reports (its
/// timeout scan runs about once a second).
const REPORT_GRACE: Duration = Duration::from_secs(5);

/// Why a replay could not run (a record Kafka refuses is not an error: it
/// is an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Includes [`BufferError::Locked`]: a bridge is running on the buffer.
    #[error(transparent)]
    Buffer(#[from] BufferError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("kafka client settings refused: {0}")]
    Client(KafkaError),
}

/// A dead letter Kafka acknowledged: removed from the dead-letter tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub seq: u64,
    pub kafka_topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A dead letter Kafka refused again (or did not answer for in time): kept,
/// with this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub seq: u64,
    pub kafka_topic: String,
    pub reason: String,
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub sent: Vec<Sent>,
    pub kept: Vec<Kept>,
}

impl Outcome {
    /// How many were kept for each reason.
    pub fn kept_by_reason(&self) -> BTreeMap<&str, usize> {
        let mut reasons = BTreeMap::new();
        for kept in &self.kept {
            *reasons.entry(kept.reason.as_str()).or_default() += 1;
        }
        reasons
    }

    /// One line for people: `sent`, `still refused` with reasons.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "dead-letter replay: {} sent and removed, {} still refused (kept)",
            self.sent.len(),
            self.kept.len()
        );
        let reasons: Vec<String> = self
            .kept_by_reason()
            .into_iter()
            .map(|(reason, n)| format!("{n} × {reason}"))
            .collect();
        if !reasons.is_empty() {
            line.push_str(": ");
            line.push_str(&reasons.join("; "));
        }
        line
    }

    pub fn all_sent(&self) -> bool {
        self.kept.is_empty()
    }
}

/// The buffer record a dead letter was made from.
pub fn to_record(letter: &DeadLetter) -> Record {
    Record {
        seq: letter.seq,
        received_at_ms: letter.received_at_ms,
        topic_name: letter.topic_name.clone(),
        correlation_id: letter.correlation_id.clone(),
        payload: letter.payload.as_bytes().to_vec(),
        kind: letter
            .kind
            .as_deref()
            .and_then(crate::buffer::Kind::parse)
            .unwrap_or_default(),
    }
}

/// One delivery report: a dead letter's sequence, and its partition and
/// offset or Kafka's refusal.
type Report = (u64, Result<(i32, i64), KafkaError>);

/// Delivery reports, passed from librdkafka's callback to the replay.
struct ReplayContext {
    reports: Sender<Report>,
}

impl ClientContext for ReplayContext {}

impl ProducerContext for ReplayContext {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: Box<u64>) {
        let outcome = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((error, _)) => Err(error.clone()),
        };
        // The receiver lives as long as the replay that owns the producer.
        let _ = self.reports.send((*seq, outcome));
    }
}

/// Replays every dead letter of the buffer at `buffer_path` with the Kafka
/// settings and routes of `settings`, waiting at most `timeout` for Kafka.
/// Blocking.
pub fn replay(
    buffer_path: &Path,
    settings: &Settings,
    timeout: Duration,
) -> Result<Outcome, ReplayError> {
    let buffer = Buffer::open_with_cache(buffer_path, settings.config.buffer.cache_mib)?;
    let letters = buffer.dead_letters()?;
    if letters.is_empty() {
        return Ok(Outcome::default());
    }
    let router = settings.config.kafka.router()?;
    let (reports_tx, reports) = channel();
    let producer = build_producer(
        &settings.kafka_properties,
        timeout,
        ReplayContext {
            reports: reports_tx,
        },
    )?;

    let mut topics: BTreeMap<u64, String> = BTreeMap::new();
    let mut outcome = Outcome::default();
    let mut pending = 0usize;
    for letter in &letters {
        let record = to_record(letter);
        let topic = router.route(&record.topic_name).to_owned();
        match send(&producer, &topic, &record, timeout) {
            Ok(()) => pending += 1,
            // Refused before it left (a client-side limit): answered now.
            Err(error) => outcome.kept.push(Kept {
                seq: record.seq,
                kafka_topic: topic.clone(),
                reason: error.to_string(),
            }),
        }
        topics.insert(record.seq, topic);
    }
    collect(&producer, &reports, pending, timeout, &topics, &mut outcome);
    drop(producer);

    // Refused again: keep, with the reason of this attempt.
    let by_seq: BTreeMap<u64, &DeadLetter> = letters.iter().map(|l| (l.seq, l)).collect();
    for kept in &outcome.kept {
        buffer.dead_letter(
            &to_record(by_seq[&kept.seq]),
            &kept.kafka_topic,
            &kept.reason,
        )?;
    }
    let acknowledged: Vec<u64> = outcome.sent.iter().map(|s| s.seq).collect();
    buffer.remove_dead_letters(&acknowledged)?;
    buffer.flush_blocking()?;
    outcome.sent.sort_by_key(|s| s.seq);
    outcome.kept.sort_by_key(|k| k.seq);
    Ok(outcome)
}

fn build_producer(
    properties: &BTreeMap<String, String>,
    timeout: Duration,
    context: ReplayContext,
) -> Result<BaseProducer<ReplayContext>, ReplayError> {
    let mut config = ClientConfig::new();
    for (k, v) in properties {
        config.set(k, v);
    }
    // See the module docs: a replay must end with an answer per record.
    config.set(
        "message.timeout.ms",
        timeout.as_millis().clamp(1, i32::MAX as u128).to_string(),
    );
    config
        .create_with_context(context)
        .map_err(ReplayError::Client)
}

/// Hands one record to librdkafka, waiting while its queue is full.
fn send(
    producer: &BaseProducer<ReplayContext>,
    topic: &str,
    record: &Record,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let deadline = Instant::now() + timeout;
    loop {
        let kafka_record = BaseRecord::with_opaque_to(topic, Box::new(record.seq))
            .key(record::key(record))
            .payload(&record.payload)
            .headers(record::headers(record));
        match producer.send(kafka_record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                if Instant::now() < deadline =>
            {
                producer.poll(Duration::from_millis(100));
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// Waits for `pending` delivery reports (librdkafka answers each within
/// `timeout`, see [`build_producer`]), filing each as sent or kept.
fn collect(
    producer: &BaseProducer<ReplayContext>,
    reports: &Receiver<Report>,
    mut pending: usize,
    timeout: Duration,
    topics: &BTreeMap<u64, String>,
    outcome: &mut Outcome,
) {
    let deadline = Instant::now() + timeout + REPORT_GRACE;
    let mut answered = std::collections::BTreeSet::new();
    while pending > 0 && Instant::now() < deadline {
        // Delivery callbacks run inside poll, on this thread.
        producer.poll(Duration::from_millis(100));
        while let Ok((seq, result)) = reports.try_recv() {
            pending -= 1;
            answered.insert(seq);
            let kafka_topic = topics[&seq].clone();
            match result {
                Ok((partition, offset)) => outcome.sent.push(Sent {
                    seq,
                    kafka_topic,
                    partition,
                    offset,
                }),
                Err(error) => outcome.kept.push(Kept {
                    seq,
                    kafka_topic,
                    reason: error.to_string(),
                }),
            }
        }
    }
    // Not expected (librdkafka times each record out itself), but a record
    // without an answer must stay.
    let kept: std::collections::BTreeSet<u64> = outcome.kept.iter().map(|k| k.seq).collect();
    for (seq, topic) in topics {
        if !answered.contains(seq) && !kept.contains(seq) {
            outcome.kept.push(Kept {
                seq: *seq,
                kafka_topic: topic.clone(),
                reason: format!("no answer from Kafka within {timeout:?}"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(seq: u64) -> DeadLetter {
        DeadLetter {
            seq,
            received_at_ms: 1_700_000_000_123,
            topic_name: "v2.routing.queues.1f0e6d2a-0000-4000-8000-000000000001.conversations"
                .into(),
            correlation_id: Some("c0ffee00-0000-4000-8000-000000000002".into()),
            kafka_topic: "genesys.queue-conversations".into(),
            reason: "Message production error: MessageSizeTooLarge".into(),
            dead_at_ms: 1_700_000_000_456,
            payload: r#"{"topicName":"x","eventBody":{"a":"é"}}"#.into(),
            kind: None,
        }
    }

    #[test]
    fn a_dead_letter_becomes_the_record_the_bridge_sends() {
        let l = letter(7);
        let r = to_record(&l);
        assert_eq!(r.seq, 7);
        assert_eq!(r.received_at_ms, l.received_at_ms);
        assert_eq!(r.topic_name, l.topic_name);
        assert_eq!(r.correlation_id, l.correlation_id);
        assert_eq!(r.payload, l.payload.as_bytes());
        assert_eq!(record::key(&r), "1f0e6d2a-0000-4000-8000-000000000001");
    }

    #[test]
    fn the_summary_counts_reasons() {
        let outcome = Outcome {
            sent: vec![Sent {
                seq: 1,
                kafka_topic: "t".into(),
                partition: 0,
                offset: 3,
            }],
            kept: vec![
                Kept {
                    seq: 2,
                    kafka_topic: "t".into(),
                    reason: "too large".into(),
                },
                Kept {
                    seq: 3,
                    kafka_topic: "t".into(),
                    reason: "too large".into(),
                },
            ],
        };
        assert_eq!(
            outcome.summary(),
            "dead-letter replay: 1 sent and removed, 2 still refused (kept): 2 × too large"
        );
        assert!(!outcome.all_sent());
    }

    #[test]
    fn removal_touches_only_the_named_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        {
            let buffer = Buffer::open(dir.path()).unwrap();
            for seq in 1..=3 {
                let seq = buffer
                    .append(1, &letter(seq).topic_name, None, b"{}")
                    .unwrap();
                let record = buffer.read_after(seq - 1, 1).unwrap().0.remove(0);
                buffer.dead_letter(&record, "t", "refused").unwrap();
            }
            buffer
                .append(1, "v2.users.u.presence", None, b"{}")
                .unwrap();
            assert_eq!(buffer.remove_dead_letters(&[1, 3, 99]).unwrap(), 2);
            buffer.flush_blocking().unwrap();
        }
        let buffer = Buffer::open(dir.path()).unwrap();
        let left: Vec<u64> = buffer
            .dead_letters()
            .unwrap()
            .iter()
            .map(|l| l.seq)
            .collect();
        assert_eq!(left, vec![2]);
        assert_eq!(buffer.dead_letter_len(), 1);
        assert_eq!(buffer.len(), 1, "waiting events are not touched");
    }
}
