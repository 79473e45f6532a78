//! What the bridge tells its operators: the one place where an event is
//! both logged and counted, and the state /healthz, /readyz and /metrics
//! report.
//!
//! Actors never call `tracing` for an operational event and bump a counter
//! separately: they call a method here that does both, so the log and the
//! metrics cannot drift apart.

mod metrics;
mod recent;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::buffer::Buffer;
pub use metrics::{
    observe_request, reconnect_class, request_seconds, AtomicHistogram, RequestSeconds,
    FLUSH_BUCKETS, RECONNECT_REASONS,
};
use metrics::{
    register, ConnectionLabel, PerConnection, PerConnectionSeconds, ReconnectLabels, TopicLabel,
    LATENCY_BUCKETS,
};
use recent::{ForwardRates, RecentProblems};
pub use recent::{Level, Problem, RATE_WINDOW, RECENT_PROBLEMS};

/// Counters, all monotonic (`prometheus-client` counters: atomics,
/// cheap on the hot path; `get()` reads them).
#[derive(Default)]
pub struct Counters {
    pub events_received: Counter,
    pub events_forwarded: Counter,
    /// Per Kafka topic.
    pub events_dead_lettered: Family<TopicLabel, Counter>,
    pub events_quarantined: Counter,
    pub protocol_frames: Counter,
    pub malformed_frames: Counter,
    pub buffer_write_errors: Counter,
    pub kafka_delivery_errors: Counter,
    /// Per connection and reason class ([`metrics::RECONNECT_REASONS`]).
    pub reconnects: Family<ReconnectLabels, Counter>,
    pub channels_created: Counter,
    pub tokens_granted: Counter,
    pub token_failures: Counter,
    pub api_retries: Counter,
    pub producer_restarts: Counter,
    pub kafka_client_errors: Counter,
    pub planned_moves: Counter,
    pub overlap_duplicates: Counter,
    pub socket_gaps: PerConnection,
    pub socket_gap_seconds: PerConnectionSeconds,
    /// When each connection's last gap ended (Unix seconds).
    pub socket_gap_last_end: Family<ConnectionLabel, Gauge<f64, AtomicU64>>,
    pub stalls: Counter,
}

/// Gaps shown on /status, at most.
pub const RECENT_GAPS: usize = 50;

/// How one channel's connection is doing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionState {
    pub phase: &'static str,
    pub channel_id: Option<String>,
    pub topics: usize,
    pub rejected_topics: usize,
    pub detail: Option<String>,
}

/// How one Kafka topic is doing, as the forwarding thread last saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TopicReport {
    pub topic: String,
    /// Events read from the buffer for this topic and not yet acknowledged
    /// (in flight or held back).
    pub backlog: u64,
    pub in_flight: u64,
    /// Age of the oldest of them.
    pub oldest_unacknowledged_age_ms: Option<u64>,
    /// Why the topic takes no events now, if it does not.
    pub blocked: Option<String>,
    /// Events of this topic Kafka acknowledged since the forwarding
    /// thread's previous report (the thread's count; a restarted thread
    /// starts again at 0, so the totals are kept by Telemetry).
    #[serde(skip)]
    pub acknowledged: u64,
    /// Events of this topic Kafka acknowledged since the bridge started
    /// (filled in by Telemetry).
    pub forwarded: u64,
    /// Of those, per second over the last [`RATE_WINDOW`] (filled in by
    /// Telemetry).
    pub forwarded_per_sec: f64,
}

/// Shared operational state.
pub struct Telemetry {
    pub counters: Counters,
    started: Instant,
    connections: Mutex<BTreeMap<usize, ConnectionState>>,
    kafka: Mutex<Result<(), String>>,
    token: Mutex<Result<(), String>>,
    liveness: Mutex<BTreeMap<&'static str, Instant>>,
    /// Set while appends to the buffer fail; the fast path checks the flag.
    buffer_failing: std::sync::atomic::AtomicBool,
    buffer_error: Mutex<Option<String>>,
    buffer: Mutex<Option<Buffer>>,
    /// When a failing buffer read was last logged.
    buffer_read_logged: Mutex<Option<Instant>>,
    /// librdkafka problems by kind: when last logged, and how many
    /// repeats were folded since.
    kafka_client_problems: Mutex<BTreeMap<String, (Instant, u64)>>,
    kafka_topics: Mutex<Vec<TopicReport>>,
    /// A Kafka outage in progress, and the drain after one: what the log
    /// says about it is one WARN, a summary a minute, one INFO.
    kafka_outage: Mutex<OutageLog>,
    /// Kafka topics whose trouble (blocked, delivery failures) was logged,
    /// and since when: their recovery is logged once, the rest is not.
    kafka_topic_trouble: Mutex<BTreeMap<String, Instant>>,
    receive_to_ack: AtomicHistogram,
    /// Genesys REST call times by kind, shared with the REST client.
    request_seconds: RequestSeconds,
    /// When the current token expires.
    token_expires: Mutex<Option<Instant>>,
    /// When each connection's live channel expires, and the expiry of
    /// channels created but not yet live (by their shown label).
    channel_expiry: Mutex<ChannelExpiry>,
    /// A failure no restart of an actor can mend: /healthz turns red so
    /// the process supervisor sees it.
    fatal: Mutex<Option<String>>,
    /// Why the topic plan leaves topics out (over the channel limit).
    topic_plan_problem: Mutex<Option<String>>,
    plan: PlanMetrics,
    /// The REST rate limiter, read for its counters.
    api_limiter: Mutex<Option<std::sync::Arc<crate::genesys::rate_limit::RateLimiter>>>,
    /// The newest gaps (earlier runs' included), oldest first.
    recent_gaps: Mutex<std::collections::VecDeque<crate::buffer::GapRecord>>,
    gaps_this_run: AtomicU64,
    gap_ms_this_run: AtomicU64,
    /// The newest warnings and errors, for /status.
    recent_problems: Mutex<RecentProblems>,
    /// Acknowledged events per Kafka topic and their rates, for /status.
    forwarding: Mutex<ForwardRates>,
}

/// What the planner reports (`gkb_topic_*` metrics).
#[derive(Debug, Default)]
struct PlanMetrics {
    topics: AtomicU64,
    channels: AtomicU64,
    left_out: AtomicU64,
    refreshes: AtomicU64,
    refresh_failures: AtomicU64,
    added: AtomicU64,
    removed: AtomicU64,
    held_removals: AtomicU64,
}

/// An actor that has not reported for this long is taken for stuck.
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(30);
/// How often actors report liveness.
pub const LIVENESS_INTERVAL: Duration = Duration::from_secs(5);

fn inc(counter: &Counter) {
    counter.inc();
}

/// How often a Kafka outage in progress is summed up in the log.
pub const OUTAGE_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// The log's view of Kafka outages ([`Telemetry::kafka_reachable`]).
#[derive(Default)]
struct OutageLog {
    current: Option<Outage>,
    /// After an outage: until the backlog is back to where it was.
    draining: Option<Drain>,
}

struct Outage {
    started: Instant,
    reason: String,
    last_summary: Instant,
    /// Buffer events when it started: the drain is over when back to it.
    backlog_at_start: u64,
    peak_backlog: u64,
    /// Folded since the last summary.
    client_errors: u64,
    delivery_errors: u64,
    /// Folded in all.
    client_errors_total: u64,
    delivery_errors_total: u64,
    /// The newest librdkafka complaint folded (its kind and text).
    last_client_error: Option<String>,
}

struct Drain {
    since: Instant,
    held: u64,
    forwarded_at_start: u64,
    backlog_target: u64,
}

/// Channel expiries: by connection (the live channel) and by channel
/// label (created, not yet live; bounded).
#[derive(Default)]
struct ChannelExpiry {
    live: BTreeMap<usize, SystemTime>,
    created: BTreeMap<String, SystemTime>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            counters: Counters::default(),
            started: Instant::now(),
            connections: Mutex::default(),
            kafka: Mutex::new(Err("not connected yet".into())),
            token: Mutex::new(Err("no token yet".into())),
            liveness: Mutex::default(),
            buffer_failing: Default::default(),
            buffer_error: Mutex::default(),
            buffer: Mutex::default(),
            buffer_read_logged: Mutex::default(),
            kafka_client_problems: Mutex::default(),
            kafka_topics: Mutex::default(),
            kafka_outage: Mutex::default(),
            kafka_topic_trouble: Mutex::default(),
            receive_to_ack: AtomicHistogram::new(&LATENCY_BUCKETS),
            request_seconds: request_seconds(),
            token_expires: Mutex::default(),
            channel_expiry: Mutex::default(),
            fatal: Mutex::default(),
            topic_plan_problem: Mutex::default(),
            plan: PlanMetrics::default(),
            api_limiter: Mutex::default(),
            recent_gaps: Mutex::default(),
            gaps_this_run: AtomicU64::new(0),
            gap_ms_this_run: AtomicU64::new(0),
            recent_problems: Mutex::default(),
            forwarding: Mutex::default(),
        }
    }
}

