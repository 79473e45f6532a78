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
//! Life of a connection:
//! 1. `establish`: token → channel (reused while alive and not due, else
//!    created) → socket → `PUT subscriptions`. Connecting before
//!    subscribing means no event is sent to a channel nobody listens on.
//! 2. open: pings every `ping_interval`, a watchdog every quarter of
//!    `heartbeat_timeout` (silence, stalls, channel and token expiry).
//! 3. a planned move runs `establish` beside the live socket; a failure
//!    (close, error, silence) retires the socket and runs it after a
//!    backoff delay. The time without any subscribed socket is a gap,
//!    counted, logged and recorded in the buffer ([`crate::buffer::GapRecord`])
//!    with its bounds and topics; so is the time the bridge was not running
//!    (from the previous run's `last_alive` to the first subscribed socket)
//!    and a gap still open at shutdown.

pub mod channel;
pub mod overlap;
mod silence;
pub mod slots;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::io::{SinkWrite, WriteHandler};
use actix::prelude::*;
use awc::ws;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, StreamExt};

use crate::backoff::Backoff;
use crate::buffer::{field_fits, Buffer, GapRecord};
use crate::genesys::api::{GenesysApi, TopicOutcome};
use crate::genesys::protocol::{self, Inbound, SystemEvent};
use crate::secret::Secret;
use crate::telemetry::{ConnectionState, Telemetry, LIVENESS_INTERVAL};
use crate::token::{rest, ExpiryOf, GetToken, RenewToken, TokenActor, TokenRevoked};
use channel::HeldChannel;
use overlap::Overlap;
use silence::{SilenceClock, Verdict};

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

/// The socket whose channel is subscribed and watched.
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
    timers: Vec<SpawnHandle>,
}

/// A socket we left and still read: frames the service sent before it
/// saw our close (or before we judged the socket) are still ours to keep.
struct Retired {
    socket: Socket,
    since: Instant,
    last_frame: Instant,
    /// Idle this long (while the actor could read) ends it.
    idle_limit: Duration,
    /// The last run of its check: a late one means the actor was stalled,
    /// and idleness restarts.
    last_check: Instant,
    check: SpawnHandle,
}

/// Why a socket is retired, which decides how long it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retirement {
    /// Replaced by a subscribed socket (make-before-break). It stays
    /// subscribed for [`MOVE_SETTLE`] more, as the new subscription may take
    /// effect on the service a little after the REST reply; then its
    /// channel is emptied and it is sent a close frame.
    Moved,
    /// Taken for dead (silence): whatever it still yields is read.
    Failed,
    /// Shutdown: closed at once, read until the service closes it.
    Shutdown,
}

impl Retirement {
    fn idle_limit(self) -> Duration {
        match self {
            // A healthy socket we closed: the service answers the close;
            // idleness is only the fallback for one that never does.
            Retirement::Moved => RETIRED_IDLE_MOVED,
            Retirement::Failed | Retirement::Shutdown => RETIRED_IDLE,
        }
    }
}

/// One item of a socket's stream, tagged with the socket's id; `None`
/// marks the end of the stream.
type Tagged = (
    u64,
    Option<Result<ws::Frame, actix_http::ws::ProtocolError>>,
);

/// A socket open this long resets the reconnect backoff, and planned moves
/// further apart than this are not a loop.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// A retired socket is read until the service closes it, it has been idle
/// this long (30 s for a socket left by a planned move), or
/// [`RETIRED_MAX`] has passed.
const RETIRED_IDLE: Duration = Duration::from_secs(5);
const RETIRED_IDLE_MOVED: Duration = Duration::from_secs(30);
const RETIRED_MAX: Duration = Duration::from_secs(90);
/// How long a replaced socket stays subscribed beside its successor.
const MOVE_SETTLE: Duration = Duration::from_secs(2);
/// Longest wait on shutdown for the sockets to be closed and read out.
pub const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// `subscription_changed` notices re-apply the topic list at most this
/// often (our own updates may cause them).
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(60);

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

/// Why the gap of a restart after a stop or crash is open.
pub const NOT_RUNNING: &str = "bridge not running";

