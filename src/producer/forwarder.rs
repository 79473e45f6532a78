//! The forwarding loop, on a thread of its own: waits for its inbox,
//! drives the lanes (`lanes.rs`: which record goes next) through the
//! buffer and the librdkafka producer, removes acknowledged records from
//! the buffer in batches, and reports to telemetry once a second.
//!
//! Nothing here runs on an actor thread: buffer reads, decodes and
//! removals happen on this thread, librdkafka's delivery callbacks on the
//! producer's polling thread, which only passes reports back
//! (`delivery.rs`). Wake-ups from the connection actors are coalesced
//! into one inbox message (`inbox.rs`).

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer};

use super::delivery::{InFlight, KafkaProducer};
use super::inbox::Event;
use super::lanes::{Halt, Lanes, Limits, Port};
use super::partitioner::Partitioner;
use super::record;
use super::routing::Router;
use crate::backoff::Backoff;
use crate::buffer::AppendWatch;
use crate::buffer::{Buffer, Record};
use crate::cluster::leadership::{Acked, Leadership};
use crate::telemetry::Telemetry;

/// Acknowledged records are removed from the buffer in batches this big,
/// or once the oldest has waited `REMOVE_AFTER`.
const REMOVE_BATCH: usize = 512;
const REMOVE_AFTER: Duration = Duration::from_millis(50);
/// Longest wait for an event before timers are looked at again.
const TICK: Duration = Duration::from_millis(100);
/// How often per-topic figures are published and liveness reported.
const REPORT_EVERY: Duration = Duration::from_secs(1);

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

impl From<Halt> for Exit {
    fn from(halt: Halt) -> Self {
        match halt {
            Halt::Fatal(reason) => Exit::Fatal(reason),
            Halt::Configuration(reason) => Exit::Configuration(reason),
        }
    }
}

/// The buffer and the Kafka client, as the lanes see them.
struct Io {
    producer: Arc<KafkaProducer>,
    buffer: Buffer,
    telemetry: Arc<Telemetry>,
    /// Acknowledged, to be removed from the buffer.
    acked: Vec<u64>,
    /// How many of `acked` the bridge made (snapshots, backfill).
    acked_made: u64,
    oldest_ack: Option<Instant>,
    /// Receive times of the records acknowledged in the current batch of
    /// delivery reports: telemetry takes them all at once.
    ack_received_at: Vec<u64>,
    /// A removal failed: logged once until one succeeds.
    removal_failing: bool,
    /// Whether this member may forward now (always, outside a cluster).
    leadership: Arc<Leadership>,
    /// Acknowledged since the last batch of reports, for the coordinator.
    written: Acked,
}

impl Port for Io {
    fn read_after(&mut self, after: u64, limit: usize) -> Option<Vec<Record>> {
        match self.buffer.read_after(after, limit) {
            Ok((mut records, quarantined)) => {
                if !quarantined.is_empty() {
                    self.telemetry.buffer.quarantined(quarantined.len());
                }
                if self.leadership.is_clustered() {
                    self.skip_already_forwarded(&mut records);
                }
                Some(records)
            }
            Err(e) => {
                self.telemetry.buffer.read_failed(&e);
                None
            }
        }
    }

    fn send(
        &mut self,
        record: &Record,
        topic: &str,
        partition: i32,
        key: &str,
        sent: Box<InFlight>,
    ) -> Result<(), KafkaError> {
        let kafka_record = BaseRecord::with_opaque_to(topic, sent)
            .partition(partition)
            .key(key)
            .payload(&record.payload)
            .headers(record::headers(record));
        // On failure librdkafka hands the record back; only the error is
        // kept (the returned record borrows the topic table).
        self.producer.send(kafka_record).map_err(|(error, _)| error)
    }

    fn acknowledged(&mut self, seq: u64, received_at_ms: u64, made: bool) {
        if made {
            self.acked_made += 1;
        } else {
            self.ack_received_at.push(received_at_ms);
        }
        if self.acked.is_empty() {
            self.oldest_ack = Some(Instant::now());
        }
        self.acked.push(seq);
    }

