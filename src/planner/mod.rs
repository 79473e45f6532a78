//! The topic planner: lists the org, expands `[topics]`, assigns topics to
//! channels and keeps that assignment up to date while the bridge runs.
//!
//! At start-up it lists the org's queues and users ([`listing`];
//! retrying with backoff until a listing succeeds: without it there is
//! nothing to subscribe),
//! refuses a plan needing more than [`MAX_CHANNELS`] channels (the
//! refusal goes to `app::run`, which exits as for a configuration error),
//! and starts one supervised connection actor per channel.
//!
//! Then every `topics.refresh_interval_secs`, and on [`Refresh`] (SIGHUP),
//! it lists again and applies the difference: each connection whose list
//! changed gets [`SetTopics`], which it applies to its open channel with
//! subscription calls (no reconnect). Assignments are stable
//! ([`assignment`]); a new connection is started only when every channel
//! is full. A listing that fails keeps the current plan; one that shrinks
//! suddenly is held by the [`guard`]; a plan that outgrows
//! [`MAX_CHANNELS`] at run time subscribes what fits and turns `/readyz`
//! red until it fits again.
//!
//! The real work is in `started()`, so a supervised restart lists again;
//! the assignment and the connections survive the restart (the actor
//! keeps its state), so a restart moves no topic.

pub mod assignment;
pub mod guard;
pub mod listing;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::backoff::Backoff;
use crate::connection::{ConnectionActor, SetTopics};
use crate::genesys::api::GenesysApi;
use crate::subscriptions::{channels_needed, TooManyChannels, TopicsConfig, MAX_CHANNELS};
use crate::telemetry::{Telemetry, LIVENESS_INTERVAL};
use crate::token::TokenActor;

use assignment::Assignment;
use guard::{ShrinkGuard, Verdict};
use listing::OrgListing;

/// List the org now (SIGHUP).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Refresh;

/// Stop planning (shutdown): no listing and no new connection after this.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Starts the supervised connection actor of channel `index` with its
/// first topic list.
/// Starts connection `index` with its topics; `first_plan` is true for
/// the connections of the start-up plan (they take the downtime gap of a
/// previous run).
pub type StartConnection = Box<dyn Fn(usize, Vec<String>, bool) -> Addr<ConnectionActor>>;

/// What made a listing happen (for the logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    StartUp,
    Interval,
    Signal,
    Retry,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::StartUp => "start-up",
            Trigger::Interval => "interval",
            Trigger::Signal => "SIGHUP",
            Trigger::Retry => "retry",
        }
    }
}

/// The ids the current assignment was made from.
#[derive(Debug, Default)]
struct Planned {
    queues: Vec<String>,
    users: Vec<String>,
}

pub struct Planner {
    config: TopicsConfig,
    /// `None`: list only on [`Refresh`].
    refresh_interval: Option<Duration>,
    api: GenesysApi,
    tokens: Addr<TokenActor>,
    telemetry: Arc<Telemetry>,
    /// Retries within one listing (see `token::rest`).
    call_backoff: Backoff,
    /// Delay between failed listings.
    retry: Backoff,
    start_connection: StartConnection,
    /// This planner's connections, by channel index.
    connections: Vec<Addr<ConnectionActor>>,
    /// The same addresses, for the shutdown in `app`.
    shared: Arc<Mutex<Vec<Addr<ConnectionActor>>>>,
    assignment: Assignment,
    /// `None` until the first plan.
    planned: Option<Planned>,
    queue_guard: ShrinkGuard,
    user_guard: ShrinkGuard,
    listing: bool,
    /// A refresh was asked for while a listing ran.
    again: bool,
    next: Option<SpawnHandle>,
    closing: bool,
    /// Where a start-up plan over the channel limit is reported.
    start_refused: Option<tokio::sync::oneshot::Sender<TooManyChannels>>,
    /// Topics are left out for want of channels (logged once).
    over_limit: bool,
    /// Bumped on restart: a listing started before it is ignored.
    generation: u64,
}

