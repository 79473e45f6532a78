//! The connection actor: one per notification channel's worth of topics.
//! It creates the channel, connects its WebSocket, subscribes the topics,
//! answers the protocol, watches for silence, and moves to a new channel
//! before the old one ends. Every notification it receives is appended to
//! the buffer before anything else, then the producer is woken.
//!
//! Genesys replays nothing: a frame the service wrote to our socket and we
//! did not keep is gone. So:
//! - **Planned moves are make-before-break.** A rollover (channel or token
//!   expiry near), `socket_closing` or a lost channel sets up a new channel,
//!   socket and subscription *beside* the live socket; only then is the old
//!   socket closed, and it is still read until the service closes it. The
//!   copies both sockets receive meanwhile are removed by [`overlap`].
//! - **A pause is not a death** ([`silence`]): silence counts only over
//!   time the actor could read, and a socket replaced for silence is still
//!   drained of what it holds.
//! - **Channels are reused, not piled up.** A failed attempt keeps its
//!   channel for the next one unless the service says it is gone (`HEAD`
//!   404, a lost-channel notice); a channel we moved away from is emptied
//!   of its topics and left to expire. So a connection holds at most two
//!   channels: the live one and the one being set up.
//! - **Every retry backs off**, planned moves included when they repeat
//!   (a service sending `socket_closing` in a loop).
//!
//! Life of a connection, file by file:
//! 1. [`establish`]: token → channel (reused while alive and not due, else
//!    created) → socket → `PUT subscriptions`, and the subscribed socket
//!    becoming the live one. Connecting before subscribing means no event
//!    is sent to a channel nobody listens on.
//! 2. open: pings every `ping_interval`, a watchdog every quarter of
//!    `heartbeat_timeout` (silence, stalls, channel and token expiry);
//!    [`inbound`] reads every frame, [`subscribe`] keeps the open
//!    channel's topics in step with [`SetTopics`].
//! 3. [`moves`]: a planned move runs `establish` beside the live socket; a
//!    failure (close, error, silence) loses the socket and runs it after a
//!    backoff delay. Every attempt's schedule is decided there. The time
//!    without any subscribed socket is a gap, counted, logged and recorded
//!    in the buffer ([`crate::buffer::GapRecord`]) with its bounds and
//!    topics; so is the time the bridge was not running (from the previous
//!    run's `last_alive` to the first subscribed socket) and a gap still
//!    open at shutdown.
//! 4. [`retired`]: a socket left behind is closed politely and read out;
//!    its channel is emptied of its topics.
//!
//! Beside them: [`channel`] (the held channel and when to leave it),
//! [`overlap`] (the duplicate window), [`silence`] (stall-aware silence),
//! [`slots`] (the 20-channel budget).

pub mod channel;
mod establish;
mod inbound;
mod moves;
pub mod overlap;
mod retired;
mod silence;
pub mod slots;
mod subscribe;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::io::{SinkWrite, WriteHandler};
use actix::prelude::*;
use awc::ws;
use bytes::BytesMut;
use futures_util::stream::SplitSink;

use crate::backoff::Backoff;
use crate::buffer::{Buffer, GapRecord};
use crate::genesys::api::GenesysApi;
use crate::telemetry::{ConnectionState, Telemetry, LIVENESS_INTERVAL};
use crate::token::TokenActor;
use channel::HeldChannel;
use establish::Setup;
use moves::Schedule;
use overlap::Overlap;
use retired::Retired;
use silence::SilenceClock;
use subscribe::Subscription;

type WsSink = SplitSink<actix_codec::Framed<awc::BoxedSocket, ws::Codec>, ws::Message>;

/// Sent to the producer after events were buffered.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct EventsBuffered;

/// The planner's topic list for this connection's channel. Applied to the
/// open channel with subscription calls (no reconnect); a channel set up
/// later uses it from the start.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetTopics(pub Arc<Vec<String>>);

/// Closes the sockets and stops reconnecting (shutdown); answered once
/// they are read out.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

