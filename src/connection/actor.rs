//! The connection actor's state (grouped by the file that works on each
//! part), its life as an actor (start, supervised restart, the messages
//! it answers) and the small helpers every part uses. The behaviour lives
//! beside it: [`super::establish`], [`super::moves`], [`super::inbound`],
//! [`super::subscribe`], [`super::retired`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use actix::io::WriteHandler;
use actix::prelude::*;
use awc::ws;

use super::gap::Gap;
use super::messages::{Close, SetTopics};
use super::overlap::Overlap;
use super::schedule::Schedule;
use super::settings::{ConnectionSettings, CLOSE_WAIT, NOT_RUNNING};
use super::setup::Setup;
use super::snapshot_state::Snapshots;
use super::socket::{Current, Retired};
use super::subscription::Subscription;
use crate::backoff::Backoff;
use crate::buffer::Buffer;
use crate::genesys::api::GenesysApi;
use crate::telemetry::{ConnectionState, Telemetry, LIVENESS_INTERVAL};
use crate::token::TokenActor;

pub struct ConnectionActor {
    pub(super) index: usize,
    /// The planner's list (the latest [`SetTopics`]).
    pub(super) topics: Arc<Vec<String>>,
    pub(super) settings: ConnectionSettings,
    pub(super) api: GenesysApi,
    pub(super) tokens: Addr<TokenActor>,
    pub(super) buffer: Buffer,
    pub(super) telemetry: Arc<Telemetry>,
    /// The live socket, if any.
    pub(super) current: Option<Current>,
    /// Sockets we left, read until they end ([`super::retired`]), by socket id.
    pub(super) retired: HashMap<u64, Retired>,
    /// The attempt under way and the channel it may reuse ([`super::establish`]).
    pub(super) setup: Setup,
    /// When the next attempt runs, and the backoff ([`super::moves`]).
    pub(super) schedule: Schedule,
    /// The open channel's subscription and its updates ([`super::subscribe`]).
    pub(super) subscription: Subscription,
    pub(super) overlap: Overlap,
    pub(super) gap: Option<Gap>,
    /// Observation snapshots ([`super::snapshot`]).
    pub(super) snapshots: Snapshots,
    /// Set by [`Close`]: no attempt after it. Its waiters are answered
    /// once no socket is left to read.
    pub(super) shutdown: Option<Vec<tokio::sync::oneshot::Sender<()>>>,
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
            telemetry,
            current: None,
            retired: HashMap::new(),
            setup: Setup::default(),
            snapshots: Snapshots::new(backoff.clone()),
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
    pub(super) fn closing(&self) -> bool {
        self.shutdown.is_some()
    }

    pub(super) fn phase(&self, phase: &'static str, detail: Option<String>) {
        self.telemetry.connections.phase(
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

    pub(super) fn current_channel_id(&self) -> Option<&String> {
        self.current.as_ref().map(|c| &c.channel.channel.id)
    }

    pub(super) fn send_text(&mut self, text: &str) {
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
        ctx.run_interval(LIVENESS_INTERVAL, move |act, ctx| {
            act.telemetry.alive(name);
            act.snapshot_owed(ctx);
        });
        let every = self.settings.snapshots.interval_secs;
        if every > 0 {
            ctx.run_interval(std::time::Duration::from_secs(every), |act, ctx| {
                act.snapshot_soon(ctx, "interval")
            });
        }
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
                        crate::genesys::channel_id::channel_label(&current.channel.channel.id)
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
        self.snapshots.restart();
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
            self.telemetry.gaps.socket_gap(&record);
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
