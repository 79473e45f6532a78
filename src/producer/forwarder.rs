//! The forwarding loop, on a thread of its own: reads the buffer in
//! sequence order, hands records to librdkafka, and removes each from the
//! buffer once Kafka acknowledged it.
//!
//! Nothing here runs on an actor thread: buffer reads, decodes and
//! removals happen on this thread, librdkafka's delivery callbacks on the
//! producer's polling thread, which only passes `(record, result)` back
//! over a channel. Wake-ups from the connection actors are coalesced into
//! one channel message.
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
//! **Failures** are classified ([`Failure`]): a record-size refusal first
//! puts the lane into single-record mode (a broker refusing a whole batch
//! fails every small record in it), and only a record refused while sent
//! alone is dead-lettered; a topic-scoped error blocks that topic with its
//! own backoff; a configuration error stops forwarding loudly; a fatal
//! producer error ends the loop so the actor restarts the producer.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::partitioner::Partitioner;
use super::record;
use super::routing::Router;
use crate::backoff::Backoff;
use crate::buffer::{Buffer, Record};
use crate::telemetry::{Telemetry, TopicReport};

/// Acknowledged records are removed from the buffer in batches this big,
/// or once the oldest has waited `REMOVE_AFTER`.
const REMOVE_BATCH: usize = 512;
const REMOVE_AFTER: Duration = Duration::from_millis(50);
/// Records read from the buffer per read.
const READ_BATCH: usize = 512;
/// Longest wait for an event before timers are looked at again.
const TICK: Duration = Duration::from_millis(100);
/// How often per-topic figures are published and liveness reported.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Bytes librdkafka holds per record beyond value, key and headers.
const RECORD_OVERHEAD: usize = 128;

/// What a librdkafka client built for the bridge looks like.
/// librdkafka's polling thread runs the delivery callback, which only
/// collects reports and wakes the forwarding thread once per batch.
pub type KafkaProducer = ThreadedProducer<DeliveryContext>;

/// What the delivery callback needs back: never a copy of the payload.
#[derive(Debug)]
pub struct InFlight {
    seq: u64,
    received_at_ms: u64,
    topic: u32,
    partition: i32,
    bytes: u32,
    /// Sent while its lane was in single-record mode: a size refusal is
    /// then about this record alone.
    alone: bool,
}

/// Messages to the forwarding thread.
pub enum Event {
    /// Delivery reports are waiting (coalesced like wakes).
    Reports,
    /// New records in the buffer (coalesced: see [`Waker`]).
    Wake,
    /// The metadata probe's view of each routed topic: its partition
    /// count, or why it cannot be used.
    Metadata(BTreeMap<String, Result<i32, String>>),
    /// Stop reading; report once nothing is in flight or at the deadline.
    Drain {
        deadline: Instant,
        done: tokio::sync::oneshot::Sender<bool>,
    },
    Stop,
}

/// Why the loop ended.
#[derive(Debug)]
pub enum Exit {
    /// Asked to (stop or drain).
    Stopped,
    /// librdkafka reported a fatal error: the producer must be rebuilt.
    Fatal(String),
    /// Kafka refused the bridge's settings: restarting cannot help.
    Configuration(String),
}

/// A delivery report: which record, and Kafka's answer.
type Report = (Box<InFlight>, Result<(), KafkaError>);

/// The librdkafka context: collects delivery reports for the forwarding
/// thread, waking it once per batch of reports rather than once per record
/// (a message and a wake-up per report cost a context switch each, a tenth
/// of the bridge's CPU at full speed), and passes librdkafka's own errors
/// and logs to telemetry, which folds their repeats (a broker outage
/// otherwise prints several lines a second).
pub struct DeliveryContext {
    reports: std::sync::Mutex<Vec<Report>>,
    waker: Waker,
    telemetry: Arc<Telemetry>,
}

