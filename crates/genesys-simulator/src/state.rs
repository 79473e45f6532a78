//! Shared state of the simulator: tokens, channels with their subscriptions
//! and socket, the event log and counters.
//!
//! One mutex guards all of it. That is what makes the per-channel ordering
//! guarantee cheap: an event's `seq` is assigned and its frame is queued to
//! the socket actor's mailbox under the same lock, so mailbox order is seq
//! order. Nothing slow ever happens under the lock (no I/O, no awaits).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime};

use actix::Addr;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

use super::clock::{epoch_ms, rfc3339};
use super::config::{public_ws_base, SimulatorArgs};
use super::directory::Directory;
use super::errors::ApiError;
use super::faults::Faults;
use super::generator::GeneratorJob;
use super::ids;
use super::socket::{ChannelSocket, ClosingNotice, Progress, Shutdown};
use super::topics::{Rejection, Topic};

/// Most bytes of frame text the event log keeps (each event's frame counted
/// once, however many channels got it): with `observation_conversations`
/// frames reach megabytes, so an entry count alone does not bound memory.
pub(crate) const EVENT_LOG_MAX_BYTES: usize = 256 * 1024 * 1024;

/// Most access tokens valid at once. Tokens live `--token-ttl` (a day by
/// default): a client logging in in a loop would otherwise grow the table
/// without end. Beyond it the oldest token is revoked (its next call: 401).
pub(crate) const MAX_TOKENS: usize = 100_000;

/// Validated, immutable settings derived from [`SimulatorArgs`]. Not
/// `Debug`: it holds the client secret, which must never reach a log.
pub(crate) struct Settings {
    pub client_id: String,
    pub client_secret: String,
    pub heartbeat: Duration,
    pub token_ttl: Duration,
    pub channel_ttl: Duration,
    pub max_channels: usize,
    pub max_topics: usize,
    /// `ws://host:port` (or the `--public-url` equivalent), no trailing slash.
    pub ws_base: String,
    pub bad_credentials_status: u16,
    pub subscribe_extends_channel: bool,
    pub channels_follow_token: bool,
    /// REST requests per sliding minute per token; 0: no limit.
    pub rate_limit_per_minute: u32,
    pub rate_limit_form: RateLimitForm,
    pub expired_token_code: ExpiredTokenCode,
    /// Between `v2.system.socket_closing` and the socket's close.
    pub socket_closing_grace: Duration,
    pub event_log_limit: usize,
    pub max_frame_size: usize,
}

impl Settings {
    pub fn new(args: &SimulatorArgs, bound_ws_base: String) -> std::io::Result<Self> {
        let ws_base = match &args.public_url {
            Some(url) => public_ws_base(url)?,
            None => bound_ws_base,
        };
        Ok(Settings {
            client_id: args.client_id.clone(),
            client_secret: args.client_secret.clone(),
            heartbeat: args.heartbeat(),
            token_ttl: Duration::from_secs(args.token_ttl),
            channel_ttl: Duration::from_secs(args.channel_ttl),
            max_channels: args.max_channels,
            max_topics: args.max_topics_per_channel,
            ws_base,
            bad_credentials_status: args.bad_credentials_status,
            subscribe_extends_channel: args.subscribe_extends_channel,
            channels_follow_token: args.channels_follow_token,
            rate_limit_per_minute: args.rate_limit_per_minute,
            rate_limit_form: match args.rate_limit_429.as_str() {
                "retry-after" => RateLimitForm::RetryAfter,
                "no-retry-after" => RateLimitForm::NoRetryAfter,
                _ => RateLimitForm::Alternate,
            },
            expired_token_code: match args.expired_token_code.as_str() {
                "bad-credentials" => ExpiredTokenCode::BadCredentials,
                "alternate" => ExpiredTokenCode::Alternate,
                _ => ExpiredTokenCode::CredentialsExpired,
            },
            socket_closing_grace: Duration::from_secs_f64(args.socket_closing_grace),
            event_log_limit: args.event_log_limit,
            max_frame_size: args.max_frame_size,
        })
    }
}

/// Which 401 code an expired token gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExpiredTokenCode {
    CredentialsExpired,
    BadCredentials,
    /// The two in turn, `credentials.expired` first.
    Alternate,
}

/// Which 429 the per-token rate limit answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateLimitForm {
    /// `too.many.requests.retry.after` with `Retry-After`.
    RetryAfter,
    /// `too.many.requests`, no `Retry-After`: the client must pick a delay.
    NoRetryAfter,
    /// The two in turn, the one without `Retry-After` first.
    Alternate,
}