/// Timing and limits of a connection.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub ping_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub rollover_margin: Duration,
    pub handshake_timeout: Duration,
    pub max_frame_bytes: usize,
    pub ignore_errors: bool,
    /// Shared by every connection of the bridge (one OAuth client).
    pub slots: Arc<slots::ChannelSlots>,
}

/// Longest wait on shutdown for the sockets to be closed and read out.
pub const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Why the gap of a restart after a stop or crash is open.
pub const NOT_RUNNING: &str = "bridge not running";

/// One WebSocket and what belongs to it alone.
struct Socket {
    id: u64,
    /// The channel it is connected to (never logged whole: the id grants
    /// access to the channel's events).
    channel_id: String,
    sink: SinkWrite<ws::Message, WsSink>,
    stream: SpawnHandle,
    /// A text message arriving in fragments on this socket.
    partial: Option<BytesMut>,
    /// Its place among the connected channels, given back when it ends.
    _slot: slots::Slot,
}

/// The live socket: the one whose channel is subscribed and watched.
struct Current {
    socket: Socket,
    channel: HeldChannel,
    /// The service said the channel is gone: never reuse it.
    channel_gone: bool,
    silence: SilenceClock,
    /// Wall time of the last frame this socket delivered (or of its
    /// subscription): if it is lost, the gap starts here, since a socket
    /// can be dead for a while before we learn it (a silent drop, a
    /// heartbeat timeout).
    last_frame_wall: SystemTime,
    /// Its pings, watchdog, stability and expiry timers.
    timers: Vec<SpawnHandle>,
}

/// The start of a time without any subscribed socket.
struct Gap {
    since_wall: SystemTime,
    reason: String,
    /// The topics the channel had subscribed: what the gap misses.
    topics: Arc<Vec<String>>,
}

impl Gap {
    /// The record of this gap ending now.
    fn record(&self, index: usize, open: bool) -> GapRecord {
        GapRecord::new(
            index,
            self.since_wall,
            SystemTime::now(),
            &self.reason,
            open,
            &self.topics,
        )
    }
}

pub struct ConnectionActor {
    index: usize,
    /// The planner's list (the latest [`SetTopics`]).
    topics: Arc<Vec<String>>,
    settings: ConnectionSettings,
    api: GenesysApi,
    tokens: Addr<TokenActor>,
    buffer: Buffer,
    producer: Recipient<EventsBuffered>,
    telemetry: Arc<Telemetry>,
    /// The live socket, if any.
    current: Option<Current>,
    /// Sockets we left, read until they end ([`retired`]), by socket id.
    retired: HashMap<u64, Retired>,
    /// The attempt under way and the channel it may reuse ([`establish`]).
    setup: Setup,
    /// When the next attempt runs, and the backoff ([`moves`]).
    schedule: Schedule,
    /// The open channel's subscription and its updates ([`subscribe`]).
    subscription: Subscription,
    overlap: Overlap,
    gap: Option<Gap>,
    /// Set by [`Close`]: no attempt after it. Its waiters are answered
    /// once no socket is left to read.
    shutdown: Option<Vec<tokio::sync::oneshot::Sender<()>>>,
}

