//! When the connection sets up its next channel, and why: planned moves
//! beside the live socket (its channel or token ending, `socket_closing`,
//! a lost channel, a revoked token), reconnects after the live socket was
//! lost, and retries after a failed attempt. Every attempt's delay is
//! decided here: a planned move's first attempt in [`plan_move`], its
//! retries (the live socket still delivering) and a reconnect's in
//! [`attempt_failed`] and [`current_lost`].
//!
//! [`plan_move`]: ConnectionActor::plan_move
//! [`attempt_failed`]: ConnectionActor::attempt_failed
//! [`current_lost`]: ConnectionActor::current_lost

use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;

use super::actor::ConnectionActor;
use super::establish::EstablishError;
use super::gap::Gap;
use super::schedule::STABLE_AFTER;
use super::silence::Verdict;
use super::socket::Retirement;
use crate::genesys::protocol;

impl ConnectionActor {
    /// Runs an attempt after `delay`, replacing any scheduled one.
    fn schedule_attempt(&mut self, ctx: &mut Context<Self>, delay: Duration) {
        self.cancel_scheduled(ctx);
        if delay.is_zero() {
            self.establish(ctx);
        } else {
            self.schedule.next = Some(ctx.run_later(delay, |act, ctx| {
                act.schedule.next = None;
                act.establish(ctx);
            }));
        }
    }

    /// Drops the scheduled attempt, if any (shutdown).
    pub(super) fn cancel_scheduled(&mut self, ctx: &mut Context<Self>) {
        if let Some(scheduled) = self.schedule.next.take() {
            ctx.cancel_future(scheduled);
        }
    }

    /// When a planned move away from the live socket must be done: its
    /// channel's (or the channel's token's) end, or the close the service
    /// announced with `socket_closing`. None without a live socket.
    fn move_deadline(&self) -> Option<Instant> {
        let current = self.current.as_ref()?;
        let end = current.channel.hard_end();
        Some(current.closing_by.map_or(end, |by| by.min(end)))
    }

    /// The time left to start an attempt of a planned move: its deadline
    /// less the time one attempt may take (a call's timeout). None
    /// without a live socket (a reconnect has no deadline: the gap is
    /// already open).
    fn move_room(&self) -> Option<Duration> {
        let deadline = self.move_deadline()?;
        let latest = deadline
            .checked_sub(self.settings.handshake_timeout)
            .unwrap_or(deadline);
        Some(latest.saturating_duration_since(Instant::now()))
    }

    /// The backoff's next delay, for an attempt of a planned move never
    /// later than the move's deadline allows (issue: moves that backed off
    /// past the token's end became gaps).
    fn next_delay(&mut self) -> Duration {
        match self.move_room() {
            Some(room) => self.schedule.backoff.next_delay_within(room),
            None => self.schedule.backoff.next_delay(),
        }
    }

    /// An attempt failed: the next one runs after the service's
    /// `Retry-After`, else a backoff delay; a planned move's never past its
    /// deadline.
    pub(super) fn attempt_failed(&mut self, ctx: &mut Context<Self>, error: &EstablishError) {
        let delay = match error.retry_after() {
            Some(asked) => asked.min(self.move_room().unwrap_or(asked)),
            None => self.next_delay(),
        };
        let reason = format!("setup failed: {error}");
        if self.current.is_some() {
            // The live socket keeps delivering meanwhile.
            self.telemetry
                .connections
                .move_failed(self.index, &reason, delay);
        } else {
            self.telemetry.connections.reconnecting(
                self.index,
                self.setup.candidate.as_ref().map(|c| c.channel.id.as_str()),
                &reason,
                delay,
            );
        }
        self.schedule_attempt(ctx, delay);
    }

    /// The watchdog's periodic check of the socket `id`.
    pub(super) fn watchdog(&mut self, id: u64, ctx: &mut Context<Self>) {
        let Some(current) = self.current.as_mut().filter(|c| c.socket.id == id) else {
            return;
        };
        match current
            .silence
            .check(Instant::now(), self.settings.heartbeat_timeout)
        {
            Verdict::Alive => {}
            Verdict::Resumed { stalled_for } => {
                self.telemetry
                    .connections
                    .stall_detected(self.index, stalled_for);
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
    pub(super) fn check_due(&mut self, id: u64, ctx: &mut Context<Self>) {
        let Some(current) = self.current.as_ref().filter(|c| c.socket.id == id) else {
            return;
        };
        if self.setup.running || self.schedule.next.is_some() {
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
    pub(super) fn plan_move(&mut self, ctx: &mut Context<Self>, reason: &str, backoff: bool) {
        if self.closing() {
            return;
        }
        let repeated = self
            .schedule
            .last_planned_move
            .is_some_and(|at| at.elapsed() < STABLE_AFTER);
        self.schedule.last_planned_move = Some(Instant::now());
        let delay = if backoff || repeated {
            self.next_delay()
        } else {
            Duration::ZERO
        };
        self.telemetry
            .connections
            .planned_move(self.index, reason, delay);
        // Whatever channel was kept for reuse belongs to the old plan.
        if let Some(unused) = self.setup.candidate.take() {
            if Some(&unused.channel.id) != self.current_channel_id() {
                self.empty_channel(unused.channel.id, ctx);
            }
        }
        if self.setup.running {
            // The attempt under way already makes a new channel or socket.
            return;
        }
        self.schedule_attempt(ctx, delay);
    }

    /// The current socket failed: keep reading it if it may still hold
    /// frames (`drain`), and set up another after a backoff delay.
    pub(super) fn current_lost(&mut self, ctx: &mut Context<Self>, reason: &str, drain: bool) {
        let Some(current) = self.current.take() else {
            return;
        };
        for timer in current.timers {
            ctx.cancel_future(timer);
        }
        let subscribed = self.subscription.subscribed.take();
        if !current.channel_gone {
            if current.channel.reusable() && self.setup.candidate.is_none() {
                self.setup.candidate = Some(current.channel);
            } else if self
                .setup
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
        if self.closing() {
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
        let delay = self.schedule.backoff.next_delay();
        self.telemetry.connections.reconnecting(
            self.index,
            self.setup.candidate.as_ref().map(|c| c.channel.id.as_str()),
            reason,
            delay,
        );
        if !self.setup.running {
            self.schedule_attempt(ctx, delay);
        }
    }
}
