//! What the bridge tells its operators: the one place where an event is
//! both logged and counted, and the state /healthz, /readyz and /metrics
//! report.
//!
//! Actors never call `tracing` for an operational event and bump a counter
//! separately: they call a method here that does both, so the log and the
//! metrics cannot drift apart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::buffer::Buffer;

/// Counters, all monotonic.
#[derive(Default)]
pub struct Counters {
    pub events_received: AtomicU64,
    pub events_forwarded: AtomicU64,
    pub events_dead_lettered: AtomicU64,
    pub events_quarantined: AtomicU64,
    pub protocol_frames: AtomicU64,
    pub malformed_frames: AtomicU64,
    pub buffer_write_errors: AtomicU64,
    pub kafka_delivery_errors: AtomicU64,
    pub reconnects: AtomicU64,
    pub channels_created: AtomicU64,
    pub tokens_granted: AtomicU64,
    pub token_failures: AtomicU64,
    pub api_retries: AtomicU64,
    pub producer_restarts: AtomicU64,
    pub kafka_client_errors: AtomicU64,
    pub planned_moves: AtomicU64,
    pub overlap_duplicates: AtomicU64,
    pub socket_gaps: AtomicU64,
    pub socket_gap_millis: AtomicU64,
    pub stalls: AtomicU64,
}

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
}

/// A per-topic gauge's value.
type TopicGauge = fn(&TopicReport) -> f64;

/// Upper bounds of the receive → acknowledged latency histogram, seconds.
const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
    300.0,
];

/// A Prometheus histogram of fixed buckets, updated without locks.
#[derive(Default)]
struct Histogram {
    /// One count per bucket of `LATENCY_BUCKETS`, plus +Inf.
    buckets: [AtomicU64; 17],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, seconds: f64) {
        let index = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
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
    receive_to_ack: Histogram,
    /// A failure no restart of an actor can mend: /healthz turns red so
    /// the process supervisor sees it.
    fatal: Mutex<Option<String>>,
    /// Why the topic plan leaves topics out (over the channel limit).
    topic_plan_problem: Mutex<Option<String>>,
    plan: PlanMetrics,
    /// The REST rate limiter, read for its counters.
    api_limiter: Mutex<Option<std::sync::Arc<crate::genesys::rate_limit::RateLimiter>>>,
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

fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
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
            receive_to_ack: Histogram::default(),
            fatal: Mutex::default(),
            topic_plan_problem: Mutex::default(),
            plan: PlanMetrics::default(),
            api_limiter: Mutex::default(),
        }
    }
}

impl Telemetry {
    pub fn attach_buffer(&self, buffer: Buffer) {
        *lock(&self.buffer) = Some(buffer);
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
    }

    // ---- connection -----------------------------------------------------

    pub fn connection_phase(&self, index: usize, mut state: ConnectionState) {
        state.channel_id = state.channel_id.as_deref().map(channel_label);
        tracing::debug!(connection = index, phase = state.phase, channel = ?state.channel_id, "connection phase");
        lock(&self.connections).insert(index, state);
    }

    pub fn connection_open(&self, index: usize, channel_id: &str, topics: usize, rejected: usize) {
        let channel_id = &channel_label(channel_id);
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
            Some(example) => tracing::warn!(
                connection = index,
                topics,
                refused,
                example,
                "subscriptions updated; refused topics are left out, the others stay subscribed"
            ),
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
    }

