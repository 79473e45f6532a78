//! Telemetry of the socket side: each connection's phase and channel,
//! reconnects, planned moves and their overlaps, stalls, and the frames
//! that arrive (notifications, protocol, malformed).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use super::gaps::GapSeries;
use super::metrics::{
    reconnect_class, register, ConnectionLabel, ReconnectLabels, RECONNECT_REASONS,
};
use super::recent::Level;
use super::shared::{lock, rfc3339, Shared};
use crate::genesys::channel_id::channel_label;

/// How one channel's connection is doing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionState {
    pub phase: &'static str,
    pub channel_id: Option<String>,
    pub topics: usize,
    pub rejected_topics: usize,
    pub detail: Option<String>,
}

/// Channel expiries: by connection (the live channel) and by channel
/// label (created, not yet live; bounded).
#[derive(Default)]
struct ChannelExpiry {
    live: BTreeMap<usize, SystemTime>,
    created: BTreeMap<String, SystemTime>,
}

/// The connections' state and counters.
pub struct ConnectionTelemetry {
    shared: Arc<Shared>,
    /// Each connection's socket gaps, whose series exist from the start.
    gap_series: Arc<GapSeries>,
    states: Mutex<BTreeMap<usize, ConnectionState>>,
    /// When each connection's live channel expires, and the expiry of
    /// channels created but not yet live (by their shown label).
    channel_expiry: Mutex<ChannelExpiry>,
    events_received: Counter,
    protocol_frames: Counter,
    malformed_frames: Counter,
    /// Per connection and reason class ([`RECONNECT_REASONS`]).
    reconnects: Family<ReconnectLabels, Counter>,
    channels_created: Counter,
    planned_moves: Counter,
    overlap_duplicates: Counter,
    stalls: Counter,
}

impl ConnectionTelemetry {
    pub(super) fn new(shared: Arc<Shared>, gap_series: Arc<GapSeries>) -> Self {
        ConnectionTelemetry {
            shared,
            gap_series,
            states: Mutex::default(),
            channel_expiry: Mutex::default(),
            events_received: Counter::default(),
            protocol_frames: Counter::default(),
            malformed_frames: Counter::default(),
            reconnects: Family::default(),
            channels_created: Counter::default(),
            planned_moves: Counter::default(),
            overlap_duplicates: Counter::default(),
            stalls: Counter::default(),
        }
    }

    pub fn phase(&self, index: usize, mut state: ConnectionState) {
        state.channel_id = state.channel_id.as_deref().map(channel_label);
        tracing::debug!(connection = index, phase = state.phase, channel = ?state.channel_id, "connection phase");
        lock(&self.states).insert(index, state);
        self.series(index);
    }

