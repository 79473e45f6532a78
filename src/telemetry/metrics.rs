//! The metric types behind `/metrics`, on the Prometheus project's Rust
//! client (`prometheus-client`), encoded in the Prometheus text format
//! 0.0.4.
//!
//! Counters are the library's (atomic). The receive → acknowledged
//! histogram is observed once per Kafka acknowledgement, so it keeps a
//! lock-free store of its own ([`AtomicHistogram`]) and only its encoding
//! goes through the library (the library's `Histogram` takes a mutex per
//! observation). Values known only at scrape time (buffer, per-topic
//! reports, expiries) are read then and encoded as constant metrics of a
//! registry built for that scrape.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry};

/// Upper bounds of the receive → acknowledged latency histogram, seconds.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
    300.0,
];

/// Upper bounds of the buffer flush (fsync) time histogram, seconds.
pub const FLUSH_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Upper bounds of the Genesys REST call time histogram, seconds.
pub const REQUEST_BUCKETS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A Prometheus histogram of fixed buckets, updated without locks: two
/// relaxed atomic adds per observation. A handle: clones share the counts.
#[derive(Debug, Clone)]
pub struct AtomicHistogram(std::sync::Arc<Counts>);

#[derive(Debug)]
pub struct Counts {
    bounds: &'static [f64],
    /// One count per bound, plus +Inf (not cumulative).
    buckets: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        AtomicHistogram(std::sync::Arc::new(Counts {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, seconds: f64) {
        let h = &*self.0;
        let index = h
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(h.bounds.len());
        h.buckets[index].fetch_add(1, Ordering::Relaxed);
        h.sum_micros
            .fetch_add((seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// (sum, count, per-bucket counts including +Inf). The counts are
    /// not cumulative: the library's encoder accumulates them.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let h = &*self.0;
        let mut total = 0;
        let mut buckets = Vec::with_capacity(h.buckets.len());
        for (i, count) in h.buckets.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            total += count;
            let bound = h.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, count));
        }
        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, total, buckets)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// `{connection}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabel {
    pub connection: u64,
}

/// `{connection, reason}`: `reason` is one of [`RECONNECT_REASONS`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconnectLabels {
    pub connection: u64,
    pub reason: &'static str,
}

/// `{topic}`: a routed Kafka topic (bounded by the routing configuration).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

/// `{call}`: one of the REST client's call kinds (a fixed set of names).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabel {
    pub call: String,
}

/// The reason classes of `gkb_reconnects_total` (a fixed set: the free
/// text of a reason is logged, never a label).
pub const RECONNECT_REASONS: [&str; 6] = [
    "setup_failed",
    "heartbeat_timeout",
    "dropped",
    "protocol_error",
    "closed_by_service",
    "other",
];

/// The class of a reconnect reason as the connection actor words it.
pub fn reconnect_class(reason: &str) -> &'static str {
    if reason.starts_with("setup failed") {
        "setup_failed"
    } else if reason.starts_with("no heartbeat") {
        "heartbeat_timeout"
    } else if reason.contains("without a close frame") {
        "dropped"
    } else if reason.contains("protocol error") {
        "protocol_error"
    } else if reason.contains("closed by the service") {
        "closed_by_service"
    } else {
        "other"
    }
}

/// Time of Genesys REST calls by call kind (`gkb_genesys_request_seconds`):
/// a handle shared by every clone of the REST client.
pub type RequestSeconds = Family<CallLabel, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

pub fn request_seconds() -> RequestSeconds {
    Family::new_with_constructor(request_histogram as fn() -> Histogram)
}

/// Records one REST call's time under its kind (`"create channel"` is
/// shown as `create_channel`).
pub fn observe_request(family: &RequestSeconds, call: &str, seconds: f64) {
    family
        .get_or_create(&CallLabel {
            call: call.replace(' ', "_"),
        })
        .observe(seconds);
}

/// Monotonic per-connection counters.
pub type PerConnection = Family<ConnectionLabel, Counter>;
/// Per-connection seconds (float counter).
pub type PerConnectionSeconds = Family<ConnectionLabel, Counter<f64, AtomicU64>>;

/// Registers `metric` under `gkb_{name}` (the registry's prefix) with
/// `help` (the library adds the closing period).
pub fn register(registry: &mut Registry, name: &str, help: &str, metric: impl Metric) {
    registry.register(name, help.trim_end_matches('.'), metric);
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
