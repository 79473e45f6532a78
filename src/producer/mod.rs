//! The producer actor: forwards buffered events to Kafka and removes each
//! from the buffer once Kafka acknowledged it.
//!
//! The actor itself does little: it builds an idempotent librdkafka
//! producer (acks=all, retries without end, partitions chosen by the
//! bridge) and starts the forwarding thread ([`forwarder`]) that does the
//! work, off the actor threads that read the sockets; it passes wake-ups
//! on (coalesced, [`inbox`]), probes Kafka's metadata for the routed
//! topics, creates topics when asked to, and restarts the producer after
//! a fatal error. See [`lanes`] for how partitions are kept apart and how
//! failures are handled, [`failure`] for the failure classes and
//! [`delivery`] for librdkafka's delivery reports.
//!
//! Kafka record ([`record`]): value = the notification text exactly as
//! received; key = the entity id from the topic name; headers
//! `genesys-topic`, `genesys-correlation-id` (when present) and
//! `genesys-received-at-ms`.

mod config;
mod delivery;
mod failure;
mod forwarder;
mod inbox;
mod lanes;
pub mod partitioner;
pub mod record;
pub mod routing;

use std::collections::BTreeMap;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, Producer};
use tokio::sync::oneshot;

pub use config::KafkaConfig;
use delivery::{DeliveryContext, KafkaProducer};
use forwarder::{Exit, Forwarder};
use inbox::Event;
use lanes::Limits;
pub use partitioner::Partitioner;
pub use record::{HEADER_CORRELATION_ID, HEADER_RECEIVED_AT, HEADER_TOPIC};
use routing::Router;

use crate::backoff::Backoff;
use crate::buffer::Buffer;
use crate::cluster::leadership::Leadership;
use crate::telemetry::Telemetry;

/// How often Kafka's metadata is probed for the routed topics.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a cluster member looks whether it should forward.
const ROLE_CHECK: Duration = Duration::from_millis(100);

/// Stop reading new records; answer once everything in flight settled or
/// the grace period ran out (then whatever is left stays in the buffer).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Drain {
    pub grace: Duration,
}

/// The forwarding thread ended (sent by the thread itself).
#[derive(Message)]
#[rtype(result = "()")]
struct ForwarderExited(Exit);

/// Why a producer could not be built.
#[derive(Debug, thiserror::Error)]
#[error("kafka client settings refused: {0}")]
pub struct ClientSettingsError(String);

/// Builds the librdkafka producer, without connecting. Also how
/// `check-config` validates pass-through properties.
pub fn build_producer(
    properties: &BTreeMap<String, String>,
) -> Result<BaseProducer, ClientSettingsError> {
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
    partitioner: Partitioner,
    limits: Limits,
    buffer: Buffer,
    telemetry: Arc<Telemetry>,
    create_topics: Option<(i32, i32)>,
    backoff: Backoff,
    /// The current forwarding thread's producer and its event channel.
    running: Option<Running>,
    /// In a cluster, only the leader runs a forwarding thread.
    leadership: Arc<Leadership>,
    /// Asked to drain (shutdown): no forwarding thread starts again.
    draining: bool,
    /// A standby's client for the metadata probe (no forwarding thread).
    standby_client: Option<Arc<BaseProducer>>,
}

struct Running {
    /// Weak: the forwarding thread owns the producer, so that it is gone
    /// (queues purged, librdkafka's threads joined) when the thread ends,
    /// and never dropped on the actor thread.
    producer: std::sync::Weak<KafkaProducer>,
    events: Sender<Event>,
}

impl ProducerActor {
    pub fn new(
        config: &KafkaConfig,
        properties: BTreeMap<String, String>,
        router: Router,
        buffer: Buffer,
        telemetry: Arc<Telemetry>,
        backoff: Backoff,
        leadership: Arc<Leadership>,
    ) -> Self {
        ProducerActor {
            properties,
            router,
            partitioner: config.partitioner,
            limits: Limits {
                records: config.max_in_flight,
                bytes: config.max_in_flight_bytes,
                per_partition: config.max_in_flight_per_partition,
            },
            buffer,
            telemetry,
            create_topics: config.create_topics.then_some((
                config.create_topics_partitions,
                config.create_topics_replication_factor,
            )),
            backoff,
            running: None,
            leadership,
            draining: false,
            standby_client: None,
        }
    }

