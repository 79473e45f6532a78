//! Shared state of the simulator: [`SimState`], which every handler and
//! actor holds: the settings, the directory, the faults and, behind one
//! mutex, tokens, channels with their subscriptions and socket, the event
//! log, counters, the contact-centre model and the background jobs.
//!
//! One mutex guards all of it. That is what makes the per-channel ordering
//! guarantee cheap: an event's `seq` is assigned and its frame is queued to
//! the socket actor's mailbox under the same lock, so mailbox order is seq
//! order. Nothing slow ever happens under the lock (no I/O, no awaits).
//!
//! The parts have a file each (`tokens`, `channels`, `subscriptions`,
//! `log`, `counters`, `view`, `settings`); this file puts them behind the
//! lock and does what takes more than one (a token's channels end with
//! it). The state reaches socket and generator actors only through the
//! `actix::Recipient`s of `sockets` and `jobs`: it imports no handler and
//! no actor.

mod channels;
mod counters;
mod jobs;
mod log;
mod settings;
mod sockets;
mod subscriptions;
mod tokens;
mod view;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Instant, SystemTime};

use rand::rngs::StdRng;
use rand::SeedableRng;

pub(crate) use channels::{ChannelInfo, Channels};
pub(crate) use counters::Counters;
pub(crate) use jobs::{Jobs, StopJob};
pub(crate) use log::{EmittedRecord, EventLog, EVENT_LOG_MAX_BYTES};
pub(crate) use settings::Settings;
pub(crate) use sockets::{ClosingNotice, Deliver, Flush, Progress, Shutdown, SocketRef};
pub(crate) use subscriptions::{channel_not_found, SubscribeError, SubscribeMode, TopicStatus};
pub(crate) use tokens::{Auth, RateLimitInfo, Tokens};
pub(crate) use view::{ChannelView, StateView};

use crate::config::SimulatorArgs;
use crate::directory::Directory;
use crate::errors::ApiError;
use crate::faults::Faults;
use crate::ids;
use crate::model::Model;

/// Everything mutable, behind [`SimState::lock`].
pub(crate) struct Inner {
    pub tokens: Tokens,
    pub channels: Channels,
    pub counters: Counters,
    pub log: EventLog,
    /// Round-robin position over the subscribed topics.
    pub cursor: usize,
    /// Seeded generator behind event bodies.
    pub rng: StdRng,
    /// Queue statistics and live conversations behind event bodies.
    pub model: Model,
    pub jobs: Jobs,
    /// Every topic a channel ever subscribed: the org's activity, which
    /// goes on (and is generated, to no socket) when no channel subscribes
    /// it any more, e.g. while the bridge is down and its channels are
    /// gone. Bounded by [`MAX_REMEMBERED_TOPICS`].
    pub remembered_topics: std::collections::BTreeSet<Arc<str>>,
}

/// Most topics remembered as the org's activity.
pub(crate) const MAX_REMEMBERED_TOPICS: usize = 200_000;

impl Inner {
    /// Appends to the event log (see [`EventLog::push`]), counting an
    /// event no socket got as dropped.
    pub fn record(&mut self, record: EmittedRecord, limit: usize, max_bytes: usize) {
        if record.socket.is_none() {
            self.counters.events_dropped += 1;
        }
        self.log.push(record, limit, max_bytes);
    }

    /// With `--channels-follow-token`: the channels of tokens no longer
    /// valid end (see [`Channels::end_with_gone_tokens`]).
    fn end_channels_of_gone_tokens(&mut self, settings: &Settings, organization_id: &str) {
        let Inner {
            tokens,
            channels,
            counters,
            ..
        } = self;
        channels.end_with_gone_tokens(tokens, settings, organization_id, counters);
    }
}

pub(crate) struct SimState {
    pub settings: Settings,
    /// Queues and users; changed at run time by the control API. Lock
    /// order: `inner` may be held while taking this one, never the reverse.
    directory: RwLock<Directory>,
    pub faults: Faults,
    inner: Mutex<Inner>,
    /// `events_delivered`, counted by the socket actors as they write.
    delivered: AtomicU64,
    shutting_down: AtomicBool,
}

