//! The coordinator: one thread per member that follows the coordination
//! topic and acts on it. It folds every record (`log.rs`), claims the next
//! epoch when the leader released it or fell silent for a lease, checks
//! Kafka before forwarding after a win (`takeover.rs`), heartbeats with
//! the leader's progress, keeps a standby's buffer trimmed to what the
//! leader has not reported (`standby.rs`), releases the epoch on a planned
//! stop, and tells [`Leadership`] and telemetry what it decided.
//!
//! Time enters only here, and only as local monotonic durations: a
//! standby claims after `lease_ms` without reading a record of the leader
//! (counted from when it *read* the last one), and the leader hands
//! records to Kafka only until 80 % of `lease_ms` after it *sent* its last
//! heartbeat that came back from Kafka. Since the reading follows the
//! sending, the leader has stopped before anyone may claim, whatever the
//! wall clocks of the hosts say. ARCHITECTURE.md has the whole argument.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use super::client;
use super::config::ClusterConfig;
use super::leadership::{Leadership, Role};
use super::log::{Change, Fold};
use super::message::{id_hex, parse_id, Envelope, Message, Progress};
use super::standby::{Covered, Index};
use super::takeover::{self, Found, Held};
use crate::buffer::Buffer;
use crate::producer::routing::Router;
use crate::producer::{record, Partitioner};
use crate::telemetry::cluster::{ClusterState, MemberState, Takeover};
use crate::telemetry::Telemetry;

/// `retention.ms` of a coordination topic the bridge creates: one day.
const COORDINATION_RETENTION_MS: &str = "86400000";
/// Records read back from the end of the coordination topic at start-up:
/// about an hour of a leader's heartbeats (its progress ids included, for
/// a member whose buffer holds events from before its restart).
const START_BACK: i64 = 10_000;
/// The leader's share of the lease: it stops sending at 80 % of it.
const LEASE_SHARE: f64 = 0.8;
/// Ids per progress record: keeps a record well under Kafka's 1 MB.
const IDS_PER_RECORD: usize = 20_000;
/// How long a takeover's check of Kafka may take.
const CHECK_LIMIT: Duration = Duration::from_secs(30);
/// A release waits this long for Kafka to have it.
const RELEASE_WAIT: Duration = Duration::from_secs(5);
/// Waiting for the forwarding thread to end before the release.
const FORWARDER_WAIT: Duration = Duration::from_secs(15);
/// How often a standby trims its buffer and state is published.
const TRIM_EVERY: Duration = Duration::from_millis(250);
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// After a release this member waits this many leases for another to
/// claim before it claims again itself.
const AFTER_RELEASE_LEASES: u32 = 1;
/// Ids a new leader skips if its socket delivers them late (the old
/// leader reported them): how long that list applies.
const SKIP_FOR: Duration = Duration::from_secs(30);

/// What the bridge gives the coordinator.
pub struct Parts {
    pub config: ClusterConfig,
    /// The bridge's librdkafka properties (connection settings are taken).
    pub properties: BTreeMap<String, String>,
    pub replication_factor: i32,
    pub buffer: Buffer,
    pub router: Router,
    pub partitioner: Partitioner,
    pub telemetry: Arc<Telemetry>,
}

/// The coordination topic's consumer and producer.
type Clients<'a> = (
    &'a BaseConsumer,
    &'a ThreadedProducer<DefaultProducerContext>,
);

enum Command {
    Release(tokio::sync::oneshot::Sender<bool>),
    Stop,
}

/// The running coordinator.
pub struct Cluster {
    pub leadership: Arc<Leadership>,
    commands: Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl Cluster {
    /// Starts following the coordination topic; the member is a standby
    /// until it wins a claim.
    pub fn start(parts: Parts) -> std::io::Result<Cluster> {
        let leadership = Leadership::clustered();
        let (commands, inbox) = std::sync::mpsc::channel();
        let coordinator = Coordinator::new(parts, leadership.clone(), inbox);
        // Its series and /status exist from the start, before Kafka answers.
        coordinator.publish(Some(
            "starting: not following the coordination topic yet".into(),
        ));
        let thread = std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || coordinator.run())?;
        Ok(Cluster {
            leadership,
            commands,
            thread: Some(thread),
        })
    }