    pub fn channel_created(&self, index: usize, channel_id: &str, expires: Option<&str>) {
        let channel_id = &channel_label(channel_id);
        inc(&self.counters.channels_created);
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
        inc(&self.counters.reconnects);
        tracing::warn!(
            connection = index,
            channel = channel_id,
            reason,
            delay_ms = delay.as_millis() as u64,
            "reconnecting"
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
    }

    /// Two sockets delivered at once and are down to one again.
    pub fn overlap_ended(&self, index: usize, summary: crate::connection::overlap::OverlapSummary) {
        self.counters
            .overlap_duplicates
            .fetch_add(summary.duplicates, Ordering::Relaxed);
        tracing::info!(
            connection = index,
            duplicates_removed = summary.duplicates,
            lasted_ms = summary.lasted.as_millis() as u64,
            "socket overlap ended"
        );
    }

    /// A time without any subscribed socket ended: what was sent to the
    /// channel then is gone for good (Genesys replays nothing).
    pub fn socket_gap(
        &self,
        index: usize,
        since: std::time::SystemTime,
        lasted: Duration,
        reason: &str,
    ) {
        inc(&self.counters.socket_gaps);
        self.counters
            .socket_gap_millis
            .fetch_add(lasted.as_millis() as u64, Ordering::Relaxed);
        tracing::warn!(
            connection = index,
            from = %humantime::format_rfc3339_millis(since),
            to = %humantime::format_rfc3339_millis(since + lasted),
            lasted_ms = lasted.as_millis() as u64,
            reason,
            "gap: no subscribed socket; events sent meanwhile were missed"
        );
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
    }

    pub fn api_retry(&self, what: &str, error: &dyn std::fmt::Display, delay: Duration) {
        inc(&self.counters.api_retries);
        tracing::warn!(call = what, error = %error, delay_ms = delay.as_millis() as u64, "Genesys API call failed; retrying");
    }

    pub fn protocol_frame(&self) {
        inc(&self.counters.protocol_frames);
    }

    pub fn malformed_frame(&self, index: usize, reason: &dyn std::fmt::Display, len: usize) {
        inc(&self.counters.malformed_frames);
        tracing::warn!(connection = index, reason = %reason, bytes = len, "malformed frame kept in the buffer quarantine, not forwarded");
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
        }
    }

    /// Reading the buffer failed; logged at most once a minute.
    pub fn buffer_read_failed(&self, error: &dyn std::fmt::Display) {
        let mut logged = lock(&self.buffer_read_logged);
        if logged.map_or(true, |at| at.elapsed() >= Duration::from_secs(60)) {
            *logged = Some(Instant::now());
            tracing::error!(error = %error, "cannot read the buffer; retrying");
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

    pub fn kafka_reachable(&self, reachable: Result<(), String>) {
        let mut state = lock(&self.kafka);
        if *state != reachable {
            match &reachable {
                Ok(()) => tracing::info!("Kafka reachable"),
                Err(reason) => tracing::warn!(reason = %reason, "Kafka not reachable"),
            }
        }
        *state = reachable;
    }

    /// An error or warning from the Kafka client itself (a broker down, a
    /// connection refused). One line per kind a minute, with how many
    /// repeats were folded into it; every one is counted.
    pub fn kafka_client_problem(&self, kind: &str, message: &str) {
        inc(&self.counters.kafka_client_errors);
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
                tracing::warn!(target: "librdkafka", kind, message, repeats_folded = folded, "Kafka client problem (repeats within a minute are counted in gkb_kafka_client_errors_total, not logged)");
            }
        }
    }

    /// A record was acknowledged by Kafka: its receive → acknowledged
    /// time goes into the latency histogram.
    pub fn acknowledged(&self, received_at_ms: u64) {
        let ms = crate::now_ms().saturating_sub(received_at_ms);
        self.receive_to_ack.observe(ms as f64 / 1000.0);
    }

    /// The forwarding thread's view of every routed Kafka topic.
    pub fn kafka_topics(&self, reports: Vec<TopicReport>) {
        *lock(&self.kafka_topics) = reports;
    }

    pub fn kafka_topic_blocked(&self, topic: &str, reason: &str, retry_in: Duration) {
        tracing::warn!(
            kafka_topic = topic,
            reason,
            retry_in_ms = retry_in.as_millis() as u64,
            "Kafka topic blocked; its events wait in the buffer while other topics flow"
        );
    }

    pub fn kafka_topic_recovered(&self, topic: &str) {
        tracing::info!(kafka_topic = topic, "Kafka topic takes events again");
    }