    /// Builds a producer and starts a forwarding thread reading the
    /// buffer from its start.
    fn start_forwarder(&mut self, ctx: &mut Context<Self>) -> Result<(), ClientSettingsError> {
        let (events, receiver) = std::sync::mpsc::channel();
        let producer: KafkaProducer = client_config(&self.properties)
            .create_with_context(DeliveryContext::new(events.clone(), self.telemetry.clone()))
            .map_err(|e| ClientSettingsError(e.to_string()))?;
        let producer = Arc::new(producer);
        // The buffer wakes the thread after appends (once per burst: the
        // thread re-arms the watch before each read). Registered before
        // the thread's first read, so no append falls between the two.
        let wake = events.clone();
        let appended = self.buffer.wake_on_append(move || {
            let _ = wake.send(Event::Wake);
        });
        let forwarder = Forwarder::new(
            producer.clone(),
            receiver,
            appended,
            self.buffer.clone(),
            self.telemetry.clone(),
            self.router.clone(),
            self.partitioner,
            self.limits,
            self.backoff.clone(),
            self.leadership.clone(),
        );
        let me = ctx.address();
        let leadership = self.leadership.clone();
        leadership.forwarder_running_is(true);
        std::thread::Builder::new()
            .name("kafka-forwarder".into())
            .spawn(move || {
                let exit = forwarder.run();
                leadership.forwarder_running_is(false);
                // The producer goes with the thread (dropping it purges and
                // joins librdkafka's threads), before a new one may start:
                // no record of this loop is delivered after the next began.
                me.do_send(ForwarderExited(exit));
            })
            .map_err(|e| ClientSettingsError(format!("cannot start the forwarding thread: {e}")))?;
        self.running = Some(Running {
            producer: Arc::downgrade(&producer),
            events,
        });
        Ok(())
    }

    fn probe(&mut self, ctx: &mut Context<Self>) {
        // The forwarding thread's client, or (a standby's) one of its own.
        type Fetch =
            Box<dyn Fn(&str) -> rdkafka::error::KafkaResult<rdkafka::metadata::Metadata> + Send>;
        let (fetch, events): (Fetch, Option<Sender<Event>>) = match &self.running {
            Some(running) => {
                let Some(producer) = running.producer.upgrade() else {
                    return;
                };
                (
                    Box::new(move |topic| {
                        producer.client().fetch_metadata(Some(topic), PROBE_TIMEOUT)
                    }),
                    Some(running.events.clone()),
                )
            }
            None if self.leadership.is_clustered() => {
                if self.standby_client.is_none() {
                    match build_producer(&self.properties) {
                        Ok(client) => self.standby_client = Some(Arc::new(client)),
                        Err(e) => {
                            self.telemetry.kafka.reachable(Err(e.to_string()));
                            return;
                        }
                    }
                }
                let client = self.standby_client.clone().expect("built above");
                (
                    Box::new(move |topic| {
                        client.client().fetch_metadata(Some(topic), PROBE_TIMEOUT)
                    }),
                    None,
                )
            }
            None => return,
        };
        let topics = self.router.topics();
        let probe = actix_rt::task::spawn_blocking(move || {
            // One request per routed topic: never the whole cluster's list.
            let mut view = BTreeMap::new();
            let mut reached = false;
            let mut last_error = None;
            for topic in topics {
                match fetch(&topic) {
                    Ok(metadata) => {
                        reached = true;
                        let state = match metadata.topics().iter().find(|t| t.name() == topic) {
                            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                                Ok(t.partitions().len() as i32)
                            }
                            Some(t) => Err(match t.error() {
                                // Reported under the topic's name (/readyz, /status).
                                Some(e) => format!("{:?} (create it, or set kafka.create_topics); its events wait in the buffer", RDKafkaErrorCode::from(e)),
                                None => "it has no partitions; its events wait in the buffer".to_owned(),
                            }),
                            None => Err("it does not exist (create it, or set kafka.create_topics); its events wait in the buffer".to_owned()),
                        };
                        view.insert(topic, state);
                    }
                    Err(e) => {
                        // The cluster did not answer: asking for the other
                        // topics would only wait as long again (and hold
                        // up a shutdown).
                        last_error = Some(format!("metadata request failed: {e}"));
                        break;
                    }
                }
            }
            if let Some(events) = events {
                let _ = events.send(Event::Metadata(view));
            }
            match (reached, last_error) {
                (false, Some(e)) => Err(e),
                _ => Ok(()),
            }
        });
        ctx.spawn(probe.into_actor(self).map(|result, act, _| {
            let reachable = match result {
                Ok(r) => r,
                Err(e) => Err(format!("probe task failed: {e}")),
            };
            act.telemetry.kafka.reachable(reachable);
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

    /// Starts the forwarding thread when this member leads and none runs;
    /// stops it when another leads.
    fn follow_role(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        let leads = self.leadership.is_leader();
        if leads && self.running.is_none() && !self.leadership.forwarder_running() {
            if let Err(e) = self.start_forwarder(ctx) {
                self.telemetry.kafka.reachable(Err(e.to_string()));
            } else {
                self.probe(ctx);
            }
        } else if !leads && self.running.is_some() {
            self.stop_forwarder();
        }
    }

    fn stop_forwarder(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.events.send(Event::Stop);
        }
    }
}

impl Actor for ProducerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.telemetry.alive("producer");
        if self.leadership.is_clustered() {
            // A member forwards only while it leads: the coordinator
            // decides, this follows.
            ctx.run_interval(ROLE_CHECK, |act, ctx| act.follow_role(ctx));
        } else if let Err(e) = self.start_forwarder(ctx) {
            // Properties were checked at start-up; this is not expected
            // to pass with time, but the supervisor's restart is the
            // only way to try again.
            self.telemetry.kafka.reachable(Err(e.to_string()));
            ctx.run_later(Duration::from_secs(5), |_, ctx| ctx.stop());
            return;
        }
        ctx.run_interval(PROBE_INTERVAL, |act, ctx| act.probe(ctx));
        if self.create_topics.is_some() {
            self.create_missing_topics(ctx);
        } else {
            self.probe(ctx);
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.stop_forwarder();
    }
}

impl Supervised for ProducerActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.stop_forwarder();
    }
}