pub struct ConnectionActor {
    index: usize,
    topics: Arc<Vec<String>>,
    settings: ConnectionSettings,
    api: GenesysApi,
    tokens: Addr<TokenActor>,
    buffer: Buffer,
    producer: Recipient<EventsBuffered>,
    telemetry: Arc<Telemetry>,
    backoff: Backoff,
    current: Option<Current>,
    retired: HashMap<u64, Retired>,
    /// A channel the next attempt should reuse (created by an attempt that
    /// failed later, or the channel of a socket that failed).
    candidate: Option<HeldChannel>,
    next_socket_id: u64,
    /// Bumped when an attempt starts and on restart: a late result of an
    /// abandoned attempt is recognised and dropped.
    attempt: u64,
    attempting: bool,
    /// The next attempt, when one is scheduled.
    scheduled: Option<SpawnHandle>,
    last_planned_move: Option<Instant>,
    overlap: Overlap,
    gap: Option<Gap>,
    closing: bool,
    /// The topic list the open channel was last subscribed with (None: no
    /// open channel); differs from `topics` while an update is pending.
    subscribed: Option<Arc<Vec<String>>>,
    /// A subscription update is in flight: later ones wait for it.
    updating: bool,
    /// The next update replaces the whole list (`PUT`), whatever changed.
    resubscribe: bool,
    last_resubscribe: Option<Instant>,
    /// Answered once, on shutdown, when no socket is left to read.
    closed: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// What a successful `establish` produces.
struct Established {
    channel: HeldChannel,
    framed: actix_codec::Framed<awc::BoxedSocket, ws::Codec>,
    outcomes: Vec<TopicOutcome>,
    /// The topic list the channel was subscribed with.
    topics: Arc<Vec<String>>,
    slot: slots::Slot,
}

#[derive(Debug, thiserror::Error)]
enum EstablishError {
    #[error(transparent)]
    Call(#[from] rest::CallError),
    #[error("socket handshake failed: {0}")]
    Handshake(String),
    #[error("socket handshake timed out")]
    HandshakeTimeout,
    #[error("the token has not been renewed yet; the channel made with it would end as soon")]
    TokenNotRenewed,
    #[error("the token actor is gone")]
    TokenActorGone,
    #[error("all {0} channels the service allows are connected; waiting for one to be released")]
    NoChannelSlot(usize),
}

impl EstablishError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            EstablishError::Call(rest::CallError::Api(api)) => api.retry_after(),
            _ => None,
        }
    }
}

/// What an attempt needs to know about the move it makes.
struct AttemptPlan {
    /// A channel to reuse if the service still has it.
    reuse: Option<HeldChannel>,
    /// Only a token expiring later than this may create the channel.
    token_after: Option<Instant>,
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
            backoff,
            current: None,
            retired: HashMap::new(),
            candidate: None,
            next_socket_id: 0,
            attempt: 0,
            attempting: false,
            scheduled: None,
            last_planned_move: None,
            overlap: Overlap::default(),
            gap: None,
            closing: false,
            subscribed: None,
            updating: false,
            resubscribe: false,
            last_resubscribe: None,
            closed: Vec::new(),
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

    /// Runs an attempt after `delay`, replacing any scheduled one.
    fn schedule_attempt(&mut self, ctx: &mut Context<Self>, delay: Duration) {
        if let Some(previous) = self.scheduled.take() {
            ctx.cancel_future(previous);
        }
        if delay.is_zero() {
            self.establish(ctx);
        } else {
            self.scheduled = Some(ctx.run_later(delay, |act, ctx| {
                act.scheduled = None;
                act.establish(ctx);
            }));
        }
    }

    /// Sets up a channel, socket and subscription: beside the live socket
    /// when there is one (a planned move), else to replace a lost one.
    fn establish(&mut self, ctx: &mut Context<Self>) {
        if self.closing || self.attempting {
            return;
        }
        if self.current.is_none() {
            self.phase("connecting", None);
        }
        self.attempting = true;
        self.attempt += 1;
        let attempt = self.attempt;
        if self.current.is_some() || !self.retired.is_empty() {
            self.overlap.begin(Instant::now());
        }
        let plan = AttemptPlan {
            reuse: self.candidate.take().filter(HeldChannel::reusable),
            token_after: self
                .current
                .as_ref()
                .filter(|c| {
                    c.channel.due(SystemTime::now(), Instant::now())
                        == Some(channel::Due::TokenExpiry)
                })
                .and_then(|c| c.channel.token_expires),
        };
        let run = attempt_setup(
            self.index,
            plan,
            self.api.clone(),
            self.tokens.clone(),
            self.telemetry.clone(),
            self.backoff.clone(),
            self.topics.clone(),
            self.settings.clone(),
        );
        ctx.spawn(
            run.into_actor(self)
                .map(move |(result, leftover), act, ctx| {
                    if act.attempt != attempt {
                        return;
                    }
                    act.attempting = false;
                    if act.closing {
                        // A socket subscribed meanwhile may already hold
                        // frames: read it out like the others.
                        if let Ok(established) = result {
                            act.opened(established, ctx);
                            act.shut_current(ctx);
                        }
                        act.settle_overlap();
                        act.answer_closed();
                        return;
                    }
                    match result {
                        Ok(established) => act.opened(established, ctx),
                        Err(error) => {
                            act.candidate = leftover;
                            act.attempt_failed(ctx, &error);
                        }
                    }
                    act.settle_overlap();
                }),
        );
    }

    fn attempt_failed(&mut self, ctx: &mut Context<Self>, error: &EstablishError) {
        let delay = error
            .retry_after()
            .unwrap_or_else(|| self.backoff.next_delay());
        let reason = format!("setup failed: {error}");
        if self.current.is_some() {
            // The live socket keeps delivering meanwhile.
            self.telemetry.move_failed(self.index, &reason, delay);
        } else {
            self.telemetry.reconnecting(
                self.index,
                self.candidate.as_ref().map(|c| c.channel.id.as_str()),
                &reason,
                delay,
            );
        }
        self.schedule_attempt(ctx, delay);
    }

