//! The producer actor: forwards buffered events to Kafka and removes each
//! from the buffer once Kafka acknowledged it.
//!
//! It reads the buffer in sequence order from a cursor, hands up to
//! `max_in_flight` records to an idempotent librdkafka producer (acks=all,
//! retries without end), and on each acknowledgement removes the record.
//! A record Kafka refuses for good (too large, invalid) goes to the
//! dead-letter area; any other failure leaves it in the buffer, and after
//! the in-flight records have settled the cursor rewinds to the start of
//! the buffer, so everything unacknowledged is sent again, in order. A
//! fatal producer error stops the actor; its supervisor restarts it with a
//! new producer and a rewound cursor.
//!
//! Kafka record: value = the notification text exactly as received;
//! key = the entity id from the topic name; headers `genesys-topic`,
//! `genesys-correlation-id` (when present) and `genesys-received-at-ms`.

mod config;
pub mod record;
pub mod routing;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::oneshot;

pub use config::KafkaConfig;
pub use record::{HEADER_CORRELATION_ID, HEADER_RECEIVED_AT, HEADER_TOPIC};
use routing::Router;

use crate::backoff::Backoff;
use crate::buffer::{Buffer, Record};
use crate::connection::EventsBuffered;
use crate::telemetry::{Telemetry, LIVENESS_INTERVAL};

/// Acknowledged records are removed from the buffer in batches this big
/// (or at the next tick).
const REMOVE_BATCH: usize = 512;
/// How often leftovers are removed and a stalled pump retried.
const TICK: Duration = Duration::from_millis(100);
/// How often Kafka's metadata is probed for /readyz.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);


/// Stop reading new records; answer once everything in flight settled or
/// the grace period ran out (then whatever is left stays in the buffer).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Drain {
    pub grace: Duration,
}

/// Why a producer could not be built.
#[derive(Debug, thiserror::Error)]
#[error("kafka client settings refused: {0}")]
pub struct ClientSettingsError(String);

/// Builds the librdkafka producer, without connecting. Also how
/// `check-config` validates pass-through properties.
pub fn build_producer(
    properties: &BTreeMap<String, String>,
) -> Result<FutureProducer, ClientSettingsError> {
    client_config(properties)
        .create()
        .map_err(|e| ClientSettingsError(e.to_string()))
}