impl Handler<ForwarderExited> for ProducerActor {
    type Result = ();

    fn handle(&mut self, ForwarderExited(exit): ForwarderExited, ctx: &mut Context<Self>) {
        match exit {
            Exit::Stopped => {
                if self.leadership.is_clustered() {
                    self.running = None;
                }
            }
            Exit::Fatal(reason) => {
                // Restart once, after one backoff step: the supervisor
                // builds a new producer that reads the buffer from its
                // start, so every unacknowledged record goes again in order.
                let delay = self.backoff.next_delay();
                self.telemetry.kafka.producer_fatal(&reason, delay);
                self.running = None;
                ctx.run_later(delay, |_, ctx| ctx.stop());
            }
            Exit::Configuration(reason) => {
                // Restarting cannot fix settings: stop forwarding and say
                // so on /healthz, so the process supervisor (and whoever
                // watches it) sees it.
                self.running = None;
                self.telemetry.kafka.producer_misconfigured(&reason);
            }
        }
    }
}

impl Handler<Drain> for ProducerActor {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, Drain { grace }: Drain, _: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        let (done, settled) = oneshot::channel();
        let sent = self.running.as_ref().is_some_and(|running| {
            running
                .events
                .send(Event::Drain {
                    deadline: std::time::Instant::now() + grace,
                    done,
                })
                .is_ok()
        });
        Box::pin(async move {
            if !sent {
                return true;
            }
            // The thread answers by the deadline; the margin covers a read
            // or removal that was under way.
            actix_rt::time::timeout(grace + Duration::from_secs(2), settled)
                .await
                .is_ok_and(|r| r.unwrap_or(false))
        })
    }
}

/// Test hook: makes librdkafka raise a fatal error, as a broker fencing
/// the producer would.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "bool")]
struct InjectFatal;

#[cfg(test)]
impl Handler<InjectFatal> for ProducerActor {
    type Result = bool;

    fn handle(&mut self, _: InjectFatal, _: &mut Context<Self>) -> bool {
        let Some(producer) = self.running.as_ref().and_then(|r| r.producer.upgrade()) else {
            return false;
        };
        let reason = std::ffi::CString::new("injected by a test").expect("no NUL");
        // SAFETY: the client pointer is valid while `producer` is held.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                producer.client().native_ptr(),
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            );
        }
        true
    }
}

#[cfg(test)]
mod tests;
