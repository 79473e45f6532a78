//! Telemetry of gap repair: the observation snapshots each connection
//! takes at start-up, after a gap and every `snapshots.interval_secs`
//! (`gkb_snapshots_*`), and the conversation backfill of recorded gaps
//! (`gkb_backfill*`), counted, logged and shown on `/status`.

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// The backfill states a gap can be in (`waiting`: pending, its data not
/// in the Analytics API yet).
const BACKFILL_STATES: [&str; 5] = ["waiting", "pending", "running", "done", "failed"];

pub struct RepairTelemetry {
    shared: Arc<Shared>,
    backfill_gaps: Family<StateLabel, Gauge<i64, std::sync::atomic::AtomicI64>>,
    backfill_records: Counter,
    backfill_runs: Family<ResultLabel, Counter>,
    backfill_last: Mutex<Option<serde_json::Value>>,
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
        let backfill_gaps =
            Family::<StateLabel, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
        for state in BACKFILL_STATES {
            let _ = backfill_gaps.get_or_create(&StateLabel { state });
        }
        let backfill_runs = Family::<ResultLabel, Counter>::default();
        for result in ["ok", "failed"] {
            let _ = backfill_runs.get_or_create(&ResultLabel { result });
        }
        RepairTelemetry {
            shared,
            backfill_gaps,
            backfill_records: Counter::default(),
            backfill_runs,
            backfill_last: Mutex::default(),
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

    /// How many recorded gaps with conversation topics are in each
    /// backfill state (after each look at them).
    pub fn backfill_gaps(&self, counts: &std::collections::HashMap<&'static str, u64>) {
        for state in BACKFILL_STATES {
            self.backfill_gaps
                .get_or_create(&StateLabel { state })
                .set(counts.get(state).copied().unwrap_or(0) as i64);
        }
    }

    /// Backfill records written (and flushed) for a page.
    pub fn backfill_records(&self, n: u64) {
        self.backfill_records.inc_by(n);
    }

    /// A gap's backfill ran to its end.
    pub fn backfill_done(&self, gap_start: &str, connection: u32, records: u64) {
        self.backfill_runs
            .get_or_create(&ResultLabel { result: "ok" })
            .inc();
        tracing::info!(gap_start, connection, records, "gap backfilled");
        *lock(&self.backfill_last) = Some(serde_json::json!({
            "gap_start": gap_start, "connection": connection, "result": "done",
            "records": records, "at_ms": crate::now_ms(),
        }));
    }

    /// A gap's backfill failed; it resumes after `retry_in`.
    pub fn backfill_failed(
        &self,
        gap_start: &str,
        connection: u32,
        reason: &dyn std::fmt::Display,
        retry_in: std::time::Duration,
    ) {
        self.backfill_runs
            .get_or_create(&ResultLabel { result: "failed" })
            .inc();
        let reason = reason.to_string();
        tracing::warn!(
            gap_start,
            connection,
            reason = %reason,
            retry_in_ms = retry_in.as_millis() as u64,
            "gap backfill failed; it resumes from where it stopped"
        );
        self.shared.problem(
            Level::Warn,
            "backfill",
            "gap backfill failed",
            &format_args!("gap from {gap_start}: {reason}"),
        );
        *lock(&self.backfill_last) = Some(serde_json::json!({
            "gap_start": gap_start, "connection": connection, "result": "failed",
            "reason": reason, "at_ms": crate::now_ms(),
        }));
    }

    /// The gaps or their progress could not be read or stored.
    pub fn backfill_unreadable(&self, reason: &dyn std::fmt::Display) {
        tracing::warn!(reason = %reason, "backfill progress unreadable; looked at again later");
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
            },
            "backfill": {
                "gaps": BACKFILL_STATES
                    .iter()
                    .map(|s| (s.to_string(), self.backfill_gaps.get_or_create(&StateLabel { state: s }).get()))
                    .collect::<std::collections::BTreeMap<String, i64>>(),
                "records": self.backfill_records.get(),
                "runs_ok": self.backfill_runs.get_or_create(&ResultLabel { result: "ok" }).get(),
                "runs_failed": self.backfill_runs.get_or_create(&ResultLabel { result: "failed" }).get(),
                "last": *lock(&self.backfill_last),
            }
        })
    }

    pub(super) fn register(&self, r: &mut Registry) {
        register(
            r,
            "snapshots_rounds",
            "Observation snapshot rounds of a connection (all its queues), by result.",
            self.rounds.clone(),
        );
        register(
            r,
            "snapshots_records",
            "Snapshot records written to the buffer (one per queue and media type).",
            self.records.clone(),
        );
        register(
            r,
            "snapshots_merged_deltas",
            "Observation deltas received while a snapshot query was out, applied on top of its answer.",
            self.merged.clone(),
        );
        register(
            r,
            "backfill_gaps",
            "Recorded gaps with conversation topics, by backfill state (waiting: not in the Analytics API yet).",
            self.backfill_gaps.clone(),
        );
        register(
            r,
            "backfill_records",
            "Backfill records written to the buffer (one per conversation a gap missed).",
            self.backfill_records.clone(),
        );
        register(
            r,
            "backfill_runs",
            "Runs of a gap's backfill, by result (a failed run resumes later).",
            self.backfill_runs.clone(),
        );
        register(
            r,
            "snapshots_last_success_timestamp_seconds",
            "When the last snapshot round succeeded (Unix time; 0: none yet).",
            self.last_success.clone(),
        );
    }
}
