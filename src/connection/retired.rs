//! Sockets and channels the connection left: a socket is closed politely
//! and still read until the service closes it too (frames the service sent
//! before it saw our close are ours to keep), and a channel is emptied of
//! its topics and left to expire.

use std::time::{Duration, Instant};

use actix::prelude::*;
use awc::ws;

use super::actor::ConnectionActor;
use super::socket::{Retired, Retirement, Socket, MOVE_SETTLE, RETIRED_MAX};
use crate::token::rest;

impl ConnectionActor {
    /// Best effort: a channel we left keeps living until it expires (there
    /// is no delete); without topics it costs the service nothing and
    /// sends us nothing.
    pub(super) fn empty_channel(&self, channel_id: String, ctx: &mut Context<Self>) {
        let api = self.api.clone();
        let tokens = self.tokens.clone();
        let telemetry = self.telemetry.clone();
        let backoff = self.schedule.backoff.clone();
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

    /// Closes `socket` politely (at once, or after [`MOVE_SETTLE`] for a
    /// move, emptying its channel first when `empty_channel`) and keeps
    /// reading it until the service closes it too, it stays idle (time
    /// the actor could read) for its retirement's limit, or
    /// [`RETIRED_MAX`] has passed.
    pub(super) fn retire(
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
    pub(super) fn shut_current(&mut self, ctx: &mut Context<Self>) {
        if let Some(current) = self.current.take() {
            for timer in current.timers {
                ctx.cancel_future(timer);
            }
            self.retire(current.socket, Retirement::Shutdown, false, ctx);
        }
    }

    /// Answers the shutdown's wait once nothing is left to read.
    pub(super) fn answer_closed(&mut self) {
        if self.setup.running || self.current.is_some() || !self.retired.is_empty() {
            return;
        }
        if let Some(waiters) = &mut self.shutdown {
            for waiter in waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    pub(super) fn end_retired(&mut self, id: u64, ctx: &mut Context<Self>) {
        if let Some(mut old) = self.retired.remove(&id) {
            ctx.cancel_future(old.socket.stream);
            ctx.cancel_future(old.check);
            old.socket.sink.close();
        }
        self.settle_overlap();
        self.answer_closed();
    }

    /// Ends the duplicate window once only one socket can deliver.
    pub(super) fn settle_overlap(&mut self) {
        if self.setup.running || !self.retired.is_empty() {
            return;
        }
        if let Some(summary) = self.overlap.end(Instant::now()) {
            self.telemetry.connections.overlap_ended(
                self.index,
                summary.duplicates,
                summary.lasted,
            );
        }
    }
}