/// The rate limit window one REST call was counted in, for the
/// `inin-ratelimit-*` headers of its response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateLimitInfo {
    pub allowed: u32,
    pub count: u32,
    /// Seconds until the oldest counted request leaves the window.
    pub reset_secs: u64,
}

/// The sliding window of the per-token rate limit.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Who is calling: the OAuth client and the token it used.
#[derive(Debug, Clone)]
pub(crate) struct Auth {
    pub client_id: String,
    pub token: String,
}

#[derive(Debug)]
struct TokenRecord {
    client_id: String,
    expires: SystemTime,
    /// When its REST calls within the last minute came (at most the rate
    /// limit's worth: the bound of this queue).
    recent_requests: VecDeque<Instant>,
}

/// The open WebSocket of a channel.
#[derive(Debug, Clone)]
pub(crate) struct SocketRef {
    pub id: u64,
    pub addr: Addr<ChannelSocket>,
    /// What the socket was given and wrote.
    pub progress: Arc<Progress>,
}

#[derive(Debug)]
pub(crate) struct Channel {
    pub id: Arc<str>,
    pub client_id: String,
    /// Token that created the channel (for `includechannels=token`).
    token: String,
    created_serial: u64,
    pub expires: SystemTime,
    /// LRU clock value of the last use (creation, subscription call, socket).
    last_used: u64,
    /// Subscribed topics in subscription order, plus a set for lookups.
    pub topics: Vec<Arc<str>>,
    topic_set: HashSet<Arc<str>>,
    pub socket: Option<SocketRef>,
    pub sockets_opened: u64,
}

impl Channel {
    pub fn alive(&self, now: SystemTime) -> bool {
        self.expires > now
    }
}

/// A channel as the REST API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChannelInfo {
    pub id: String,
    pub connect_uri: String,
    pub expires: String,
}

/// One entry of a subscription reply.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TopicStatus {
    pub id: String,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_permissions: Option<Vec<String>>,
}

impl TopicStatus {
    fn permitted(id: &str) -> Self {
        TopicStatus {
            id: id.to_owned(),
            state: "Permitted",
            rejection_reason: None,
            missing_permissions: None,
        }
    }

    fn rejected(id: &str, rejection: &Rejection) -> Self {
        TopicStatus {
            id: id.to_owned(),
            state: "Rejected",
            rejection_reason: Some(rejection.reason.clone()),
            missing_permissions: (!rejection.missing_permissions.is_empty())
                .then(|| rejection.missing_permissions.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubscribeMode {
    /// PUT: the request becomes the channel's list.
    Replace,
    /// POST and the socket `subscribe` message: added to the list.
    Add,
    /// The socket `unsubscribe` message: removed from the list.
    Remove,
}

#[derive(Debug)]
pub(crate) enum SubscribeError {
    ChannelNotFound,
    TooManyTopics {
        requested: usize,
        max: usize,
    },
    /// Without `ignoreErrors` any rejection fails the whole request.
    Rejected(Vec<TopicStatus>),
}

impl SubscribeError {
    /// The REST reply for this failure.
    pub fn into_api_error(self, channel_id: &str) -> ApiError {
        match self {
            SubscribeError::ChannelNotFound => channel_not_found(channel_id),
            SubscribeError::TooManyTopics { requested, max } => ApiError::bad_request(format!(
                "A channel may have at most {max} topic subscriptions; this request would result in {requested}."
            )),
            SubscribeError::Rejected(statuses) => {
                let names: Vec<&str> = statuses.iter().map(|s| s.id.as_str()).collect();
                let details = statuses
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "errorCode": "notification.topic.rejected",
                            "fieldName": "id",
                            "entityId": s.id,
                            "entityName": s.rejection_reason,
                        })
                    })
                    .collect();
                ApiError::new(
                    actix_web::http::StatusCode::FORBIDDEN,
                    "missing.permissions",
                    format!("Subscription rejected for topic(s): {}", names.join(", ")),
                )
                .with_details(details)
            }
        }
    }
}

pub(crate) fn channel_not_found(channel_id: &str) -> ApiError {
    ApiError::not_found(format!("Channel {channel_id} not found"))
}

/// One generated event as delivered (or not) to one channel.
#[derive(Debug, Clone)]
pub(crate) struct EmittedRecord {
    pub seq: u64,
    pub correlation_id: uuid::Uuid,
    pub topic: Arc<str>,
    /// `None` when no channel was subscribed to the topic.
    pub channel_id: Option<Arc<str>>,
    pub emitted_at_ms: u64,
    /// The socket the frame was queued to (`None`: dropped at once, no open
    /// socket or black-holed).
    pub socket: Option<Arc<Progress>>,
    pub frame: Arc<str>,
}

