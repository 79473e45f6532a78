//! What the bridge tells its operators: the one place where an event is
//! both logged and counted, and the state /healthz, /readyz, /metrics and
//! /status report.
//!
//! Actors never call `tracing` for an operational event and bump a counter
//! separately: they call a method of their area here that does both, so
//! the log and the metrics cannot drift apart. One area per side of the
//! bridge, each a field of [`Telemetry`] with its own state, counters,
//! `/readyz` reasons and `/metrics` series:
//! - [`token`]: OAuth tokens and REST calls (`telemetry.token`);
//! - [`connection`]: sockets, channels, moves, frames (`telemetry.connections`);
//! - [`gaps`]: times without a subscribed socket (`telemetry.gaps`);
//! - [`kafka`]: reachability, outages, topics, deliveries (`telemetry.kafka`);
//! - [`planner`]: the topic plan (`telemetry.plan`);
//! - [`buffer`]: appends and reads that fail (`telemetry.buffer`);
//! - [`repair`]: observation snapshots after gaps (`telemetry.repair`);
//! - [`cluster`]: role, epoch, members, takeovers (`telemetry.cluster`).
//!
//! Telemetry imports no component. What it reads of a component it reads
//! through a trait defined here ([`BufferView`]) or as a `prometheus-client`
//! collector the component registers ([`Telemetry::register_collector`]):
//! the buffer and the REST rate limiter count their own figures.
//! `shared.rs` holds what the areas share (the recent problems, those
//! views), `metrics.rs` the metric types, `recent.rs` what `/status` shows
//! besides the state, `render.rs` the encoding of `/metrics`, `init.rs`
//! the `[log]` section and the `tracing` set-up.

pub mod buffer;
pub mod cluster;
pub mod connection;
pub mod gaps;
pub mod init;
pub mod kafka;
mod metrics;
pub mod planner;
mod recent;
mod render;
pub mod repair;
mod shared;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
pub mod token;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;

pub use connection::ConnectionState;
pub use gaps::RECENT_GAPS;
pub use kafka::TopicReport;
pub use metrics::{
    observe_request, reconnect_class, request_seconds, AtomicHistogram, RequestSeconds,
    FLUSH_BUCKETS, RECONNECT_REASONS,
};
pub use recent::{Level, Problem, RATE_WINDOW, RECENT_PROBLEMS};
pub use shared::BufferView;

/// An actor that has not reported for this long is taken for stuck.
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(30);
/// How often actors report liveness.
pub const LIVENESS_INTERVAL: Duration = Duration::from_secs(5);

/// Shared operational state: one handle (in an `Arc`) for every actor.
pub struct Telemetry {
    pub token: token::TokenTelemetry,
    pub connections: connection::ConnectionTelemetry,
    pub gaps: gaps::GapTelemetry,
    pub kafka: kafka::KafkaTelemetry,
    pub plan: planner::PlanTelemetry,
    pub buffer: buffer::BufferTelemetry,
    pub repair: repair::RepairTelemetry,
    pub cluster: cluster::ClusterTelemetry,
    shared: Arc<shared::Shared>,
    started: Instant,
    liveness: Mutex<BTreeMap<&'static str, Instant>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        let shared = Arc::new(shared::Shared::default());
        let gap_series = Arc::new(gaps::GapSeries::default());
        let connections = connection::ConnectionTelemetry::new(shared.clone(), gap_series.clone());
        let kafka = kafka::KafkaTelemetry::new(shared.clone());
        Telemetry {
            token: token::TokenTelemetry::new(shared.clone()),
            connections,
            gaps: gaps::GapTelemetry::new(shared.clone(), gap_series),
            kafka,
            plan: planner::PlanTelemetry::new(shared.clone()),
            buffer: buffer::BufferTelemetry::new(shared.clone()),
            repair: repair::RepairTelemetry::new(shared.clone()),
            cluster: cluster::ClusterTelemetry::new(shared.clone()),
            shared,
            started: Instant::now(),
            liveness: Mutex::default(),
        }
    }
}

impl Telemetry {
    /// The buffer, read for the backlog, its gap count and its problems.
    pub fn attach_buffer(&self, buffer: Arc<dyn BufferView>) {
        self.shared.attach_buffer(buffer);
    }

    /// A component's own metrics, encoded into every `/metrics` scrape
    /// (under the `gkb_` prefix).
    pub fn register_collector(&self, collector: Arc<dyn Collector>) {
        self.shared.add_collector(collector);
    }

    /// The newest warnings and errors (at most [`RECENT_PROBLEMS`]),
    /// newest first.
    pub fn recent_problems(&self) -> Vec<Problem> {
        self.shared.recent_problems()
    }

    // ---- liveness -------------------------------------------------------

    pub fn alive(&self, actor: &'static str) {
        shared::lock(&self.liveness).insert(actor, Instant::now());
    }

    /// Actors that stopped reporting.
    pub fn stuck_actors(&self) -> Vec<&'static str> {
        let now = Instant::now();
        shared::lock(&self.liveness)
            .iter()
            .filter(|(_, at)| now.duration_since(**at) > LIVENESS_TIMEOUT)
            .map(|(name, _)| *name)
            .collect()
    }

    // ---- health, readiness, reports -------------------------------------

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
        self.kafka.misconfigured()
    }

    /// Why the bridge is not ready, or `Ok` when it is.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        self.token.not_ready(&mut reasons);
        self.connections.not_ready(&mut reasons);
        self.kafka.not_ready(&mut reasons);
        self.plan.not_ready(&mut reasons);
        self.kafka.blocked_topics(&mut reasons);
        self.buffer.not_ready(&mut reasons);
        self.cluster.not_ready(&mut reasons);
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    /// Prometheus text exposition (format 0.0.4), encoded by
    /// `prometheus-client` from a registry built for this scrape: each
    /// area registers its long-lived counters and histograms by handle and
    /// the values known only now as constants; then the components'
    /// collectors.
    pub fn render_metrics(&self) -> String {
        let mut r = render::registry();
        self.token.register(&mut r);
        self.connections.register(&mut r);
        self.gaps.register(&mut r);
        self.kafka.register(&mut r);
        self.plan.register(&mut r);
        self.buffer.register(&mut r);
        self.repair.register(&mut r);
        self.cluster.register(&mut r);
        render::overall(&mut r, self.readiness().is_ok(), self.started.elapsed());
        render::encode(r, self.shared.collectors())
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