impl Telemetry {
    pub fn attach_buffer(&self, buffer: Buffer) {
        *lock(&self.buffer) = Some(buffer);
    }

    // ---- recent problems --------------------------------------------------

    /// Keeps a warning or error for /status beside its log line: called
    /// at this file's `warn!` and `error!` sites with the line's fixed
    /// message and its varying part, texts already fit for the log
    /// (channel ids are masked once more on the way in).
    fn problem(
        &self,
        level: Level,
        component: impl Into<String>,
        message: &'static str,
        detail: &dyn std::fmt::Display,
    ) {
        lock(&self.recent_problems).record(
            SystemTime::now(),
            level,
            component.into(),
            message,
            &detail.to_string(),
        );
    }

    /// The newest warnings and errors (at most [`RECENT_PROBLEMS`]),
    /// newest first.
    pub fn recent_problems(&self) -> Vec<Problem> {
        lock(&self.recent_problems).newest_first()
    }

    // ---- liveness -------------------------------------------------------

    pub fn alive(&self, actor: &'static str) {
        lock(&self.liveness).insert(actor, Instant::now());
    }

    /// Actors that stopped reporting.
    pub fn stuck_actors(&self) -> Vec<&'static str> {
        let now = Instant::now();
        lock(&self.liveness)
            .iter()
            .filter(|(_, at)| now.duration_since(**at) > LIVENESS_TIMEOUT)
            .map(|(name, _)| *name)
            .collect()
    }

    // ---- token ----------------------------------------------------------

    pub fn token_granted(&self, expires_in: Duration, refresh_in: Duration) {
        inc(&self.counters.tokens_granted);
        *lock(&self.token) = Ok(());
        *lock(&self.token_expires) = Some(Instant::now() + expires_in);
        tracing::info!(
            expires_in_secs = expires_in.as_secs(),
            refresh_in_secs = refresh_in.as_secs(),
            "access token granted"
        );
    }

    pub fn token_failed(&self, error: &dyn std::fmt::Display, retry_in: Duration) {
        inc(&self.counters.token_failures);
        *lock(&self.token) = Err(format!("login failed: {error}"));
        tracing::warn!(error = %error, retry_in_ms = retry_in.as_millis() as u64, "access token request failed");
        self.problem(Level::Warn, "token", "access token request failed", error);
    }

    // ---- connection -----------------------------------------------------

    pub fn connection_phase(&self, index: usize, mut state: ConnectionState) {
        state.channel_id = state.channel_id.as_deref().map(channel_label);
        tracing::debug!(connection = index, phase = state.phase, channel = ?state.channel_id, "connection phase");
        lock(&self.connections).insert(index, state);
        self.connection_series(index);
    }

    pub fn connection_open(&self, index: usize, channel_id: &str, topics: usize, rejected: usize) {
        let channel_id = &channel_label(channel_id);
        {
            let mut expiry = lock(&self.channel_expiry);
            match expiry.created.get(channel_id).copied() {
                Some(at) => expiry.live.insert(index, at),
                None => expiry.live.remove(&index),
            };
        }
        self.connection_series(index);
        tracing::info!(
            connection = index,
            channel = channel_id,
            topics,
            rejected,
            "notification socket open"
        );
        lock(&self.connections).insert(
            index,
            ConnectionState {
                phase: "open",
                channel_id: Some(channel_id.to_owned()),
                topics,
                rejected_topics: rejected,
                detail: None,
            },
        );
    }

    /// The open channel's topic list changed without a reconnect.
    pub fn subscriptions_updated(
        &self,
        index: usize,
        topics: usize,
        refused: usize,
        refused_example: Option<&str>,
    ) {
        if let Some(state) = lock(&self.connections).get_mut(&index) {
            state.topics = topics;
            state.rejected_topics = refused;
        }
        match refused_example {
            Some(example) => {
                tracing::warn!(
                    connection = index,
                    topics,
                    refused,
                    example,
                    "subscriptions updated; refused topics are left out, the others stay subscribed"
                );
                self.problem(
                    Level::Warn,
                    format!("connection {index}"),
                    "subscriptions updated; refused topics are left out",
                    &format_args!("{refused} refused, e.g. {example}"),
                );
            }
            None => tracing::info!(connection = index, topics, "subscriptions updated"),
        }
    }

    pub fn subscriptions_update_failed(
        &self,
        index: usize,
        error: &dyn std::fmt::Display,
        retry_in: Duration,
    ) {
        tracing::warn!(
            connection = index,
            error = %error,
            retry_in_ms = retry_in.as_millis() as u64,
            "subscription update failed; the channel keeps its previous topics"
        );
        self.problem(
            Level::Warn,
            format!("connection {index}"),
            "subscription update failed",
            error,
        );
    }

    pub fn channel_created(&self, index: usize, channel_id: &str, expires: Option<&str>) {
        let channel_id = &channel_label(channel_id);
        inc(&self.counters.channels_created);
        if let Some(at) = expires.and_then(|e| humantime::parse_rfc3339_weak(e).ok()) {
            let mut expiry = lock(&self.channel_expiry);
            // Bounded: a connection holds at most two channels.
            if expiry.created.len() >= 64 {
                expiry.created.clear();
            }
            expiry.created.insert(channel_id.clone(), at);
        }
        tracing::info!(
            connection = index,
            channel = channel_id,
            expires,
            "notification channel created"
        );
    }

    pub fn reconnecting(
        &self,
        index: usize,
        channel_id: Option<&str>,
        reason: &str,
        delay: Duration,
    ) {
        let channel_id = channel_id.map(channel_label);
        let channel_id = channel_id.as_deref();
        self.connection_series(index);
        self.counters
            .reconnects
            .get_or_create(&ReconnectLabels {
                connection: index as u64,
                reason: reconnect_class(reason),
            })
            .inc();
        tracing::warn!(
            connection = index,
            channel = channel_id,
            reason,
            delay_ms = delay.as_millis() as u64,
            "reconnecting"
        );
        self.problem(
            Level::Warn,
            format!("connection {index}"),
            "reconnecting",
            &reason,
        );
        let mut connections = lock(&self.connections);
        let entry = connections.entry(index).or_insert_with(|| ConnectionState {
            phase: "reconnecting",
            channel_id: None,
            topics: 0,
            rejected_topics: 0,
            detail: None,
        });
        entry.phase = "reconnecting";
        entry.detail = Some(reason.to_owned());
    }

    /// A make-before-break move to a new channel begins (after `delay`).
    pub fn planned_move(&self, index: usize, reason: &str, delay: Duration) {
        inc(&self.counters.planned_moves);
        tracing::info!(
            connection = index,
            reason,
            delay_ms = delay.as_millis() as u64,
            "moving to a new channel; the current socket keeps delivering meanwhile"
        );
    }

    /// Setting up the new channel of a move failed; the live socket stays.
    pub fn move_failed(&self, index: usize, reason: &str, retry_in: Duration) {
        tracing::warn!(
            connection = index,
            reason,
            retry_in_ms = retry_in.as_millis() as u64,
            "moving to a new channel failed; the current socket keeps delivering"
        );
        self.problem(
            Level::Warn,
            format!("connection {index}"),
            "moving to a new channel failed",
            &reason,
        );
    }

    /// Two sockets delivered at once and are down to one again.
    pub fn overlap_ended(&self, index: usize, summary: crate::connection::overlap::OverlapSummary) {
        self.counters.overlap_duplicates.inc_by(summary.duplicates);
        tracing::info!(
            connection = index,
            duplicates_removed = summary.duplicates,
            lasted_ms = summary.lasted.as_millis() as u64,
            "socket overlap ended"
        );
    }

    /// Copies removed after their overlap was reported (the socket we left
    /// closed while a copy was still on its way on the other one).
    pub fn overlap_late_duplicates(&self, index: usize, count: u64) {
        self.counters.overlap_duplicates.inc_by(count);
        tracing::debug!(
            connection = index,
            duplicates_removed = count,
            "copy removed just after a socket overlap"
        );
    }

    /// A time without any subscribed socket ended (or the bridge stops
    /// with one open): what was sent to the channel then is gone for good
    /// (Genesys replays nothing). Counted, logged and kept for /status;
    /// the connection records it in the buffer.
    pub fn socket_gap(&self, gap: &crate::buffer::GapRecord) {
        let connection = ConnectionLabel {
            connection: u64::from(gap.connection),
        };
        self.counters.socket_gaps.get_or_create(&connection).inc();
        self.counters
            .socket_gap_seconds
            .get_or_create(&connection)
            .inc_by(gap.seconds);
        self.counters
            .socket_gap_last_end
            .get_or_create(&connection)
            .set(gap.end_ms as f64 / 1000.0);
        tracing::warn!(
            connection = gap.connection,
            from = %gap.start,
            to = %gap.end,
            lasted_ms = gap.end_ms - gap.start_ms,
            reason = %gap.reason,
            open = gap.open,
            topics = gap.topic_count,
            "gap: no subscribed socket; events sent meanwhile were missed"
        );
        self.problem(
            Level::Warn,
            format!("connection {}", gap.connection),
            "gap: no subscribed socket",
            &format_args!("{} s from {}: {}", gap.seconds, gap.start, gap.reason),
        );
        self.gaps_this_run.fetch_add(1, Ordering::Relaxed);
        self.gap_ms_this_run
            .fetch_add(gap.end_ms - gap.start_ms, Ordering::Relaxed);
        self.remember_gaps([gap.clone()]);
    }

    /// Adds gaps to those /status shows (the newest [`RECENT_GAPS`]): at
    /// start-up, the ones earlier runs recorded.
    pub fn remember_gaps(&self, gaps: impl IntoIterator<Item = crate::buffer::GapRecord>) {
        let mut recent = lock(&self.recent_gaps);
        for gap in gaps {
            recent.push_back(gap);
            if recent.len() > RECENT_GAPS {
                recent.pop_front();
            }
        }
    }

    /// /status's `gaps`: the newest gaps, this run's totals and how many
    /// the buffer keeps.
    pub fn gaps_report(&self) -> serde_json::Value {
        let recent: Vec<_> = lock(&self.recent_gaps).iter().cloned().collect();
        let this_run = (
            self.gaps_this_run.load(Ordering::Relaxed),
            self.gap_ms_this_run.load(Ordering::Relaxed) as f64 / 1000.0,
        );
        let recorded = lock(&self.buffer).as_ref().map(Buffer::gaps_len);
        serde_json::json!({
            "recent": recent,
            "this_run": {"gaps": this_run.0, "seconds": this_run.1},
            "recorded": recorded,
        })
    }

    /// The connection's actor could not run for a while (a process pause,
    /// a starved CPU); its socket is read before it is judged.
    pub fn stall_detected(&self, index: usize, stalled_for: Duration) {
        inc(&self.counters.stalls);
        tracing::warn!(
            connection = index,
            stalled_ms = stalled_for.as_millis() as u64,
            "the bridge was not running (paused or starved); reading the socket before judging it"
        );
        self.problem(
            Level::Warn,
            format!("connection {index}"),
            "the bridge was not running (paused or starved)",
            &format_args!("for {:.1} s", stalled_for.as_secs_f64()),
        );
    }

    pub fn api_retry(&self, what: &str, error: &dyn std::fmt::Display, delay: Duration) {
        inc(&self.counters.api_retries);
        tracing::warn!(call = what, error = %error, delay_ms = delay.as_millis() as u64, "Genesys API call failed; retrying");
        self.problem(
            Level::Warn,
            "genesys api",
            "Genesys API call failed; retrying",
            &format_args!("{what}: {error}"),
        );
    }

    pub fn protocol_frame(&self) {
        inc(&self.counters.protocol_frames);
    }

    pub fn malformed_frame(&self, index: usize, reason: &dyn std::fmt::Display, len: usize) {
        inc(&self.counters.malformed_frames);
        tracing::warn!(connection = index, reason = %reason, bytes = len, "malformed frame kept in the buffer quarantine, not forwarded");
        self.problem(
            Level::Warn,
            format!("connection {index}"),
            "malformed frame kept in the buffer quarantine",
            reason,
        );
    }

    pub fn event_received(&self) {
        inc(&self.counters.events_received);
    }

    /// A write to the buffer failed. Every one is counted; one line is
    /// logged when failures start (a full disk fails every event).
    pub fn buffer_write_failed(&self, error: &dyn std::fmt::Display) {
        inc(&self.counters.buffer_write_errors);
        *lock(&self.buffer_error) = Some(error.to_string());
        if !self.buffer_failing.swap(true, Ordering::SeqCst) {
            tracing::error!(error = %error, "cannot write to the buffer; failures are counted in gkb_buffer_write_errors_total until writes succeed again");
            self.problem(Level::Error, "buffer", "cannot write to the buffer", error);
        }
    }

    /// Reading the buffer failed; logged at most once a minute.
    pub fn buffer_read_failed(&self, error: &dyn std::fmt::Display) {
        let mut logged = lock(&self.buffer_read_logged);
        if logged.map_or(true, |at| at.elapsed() >= Duration::from_secs(60)) {
            *logged = Some(Instant::now());
            tracing::error!(error = %error, "cannot read the buffer; retrying");
            self.problem(Level::Error, "buffer", "cannot read the buffer", error);
        }
    }

    /// An append succeeded: clears a write failure shown on /readyz.
    pub fn buffer_write_ok(&self) {
        if self.buffer_failing.swap(false, Ordering::SeqCst) {
            *lock(&self.buffer_error) = None;
            tracing::info!("buffer writes succeed again");
        }
    }

    // ---- kafka ----------------------------------------------------------

    /// What the probe (or a fatal error) says of Kafka. Going from
    /// reachable to not starts an outage ([`Self::kafka_outage_started`]);
    /// back again ends it.
    pub fn kafka_reachable(&self, reachable: Result<(), String>) {
        let was = std::mem::replace(&mut *lock(&self.kafka), reachable.clone());
        match reachable {
            Ok(()) => {
                if !self.kafka_outage_ended() && was.is_err() {
                    tracing::info!("Kafka reachable");
                }
            }
            Err(reason) => self.kafka_outage_started(&reason),
        }
    }

    /// Kafka went away: one WARN now, then a summary a minute
    /// ([`Self::kafka_outage_tick`]) until [`Self::kafka_outage_ended`].
    /// Nothing if one is already in progress.
    fn kafka_outage_started(&self, reason: &str) {
        let backlog = self.buffer_events();
        let oldest = self.oldest_unacknowledged_secs();
        let mut log = lock(&self.kafka_outage);
        if log.current.is_some() {
            return;
        }
        // A drain cut short by a new outage: the new one holds it all.
        let backlog_at_start = log.draining.take().map_or(backlog, |d| d.backlog_target);
        let now = Instant::now();
        log.current = Some(Outage {
            started: now,
            reason: reason.to_owned(),
            last_summary: now,
            backlog_at_start,
            peak_backlog: backlog,
            client_errors: 0,
            delivery_errors: 0,
            client_errors_total: 0,
            delivery_errors_total: 0,
            last_client_error: None,
        });
        tracing::warn!(
            reason,
            backlog,
            oldest_unacked_secs = oldest,
            "Kafka outage: events wait in the buffer; Kafka client and delivery errors are counted and summed up every minute until it ends"
        );
        drop(log);
        self.problem(Level::Warn, "kafka", "Kafka outage", &reason);
    }

    /// Once a second (the forwarder's report): the minute's summary of an
    /// outage in progress, or the end of the drain after one.
    fn kafka_outage_tick(&self) {
        let backlog = self.buffer_events();
        let mut log = lock(&self.kafka_outage);
        if let Some(outage) = &mut log.current {
            outage.peak_backlog = outage.peak_backlog.max(backlog);
            if outage.last_summary.elapsed() >= OUTAGE_SUMMARY_EVERY {
                outage.last_summary = Instant::now();
                let client_errors = std::mem::take(&mut outage.client_errors);
                let delivery_errors = std::mem::take(&mut outage.delivery_errors);
                let outage_secs = outage.started.elapsed().as_secs();
                let reason = outage.reason.clone();
                let last_error = outage.last_client_error.clone();
                drop(log);
                tracing::warn!(
                    outage_secs,
                    backlog,
                    oldest_unacked_secs = self.oldest_unacknowledged_secs(),
                    client_errors_folded = client_errors,
                    delivery_errors_folded = delivery_errors,
                    reason,
                    last_client_error = last_error.as_deref(),
                    "Kafka outage continues"
                );
                self.problem(Level::Warn, "kafka", "Kafka outage continues", &reason);
            }
            return;
        }
        let Some(drain) = &log.draining else {
            return;
        };
        if backlog > drain.backlog_target {
            return;
        }
        let drain_secs = drain.since.elapsed().as_secs_f64();
        let drained = self
            .counters
            .events_forwarded
            .get()
            .saturating_sub(drain.forwarded_at_start);
        let held = drain.held;
        log.draining = None;
        drop(log);
        tracing::info!(
            held,
            drained,
            drain_secs = (drain_secs * 10.0).round() / 10.0,
            events_per_sec = (drained as f64 / drain_secs.max(0.001)).round() as u64,
            "backlog of the Kafka outage drained"
        );
    }

    /// Kafka answers again: one INFO with how long it was away and what
    /// waited. False if no outage was in progress.
    fn kafka_outage_ended(&self) -> bool {
        let backlog = self.buffer_events();
        let mut log = lock(&self.kafka_outage);
        let Some(outage) = log.current.take() else {
            return false;
        };
        log.draining = Some(Drain {
            since: Instant::now(),
            held: backlog,
            forwarded_at_start: self.counters.events_forwarded.get(),
            backlog_target: outage.backlog_at_start,
        });
        drop(log);
        tracing::info!(
            outage_secs = outage.started.elapsed().as_secs(),
            backlog,
            peak_backlog = outage.peak_backlog.max(backlog),
            client_errors_folded = outage.client_errors_total,
            delivery_errors_folded = outage.delivery_errors_total,
            reason = outage.reason,
            "Kafka outage over: Kafka reachable again; the backlog drains"
        );
        true
    }

    /// Folds a Kafka error into the outage in progress, if there is one.
    fn fold_into_outage(&self, client_error: Option<String>) -> bool {
        let mut log = lock(&self.kafka_outage);
        let Some(outage) = &mut log.current else {
            return false;
        };
        match client_error {
            Some(error) => {
                outage.client_errors += 1;
                outage.client_errors_total += 1;
                outage.last_client_error = Some(error);
            }
            None => {
                outage.delivery_errors += 1;
                outage.delivery_errors_total += 1;
            }
        }
        true
    }

    /// Events in the buffer waiting for Kafka.
    fn buffer_events(&self) -> u64 {
        lock(&self.buffer).as_ref().map_or(0, |b| b.len() as u64)
    }

    /// Age of the oldest event read and not yet acknowledged, any topic.
    fn oldest_unacknowledged_secs(&self) -> Option<u64> {
        lock(&self.kafka_topics)
            .iter()
            .filter_map(|t| t.oldest_unacknowledged_age_ms)
            .max()
            .map(|ms| ms / 1000)
    }

    /// An error or warning from the Kafka client itself (a broker down, a
    /// connection refused). Every one is counted. During an outage they
    /// are folded into its summaries; otherwise one line per kind a minute,
    /// with how many repeats were folded into it. librdkafka's "all
    /// brokers down" starts an outage (the probe may take a while to
    /// notice).
    pub fn kafka_client_problem(&self, kind: &str, message: &str) {
        inc(&self.counters.kafka_client_errors);
        if kind == "AllBrokersDown" {
            *lock(&self.kafka) = Err(format!("all brokers down: {message}"));
            self.kafka_outage_started(&format!("all brokers down: {message}"));
        }
        if self.fold_into_outage(Some(format!("{kind}: {message}"))) {
            return;
        }
        let mut problems = lock(&self.kafka_client_problems);
        // Bounded: kinds are librdkafka's error codes and log facilities.
        if problems.len() > 256 {
            problems.clear();
        }
        match problems.get_mut(kind) {
            Some((logged, folded)) if logged.elapsed() < Duration::from_secs(60) => *folded += 1,
            _ => {
                let folded = problems.get(kind).map_or(0, |(_, n)| *n);
                problems.insert(kind.to_owned(), (Instant::now(), 0));
                drop(problems);
                tracing::warn!(target: "librdkafka", kind, error = message, repeats_folded = folded, "Kafka client problem (repeats within a minute are counted in gkb_kafka_client_errors_total, not logged)");
                self.problem(
                    Level::Warn,
                    "kafka",
                    "Kafka client problem",
                    &format_args!("{kind}: {message}"),
                );
            }
        }
    }

    /// Records were acknowledged by Kafka (one batch of delivery reports,
    /// by their receive times): each one's receive → acknowledged time
    /// goes into the latency histogram.
    pub fn acknowledged(&self, received_at_ms: &[u64]) {
        // Per acknowledged record: three relaxed atomic adds, no lock.
        let now_ms = crate::now_ms();
        for at in received_at_ms {
            let ms = now_ms.saturating_sub(*at);
            self.receive_to_ack.observe(ms as f64 / 1000.0);
        }
    }

    /// The forwarding thread's view of every routed Kafka topic (once a
    /// second; also the clock of the outage summaries).
    pub fn kafka_topics(&self, mut reports: Vec<TopicReport>) {
        {
            let mut rates = lock(&self.forwarding);
            rates.add(
                Instant::now(),
                reports.iter().map(|r| (r.topic.as_str(), r.acknowledged)),
                self.counters.events_forwarded.get(),
            );
            for report in &mut reports {
                report.forwarded = rates.total(&report.topic);
                report.forwarded_per_sec = rates.per_sec(Some(&report.topic));
            }
        }
        *lock(&self.kafka_topics) = reports;
        self.kafka_outage_tick();
    }

    /// /status's `forwarded`: events Kafka acknowledged since start (all
    /// topics, `gkb_events_forwarded_total`) and per second over the
    /// last [`RATE_WINDOW`].
    pub fn forwarded_report(&self) -> serde_json::Value {
        serde_json::json!({
            "total": self.counters.events_forwarded.get(),
            "per_sec": lock(&self.forwarding).per_sec(None),
        })
    }

    /// A topic takes nothing (missing, refused): one WARN until it takes
    /// events again, however often the retries find it still blocked.
    pub fn kafka_topic_blocked(&self, topic: &str, reason: &str, retry_in: Duration) {
        if lock(&self.kafka_topic_trouble)
            .insert(topic.to_owned(), Instant::now())
            .is_some()
        {
            return;
        }
        tracing::warn!(
            kafka_topic = topic,
            reason,
            retry_in_ms = retry_in.as_millis() as u64,
            "Kafka topic blocked; its events wait in the buffer while other topics flow"
        );
        self.problem(
            Level::Warn,
            "kafka",
            "Kafka topic blocked",
            &format_args!("{topic}: {reason}"),
        );
    }

    /// A topic takes events again: one INFO if its trouble was logged.
    pub fn kafka_topic_recovered(&self, topic: &str) {
        if let Some(since) = lock(&self.kafka_topic_trouble).remove(topic) {
            tracing::info!(
                kafka_topic = topic,
                blocked_secs = since.elapsed().as_secs(),
                "Kafka topic takes events again"
            );
        }
    }

    /// librdkafka reported a fatal error; the producer is rebuilt.
    pub fn producer_fatal(&self, reason: &str, restart_in: Duration) {
        inc(&self.counters.producer_restarts);
        tracing::error!(
            reason,
            restart_in_ms = restart_in.as_millis() as u64,
            "fatal Kafka producer error: restarting the producer"
        );
        self.problem(
            Level::Error,
            "kafka",
            "fatal Kafka producer error: restarting the producer",
            &reason,
        );
        self.kafka_reachable(Err(format!("fatal producer error: {reason}")));
    }

    /// Kafka refuses the bridge's settings: forwarding stops and /healthz
    /// says why.
    pub fn producer_misconfigured(&self, reason: &str) {
        tracing::error!(
            reason,
            "Kafka producer stopped: fix the [kafka] settings and restart"
        );
        self.problem(
            Level::Error,
            "kafka",
            "Kafka producer stopped: fix the [kafka] settings and restart",
            &reason,
        );
        *lock(&self.fatal) = Some(format!("kafka producer stopped: {reason}"));
    }

    /// Whether the process is alive and worth keeping: what `/healthz`
    /// answers and what feeds systemd's watchdog. Red for a failure no
    /// actor restart can mend, or for actors that stopped reporting.
    pub fn health(&self) -> Result<(), Unhealthy> {
        if let Some(reason) = self.fatal() {
            return Err(Unhealthy::Failed(reason));
        }
        let stuck = self.stuck_actors();
        if stuck.is_empty() {
            Ok(())
        } else {
            Err(Unhealthy::Stuck(stuck))
        }
    }

    /// Failures no actor restart can mend (/healthz).
    pub fn fatal(&self) -> Option<String> {
        lock(&self.fatal).clone()
    }

    pub fn events_forwarded(&self, n: u64) {
        self.counters.events_forwarded.inc_by(n);
    }

    /// A failed delivery. Every one is counted; only the first of a burst
    /// (`first`) is logged, the rest go into the same rewind, and none
    /// during a Kafka outage (its summaries count them).
    pub fn delivery_failed(
        &self,
        seq: u64,
        kafka_topic: &str,
        error: &dyn std::fmt::Display,
        first: bool,
    ) {
        inc(&self.counters.kafka_delivery_errors);
        if self.fold_into_outage(None) {
            return;
        }
        // One line per topic until it recovers.
        if first
            && lock(&self.kafka_topic_trouble)
                .insert(kafka_topic.to_owned(), Instant::now())
                .is_none()
        {
            tracing::warn!(seq, kafka_topic, error = %error, "Kafka delivery failed; it stays in the buffer and is sent again after a backoff");
            self.problem(
                Level::Warn,
                "kafka",
                "Kafka delivery failed; it stays in the buffer",
                &format_args!("{kafka_topic}: {error}"),
            );
        }
    }

    pub fn dead_lettered(&self, seq: u64, kafka_topic: &str, reason: &str) {
        self.counters
            .events_dead_lettered
            .get_or_create(&TopicLabel {
                topic: kafka_topic.to_owned(),
            })
            .inc();
        tracing::error!(
            seq,
            kafka_topic,
            reason,
            "Kafka refused an event for good; moved to the dead-letter area"
        );
        self.problem(
            Level::Error,
            "kafka",
            "Kafka refused an event for good; moved to the dead-letter area",
            &format_args!("{kafka_topic}: {reason}"),
        );
    }

    pub fn quarantined(&self, n: usize) {
        self.counters.events_quarantined.inc_by(n as u64);
        tracing::error!(count = n, "undecodable buffer entries moved to quarantine");
        self.problem(
            Level::Error,
            "buffer",
            "undecodable buffer entries moved to quarantine",
            &format_args!("{n} entries"),
        );
    }

    // ---- reports --------------------------------------------------------

    /// Why the bridge is not ready, or `Ok` when it is.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if let Err(e) = &*lock(&self.token) {
            reasons.push(format!("genesys token: {e}"));
        }
        let connections = lock(&self.connections);
        if connections.is_empty() {
            reasons.push("genesys: no connection started yet".into());
        }
        for (index, state) in connections.iter() {
            if state.phase != "open" {
                reasons.push(format!(
                    "genesys connection {index}: {}{}",
                    state.phase,
                    state
                        .detail
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ));
            }
        }
        if let Err(e) = &*lock(&self.kafka) {
            reasons.push(format!("kafka: {e}"));
        }
        if let Some(e) = &*lock(&self.fatal) {
            reasons.push(e.clone());
        }
        if let Some(e) = &*lock(&self.topic_plan_problem) {
            reasons.push(e.clone());
        }
        for topic in lock(&self.kafka_topics).iter() {
            if let Some(reason) = &topic.blocked {
                reasons.push(format!("kafka topic {}: {reason}", topic.topic));
            }
        }
        if let Some(e) = &*lock(&self.buffer_error) {
            reasons.push(format!("buffer: {e}; received events are being lost"));
        }
        if let Some(buffer) = lock(&self.buffer).as_ref() {
            reasons.extend(
                buffer
                    .problems()
                    .into_iter()
                    .map(|p| format!("buffer: {p}")),
            );
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    pub fn topics(&self) -> Vec<TopicReport> {
        lock(&self.kafka_topics).clone()
    }

    pub fn connections(&self) -> BTreeMap<usize, ConnectionState> {
        lock(&self.connections).clone()
    }

    /// /status's `connections`: each [`ConnectionState`] (its fields
    /// unchanged) with its live channel's expiry and its reconnects.
    pub fn connections_report(&self) -> serde_json::Value {
        let expiries = self.channel_expiries();
        let connections = self.connections();
        let report: serde_json::Map<String, serde_json::Value> = connections
            .into_iter()
            .map(|(index, state)| {
                let mut entry = serde_json::to_value(state).unwrap_or_default();
                let (at, left) = match expiries.get(&index) {
                    Some((at, left)) => (Some(rfc3339(*at)), Some(*left)),
                    None => (None, None),
                };
                entry["channel_expires_at"] = at.into();
                entry["channel_expires_in_secs"] = left.into();
                entry["reconnects"] = self.reconnects_of(index).into();
                (index.to_string(), entry)
            })
            .collect();
        report.into()
    }

    /// Reconnects of one connection, all reasons.
    fn reconnects_of(&self, index: usize) -> u64 {
        RECONNECT_REASONS
            .iter()
            .map(|reason| {
                self.counters
                    .reconnects
                    .get_or_create(&ReconnectLabels {
                        connection: index as u64,
                        reason,
                    })
                    .get()
            })
            .sum()
    }

    /// /status's `token`: why no token is held (`problem`, null when one
    /// is) and when the current one expires.
    pub fn token_report(&self) -> serde_json::Value {
        let problem = lock(&self.token).as_ref().err().cloned();
        let left = self.token_expires_in();
        let at = left.map(|left| {
            let now = SystemTime::now();
            let magnitude = Duration::from_secs_f64(left.abs());
            rfc3339(if left >= 0.0 {
                now + magnitude
            } else {
                now - magnitude
            })
        });
        serde_json::json!({
            "problem": problem,
            "expires_at": at,
            "expires_in_secs": left,
        })
    }

    /// Seconds until the current token expires (negative once past).
    fn token_expires_in(&self) -> Option<f64> {
        let at = (*lock(&self.token_expires))?;
        let now = Instant::now();
        Some(
            at.saturating_duration_since(now).as_secs_f64()
                - now.saturating_duration_since(at).as_secs_f64(),
        )
    }

    /// Each connection's live channel: when it expires and the seconds
    /// until then (negative once past).
    fn channel_expiries(&self) -> BTreeMap<usize, (SystemTime, f64)> {
        let now = SystemTime::now();
        lock(&self.channel_expiry)
            .live
            .iter()
            .map(|(index, at)| {
                let left = match at.duration_since(now) {
                    Ok(ahead) => ahead.as_secs_f64(),
                    Err(past) => -past.duration().as_secs_f64(),
                };
                (*index, (*at, left))
            })
            .collect()
    }

    /// The handle the REST client records its call times into
    /// (`gkb_genesys_request_seconds{call}`).
    pub fn request_seconds(&self) -> RequestSeconds {
        self.request_seconds.clone()
    }

    /// Creates a connection's labelled series at zero, so that they exist
    /// (and `rate()` works) before the first reconnect or gap.
    fn connection_series(&self, index: usize) {
        let c = &self.counters;
        let connection = ConnectionLabel {
            connection: index as u64,
        };
        let _ = c.socket_gaps.get_or_create(&connection);
        let _ = c.socket_gap_seconds.get_or_create(&connection);
        for reason in RECONNECT_REASONS {
            let _ = c.reconnects.get_or_create(&ReconnectLabels {
                connection: index as u64,
                reason,
            });
        }
    }

    /// Prometheus text exposition (format 0.0.4), encoded by
    /// `prometheus-client` from a registry built for this scrape: the
    /// long-lived counters and histograms are registered by handle, the
    /// values known only now (buffer, topics, expiries) as constants.
    pub fn render_metrics(&self) -> String {
        let mut r = Registry::with_prefix("gkb");
        let c = &self.counters;
        let counters: [(&str, &str, &Counter); 16] = [
            ("planned_moves", "Make-before-break moves to a new channel (rollover, socket_closing, lost channel).", &c.planned_moves),
            ("overlap_duplicates", "Copies of an event received on both sockets of a move, removed before the buffer.", &c.overlap_duplicates),
            ("stalls", "Times the bridge found it had not been running (paused, starved).", &c.stalls),
            ("events_received", "Notifications received from Genesys and buffered.", &c.events_received),
            ("events_forwarded", "Notifications acknowledged by Kafka.", &c.events_forwarded),
            ("events_quarantined", "Buffer entries that could not be decoded.", &c.events_quarantined),
            ("protocol_frames", "Heartbeats, pongs and subscribe replies (not forwarded).", &c.protocol_frames),
            ("malformed_frames", "Frames that were not notifications (kept in quarantine, not forwarded).", &c.malformed_frames),
            ("buffer_write_errors", "Received events the buffer could not store.", &c.buffer_write_errors),
            ("kafka_delivery_errors", "Failed Kafka deliveries (retried from the buffer).", &c.kafka_delivery_errors),
            ("channels_created", "Notification channels created.", &c.channels_created),
            ("tokens_granted", "OAuth tokens obtained.", &c.tokens_granted),
            ("token_failures", "Failed OAuth token requests.", &c.token_failures),
            ("api_retries", "Genesys REST calls retried.", &c.api_retries),
            ("producer_restarts", "Kafka producers rebuilt after a fatal error.", &c.producer_restarts),
            ("kafka_client_errors", "Errors and warnings the Kafka client reported (connection failures, brokers down).", &c.kafka_client_errors),
        ];
        for (name, help, counter) in counters {
            register(&mut r, name, help, counter.clone());
        }
        // Every routed topic's series exists, at 0 until its first dead
        // letter: an absent series reads as "no data", not as none.
        for topic in lock(&self.kafka_topics).iter() {
            let _ = c.events_dead_lettered.get_or_create(&TopicLabel {
                topic: topic.topic.clone(),
            });
        }
        register(
            &mut r,
            "events_dead_lettered",
            "Notifications Kafka refused for good, by Kafka topic.",
            c.events_dead_lettered.clone(),
        );
        register(
            &mut r,
            "reconnects",
            "Notification socket reconnects, by connection and reason class.",
            c.reconnects.clone(),
        );
        register(
            &mut r,
            "socket_gaps",
            "Times without any subscribed socket (events sent then were missed), by connection.",
            c.socket_gaps.clone(),
        );
        register(
            &mut r,
            "socket_gap_seconds",
            "Time without any subscribed socket, by connection.",
            c.socket_gap_seconds.clone(),
        );
        register(
            &mut r,
            "socket_gap_last_end_timestamp_seconds",
            "When the connection's last gap ended (Unix time), by connection.",
            c.socket_gap_last_end.clone(),
        );
        register(
            &mut r,
            "receive_to_ack_seconds",
            "Time from receiving an event to Kafka acknowledging it.",
            self.receive_to_ack.clone(),
        );
        register(
            &mut r,
            "genesys_request_seconds",
            "Time of Genesys REST calls (login included), by call kind.",
            self.request_seconds.clone(),
        );
        if let Some(buffer) = &*lock(&self.buffer) {
            for (name, kind, help, value) in buffer.metric_values() {
                match name.strip_suffix("_total").filter(|_| kind == "counter") {
                    Some(base) => register(&mut r, base, help, ConstCounter::new(value)),
                    None => register(&mut r, name, help, ConstGauge::new(value as f64)),
                }
            }
            register(
                &mut r,
                "buffer_flush_seconds",
                "Time of the buffer's flushes to disk (sled flush and fsync).",
                buffer.flush_seconds(),
            );
        }
        self.register_topics(&mut r);
        self.register_expiries(&mut r);
        let open = lock(&self.connections)
            .values()
            .filter(|s| s.phase == "open")
            .count();
        let kafka_up = u8::from(lock(&self.kafka).is_ok());
        register(
            &mut r,
            "connections_open",
            "Notification sockets open.",
            ConstGauge::new(open as i64),
        );
        register(
            &mut r,
            "kafka_up",
            "Whether Kafka answered the last probe.",
            ConstGauge::new(i64::from(kafka_up)),
        );
        // The whole of /readyz in one series, so that one alert covers
        // every reason (a token never granted included), not a guess from
        // the parts.
        register(
            &mut r,
            "ready",
            "Whether /readyz answers 200 (1) or names reasons (0).",
            ConstGauge::new(i64::from(self.readiness().is_ok())),
        );
        register(
            &mut r,
            "uptime_seconds",
            "Seconds since start.",
            ConstGauge::new(self.started.elapsed().as_secs() as i64),
        );
        self.register_plan_metrics(&mut r);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &r);
        out
    }

    /// Per Kafka topic, as the forwarding thread last reported.
    fn register_topics(&self, r: &mut Registry) {
        let topics = lock(&self.kafka_topics).clone();
        type TopicGauge = fn(&TopicReport) -> f64;
        let per_topic: [(&str, &str, TopicGauge); 4] = [
            (
                "kafka_topic_backlog_events",
                "Events read for this Kafka topic and not yet acknowledged.",
                |t| t.backlog as f64,
            ),
            (
                "kafka_topic_in_flight_events",
                "Events handed to the Kafka client for this topic and not yet acknowledged.",
                |t| t.in_flight as f64,
            ),
            (
                "kafka_topic_oldest_unacknowledged_age_seconds",
                "Age of the oldest unacknowledged event of this Kafka topic (0 when none).",
                |t| t.oldest_unacknowledged_age_ms.unwrap_or(0) as f64 / 1000.0,
            ),
            (
                "kafka_topic_blocked",
                "1 while this Kafka topic takes no events (see /readyz for why).",
                |t| f64::from(u8::from(t.blocked.is_some())),
            ),
        ];
        for (name, help, value) in per_topic {
            let family = Family::<TopicLabel, Gauge<f64, AtomicU64>>::default();
            for topic in &topics {
                family
                    .get_or_create(&TopicLabel {
                        topic: topic.topic.clone(),
                    })
                    .set(value(topic));
            }
            register(r, name, help, family);
        }
    }

    /// Seconds until the token and each connection's channel expire
    /// (negative once past; absent until known).
    fn register_expiries(&self, r: &mut Registry) {
        if let Some(left) = self.token_expires_in() {
            register(
                r,
                "token_expiry_seconds",
                "Seconds until the current OAuth token expires.",
                ConstGauge::new(left),
            );
        }
        let family = Family::<ConnectionLabel, Gauge<f64, AtomicU64>>::default();
        for (index, (_, left)) in self.channel_expiries() {
            family
                .get_or_create(&ConnectionLabel {
                    connection: index as u64,
                })
                .set(left);
        }
        register(
            r,
            "channel_expiry_seconds",
            "Seconds until each connection's live notification channel expires.",
            family,
        );
    }

    fn register_plan_metrics(&self, r: &mut Registry) {
        let p = &self.plan;
        let refused: usize = lock(&self.connections)
            .values()
            .map(|c| c.rejected_topics)
            .sum();
        let (rate_limited, waited) = match &*lock(&self.api_limiter) {
            Some(limiter) => (limiter.rate_limited_total(), limiter.waited()),
            None => (0, Duration::ZERO),
        };
        let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let gauges: [(&str, &str, u64); 4] = [
            (
                "topics_planned",
                "Topics the plan assigns to channels.",
                load(&p.topics),
            ),
            (
                "topic_channels",
                "Channels (connections) the plan uses.",
                load(&p.channels),
            ),
            (
                "topics_left_out",
                "Wanted topics not subscribed for want of channels (see /readyz).",
                load(&p.left_out),
            ),
            (
                "topics_refused",
                "Topics the service refused on the open channels (the others stay subscribed).",
                refused as u64,
            ),
        ];
        for (name, help, value) in gauges {
            register(r, name, help, ConstGauge::new(value as i64));
        }
        let counters: [(&str, &str, u64); 6] = [
            (
                "topic_refreshes",
                "Listings of the org's queues and users that succeeded.",
                load(&p.refreshes),
            ),
            (
                "topic_refresh_failures",
                "Listings that failed (the plan was kept).",
                load(&p.refresh_failures),
            ),
            (
                "topics_added",
                "Topics added to the plan by refreshes.",
                load(&p.added),
            ),
            (
                "topics_removed",
                "Topics removed from the plan by refreshes.",
                load(&p.removed),
            ),
            (
                "topic_removals_held",
                "Removals held back because a listing shrank suddenly.",
                load(&p.held_removals),
            ),
            (
                "api_rate_limited",
                "REST calls Genesys answered with 429.",
                rate_limited,
            ),
        ];
        for (name, help, value) in counters {
            register(r, name, help, ConstCounter::new(value));
        }
        register(r, "api_rate_limit_wait_seconds", "Time REST calls waited before being sent: the client-side pace and the pauses after a 429.", ConstCounter::new(waited.as_secs_f64()));
    }

    /// The REST rate limiter whose counters `/metrics` shows.
    pub fn watch_api_limiter(
        &self,
        limiter: std::sync::Arc<crate::genesys::rate_limit::RateLimiter>,
    ) {
        *lock(&self.api_limiter) = Some(limiter);
    }

    // ---- topic plan (planner) -------------------------------------------

    /// A listing planned (or re-planned) the topics.
    #[allow(clippy::too_many_arguments)]
    pub fn topics_planned(
        &self,
        trigger: &str,
        queues: usize,
        users: usize,
        topics: usize,
        channels: usize,
        added: usize,
        removed: usize,
        took: Duration,
    ) {
        let took_ms = took.as_millis() as u64;
        let p = &self.plan;
        p.topics.store(topics as u64, Ordering::Relaxed);
        p.channels.store(channels as u64, Ordering::Relaxed);
        p.refreshes.fetch_add(1, Ordering::Relaxed);
        if trigger != "start-up" {
            p.added.fetch_add(added as u64, Ordering::Relaxed);
            p.removed.fetch_add(removed as u64, Ordering::Relaxed);
        }
        if added > 0 || removed > 0 || trigger == "start-up" {
            tracing::info!(
                trigger,
                queues,
                users,
                topics,
                channels,
                added,
                removed,
                took_ms,
                "topic plan updated"
            );
        } else {
            tracing::debug!(
                trigger,
                queues,
                users,
                topics,
                took_ms,
                "topic plan unchanged"
            );
        }
    }

    pub fn topic_listing_failed(
        &self,
        error: &dyn std::fmt::Display,
        retry_in: Duration,
        plan_kept: bool,
    ) {
        self.plan.refresh_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            error = %error,
            retry_in_ms = retry_in.as_millis() as u64,
            plan_kept,
            "listing the org's queues and users failed; the current topics stay subscribed"
        );
        self.problem(
            Level::Warn,
            "planner",
            "listing the org's queues and users failed",
            error,
        );
    }

    /// The shrink guard held a listing's removals.
    pub fn topic_listing_held(
        &self,
        kind: &str,
        planned: usize,
        listed: usize,
        removed: usize,
        why: &str,
    ) {
        self.plan
            .held_removals
            .fetch_add(removed as u64, Ordering::Relaxed);
        tracing::warn!(
            kind,
            planned,
            listed,
            held_removals = removed,
            why,
            "listing shrank suddenly: additions applied, removals held"
        );
        self.problem(
            Level::Warn,
            "planner",
            "listing shrank suddenly: additions applied, removals held",
            &format_args!("{kind}: {listed} listed, {planned} planned; {why}"),
        );
    }

    /// The start-up plan needs more channels than Genesys allows.
    pub fn topic_plan_refused(&self, error: &dyn std::fmt::Display) {
        tracing::error!(error = %error, "topic plan refused");
        self.problem(Level::Error, "planner", "topic plan refused", error);
        *lock(&self.topic_plan_problem) = Some(format!("topics: {error}"));
    }

    /// A refresh wants more topics than the channels allowed hold: what
    /// fits is subscribed, the rest left out. Logged when it starts
    /// (`log`); `/readyz` names it until it fits again.
    pub fn topics_over_channel_limit(
        &self,
        wanted: usize,
        channels_needed: usize,
        left_out: usize,
        log: bool,
    ) {
        self.plan.left_out.store(left_out as u64, Ordering::Relaxed);
        let reason = format!(
            "topics: {wanted} topics need {channels_needed} channels, Genesys allows {} per OAuth client: \
             {left_out} topics are not subscribed (fix [topics] or split them over bridges)",
            crate::subscriptions::MAX_CHANNELS
        );
        if log {
            tracing::error!(
                wanted,
                channels_needed,
                left_out,
                "more topics than channels allow: subscribed what fits, the rest is left out"
            );
            self.problem(
                Level::Error,
                "planner",
                "more topics than channels allow: subscribed what fits, the rest is left out",
                &format_args!(
                    "{wanted} topics need {channels_needed} channels; {left_out} left out"
                ),
            );
        }
        *lock(&self.topic_plan_problem) = Some(reason);
    }

    pub fn topics_fit_again(&self, topics: usize, channels: usize) {
        self.plan.left_out.store(0, Ordering::Relaxed);
        tracing::info!(topics, channels, "every planned topic fits again");
        *lock(&self.topic_plan_problem) = None;
    }
}