impl EmittedRecord {
    /// Whether the frame was handed to an open socket (so far: a frame
    /// still queued for a client that does not read is not, yet).
    pub fn delivered(&self) -> bool {
        self.socket.as_ref().is_some_and(|p| p.wrote(self.seq))
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Counters {
    pub tokens_issued: u64,
    pub channels_created: u64,
    pub channels_expired: u64,
    pub channels_evicted: u64,
    pub sockets_opened: u64,
    pub events_generated: u64,
    /// Per receiving channel: an event for two channels counts twice.
    /// Frames handed to an open socket (see `SimState::count_delivered`).
    pub events_delivered: u64,
    /// Events for channels without an open socket (and black-holed ones),
    /// and frames still queued to a socket when it closed.
    pub events_dropped: u64,
    /// 429s of the per-token rate limit, with and without `Retry-After`.
    pub rate_limited_with_retry_after: u64,
    pub rate_limited_without_retry_after: u64,
    /// Channels that ended with the token that created them.
    pub channels_ended_with_token: u64,
}

/// Everything mutable, behind [`SimState::lock`].
pub(crate) struct Inner {
    tokens: HashMap<String, TokenRecord>,
    /// Issued tokens, oldest first (may still name removed ones).
    token_order: VecDeque<String>,
    /// Tokens that expired (not revoked), newest last, at most
    /// `MAX_TOKENS`: they answer `credentials.expired` rather than
    /// `bad.credentials`.
    expired_tokens: HashSet<String>,
    expired_order: VecDeque<String>,
    /// 401s answered for expired tokens (chooses the code when alternating).
    expired_answers: u64,
    pub channels: HashMap<Arc<str>, Channel>,
    serial: u64,
    next_socket_id: u64,
    pub counters: Counters,
    /// Next event sequence number (the first event gets 1).
    pub next_seq: u64,
    pub log: VecDeque<EmittedRecord>,
    /// Frame bytes held by `log` (each seq once).
    log_bytes: usize,
    /// Entries forgotten from the front of `log` so far.
    pub forgotten: u64,
    /// Round-robin position over the subscribed topics.
    pub cursor: usize,
    /// Seeded generator behind event bodies.
    pub rng: StdRng,
    /// Queue statistics and live conversations behind event bodies.
    pub model: super::events::Model,
    pub jobs: HashMap<u64, Addr<GeneratorJob>>,
    pub next_job_id: u64,
    /// 429s answered so far (chooses the form when alternating).
    rate_limited: u64,
}

impl Inner {
    fn tick(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    fn touch(&mut self, channel_id: &str) {
        let tick = self.tick();
        if let Some(channel) = self.channels.get_mut(channel_id) {
            channel.last_used = tick;
        }
    }

    /// Appends to the event log, forgetting the oldest entries beyond
    /// `limit` entries or `max_bytes` bytes of frames (the newest entry is
    /// always kept).
    pub fn record(&mut self, record: EmittedRecord, limit: usize, max_bytes: usize) {
        if record.socket.is_none() {
            self.counters.events_dropped += 1;
        }
        // Copies of one event (one per channel) are adjacent and share the
        // frame: its bytes count while any copy is in the log.
        if self.log.back().map(|r| r.seq) != Some(record.seq) {
            self.log_bytes += record.frame.len();
        }
        self.log.push_back(record);
        while self.log.len() > limit || (self.log_bytes > max_bytes && self.log.len() > 1) {
            let Some(gone) = self.log.pop_front() else {
                break;
            };
            self.forgotten += 1;
            if self.log.front().map(|r| r.seq) != Some(gone.seq) {
                self.log_bytes -= gone.frame.len();
            }
        }
    }

    /// Gives up on a socket whose client does not read: detaches it from
    /// its channel and tells it to close after what is already queued.
    pub fn give_up_socket(&mut self, channel_id: &str, socket: &SocketRef) {
        socket.progress.give_up();
        if let Some(channel) = self.channels.get_mut(channel_id) {
            if channel.socket.as_ref().is_some_and(|s| s.id == socket.id) {
                channel.socket = None;
            }
        }
        tracing::warn!(
            channel = channel_id,
            socket = socket.id,
            backlog_bytes = socket.progress.backlog_bytes(),
            "client is not reading: closing its socket"
        );
        socket.addr.do_send(Shutdown::too_slow());
    }

    /// With `--channels-follow-token`: every channel whose token is no
    /// longer valid gets a `token_revoked` notice on its socket, then is
    /// removed (socket closed). Called after tokens were removed.
    fn end_channels_of_gone_tokens(&mut self, settings: &Settings, organization_id: &str) {
        if !settings.channels_follow_token {
            return;
        }
        let orphans: Vec<Arc<str>> = self
            .channels
            .values()
            .filter(|c| !self.tokens.contains_key(&c.token))
            .map(|c| c.id.clone())
            .collect();
        for id in orphans {
            let Some(channel) = self.channels.remove(&id) else {
                continue;
            };
            tracing::info!(channel = %id, "the channel's token expired or was revoked: channel removed");
            if let Some(socket) = &channel.socket {
                let body = serde_json::json!({
                    "channelId": id.as_ref(),
                    "systemTopicType": "token_revoked",
                    "message": "The token that created this channel expired or was revoked; the channel is closed",
                    "organizationId": organization_id,
                    "oauthClientId": channel.client_id,
                });
                let frame = super::events::envelope(
                    "v2.system.token_revoked",
                    &body,
                    &uuid::Uuid::new_v4(),
                );
                socket.addr.do_send(ClosingNotice {
                    frame: frame.into(),
                    close_after: None,
                });
                socket.addr.do_send(Shutdown::token_revoked());
            }
            self.counters.channels_ended_with_token += 1;
        }
    }

    /// Remembers that `token` expired (bounded: the oldest are forgotten
    /// and then answer `bad.credentials`, as unknown tokens do).
    fn remember_expired(&mut self, token: String) {
        if self.expired_tokens.insert(token.clone()) {
            self.expired_order.push_back(token);
        }
        while self.expired_order.len() > MAX_TOKENS {
            if let Some(old) = self.expired_order.pop_front() {
                self.expired_tokens.remove(&old);
            }
        }
    }

    /// The 401 for an expired token, per `--expired-token-code`.
    fn expired_error(&mut self, settings: &Settings) -> ApiError {
        let expired_code = match settings.expired_token_code {
            ExpiredTokenCode::CredentialsExpired => true,
            ExpiredTokenCode::BadCredentials => false,
            ExpiredTokenCode::Alternate => self.expired_answers % 2 == 0,
        };
        self.expired_answers += 1;
        if expired_code {
            ApiError::credentials_expired()
        } else {
            ApiError::bad_credentials()
        }
    }

    /// Removes a channel and closes its socket with `reason`.
    fn remove_channel(&mut self, id: &str, reason: Shutdown) -> Option<Channel> {
        let channel = self.channels.remove(id)?;
        if let Some(socket) = &channel.socket {
            socket.addr.do_send(reason);
        }
        Some(channel)
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
                tokens: HashMap::new(),
                token_order: VecDeque::new(),
                expired_tokens: HashSet::new(),
                expired_order: VecDeque::new(),
                expired_answers: 0,
                channels: HashMap::new(),
                serial: 0,
                next_socket_id: 0,
                counters: Counters::default(),
                next_seq: 1,
                log: VecDeque::new(),
                log_bytes: 0,
                forgotten: 0,
                cursor: 0,
                rng: StdRng::seed_from_u64(args.seed),
                model: super::events::Model::new(args.conversations_per_entity),
                jobs: HashMap::new(),
                next_job_id: 0,
                rate_limited: 0,
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
        inner.tokens.insert(
            token.clone(),
            TokenRecord {
                client_id: client_id.to_owned(),
                expires: SystemTime::now() + ttl,
                recent_requests: VecDeque::new(),
            },
        );
        inner.token_order.push_back(token.clone());
        let mut evicted = false;
        while inner.tokens.len() > MAX_TOKENS {
            let Some(oldest) = inner.token_order.pop_front() else {
                break;
            };
            evicted |= inner.tokens.remove(&oldest).is_some();
        }
        if evicted {
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
        let limit = self.settings.rate_limit_per_minute;
        let mut inner = self.lock();
        if !inner.tokens.contains_key(token) && inner.expired_tokens.contains(token) {
            return Err(inner.expired_error(&self.settings));
        }
        let record = match inner.tokens.get_mut(token) {
            Some(record) if record.expires > SystemTime::now() => record,
            Some(_) => {
                inner.tokens.remove(token);
                inner.remember_expired(token.to_owned());
                let org = self.directory().organization_id.clone();
                inner.end_channels_of_gone_tokens(&self.settings, &org);
                return Err(inner.expired_error(&self.settings));
            }
            None => return Err(ApiError::bad_credentials()),
        };
        let auth = Auth {
            client_id: record.client_id.clone(),
            token: token.to_owned(),
        };
        if limit == 0 {
            return Ok((auth, None));
        }
        while record
            .recent_requests
            .front()
            .is_some_and(|&t| now.duration_since(t) >= RATE_WINDOW)
        {
            record.recent_requests.pop_front();
        }
        let reset_secs = record.recent_requests.front().map_or(60, |&oldest| {
            RATE_WINDOW
                .saturating_sub(now.duration_since(oldest))
                .as_secs()
                .max(1)
        });
        if record.recent_requests.len() >= limit as usize {
            // Refused calls do not count: the window frees up on its own.
            let with_retry_after = match self.settings.rate_limit_form {
                RateLimitForm::RetryAfter => true,
                RateLimitForm::NoRetryAfter => false,
                RateLimitForm::Alternate => inner.rate_limited % 2 == 1,
            };
            inner.rate_limited += 1;
            let err = if with_retry_after {
                inner.counters.rate_limited_with_retry_after += 1;
                ApiError::rate_limited(Some(reset_secs), limit)
            } else {
                inner.counters.rate_limited_without_retry_after += 1;
                ApiError::rate_limited(None, limit)
            };
            return Err(err);
        }
        record.recent_requests.push_back(now);
        let count = record.recent_requests.len() as u32;
        Ok((
            auth,
            Some(RateLimitInfo {
                allowed: limit,
                count,
                reset_secs,
            }),
        ))
    }

    /// Makes every issued token invalid (as if revoked or expired).
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
        let matches: Vec<String> = match (token, prefix) {
            (Some(t), None) => inner.tokens.keys().filter(|k| *k == t).cloned().collect(),
            (None, Some(p)) if !p.is_empty() => inner
                .tokens
                .keys()
                .filter(|k| k.starts_with(p))
                .take(2)
                .cloned()
                .collect(),
            _ => {
                return Err(ApiError::bad_request(
                    "give exactly one of token and token_prefix (non-empty)",
                ))
            }
        };
        let victim = match matches.as_slice() {
            [one] => one.clone(),
            [] => return Err(ApiError::not_found("No live token matches")),
            _ => {
                return Err(ApiError::new(
                    actix_web::http::StatusCode::CONFLICT,
                    "conflict",
                    "More than one live token has this prefix: give a longer one",
                ))
            }
        };
        inner.tokens.remove(&victim);
        let before = inner.counters.channels_ended_with_token;
        inner.end_channels_of_gone_tokens(&self.settings, &org);
        Ok((inner.counters.channels_ended_with_token - before) as usize)
    }

    pub fn revoke_tokens(&self) -> usize {
        let org = self.directory().organization_id.clone();
        let mut inner = self.lock();
        let n = inner.tokens.len();
        inner.tokens.clear();
        inner.token_order.clear();
        inner.end_channels_of_gone_tokens(&self.settings, &org);
        n
    }

    // ---- channels -----------------------------------------------------

    fn info(&self, channel: &Channel) -> ChannelInfo {
        ChannelInfo {
            id: channel.id.to_string(),
            connect_uri: format!("{}/channels/{}", self.settings.ws_base, channel.id),
            expires: rfc3339(channel.expires),
        }
    }

    /// Creates a channel. At the per-client limit, the least recently used
    /// channel (unconnected ones first) is removed and its socket closed.
    pub fn create_channel(&self, auth: &Auth) -> ChannelInfo {
        let now = SystemTime::now();
        let mut inner = self.lock();
        loop {
            let owned: Vec<&Channel> = inner
                .channels
                .values()
                .filter(|c| c.client_id == auth.client_id && c.alive(now))
                .collect();
            if owned.len() < self.settings.max_channels {
                break;
            }
            let victim = owned
                .iter()
                .min_by_key(|c| (c.socket.is_some(), c.last_used))
                .map(|c| c.id.clone());
            let Some(victim) = victim else { break };
            tracing::info!(channel = %victim, "channel limit reached: removing the least recently used channel");
            inner.remove_channel(&victim, Shutdown::channel_removed());
            inner.counters.channels_evicted += 1;
        }
        let id: Arc<str> = ids::channel_id().into();
        let tick = inner.tick();
        let channel = Channel {
            id: id.clone(),
            client_id: auth.client_id.clone(),
            token: auth.token.clone(),
            created_serial: tick,
            expires: now + self.settings.channel_ttl,
            last_used: tick,
            topics: Vec::new(),
            topic_set: HashSet::new(),
            socket: None,
            sockets_opened: 0,
        };
        let info = self.info(&channel);
        inner.channels.insert(id, channel);
        inner.counters.channels_created += 1;
        info
    }

    /// Channels of the caller: created with this token (`token`, the
    /// default) or by this OAuth client (`oauthclient`), oldest first.
    pub fn list_channels(&self, auth: &Auth, whole_client: bool) -> Vec<ChannelInfo> {
        let now = SystemTime::now();
        let inner = self.lock();
        let mut channels: Vec<&Channel> = inner
            .channels
            .values()
            .filter(|c| {
                c.alive(now)
                    && c.client_id == auth.client_id
                    && (whole_client || c.token == auth.token)
            })
            .collect();
        channels.sort_by_key(|c| c.created_serial);
        channels.into_iter().map(|c| self.info(c)).collect()
    }

    /// Whether the caller's channel exists and has not expired.
    pub fn channel_alive(&self, auth: &Auth, id: &str) -> bool {
        let now = SystemTime::now();
        let inner = self.lock();
        inner
            .channels
            .get(id)
            .is_some_and(|c| c.alive(now) && c.client_id == auth.client_id)
    }

    /// A live channel, owned by `client` when given (REST calls); socket
    /// messages pass `None`: the connectUri itself grants access.
    fn live_channel<'a>(
        inner: &'a mut Inner,
        id: &str,
        client: Option<&str>,
    ) -> Option<&'a mut Channel> {
        let now = SystemTime::now();
        inner
            .channels
            .get_mut(id)
            .filter(|c| c.alive(now) && client.map_or(true, |client| c.client_id == client))
    }

    pub fn subscriptions(&self, auth: &Auth, id: &str) -> Result<Vec<TopicStatus>, SubscribeError> {
        let mut inner = self.lock();
        let channel = Self::live_channel(&mut inner, id, Some(&auth.client_id))
            .ok_or(SubscribeError::ChannelNotFound)?;
        let topics = channel
            .topics
            .iter()
            .map(|t| TopicStatus::permitted(t))
            .collect();
        inner.touch(id);
        Ok(topics)
    }

    /// PUT / POST subscriptions and the socket's subscribe/unsubscribe.
    ///
    /// Replies list, for Replace, every requested topic with its state; for
    /// Add and Remove, the channel's resulting subscriptions followed by any
    /// rejected topics. Subscribing (Replace/Add) extends the channel's
    /// expiry when `--subscribe-extends-channel` is on.
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
        let mut seen = HashSet::new();
        let denied = self.faults.deny_topics();
        let directory = self.directory();
        // A combined topic stands for its expanded names.
        let requested: Vec<String> = requested
            .iter()
            .flat_map(|t| super::topics::expand_combined(t))
            .collect();
        let checked: Vec<(&str, Result<Topic, Rejection>)> = requested
            .iter()
            .map(String::as_str)
            .filter(|t| seen.insert(*t))
            .map(|t| {
                let verdict = match mode {
                    SubscribeMode::Remove => Topic::parse(t).map_err(|reason| Rejection {
                        reason,
                        missing_permissions: Vec::new(),
                    }),
                    _ => Topic::check(t, &directory, &denied),
                };
                (t, verdict)
            })
            .collect();
        drop(directory);

        let mut inner = self.lock();
        let channel =
            Self::live_channel(&mut inner, id, client).ok_or(SubscribeError::ChannelNotFound)?;
        let resulting = match mode {
            SubscribeMode::Replace => checked.len(),
            SubscribeMode::Add => {
                channel.topics.len()
                    + checked
                        .iter()
                        .filter(|(t, _)| !channel.topic_set.contains(*t))
                        .count()
            }
            SubscribeMode::Remove => 0,
        };
        if resulting > self.settings.max_topics {
            return Err(SubscribeError::TooManyTopics {
                requested: resulting,
                max: self.settings.max_topics,
            });
        }
        let rejected: Vec<TopicStatus> = checked
            .iter()
            .filter_map(|(t, verdict)| verdict.as_ref().err().map(|r| TopicStatus::rejected(t, r)))
            .collect();
        if !rejected.is_empty() && !ignore_errors {
            return Err(SubscribeError::Rejected(rejected));
        }
        let permitted = checked.iter().filter(|(_, v)| v.is_ok()).map(|(t, _)| *t);
        match mode {
            SubscribeMode::Replace => {
                channel.topics = permitted.map(Arc::from).collect();
                channel.topic_set = channel.topics.iter().cloned().collect();
            }
            SubscribeMode::Add => {
                for t in permitted {
                    if !channel.topic_set.contains(t) {
                        let t: Arc<str> = t.into();
                        channel.topic_set.insert(t.clone());
                        channel.topics.push(t);
                    }
                }
            }
            SubscribeMode::Remove => {
                let gone: HashSet<&str> = permitted.collect();
                channel.topics.retain(|t| !gone.contains(t.as_ref()));
                channel.topic_set = channel.topics.iter().cloned().collect();
            }
        }
        if mode != SubscribeMode::Remove && self.settings.subscribe_extends_channel {
            channel.expires = SystemTime::now() + self.settings.channel_ttl;
        }
        let reply = match mode {
            SubscribeMode::Replace => checked
                .iter()
                .map(|(t, v)| match v {
                    Ok(_) => TopicStatus::permitted(t),
                    Err(r) => TopicStatus::rejected(t, r),
                })
                .collect(),
            _ => channel
                .topics
                .iter()
                .map(|t| TopicStatus::permitted(t))
                .chain(rejected)
                .collect(),
        };
        inner.touch(id);
        Ok(reply)
    }