    fn written(&mut self, id: u64, topic: &str, partition: i32, offset: i64) {
        if self.leadership.is_clustered() {
            self.written.ids.push(id);
            match self.written.offsets.get_mut(&(topic.to_owned(), partition)) {
                Some(kept) => *kept = (*kept).max(offset),
                None => {
                    self.written
                        .offsets
                        .insert((topic.to_owned(), partition), offset);
                }
            }
        }
    }

    fn remove_acknowledged(&mut self) -> bool {
        if self.acked.is_empty() {
            return false;
        }
        match self.buffer.remove(&self.acked) {
            Ok(()) => {
                let made = std::mem::take(&mut self.acked_made);
                self.telemetry
                    .kafka
                    .events_forwarded(self.acked.len() as u64 - made);
                self.telemetry.kafka.made_forwarded(made);
                self.acked.clear();
                self.oldest_ack = None;
                if std::mem::take(&mut self.removal_failing) {
                    tracing::info!("acknowledged events are removed from the buffer again");
                }
                true
            }
            // Kept and retried: the cursor is past them, so this loop does
            // not send them again; a restart would (duplicates, not loss).
            Err(e) => {
                if !std::mem::replace(&mut self.removal_failing, true) {
                    tracing::error!(error = %e, "cannot remove acknowledged events from the buffer");
                }
                self.oldest_ack = Some(Instant::now());
                false
            }
        }
    }

    fn dead_letter(&mut self, record: &Record, topic: &str, reason: &str) -> bool {
        // The buffer inserts the dead letter before it removes the event:
        // a crash in between duplicates it, never loses it.
        match self.buffer.dead_letter(record, topic, reason) {
            Ok(()) => true,
            Err(e) => {
                // Stays in the buffer. No hold owes it (this loop's cursor
                // is past it): it goes again when the forwarder restarts.
                self.telemetry.buffer.write_failed(&e);
                false
            }
        }
    }

    fn fatal_error(&self) -> Option<String> {
        self.producer
            .client()
            .fatal_error()
            .map(|(_, reason)| reason)
    }
}

impl Io {
    /// A member that just took over drops, unsent, the events the old
    /// leader reported in Kafka that its own socket delivered late (see
    /// `Leadership::already_forwarded`).
    fn skip_already_forwarded(&mut self, records: &mut Vec<Record>) {
        let skipped: Vec<u64> = records
            .iter()
            .filter(|r| self.leadership.already_forwarded(r.event_id()))
            .map(|r| r.seq)
            .collect();
        if skipped.is_empty() {
            return;
        }
        match self.buffer.remove(&skipped) {
            Ok(()) => {
                records.retain(|r| !skipped.contains(&r.seq));
                tracing::debug!(
                    events = skipped.len(),
                    "events the previous leader already forwarded dropped"
                );
            }
            // Sent then: a duplicate, never a loss.
            Err(e) => self.telemetry.buffer.read_failed(&e),
        }
    }
}

pub struct Forwarder {
    events: Receiver<Event>,
    /// The buffer's wake-up after appends: re-armed before each read.
    appended: AppendWatch,
    lanes: Lanes,
    io: Io,
    draining: Option<(Instant, tokio::sync::oneshot::Sender<bool>)>,
    exit: Option<Exit>,
    last_report: Instant,
    /// The buffer's generation this loop's cursor and holds belong to.
    generation: u64,
}

