//! The channel WebSocket (`GET /channels/{id}`): one actor per connection.
//!
//! The actor sends heartbeats every `--heartbeat-interval`, answers the
//! text `{"message":"ping"}` with a pong, handles the subscribe/unsubscribe
//! messages, and writes the notification frames the generator queues in its
//! mailbox (in seq order: see `state.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Handler, Message, StreamHandler};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, CloseCode, CloseReason};
use serde::Deserialize;
use serde_json::json;

use super::errors::ApiError;
use super::faults::Target;
use super::state::{SimState, SocketRef, SubscribeError, SubscribeMode};

pub(crate) const HEARTBEAT: &str =
    r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#;
pub(crate) const PONG: &str = r#"{"topicName":"channel.metadata","eventBody":{"message":"pong"}}"#;

/// A notification frame to write as is, with its event's `seq`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Deliver {
    pub frame: Arc<str>,
    pub seq: u64,
}

/// What one socket was given and what it actually wrote, shared between the
/// socket actor, the channel and the event log. A frame counts as delivered
/// once the actor has handed it to the connection, not when it is queued in
/// the actor's mailbox: a client that stops reading, then goes away, never
/// gets what was still queued.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Frames queued to the socket (under the state lock).
    queued: AtomicU64,
    /// Frames handed to the connection.
    written: AtomicU64,
    /// Bytes of the frames queued / handed to the connection.
    queued_bytes: AtomicU64,
    written_bytes: AtomicU64,
    /// Set when the generator gave up on a client that does not read.
    given_up: AtomicBool,
    /// `seq` of the last frame handed to the connection. Frames reach a
    /// socket in seq order, so every queued frame up to it was written.
    written_seq: AtomicU64,
}

impl Progress {
    /// Called under the state lock, right before queueing the frame.
    /// Returns the frame's position in the socket's queue (1 for the first).
    pub fn queue(&self, bytes: usize) -> u64 {
        self.queued_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.queued.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// How many of the `len` frames queued at positions `first..` have
    /// been written (frames are written in queue order).
    pub fn written_of(&self, first: u64, len: u64) -> u64 {
        let written = self.written.load(Ordering::Relaxed);
        written.saturating_sub(first - 1).min(len)
    }

    /// Bytes queued to the socket and not written yet.
    pub fn backlog_bytes(&self) -> u64 {
        self.queued_bytes
            .load(Ordering::Relaxed)
            .saturating_sub(self.written_bytes.load(Ordering::Relaxed))
    }

    pub fn give_up(&self) {
        self.given_up.store(true, Ordering::Relaxed);
    }

    pub fn given_up(&self) -> bool {
        self.given_up.load(Ordering::Relaxed)
    }

    /// Whether the frame of event `seq` queued to this socket was written.
    pub fn wrote(&self, seq: u64) -> bool {
        self.written_seq.load(Ordering::Acquire) >= seq
    }

    /// Frames queued but never written (final once the socket is detached).
    pub fn unwritten(&self) -> u64 {
        self.queued
            .load(Ordering::Relaxed)
            .saturating_sub(self.written.load(Ordering::Relaxed))
    }
}

/// Ends the connection: with a close frame, or (`code: None`) by dropping the
/// TCP connection without one, as a proxy killing an idle connection does.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub(crate) struct Shutdown {
    pub code: Option<CloseCode>,
    pub reason: &'static str,
}

impl Shutdown {
    pub fn idle_timeout() -> Self {
        Shutdown {
            code: Some(CloseCode::Away),
            reason: "idle timeout",
        }
    }

    pub fn abort() -> Self {
        Shutdown {
            code: None,
            reason: "",
        }
    }

    pub fn replaced() -> Self {
        Shutdown {
            code: Some(CloseCode::Normal),
            reason: "replaced by a new connection to the channel",
        }
    }

    pub fn channel_removed() -> Self {
        Shutdown {
            code: Some(CloseCode::Normal),
            reason: "channel removed: channel limit reached",
        }
    }