impl Planner {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: TopicsConfig,
        api: GenesysApi,
        tokens: Addr<TokenActor>,
        telemetry: Arc<Telemetry>,
        backoff: Backoff,
        start_connection: StartConnection,
        shared: Arc<Mutex<Vec<Addr<ConnectionActor>>>>,
        start_refused: tokio::sync::oneshot::Sender<TooManyChannels>,
    ) -> Self {
        let refresh_interval = (config.refresh_interval_secs > 0)
            .then(|| Duration::from_secs(config.refresh_interval_secs));
        Planner {
            config,
            refresh_interval,
            api,
            tokens,
            telemetry,
            retry: backoff.clone(),
            call_backoff: backoff,
            start_connection,
            connections: Vec::new(),
            shared,
            assignment: Assignment::default(),
            planned: None,
            queue_guard: ShrinkGuard::default(),
            user_guard: ShrinkGuard::default(),
            listing: false,
            again: false,
            next: None,
            closing: false,
            start_refused: Some(start_refused),
            over_limit: false,
            generation: 0,
        }
    }

    fn refresh(&mut self, ctx: &mut Context<Self>, trigger: Trigger) {
        if self.closing {
            return;
        }
        if self.listing {
            self.again = true;
            return;
        }
        if let Some(next) = self.next.take() {
            ctx.cancel_future(next);
        }
        self.listing = true;
        let generation = self.generation;
        let started = Instant::now();
        let config = self.config.clone();
        let api = self.api.clone();
        let tokens = self.tokens.clone();
        let telemetry = self.telemetry.clone();
        let backoff = self.call_backoff.clone();
        let listing =
            async move { listing::list_org(&config, &api, &tokens, &telemetry, &backoff).await };
        ctx.spawn(listing.into_actor(self).map(move |result, act, ctx| {
            if act.generation != generation || act.closing {
                return;
            }
            act.listing = false;
            match result {
                Ok(listing) => {
                    act.retry.reset();
                    act.apply(listing, trigger, started.elapsed());
                    act.schedule(ctx, act.refresh_interval, Trigger::Interval);
                }
                Err(e) => {
                    let backoff = act.retry.next_delay();
                    // With a plan in hand the next regular listing is soon
                    // enough; without one, nothing is subscribed until a
                    // listing succeeds.
                    let delay = match (&act.planned, act.refresh_interval) {
                        (Some(_), Some(interval)) => interval.max(backoff),
                        _ => backoff,
                    };
                    act.telemetry
                        .plan
                        .listing_failed(&e, delay, act.planned.is_some());
                    act.schedule(ctx, Some(delay), Trigger::Retry);
                }
            }
            if std::mem::take(&mut act.again) {
                act.refresh(ctx, Trigger::Signal);
            }
        }));
    }

    fn schedule(&mut self, ctx: &mut Context<Self>, delay: Option<Duration>, trigger: Trigger) {
        if let Some(next) = self.next.take() {
            ctx.cancel_future(next);
        }
        self.next = delay.map(|delay| {
            ctx.run_later(delay, move |act, ctx| {
                act.next = None;
                act.refresh(ctx, trigger);
            })
        });
    }

    /// Plans with a successful listing and tells the connections.
    fn apply(&mut self, listing: OrgListing, trigger: Trigger, took: Duration) {
        let first = self.planned.is_none();
        let planned = self.planned.take().unwrap_or_default();
        let queues = self.judged("queues", &planned.queues, listing.queues, first);
        let users = self.judged("users", &planned.users, listing.users, first);
        let topics = self.config.expand(&queues, &users);
        if first {
            if let Err(refused) = self
                .config
                .check_fits(topics.len(), queues.len(), users.len())
            {
                self.telemetry.plan.refused(&refused);
                if let Some(report) = self.start_refused.take() {
                    let _ = report.send(refused);
                }
                self.closing = true;
                return;
            }
        }
        let change = self.assignment.apply(&topics, MAX_CHANNELS);
        for &index in &change.changed {
            let list = Arc::new(self.assignment.channels()[index].clone());
            self.connections[index].do_send(SetTopics(list));
        }
        let first_plan = self.planned.is_none();
        for &index in &change.opened {
            let addr = (self.start_connection)(
                index,
                self.assignment.channels()[index].clone(),
                first_plan,
            );
            self.connections.push(addr.clone());
            lock(&self.shared).push(addr);
        }
        if change.left_out > 0 {
            self.telemetry.plan.over_channel_limit(
                topics.len(),
                channels_needed(topics.len()),
                MAX_CHANNELS,
                change.left_out,
                !self.over_limit,
            );
            self.over_limit = true;
        } else if std::mem::take(&mut self.over_limit) {
            self.telemetry
                .plan
                .fit_again(topics.len(), self.connections.len());
        }
        self.telemetry.plan.planned(
            trigger.as_str(),
            queues.len(),
            users.len(),
            self.assignment.topics(),
            self.connections.len(),
            change.added,
            change.removed,
            took,
        );
        self.planned = Some(Planned { queues, users });
    }

    /// The ids to plan with for one kind of entity: the listing, unless
    /// the guard holds its removals. The first listing is taken as it is.
    fn judged(
        &mut self,
        kind: &'static str,
        planned: &[String],
        listed: Option<Vec<String>>,
        first: bool,
    ) -> Vec<String> {
        let Some(listed) = listed else {
            return Vec::new();
        };
        if first {
            return listed;
        }
        let guard = match kind {
            "queues" => &mut self.queue_guard,
            _ => &mut self.user_guard,
        };
        let verdict = guard.judge(planned, &listed);
        if let Verdict::Hold { removed, why } = &verdict {
            self.telemetry
                .plan
                .listing_held(kind, planned.len(), listed.len(), *removed, why);
        }
        guard::effective(planned, listed, &verdict)
    }
}

impl Actor for Planner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        const NAME: &str = "planner";
        self.telemetry.alive(NAME);
        ctx.run_interval(LIVENESS_INTERVAL, |act, _| act.telemetry.alive(NAME));
        self.refresh(ctx, Trigger::StartUp);
    }
}

impl Supervised for Planner {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.generation += 1;
        self.listing = false;
        self.again = false;
        self.next = None;
        self.retry.reset();
    }
}

impl Handler<Refresh> for Planner {
    type Result = ();

    fn handle(&mut self, _: Refresh, ctx: &mut Context<Self>) {
        self.refresh(ctx, Trigger::Signal);
    }
}

impl Handler<Shutdown> for Planner {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        self.closing = true;
        if let Some(next) = self.next.take() {
            ctx.cancel_future(next);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
