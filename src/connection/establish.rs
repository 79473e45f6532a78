//! One attempt to set up a channel, socket and subscription (token →
//! channel, reused if the service still has it, else created → socket →
//! `PUT subscriptions`), and the subscribed socket becoming the live one.
//! When an attempt runs is decided in [`super::moves`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::io::SinkWrite;
use actix::prelude::*;
use awc::ws;
use futures_util::stream::StreamExt;

use super::actor::ConnectionActor;
use super::channel::{self, HeldChannel};
use super::schedule::STABLE_AFTER;
use super::settings::ConnectionSettings;
use super::silence::SilenceClock;
use super::slots;
use super::socket::{Current, Retirement, Socket};
use crate::backoff::Backoff;
use crate::genesys::api::{GenesysApi, TopicOutcome};
use crate::genesys::protocol;
use crate::secret::Secret;
use crate::telemetry::Telemetry;
use crate::token::{rest, ExpiryOf, GetToken, RenewToken, TokenActor};

/// What a successful attempt produces.
struct Established {
    channel: HeldChannel,
    framed: actix_codec::Framed<awc::BoxedSocket, ws::Codec>,
    outcomes: Vec<TopicOutcome>,
    /// The topic list the channel was subscribed with.
    topics: Arc<Vec<String>>,
    slot: slots::Slot,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum EstablishError {
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
    /// How long the service asked us to wait, if it did.
    pub(super) fn retry_after(&self) -> Option<Duration> {
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
    /// Sets up a channel, socket and subscription: beside the live socket
    /// when there is one (a planned move), else to replace a lost one.
    pub(super) fn establish(&mut self, ctx: &mut Context<Self>) {
        if self.closing() || self.setup.running {
            return;
        }
        if self.current.is_none() {
            self.phase("connecting", None);
        }
        self.setup.running = true;
        self.setup.attempt += 1;
        let attempt = self.setup.attempt;
        if self.current.is_some() || !self.retired.is_empty() {
            self.overlap.begin(Instant::now());
        }
        let plan = AttemptPlan {
            reuse: self.setup.candidate.take().filter(HeldChannel::reusable),
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
            self.schedule.backoff.clone(),
            self.topics.clone(),
            self.settings.clone(),
        );
        ctx.spawn(
            run.into_actor(self)
                .map(move |(result, leftover), act, ctx| {
                    if act.setup.attempt != attempt {
                        return;
                    }
                    act.setup.running = false;
                    if act.closing() {
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
                            act.setup.candidate = leftover;
                            act.attempt_failed(ctx, &error);
                        }
                    }
                    act.settle_overlap();
                }),
        );
    }

    /// The attempt's socket is subscribed: it becomes the live one, and
    /// the socket it replaces (a planned move) is retired.
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
        self.setup.last_socket_id += 1;
        let id = self.setup.last_socket_id;
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
            ctx.run_later(STABLE_AFTER, |act, _| act.schedule.backoff.reset()),
        ];
        // The watchdog checks expiry too; this catches it on time.
        timers.push(
            ctx.run_later(channel.until_due(Instant::now()), move |act, ctx| {
                act.check_due(id, ctx)
            }),
        );
        self.telemetry.connections.open(
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
            closing_by: None,
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
        if let Some(unused) = self.setup.candidate.take() {
            if Some(&unused.channel.id) != self.current_channel_id() {
                self.empty_channel(unused.channel.id, ctx);
            }
        }
        let gap_ended = self.gap.is_some();
        if let Some(gap) = self.gap.take() {
            let record = gap.record(self.index, false);
            self.telemetry.gaps.socket_gap(&record);
            // Off this thread: sled writes on the blocking pool.
            drop(self.buffer.record_gap(record, gap.topics));
        }
        self.subscription.subscribed = Some(topics);
        // A gap missed deltas: the queues' state is taken afresh, as at
        // start-up (a planned move lost nothing and needs none).
        if gap_ended || !self.snapshots.asked_once {
            self.snapshot_soon(ctx, if gap_ended { "gap" } else { "start-up" });
        }
        self.apply_topics(ctx);
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
    telemetry
        .connections
        .channel_created(index, &channel.id, channel.expires.as_deref());
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