fn client_config(properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

pub struct ProducerActor {
    properties: BTreeMap<String, String>,
    router: Router,
    buffer: Buffer,
    telemetry: Arc<Telemetry>,
    max_in_flight: usize,
    create_topics: Option<(i32, i32)>,
    backoff: Backoff,
    producer: Option<FutureProducer>,
    /// Highest sequence handed to Kafka since the last rewind.
    cursor: u64,
    in_flight: usize,
    acked: Vec<u64>,
    /// A delivery failed: stop reading, let in-flight settle, then rewind.
    rewind_pending: bool,
    /// Kafka topics that do not exist: their records are skipped (they stay
    /// in the buffer) until the probe sees the topic.
    blocked: std::collections::HashSet<String>,
    /// Reading is paused until this backoff delay has passed.
    paused: bool,
    draining: bool,
    drain_waiters: Vec<oneshot::Sender<()>>,
}

impl ProducerActor {
    pub fn new(
        config: &KafkaConfig,
        properties: BTreeMap<String, String>,
        router: Router,
        buffer: Buffer,
        telemetry: Arc<Telemetry>,
        backoff: Backoff,
    ) -> Self {
        ProducerActor {
            properties,
            router,
            buffer,
            telemetry,
            max_in_flight: config.max_in_flight,
            create_topics: config.create_topics.then_some((
                config.create_topics_partitions,
                config.create_topics_replication_factor,
            )),
            backoff,
            producer: None,
            cursor: 0,
            in_flight: 0,
            acked: Vec::new(),
            rewind_pending: false,
            blocked: Default::default(),
            paused: false,
            draining: false,
            drain_waiters: Vec::new(),
        }
    }

    /// Hands buffered records to Kafka until the window is full.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.paused || self.rewind_pending || self.draining {
            return;
        }
        let Some(producer) = self.producer.clone() else {
            return;
        };
        while self.in_flight < self.max_in_flight {
            let want = (self.max_in_flight - self.in_flight).min(1024);
            let (records, quarantined) = match self.buffer.read_after(self.cursor, want) {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the buffer");
                    return;
                }
            };
            if !quarantined.is_empty() {
                self.telemetry.quarantined(quarantined.len());
            }
            if records.is_empty() {
                return;
            }
            for record in records {
                if !self.send(&producer, record, ctx) {
                    return;
                }
            }
        }
    }

    /// Sends one record; false when pumping must pause: librdkafka's queue
    /// is full or a failure calls for a rewind (the record stays in the
    /// buffer and is tried again later, in order).
    fn send(&mut self, producer: &FutureProducer, record: Record, ctx: &mut Context<Self>) -> bool {
        let kafka_topic = self.router.route(&record.topic_name).to_owned();
        if self.blocked.contains(&kafka_topic) {
            // Left in the buffer; the rewind after the block lifts sends it.
            self.cursor = record.seq;
            return true;
        }
        let key = record::key(&record).to_owned();
        let headers = record::headers(&record);
        let kafka_record = FutureRecord::to(&kafka_topic)
            .key(&key)
            .payload(&record.payload)
            .headers(headers);
        let delivery = match producer.send_result(kafka_record) {
            Ok(delivery) => delivery,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => return false,
            // After a failure that leaves the record in the buffer, sending
            // later records first would break their order.
            Err((e, _)) => return self.failed(record, kafka_topic, e, ctx),
        };
        self.cursor = record.seq;
        self.in_flight += 1;
        ctx.spawn(delivery.into_actor(self).map(move |result, act, ctx| {
            act.in_flight -= 1;
            match result {
                Ok(Ok(_)) => {
                    act.acked.push(record.seq);
                    if act.acked.len() >= REMOVE_BATCH {
                        act.remove_acked();
                    }
                }
                Ok(Err((e, _))) => {
                    act.failed(record, kafka_topic, e, ctx);
                }
                Err(_canceled) => {
                    act.failed(record, kafka_topic, KafkaError::Canceled, ctx);
                }
            }
            act.settled(ctx);
        }));
        true
    }

    /// Handles a failed send or delivery. Returns true when the record
    /// left the buffer (dead-lettered) so pumping may go on; false when it
    /// stays and pumping must pause.
    fn failed(
        &mut self,
        record: Record,
        kafka_topic: String,
        error: KafkaError,
        ctx: &mut Context<Self>,
    ) -> bool {
        if is_permanent(&error) {
            let reason = error.to_string();
            match self.buffer.dead_letter(&record, &kafka_topic, &reason) {
                Ok(()) => {
                    self.telemetry
                        .dead_lettered(record.seq, &kafka_topic, &reason);
                    return true;
                }
                Err(e) => self.telemetry.buffer_write_failed(&e),
            }
        } else if self
            .producer
            .as_ref()
            .and_then(|p| p.client().fatal_error())
            .is_some()
        {
            // The supervisor restarts the actor with a new producer; wait
            // first, so a cause that persists is not hammered.
            let delay = self.backoff.next_delay();
            tracing::error!(error = %error, restart_in_ms = delay.as_millis() as u64, "fatal Kafka producer error: restarting the producer");
            self.telemetry
                .kafka_reachable(Err(format!("fatal producer error: {error}")));
            self.paused = true;
            ctx.run_later(delay, |_, ctx| ctx.stop());
            return false;
        } else if let KafkaError::MessageProduction(
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic,
        ) = error
        {
            // Only this topic's events wait; the probe lifts the block once
            // the topic exists.
            if self.blocked.insert(kafka_topic.clone()) {
                self.telemetry.kafka_reachable(Err(format!(
                    "Kafka topic {kafka_topic} does not exist (create it, or set kafka.create_topics); its events wait in the buffer"
                )));
            }
        }
        // Many in-flight records fail together (a topic missing, a broker
        // gone): one rewind, one backoff step and one log line for all.
        let first = !self.rewind_pending;
        self.telemetry
            .delivery_failed(record.seq, &kafka_topic, &error, first);
        self.rewind_pending = true;
        self.settled(ctx);
        false
    }

    /// Called whenever in-flight work finished: completes a rewind or a
    /// drain once nothing is in flight any more.
    fn settled(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight > 0 {
            return;
        }
        self.remove_acked();
        if self.draining {
            for waiter in self.drain_waiters.drain(..) {
                let _ = waiter.send(());
            }
            return;
        }
        if self.rewind_pending {
            self.rewind_pending = false;
            self.cursor = 0;
            self.paused = true;
            let delay = self.backoff.next_delay();
            ctx.run_later(delay, |act, ctx| {
                act.paused = false;
                act.pump(ctx);
            });
        }
    }

    fn remove_acked(&mut self) {
        if self.acked.is_empty() {
            return;
        }
        match self.buffer.remove(&self.acked) {
            Ok(()) => {
                self.telemetry.events_forwarded(self.acked.len() as u64);
                self.backoff.reset();
                self.acked.clear();
            }
            // Kept for the next tick: removal is retried, the records are
            // never sent twice by this process because the cursor is past them.
            Err(e) => {
                tracing::error!(error = %e, "cannot remove acknowledged events from the buffer")
            }
        }
    }

    fn probe(&mut self, ctx: &mut Context<Self>) {
        let Some(producer) = self.producer.clone() else {
            return;
        };
        let mut wanted = self.router.topics();
        wanted.extend(self.blocked.iter().cloned());
        let probe = actix_rt::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(None, PROBE_TIMEOUT)
                .map_err(|e| format!("metadata request failed: {e}"))?;
            let present: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
            Ok::<_, String>(
                wanted
                    .into_iter()
                    .filter(|t| !present.contains(&t.as_str()))
                    .collect::<std::collections::HashSet<String>>(),
            )
        });
        ctx.spawn(probe.into_actor(self).map(|result, act, ctx| {
            let missing = match result {
                Ok(Ok(missing)) => missing,
                Ok(Err(e)) => return act.telemetry.kafka_reachable(Err(e)),
                Err(e) => return act.telemetry.kafka_reachable(Err(format!("probe task failed: {e}"))),
            };
            let before = act.blocked.len();
            act.blocked.retain(|t| missing.contains(t));
            if act.blocked.len() < before {
                // Topics came into existence: send what waited for them.
                act.rewind_pending = true;
                act.settled(ctx);
            }
            if missing.is_empty() {
                act.telemetry.kafka_reachable(Ok(()));
            } else {
                let mut names: Vec<&str> = missing.iter().map(String::as_str).collect();
                names.sort_unstable();
                act.telemetry.kafka_reachable(Err(format!(
                    "Kafka topics missing: {} (create them, or set kafka.create_topics); their events wait in the buffer",
                    names.join(", ")
                )));
            }
        }));
    }

    fn create_missing_topics(&mut self, ctx: &mut Context<Self>) {
        let Some((partitions, replication)) = self.create_topics else {
            return;
        };
        let admin: AdminClient<DefaultClientContext> = match client_config(&self.properties)
            .create()
        {
            Ok(admin) => admin,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the Kafka admin client; topics not created");
                return;
            }
        };
        let topics = self.router.topics();
        let create = async move {
            let new: Vec<NewTopic<'_>> = topics
                .iter()
                .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
                .collect();
            let result = admin.create_topics(&new, &AdminOptions::new()).await;
            drop(new);
            // Dropping a client joins its threads: not on the actor thread.
            actix_rt::task::spawn_blocking(move || drop(admin));
            result
        };
        ctx.spawn(create.into_actor(self).map(|result, act, ctx| {
            match result {
                Ok(outcomes) => {
                    for outcome in outcomes {
                        match outcome {
                            Ok(topic) => tracing::info!(topic, "Kafka topic created"),
                            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                                tracing::debug!(topic, "Kafka topic exists")
                            }
                            Err((topic, code)) => {
                                tracing::error!(topic, error = %code, "cannot create Kafka topic")
                            }
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot create Kafka topics"),
            }
            act.probe(ctx);
        }));
    }
}