impl Forwarder {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        producer: Arc<KafkaProducer>,
        events: Receiver<Event>,
        appended: AppendWatch,
        buffer: Buffer,
        telemetry: Arc<Telemetry>,
        router: Router,
        partitioner: Partitioner,
        limits: Limits,
        backoff: Backoff,
        leadership: Arc<Leadership>,
    ) -> Self {
        Forwarder {
            events,
            appended,
            lanes: Lanes::new(router, partitioner, limits, backoff, telemetry.clone()),
            io: Io {
                producer,
                buffer,
                telemetry,
                acked: Vec::new(),
                acked_made: 0,
                oldest_ack: None,
                ack_received_at: Vec::new(),
                removal_failing: false,
                leadership,
                written: Acked::default(),
            },
            draining: None,
            exit: None,
            last_report: Instant::now() - REPORT_EVERY,
            generation: 0,
        }
    }

    /// Runs until stopped, drained, or a failure that needs the actor.
    pub fn run(mut self) -> Exit {
        self.generation = self.io.buffer.generation();
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
            if let Some(halt) = self.lanes.take_halt() {
                self.exit.get_or_insert(halt.into());
            }
            if let Some(exit) = self.exit.take() {
                self.lanes.remove_acknowledged(&mut self.io);
                self.report();
                return exit;
            }
        }
    }

    fn next_timer(&self) -> Duration {
        let mut wait = TICK;
        if let Some(at) = self.io.oldest_ack {
            wait = wait.min((at + REMOVE_AFTER).saturating_duration_since(Instant::now()));
        }
        wait
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Reports => {
                let now = Instant::now();
                for report in self.io.producer.context().take_reports() {
                    self.lanes.settle(report, &mut self.io, now);
                }
                if !self.io.written.is_empty() {
                    let written = std::mem::take(&mut self.io.written);
                    self.io.leadership.acknowledged(written);
                }
                // One call for the whole batch of acknowledgements.
                if !self.io.ack_received_at.is_empty() {
                    self.io
                        .telemetry
                        .kafka
                        .acknowledged(&self.io.ack_received_at);
                    self.io.ack_received_at.clear();
                }
            }
            // The read that follows re-arms the watch.
            Event::Wake => {}
            Event::Metadata(topics) => self.lanes.metadata(topics),
            Event::Drain { deadline, done } => self.draining = Some((deadline, done)),
            Event::Stop => self.exit = Some(Exit::Stopped),
        }
    }

    fn step(&mut self) {
        let now = Instant::now();
        if self.io.acked.len() >= REMOVE_BATCH
            || self
                .io
                .oldest_ack
                .is_some_and(|at| now >= at + REMOVE_AFTER)
        {
            self.lanes.remove_acknowledged(&mut self.io);
        }
        if now >= self.last_report + REPORT_EVERY {
            self.report();
        }
        if let Some((deadline, _)) = &self.draining {
            let in_flight = self.lanes.in_flight();
            if in_flight == 0 || now >= *deadline {
                let settled = in_flight == 0;
                if let Some((_, done)) = self.draining.take() {
                    let _ = done.send(settled);
                }
                self.exit = Some(Exit::Stopped);
            }
            return;
        }
        if self.exit.is_some() || self.lanes.halted() {
            return;
        }
        if !self.io.leadership.may_send() {
            if !self.io.leadership.is_leader() {
                // Another member leads: this loop ends; the producer (and
                // whatever librdkafka still queued) goes with it.
                self.exit = Some(Exit::Stopped);
            }
            // A leader without a lease holds until it is renewed.
            return;
        }
        if self.io.buffer.generation() != self.generation {
            self.buffer_reopened();
        }
        // Before the read: an append during it wakes the thread again.
        self.appended.rearm();
        self.lanes.advance(&mut self.io, now);
    }

    /// The buffer was reopened after a storage failure. It puts back
    /// everything that changed since its last good flush (appends,
    /// removals, dead-letter moves), so this loop's cursor and holds stay
    /// valid; reading again from the start would only send the records in
    /// flight a second time. What it could not put back is counted by the
    /// buffer (`gkb_buffer_lost_events_total`).
    fn buffer_reopened(&mut self) {
        self.generation = self.io.buffer.generation();
        tracing::info!(
            generation = self.generation,
            "buffer reopened after a storage failure; forwarding goes on from where it was"
        );
    }

    fn report(&mut self) {
        self.last_report = Instant::now();
        self.io.telemetry.alive("producer");
        self.io.telemetry.kafka.topics_report(self.lanes.report());
    }
}