impl DeliveryContext {
    pub fn new(events: Sender<Event>, telemetry: Arc<Telemetry>) -> Self {
        DeliveryContext {
            reports: Default::default(),
            waker: Waker::for_reports(events),
            telemetry,
        }
    }

    fn take_reports(&self) -> Vec<Report> {
        // Cleared before taking: a report pushed after the take wakes again.
        self.waker.woken();
        std::mem::take(&mut *self.reports.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel::*;
        match level {
            Emerg | Alert | Critical | Error | Warning => {
                self.telemetry.kafka_client_problem(facility, message)
            }
            Notice | Info | Debug => {
                tracing::debug!(target: "librdkafka", facility, detail = message)
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let kind = match &error {
            KafkaError::Global(code) => format!("{code:?}"),
            other => other.to_string(),
        };
        self.telemetry.kafka_client_problem(&kind, reason);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<InFlight>;

    fn delivery(&self, result: &DeliveryResult<'_>, in_flight: Box<InFlight>) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(error.clone()),
        };
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((in_flight, outcome));
        self.waker.wake();
    }
}

/// Wakes the forwarding thread at most once per batch (of appends, or of
/// delivery reports): one message in its queue until it looked.
#[derive(Clone)]
pub struct Waker {
    pending: Arc<AtomicBool>,
    events: Sender<Event>,
    event: fn() -> Event,
}

impl Waker {
    /// Wakes with `Event::Wake` (new records in the buffer).
    pub fn new(events: Sender<Event>) -> Self {
        Waker {
            pending: Arc::default(),
            events,
            event: || Event::Wake,
        }
    }

    /// Wakes with `Event::Reports` (delivery reports to take).
    fn for_reports(events: Sender<Event>) -> Self {
        Waker {
            pending: Arc::default(),
            events,
            event: || Event::Reports,
        }
    }

    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = self.events.send((self.event)());
        }
    }

    fn woken(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

/// How a failed record is handled.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The record, or the batch it was in, is too large or invalid.
    RecordOrBatch,
    /// The topic cannot take records now (missing, not authorised,
    /// policy…): block it, retry later.
    Topic,
    /// Kafka refuses the bridge's settings (acks, idempotence rights,
    /// versions): stop loudly.
    Configuration,
    /// Anything else: retry this partition after a backoff.
    Transient,
}

fn classify(error: &KafkaError) -> Failure {
    use RDKafkaErrorCode::*;
    let code = match error {
        KafkaError::MessageProduction(code) => *code,
        _ => return Failure::Transient,
    };
    match code {
        MessageSizeTooLarge | InvalidMessageSize | InvalidMessage | MessageBatchTooLarge
        | InvalidRecord | InvalidTimestamp => Failure::RecordOrBatch,
        UnknownTopicOrPartition
        | UnknownTopic
        | UnknownPartition
        | TopicAuthorizationFailed
        | InvalidTopic
        | PolicyViolation
        | UnknownTopicId
        | TopicDeletionDisabled => Failure::Topic,
        InvalidRequiredAcks
        | ClusterAuthorizationFailed
        | TransactionalIdAuthorizationFailed
        | UnsupportedVersion
        | UnsupportedForMessageFormat
        | UnsupportedCompressionType
        | UnsupportedSASLMechanism
        | SaslAuthenticationFailed
        | Authentication
        | InvalidArgument => Failure::Configuration,
        _ => Failure::Transient,
    }
}

/// A reason a topic takes no records for now.
struct Block {
    reason: String,
    retry_at: Instant,
}

/// The first skipped record of a hold.
#[derive(Clone, Copy)]
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
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    Topic(usize),
    Lane(usize, usize),
}

/// Limits on what is handed to librdkafka and not yet acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub records: usize,
    pub bytes: usize,
    pub per_partition: usize,
}

enum Offer {
    /// Handed to Kafka, or dead-lettered at once.
    Taken,
    /// Left in the buffer, owed to a hold.
    Held,
    /// No room now: try again after deliveries.
    Full,
}