/// Errors about the record itself: sending it again cannot succeed.
fn is_permanent(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error,
        KafkaError::MessageProduction(
            MessageSizeTooLarge
                | InvalidMessageSize
                | InvalidMessage
                | InvalidRecord
                | MessageBatchTooLarge
                | InvalidArgument
        )
    )
}

impl Actor for ProducerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.telemetry.alive("producer");
        ctx.run_interval(LIVENESS_INTERVAL, |act, _| act.telemetry.alive("producer"));
        match build_producer(&self.properties) {
            Ok(producer) => self.producer = Some(producer),
            Err(e) => {
                // Properties were checked at start-up; this is not expected
                // to pass with time, but the supervisor's restart is the
                // only way to try again.
                self.telemetry.kafka_reachable(Err(e.to_string()));
                ctx.run_later(Duration::from_secs(5), |_, ctx| ctx.stop());
                return;
            }
        }
        self.cursor = 0;
        ctx.run_interval(TICK, |act, ctx| {
            if act.in_flight == 0 || act.acked.len() >= REMOVE_BATCH / 4 {
                act.remove_acked();
            }
            act.pump(ctx);
        });
        ctx.run_interval(PROBE_INTERVAL, |act, ctx| act.probe(ctx));
        if self.create_topics.is_some() {
            self.create_missing_topics(ctx);
        } else {
            self.probe(ctx);
        }
        self.pump(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Records acknowledged but not yet removed would be sent again.
        self.remove_acked();
    }
}

impl Supervised for ProducerActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.remove_acked();
        if let Some(old) = self.producer.take() {
            // Dropping a producer flushes and joins its threads.
            actix_rt::task::spawn_blocking(move || drop(old));
        }
        self.blocked.clear();
        self.cursor = 0;
        self.in_flight = 0;
        self.rewind_pending = false;
        self.paused = false;
    }
}

impl Handler<EventsBuffered> for ProducerActor {
    type Result = ();

    fn handle(&mut self, _: EventsBuffered, ctx: &mut Context<Self>) {
        self.pump(ctx);
    }
}

impl Handler<Drain> for ProducerActor {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, Drain { grace }: Drain, ctx: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        let (tx, rx) = oneshot::channel();
        self.drain_waiters.push(tx);
        self.settled(ctx);
        let producer = self.producer.clone();
        Box::pin(async move {
            let settled = actix_rt::time::timeout(grace, rx).await.is_ok();
            if let Some(producer) = producer {
                let _ =
                    actix_rt::task::spawn_blocking(move || producer.flush(Duration::from_secs(1)))
                        .await;
            }
            settled
        })
    }
}