    /// DELETE subscriptions: removes all topics.
    pub fn clear_subscriptions(&self, auth: &Auth, id: &str) -> Result<(), SubscribeError> {
        let mut inner = self.lock();
        let channel = Self::live_channel(&mut inner, id, Some(&auth.client_id))
            .ok_or(SubscribeError::ChannelNotFound)?;
        channel.topics.clear();
        channel.topic_set.clear();
        inner.touch(id);
        Ok(())
    }

    // ---- sockets ------------------------------------------------------

    /// Whether a WebSocket may connect to this channel (no owner check: the
    /// connectUri itself grants access).
    pub fn socket_may_connect(&self, id: &str) -> bool {
        let mut inner = self.lock();
        Self::live_channel(&mut inner, id, None).is_some()
    }

    pub fn next_socket_id(&self) -> u64 {
        let mut inner = self.lock();
        inner.next_socket_id += 1;
        inner.next_socket_id
    }

    /// Makes `socket` the channel's socket. The previous one, if any, is
    /// told to close: one connection per channel. `Err` when the channel
    /// vanished meanwhile (the caller then closes the new socket).
    pub fn attach_socket(&self, id: &str, socket: SocketRef) -> Result<(), ()> {
        let mut inner = self.lock();
        let channel = Self::live_channel(&mut inner, id, None).ok_or(())?;
        if let Some(previous) = channel.socket.replace(socket) {
            tracing::info!(
                channel = id,
                socket = previous.id,
                "second connection on the channel: closing the first"
            );
            previous.addr.do_send(Shutdown::replaced());
        }
        channel.sockets_opened += 1;
        inner.counters.sockets_opened += 1;
        inner.touch(id);
        Ok(())
    }

