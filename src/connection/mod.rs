//! The connection actor: one per notification channel. It creates the
//! channel, connects its WebSocket, subscribes the channel's topics,
//! answers the protocol, watches for silence, and starts over (with
//! backoff) whenever any of that fails. Every notification it receives is
//! appended to the buffer before anything else, then the producer is woken.
//!
//! Life of a connection:
//! 1. `establish`: token → channel (reused while alive and not near expiry,
//!    else created) → socket → `PUT subscriptions`. Connecting before
//!    subscribing means no event is sent to a channel nobody listens on.
//! 2. open: pings every `ping_interval`, a watchdog that takes
//!    `heartbeat_timeout` of silence for a dead (half-open) socket, and a
//!    rollover timer before the channel's `expires`.
//! 3. any close, error, silence, `socket_closing` or expiry → `teardown`
//!    and `establish` again after a backoff delay (none for planned ones).

pub mod plan;
pub mod rest;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::io::{SinkWrite, WriteHandler};
use actix::prelude::*;
use awc::ws;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, StreamExt};

use crate::backoff::Backoff;
use crate::buffer::{field_fits, Buffer};
use crate::genesys::api::{Channel, GenesysApi, TopicOutcome};
use crate::genesys::protocol::{self, Inbound, SystemEvent};
use crate::telemetry::{ConnectionState, Telemetry, LIVENESS_INTERVAL};
use crate::token::{TokenActor, TokenRevoked};

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

/// Closes the socket and stops reconnecting (shutdown).
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
}

/// A channel the actor holds.
struct HeldChannel {
    channel: Channel,
    created_at: SystemTime,
    expires_at: SystemTime,
}

impl HeldChannel {
    /// When to move to a new channel: `margin` before expiry, but never
    /// earlier than three quarters into the channel's life, so that a
    /// short-lived channel (or a large margin) cannot cause a rollover loop.
    fn rollover_at(&self, margin: Duration) -> SystemTime {
        let lifetime = self
            .expires_at
            .duration_since(self.created_at)
            .unwrap_or(Duration::ZERO);
        self.expires_at - margin.min(lifetime / 4)
    }
}

/// The socket of the current session.
struct OpenSocket {
    /// The session this socket belongs to; its frames carry it.
    session: u64,
    sink: SinkWrite<ws::Message, WsSink>,
    stream: SpawnHandle,
    timers: Vec<SpawnHandle>,
}

/// A socket we closed on purpose and still read from: frames the service
/// sent before it saw our close are still ours to keep.
struct Draining {
    _sink: SinkWrite<ws::Message, WsSink>,
    stream: SpawnHandle,
    deadline: SpawnHandle,
}

/// One item of a socket's stream, tagged with the socket's session;
/// `None` marks the end of the stream.
type Tagged = (
    u64,
    Option<Result<ws::Frame, actix_http::ws::ProtocolError>>,
);

/// A socket open this long resets the reconnect backoff.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Shortest time a channel is used before rolling over.
const MIN_CHANNEL_LIFE: Duration = Duration::from_secs(1);

/// How long a closed socket is read for frames still on their way.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

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
    channel: Option<HeldChannel>,
    socket: Option<OpenSocket>,
    draining: std::collections::HashMap<u64, Draining>,
    /// Bumped at every teardown, so a late result of an abandoned attempt
    /// is recognised and dropped.
    session: u64,
    last_frame: Instant,
    /// A text message arriving in fragments.
    partial: Option<BytesMut>,
    closing: bool,
    /// The topic list the open channel was last subscribed with (None: no
    /// open channel); differs from `topics` while an update is pending.
    subscribed: Option<Arc<Vec<String>>>,
    /// A subscription update is in flight: later ones wait for it.
    updating: bool,
}

/// What a successful `establish` produces.
struct Established {
    channel: HeldChannel,
    framed: actix_codec::Framed<awc::BoxedSocket, ws::Codec>,
    outcomes: Vec<TopicOutcome>,
    /// The topic list the channel was subscribed with.
    topics: Arc<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
enum EstablishError {
    #[error(transparent)]
    Call(#[from] rest::CallError),
    #[error("socket handshake failed: {0}")]
    Handshake(String),
    #[error("socket handshake timed out")]
    HandshakeTimeout,
    #[error("{rejected} of {total} topics refused, e.g. {example}")]
    Rejected {
        rejected: usize,
        total: usize,
        example: String,
    },
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
            channel: None,
            socket: None,
            draining: std::collections::HashMap::new(),
            session: 0,
            last_frame: Instant::now(),
            partial: None,
            closing: false,
            subscribed: None,
            updating: false,
        }
    }