/// Why [`Telemetry::health`] is red.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unhealthy {
    Failed(String),
    Stuck(Vec<&'static str>),
}

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unhealthy::Failed(reason) => f.write_str(reason),
            Unhealthy::Stuck(actors) => write!(f, "stuck actors: {}", actors.join(", ")),
        }
    }
}

/// How a channel is shown in logs and on /status. The channel id is a
/// credential: its connectUri needs no token, so whoever reads it could
/// connect and take the bridge's events. Its first 16 characters (for
/// `streaming-0-…` ids, the prefix and four random ones) tell channels
/// apart; no id format is assumed beyond that, so an id with more
/// hyphens does not show more of itself.
pub fn channel_label(id: &str) -> String {
    const SHOWN: usize = 16;
    const SHOWN_OF_SHORT: usize = 4;
    let shown = if id.chars().count() > SHOWN + 8 {
        SHOWN
    } else {
        SHOWN_OF_SHORT
    };
    format!("{}…", id.chars().take(shown).collect::<String>())
}

/// `text` (a service's error message, say) with every channel id in it
/// shortened as [`channel_label`] does.
pub fn mask_channel_ids(text: &str) -> String {
    const MARK: &str = "streaming-";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let id_len = rest[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(rest.len() - at);
        out.push_str(&channel_label(&rest[at..at + id_len]));
        rest = &rest[at + id_len..];
    }
    out.push_str(rest);
    out
}

