//! The lanes: which buffered record goes to Kafka next, and what each
//! delivery report changes. No thread, clock or client of its own: the
//! forwarding loop drives it with the time and a [`Port`] (the buffer and
//! the Kafka client), the tests with a list of records and a log of sends.
//!
//! **Lanes.** Each Kafka partition is a lane with its own in-flight limit,
//! and every in-flight record also counts against one budget in records
//! and one in bytes. A lane that stops acknowledging (no leader, a refused
//! topic) fills its own window and then *holds*: its further records are
//! skipped by the scan and stay in the buffer, while other lanes go on.
//! A held lane remembers the first sequence it skipped; once it may send
//! again, a catch-up scan from there sends exactly the records it owes,
//! in order, before any newer one of that lane. A topic that cannot take
//! records at all (missing, refused, partitions not known yet) holds the
//! same way at the topic level. Invariant: every record at or below the
//! scan cursor that is neither acknowledged nor in flight is owed to a
//! hold whose `from` is at or below its sequence, so nothing is skipped
//! for good and, per lane, nothing overtakes an older record.
//!
//! **Failures** (`settle.rs`, classified in `failure.rs`) hold the failed
//! record's lane, or its topic, the same way.
//!
//! What delivery reports change is in `settle.rs`; the metadata probe's
//! view and the per-topic figures in `topics.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use rdkafka::error::KafkaError;

use super::delivery::InFlight;
use super::failure::{refusal, Refusal};
use super::partitioner::Partitioner;
use super::record;
use super::routing::Router;
use crate::backoff::Backoff;
use crate::buffer::Record;
use crate::telemetry::Telemetry;

/// Records read from the buffer per read.
const READ_BATCH: usize = 512;
/// Bytes librdkafka holds per record beyond value, key and headers.
const RECORD_OVERHEAD: usize = 128;

/// What the lanes need from outside: the buffer and the Kafka client.
pub trait Port {
    /// Up to `limit` records after sequence `after`, oldest first; `None`
    /// when the read failed (the port reports why).
    fn read_after(&mut self, after: u64, limit: usize) -> Option<Vec<Record>>;
    /// Hands a record to Kafka, for `partition` of `topic` under `key`
    /// (its [`record::key`]); its delivery report comes back with `sent`.
    /// An error means it did not leave.
    fn send(
        &mut self,
        record: &Record,
        topic: &str,
        partition: i32,
        key: &str,
        sent: Box<InFlight>,
    ) -> Result<(), KafkaError>;
    /// Kafka acknowledged a record: it is to be removed from the buffer.
    /// `made`: a record the bridge made, not a received notification.
    fn acknowledged(&mut self, seq: u64, received_at_ms: u64, made: bool);
    /// Where Kafka wrote an acknowledged record (for a cluster's progress
    /// records); nothing by default.
    fn written(&mut self, _id: u64, _topic: &str, _partition: i32, _offset: i64) {}
    /// Removes the acknowledged records from the buffer now; `true` when
    /// there were some and they are gone.
    fn remove_acknowledged(&mut self) -> bool;
    /// Moves a record Kafka refused for good to the dead-letter area
    /// (inserted before it is removed); `false` when that failed (the
    /// port reports why) and it is still in the buffer.
    fn dead_letter(&mut self, record: &Record, topic: &str, reason: &str) -> bool;
    /// Why the Kafka client is in a fatal state, if it is.
    fn fatal_error(&self) -> Option<String>;
}

/// Limits on what is handed to librdkafka and not yet acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub records: usize,
    pub bytes: usize,
    pub per_partition: usize,
}

/// Why forwarding must stop: the lanes send nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    /// librdkafka reported a fatal error: the producer must be rebuilt.
    Fatal(String),
    /// Kafka refused the bridge's settings: restarting cannot help.
    Configuration(String),
}

/// A reason a topic takes no records for now.
struct Block {
    reason: String,
    retry_at: Instant,
}

/// The first skipped record of a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hold {
    from: u64,
    received_at_ms: u64,
}