    fn phase(&self, phase: &'static str, detail: Option<String>) {
        self.telemetry.connection_phase(
            self.index,
            ConnectionState {
                phase,
                channel_id: self.channel.as_ref().map(|c| c.channel.id.clone()),
                topics: self.topics.len(),
                rejected_topics: 0,
                detail,
            },
        );
    }

    fn establish(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        let session = self.session;
        self.phase("connecting", None);
        let margin = self.settings.rollover_margin;
        let reusable = self
            .channel
            .take()
            .filter(|held| SystemTime::now() < held.rollover_at(margin));
        let index = self.index;
        let api = self.api.clone();
        let tokens = self.tokens.clone();
        let telemetry = self.telemetry.clone();
        let backoff = self.backoff.clone();
        let topics = self.topics.clone();
        let settings = self.settings.clone();
        let attempt = async move {
            let held = match reusable {
                Some(held) if channel_alive(&api, &tokens, &telemetry, &backoff, &held).await => {
                    held
                }
                _ => {
                    let channel =
                        rest::call("create channel", &tokens, &telemetry, &backoff, |t| {
                            let api = api.clone();
                            async move { api.create_channel(&t).await }
                        })
                        .await?;
                    telemetry.channel_created(index, &channel.id, channel.expires.as_deref());
                    let created_at = SystemTime::now();
                    HeldChannel {
                        expires_at: channel.expires_at(created_at),
                        channel,
                        created_at,
                    }
                }
            };
            let connect = api
                .http()
                .ws(held.channel.connect_uri.as_str())
                .max_frame_size(settings.max_frame_bytes)
                .connect();
            let (_, framed) = actix_rt::time::timeout(settings.handshake_timeout, connect)
                .await
                .map_err(|_| EstablishError::HandshakeTimeout)?
                .map_err(|e| EstablishError::Handshake(e.to_string()))?;
            let channel_id = held.channel.id.clone();
            let outcomes = rest::call("subscribe", &tokens, &telemetry, &backoff, |t| {
                let api = api.clone();
                let channel_id = channel_id.clone();
                let topics = topics.clone();
                async move {
                    api.put_subscriptions(&t, &channel_id, &topics, settings.ignore_errors)
                        .await
                }
            })
            .await?;
            Ok::<_, EstablishError>(Established {
                channel: held,
                framed,
                outcomes,
                topics,
            })
        };
        ctx.spawn(attempt.into_actor(self).map(move |result, act, ctx| {
            if act.session != session || act.closing {
                return;
            }
            match result {
                Ok(established) => act.opened(established, ctx),
                Err(e) => {
                    let delay = match &e {
                        EstablishError::Call(rest::CallError::Api(api)) => api.retry_after(),
                        _ => None,
                    };
                    act.retry(ctx, &format!("setup failed: {e}"), delay);
                }
            }
        }));
    }

    fn opened(&mut self, established: Established, ctx: &mut Context<Self>) {
        let Established {
            channel,
            framed,
            outcomes,
            topics,
        } = established;
        let rejected: Vec<&TopicOutcome> = outcomes.iter().filter(|o| o.is_rejected()).collect();
        if let Some(first) = rejected.first() {
            let error = EstablishError::Rejected {
                rejected: rejected.len(),
                total: self.topics.len(),
                example: format!(
                    "{} ({})",
                    first.id,
                    first
                        .rejection_reason
                        .as_deref()
                        .unwrap_or("no reason given")
                ),
            };
            tracing::warn!(connection = self.index, error = %error, "subscribed with refusals (ignore_errors is on)");
        }
        let (sink, stream) = framed.split();
        let session = self.session;
        let tagged = stream
            .map(move |item| (session, Some(item)))
            .chain(futures_util::stream::once(async move { (session, None) }));
        let stream = ctx.add_stream(tagged);
        let mut timers = vec![
            ctx.run_interval(self.settings.ping_interval, |act, _| {
                act.send_text(protocol::PING)
            }),
            ctx.run_interval(self.settings.heartbeat_timeout / 4, move |act, ctx| {
                let silent = act.last_frame.elapsed();
                if act.session == session && silent > act.settings.heartbeat_timeout {
                    act.retry(
                        ctx,
                        &format!("no heartbeat for {}s (half-open socket)", silent.as_secs()),
                        None,
                    );
                }
            }),
        ];
        let mut until_rollover = channel
            .rollover_at(self.settings.rollover_margin)
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        if until_rollover < MIN_CHANNEL_LIFE {
            // A channel that expires (by our clock) as soon as it is made:
            // back off rather than create channels in a loop.
            until_rollover = self.backoff.next_delay().max(MIN_CHANNEL_LIFE);
        }
        timers.push(ctx.run_later(until_rollover, |act, ctx| {
            act.channel = None;
            act.restart_now(ctx, "channel expires soon: rolling over to a new channel");
        }));
        self.telemetry.connection_open(
            self.index,
            &channel.channel.id,
            self.topics.len(),
            rejected.len(),
        );
        self.channel = Some(channel);
        self.last_frame = Instant::now();
        // Only a connection that stays up counts as a success: one that
        // fails again at once keeps backing off.
        timers.push(ctx.run_later(STABLE_AFTER, |act, _| act.backoff.reset()));
        self.socket = Some(OpenSocket {
            session,
            sink: SinkWrite::new(sink, ctx),
            stream,
            timers,
        });
        self.subscribed = Some(topics);
        self.apply_topics(ctx);
    }

