//! TEMPORARY: the flat method names of the telemetry before its split into
//! areas, delegating to them, so that callers being reshaped on other
//! branches keep compiling until they are merged and moved to the areas'
//! names. Removed once no caller uses them.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use super::connection::{ConnectionState, ConnectionTelemetry};
use super::kafka::{KafkaTelemetry, TopicReport};
use super::Telemetry;

/// Handles on counters some callers read (clones share the count).
pub struct Counters {
    pub events_received: Counter,
    pub events_forwarded: Counter,
    pub kafka_delivery_errors: Counter,
    pub producer_restarts: Counter,
}

impl Counters {
    pub(super) fn of(connections: &ConnectionTelemetry, kafka: &KafkaTelemetry) -> Self {
        Counters {
            events_received: connections.received_counter(),
            events_forwarded: kafka.forwarded_counter(),
            kafka_delivery_errors: kafka.delivery_errors_counter(),
            producer_restarts: kafka.producer_restarts_counter(),
        }
    }
}

impl Telemetry {
    pub fn token_granted(&self, expires_in: Duration, refresh_in: Duration) {
        self.token.granted(expires_in, refresh_in)
    }
    pub fn token_failed(&self, error: &dyn std::fmt::Display, retry_in: Duration) {
        self.token.failed(error, retry_in)
    }
    pub fn connection_phase(&self, index: usize, state: ConnectionState) {
        self.connections.phase(index, state)
    }
    pub fn connection_open(&self, index: usize, channel_id: &str, topics: usize, rejected: usize) {
        self.connections.open(index, channel_id, topics, rejected)
    }
    pub fn subscriptions_updated(
        &self,
        index: usize,
        topics: usize,
        refused: usize,
        refused_example: Option<&str>,
    ) {
        self.connections
            .subscriptions_updated(index, topics, refused, refused_example)
    }
    pub fn subscriptions_update_failed(
        &self,
        index: usize,
        error: &dyn std::fmt::Display,
        retry_in: Duration,
    ) {
        self.connections
            .subscriptions_update_failed(index, error, retry_in)
    }
    pub fn channel_created(&self, index: usize, channel_id: &str, expires: Option<&str>) {
        self.connections.channel_created(index, channel_id, expires)
    }
    pub fn reconnecting(
        &self,
        index: usize,
        channel_id: Option<&str>,
        reason: &str,
        delay: Duration,
    ) {
        self.connections
            .reconnecting(index, channel_id, reason, delay)
    }
    pub fn planned_move(&self, index: usize, reason: &str, delay: Duration) {
        self.connections.planned_move(index, reason, delay)
    }
    pub fn move_failed(&self, index: usize, reason: &str, retry_in: Duration) {
        self.connections.move_failed(index, reason, retry_in)
    }
    pub fn overlap_ended(&self, index: usize, summary: crate::connection::overlap::OverlapSummary) {
        self.connections
            .overlap_ended(index, summary.duplicates, summary.lasted)
    }
    pub fn overlap_late_duplicates(&self, index: usize, count: u64) {
        self.connections.overlap_late_duplicates(index, count)
    }
    pub fn socket_gap(&self, gap: &crate::buffer::GapRecord) {
        self.gaps.socket_gap(gap)
    }
    pub fn remember_gaps(&self, gaps: impl IntoIterator<Item = crate::buffer::GapRecord>) {
        self.gaps.remember(gaps)
    }
    pub fn gaps_report(&self) -> serde_json::Value {
        self.gaps.report()
    }
    pub fn stall_detected(&self, index: usize, stalled_for: Duration) {
        self.connections.stall_detected(index, stalled_for)
    }
    pub fn api_retry(&self, what: &str, error: &dyn std::fmt::Display, delay: Duration) {
        self.token.api_retry(what, error, delay)
    }
    pub fn protocol_frame(&self) {
        self.connections.protocol_frame()
    }
    pub fn malformed_frame(&self, index: usize, reason: &dyn std::fmt::Display, len: usize) {
        self.connections.malformed_frame(index, reason, len)
    }
    pub fn event_received(&self) {
        self.connections.event_received()
    }
    pub fn buffer_write_failed(&self, error: &dyn std::fmt::Display) {
        self.buffer.write_failed(error)
    }
    pub fn buffer_read_failed(&self, error: &dyn std::fmt::Display) {
        self.buffer.read_failed(error)
    }
    pub fn buffer_write_ok(&self) {
        self.buffer.write_ok()
    }
    pub fn kafka_reachable(&self, reachable: Result<(), String>) {
        self.kafka.reachable(reachable)
    }
    pub fn kafka_client_problem(&self, kind: &str, message: &str) {
        self.kafka.client_problem(kind, message)
    }
    pub fn acknowledged(&self, received_at_ms: &[u64]) {
        self.kafka.acknowledged(received_at_ms)
    }
    pub fn kafka_topics(&self, reports: Vec<TopicReport>) {
        self.kafka.topics_report(reports)
    }
    pub fn forwarded_report(&self) -> serde_json::Value {
        self.kafka.forwarded_report()
    }
    pub fn kafka_topic_blocked(&self, topic: &str, reason: &str, retry_in: Duration) {
        self.kafka.topic_blocked(topic, reason, retry_in)
    }
    pub fn kafka_topic_recovered(&self, topic: &str) {
        self.kafka.topic_recovered(topic)
    }
    pub fn producer_fatal(&self, reason: &str, restart_in: Duration) {
        self.kafka.producer_fatal(reason, restart_in)
    }
    pub fn producer_misconfigured(&self, reason: &str) {
        self.kafka.producer_misconfigured(reason)
    }
    pub fn events_forwarded(&self, n: u64) {
        self.kafka.events_forwarded(n)
    }
    pub fn delivery_failed(
        &self,
        seq: u64,
        kafka_topic: &str,
        error: &dyn std::fmt::Display,
        first: bool,
    ) {
        self.kafka.delivery_failed(seq, kafka_topic, error, first)
    }
    pub fn dead_lettered(&self, seq: u64, kafka_topic: &str, reason: &str) {
        self.kafka.dead_lettered(seq, kafka_topic, reason)
    }
    pub fn quarantined(&self, n: usize) {
        self.buffer.quarantined(n)
    }
    pub fn topics(&self) -> Vec<TopicReport> {
        self.kafka.topics()
    }
    pub fn connections_report(&self) -> serde_json::Value {
        self.connections.report()
    }
    pub fn token_report(&self) -> serde_json::Value {
        self.token.report()
    }
    pub fn request_seconds(&self) -> super::RequestSeconds {
        self.token.request_seconds()
    }
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
        self.plan.planned(
            trigger, queues, users, topics, channels, added, removed, took,
        )
    }
    pub fn topic_listing_failed(
        &self,
        error: &dyn std::fmt::Display,
        retry_in: Duration,
        plan_kept: bool,
    ) {
        self.plan.listing_failed(error, retry_in, plan_kept)
    }
    pub fn topic_listing_held(
        &self,
        kind: &str,
        planned: usize,
        listed: usize,
        removed: usize,
        why: &str,
    ) {
        self.plan.listing_held(kind, planned, listed, removed, why)
    }
    pub fn topic_plan_refused(&self, error: &dyn std::fmt::Display) {
        self.plan.refused(error)
    }
    pub fn topics_over_channel_limit(
        &self,
        wanted: usize,
        channels_needed: usize,
        left_out: usize,
        log: bool,
    ) {
        self.plan.over_channel_limit(
            wanted,
            channels_needed,
            crate::subscriptions::MAX_CHANNELS,
            left_out,
            log,
        )
    }
    pub fn topics_fit_again(&self, topics: usize, channels: usize) {
        self.plan.fit_again(topics, channels)
    }
    pub fn watch_api_limiter(&self, limiter: Arc<crate::genesys::rate_limit::RateLimiter>) {
        self.register_collector(limiter)
    }
}