    pub fn open(&self, index: usize, channel_id: &str, topics: usize, rejected: usize) {
        let channel_id = &channel_label(channel_id);
        {
            let mut expiry = lock(&self.channel_expiry);
            match expiry.created.get(channel_id).copied() {
                Some(at) => expiry.live.insert(index, at),
                None => expiry.live.remove(&index),
            };
        }
        self.series(index);
        tracing::info!(
            connection = index,
            channel = channel_id,
            topics,
            rejected,
            "notification socket open"
        );
        lock(&self.states).insert(
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
        if let Some(state) = lock(&self.states).get_mut(&index) {
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
                self.shared.problem(
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
        self.shared.problem(
            Level::Warn,
            format!("connection {index}"),
            "subscription update failed",
            error,
        );
    }

    pub fn channel_created(&self, index: usize, channel_id: &str, expires: Option<&str>) {
        let channel_id = &channel_label(channel_id);
        self.channels_created.inc();
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
        self.series(index);
        self.reconnects
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
        self.shared.problem(
            Level::Warn,
            format!("connection {index}"),
            "reconnecting",
            &reason,
        );
        let mut states = lock(&self.states);
        let entry = states.entry(index).or_insert_with(|| ConnectionState {
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
        self.planned_moves.inc();
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
        self.shared.problem(
            Level::Warn,
            format!("connection {index}"),
            "moving to a new channel failed",
            &reason,
        );
    }

    /// Two sockets delivered at once and are down to one again: the
    /// copies removed meanwhile, and how long the overlap lasted.
    pub fn overlap_ended(&self, index: usize, duplicates: u64, lasted: Duration) {
        self.overlap_duplicates.inc_by(duplicates);
        tracing::info!(
            connection = index,
            duplicates_removed = duplicates,
            lasted_ms = lasted.as_millis() as u64,
            "socket overlap ended"
        );
    }

    /// Copies removed after their overlap was reported (the socket we left
    /// closed while a copy was still on its way on the other one).
    pub fn overlap_late_duplicates(&self, index: usize, count: u64) {
        self.overlap_duplicates.inc_by(count);
        tracing::debug!(
            connection = index,
            duplicates_removed = count,
            "copy removed just after a socket overlap"
        );
    }

    /// The connection's actor could not run for a while (a process pause,
    /// a starved CPU); its socket is read before it is judged.
    pub fn stall_detected(&self, index: usize, stalled_for: Duration) {
        self.stalls.inc();
        tracing::warn!(
            connection = index,
            stalled_ms = stalled_for.as_millis() as u64,
            "the bridge was not running (paused or starved); reading the socket before judging it"
        );
        self.shared.problem(
            Level::Warn,
            format!("connection {index}"),
            "the bridge was not running (paused or starved)",
            &format_args!("for {:.1} s", stalled_for.as_secs_f64()),
        );
    }

    pub fn protocol_frame(&self) {
        self.protocol_frames.inc();
    }

    pub fn malformed_frame(&self, index: usize, reason: &dyn std::fmt::Display, len: usize) {
        self.malformed_frames.inc();
        tracing::warn!(connection = index, reason = %reason, bytes = len, "malformed frame kept in the buffer quarantine, not forwarded");
        self.shared.problem(
            Level::Warn,
            format!("connection {index}"),
            "malformed frame kept in the buffer quarantine",
            reason,
        );
    }

    pub fn event_received(&self) {
        self.events_received.inc();
    }

    /// Notifications received and buffered since start.
    pub fn events_received(&self) -> u64 {
        self.events_received.get()
    }

    pub fn states(&self) -> BTreeMap<usize, ConnectionState> {
        lock(&self.states).clone()
    }

    /// /readyz: no connection yet, or one that is not open.
    pub(super) fn not_ready(&self, reasons: &mut Vec<String>) {
        let states = lock(&self.states);
        if states.is_empty() {
            reasons.push("genesys: no connection started yet".into());
        }
        for (index, state) in states.iter() {
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
    }

    /// /status's `connections`: each [`ConnectionState`] (its fields
    /// unchanged) with its live channel's expiry and its reconnects.
    pub fn report(&self) -> serde_json::Value {
        let expiries = self.channel_expiries();
        let report: serde_json::Map<String, serde_json::Value> = self
            .states()
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
                self.reconnects
                    .get_or_create(&ReconnectLabels {
                        connection: index as u64,
                        reason,
                    })
                    .get()
            })
            .sum()
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

    /// Creates a connection's labelled series at zero, so that they exist
    /// (and `rate()` works) before the first reconnect or gap.
    fn series(&self, index: usize) {
        self.gap_series.connection_known(index);
        for reason in RECONNECT_REASONS {
            let _ = self.reconnects.get_or_create(&ReconnectLabels {
                connection: index as u64,
                reason,
            });
        }
    }

    pub(super) fn register(&self, r: &mut Registry) {
        let counters: [(&str, &str, &Counter); 7] = [
            ("planned_moves", "Make-before-break moves to a new channel (rollover, socket_closing, lost channel).", &self.planned_moves),
            ("overlap_duplicates", "Copies of an event received on both sockets of a move, removed before the buffer.", &self.overlap_duplicates),
            ("stalls", "Times the bridge found it had not been running (paused, starved).", &self.stalls),
            ("events_received", "Notifications received from Genesys and buffered.", &self.events_received),
            ("protocol_frames", "Heartbeats, pongs and subscribe replies (not forwarded).", &self.protocol_frames),
            ("malformed_frames", "Frames that were not notifications (kept in quarantine, not forwarded).", &self.malformed_frames),
            ("channels_created", "Notification channels created.", &self.channels_created),
        ];
        for (name, help, counter) in counters {
            register(r, name, help, counter.clone());
        }
        register(
            r,
            "reconnects",
            "Notification socket reconnects, by connection and reason class.",
            self.reconnects.clone(),
        );
        let (open, refused) = {
            let states = lock(&self.states);
            let open = states.values().filter(|s| s.phase == "open").count();
            let refused: usize = states.values().map(|s| s.rejected_topics).sum();
            (open, refused)
        };
        register(
            r,
            "connections_open",
            "Notification sockets open.",
            ConstGauge::new(open as i64),
        );
        register(
            r,
            "topics_refused",
            "Topics the service refused on the open channels (the others stay subscribed).",
            ConstGauge::new(refused as i64),
        );
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
}