    pub fn channel_expired() -> Self {
        Shutdown {
            code: Some(CloseCode::Normal),
            reason: "channel expired",
        }
    }

    /// After the `token_revoked` notice: the channel is gone.
    pub fn token_revoked() -> Self {
        Shutdown {
            code: Some(CloseCode::Normal),
            reason: "token revoked: channel removed",
        }
    }

    /// After `v2.system.socket_closing`.
    pub fn maintenance() -> Self {
        Shutdown {
            code: Some(CloseCode::Away),
            reason: "socket closing for maintenance",
        }
    }

    /// The client stopped reading and its backlog reached the bound.
    pub fn too_slow() -> Self {
        Shutdown {
            code: Some(CloseCode::Policy),
            reason: "client is not reading: send backlog full",
        }
    }

    pub fn server_stopping() -> Self {
        Shutdown {
            code: Some(CloseCode::Away),
            reason: "server shutting down",
        }
    }
}

/// `v2.system.socket_closing`: writes the notice and, after `close_after`,
/// closes the socket (1001) if it still is its channel's socket.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ClosingNotice {
    pub frame: Arc<str>,
    pub close_after: Option<Duration>,
}

/// Resolves once the actor has processed every message queued before it:
/// frames queued earlier have been handed to the connection.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Flush;

pub(crate) struct ChannelSocket {
    state: web::Data<SimState>,
    channel_id: String,
    socket_id: u64,
    progress: Arc<Progress>,
}

impl Actor for ChannelSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::debug!(channel = %self.channel_id, socket = self.socket_id, "socket opened");
        ctx.run_interval(self.state.settings.heartbeat, |act, ctx| {
            if act.state.faults.heartbeats() && !act.state.faults.blackhole() {
                ctx.text(HEARTBEAT);
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(channel = %self.channel_id, socket = self.socket_id, "socket closed");
        self.state
            .detach_socket(&self.channel_id, self.socket_id, &self.progress);
    }
}

impl Handler<Deliver> for ChannelSocket {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        ctx.text(msg.frame.as_ref());
        self.progress.written.fetch_add(1, Ordering::Relaxed);
        self.progress
            .written_bytes
            .fetch_add(msg.frame.len() as u64, Ordering::Relaxed);
        self.progress.written_seq.store(msg.seq, Ordering::Release);
        self.state.count_delivered();
    }
}

impl Handler<ClosingNotice> for ChannelSocket {
    type Result = ();

    fn handle(&mut self, msg: ClosingNotice, ctx: &mut Self::Context) {
        // A black-holed socket gets nothing, system messages included.
        if !self.state.faults.blackhole() {
            ctx.text(msg.frame.as_ref());
        }
        if let Some(delay) = msg.close_after {
            ctx.run_later(delay, |act, ctx| {
                // Detached first, so events from now on count as undelivered.
                if act.state.take_socket(&act.channel_id, act.socket_id) {
                    ctx.notify(Shutdown::maintenance());
                }
            });
        }
    }
}

impl Handler<Flush> for ChannelSocket {
    type Result = ();

    fn handle(&mut self, _msg: Flush, _ctx: &mut Self::Context) {}
}

impl Handler<Shutdown> for ChannelSocket {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Self::Context) {
        tracing::info!(channel = %self.channel_id, socket = self.socket_id, code = ?msg.code, reason = msg.reason, "closing socket");
        if let Some(code) = msg.code {
            ctx.close(Some(CloseReason {
                code,
                description: Some(msg.reason.to_owned()),
            }));
        }
        // Stopping without a close frame ends the response stream: frames
        // already queued are flushed, then the TCP connection is closed.
        ctx.stop();
    }
}

/// What clients send on the socket.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientMessage {
    message: Option<String>,
    topics: Option<Vec<String>>,
}