    /// The socket `socket_id` has stopped: forgets it if it still is the
    /// channel's socket, and counts the frames it never wrote as dropped.
    pub fn detach_socket(&self, id: &str, socket_id: u64, progress: &Progress) {
        let mut inner = self.lock();
        if let Some(channel) = inner.channels.get_mut(id) {
            if channel.socket.as_ref().is_some_and(|s| s.id == socket_id) {
                channel.socket = None;
            }
        }
        // Detached (now or before, under this lock): nothing more is queued.
        inner.counters.events_dropped += progress.unwritten();
    }

    /// Detaches the channel's socket if it still is `socket_id`; says so.
    pub fn take_socket(&self, id: &str, socket_id: u64) -> bool {
        let mut inner = self.lock();
        match inner.channels.get_mut(id) {
            Some(channel) if channel.socket.as_ref().is_some_and(|s| s.id == socket_id) => {
                channel.socket = None;
                true
            }
            _ => false,
        }
    }

    pub fn touch(&self, id: &str) {
        self.lock().touch(id);
    }

    /// Detaches and returns the sockets of one channel or of all channels,
    /// so that events generated from now on count as undelivered.
    pub fn take_sockets(&self, channel: Option<&str>) -> Vec<(Arc<str>, SocketRef)> {
        let mut inner = self.lock();
        inner
            .channels
            .values_mut()
            .filter(|c| channel.map_or(true, |id| c.id.as_ref() == id))
            .filter_map(|c| c.socket.take().map(|s| (c.id.clone(), s)))
            .collect()
    }