/// RFC 3339 with milliseconds, UTC: as the log and the gap records.
fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// A poisoned lock only means another thread panicked mid-update of a
/// report; the data is still the best we have.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    /// What `f` logs at `info` through the bridge's own subscriber.
    fn logged(format: crate::config::LogFormat, f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Out(std::sync::Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Out {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                lock(&self.0).extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Out::default();
        let writer = out.clone();
        let subscriber = crate::telemetry_init::subscriber(
            format,
            tracing_subscriber::EnvFilter::new("info"),
            false,
            move || writer.clone(),
        );
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(lock(&out.0).clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    /// Start, a thousand rounds of errors, a summary, the end, the drain.
    fn an_outage(t: &Telemetry) {
        t.kafka_reachable(Ok(()));
        // Outside an outage: logged, once a minute per kind.
        t.kafka_client_problem("FAIL", "Connect to ipv4#127.0.0.1:9092 failed");
        t.kafka_client_problem("FAIL", "Connect to ipv4#127.0.0.1:9092 failed");
        t.kafka_reachable(Err("metadata request failed: BrokerTransportFailure".into()));
        for _ in 0..1000 {
            t.kafka_client_problem("BrokerTransportFailure", "Connection refused");
            t.kafka_client_problem("AllBrokersDown", "1/1 brokers are down");
            t.delivery_failed(
                7,
                "genesys.events",
                &"Local: Broker transport failure",
                true,
            );
            t.kafka_reachable(Err("metadata request failed".into()));
            t.kafka_topics(Vec::new());
        }
        {
            let mut log = lock(&t.kafka_outage);
            let outage = log.current.as_mut().unwrap();
            outage.last_summary = outage
                .last_summary
                .checked_sub(OUTAGE_SUMMARY_EVERY)
                .unwrap();
        }
        t.kafka_topics(Vec::new());
        t.kafka_topics(Vec::new());
        t.kafka_reachable(Ok(()));
        t.kafka_reachable(Ok(()));
        t.kafka_topics(Vec::new());
        t.kafka_topics(Vec::new());
    }

    #[test]
    fn an_outage_is_a_few_lines_with_the_same_fields_in_json_and_text() {
        use crate::config::LogFormat;
        let t = Telemetry::default();
        let json = logged(LogFormat::Json, || an_outage(&t));
        assert_eq!(t.counters.kafka_client_errors.get(), 2002);
        assert_eq!(t.counters.kafka_delivery_errors.get(), 1000);
        let text = logged(LogFormat::Text, || an_outage(&Telemetry::default()));
        let messages: Vec<serde_json::Value> = json
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let said: Vec<&str> = messages
            .iter()
            .map(|m| m["message"].as_str().unwrap())
            .collect();
        assert_eq!(said.len(), 6, "{json:#?}");
        assert_eq!(said[0], "Kafka reachable");
        assert!(said[1].starts_with("Kafka client problem"), "{said:?}");
        assert_eq!(
            messages[1]["error"],
            "Connect to ipv4#127.0.0.1:9092 failed"
        );
        // A field named `message` would be a second "message" key in JSON.
        for line in &json {
            assert_eq!(line.matches("\"message\":").count(), 1, "{line}");
        }
        let said = &said[1..];
        let messages = &messages[1..];
        let text = &text[1..];
        assert!(said[1].starts_with("Kafka outage:"), "{said:?}");
        assert_eq!(said[2], "Kafka outage continues");
        assert!(said[3].starts_with("Kafka outage over"), "{said:?}");
        assert_eq!(said[4], "backlog of the Kafka outage drained");
        let summary = &messages[2];
        assert_eq!(summary["level"], "WARN");
        assert_eq!(summary["client_errors_folded"], 2000);
        assert_eq!(summary["delivery_errors_folded"], 1000);
        assert!(summary["outage_secs"].is_u64() && summary["backlog"].is_u64());
        assert_eq!(messages[3]["level"], "INFO");
        assert_eq!(messages[3]["client_errors_folded"], 2000);
        // Text: the same lines, each with the same fields as `key=value`.
        assert_eq!(text.len(), messages.len(), "{text:#?}");
        for (json, text) in messages.iter().zip(text) {
            assert!(text.contains(json["message"].as_str().unwrap()), "{text}");
            for key in json.as_object().unwrap().keys() {
                if !["timestamp", "level", "target", "message"].contains(&key.as_str()) {
                    assert!(text.contains(&format!("{key}=")), "{key} missing in {text}");
                }
            }
        }
    }

    #[test]
    fn a_blocked_topic_is_one_warn_and_one_info() {
        let t = Telemetry::default();
        let lines = logged(crate::config::LogFormat::Json, || {
            for _ in 0..50 {
                t.kafka_topic_blocked("genesys.events", "TopicAuthorizationFailed", Duration::ZERO);
                t.delivery_failed(3, "genesys.events", &"TopicAuthorizationFailed", true);
            }
            t.kafka_topic_recovered("genesys.events");
            t.kafka_topic_recovered("genesys.events");
        });
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].contains("Kafka topic blocked") && lines[0].contains("\"WARN\""));
        assert!(lines[1].contains("takes events again") && lines[1].contains("blocked_secs"));
    }

    #[test]
    fn metrics_render_through_the_library_with_labels_and_histograms() {
        let t = Telemetry::default();
        t.event_received();
        t.events_forwarded(3);
        t.reconnecting(
            2,
            None,
            "socket dropped without a close frame (1006)",
            Duration::ZERO,
        );
        t.reconnecting(2, None, "setup failed: HTTP 503", Duration::ZERO);
        t.reconnecting(2, None, "setup failed: HTTP 503", Duration::ZERO);
        let end = SystemTime::now();
        let gap = crate::buffer::GapRecord::new(
            2,
            end - Duration::from_millis(1500),
            end,
            "test",
            false,
            &["v2.users.1.presence".to_owned()],
        );
        t.socket_gap(&gap);
        t.dead_lettered(7, "genesys.events", "too large");
        t.token_granted(Duration::from_secs(600), Duration::from_secs(300));
        t.acknowledged(&[crate::now_ms() - 30]);
        observe_request(&t.request_seconds(), "create channel", 0.2);
        let text = t.render_metrics();
        println!("{text}");
        assert_eq!(sample(&text, "gkb_events_received_total"), Some("1"));
        assert_eq!(sample(&text, "gkb_events_forwarded_total"), Some("3"));
        assert_eq!(
            sample(
                &text,
                r#"gkb_reconnects_total{connection="2",reason="setup_failed"}"#
            ),
            Some("2")
        );
        assert_eq!(
            sample(
                &text,
                r#"gkb_reconnects_total{connection="2",reason="dropped"}"#
            ),
            Some("1")
        );
        // Every reason class exists at zero once the connection is known.
        assert_eq!(
            sample(
                &text,
                r#"gkb_reconnects_total{connection="2",reason="heartbeat_timeout"}"#
            ),
            Some("0")
        );
        assert_eq!(
            sample(&text, r#"gkb_socket_gaps_total{connection="2"}"#),
            Some("1")
        );
        assert_eq!(
            sample(&text, r#"gkb_socket_gap_seconds_total{connection="2"}"#),
            Some("1.5")
        );
        assert_eq!(
            sample(
                &text,
                r#"gkb_socket_gap_last_end_timestamp_seconds{connection="2"}"#
            ),
            Some(format!("{}", gap.end_ms as f64 / 1000.0).as_str())
        );
        let report = t.gaps_report();
        assert_eq!(report["this_run"]["gaps"], 1, "{report}");
        assert_eq!(report["recent"][0]["start"], gap.start.as_str(), "{report}");
        assert_eq!(
            sample(
                &text,
                r#"gkb_events_dead_lettered_total{topic="genesys.events"}"#
            ),
            Some("1")
        );
        assert!(text.contains("# TYPE gkb_receive_to_ack_seconds histogram"));
        assert_eq!(
            sample(&text, r#"gkb_receive_to_ack_seconds_bucket{le="0.025"}"#),
            Some("0")
        );
        assert_eq!(
            sample(&text, r#"gkb_receive_to_ack_seconds_bucket{le="0.05"}"#),
            Some("1")
        );
        assert_eq!(
            sample(&text, r#"gkb_receive_to_ack_seconds_bucket{le="+Inf"}"#),
            Some("1")
        );
        assert_eq!(sample(&text, "gkb_receive_to_ack_seconds_count"), Some("1"));
        assert_eq!(
            sample(
                &text,
                r#"gkb_genesys_request_seconds_bucket{call="create_channel",le="0.25"}"#
            ),
            Some("1")
        );
        let expiry: f64 = sample(&text, "gkb_token_expiry_seconds")
            .unwrap()
            .parse()
            .unwrap();
        assert!((590.0..=600.0).contains(&expiry), "{expiry}");
    }

    #[test]
    fn reconnect_reasons_fall_into_a_fixed_set() {
        for (reason, class) in [
            ("setup failed: HTTP 500", "setup_failed"),
            (
                "no heartbeat for 20s (half-open socket)",
                "heartbeat_timeout",
            ),
            ("socket dropped without a close frame (1006)", "dropped"),
            ("socket protocol error: overflow", "protocol_error"),
            ("socket closed by the service (Normal)", "closed_by_service"),
            ("anything else", "other"),
        ] {
            assert_eq!(reconnect_class(reason), class);
            assert!(RECONNECT_REASONS.contains(&class));
        }
    }

    #[test]
    fn channel_ids_are_shortened() {
        assert_eq!(
            channel_label("streaming-0-fmtdmf8cdis7jh14udg5p89t6z"),
            "streaming-0-fmtd…"
        );
        assert_eq!(channel_label("abcdefgh"), "abcd…");
        assert_eq!(
            channel_label("streaming-0-1234-5678-9abc-def0-123456789abc"),
            "streaming-0-1234…"
        );
    }

    #[test]
    fn channel_ids_in_messages_are_masked() {
        assert_eq!(
            mask_channel_ids(
                "channel streaming-0-fmtdmf8cdis7jh14udg5p89t6z not found; see streaming-1-abcdefghijklmnopqrstu."
            ),
            "channel streaming-0-fmtd… not found; see streaming-1-abcd…."
        );
        assert_eq!(mask_channel_ids("no id here"), "no id here");
    }
}