#[derive(Default)]
struct Lane {
    in_flight: usize,
    hold: Option<Hold>,
    /// Catch-up in progress from this sequence.
    catching_from: Option<u64>,
    /// A delivery failed: catch up only once nothing of the lane is in
    /// flight, and not before this instant.
    retry_at: Option<Instant>,
    /// Records go one at a time until this sequence is through: a batch
    /// was refused, and only a record refused alone is dead-lettered.
    single_until: Option<u64>,
    max_sent: u64,
}

impl Lane {
    fn window(&self, limit: usize) -> usize {
        if self.single_until.is_some() {
            1
        } else {
            limit
        }
    }
}

struct Topic {
    name: String,
    partitions: Option<i32>,
    /// Why the metadata probe says the topic cannot be used.
    missing: Option<String>,
    blocked: Option<Block>,
    /// Last failure, shown until a record of this topic is acknowledged.
    last_error: Option<String>,
    backoff: Backoff,
    hold: Option<Hold>,
    catching_from: Option<u64>,
    lanes: Vec<Lane>,
    /// Records read by the scan and not yet acknowledged or dead-lettered.
    outstanding: u64,
    /// In flight: sequence → receive time (for the oldest one's age).
    in_flight: BTreeMap<u64, u64>,
    /// Acknowledged since the last report (Telemetry keeps the totals
    /// and the rates).
    acknowledged: u64,
}

impl Topic {
    /// Whether records may be sent: partitions known, not blocked, and
    /// the last probe found the topic.
    fn ready(&self) -> bool {
        self.partitions.is_some() && self.blocked.is_none() && self.missing.is_none()
    }
}

/// A unit a record can be owed to during a catch-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Topic(usize),
    Lane(usize, usize),
}

enum Offer {
    /// Handed to Kafka, or dead-lettered at once.
    Taken,
    /// Left in the buffer, owed to a hold.
    Held,
    /// No room now: try again after deliveries.
    Full,
}

/// Every routed Kafka topic, its lanes and the shared budgets.
pub struct Lanes {
    telemetry: Arc<Telemetry>,
    partitioner: Partitioner,
    limits: Limits,
    topics: Vec<Topic>,
    /// Genesys topic name → index in `topics`; bounded by the topics the
    /// bridge subscribes to.
    routes: HashMap<String, usize>,
    router: Router,
    /// Highest sequence the scan has read.
    cursor: u64,
    in_flight: usize,
    in_flight_bytes: usize,
    lane_backoff: Backoff,
    /// The budgets ran full: no reading until a quarter of them is free
    /// again, so each read fills many sends instead of one.
    starved: bool,
    halt: Option<Halt>,
}

impl Lanes {
    pub fn new(
        router: Router,
        partitioner: Partitioner,
        limits: Limits,
        backoff: Backoff,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let topics = router
            .topics()
            .into_iter()
            .map(|name| Topic {
                name,
                partitions: None,
                missing: None,
                blocked: None,
                last_error: None,
                backoff: backoff.clone(),
                hold: None,
                catching_from: None,
                lanes: Vec::new(),
                outstanding: 0,
                in_flight: BTreeMap::new(),
                acknowledged: 0,
            })
            .collect();
        Lanes {
            telemetry,
            partitioner,
            limits,
            topics,
            routes: HashMap::new(),
            router,
            cursor: 0,
            in_flight: 0,
            in_flight_bytes: 0,
            lane_backoff: backoff,
            starved: false,
            halt: None,
        }
    }

    /// Records handed to Kafka and not yet settled.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Why forwarding must stop, once (nothing is sent after it).
    pub fn take_halt(&mut self) -> Option<Halt> {
        self.halt.take()
    }

    pub fn halted(&self) -> bool {
        self.halt.is_some()
    }