    fn opened(&mut self, established: Established, ctx: &mut Context<Self>) {
        let Established {
            channel,
            framed,
            outcomes,
            topics,
            slot,
        } = established;
        let rejected: Vec<&TopicOutcome> = outcomes.iter().filter(|o| o.is_rejected()).collect();
        if let Some(first) = rejected.first() {
            tracing::warn!(
                connection = self.index,
                rejected = rejected.len(),
                total = topics.len(),
                example = %first.id,
                reason = first.rejection_reason.as_deref().unwrap_or("no reason given"),
                "subscribed with refusals (ignore_errors is on)"
            );
        }
        let (sink, stream) = framed.split();
        self.next_socket_id += 1;
        let id = self.next_socket_id;
        let tagged = stream
            .map(move |item| (id, Some(item)))
            .chain(futures_util::stream::once(async move { (id, None) }));
        let stream = ctx.add_stream(tagged);
        let tick = self.settings.heartbeat_timeout / 4;
        let mut timers = vec![
            ctx.run_interval(self.settings.ping_interval, |act, _| {
                act.send_text(protocol::PING)
            }),
            ctx.run_interval(tick, move |act, ctx| act.watchdog(id, ctx)),
            // Only a connection that stays up counts as a success: one that
            // fails again at once keeps backing off.
            ctx.run_later(STABLE_AFTER, |act, _| act.backoff.reset()),
        ];
        // The watchdog checks expiry too; this catches it on time.
        timers.push(
            ctx.run_later(channel.until_due(Instant::now()), move |act, ctx| {
                act.check_due(id, ctx)
            }),
        );
        self.telemetry.connection_open(
            self.index,
            &channel.channel.id,
            topics.len(),
            rejected.len(),
        );
        let socket = Socket {
            id,
            channel_id: channel.channel.id.clone(),
            sink: SinkWrite::new(sink, ctx),
            stream,
            partial: None,
            _slot: slot,
        };
        let replaced = self.current.replace(Current {
            socket,
            channel,
            channel_gone: false,
            silence: SilenceClock::new(tick, Instant::now()),
            last_frame_wall: SystemTime::now(),
            timers,
        });
        if let Some(old) = replaced {
            // Make-before-break: the new socket is subscribed, so the old
            // one may go (after a settling moment). Its channel is emptied
            // and left to expire.
            for timer in old.timers {
                ctx.cancel_future(timer);
            }
            let empty =
                !old.channel_gone && Some(&old.socket.channel_id) != self.current_channel_id();
            self.retire(old.socket, Retirement::Moved, empty, ctx);
        }
        // A channel kept for reuse that this attempt did not use would
        // stay subscribed, sending us nothing and costing a channel.
        if let Some(unused) = self.candidate.take() {
            if Some(&unused.channel.id) != self.current_channel_id() {
                self.empty_channel(unused.channel.id, ctx);
            }
        }
        if let Some(gap) = self.gap.take() {
            let record = gap.record(self.index, false);
            self.telemetry.socket_gap(&record);
            // Off this thread: sled writes on the blocking pool.
            drop(self.buffer.record_gap(record, gap.topics));
        }
        self.subscribed = Some(topics);
        self.apply_topics(ctx);
    }

    fn current_channel_id(&self) -> Option<&String> {
        self.current.as_ref().map(|c| &c.channel.channel.id)
    }

    /// Best effort: a channel we left keeps living until it expires (there
    /// is no delete); without topics it costs the service nothing and
    /// sends us nothing.
    fn empty_channel(&self, channel_id: String, ctx: &mut Context<Self>) {
        let api = self.api.clone();
        let tokens = self.tokens.clone();
        let telemetry = self.telemetry.clone();
        let backoff = self.backoff.clone();
        let index = self.index;
        ctx.spawn(
            async move {
                let result = rest::call("unsubscribe old channel", &tokens, &telemetry, &backoff, |t| {
                    let api = api.clone();
                    let id = channel_id.clone();
                    async move { api.delete_subscriptions(&t, &id).await }
                })
                .await;
                match result {
                    Ok(_) => {}
                    // Ended with its token, or evicted: nothing to empty.
                    Err(rest::CallError::Api(crate::genesys::api::ApiError::Status {
                        status: 404,
                        ..
                    })) => {
                        tracing::debug!(connection = index, "the channel we left is already gone");
                    }
                    Err(e) => {
                        tracing::info!(connection = index, error = %e, "could not empty the channel we left; it expires by itself");
                    }
                }
            }
            .into_actor(self),
        );
    }

    /// The watchdog's periodic check of the socket `id`.
    fn watchdog(&mut self, id: u64, ctx: &mut Context<Self>) {
        let Some(current) = self.current.as_mut().filter(|c| c.socket.id == id) else {
            return;
        };
        match current
            .silence
            .check(Instant::now(), self.settings.heartbeat_timeout)
        {
            Verdict::Alive => {}
            Verdict::Resumed { stalled_for } => {
                self.telemetry.stall_detected(self.index, stalled_for);
                // A ping answered proves the socket alive sooner than the
                // next heartbeat would.
                self.send_text(protocol::PING);
            }
            Verdict::Silent(silent) => {
                self.current_lost(
                    ctx,
                    &format!("no heartbeat for {}s (half-open socket)", silent.as_secs()),
                    true,
                );
                return;
            }
        }
        self.check_due(id, ctx);
    }