    /// librdkafka reported a fatal error; the producer is rebuilt.
    pub fn producer_fatal(&self, reason: &str, restart_in: Duration) {
        inc(&self.counters.producer_restarts);
        tracing::error!(
            reason,
            restart_in_ms = restart_in.as_millis() as u64,
            "fatal Kafka producer error: restarting the producer"
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
        *lock(&self.fatal) = Some(format!("kafka producer stopped: {reason}"));
    }

    /// Failures no actor restart can mend (/healthz).
    pub fn fatal(&self) -> Option<String> {
        lock(&self.fatal).clone()
    }

    pub fn events_forwarded(&self, n: u64) {
        self.counters
            .events_forwarded
            .fetch_add(n, Ordering::Relaxed);
    }

    /// A failed delivery. Every one is counted; only the first of a burst
    /// (`first`) is logged, the rest go into the same rewind.
    pub fn delivery_failed(
        &self,
        seq: u64,
        kafka_topic: &str,
        error: &dyn std::fmt::Display,
        first: bool,
    ) {
        inc(&self.counters.kafka_delivery_errors);
        if first {
            tracing::warn!(seq, kafka_topic, error = %error, "Kafka delivery failed; it stays in the buffer and is sent again after a backoff");
        }
    }

    pub fn dead_lettered(&self, seq: u64, kafka_topic: &str, reason: &str) {
        inc(&self.counters.events_dead_lettered);
        tracing::error!(
            seq,
            kafka_topic,
            reason,
            "Kafka refused an event for good; moved to the dead-letter area"
        );
    }

    pub fn quarantined(&self, n: usize) {
        self.counters
            .events_quarantined
            .fetch_add(n as u64, Ordering::Relaxed);
        tracing::error!(count = n, "undecodable buffer entries moved to quarantine");
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

    /// Prometheus text exposition.
    pub fn render_metrics(&self) -> String {
        let c = &self.counters;
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 19] = [
            (
                "planned_moves_total",
                "Make-before-break moves to a new channel (rollover, socket_closing, lost channel).",
                &c.planned_moves,
            ),
            (
                "overlap_duplicates_total",
                "Copies of an event received on both sockets of a move, removed before the buffer.",
                &c.overlap_duplicates,
            ),
            (
                "socket_gaps_total",
                "Times without any subscribed socket (events sent then were missed).",
                &c.socket_gaps,
            ),
            (
                "stalls_total",
                "Times the bridge found it had not been running (paused, starved).",
                &c.stalls,
            ),
            (
                "events_received_total",
                "Notifications received from Genesys and buffered.",
                &c.events_received,
            ),
            (
                "events_forwarded_total",
                "Notifications acknowledged by Kafka.",
                &c.events_forwarded,
            ),
            (
                "events_dead_lettered_total",
                "Notifications Kafka refused for good.",
                &c.events_dead_lettered,
            ),
            (
                "events_quarantined_total",
                "Buffer entries that could not be decoded.",
                &c.events_quarantined,
            ),
            (
                "protocol_frames_total",
                "Heartbeats, pongs and subscribe replies (not forwarded).",
                &c.protocol_frames,
            ),
            (
                "malformed_frames_total",
                "Frames that were not notifications (kept in quarantine, not forwarded).",
                &c.malformed_frames,
            ),
            (
                "buffer_write_errors_total",
                "Received events the buffer could not store.",
                &c.buffer_write_errors,
            ),
            (
                "kafka_delivery_errors_total",
                "Failed Kafka deliveries (retried from the buffer).",
                &c.kafka_delivery_errors,
            ),
            (
                "reconnects_total",
                "Notification socket reconnects.",
                &c.reconnects,
            ),
            (
                "channels_created_total",
                "Notification channels created.",
                &c.channels_created,
            ),
            (
                "tokens_granted_total",
                "OAuth tokens obtained.",
                &c.tokens_granted,
            ),
            (
                "token_failures_total",
                "Failed OAuth token requests.",
                &c.token_failures,
            ),
            (
                "api_retries_total",
                "Genesys REST calls retried.",
                &c.api_retries,
            ),
            (
                "producer_restarts_total",
                "Kafka producers rebuilt after a fatal error.",
                &c.producer_restarts,
            ),
            (
                "kafka_client_errors_total",
                "Errors and warnings the Kafka client reported (connection failures, brokers down).",
                &c.kafka_client_errors,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP gkb_{name} {help}\n# TYPE gkb_{name} counter\ngkb_{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gkb_socket_gap_seconds_total Time without any subscribed socket.\n# TYPE gkb_socket_gap_seconds_total counter\ngkb_socket_gap_seconds_total {}",
            c.socket_gap_millis.load(Ordering::Relaxed) as f64 / 1000.0
        );
        if let Some(buffer) = &*lock(&self.buffer) {
            buffer.write_metrics(&mut out);
        }
        self.receive_to_ack.render(
            &mut out,
            "gkb_receive_to_ack_seconds",
            "Time from receiving an event to Kafka acknowledging it.",
        );
        let topics = lock(&self.kafka_topics).clone();
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
            let _ = writeln!(out, "# HELP gkb_{name} {help}\n# TYPE gkb_{name} gauge");
            for topic in &topics {
                let _ = writeln!(
                    out,
                    "gkb_{name}{{topic=\"{}\"}} {}",
                    topic.topic,
                    value(topic)
                );
            }
        }
        let open = lock(&self.connections)
            .values()
            .filter(|s| s.phase == "open")
            .count();
        let kafka_up = u8::from(lock(&self.kafka).is_ok());
        let _ = writeln!(
            out,
            "# HELP gkb_connections_open Notification sockets open.\n# TYPE gkb_connections_open gauge\ngkb_connections_open {open}\n\
             # HELP gkb_kafka_up Whether Kafka answered the last probe.\n# TYPE gkb_kafka_up gauge\ngkb_kafka_up {kafka_up}\n\
             # HELP gkb_uptime_seconds Seconds since start.\n# TYPE gkb_uptime_seconds gauge\ngkb_uptime_seconds {}",
            self.started.elapsed().as_secs()
        );
        self.render_plan_metrics(&mut out);
        out
    }

    fn render_plan_metrics(&self, out: &mut String) {
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
        let metrics: [(&str, &str, &str, String); 11] = [
            (
                "topics_planned",
                "gauge",
                "Topics the plan assigns to channels.",
                load(&p.topics).to_string(),
            ),
            (
                "topic_channels",
                "gauge",
                "Channels (connections) the plan uses.",
                load(&p.channels).to_string(),
            ),
            (
                "topics_left_out",
                "gauge",
                "Wanted topics not subscribed for want of channels (see /readyz).",
                load(&p.left_out).to_string(),
            ),
            (
                "topics_refused",
                "gauge",
                "Topics the service refused on the open channels (the others stay subscribed).",
                refused.to_string(),
            ),
            (
                "topic_refreshes_total",
                "counter",
                "Listings of the org's queues and users that succeeded.",
                load(&p.refreshes).to_string(),
            ),
            (
                "topic_refresh_failures_total",
                "counter",
                "Listings that failed (the plan was kept).",
                load(&p.refresh_failures).to_string(),
            ),
            (
                "topics_added_total",
                "counter",
                "Topics added to the plan by refreshes.",
                load(&p.added).to_string(),
            ),
            (
                "topics_removed_total",
                "counter",
                "Topics removed from the plan by refreshes.",
                load(&p.removed).to_string(),
            ),
            (
                "topic_removals_held_total",
                "counter",
                "Removals held back because a listing shrank suddenly.",
                load(&p.held_removals).to_string(),
            ),
            (
                "api_rate_limited_total",
                "counter",
                "REST calls Genesys answered with 429.",
                rate_limited.to_string(),
            ),
            (
                "api_rate_limit_wait_seconds_total",
                "counter",
                "Time REST calls waited before being sent: the client-side pace and the pauses after a 429.",
                waited.as_secs_f64().to_string(),
            ),
        ];
        for (name, kind, help, value) in metrics {
            let _ = writeln!(
                out,
                "# HELP gkb_{name} {help}\n# TYPE gkb_{name} {kind}\ngkb_{name} {value}"
            );
        }
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
        inc(&p.refreshes);
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
        inc(&self.plan.refresh_failures);
        tracing::warn!(
            error = %error,
            retry_in_ms = retry_in.as_millis() as u64,
            plan_kept,
            "listing the org's queues and users failed; the current topics stay subscribed"
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
    }

    /// The start-up plan needs more channels than Genesys allows.
    pub fn topic_plan_refused(&self, error: &dyn std::fmt::Display) {
        tracing::error!(error = %error, "topic plan refused");
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
        }
        *lock(&self.topic_plan_problem) = Some(reason);
    }

    pub fn topics_fit_again(&self, topics: usize, channels: usize) {
        self.plan.left_out.store(0, Ordering::Relaxed);
        tracing::info!(topics, channels, "every planned topic fits again");
        *lock(&self.topic_plan_problem) = None;
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

/// A poisoned lock only means another thread panicked mid-update of a
/// report; the data is still the best we have.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

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