    /// Brings the open channel's subscriptions to `topics`: additions with
    /// `POST` (refusals are reported, the rest stay), removals with one
    /// `PUT` of the whole list. One update at a time; a failed one is tried
    /// again after a backoff delay, without touching the socket.
    fn apply_topics(&mut self, ctx: &mut Context<Self>) {
        let (Some(subscribed), Some(held)) = (&self.subscribed, &self.channel) else {
            return;
        };
        if self.updating || self.closing || Arc::ptr_eq(subscribed, &self.topics) {
            return;
        }
        let wanted = self.topics.clone();
        let had: std::collections::HashSet<&String> = subscribed.iter().collect();
        let keep: std::collections::HashSet<&String> = wanted.iter().collect();
        let added: Vec<String> = wanted
            .iter()
            .filter(|t| !had.contains(t))
            .cloned()
            .collect();
        let removed = subscribed.iter().filter(|t| !keep.contains(t)).count();
        if added.is_empty() && removed == 0 {
            self.subscribed = Some(wanted);
            return;
        }
        self.updating = true;
        let session = self.session;
        let channel_id = held.channel.id.clone();
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
                    if removed > 0 {
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
            if act.session != session {
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

    fn send_text(&mut self, text: &str) {
        if let Some(socket) = &mut self.socket {
            if socket
                .sink
                .write(ws::Message::Text(text.to_owned().into()))
                .is_err()
            {
                tracing::debug!(connection = self.index, "socket sink closed; write dropped");
            }
        }
    }

    /// Leaves the current socket and forgets everything tied to it. A
    /// planned move (`polite`) sends a close frame and keeps reading the
    /// old socket until the service closes it too (at most
    /// [`DRAIN_TIMEOUT`]), so frames already on their way are not lost; a
    /// failed socket is simply dropped.
    fn teardown(&mut self, ctx: &mut Context<Self>, polite: bool) {
        self.session += 1;
        self.partial = None;
        self.subscribed = None;
        let Some(mut socket) = self.socket.take() else {
            return;
        };
        for timer in socket.timers {
            ctx.cancel_future(timer);
        }
        if !polite {
            ctx.cancel_future(socket.stream);
            socket.sink.close();
            return;
        }
        let _ = socket
            .sink
            .write(ws::Message::Close(Some(ws::CloseCode::Normal.into())));
        socket.sink.close();
        let old = socket.session;
        let deadline = ctx.run_later(DRAIN_TIMEOUT, move |act, ctx| act.end_draining(old, ctx));
        self.draining.insert(
            old,
            Draining {
                _sink: socket.sink,
                stream: socket.stream,
                deadline,
            },
        );
    }

    fn end_draining(&mut self, session: u64, ctx: &mut Context<Self>) {
        if let Some(old) = self.draining.remove(&session) {
            ctx.cancel_future(old.stream);
            ctx.cancel_future(old.deadline);
        }
    }

    /// A frame from a socket we are leaving: keep its notifications, act on
    /// nothing else.
    fn on_draining_frame(
        &mut self,
        session: u64,
        item: Option<Result<ws::Frame, actix_http::ws::ProtocolError>>,
        ctx: &mut Context<Self>,
    ) {
        match item {
            Some(Ok(ws::Frame::Text(bytes))) => {
                match std::str::from_utf8(&bytes).map(protocol::classify) {
                    Ok(Ok(Inbound::Notification {
                        topic_name,
                        correlation_id,
                    })) => {
                        let text = std::str::from_utf8(&bytes).expect("checked above");
                        self.on_notification(text, &topic_name, correlation_id.as_deref());
                    }
                    Ok(Ok(_)) => self.telemetry.protocol_frame(),
                    Ok(Err(e)) => self.reject_frame(&e.to_string(), &bytes),
                    Err(_) => self.reject_frame("text frame is not UTF-8", &bytes),
                }
            }
            Some(Ok(ws::Frame::Close(_)) | Err(_)) | None => self.end_draining(session, ctx),
            Some(Ok(_)) => {}
        }
    }

    /// Starts over after a failure, after a backoff delay.
    fn retry(&mut self, ctx: &mut Context<Self>, reason: &str, delay: Option<Duration>) {
        self.teardown(ctx, false);
        if self.closing {
            return;
        }
        let delay = delay.unwrap_or_else(|| self.backoff.next_delay());
        self.telemetry.reconnecting(
            self.index,
            self.channel.as_ref().map(|c| c.channel.id.as_str()),
            reason,
            delay,
        );
        ctx.run_later(delay, |act, ctx| act.establish(ctx));
    }

    /// Starts over at once: a planned move, not a failure.
    fn restart_now(&mut self, ctx: &mut Context<Self>, reason: &str) {
        self.teardown(ctx, true);
        self.telemetry.reconnecting(
            self.index,
            self.channel.as_ref().map(|c| c.channel.id.as_str()),
            reason,
            Duration::ZERO,
        );
        self.establish(ctx);
    }

    /// Moves to a new channel after a backoff delay: the service took this
    /// one away. The delay keeps two bridges that share an OAuth client from
    /// taking the topics from each other in a tight loop.
    fn replace_channel_later(&mut self, ctx: &mut Context<Self>, reason: &str) {
        self.teardown(ctx, true);
        self.channel = None;
        let delay = self.backoff.next_delay();
        self.telemetry.reconnecting(self.index, None, reason, delay);
        ctx.run_later(delay, |act, ctx| act.establish(ctx));
    }

    fn on_text(&mut self, text: Bytes, ctx: &mut Context<Self>) {
        let Ok(text) = std::str::from_utf8(&text) else {
            self.reject_frame("text frame is not UTF-8", &text);
            return;
        };
        match protocol::classify(text) {
            Ok(Inbound::Notification {
                topic_name,
                correlation_id,
            }) => self.on_notification(text, &topic_name, correlation_id.as_deref()),
            Ok(Inbound::System(SystemEvent::SocketClosing)) => {
                self.telemetry.protocol_frame();
                self.restart_now(ctx, "service announced socket_closing");
            }
            Ok(Inbound::System(SystemEvent::ChannelLost { kind, reason })) => {
                self.telemetry.protocol_frame();
                let reason = format!(
                    "channel {kind} ({})",
                    reason.as_deref().unwrap_or("no reason given")
                );
                self.replace_channel_later(ctx, &reason);
            }
            Ok(Inbound::System(SystemEvent::TokenRevoked { reason })) => {
                self.telemetry.protocol_frame();
                self.tokens.do_send(TokenRevoked);
                let reason = format!(
                    "tokens revoked ({})",
                    reason.as_deref().unwrap_or("no reason given")
                );
                self.replace_channel_later(ctx, &reason);
            }
            Ok(Inbound::System(SystemEvent::Other { topic_name, kind })) => {
                self.telemetry.protocol_frame();
                tracing::info!(connection = self.index, topic = %topic_name, kind = ?kind, "system event");
            }
            Ok(Inbound::SubscribeReply { result, message }) => {
                self.telemetry.protocol_frame();
                if result != "200" {
                    tracing::warn!(connection = self.index, result = %result, message = ?message, "socket subscribe refused");
                }
            }
            Ok(Inbound::Heartbeat | Inbound::Pong | Inbound::OtherMetadata) => {
                self.telemetry.protocol_frame();
            }
            Err(e) => self.reject_frame(&e.to_string(), text.as_bytes()),
        }
    }

    fn on_notification(&mut self, text: &str, topic_name: &str, correlation_id: Option<&str>) {
        if !field_fits(topic_name) || !correlation_id.map_or(true, field_fits) {
            self.reject_frame("topic name or correlation id too long", text.as_bytes());
            return;
        }
        match self
            .buffer
            .append(crate::now_ms(), topic_name, correlation_id, text.as_bytes())
        {
            Ok(_) => {
                self.telemetry.event_received();
                self.telemetry.buffer_write_ok();
                self.buffer.request_flush();
                self.producer.do_send(EventsBuffered);
            }
            Err(e) => self.telemetry.buffer_write_failed(&e),
        }
    }
}

impl ConnectionActor {
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

async fn channel_alive(
    api: &GenesysApi,
    tokens: &Addr<TokenActor>,
    telemetry: &Arc<Telemetry>,
    backoff: &Backoff,
    held: &HeldChannel,
) -> bool {
    let id = held.channel.id.clone();
    rest::call("check channel", tokens, telemetry, backoff, |t| {
        let api = api.clone();
        let id = id.clone();
        async move { api.channel_alive(&t, &id).await }
    })
    .await
    .unwrap_or(false)
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
        self.socket = None;
        self.draining.clear();
        self.channel = None;
        self.session += 1;
        self.partial = None;
        self.backoff.reset();
    }
}

impl StreamHandler<Tagged> for ConnectionActor {
    fn handle(&mut self, (session, item): Tagged, ctx: &mut Context<Self>) {
        if self.socket.as_ref().map_or(true, |s| s.session != session) {
            self.on_draining_frame(session, item, ctx);
            return;
        }
        self.last_frame = Instant::now();
        let frame = match item {
            Some(Ok(frame)) => frame,
            None => {
                // The stream ended without a close frame: what a proxy
                // dropping an idle connection looks like (1006).
                self.retry(ctx, "socket dropped without a close frame (1006)", None);
                return;
            }
            Some(Err(e)) => {
                // An oversized frame ends here too: the socket cannot be
                // resynchronised after one, so it is replaced.
                self.retry(ctx, &format!("socket protocol error: {e}"), None);
                return;
            }
        };
        match frame {
            ws::Frame::Text(text) => self.on_text(text, ctx),
            ws::Frame::Binary(bytes) => self.reject_frame("binary frame", &bytes),
            ws::Frame::Continuation(item) => self.on_fragment(item, ctx),
            ws::Frame::Ping(payload) => {
                if let Some(socket) = &mut self.socket {
                    let _ = socket.sink.write(ws::Message::Pong(payload));
                }
            }
            ws::Frame::Pong(_) => {}
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
                self.retry(
                    ctx,
                    &format!("socket closed by the service ({reason})"),
                    None,
                );
            }
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // Ends are signalled in-band (a `None` item), tagged with their
        // socket; the default would stop the actor.
    }
}

impl ConnectionActor {
    fn on_fragment(&mut self, item: actix_http::ws::Item, ctx: &mut Context<Self>) {
        use actix_http::ws::Item;
        match item {
            Item::FirstText(part) => self.partial = Some(BytesMut::from(&part[..])),
            Item::FirstBinary(_) => self.partial = None,
            Item::Continue(part) => self.append_fragment(&part),
            Item::Last(part) => {
                self.append_fragment(&part);
                if let Some(whole) = self.partial.take() {
                    self.on_text(whole.freeze(), ctx);
                }
            }
        }
    }

    fn append_fragment(&mut self, part: &[u8]) {
        let Some(partial) = &mut self.partial else {
            return;
        };
        partial.extend_from_slice(part);
        if partial.len() > self.settings.max_frame_bytes {
            if let Some(whole) = self.partial.take() {
                self.reject_frame("fragmented message over genesys.max_frame_bytes", &whole);
            }
        }
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
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        self.closing = true;
        self.teardown(ctx, true);
        self.phase("closed", Some("shutting down".into()));
    }
}

fn liveness_name(index: usize) -> &'static str {
    // Liveness names are &'static: there are at most a few dozen channels,
    // and each name is leaked once per actor index, not per restart.
    use std::collections::HashMap;
    use std::sync::Mutex;
    static NAMES: Mutex<Option<HashMap<usize, &'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    names
        .get_or_insert_with(HashMap::new)
        .entry(index)
        .or_insert_with(|| Box::leak(format!("connection-{index}").into_boxed_str()))
}