    /// Sends what there is room for: first what held lanes and topics
    /// owe (oldest first), then new records after the scan cursor.
    pub fn advance(&mut self, port: &mut impl Port, now: Instant) {
        for topic in &mut self.topics {
            if topic.blocked.as_ref().is_some_and(|b| now >= b.retry_at) {
                // Try again; a new failure blocks it again, longer.
                topic.blocked = None;
            }
        }
        if self.starved {
            if self.in_flight > self.limits.records / 4 * 3
                || self.in_flight_bytes > self.limits.bytes / 4 * 3
            {
                return;
            }
            self.starved = false;
        }
        self.catch_up(port, now);
        self.scan(port, now);
    }

    /// Removes what Kafka acknowledged; a success also resets the lanes'
    /// retry backoff.
    pub fn remove_acknowledged(&mut self, port: &mut impl Port) {
        if port.remove_acknowledged() {
            self.lane_backoff.reset();
        }
    }

    /// Reads new records after the cursor and offers each.
    fn scan(&mut self, port: &mut impl Port, now: Instant) {
        while self.has_room() && self.halt.is_none() {
            let want = READ_BATCH.min(self.limits.records - self.in_flight).max(1);
            let records = match port.read_after(self.cursor, want) {
                Some(records) if !records.is_empty() => records,
                _ => return,
            };
            for record in records {
                let seq = record.seq;
                let topic = self.topic_of(&record.topic_name);
                match self.offer(record, topic, port, now) {
                    Offer::Full => return,
                    Offer::Taken | Offer::Held => {
                        self.cursor = seq;
                    }
                }
            }
        }
    }

