//! The channel WebSocket (`GET /channels/{id}`): one actor per connection.
//!
//! The actor sends heartbeats every `--heartbeat-interval`, answers the
//! text `{"message":"ping"}` with a pong, handles the subscribe/unsubscribe
//! messages, and writes the notification frames the generator queues in its
//! mailbox (in seq order: see `state`). The messages it takes from the
//! state are defined there (`state::sockets`), so that the state holds
//! recipients of them and not this actor's address.

use std::sync::Arc;

use actix::{Actor, ActorContext, AsyncContext, Handler, StreamHandler};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, CloseCode, CloseReason};
use serde::Deserialize;
use serde_json::json;

use crate::errors::ApiError;
use crate::faults::Target;
use crate::state::{
    ClosingNotice, Deliver, Flush, Progress, Shutdown, SimState, SocketRef, SubscribeError,
    SubscribeMode,
};

pub(crate) const HEARTBEAT: &str =
    r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#;
pub(crate) const PONG: &str = r#"{"topicName":"channel.metadata","eventBody":{"message":"pong"}}"#;

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
        self.progress
            .record_written(msg.frame.len() as u64, msg.seq);
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
            SocketRef::new(socket_id, addr.clone(), progress),
        )
        .is_err()
    {
        addr.do_send(Shutdown::channel_expired());
    }
    Ok(response)
}