    /// A planned stop of the leader: stop forwarding, record the last
    /// progress and release the epoch, so a standby takes over at once
    /// and forwards exactly what follows. `true` once Kafka has the
    /// release (or this member did not lead).
    pub async fn release(&self) -> bool {
        let (done, answer) = tokio::sync::oneshot::channel();
        if self.commands.send(Command::Release(done)).is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }

    /// Stops following (after a release, at shutdown).
    pub fn stop(mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// This member's part in the current epoch.
enum Local {
    /// Reading the topic up to where it ended at start-up.
    CatchingUp {
        until: i64,
    },
    Standby,
    Claiming {
        epoch: u64,
        sent: Instant,
    },
    TakingOver {
        epoch: u64,
        /// When the winning claim was sent (`None`: a claim this member
        /// had given up on; the lease waits for a heartbeat then).
        claimed: Option<Instant>,
        planned: bool,
        check: JoinHandle<Result<Found, String>>,
        held: u64,
    },
    Leader,
}

struct Coordinator {
    config: ClusterConfig,
    me: Envelope,
    properties: BTreeMap<String, String>,
    replication_factor: i32,
    buffer: Buffer,
    router: Router,
    partitioner: Partitioner,
    telemetry: Arc<Telemetry>,
    leadership: Arc<Leadership>,
    inbox: Receiver<Command>,
    lease: Duration,
    fold: Fold,
    local: Local,
    /// When the current epoch's last record was read.
    leader_seen: Instant,
    /// The epoch this member released, and when: it does not claim the
    /// next one for a lease (another member should), unless the next one
    /// was claimed and released by another in the meantime.
    released: Option<(u64, Instant)>,
    /// Heartbeats (and the claim, as nonce 0) sent in this epoch: nonce →
    /// when. The lease runs from the newest that came back.
    sent: VecDeque<(u64, Instant)>,
    nonce: u64,
    last_beat: Instant,
    last_presence: Instant,
    covered: Covered,
    index: Index,
    /// When the last record (or an empty poll) was read without error.
    read_ok: Instant,
    read_error: Option<String>,
    /// The last trim failed (logged once until one succeeds).
    trim_failing: bool,
    stopping: bool,
}

impl Coordinator {
    fn new(parts: Parts, leadership: Arc<Leadership>, inbox: Receiver<Command>) -> Coordinator {
        let now = Instant::now();
        let incarnation = format!("{:016x}", rand::thread_rng().gen::<u64>());
        Coordinator {
            lease: Duration::from_millis(parts.config.lease_ms),
            me: Envelope {
                member: parts.config.member.clone(),
                incarnation,
                at_ms: 0,
            },
            config: parts.config,
            properties: parts.properties,
            replication_factor: parts.replication_factor,
            buffer: parts.buffer,
            router: parts.router,
            partitioner: parts.partitioner,
            telemetry: parts.telemetry,
            leadership,
            inbox,
            fold: Fold::new(),
            local: Local::CatchingUp { until: 0 },
            leader_seen: now,
            released: None,
            sent: VecDeque::new(),
            nonce: 0,
            last_beat: now,
            last_presence: now,
            covered: Covered::default(),
            index: Index::default(),
            read_ok: now,
            read_error: None,
            trim_failing: false,
            stopping: false,
        }
    }

    fn run(mut self) {
        let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(200), self.lease)
            .expect("constant bounds are valid");
        while !self.stopping {
            match self.connect() {
                Ok((consumer, producer)) => {
                    self.follow(&consumer, &producer);
                    // Whatever is queued goes (or times out) before the
                    // clients are dropped.
                    let _ = rdkafka::producer::Producer::flush(&producer, RELEASE_WAIT);
                }
                Err(e) => {
                    self.telemetry.cluster.coordination_failed(&e);
                    self.publish(Some(format!(
                        "cannot use the coordination topic {}: {e}",
                        self.config.topic
                    )));
                    let wait = backoff.next_delay();
                    let until = Instant::now() + wait;
                    while Instant::now() < until && !self.stopping {
                        self.commands(None);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        }
        self.leadership.set_standby(self.fold.epoch);
    }

    /// Builds the clients, makes sure the topic exists, and assigns its
    /// one partition from [`START_BACK`] records before its end.
    fn connect(
        &mut self,
    ) -> Result<(BaseConsumer, ThreadedProducer<DefaultProducerContext>), String> {
        let consumer = client::consumer(&self.properties, "cluster")?;
        let producer = client::producer(&self.properties, self.config.lease_ms)?;
        let topic = &self.config.topic;
        if self.config.create_topic {
            // Not fatal: a cluster that refuses creation may have the
            // topic already; the metadata below says whether it exists.
            if let Err(e) = self.create_topic() {
                tracing::debug!(error = %e, "cluster: coordination topic not created");
            }
        }
        let timeout = Duration::from_secs(5);
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| format!("metadata: {e}"))?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        if partitions != 1 {
            return Err(if partitions == 0 {
                "it does not exist (create it with one partition, or set cluster.create_topic)"
                    .to_owned()
            } else {
                format!("it has {partitions} partitions; it must have exactly one (its order decides who leads)")
            });
        }
        let (low, high) = consumer
            .fetch_watermarks(topic, 0, timeout)
            .map_err(|e| format!("watermarks: {e}"))?;
        let start = (high - START_BACK).max(low);
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, Offset::Offset(start))
            .map_err(|e| e.to_string())?;
        consumer.assign(&assignment).map_err(|e| e.to_string())?;
        // A reconnect starts the fold afresh from the same window.
        self.fold = Fold::new();
        self.local = Local::CatchingUp { until: high };
        self.leadership.set_standby(0);
        self.read_ok = Instant::now();
        tracing::info!(topic = %topic, from = start, end = high, member = %self.me.member, "cluster: following the coordination topic");
        Ok((consumer, producer))
    }

    fn create_topic(&self) -> Result<(), String> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> = rdkafka::config::ClientConfig::from_iter(
            self.properties
                .iter()
                .filter(|(k, _)| {
                    k.starts_with("bootstrap.")
                        || k.starts_with("security.")
                        || k.starts_with("sasl.")
                        || k.starts_with("ssl.")
                })
                .map(|(k, v)| (k.clone(), v.clone())),
        )
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
        // Progress records carry every event id (~20 bytes each): the
        // topic grows with the traffic, so it keeps a day, far more than
        // the 10,000 records a member reads back.
        let topic = NewTopic::new(
            &self.config.topic,
            1,
            TopicReplication::Fixed(self.replication_factor),
        )
        .set("retention.ms", COORDINATION_RETENTION_MS)
        .set("cleanup.policy", "delete");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| e.to_string())?;
        let result = runtime.block_on(admin.create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(5))),
        ));
        match result {
            Ok(outcomes) => {
                for outcome in outcomes {
                    match outcome {
                        Ok(name) => {
                            tracing::info!(topic = %name, "cluster: coordination topic created")
                        }
                        Err((_, rdkafka::error::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((name, code)) => {
                            return Err(format!("cannot create {name}: {code}"));
                        }
                    }
                }
                Ok(())
            }
            Err(e) => Err(format!("cannot create the topic: {e}")),
        }
    }

    /// Reads and acts until stopped or the clients must be rebuilt.
    fn follow(
        &mut self,
        consumer: &BaseConsumer,
        producer: &ThreadedProducer<DefaultProducerContext>,
    ) {
        let mut last_trim = Instant::now();
        let mut last_publish = Instant::now() - PUBLISH_EVERY;
        while !self.stopping {
            self.commands(Some((consumer, producer)));
            // Read what is there: the first poll waits a little.
            let mut wait = Duration::from_millis(50);
            for _ in 0..1_000 {
                match consumer.poll(wait) {
                    None => break,
                    Some(Ok(m)) => {
                        self.read_ok = Instant::now();
                        self.read_error = None;
                        let offset = m.offset();
                        if let Some(message) = m.payload().and_then(Message::decode) {
                            if self.apply(offset, &message) {
                                tracing::info!(by = %message.from().member, "cluster: asked to hand over");
                                self.release((consumer, producer));
                            }
                        } else {
                            self.fold.position = self.fold.position.max(offset);
                        }
                    }
                    Some(Err(e)) => {
                        if self.read_error.is_none() {
                            self.telemetry.cluster.coordination_failed(&e.to_string());
                        }
                        self.read_error = Some(e.to_string());
                        break;
                    }
                }
                wait = Duration::ZERO;
            }
            if let Local::CatchingUp { until } = self.local {
                if self.fold.position + 1 >= until {
                    self.caught_up();
                }
            }
            let now = Instant::now();
            self.tick(now, producer);
            if now >= last_trim + TRIM_EVERY {
                last_trim = now;
                self.trim();
            }
            if now >= last_publish + PUBLISH_EVERY {
                last_publish = now;
                self.publish(self.problem(now));
            }
        }
    }

    fn commands(&mut self, clients: Option<Clients<'_>>) {
        loop {
            match self.inbox.try_recv() {
                Ok(Command::Release(done)) => match clients {
                    Some(clients) if self.is_leading() => {
                        let ok = self.release(clients);
                        let _ = done.send(ok);
                    }
                    // Not leading (without clients it cannot lead):
                    // nothing to hand over.
                    _ => {
                        let _ = done.send(true);
                    }
                },
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => {
                    self.stopping = true;
                    return;
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    fn is_leading(&self) -> bool {
        matches!(self.local, Local::Leader | Local::TakingOver { .. })
    }

    /// One record of the topic; `true` when this member, leading, is
    /// asked to hand over.
    fn apply(&mut self, offset: i64, message: &Message) -> bool {
        let was_released = self.fold.released;
        let change = self.fold.apply(offset, message);
        let now = Instant::now();
        if let Message::Lead { progress, .. } | Message::Release { progress, .. } = message {
            for id in progress.ids.iter().filter_map(|h| parse_id(h)) {
                self.covered.insert(id, now);
            }
        }
        let mine = message.from().member == self.me.member
            && message.from().incarnation == self.me.incarnation;
        match change {
            Change::NewLeader => {
                self.leader_seen = now;
                if mine {
                    // Also a claim given up on (not read back within a
                    // lease) that won after all: this member leads. Its
                    // lease then starts only with a heartbeat read back.
                    let sent = match self.local {
                        Local::Claiming { epoch, sent } if epoch == self.fold.epoch => Some(sent),
                        _ => None,
                    };
                    if let Some(sent) = sent {
                        self.confirmed(sent);
                    }
                    self.begin_takeover(self.fold.epoch, sent, was_released);
                } else if self.is_leading() {
                    self.step_down(&format!(
                        "member {} claimed epoch {} (this member's lease had run out)",
                        message.from().member,
                        self.fold.epoch
                    ));
                } else {
                    self.local_standby();
                }
            }
            Change::Heartbeat => {
                self.leader_seen = now;
                if mine {
                    if let Message::Lead { progress, .. } = message {
                        if let Some(at) = self.sent_at(progress.nonce) {
                            self.confirmed(at);
                        }
                    }
                }
            }
            Change::Released => {
                self.leader_seen = now;
            }
            Change::HandoverAsked => return self.is_leading(),
            Change::Nothing => {}
        }
        false
    }

    fn caught_up(&mut self) {
        self.local = Local::Standby;
        // What was read so far was read now: the leader gets a whole
        // lease from here before anyone may claim.
        self.leader_seen = Instant::now();
        tracing::info!(
            epoch = self.fold.epoch,
            leader = self
                .fold
                .leader
                .as_ref()
                .map_or("none", |l| l.member.as_str()),
            "cluster: caught up with the coordination topic"
        );
    }

    fn local_standby(&mut self) {
        if !matches!(self.local, Local::CatchingUp { .. }) {
            self.local = Local::Standby;
        }
        self.leadership.set_standby(self.fold.epoch);
    }

    /// The lease runs from `sent` (a record of ours Kafka took).
    fn confirmed(&mut self, sent: Instant) {
        self.leadership
            .extend_lease(sent + self.lease.mul_f64(LEASE_SHARE));
    }

    fn sent_at(&mut self, nonce: u64) -> Option<Instant> {
        while let Some(&(n, at)) = self.sent.front() {
            if n < nonce {
                self.sent.pop_front();
            } else if n == nonce {
                return Some(at);
            } else {
                return None;
            }
        }
        None
    }

    fn begin_takeover(&mut self, epoch: u64, claimed: Option<Instant>, planned: bool) {
        self.leadership.set_taking_over(epoch);
        // Drop what the old leader reported before looking at Kafka.
        self.trim();
        let mut held = Vec::new();
        for (seq, id) in self.index.held().collect::<Vec<_>>() {
            match self.buffer.get(seq) {
                Ok(Some(r)) => held.push(Held {
                    id,
                    topic: self.router.route(&r.topic_name).to_owned(),
                    key: record::key(&r).to_owned(),
                }),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: cannot read a held event for the takeover check")
                }
            }
        }
        let count = held.len() as u64;
        let properties = self.properties.clone();
        let written = self.fold.written.clone();
        let partitioner = self.partitioner;
        let deadline = Instant::now() + CHECK_LIMIT;
        let check = std::thread::Builder::new()
            .name("cluster-check".into())
            .spawn(move || takeover::check(&properties, &held, &written, partitioner, deadline));
        match check {
            Ok(check) => {
                self.local = Local::TakingOver {
                    epoch,
                    claimed,
                    planned,
                    check,
                    held: count,
                };
                // Ids the old leader reported that arrive here late are
                // not sent again.
                self.leadership.skip_for(self.covered_recent(), SKIP_FOR);
            }
            Err(e) => {
                self.telemetry.cluster.check_failed(&e.to_string());
                self.lead(epoch, claimed, planned, Found::default(), count);
            }
        }
    }

    fn covered_recent(&self) -> HashSet<u64> {
        self.covered.recent(Duration::from_secs(60), Instant::now())
    }

    fn lead(
        &mut self,
        epoch: u64,
        claimed: Option<Instant>,
        planned: bool,
        found: Found,
        held: u64,
    ) {
        let found_n = found.ids.len() as u64;
        if !found.ids.is_empty() {
            if let Err(e) = self.index.drop_ids(&self.buffer, &found.ids) {
                tracing::warn!(error = %e, "cluster: cannot drop events found in Kafka; they are sent again");
            }
        }
        // The forwarder owns the buffer from here.
        self.index.reset();
        // Named in the first progress record: other standbys drop them
        // too (the old leader never reported them).
        self.leadership.acknowledged(super::leadership::Acked {
            ids: found.ids.iter().copied().collect(),
            offsets: BTreeMap::new(),
        });
        // Heartbeats confirmed meanwhile may have moved the lease on.
        let now = Instant::now();
        self.leadership.set_leader(
            epoch,
            claimed.map_or(now, |sent| sent + self.lease.mul_f64(LEASE_SHARE)),
        );
        self.local = Local::Leader;
        self.publish(self.problem(now));
        self.telemetry.cluster.took_over(Takeover {
            at_ms: crate::now_ms(),
            epoch,
            planned,
            found_in_kafka: found_n,
            to_forward: held.saturating_sub(found_n),
            took_ms: claimed.map_or(0, |c| c.elapsed().as_millis() as u64),
        });
    }

    fn step_down(&mut self, why: &str) {
        let epoch = self.leadership.epoch();
        self.leadership.set_standby(self.fold.epoch);
        self.local = Local::Standby;
        self.sent.clear();
        self.index.reset();
        // What it acknowledged and did not report yet: the new leader
        // checks Kafka for it anyway.
        let _ = self.leadership.take_acked();
        self.telemetry.cluster.stepped_down(epoch, why);
        self.publish(self.problem(Instant::now()));
    }

    /// What time decides: claims, heartbeats, a takeover's end.
    fn tick(&mut self, now: Instant, producer: &ThreadedProducer<DefaultProducerContext>) {
        match &self.local {
            Local::CatchingUp { .. } => {}
            Local::Standby => {
                if self.read_error.is_none() && self.may_claim(now) {
                    let epoch = self.fold.epoch + 1;
                    let after = self.fold.last_epoch_offset;
                    // A little jitter: two standbys rarely claim at once
                    // (and if they do, the log decides).
                    let jitter = Duration::from_millis(
                        rand::thread_rng().gen_range(0..=self.config.heartbeat_ms / 2),
                    );
                    std::thread::sleep(jitter);
                    let sent = Instant::now();
                    self.sent.clear();
                    self.nonce = 0;
                    self.send(
                        producer,
                        Message::Claim {
                            from: self.envelope(),
                            epoch,
                            after,
                        },
                    );
                    self.local = Local::Claiming { epoch, sent };
                }
                if now >= self.last_presence + self.lease / 2 {
                    self.last_presence = now;
                    let ready = self.problem(now).is_none();
                    self.send(
                        producer,
                        Message::Member {
                            from: self.envelope(),
                            role: "standby".into(),
                            ready,
                            behind: self.index.len() as u64,
                        },
                    );
                }
            }
            Local::Claiming { sent, .. } => {
                if now.saturating_duration_since(*sent) > self.lease {
                    // Void, lost or not read back: look again.
                    self.local = Local::Standby;
                }
            }
            Local::TakingOver { check, .. } => {
                if check.is_finished() {
                    let Local::TakingOver {
                        epoch,
                        claimed,
                        planned,
                        check,
                        held,
                    } = std::mem::replace(&mut self.local, Local::Standby)
                    else {
                        unreachable!()
                    };
                    let found = match check.join() {
                        Ok(Ok(found)) => found,
                        Ok(Err(e)) => {
                            self.telemetry.cluster.check_failed(&e);
                            Found::default()
                        }
                        Err(_) => {
                            self.telemetry.cluster.check_failed("the check panicked");
                            Found::default()
                        }
                    };
                    if self.fold.epoch == epoch && self.fold.is_leader(&self.me) {
                        self.lead(epoch, claimed, planned, found, held);
                    } else {
                        self.local_standby();
                    }
                }
                self.heartbeat(now, producer);
            }
            Local::Leader => self.heartbeat(now, producer),
        }
    }

    fn may_claim(&self, now: Instant) -> bool {
        if let Some((epoch, at)) = self.released {
            if self.fold.epoch == epoch
                && now.saturating_duration_since(at) < self.lease * AFTER_RELEASE_LEASES
            {
                return false;
            }
        }
        match &self.fold.leader {
            None => true,
            Some(_) if self.fold.released => true,
            // This member's previous run led and is gone: this process
            // holds its buffer's lock.
            Some(l) if l.member == self.me.member && l.incarnation != self.me.incarnation => true,
            Some(_) => now.saturating_duration_since(self.leader_seen) > self.lease,
        }
    }

    fn heartbeat(&mut self, now: Instant, producer: &ThreadedProducer<DefaultProducerContext>) {
        if now < self.last_beat + Duration::from_millis(self.config.heartbeat_ms) {
            return;
        }
        self.last_beat = now;
        let epoch = self.fold.epoch;
        let acked = self.leadership.take_acked();
        let mut ids: Vec<String> = acked.ids.iter().map(|id| id_hex(*id)).collect();
        let offsets: Vec<(String, i32, i64)> = acked
            .offsets
            .into_iter()
            .map(|((t, p), o)| (t, p, o))
            .collect();
        // Large progress goes in several records; each is a heartbeat.
        loop {
            let rest = ids.split_off(ids.len().min(IDS_PER_RECORD));
            self.nonce += 1;
            self.sent.push_back((self.nonce, Instant::now()));
            let progress = Progress {
                nonce: self.nonce,
                ids,
                offsets: offsets.clone(),
            };
            self.send(
                producer,
                Message::Lead {
                    from: self.envelope(),
                    epoch,
                    progress,
                },
            );
            if rest.is_empty() {
                break;
            }
            ids = rest;
        }
    }

    /// A planned release: stop forwarding, wait for the forwarding thread
    /// to end, record what Kafka acknowledged, release the epoch, and
    /// wait for it to come back from Kafka.
    fn release(&mut self, (consumer, producer): Clients<'_>) -> bool {
        let epoch = self.fold.epoch;
        self.leadership.set_standby(epoch);
        let until = Instant::now() + FORWARDER_WAIT;
        while self.leadership.forwarder_running() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let acked = self.leadership.take_acked();
        self.nonce += 1;
        self.send(
            producer,
            Message::Release {
                from: self.envelope(),
                epoch,
                progress: Progress {
                    nonce: self.nonce,
                    ids: acked.ids.iter().map(|id| id_hex(*id)).collect(),
                    offsets: acked
                        .offsets
                        .into_iter()
                        .map(|((t, p), o)| (t, p, o))
                        .collect(),
                },
            },
        );
        self.local = Local::Standby;
        self.released = Some((epoch, Instant::now()));
        self.index.reset();
        // Read until the release is back: then every member reading the
        // log sees the epoch ended at this point.
        let until = Instant::now() + RELEASE_WAIT;
        let ended = |fold: &Fold| fold.epoch > epoch || fold.released;
        while !ended(&self.fold) && Instant::now() < until {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                let offset = m.offset();
                if let Some(message) = m.payload().and_then(Message::decode) {
                    self.apply(offset, &message);
                }
            }
        }
        let confirmed = ended(&self.fold);
        self.telemetry.cluster.released(epoch, confirmed);
        self.publish(self.problem(Instant::now()));
        confirmed
    }

    fn send(&self, producer: &ThreadedProducer<DefaultProducerContext>, message: Message) {
        let payload = message.encode();
        let record = BaseRecord::<str, [u8]>::to(&self.config.topic)
            .partition(0)
            .key(self.me.member.as_str())
            .payload(&payload);
        if let Err((e, _)) = producer.send(record) {
            self.telemetry.cluster.coordination_failed(&e.to_string());
        }
    }

    fn envelope(&self) -> Envelope {
        Envelope {
            at_ms: crate::now_ms(),
            ..self.me.clone()
        }
    }

    /// A standby drops what the leader reported; nothing while leading.
    fn trim(&mut self) {
        if matches!(self.local, Local::Leader | Local::CatchingUp { .. }) {
            return;
        }
        if self.leadership.forwarder_running() {
            return;
        }
        let keep = Duration::from_secs(self.config.standby_keep_secs);
        match self
            .index
            .pass(&self.buffer, &mut self.covered, keep, crate::now_ms())
        {
            Ok(d) => {
                self.trim_failing = false;
                self.telemetry.cluster.dropped(d.covered, d.expired, d.made);
            }
            // Every 250 ms while the buffer fails (a full disk until its
            // reopen): said once, not four times a second.
            Err(e) => {
                if !std::mem::replace(&mut self.trim_failing, true) {
                    tracing::warn!(error = %e, "cluster: standby could not trim its buffer; it keeps trying");
                }
            }
        }
    }

    /// Why this member could not take over now.
    fn problem(&self, now: Instant) -> Option<String> {
        if let Local::CatchingUp { until } = self.local {
            return Some(format!(
                "reading the coordination topic {} up to offset {until} (at {})",
                self.config.topic, self.fold.position
            ));
        }
        let silent = now.saturating_duration_since(self.read_ok);
        if silent > self.lease {
            return Some(format!(
                "the coordination topic {} has not been readable for {} s{}",
                self.config.topic,
                silent.as_secs(),
                self.read_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
        if self.leadership.role() == Role::Leader && !self.leadership.may_send() {
            return Some(
                "leader without a lease: Kafka has not taken its heartbeats; it forwards nothing until it does".to_owned(),
            );
        }
        None
    }

    fn publish(&self, problem: Option<String>) {
        let now = Instant::now();
        let role = self.leadership.role();
        let leader = self.fold.leader.as_ref().filter(|_| !self.fold.released);
        let members = self
            .fold
            .members
            .iter()
            .map(|(name, seen)| MemberState {
                member: name.clone(),
                role: if leader.is_some_and(|l| &l.member == name) {
                    "leader".into()
                } else if seen.role == "leader" {
                    "standby".into()
                } else {
                    seen.role.clone()
                },
                ready: seen.ready,
                behind: seen.behind,
                last_seen_ms: seen.at_ms,
            })
            .collect();
        self.telemetry.cluster.update(ClusterState {
            member: self.me.member.clone(),
            topic: self.config.topic.clone(),
            role: role.as_str().to_owned(),
            forwarding: self.leadership.may_send(),
            epoch: self.fold.epoch,
            leader: leader.map(|l| l.member.clone()),
            leader_since_ms: leader.map(|l| l.since_ms),
            behind: self.index.len() as u64,
            oldest_behind_ms: self.index.oldest_ms(),
            leader_silent_ms: (role != Role::Leader)
                .then(|| now.saturating_duration_since(self.leader_seen).as_millis() as u64),
            members,
            problem,
            last_takeover: None,
        });
    }
}