impl SimState {
    pub fn new(args: &SimulatorArgs, bound_ws_base: String) -> std::io::Result<Self> {
        Ok(SimState {
            settings: Settings::new(args, bound_ws_base)?,
            directory: RwLock::new(Directory::new(args.queues, args.users)),
            faults: Faults::default(),
            inner: Mutex::new(Inner {
                tokens: Tokens::default(),
                channels: Channels::default(),
                counters: Counters::default(),
                log: EventLog::default(),
                cursor: 0,
                rng: StdRng::seed_from_u64(args.seed),
                model: Model::new(args.conversations_per_entity),
                jobs: Jobs::default(),
                remembered_topics: Default::default(),
            }),
            delivered: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves `Inner` consistent between
        // statements that can panic, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn directory(&self) -> RwLockReadGuard<'_, Directory> {
        // Directory changes cannot panic half-way: a poisoned lock is usable.
        self.directory.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn directory_mut(&self) -> RwLockWriteGuard<'_, Directory> {
        self.directory.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A socket handed one notification frame to its connection.
    pub fn count_delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    // ---- tokens -------------------------------------------------------

    /// Issues a token for `client_id`; returns it with its `expires_in`.
    pub fn issue_token(&self, client_id: &str) -> (String, u64) {
        let token = ids::access_token();
        let ttl = self.settings.token_ttl;
        let mut inner = self.lock();
        if inner
            .tokens
            .issue(token.clone(), client_id, SystemTime::now() + ttl)
        {
            let org = self.directory().organization_id.clone();
            inner.end_channels_of_gone_tokens(&self.settings, &org);
        }
        inner.counters.tokens_issued += 1;
        (token, ttl.as_secs())
    }

    /// Resolves a bearer token (unknown and expired ones are 401) and
    /// counts the call against the token's rate limit (beyond it: 429).
    pub fn authenticate(&self, token: &str) -> Result<(Auth, Option<RateLimitInfo>), ApiError> {
        let now = Instant::now();
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.tokens.expire_if_due(token, SystemTime::now()) {
            let org = self.directory().organization_id.clone();
            inner.end_channels_of_gone_tokens(&self.settings, &org);
        }
        inner
            .tokens
            .authenticate(token, now, &self.settings, &mut inner.counters)
    }

    /// Revokes the one live token equal to `token`, or starting with
    /// `prefix`; its channels end (see `--channels-follow-token`). Returns
    /// how many channels ended; `Err` says why nothing was revoked.
    pub fn revoke_token(
        &self,
        token: Option<&str>,
        prefix: Option<&str>,
    ) -> Result<usize, ApiError> {
        let org = self.directory().organization_id.clone();
        let mut inner = self.lock();
        inner.tokens.revoke_one(token, prefix)?;
        let before = inner.counters.channels_ended_with_token;
        inner.end_channels_of_gone_tokens(&self.settings, &org);
        Ok((inner.counters.channels_ended_with_token - before) as usize)
    }

    /// Makes every issued token invalid (as if revoked or expired).
    pub fn revoke_tokens(&self) -> usize {
        let org = self.directory().organization_id.clone();
        let mut inner = self.lock();
        let n = inner.tokens.revoke_all();
        inner.end_channels_of_gone_tokens(&self.settings, &org);
        n
    }

    // ---- channels -----------------------------------------------------

    /// Creates a channel. At the per-client limit, the least recently used
    /// channel (unconnected ones first) is removed and its socket closed.
    pub fn create_channel(&self, auth: &Auth) -> ChannelInfo {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner
            .channels
            .create(auth, &self.settings, &mut inner.counters)
    }

    /// Channels of the caller: created with this token (`token`, the
    /// default) or by this OAuth client (`oauthclient`), oldest first.
    pub fn list_channels(&self, auth: &Auth, whole_client: bool) -> Vec<ChannelInfo> {
        self.lock()
            .channels
            .list(auth, whole_client, &self.settings.ws_base)
    }

    /// Whether the caller's channel exists and has not expired.
    pub fn channel_alive(&self, auth: &Auth, id: &str) -> bool {
        self.lock().channels.alive_for(auth, id)
    }

    pub fn subscriptions(&self, auth: &Auth, id: &str) -> Result<Vec<TopicStatus>, SubscribeError> {
        let mut inner = self.lock();
        let channel = inner
            .channels
            .live_mut(id, Some(&auth.client_id))
            .ok_or(SubscribeError::ChannelNotFound)?;
        let topics = channel.topics.statuses();
        inner.channels.touch(id);
        Ok(topics)
    }

    /// PUT / POST subscriptions and the socket's subscribe/unsubscribe
    /// (see [`subscriptions`] for the replies). Subscribing (Replace/Add)
    /// extends the channel's expiry when `--subscribe-extends-channel` is
    /// on.
    pub fn subscribe(
        &self,
        client: Option<&str>,
        id: &str,
        requested: &[String],
        mode: SubscribeMode,
        ignore_errors: bool,
    ) -> Result<Vec<TopicStatus>, SubscribeError> {
        // Topics are checked before taking `inner`: a directory change
        // racing with this call is as if it came just after.
        let denied = self.faults.deny_topics();
        let checked = subscriptions::check(requested, mode, &self.directory(), &denied);

        let mut inner = self.lock();
        let channel = inner
            .channels
            .live_mut(id, client)
            .ok_or(SubscribeError::ChannelNotFound)?;
        let reply =
            channel
                .topics
                .apply(&checked, mode, ignore_errors, self.settings.max_topics)?;
        if mode != SubscribeMode::Remove && self.settings.subscribe_extends_channel {
            channel.expires = SystemTime::now() + self.settings.channel_ttl;
        }
        let subscribed: Vec<Arc<str>> = channel.topics.iter().cloned().collect();
        for topic in subscribed {
            if inner.remembered_topics.len() >= MAX_REMEMBERED_TOPICS {
                break;
            }
            inner.remembered_topics.insert(topic);
        }
        inner.channels.touch(id);
        Ok(reply)
    }

    /// DELETE subscriptions: removes all topics.
    pub fn clear_subscriptions(&self, auth: &Auth, id: &str) -> Result<(), SubscribeError> {
        let mut inner = self.lock();
        let channel = inner
            .channels
            .live_mut(id, Some(&auth.client_id))
            .ok_or(SubscribeError::ChannelNotFound)?;
        channel.topics.clear();
        inner.channels.touch(id);
        Ok(())
    }

    pub fn channel_exists(&self, id: &str) -> bool {
        self.lock().channels.contains(id)
    }

    pub fn touch(&self, id: &str) {
        self.lock().channels.touch(id);
    }

    /// Ends channels now (one or all), closing their sockets like expiry does.
    pub fn expire_channels(&self, channel: Option<&str>) -> usize {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.channels.expire(channel, &mut inner.counters)
    }

    /// Drops expired channels (closing their sockets) and expired tokens.
    pub fn sweep(&self) {
        let organization_id = self.directory().organization_id.clone();
        let now = SystemTime::now();
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.channels.sweep(now, &mut inner.counters);
        if inner.tokens.sweep(now) {
            inner.end_channels_of_gone_tokens(&self.settings, &organization_id);
        }
    }

    // ---- sockets ------------------------------------------------------

    /// Whether a WebSocket may connect to this channel (no owner check: the
    /// connectUri itself grants access).
    pub fn socket_may_connect(&self, id: &str) -> bool {
        self.lock().channels.live_mut(id, None).is_some()
    }

    pub fn next_socket_id(&self) -> u64 {
        self.lock().channels.next_socket_id()
    }

    /// Makes `socket` the channel's socket, closing the previous one. `Err`
    /// when the channel vanished meanwhile (the caller then closes the new
    /// socket).
    pub fn attach_socket(&self, id: &str, socket: SocketRef) -> Result<(), ()> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner
            .channels
            .attach_socket(id, socket, &mut inner.counters)
    }

    /// The socket `socket_id` has stopped: forgets it if it still is the
    /// channel's socket, and counts the frames it never wrote as dropped.
    pub fn detach_socket(&self, id: &str, socket_id: u64, progress: &Progress) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner
            .channels
            .detach_socket(id, socket_id, progress, &mut inner.counters);
    }

    /// Detaches the channel's socket if it still is `socket_id`; says so.
    pub fn take_socket(&self, id: &str, socket_id: u64) -> bool {
        self.lock().channels.take_socket(id, socket_id)
    }

    /// Detaches and returns the sockets of one channel or of all channels,
    /// so that events generated from now on count as undelivered.
    pub fn take_sockets(&self, channel: Option<&str>) -> Vec<(Arc<str>, SocketRef)> {
        self.lock().channels.take_sockets(channel)
    }

    /// The open sockets of one channel or of all channels (left attached).
    pub fn sockets(&self, channel: Option<&str>) -> Vec<(Arc<str>, SocketRef)> {
        self.lock().channels.sockets(channel)
    }

    /// Closes every socket (server shutdown).
    pub fn close_all_sockets(&self) {
        for (_, socket) in self.take_sockets(None) {
            socket.shutdown(Shutdown::server_stopping());
        }
    }

    // ---- views --------------------------------------------------------

    pub fn view(&self) -> StateView {
        let now = SystemTime::now();
        let inner = self.lock();
        StateView {
            channels: inner
                .channels
                .live_by_age(now)
                .into_iter()
                .map(ChannelView::of)
                .collect(),
            tokens_active: inner.tokens.active(now),
            counters: Counters {
                events_delivered: self.delivered.load(Ordering::Relaxed),
                ..inner.counters.clone()
            },
            last_seq: inner.log.last_seq(),
            generator_running: !inner.jobs.is_empty(),
            generator_jobs: inner.jobs.len(),
            faults: self.faults.view(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokens::MAX_TOKENS;

    fn entry(seq: u64, channel: &str, frame: &Arc<str>) -> EmittedRecord {
        EmittedRecord {
            seq,
            correlation_id: uuid::Uuid::nil(),
            topic: "v2.users.x.presence".into(),
            channel_id: Some(channel.into()),
            emitted_at_ms: 0,
            socket: None,
            frame: frame.clone(),
        }
    }

    fn state() -> SimState {
        SimState::new(&SimulatorArgs::default(), "ws://127.0.0.1:1".into()).unwrap()
    }

    #[test]
    fn the_oldest_tokens_are_revoked_beyond_the_limit() {
        let state = state();
        let (first, _) = state.issue_token("demo-client");
        let (second, _) = state.issue_token("demo-client");
        for _ in 0..MAX_TOKENS - 1 {
            state.issue_token("demo-client");
        }
        assert!(state.authenticate(&first).is_err(), "the oldest is gone");
        assert!(state.authenticate(&second).is_ok());
        assert_eq!(state.lock().tokens.len(), MAX_TOKENS);
    }

    #[test]
    fn event_log_is_bounded_by_entries() {
        let state = state();
        let mut inner = state.lock();
        let frame: Arc<str> = "x".into();
        for seq in 1..=10 {
            inner.record(entry(seq, "a", &frame), 4, usize::MAX);
        }
        let seqs: Vec<u64> = inner.log.entries.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [7, 8, 9, 10]);
        assert_eq!(inner.log.forgotten, 6);
        assert_eq!(inner.counters.events_dropped, 10);
    }

    #[test]
    fn event_log_is_bounded_by_frame_bytes_counting_shared_frames_once() {
        let state = state();
        let mut inner = state.lock();
        let frame: Arc<str> = "y".repeat(1000).into();
        for seq in 1..=10 {
            // Two channels got each event: one frame of 1000 bytes.
            inner.record(entry(seq, "a", &frame), usize::MAX, 3500);
            inner.record(entry(seq, "b", &frame), usize::MAX, 3500);
        }
        let seqs: Vec<u64> = inner.log.entries.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [8, 8, 9, 9, 10, 10]);
        assert_eq!(inner.log.bytes, 3000);
        assert_eq!(inner.log.forgotten, 14);
    }
}