impl ChannelSocket {
    fn reply(&self, ctx: &mut ws::WebsocketContext<Self>, body: serde_json::Value) {
        if !self.state.faults.blackhole() {
            ctx.text(body.to_string());
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let msg: ClientMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                return self.reply(
                    ctx,
                    json!({"result": "400", "status": "error", "message": format!("Malformed message: {e}")}),
                )
            }
        };
        match msg.message.as_deref() {
            Some("ping") => {
                self.state.touch(&self.channel_id);
                if self.state.faults.pong() && !self.state.faults.blackhole() {
                    ctx.text(PONG);
                }
            }
            Some(verb @ ("subscribe" | "unsubscribe")) => {
                let Some(topics) = msg.topics else {
                    return self.reply(
                        ctx,
                        json!({"result": "400", "status": "failure", "message": "A subscribe message needs a topics array"}),
                    );
                };
                let mode = if verb == "subscribe" { SubscribeMode::Add } else { SubscribeMode::Remove };
                let reply = match self.state.subscribe(None, &self.channel_id, &topics, mode, false) {
                    Ok(_) => json!({"result": "200", "status": if verb == "subscribe" { "subscribed" } else { "unsubscribed" }}),
                    Err(SubscribeError::ChannelNotFound) => {
                        json!({"result": "404", "message": format!("Channel {} not found", self.channel_id)})
                    }
                    Err(SubscribeError::TooManyTopics { requested, max }) => json!({
                        "result": "400", "status": "failure",
                        "message": format!("A channel may have at most {max} topics; this would result in {requested}"),
                    }),
                    Err(SubscribeError::Rejected(rejected)) => {
                        let reasons: Vec<String> = rejected
                            .iter()
                            .map(|r| format!("{}: {}", r.id, r.rejection_reason.as_deref().unwrap_or("rejected")))
                            .collect();
                        json!({"result": "400", "status": "failure", "message": reasons.join("; ")})
                    }
                };
                self.reply(ctx, reply);
            }
            _ => self.reply(
                ctx,
                json!({"result": "400", "status": "error", "message": "Unrecognized message; expected ping or subscribe"}),
            ),
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for ChannelSocket {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match item {
            Ok(ws::Message::Text(text)) => self.on_text(&text, ctx),
            Ok(ws::Message::Ping(payload)) => {
                // Protocol-level pings are answered unless pongs are silenced
                // (a half-open connection answers nothing).
                if self.state.faults.pong() && !self.state.faults.blackhole() {
                    ctx.pong(&payload);
                }
            }
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(
                ws::Message::Pong(_)
                | ws::Message::Binary(_)
                | ws::Message::Continuation(_)
                | ws::Message::Nop,
            ) => {}
            Err(e) => {
                tracing::info!(channel = %self.channel_id, error = %e, "WebSocket protocol error: closing");
                ctx.close(Some(CloseReason {
                    code: CloseCode::Protocol,
                    description: Some(e.to_string()),
                }));
                ctx.stop();
            }
        }
    }
}

/// `GET /channels/{id}`: the WebSocket upgrade. An unknown or expired
/// channel is refused with a 404 before the upgrade.
pub(crate) async fn connect(
    req: HttpRequest,
    stream: web::Payload,
    path: web::Path<String>,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(err) = state.faults.take(Target::WebSocket) {
        return Err(err);
    }
    let channel_id = path.into_inner();
    if !state.socket_may_connect(&channel_id) {
        return Err(ApiError::not_found(format!(
            "Channel {channel_id} not found or expired"
        )));
    }
    let socket_id = state.next_socket_id();
    let progress = Arc::new(Progress::default());
    let actor = ChannelSocket {
        state: state.clone(),
        channel_id: channel_id.clone(),
        socket_id,
        progress: progress.clone(),
    };
    let (addr, response) = ws::WsResponseBuilder::new(actor, &req, stream)
        .frame_size(state.settings.max_frame_size)
        .start_with_addr()
        .map_err(|e| ApiError::bad_request(format!("WebSocket handshake failed: {e}")))?;
    if state
        .attach_socket(
            &channel_id,
            SocketRef {
                id: socket_id,
                addr: addr.clone(),
                progress,
            },
        )
        .is_err()
    {
        addr.do_send(Shutdown::channel_expired());
    }
    Ok(response)
}
