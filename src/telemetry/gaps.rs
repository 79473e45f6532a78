//! Telemetry of socket gaps (times a connection had no subscribed socket,
//! whose events are gone for good): counted and timed per connection,
//! logged, and the newest kept for `/status`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::metrics::{register, ConnectionLabel, PerConnection, PerConnectionSeconds};
use super::recent::Level;
use super::shared::{lock, Shared};
use crate::gap::GapRecord;

/// Gaps shown on /status, at most.
pub const RECENT_GAPS: usize = 50;

/// The per-connection gap series (`gkb_socket_gap*`), shared with the
/// connections' telemetry, which creates them at zero.
#[derive(Default)]
pub struct GapSeries {
    gaps: PerConnection,
    seconds: PerConnectionSeconds,
    /// When each connection's last gap ended (Unix seconds).
    last_end: Family<ConnectionLabel, Gauge<f64, AtomicU64>>,
}

impl GapSeries {
    /// Creates the connection's series at zero (`rate()` works before its
    /// first gap).
    pub fn connection_known(&self, index: usize) {
        let connection = ConnectionLabel {
            connection: index as u64,
        };
        let _ = self.gaps.get_or_create(&connection);
        let _ = self.seconds.get_or_create(&connection);
    }
}

/// Gaps: their series, this run's totals and the newest records.
pub struct GapTelemetry {
    shared: Arc<Shared>,
    series: Arc<GapSeries>,
    /// The newest gaps (earlier runs' included), oldest first.
    recent: Mutex<VecDeque<GapRecord>>,
    this_run: AtomicU64,
    ms_this_run: AtomicU64,
}

impl GapTelemetry {
    pub(super) fn new(shared: Arc<Shared>, series: Arc<GapSeries>) -> Self {
        GapTelemetry {
            shared,
            series,
            recent: Mutex::default(),
            this_run: AtomicU64::new(0),
            ms_this_run: AtomicU64::new(0),
        }
    }

    /// A time without any subscribed socket ended (or the bridge stops
    /// with one open): what was sent to the channel then is gone for good
    /// (Genesys replays nothing). Counted, logged and kept for /status;
    /// the connection records it in the buffer.
    pub fn socket_gap(&self, gap: &GapRecord) {
        let connection = ConnectionLabel {
            connection: u64::from(gap.connection),
        };
        self.series.gaps.get_or_create(&connection).inc();
        self.series
            .seconds
            .get_or_create(&connection)
            .inc_by(gap.seconds);
        self.series
            .last_end
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
        self.shared.problem(
            Level::Warn,
            format!("connection {}", gap.connection),
            "gap: no subscribed socket",
            &format_args!("{} s from {}: {}", gap.seconds, gap.start, gap.reason),
        );
        self.this_run.fetch_add(1, Ordering::Relaxed);
        self.ms_this_run
            .fetch_add(gap.end_ms - gap.start_ms, Ordering::Relaxed);
        self.remember([gap.clone()]);
    }

    /// Adds gaps to those /status shows (the newest [`RECENT_GAPS`]): at
    /// start-up, the ones earlier runs recorded.
    pub fn remember(&self, gaps: impl IntoIterator<Item = GapRecord>) {
        let mut recent = lock(&self.recent);
        for gap in gaps {
            recent.push_back(gap);
            if recent.len() > RECENT_GAPS {
                recent.pop_front();
            }
        }
    }

    /// /status's `gaps`: the newest gaps, this run's totals and how many
    /// the buffer keeps.
    pub fn report(&self) -> serde_json::Value {
        let recent: Vec<_> = lock(&self.recent).iter().cloned().collect();
        let recorded = self.shared.buffer().map(|b| b.gaps_recorded());
        serde_json::json!({
            "recent": recent,
            "this_run": {
                "gaps": self.this_run.load(Ordering::Relaxed),
                "seconds": self.ms_this_run.load(Ordering::Relaxed) as f64 / 1000.0,
            },
            "recorded": recorded,
        })
    }

    pub(super) fn register(&self, r: &mut Registry) {
        register(
            r,
            "socket_gaps",
            "Times without any subscribed socket (events sent then were missed), by connection.",
            self.series.gaps.clone(),
        );
        register(
            r,
            "socket_gap_seconds",
            "Time without any subscribed socket, by connection.",
            self.series.seconds.clone(),
        );
        register(
            r,
            "socket_gap_last_end_timestamp_seconds",
            "When the connection's last gap ended (Unix time), by connection.",
            self.series.last_end.clone(),
        );
    }
}
