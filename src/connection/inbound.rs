//! Every frame the sockets deliver, the live one's and the retired ones':
//! fragments reassembled, the protocol answered, `v2.system.*` notices
//! acted on (moves, resubscribing, revoked tokens), notifications kept once
//! (the overlap window) and appended to the buffer, and anything else
//! quarantined.

use std::time::{Instant, SystemTime};

use actix::prelude::*;
use awc::ws;
use bytes::{Bytes, BytesMut};

use super::actor::ConnectionActor;
use super::overlap;
use super::socket::{Socket, SOCKET_CLOSING_WITHIN};
use crate::buffer::field_fits;
use crate::genesys::protocol::{self, Inbound, SystemEvent};
use crate::token::TokenRevoked;

/// One item of a socket's stream, tagged with the socket's id; `None`
/// marks the end of the stream.
pub(super) type Tagged = (
    u64,
    Option<Result<ws::Frame, actix_http::ws::ProtocolError>>,
);

impl StreamHandler<Tagged> for ConnectionActor {
    fn handle(&mut self, (id, item): Tagged, ctx: &mut Context<Self>) {
        self.on_frame(id, item, ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // Ends are signalled in-band (a `None` item), tagged with their
        // socket; the default would stop the actor.
    }
}

impl ConnectionActor {
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
        self.telemetry.connections.protocol_frame();
        if !is_current {
            // A socket we left: only its notifications still matter.
            return;
        }
        match inbound {
            Inbound::System(SystemEvent::SocketClosing) => {
                if let Some(current) = &mut self.current {
                    let by = Instant::now() + SOCKET_CLOSING_WITHIN;
                    current.closing_by = Some(current.closing_by.map_or(by, |at| at.min(by)));
                }
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
                self.telemetry
                    .connections
                    .overlap_late_duplicates(self.index, late);
            }
            return;
        }
        // Queued for the buffer's writer thread: no disk work on this one.
        match self
            .buffer
            .submit(crate::now_ms(), topic_name, correlation_id, text.as_bytes())
        {
            Ok(()) => {
                if let Some(key) = key {
                    self.overlap.kept(key, socket, Instant::now());
                }
                self.snapshot_observe(topic_name, text);
                self.telemetry.connections.event_received();
                self.telemetry.buffer.write_ok();
            }
            Err(e) => self.telemetry.buffer.write_failed(&e),
        }
    }

    /// A frame that is not a notification: logged, counted, and kept in the
    /// buffer's quarantine rather than dropped.
    fn reject_frame(&self, reason: &str, frame: &[u8]) {
        self.telemetry
            .connections
            .malformed_frame(self.index, &reason, frame.len());
        if let Err(e) = self.buffer.submit_quarantine(reason, frame) {
            self.telemetry.buffer.write_failed(&e);
        }
    }
}