    /// Moves to a new channel when the current one is due (its own or its
    /// token's expiry is near).
    fn check_due(&mut self, id: u64, ctx: &mut Context<Self>) {
        let Some(current) = self.current.as_ref().filter(|c| c.socket.id == id) else {
            return;
        };
        if self.attempting || self.scheduled.is_some() {
            return;
        }
        if let Some(due) = current.channel.due(SystemTime::now(), Instant::now()) {
            self.plan_move(ctx, due.reason(), false);
        }
    }

    /// A move to a new channel while the current socket keeps delivering.
    /// At once, unless moves repeat (then with backoff) or `backoff` is set
    /// (the service took the channel away: two bridges sharing an OAuth
    /// client must not take the topics from each other in a tight loop).
    fn plan_move(&mut self, ctx: &mut Context<Self>, reason: &str, backoff: bool) {
        if self.closing {
            return;
        }
        let repeated = self
            .last_planned_move
            .is_some_and(|at| at.elapsed() < STABLE_AFTER);
        self.last_planned_move = Some(Instant::now());
        let delay = if backoff || repeated {
            self.backoff.next_delay()
        } else {
            Duration::ZERO
        };
        self.telemetry.planned_move(self.index, reason, delay);
        // Whatever channel was kept for reuse belongs to the old plan.
        if let Some(unused) = self.candidate.take() {
            if Some(&unused.channel.id) != self.current_channel_id() {
                self.empty_channel(unused.channel.id, ctx);
            }
        }
        if self.attempting {
            // The attempt under way already makes a new channel or socket.
            return;
        }
        self.schedule_attempt(ctx, delay);
    }

    /// The current socket failed: keep reading it if it may still hold
    /// frames (`drain`), and set up another after a backoff delay.
    fn current_lost(&mut self, ctx: &mut Context<Self>, reason: &str, drain: bool) {
        let Some(current) = self.current.take() else {
            return;
        };
        for timer in current.timers {
            ctx.cancel_future(timer);
        }
        let subscribed = self.subscribed.take();
        if !current.channel_gone {
            if current.channel.reusable() && self.candidate.is_none() {
                self.candidate = Some(current.channel);
            } else if self
                .candidate
                .as_ref()
                .is_some_and(|c| c.channel.id != current.channel.channel.id)
            {
                // One channel is kept for the next attempt; this one is
                // left, so it is emptied.
                self.empty_channel(current.channel.channel.id.clone(), ctx);
            }
        }
        if drain {
            self.retire(current.socket, Retirement::Failed, false, ctx);
        } else {
            let mut socket = current.socket;
            ctx.cancel_future(socket.stream);
            socket.sink.close();
        }
        if self.closing {
            // Shutdown: the time from here on is the bridge's downtime.
            return;
        }
        let topics = subscribed.unwrap_or_else(|| self.topics.clone());
        let since_wall = current.last_frame_wall.min(SystemTime::now());
        self.gap.get_or_insert_with(|| Gap {
            since_wall,
            reason: reason.to_owned(),
            topics,
        });
        let delay = self.backoff.next_delay();
        self.telemetry.reconnecting(
            self.index,
            self.candidate.as_ref().map(|c| c.channel.id.as_str()),
            reason,
            delay,
        );
        if !self.attempting {
            self.schedule_attempt(ctx, delay);
        }
    }

    /// Closes `socket` politely (at once, or after [`MOVE_SETTLE`] for a
    /// move, emptying its channel first when `empty_channel`) and keeps
    /// reading it until the service closes it too, it stays idle (time
    /// the actor could read) for its retirement's limit, or
    /// [`RETIRED_MAX`] has passed.
    fn retire(
        &mut self,
        socket: Socket,
        why: Retirement,
        empty_channel: bool,
        ctx: &mut Context<Self>,
    ) {
        // A message arriving in fragments keeps being assembled: its rest
        // still comes on this socket.
        let id = socket.id;
        let channel_id = socket.channel_id.clone();
        let close = move |act: &mut Self, ctx: &mut Context<Self>| {
            if empty_channel {
                act.empty_channel(channel_id, ctx);
            }
            if let Some(retired) = act.retired.get_mut(&id) {
                let _ = retired
                    .socket
                    .sink
                    .write(ws::Message::Close(Some(ws::CloseCode::Normal.into())));
                retired.last_frame = Instant::now();
            }
        };
        const CHECK_EVERY: Duration = Duration::from_secs(1);
        let check = ctx.run_interval(CHECK_EVERY, move |act, ctx| {
            let Some(retired) = act.retired.get_mut(&id) else {
                return;
            };
            let now = Instant::now();
            let since_check = now.saturating_duration_since(retired.last_check);
            retired.last_check = now;
            if since_check > CHECK_EVERY * 2 {
                // The actor was stalled: what the socket queued meanwhile
                // has not been read yet.
                retired.last_frame = now;
                return;
            }
            if now.saturating_duration_since(retired.last_frame) > retired.idle_limit
                || now.saturating_duration_since(retired.since) > RETIRED_MAX
            {
                act.end_retired(id, ctx);
            }
        });
        let now = Instant::now();
        self.overlap.begin(now);
        self.retired.insert(
            id,
            Retired {
                socket,
                since: now,
                last_frame: now,
                idle_limit: why.idle_limit(),
                last_check: now,
                check,
            },
        );
        if why == Retirement::Moved {
            ctx.run_later(MOVE_SETTLE, close);
        } else {
            close(self, ctx);
        }
    }

