//! What a delivery report changes in the lanes: an acknowledgement frees
//! the record's place and lets it be removed; a failure is handled by its
//! class (`failure.rs`). A record-size refusal first puts the lane into
//! single-record mode (a broker refusing a whole batch fails every small
//! record in it), and only a record refused while sent alone is
//! dead-lettered, from the record its report carried; a topic-scoped error
//! blocks that topic with its own backoff; a configuration error halts
//! forwarding loudly; a fatal producer error halts it so the actor
//! restarts the producer. Every failure holds the lane from the failed
//! record, which goes again once the lane's in-flight records settled: a
//! failure costs duplicates, never a gap.

use std::time::Instant;

use rdkafka::error::KafkaError;

use super::{Halt, Lanes, Port, Unit};
use crate::buffer::Record;
use crate::producer::delivery::{InFlight, Report};
use crate::producer::failure::{classify, Failure};

impl Lanes {
    /// Takes a delivery report: frees its place in the budgets and its
    /// lane, and acknowledges the record or handles its failure.
    pub fn settle(&mut self, report: Report, port: &mut impl Port, now: Instant) {
        let Report {
            sent,
            result,
            offset,
            refused,
        } = report;
        let (t, p) = (sent.topic as usize, sent.partition as usize);
        self.in_flight -= 1;
        self.in_flight_bytes -= sent.bytes as usize;
        let topic = &mut self.topics[t];
        topic.in_flight.remove(&sent.seq);
        let lane = &mut topic.lanes[p];
        lane.in_flight -= 1;
        match result {
            Ok(()) => {
                if lane.single_until.is_some_and(|until| sent.seq >= until) {
                    lane.single_until = None;
                }
                topic.outstanding = topic.outstanding.saturating_sub(1);
                topic.acknowledged += 1;
                if topic.last_error.take().is_some() {
                    topic.backoff.reset();
                    self.telemetry.kafka.topic_recovered(&topic.name);
                }
                port.acknowledged(sent.seq, sent.received_at_ms, sent.made);
                port.written(sent.id, &topic.name, sent.partition, offset);
            }
            Err(error) => self.failed(&sent, error, refused, port, now),
        }
    }

    fn failed(
        &mut self,
        sent: &InFlight,
        error: KafkaError,
        refused: Option<Record>,
        port: &mut impl Port,
        now: Instant,
    ) {
        let (t, p) = (sent.topic as usize, sent.partition as usize);
        if let Some(reason) = port.fatal_error() {
            self.hold(Unit::Lane(t, p), sent.seq, sent.received_at_ms);
            self.halt = Some(Halt::Fatal(reason));
            return;
        }
        let kind = classify(&error);
        let first = self.topics[t].last_error.is_none();
        self.telemetry
            .kafka
            .delivery_failed(sent.seq, &self.topics[t].name, &error, first);
        match kind {
            Failure::RecordOrBatch if sent.alone => {
                // The delivery report carried the record back (see
                // `delivery.rs`): no read of the buffer.
                let Some(record) = refused else {
                    // Not expected: every record the bridge sends carries
                    // its headers. It stays in the buffer and goes again.
                    tracing::error!(
                        seq = sent.seq,
                        kafka_topic = %self.topics[t].name,
                        "a record Kafka refused came back without the bridge's headers; it stays in the buffer"
                    );
                    self.hold(Unit::Lane(t, p), sent.seq, sent.received_at_ms);
                    self.topics[t].lanes[p].retry_at = Some(now + self.lane_backoff.next_delay());
                    return;
                };
                self.dead_letter(t, &record, &error, port);
                let lane = &mut self.topics[t].lanes[p];
                if lane.single_until.is_some_and(|until| sent.seq >= until) {
                    lane.single_until = None;
                }
            }
            Failure::RecordOrBatch => {
                // Perhaps only the batch was too large: send this lane's
                // records one at a time until past everything that was in
                // flight with it.
                let lane = &mut self.topics[t].lanes[p];
                lane.single_until = Some(lane.single_until.unwrap_or(0).max(lane.max_sent));
                lane.retry_at = Some(now);
                self.hold(Unit::Lane(t, p), sent.seq, sent.received_at_ms);
            }
            Failure::Topic => {
                self.block_topic(t, &error, now);
                self.hold(Unit::Lane(t, p), sent.seq, sent.received_at_ms);
                self.topics[t].lanes[p].retry_at = Some(now);
            }
            Failure::Configuration => {
                self.hold(Unit::Lane(t, p), sent.seq, sent.received_at_ms);
                self.halt = Some(Halt::Configuration(format!(
                    "Kafka refused the bridge's settings while sending to {}: {error}",
                    self.topics[t].name
                )));
            }
            Failure::Transient => {
                self.hold(Unit::Lane(t, p), sent.seq, sent.received_at_ms);
                self.topics[t].lanes[p].retry_at = Some(now + self.lane_backoff.next_delay());
                self.topics[t]
                    .last_error
                    .get_or_insert_with(|| error.to_string());
            }
        }
    }
}