pub struct Forwarder {
    producer: Arc<KafkaProducer>,
    events: Receiver<Event>,
    waker: Waker,
    buffer: Buffer,
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
    acked: Vec<u64>,
    oldest_ack: Option<Instant>,
    draining: Option<(Instant, tokio::sync::oneshot::Sender<bool>)>,
    exit: Option<Exit>,
    lane_backoff: Backoff,
    last_report: Instant,
    /// A removal failed: logged once until one succeeds.
    removal_failing: bool,
    /// The buffer's generation this loop's cursor and holds belong to.
    generation: u64,
    /// The budgets ran full: no reading until a quarter of them is free
    /// again, so each read fills many sends instead of one.
    starved: bool,
}

impl Forwarder {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        producer: Arc<KafkaProducer>,
        events: Receiver<Event>,
        waker: Waker,
        buffer: Buffer,
        telemetry: Arc<Telemetry>,
        router: Router,
        partitioner: Partitioner,
        limits: Limits,
        backoff: Backoff,
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
        Forwarder {
            producer,
            events,
            waker,
            buffer,
            telemetry,
            partitioner,
            limits,
            topics,
            routes: HashMap::new(),
            router,
            cursor: 0,
            in_flight: 0,
            in_flight_bytes: 0,
            acked: Vec::new(),
            oldest_ack: None,
            draining: None,
            exit: None,
            lane_backoff: backoff,
            last_report: Instant::now() - REPORT_EVERY,
            removal_failing: false,
            generation: 0,
            starved: false,
        }
    }

    /// Runs until stopped, drained, or a failure that needs the actor.
    pub fn run(mut self) -> Exit {
        self.generation = self.buffer.generation();
        loop {
            match self.events.recv_timeout(self.next_timer()) {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.exit = Some(Exit::Stopped),
            }
            // Wakes and reports are coalesced and the rest is rare: a
            // bounded drain.
            for _ in 0..64 {
                match self.events.try_recv() {
                    Ok(event) => self.handle(event),
                    Err(_) => break,
                }
            }
            self.step();
            if let Some(exit) = self.exit.take() {
                self.remove_acked();
                self.report();
                return exit;
            }
        }
    }

    fn next_timer(&self) -> Duration {
        let mut wait = TICK;
        if let Some(at) = self.oldest_ack {
            wait = wait.min((at + REMOVE_AFTER).saturating_duration_since(Instant::now()));
        }
        wait
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Reports => {
                for (record, result) in self.producer.context().take_reports() {
                    self.delivered(record, result);
                }
            }
            Event::Wake => self.waker.woken(),
            Event::Metadata(topics) => self.metadata(topics),
            Event::Drain { deadline, done } => self.draining = Some((deadline, done)),
            Event::Stop => self.exit = Some(Exit::Stopped),
        }
    }

    fn step(&mut self) {
        let now = Instant::now();
        if self.acked.len() >= REMOVE_BATCH
            || self.oldest_ack.is_some_and(|at| now >= at + REMOVE_AFTER)
        {
            self.remove_acked();
        }
        if now >= self.last_report + REPORT_EVERY {
            self.report();
        }
        if let Some((deadline, _)) = &self.draining {
            if self.in_flight == 0 || now >= *deadline {
                let settled = self.in_flight == 0;
                if let Some((_, done)) = self.draining.take() {
                    let _ = done.send(settled);
                }
                self.exit = Some(Exit::Stopped);
            }
            return;
        }
        if self.exit.is_some() {
            return;
        }
        if self.buffer.generation() != self.generation {
            self.buffer_reopened();
        }
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
        self.catch_up();
        self.scan();
    }

    /// The buffer was reopened after a storage failure. It puts back
    /// everything that changed since its last good flush (appends,
    /// removals, dead-letter moves), so this loop's cursor and holds stay
    /// valid; reading again from the start would only send the records in
    /// flight a second time. What it could not put back is counted by the
    /// buffer (`gkb_buffer_lost_events_total`).
    fn buffer_reopened(&mut self) {
        self.generation = self.buffer.generation();
        tracing::info!(
            generation = self.generation,
            "buffer reopened after a storage failure; forwarding goes on from where it was"
        );
    }

    /// Reads new records after the cursor and offers each.
    fn scan(&mut self) {
        while self.has_room() && self.exit.is_none() {
            let want = READ_BATCH.min(self.limits.records - self.in_flight).max(1);
            let records = match self.read_after(self.cursor, want) {
                Some(records) if !records.is_empty() => records,
                _ => return,
            };
            for record in records {
                let seq = record.seq;
                let topic = self.topic_of(&record.topic_name);
                match self.offer(record, topic) {
                    Offer::Full => return,
                    Offer::Taken | Offer::Held => {
                        self.cursor = seq;
                    }
                }
            }
        }
    }

    /// Sends what held units owe, oldest first, up to the scan cursor.
    fn catch_up(&mut self) {
        if !self.has_room() {
            return;
        }
        let now = Instant::now();
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
        self.remove_acked();
        let mut position = start.saturating_sub(1);
        // Where the scan stopped before reaching the cursor: the first
        // record not handled, and its receive time.
        let mut stopped_at: Option<(u64, u64)> = None;
        'scan: while active > 0 && self.exit.is_none() {
            let records = match self.read_after(position, READ_BATCH) {
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
                match self.offer(record, topic) {
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
    fn offer(&mut self, record: Record, t: usize) -> Offer {
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
        let lane = &self.topics[t].lanes[p];
        let alone = lane.single_until.is_some();
        let in_flight = Box::new(InFlight {
            seq: record.seq,
            received_at_ms: record.received_at_ms,
            topic: t as u32,
            partition: p as i32,
            bytes: bytes as u32,
            alone,
        });
        let kafka_record = BaseRecord::with_opaque_to(&self.topics[t].name, in_flight)
            .partition(p as i32)
            .key(key)
            .payload(&record.payload)
            .headers(record::headers(&record));
        // On failure librdkafka hands the record back; only the error is
        // kept (the returned record borrows the topic table).
        let sent = self.producer.send(kafka_record).map_err(|(error, _)| error);
        match sent {
            Ok(()) => {
                self.count_read(t, &record);
                self.in_flight += 1;
                self.in_flight_bytes += bytes;
                let topic = &mut self.topics[t];
                topic.in_flight.insert(record.seq, record.received_at_ms);
                let lane = &mut topic.lanes[p];
                lane.in_flight += 1;
                lane.max_sent = lane.max_sent.max(record.seq);
                Offer::Taken
            }
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                self.starved = true;
                Offer::Full
            }
            Err(error) => {
                // Refused before it left: librdkafka checked this record
                // alone (size against message.max.bytes, its partition).
                self.count_read(t, &record);
                match error {
                    KafkaError::MessageProduction(
                        RDKafkaErrorCode::MessageSizeTooLarge
                        | RDKafkaErrorCode::InvalidMessageSize,
                    ) => {
                        self.dead_letter(t, &record, &error);
                        Offer::Taken
                    }
                    KafkaError::MessageProduction(
                        RDKafkaErrorCode::UnknownPartition | RDKafkaErrorCode::UnknownTopic,
                    ) => {
                        // Metadata moved under us: wait for the probe.
                        self.block_topic(t, &error);
                        self.hold(Unit::Topic(t), record.seq, record.received_at_ms);
                        Offer::Held
                    }
                    _ if self.producer.client().fatal_error().is_some() => {
                        let reason = self
                            .producer
                            .client()
                            .fatal_error()
                            .map_or_else(|| error.to_string(), |(_, reason)| reason);
                        self.hold(Unit::Lane(t, p), record.seq, record.received_at_ms);
                        self.exit = Some(Exit::Fatal(reason));
                        Offer::Held
                    }
                    other => {
                        self.hold(Unit::Lane(t, p), record.seq, record.received_at_ms);
                        self.exit = Some(Exit::Configuration(format!(
                            "the Kafka client refused a record for topic {}: {other}",
                            self.topics[t].name
                        )));
                        Offer::Held
                    }
                }
            }
        }
    }

    /// Counts a record the first time the scan reads it.
    fn count_read(&mut self, t: usize, record: &Record) {
        if record.seq > self.cursor {
            self.topics[t].outstanding += 1;
        }
    }

    fn delivered(&mut self, sent: Box<InFlight>, result: Result<(), KafkaError>) {
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
                    self.telemetry.kafka_topic_recovered(&topic.name);
                }
                self.telemetry.acknowledged(sent.received_at_ms);
                if self.acked.is_empty() {
                    self.oldest_ack = Some(Instant::now());
                }
                self.acked.push(sent.seq);
            }
            Err(error) => self.failed(&sent, error),
        }
    }

    fn failed(&mut self, sent: &InFlight, error: KafkaError) {
        let (t, p) = (sent.topic as usize, sent.partition as usize);
        if let Some((_, reason)) = self.producer.client().fatal_error() {
            self.hold(Unit::Lane(t, p), sent.seq, sent.received_at_ms);
            self.exit = Some(Exit::Fatal(reason));
            return;
        }
        let kind = classify(&error);
        let first = self.topics[t].last_error.is_none();
        self.telemetry
            .delivery_failed(sent.seq, &self.topics[t].name, &error, first);
        match kind {
            Failure::RecordOrBatch if sent.alone => {
                match self.buffer.get(sent.seq) {
                    Ok(Some(record)) => self.dead_letter(t, &record, &error),
                    // Already gone (dead-lettered by an earlier loop).
                    Ok(None) => {}
                    Err(e) => {
                        self.telemetry.buffer_write_failed(&e);
                        self.hold(Unit::Lane(t, p), sent.seq, sent.received_at_ms);
                        self.topics[t].lanes[p].retry_at =
                            Some(Instant::now() + self.lane_backoff.next_delay());
                        return;
                    }
                }
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
                lane.retry_at = Some(Instant::now());
                self.hold(Unit::Lane(t, p), sent.seq, sent.received_at_ms);
            }
            Failure::Topic => {
                self.block_topic(t, &error);
                self.hold(Unit::Lane(t, p), sent.seq, sent.received_at_ms);
                self.topics[t].lanes[p].retry_at = Some(Instant::now());
            }
            Failure::Configuration => {
                self.hold(Unit::Lane(t, p), sent.seq, sent.received_at_ms);
                self.exit = Some(Exit::Configuration(format!(
                    "Kafka refused the bridge's settings while sending to {}: {error}",
                    self.topics[t].name
                )));
            }
            Failure::Transient => {
                self.hold(Unit::Lane(t, p), sent.seq, sent.received_at_ms);
                self.topics[t].lanes[p].retry_at =
                    Some(Instant::now() + self.lane_backoff.next_delay());
                self.topics[t]
                    .last_error
                    .get_or_insert_with(|| error.to_string());
            }
        }
    }

    fn block_topic(&mut self, t: usize, error: &KafkaError) {
        let topic = &mut self.topics[t];
        let delay = topic.backoff.next_delay();
        let reason = format!("Kafka refused records for this topic: {error}");
        if topic.blocked.is_none() {
            self.telemetry
                .kafka_topic_blocked(&topic.name, &reason, delay);
        }
        topic.last_error = Some(reason.clone());
        topic.blocked = Some(Block {
            reason,
            retry_at: Instant::now() + delay,
        });
    }

    fn dead_letter(&mut self, t: usize, record: &Record, error: &KafkaError) {
        let topic = &mut self.topics[t];
        let reason = error.to_string();
        match self.buffer.dead_letter(record, &topic.name, &reason) {
            Ok(()) => {
                topic.outstanding = topic.outstanding.saturating_sub(1);
                self.telemetry
                    .dead_lettered(record.seq, &topic.name, &reason);
            }
            Err(e) => {
                // Stays in the buffer, owed to its lane: tried again later.
                self.telemetry.buffer_write_failed(&e);
            }
        }
    }

    fn metadata(&mut self, view: BTreeMap<String, Result<i32, String>>) {
        for topic in &mut self.topics {
            match view.get(&topic.name) {
                Some(Ok(partitions)) if *partitions > 0 => {
                    let partitions = *partitions;
                    if topic.lanes.len() < partitions as usize {
                        topic.lanes.resize_with(partitions as usize, Lane::default);
                    }
                    topic.partitions = Some(partitions);
                    if topic.missing.take().is_some() {
                        // It exists now: what waited for it goes at once,
                        // and /readyz turns green even if no event of it
                        // comes (the missing reason was its last error).
                        topic.blocked = None;
                        topic.last_error = None;
                        self.telemetry.kafka_topic_recovered(&topic.name);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(reason)) => {
                    if topic.missing.is_none() {
                        self.telemetry
                            .kafka_topic_blocked(&topic.name, reason, Duration::ZERO);
                    }
                    topic.missing = Some(reason.clone());
                    if topic.partitions.is_none() {
                        topic.last_error = Some(reason.clone());
                    }
                }
                // Not in this probe (it failed as a whole): keep what we knew.
                None => {}
            }
        }
    }

    fn read_after(&mut self, after: u64, limit: usize) -> Option<Vec<Record>> {
        match self.buffer.read_after(after, limit) {
            Ok((records, quarantined)) => {
                if !quarantined.is_empty() {
                    self.telemetry.quarantined(quarantined.len());
                }
                Some(records)
            }
            Err(e) => {
                self.telemetry.buffer_read_failed(&e);
                None
            }
        }
    }

    fn remove_acked(&mut self) {
        if self.acked.is_empty() {
            return;
        }
        match self.buffer.remove(&self.acked) {
            Ok(()) => {
                self.telemetry.events_forwarded(self.acked.len() as u64);
                self.lane_backoff.reset();
                self.acked.clear();
                self.oldest_ack = None;
                if std::mem::take(&mut self.removal_failing) {
                    tracing::info!("acknowledged events are removed from the buffer again");
                }
            }
            // Kept and retried: the cursor is past them, so this loop does
            // not send them again; a restart would (duplicates, not loss).
            Err(e) => {
                if !std::mem::replace(&mut self.removal_failing, true) {
                    tracing::error!(error = %e, "cannot remove acknowledged events from the buffer");
                }
                self.oldest_ack = Some(Instant::now());
            }
        }
    }

    fn report(&mut self) {
        self.last_report = Instant::now();
        self.telemetry.alive("producer");
        let now_ms = crate::now_ms();
        let reports = self
            .topics
            .iter_mut()
            .map(|topic| {
                let oldest_in_flight = topic.in_flight.values().min().copied();
                let oldest_held = std::iter::once(topic.hold)
                    .chain(topic.lanes.iter().map(|l| l.hold))
                    .flatten()
                    .map(|h| h.received_at_ms)
                    .min();
                let oldest = [oldest_in_flight, oldest_held].into_iter().flatten().min();
                TopicReport {
                    topic: topic.name.clone(),
                    backlog: topic.outstanding,
                    in_flight: topic.in_flight.len() as u64,
                    oldest_unacknowledged_age_ms: oldest.map(|at| now_ms.saturating_sub(at)),
                    blocked: topic
                        .blocked
                        .as_ref()
                        .map(|b| b.reason.clone())
                        .or_else(|| topic.missing.clone())
                        .or_else(|| topic.last_error.clone()),
                    acknowledged: std::mem::take(&mut topic.acknowledged),
                    forwarded: 0,
                    forwarded_per_sec: 0.0,
                }
            })
            .collect();
        self.telemetry.kafka_topics(reports);
    }
}
