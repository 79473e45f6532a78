//! Telemetry of gap repair: the observation snapshots each connection
//! takes at start-up, after a gap and every `snapshots.interval_secs`
//! (`gkb_snapshot*`), counted, logged and shown on `/status`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::metrics::register;
use super::recent::Level;
use super::shared::{lock, Shared};

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The last failure of a snapshot round, for /status.
#[derive(Clone, Debug, serde::Serialize)]
struct Failure {
    at_ms: u64,
    connection: usize,
    reason: String,
}

pub struct RepairTelemetry {
    shared: Arc<Shared>,
    rounds: Family<ResultLabel, Counter>,
    records: Counter,
    merged: Counter,
    last_success: Gauge<f64, AtomicU64>,
    last_success_ms: AtomicU64,
    last_failure: Mutex<Option<Failure>>,
}

impl RepairTelemetry {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        let rounds = Family::<ResultLabel, Counter>::default();
        for result in ["ok", "failed"] {
            let _ = rounds.get_or_create(&ResultLabel { result });
        }
        RepairTelemetry {
            shared,
            rounds,
            records: Counter::default(),
            merged: Counter::default(),
            last_success: Gauge::default(),
            last_success_ms: AtomicU64::new(0),
            last_failure: Mutex::default(),
        }
    }

    /// A connection wrote a snapshot of its queues: `records` snapshot
    /// records (one per queue and media type), `merged` deltas received
    /// while the query was out applied on top.
    pub fn snapshot_taken(&self, connection: usize, why: &str, records: u64, merged: u64) {
        self.rounds
            .get_or_create(&ResultLabel { result: "ok" })
            .inc();
        self.records.inc_by(records);
        self.merged.inc_by(merged);
        let now = crate::now_ms();
        self.last_success.set(now as f64 / 1000.0);
        self.last_success_ms.store(now, Ordering::Relaxed);
        tracing::info!(
            connection,
            why,
            records,
            merged_deltas = merged,
            "observation snapshot written"
        );
    }

    /// A snapshot round failed; it is tried again after `retry_in`.
    pub fn snapshot_failed(
        &self,
        connection: usize,
        reason: &dyn std::fmt::Display,
        retry_in: std::time::Duration,
    ) {
        self.rounds
            .get_or_create(&ResultLabel { result: "failed" })
            .inc();
        let reason = reason.to_string();
        tracing::warn!(
            connection,
            reason = %reason,
            retry_in_ms = retry_in.as_millis() as u64,
            "observation snapshot failed; tried again later"
        );
        self.shared.problem(
            Level::Warn,
            format!("connection {connection}"),
            "observation snapshot failed",
            &reason,
        );
        *lock(&self.last_failure) = Some(Failure {
            at_ms: crate::now_ms(),
            connection,
            reason,
        });
    }

    /// /status's `repair`.
    pub fn report(&self) -> serde_json::Value {
        let rounds = |result| self.rounds.get_or_create(&ResultLabel { result }).get();
        let last = self.last_success_ms.load(Ordering::Relaxed);
        serde_json::json!({
            "snapshots": {
                "rounds_ok": rounds("ok"),
                "rounds_failed": rounds("failed"),
                "records": self.records.get(),
                "merged_deltas": self.merged.get(),
                "last_success_ms": (last > 0).then_some(last),
                "last_failure": *lock(&self.last_failure),
            }
        })
    }

    pub(super) fn register(&self, r: &mut Registry) {
        register(
            r,
            "snapshot_rounds",
            "Observation snapshot rounds of a connection (all its queues), by result.",
            self.rounds.clone(),
        );
        register(
            r,
            "snapshot_records",
            "Snapshot records written to the buffer (one per queue and media type).",
            self.records.clone(),
        );
        register(
            r,
            "snapshot_merged_deltas",
            "Observation deltas received while a snapshot query was out, applied on top of its answer.",
            self.merged.clone(),
        );
        register(
            r,
            "snapshot_last_success_timestamp_seconds",
            "When the last snapshot round succeeded (Unix time; 0: none yet).",
            self.last_success.clone(),
        );
    }
}