    /// Shutdown: the current socket is closed and read out like a
    /// retired one.
    fn shut_current(&mut self, ctx: &mut Context<Self>) {
        if let Some(current) = self.current.take() {
            for timer in current.timers {
                ctx.cancel_future(timer);
            }
            self.retire(current.socket, Retirement::Shutdown, false, ctx);
        }
    }

    /// Answers the shutdown's wait once nothing is left to read.
    fn answer_closed(&mut self) {
        if self.closing && !self.attempting && self.current.is_none() && self.retired.is_empty() {
            for waiter in self.closed.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    fn end_retired(&mut self, id: u64, ctx: &mut Context<Self>) {
        if let Some(mut old) = self.retired.remove(&id) {
            ctx.cancel_future(old.socket.stream);
            ctx.cancel_future(old.check);
            old.socket.sink.close();
        }
        self.settle_overlap();
        self.answer_closed();
    }

    /// Ends the duplicate window once only one socket can deliver.
    fn settle_overlap(&mut self) {
        if self.attempting || !self.retired.is_empty() {
            return;
        }
        if let Some(summary) = self.overlap.end(Instant::now()) {
            self.telemetry.overlap_ended(self.index, summary);
        }
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

    /// Replaces the open channel's whole topic list once more (at most every
    /// [`RESUBSCRIBE_EVERY`]).
    fn resubscribe(&mut self, ctx: &mut Context<Self>) {
        if self
            .last_resubscribe
            .is_some_and(|at| at.elapsed() < RESUBSCRIBE_EVERY)
        {
            return;
        }
        self.last_resubscribe = Some(Instant::now());
        self.resubscribe = true;
        self.apply_topics(ctx);
    }

    /// Brings the open channel's subscriptions to `topics`: additions with
    /// `POST` (refusals are reported, the rest stay), removals with one
    /// `PUT` of the whole list. One update at a time; a failed one is tried
    /// again after a backoff delay, without touching the socket.
    fn apply_topics(&mut self, ctx: &mut Context<Self>) {
        let (Some(subscribed), Some(current)) = (&self.subscribed, &self.current) else {
            return;
        };
        if self.updating
            || self.closing
            || (Arc::ptr_eq(subscribed, &self.topics) && !self.resubscribe)
        {
            return;
        }
        let whole_list = std::mem::take(&mut self.resubscribe);
        let wanted = self.topics.clone();
        let had: std::collections::HashSet<&String> = subscribed.iter().collect();
        let keep: std::collections::HashSet<&String> = wanted.iter().collect();
        let added: Vec<String> = wanted
            .iter()
            .filter(|t| !had.contains(t))
            .cloned()
            .collect();
        let removed = subscribed.iter().filter(|t| !keep.contains(t)).count();
        if added.is_empty() && removed == 0 && !whole_list {
            self.subscribed = Some(wanted);
            return;
        }
        self.updating = true;
        let socket = current.socket.id;
        let channel_id = current.channel.channel.id.clone();
        let api = self.api.clone();
        let tokens = self.tokens.clone();
        let telemetry = self.telemetry.clone();
        let backoff = self.backoff.clone();
        let whole = wanted.clone();
        let update = async move {
            rest::call("update subscriptions", &tokens, &telemetry, &backoff, |t| {
                let api = api.clone();
                let channel_id = channel_id.clone();
                let added = added.clone();
                let whole = whole.clone();
                async move {
                    // ignoreErrors: a topic refused now (a queue deleted
                    // since the listing, a permission withdrawn) must not
                    // cost the channel its other topics.
                    if removed > 0 || whole_list {
                        api.put_subscriptions(&t, &channel_id, &whole, true).await
                    } else {
                        api.post_subscriptions(&t, &channel_id, &added, true).await
                    }
                }
            })
            .await
        };
        ctx.spawn(update.into_actor(self).map(move |result, act, ctx| {
            act.updating = false;
            if act.current.as_ref().map(|c| c.socket.id) != Some(socket) {
                // Another channel took over; it was subscribed with the
                // topics of its own time and is updated on its own.
                act.apply_topics(ctx);
                return;
            }
            match result {
                Ok(outcomes) => {
                    let refused: Vec<&TopicOutcome> =
                        outcomes.iter().filter(|o| o.is_rejected()).collect();
                    let example = refused.first().map(|o| {
                        format!(
                            "{} ({})",
                            o.id,
                            o.rejection_reason.as_deref().unwrap_or("no reason given")
                        )
                    });
                    act.telemetry.subscriptions_updated(
                        act.index,
                        wanted.len(),
                        refused.len(),
                        example.as_deref(),
                    );
                    act.subscribed = Some(wanted);
                    act.apply_topics(ctx);
                }
                Err(e) => {
                    let delay = act.backoff.next_delay();
                    act.telemetry
                        .subscriptions_update_failed(act.index, &e, delay);
                    ctx.run_later(delay, |act, ctx| act.apply_topics(ctx));
                }
            }
        }));
    }

    /// A frame from socket `id`, current or retired.
    fn on_frame(
        &mut self,
        id: u64,
        item: Option<Result<ws::Frame, actix_http::ws::ProtocolError>>,
        ctx: &mut Context<Self>,
    ) {
        let now = Instant::now();
        let is_current = match &mut self.current {
            Some(current) if current.socket.id == id => {
                current.silence.frame(now);
                if matches!(item, Some(Ok(_))) {
                    current.last_frame_wall = SystemTime::now();
                }
                true
            }
            _ => match self.retired.get_mut(&id) {
                Some(retired) => {
                    retired.last_frame = now;
                    false
                }
                // A frame of a socket already given up: its stream was
                // cancelled, this was in flight.
                None => return,
            },
        };
        let frame = match item {
            Some(Ok(frame)) => frame,
            None if is_current => {
                // The stream ended without a close frame: what a proxy
                // dropping an idle connection looks like (1006).
                self.current_lost(ctx, "socket dropped without a close frame (1006)", false);
                return;
            }
            Some(Err(e)) if is_current => {
                // An oversized frame ends here too: the socket cannot be
                // resynchronised after one, so it is replaced.
                self.current_lost(ctx, &format!("socket protocol error: {e}"), false);
                return;
            }
            None | Some(Err(_)) => {
                self.end_retired(id, ctx);
                return;
            }
        };
        match frame {
            ws::Frame::Text(text) => self.on_text(id, is_current, text, ctx),
            ws::Frame::Binary(bytes) => self.reject_frame("binary frame", &bytes),
            ws::Frame::Continuation(item) => {
                if let Some(whole) = self.on_fragment(id, item) {
                    self.on_text(id, is_current, whole, ctx);
                }
            }
            ws::Frame::Ping(payload) => {
                if let Some(socket) = self.socket_mut(id) {
                    let _ = socket.sink.write(ws::Message::Pong(payload));
                }
            }
            ws::Frame::Pong(_) => {}
            ws::Frame::Close(_) if !is_current => self.end_retired(id, ctx),
            ws::Frame::Close(reason) => {
                let reason = reason.map_or_else(
                    || "no code".to_owned(),
                    |r| {
                        format!(
                            "code {}{}",
                            u16::from(r.code),
                            r.description.map(|d| format!(" {d:?}")).unwrap_or_default()
                        )
                    },
                );
                self.current_lost(
                    ctx,
                    &format!("socket closed by the service ({reason})"),
                    false,
                );
            }
        }
    }

    fn socket_mut(&mut self, id: u64) -> Option<&mut Socket> {
        match &mut self.current {
            Some(current) if current.socket.id == id => Some(&mut current.socket),
            _ => self.retired.get_mut(&id).map(|r| &mut r.socket),
        }
    }

    /// Collects a fragmented text message of socket `id`; returns it whole
    /// once its last fragment arrived.
    fn on_fragment(&mut self, id: u64, item: actix_http::ws::Item) -> Option<Bytes> {
        use actix_http::ws::Item;
        let max = self.settings.max_frame_bytes;
        let socket = self.socket_mut(id)?;
        let last = match item {
            Item::FirstText(part) => {
                socket.partial = Some(BytesMut::from(&part[..]));
                return None;
            }
            Item::FirstBinary(_) => {
                socket.partial = None;
                return None;
            }
            Item::Continue(part) => {
                socket.partial.as_mut()?.extend_from_slice(&part);
                false
            }
            Item::Last(part) => {
                socket.partial.as_mut()?.extend_from_slice(&part);
                true
            }
        };
        if socket.partial.as_ref().is_some_and(|p| p.len() > max) {
            let whole = socket.partial.take().expect("checked above");
            self.reject_frame("fragmented message over genesys.max_frame_bytes", &whole);
            return None;
        }
        if last {
            socket.partial.take().map(BytesMut::freeze)
        } else {
            None
        }
    }

    fn on_text(&mut self, id: u64, is_current: bool, text: Bytes, ctx: &mut Context<Self>) {
        let Ok(text) = std::str::from_utf8(&text) else {
            self.reject_frame("text frame is not UTF-8", &text);
            return;
        };
        let inbound = match protocol::classify(text) {
            Ok(Inbound::Notification {
                topic_name,
                correlation_id,
            }) => {
                self.on_notification(id, text, &topic_name, correlation_id.as_deref());
                return;
            }
            Ok(inbound) => inbound,
            Err(e) => {
                self.reject_frame(&e.to_string(), text.as_bytes());
                return;
            }
        };
        self.telemetry.protocol_frame();
        if !is_current {
            // A socket we left: only its notifications still matter.
            return;
        }
        match inbound {
            Inbound::System(SystemEvent::SocketClosing) => {
                self.plan_move(ctx, "service announced socket_closing", false);
            }
            Inbound::System(SystemEvent::ChannelLost { kind, reason })
                if kind == "subscription_changed" =>
            {
                // Unconfirmed what changes it (our own updates may): the
                // channel is still ours, so make sure it has our list.
                tracing::info!(connection = self.index, reason = ?reason, "service says the channel's subscriptions changed; re-applying the topic list");
                self.resubscribe(ctx);
            }
            Inbound::System(SystemEvent::ChannelLost { kind, reason }) => {
                self.current_channel_gone();
                let reason = format!(
                    "channel {kind} ({})",
                    reason.as_deref().unwrap_or("no reason given")
                );
                self.plan_move(ctx, &reason, true);
            }
            Inbound::System(SystemEvent::TokenRevoked { reason }) => {
                let token = self
                    .current
                    .as_ref()
                    .and_then(|c| c.channel.created_with.clone());
                self.current_channel_gone();
                self.tokens.do_send(TokenRevoked(token));
                let reason = format!(
                    "tokens revoked ({})",
                    reason.as_deref().unwrap_or("no reason given")
                );
                self.plan_move(ctx, &reason, false);
            }
            Inbound::System(SystemEvent::Other { topic_name, kind }) => {
                tracing::info!(connection = self.index, socket = id, topic = %topic_name, kind = ?kind, "system event");
            }
            Inbound::SubscribeReply { result, message } => {
                if result != "200" {
                    tracing::warn!(connection = self.index, result = %result, detail = ?message, "socket subscribe refused");
                }
            }
            Inbound::Heartbeat | Inbound::Pong | Inbound::OtherMetadata => {}
            Inbound::Notification { .. } => unreachable!("handled above"),
        }
    }

    fn current_channel_gone(&mut self) {
        if let Some(current) = &mut self.current {
            current.channel_gone = true;
        }
    }

    fn on_notification(
        &mut self,
        socket: u64,
        text: &str,
        topic_name: &str,
        correlation_id: Option<&str>,
    ) {
        if !field_fits(topic_name) || !correlation_id.map_or(true, field_fits) {
            self.reject_frame("topic name or correlation id too long", text.as_bytes());
            return;
        }
        let key = self
            .overlap
            .active(Instant::now())
            .then(|| overlap::FrameKey::of(text.as_bytes()));
        if key.is_some_and(|key| self.overlap.is_copy(key, socket)) {
            let late = self.overlap.take_late();
            if late > 0 {
                self.telemetry.overlap_late_duplicates(self.index, late);
            }
            return;
        }
        match self
            .buffer
            .append(crate::now_ms(), topic_name, correlation_id, text.as_bytes())
        {
            Ok(_) => {
                if let Some(key) = key {
                    self.overlap.kept(key, socket, Instant::now());
                }
                self.telemetry.event_received();
                self.telemetry.buffer_write_ok();
                self.buffer.request_flush();
                self.producer.do_send(EventsBuffered);
            }
            Err(e) => self.telemetry.buffer_write_failed(&e),
        }
    }

    /// A frame that is not a notification: logged, counted, and kept in the
    /// buffer's quarantine rather than dropped.
    fn reject_frame(&self, reason: &str, frame: &[u8]) {
        self.telemetry
            .malformed_frame(self.index, &reason, frame.len());
        if let Err(e) = self.buffer.quarantine_frame(reason, frame) {
            self.telemetry.buffer_write_failed(&e);
        }
    }
}

/// One attempt: channel (reused if the service still has it, else
/// created), socket, subscription. Returns, on failure, the channel the
/// next attempt may reuse.
#[allow(clippy::too_many_arguments)]
async fn attempt_setup(
    index: usize,
    plan: AttemptPlan,
    api: GenesysApi,
    tokens: Addr<TokenActor>,
    telemetry: Arc<Telemetry>,
    backoff: Backoff,
    topics: Arc<Vec<String>>,
    settings: ConnectionSettings,
) -> (Result<Established, EstablishError>, Option<HeldChannel>) {
    let Some(slot) = settings.slots.try_take() else {
        return (
            Err(EstablishError::NoChannelSlot(settings.slots.in_use())),
            plan.reuse,
        );
    };
    let reused = match plan.reuse {
        Some(held) => match channel_alive(&api, &tokens, &telemetry, &backoff, &held).await {
            // Gone for sure: only then is another channel made.
            Some(false) => None,
            // Alive, or unknown (a timeout is not "dead"): try it.
            Some(true) | None => Some(held),
        },
        None => None,
    };
    let held = match reused {
        Some(held) => held,
        None => match create_channel(
            index,
            plan.token_after,
            &api,
            &tokens,
            &telemetry,
            &backoff,
            &settings,
        )
        .await
        {
            Ok(held) => held,
            Err(e) => return (Err(e), None),
        },
    };
    let connect = api
        .http()
        .ws(held.channel.connect_uri.as_str())
        .max_frame_size(settings.max_frame_bytes)
        .connect();
    let framed = match actix_rt::time::timeout(settings.handshake_timeout, connect).await {
        Err(_) => return (Err(EstablishError::HandshakeTimeout), Some(held)),
        Ok(Err(awc::error::WsClientError::InvalidResponseStatus(status)))
            if status.is_client_error() && status != awc::http::StatusCode::TOO_MANY_REQUESTS =>
        {
            // The service's answer for a dead channel is not documented
            // (401, 403, 404 and 410 are all plausible): a refused upgrade
            // is "gone", or the next attempt would try it again for hours.
            return (
                Err(EstablishError::Handshake(format!(
                    "upgrade refused with {status}; the channel is not reused"
                ))),
                None,
            );
        }
        Ok(Err(e)) => return (Err(EstablishError::Handshake(e.to_string())), Some(held)),
        Ok(Ok((_, framed))) => framed,
    };
    let channel_id = held.channel.id.clone();
    let subscribed = rest::call("subscribe", &tokens, &telemetry, &backoff, |t| {
        let api = api.clone();
        let channel_id = channel_id.clone();
        let topics = topics.clone();
        async move {
            api.put_subscriptions(&t, &channel_id, &topics, settings.ignore_errors)
                .await
        }
    })
    .await;
    match subscribed {
        Ok(outcomes) => (
            Ok(Established {
                channel: held,
                framed,
                outcomes,
                topics,
                slot,
            }),
            None,
        ),
        Err(e) => (Err(e.into()), Some(held)),
    }
}

async fn create_channel(
    index: usize,
    token_after: Option<Instant>,
    api: &GenesysApi,
    tokens: &Addr<TokenActor>,
    telemetry: &Arc<Telemetry>,
    backoff: &Backoff,
    settings: &ConnectionSettings,
) -> Result<HeldChannel, EstablishError> {
    if let Some(after) = token_after {
        let token = tokens
            .send(GetToken)
            .await
            .map_err(|_| EstablishError::TokenActorGone)?
            .map_err(rest::CallError::from)?;
        let expires = tokens
            .send(ExpiryOf(token.clone()))
            .await
            .map_err(|_| EstablishError::TokenActorGone)?;
        if expires.map_or(true, |e| e <= after) {
            // Not renewed yet (a refresh margin shorter than the rollover
            // lead): ask for the next token now; the retry uses it.
            tokens.do_send(RenewToken(token));
            return Err(EstablishError::TokenNotRenewed);
        }
    }
    // The token that creates the channel bounds its life.
    let used: std::rc::Rc<std::cell::RefCell<Option<Secret>>> = Default::default();
    let channel = rest::call("create channel", tokens, telemetry, backoff, |t| {
        let api = api.clone();
        *used.borrow_mut() = Some(t.clone());
        async move { api.create_channel(&t).await }
    })
    .await?;
    telemetry.channel_created(index, &channel.id, channel.expires.as_deref());
    let token = used.borrow_mut().take();
    let token_expires = match &token {
        Some(token) => tokens.send(ExpiryOf(token.clone())).await.ok().flatten(),
        None => None,
    };
    let mut held = HeldChannel::new(channel, settings.rollover_margin, token_expires);
    held.created_with = token;
    Ok(held)
}

/// Whether the service still has the channel: `Some(false)` only for a
/// definite "gone" (404); `None` when the check itself failed.
async fn channel_alive(
    api: &GenesysApi,
    tokens: &Addr<TokenActor>,
    telemetry: &Arc<Telemetry>,
    backoff: &Backoff,
    held: &HeldChannel,
) -> Option<bool> {
    let id = held.channel.id.clone();
    rest::call("check channel", tokens, telemetry, backoff, |t| {
        let api = api.clone();
        let id = id.clone();
        async move { api.channel_alive(&t, &id).await }
    })
    .await
    .ok()
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
            if !self.closing {
                let topics = self
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
        self.candidate = None;
        self.attempt += 1;
        self.attempting = false;
        self.scheduled = None;
        self.subscribed = None;
        self.updating = false;
        self.overlap = Overlap::default();
        self.backoff.reset();
    }
}

impl StreamHandler<Tagged> for ConnectionActor {
    fn handle(&mut self, (id, item): Tagged, ctx: &mut Context<Self>) {
        self.on_frame(id, item, ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // Ends are signalled in-band (a `None` item), tagged with their
        // socket; the default would stop the actor.
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
        self.closing = true;
        if let Some(scheduled) = self.scheduled.take() {
            ctx.cancel_future(scheduled);
        }
        // A gap still open is recorded as such (its end: now); the write is
        // awaited below, before the final flush.
        let recorded = self.gap.take().map(|gap| {
            let record = gap.record(self.index, true);
            self.telemetry.socket_gap(&record);
            self.buffer.record_gap(record, gap.topics)
        });
        self.shut_current(ctx);
        self.phase("closed", Some("shutting down".into()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.closed.push(tx);
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