impl ConnectionActor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        topics: Vec<String>,
        settings: ConnectionSettings,
        api: GenesysApi,
        tokens: Addr<TokenActor>,
        buffer: Buffer,
        producer: Recipient<EventsBuffered>,
        telemetry: Arc<Telemetry>,
        backoff: Backoff,
    ) -> Self {
        ConnectionActor {
            index,
            topics: Arc::new(topics),
            settings,
            api,
            tokens,
            buffer,
            producer,
            telemetry,
            current: None,
            retired: HashMap::new(),
            setup: Setup::default(),
            schedule: Schedule::new(backoff),
            subscription: Subscription::default(),
            overlap: Overlap::default(),
            gap: None,
            shutdown: None,
        }
    }

    /// The bridge was not running since `since` (the previous run's
    /// `last_alive`): a gap open from then until the first subscribed
    /// socket.
    pub fn with_downtime(mut self, since: Option<SystemTime>) -> Self {
        if let Some(since_wall) = since {
            self.gap = Some(Gap {
                since_wall,
                reason: NOT_RUNNING.to_owned(),
                topics: self.topics.clone(),
            });
        }
        self
    }

    /// Shutting down: no attempt, move or subscription update after this.
    fn closing(&self) -> bool {
        self.shutdown.is_some()
    }

    fn phase(&self, phase: &'static str, detail: Option<String>) {
        self.telemetry.connection_phase(
            self.index,
            ConnectionState {
                phase,
                channel_id: self.current.as_ref().map(|c| c.channel.channel.id.clone()),
                topics: self.topics.len(),
                rejected_topics: 0,
                detail,
            },
        );
    }

    fn current_channel_id(&self) -> Option<&String> {
        self.current.as_ref().map(|c| &c.channel.channel.id)
    }

    fn send_text(&mut self, text: &str) {
        if let Some(current) = &mut self.current {
            if current
                .socket
                .sink
                .write(ws::Message::Text(text.to_owned().into()))
                .is_err()
            {
                tracing::debug!(connection = self.index, "socket sink closed; write dropped");
            }
        }
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let name = liveness_name(self.index);
        self.telemetry.alive(name);
        ctx.run_interval(LIVENESS_INTERVAL, move |act, _| act.telemetry.alive(name));
        self.establish(ctx);
    }
}

impl Supervised for ConnectionActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // The context's futures (streams, timers, attempts) are gone.
        if let Some(current) = self.current.take() {
            if !self.closing() {
                let topics = self
                    .subscription
                    .subscribed
                    .clone()
                    .unwrap_or_else(|| self.topics.clone());
                self.gap.get_or_insert_with(|| Gap {
                    since_wall: current.last_frame_wall.min(SystemTime::now()),
                    reason: format!(
                        "connection actor restarted (socket on {})",
                        crate::telemetry::channel_label(&current.channel.channel.id)
                    ),
                    topics,
                });
            }
        }
        self.retired.clear();
        self.setup.restart();
        self.schedule.restart();
        self.subscription.restart();
        self.overlap = Overlap::default();
    }
}

impl WriteHandler<actix_http::ws::ProtocolError> for ConnectionActor {
    fn error(&mut self, err: actix_http::ws::ProtocolError, _: &mut Context<Self>) -> Running {
        tracing::warn!(connection = self.index, error = %err, "socket write failed");
        // The read side notices the broken socket and reconnects.
        Running::Continue
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<SetTopics> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, SetTopics(topics): SetTopics, ctx: &mut Context<Self>) {
        self.topics = topics;
        self.apply_topics(ctx);
    }
}

impl Handler<Close> for ConnectionActor {
    /// Resolves once every socket was closed and read out (frames the
    /// service sent before it saw our close are ours to keep), or after
    /// [`CLOSE_WAIT`].
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shutdown.get_or_insert_with(Vec::new).push(tx);
        self.cancel_scheduled(ctx);
        // A gap still open is recorded as such (its end: now); the write is
        // awaited below, before the final flush.
        let recorded = self.gap.take().map(|gap| {
            let record = gap.record(self.index, true);
            self.telemetry.socket_gap(&record);
            self.buffer.record_gap(record, gap.topics)
        });
        self.shut_current(ctx);
        self.phase("closed", Some("shutting down".into()));
        self.answer_closed();
        Box::pin(async move {
            if let Some(recorded) = recorded {
                let _ = actix_rt::time::timeout(CLOSE_WAIT, recorded).await;
            }
            let _ = actix_rt::time::timeout(CLOSE_WAIT, rx).await;
        })
    }
}

fn liveness_name(index: usize) -> &'static str {
    // Liveness names are &'static: there are at most a few dozen channels,
    // and each name is leaked once per actor index, not per restart.
    use std::sync::Mutex;
    static NAMES: Mutex<Option<HashMap<usize, &'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    names
        .get_or_insert_with(HashMap::new)
        .entry(index)
        .or_insert_with(|| Box::leak(format!("connection-{index}").into_boxed_str()))
}