    /// The open sockets of one channel or of all channels (left attached).
    pub fn sockets(&self, channel: Option<&str>) -> Vec<(Arc<str>, SocketRef)> {
        let inner = self.lock();
        inner
            .channels
            .values()
            .filter(|c| channel.map_or(true, |id| c.id.as_ref() == id))
            .filter_map(|c| c.socket.clone().map(|s| (c.id.clone(), s)))
            .collect()
    }

    pub fn channel_exists(&self, id: &str) -> bool {
        self.lock().channels.contains_key(id)
    }

    /// Ends channels now (one or all), closing their sockets like expiry does.
    pub fn expire_channels(&self, channel: Option<&str>) -> usize {
        let mut inner = self.lock();
        let ids: Vec<Arc<str>> = inner
            .channels
            .keys()
            .filter(|id| channel.map_or(true, |c| id.as_ref() == c))
            .cloned()
            .collect();
        for id in &ids {
            inner.remove_channel(id, Shutdown::channel_expired());
            inner.counters.channels_expired += 1;
        }
        ids.len()
    }

    /// Drops expired channels (closing their sockets) and expired tokens.
    pub fn sweep(&self) {
        let organization_id = self.directory().organization_id.clone();
        let now = SystemTime::now();
        let mut inner = self.lock();
        let expired: Vec<Arc<str>> = inner
            .channels
            .values()
            .filter(|c| !c.alive(now))
            .map(|c| c.id.clone())
            .collect();
        for id in expired {
            tracing::info!(channel = %id, "channel expired");
            inner.remove_channel(&id, Shutdown::channel_expired());
            inner.counters.channels_expired += 1;
        }
        let gone: Vec<String> = inner
            .tokens
            .iter()
            .filter(|(_, t)| t.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for token in &gone {
            inner.tokens.remove(token);
            inner.remember_expired(token.clone());
        }
        if !gone.is_empty() {
            inner.end_channels_of_gone_tokens(&self.settings, &organization_id);
        }
        if inner.token_order.len() > 2 * inner.tokens.len() + 1024 {
            let Inner {
                tokens,
                token_order,
                ..
            } = &mut *inner;
            token_order.retain(|t| tokens.contains_key(t));
        }
    }

    /// Closes every socket (server shutdown).
    pub fn close_all_sockets(&self) {
        for (_, socket) in self.take_sockets(None) {
            socket.addr.do_send(Shutdown::server_stopping());
        }
    }

    // ---- views --------------------------------------------------------

    pub fn view(&self) -> StateView {
        let now = SystemTime::now();
        let inner = self.lock();
        let mut channels: Vec<&Channel> =
            inner.channels.values().filter(|c| c.alive(now)).collect();
        channels.sort_by_key(|c| c.created_serial);
        StateView {
            channels: channels
                .into_iter()
                .map(|c| ChannelView {
                    id: c.id.to_string(),
                    client_id: c.client_id.clone(),
                    expires: rfc3339(c.expires),
                    expires_ms: epoch_ms(c.expires),
                    topics_count: c.topics.len(),
                    topics: c.topics.iter().map(|t| t.to_string()).collect(),
                    connected: c.socket.is_some(),
                    sockets_opened: c.sockets_opened,
                })
                .collect(),
            tokens_active: inner.tokens.values().filter(|t| t.expires > now).count(),
            counters: Counters {
                events_delivered: self.delivered.load(Ordering::Relaxed),
                ..inner.counters.clone()
            },
            last_seq: inner.next_seq - 1,
            generator_running: !inner.jobs.is_empty(),
            generator_jobs: inner.jobs.len(),
            faults: self.faults.view(),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct ChannelView {
    pub id: String,
    pub client_id: String,
    pub expires: String,
    pub expires_ms: u64,
    pub topics_count: usize,
    pub topics: Vec<String>,
    pub connected: bool,
    pub sockets_opened: u64,
}

/// `GET /sim/state`.
#[derive(Debug, Serialize)]
pub(crate) struct StateView {
    pub channels: Vec<ChannelView>,
    pub tokens_active: usize,
    #[serde(flatten)]
    pub counters: Counters,
    pub last_seq: u64,
    pub generator_running: bool,
    pub generator_jobs: usize,
    pub faults: super::faults::FaultsView,
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let seqs: Vec<u64> = inner.log.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [7, 8, 9, 10]);
        assert_eq!(inner.forgotten, 6);
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
        let seqs: Vec<u64> = inner.log.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [8, 8, 9, 9, 10, 10]);
        assert_eq!(inner.log_bytes, 3000);
        assert_eq!(inner.forgotten, 14);
    }
}