    /// Sends what held units owe, oldest first, up to the scan cursor.
    fn catch_up(&mut self, port: &mut impl Port, now: Instant) {
        if !self.has_room() {
            return;
        }
        let mut start = u64::MAX;
        let mut active = 0usize;
        for topic in &mut self.topics {
            if let Some(hold) = topic.hold {
                if topic.ready() {
                    topic.hold = None;
                    topic.catching_from = Some(hold.from);
                    start = start.min(hold.from);
                    active += 1;
                }
            }
            if !topic.ready() {
                continue;
            }
            for lane in &mut topic.lanes {
                let Some(hold) = lane.hold else { continue };
                let may = match lane.retry_at {
                    // A failed lane starts again from its failure once all
                    // its in-flight records have settled.
                    Some(at) => lane.in_flight == 0 && now >= at,
                    // A full lane catches up once half its window is free,
                    // so one catch-up scan sends many records.
                    None => lane.in_flight <= lane.window(self.limits.per_partition) / 2,
                };
                if may {
                    lane.hold = None;
                    lane.retry_at = None;
                    lane.catching_from = Some(hold.from);
                    start = start.min(hold.from);
                    active += 1;
                }
            }
        }
        if active == 0 {
            return;
        }
        // Acknowledged records must be gone before they are read again.
        self.remove_acknowledged(port);
        let mut position = start.saturating_sub(1);
        // Where the scan stopped before reaching the cursor: the first
        // record not handled, and its receive time.
        let mut stopped_at: Option<(u64, u64)> = None;
        'scan: while active > 0 && self.halt.is_none() {
            let records = match port.read_after(position, READ_BATCH) {
                Some(records) if !records.is_empty() => records,
                Some(_) => break,
                None => {
                    // A failed read is not "caught up": keep owing from here.
                    stopped_at = Some((position + 1, crate::now_ms()));
                    break;
                }
            };
            for record in records {
                if record.seq > self.cursor {
                    break 'scan;
                }
                position = record.seq;
                let topic = self.topic_of(&record.topic_name);
                let Some(unit) = self.owed_to(topic, &record) else {
                    continue;
                };
                let (seq, received_at_ms) = (record.seq, record.received_at_ms);
                match self.offer(record, topic, port, now) {
                    Offer::Full => {
                        stopped_at = Some((seq, received_at_ms));
                        break 'scan;
                    }
                    Offer::Taken => {}
                    Offer::Held => {
                        // Held again: this unit is done for this scan.
                        if self.unit_catching(unit) && self.unit_held(unit) {
                            self.set_catching(unit, None);
                            active -= 1;
                        }
                    }
                }
            }
        }
        // Units still catching up either reached the cursor (caught up) or
        // owe everything from where the scan stopped.
        for t in 0..self.topics.len() {
            let units = std::iter::once(Unit::Topic(t))
                .chain((0..self.topics[t].lanes.len()).map(|p| Unit::Lane(t, p)));
            for unit in units.collect::<Vec<_>>() {
                if !self.unit_catching(unit) {
                    continue;
                }
                self.set_catching(unit, None);
                if let Some((seq, received_at_ms)) = stopped_at {
                    // (A unit owing nothing from there costs one idle scan.)
                    self.hold(unit, seq, received_at_ms);
                }
            }
        }
    }

    /// The held unit a record belongs to in the current catch-up.
    fn owed_to(&self, topic: usize, record: &Record) -> Option<Unit> {
        let t = &self.topics[topic];
        if t.catching_from.is_some_and(|from| from <= record.seq) {
            return Some(Unit::Topic(topic));
        }
        let partitions = t.partitions?;
        let partition = self.partition_of(record, partitions);
        t.lanes
            .get(partition)
            .and_then(|lane| lane.catching_from)
            .filter(|from| *from <= record.seq)
            .map(|_| Unit::Lane(topic, partition))
    }

    fn unit_catching(&self, unit: Unit) -> bool {
        match unit {
            Unit::Topic(t) => self.topics[t].catching_from.is_some(),
            Unit::Lane(t, p) => self.topics[t].lanes[p].catching_from.is_some(),
        }
    }

    fn unit_held(&self, unit: Unit) -> bool {
        match unit {
            Unit::Topic(t) => self.topics[t].hold.is_some(),
            Unit::Lane(t, p) => self.topics[t].lanes[p].hold.is_some(),
        }
    }

    fn set_catching(&mut self, unit: Unit, from: Option<u64>) {
        match unit {
            Unit::Topic(t) => self.topics[t].catching_from = from,
            Unit::Lane(t, p) => self.topics[t].lanes[p].catching_from = from,
        }
    }

    /// Holds a unit from `seq`, unless it already holds from an older one.
    fn hold(&mut self, unit: Unit, seq: u64, received_at_ms: u64) {
        let slot = match unit {
            Unit::Topic(t) => &mut self.topics[t].hold,
            Unit::Lane(t, p) => &mut self.topics[t].lanes[p].hold,
        };
        if slot.map_or(true, |h| seq < h.from) {
            *slot = Some(Hold {
                from: seq,
                received_at_ms,
            });
        }
    }

    fn has_room(&self) -> bool {
        self.in_flight < self.limits.records && self.in_flight_bytes < self.limits.bytes
    }

    fn partition_of(&self, record: &Record, partitions: i32) -> usize {
        self.partitioner
            .partition(record::key(record).as_bytes(), partitions) as usize
    }

    fn topic_of(&mut self, genesys_topic: &str) -> usize {
        if let Some(index) = self.routes.get(genesys_topic) {
            return *index;
        }
        let kafka_topic = self.router.route(genesys_topic);
        let index = self
            .topics
            .iter()
            .position(|t| t.name == kafka_topic)
            .expect("the router only names topics it lists");
        self.routes.insert(genesys_topic.to_owned(), index);
        index
    }

    /// Sends one record, or holds it.
    fn offer(&mut self, record: Record, t: usize, port: &mut impl Port, now: Instant) -> Offer {
        let topic = &mut self.topics[t];
        let Some(partitions) = topic.partitions.filter(|_| topic.ready()) else {
            let seq = record.seq;
            self.count_read(t, &record);
            self.hold(Unit::Topic(t), seq, record.received_at_ms);
            return Offer::Held;
        };
        // Older records of this topic wait: none may be overtaken.
        if self.topics[t].hold.is_some_and(|h| h.from <= record.seq) {
            self.count_read(t, &record);
            return Offer::Held;
        }
        let p = self.partition_of(&record, partitions);
        let lane = &self.topics[t].lanes[p];
        if lane.hold.is_some_and(|h| h.from <= record.seq) {
            self.count_read(t, &record);
            return Offer::Held;
        }
        if lane.in_flight >= lane.window(self.limits.per_partition) {
            self.count_read(t, &record);
            self.hold(Unit::Lane(t, p), record.seq, record.received_at_ms);
            return Offer::Held;
        }
        let key = record::key(&record);
        let bytes = record.payload.len()
            + key.len()
            + record.topic_name.len()
            + record.correlation_id.as_ref().map_or(0, String::len)
            + RECORD_OVERHEAD;
        // A record larger than the whole byte budget still goes, alone.
        if !self.has_room()
            || (self.in_flight_bytes + bytes > self.limits.bytes && self.in_flight > 0)
        {
            return Offer::Full;
        }
        let sent = Box::new(InFlight {
            seq: record.seq,
            received_at_ms: record.received_at_ms,
            topic: t as u32,
            partition: p as i32,
            bytes: bytes as u32,
            alone: lane.single_until.is_some(),
            made: record.kind != crate::buffer::Kind::Notification,
            id: record.event_id(),
        });
        let error = match port.send(&record, &self.topics[t].name, p as i32, key, sent) {
            Ok(()) => {
                self.count_read(t, &record);
                self.in_flight += 1;
                self.in_flight_bytes += bytes;
                let topic = &mut self.topics[t];
                topic.in_flight.insert(record.seq, record.received_at_ms);
                let lane = &mut topic.lanes[p];
                lane.in_flight += 1;
                lane.max_sent = lane.max_sent.max(record.seq);
                return Offer::Taken;
            }
            Err(error) => error,
        };
        let class = refusal(&error);
        if class == Refusal::QueueFull {
            self.starved = true;
            return Offer::Full;
        }
        // Refused before it left: librdkafka checked this record alone
        // (size against message.max.bytes, its partition).
        self.count_read(t, &record);
        match class {
            Refusal::TooLarge => {
                self.dead_letter(t, &record, &error, port);
                Offer::Taken
            }
            Refusal::TopicMoved => {
                // Metadata moved under us: wait for the probe.
                self.block_topic(t, &error, now);
                self.hold(Unit::Topic(t), record.seq, record.received_at_ms);
                Offer::Held
            }
            Refusal::QueueFull | Refusal::Other => {
                self.hold(Unit::Lane(t, p), record.seq, record.received_at_ms);
                self.halt = Some(match port.fatal_error() {
                    Some(reason) => Halt::Fatal(reason),
                    None => Halt::Configuration(format!(
                        "the Kafka client refused a record for topic {}: {error}",
                        self.topics[t].name
                    )),
                });
                Offer::Held
            }
        }
    }

    /// Counts a record the first time the scan reads it.
    fn count_read(&mut self, t: usize, record: &Record) {
        if record.seq > self.cursor {
            self.topics[t].outstanding += 1;
        }
    }

    fn block_topic(&mut self, t: usize, error: &KafkaError, now: Instant) {
        let topic = &mut self.topics[t];
        let delay = topic.backoff.next_delay();
        let reason = format!("Kafka refused records for this topic: {error}");
        if topic.blocked.is_none() {
            self.telemetry
                .kafka
                .topic_blocked(&topic.name, &reason, delay);
        }
        topic.last_error = Some(reason.clone());
        topic.blocked = Some(Block {
            reason,
            retry_at: now + delay,
        });
    }

    /// Dead-letters a record Kafka refused for good; if the buffer cannot
    /// take it, the record stays in the buffer, owed to no hold: the next
    /// forwarding loop sends it again.
    fn dead_letter(&mut self, t: usize, record: &Record, error: &KafkaError, port: &mut impl Port) {
        let reason = error.to_string();
        let topic = &mut self.topics[t];
        if port.dead_letter(record, &topic.name, &reason) {
            topic.outstanding = topic.outstanding.saturating_sub(1);
            self.telemetry
                .kafka
                .dead_lettered(record.seq, &topic.name, &reason);
        }
    }
}

mod settle;
#[cfg(test)]
mod tests;
mod topics;
