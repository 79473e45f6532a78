//! Telemetry of cluster mode (`[cluster]`): this member's role, the
//! epoch and its leader, the members seen in the coordination topic, how
//! far a standby is behind, takeovers and step-downs (`gkb_cluster_*`,
//! `/status` `cluster`, `/readyz`). Filled by the coordinator, which
//! pushes a [`ClusterState`] about once a second.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::metrics::register;
use super::recent::Level;
use super::shared::{lock, Shared};

/// Another member as the coordination topic shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemberState {
    pub member: String,
    pub role: String,
    pub ready: bool,
    /// Events it holds that the leader has not reported in Kafka.
    pub behind: u64,
    /// Its wall clock when it last wrote (informative).
    pub last_seen_ms: u64,
}

/// The last takeover this member made.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Takeover {
    pub at_ms: u64,
    pub epoch: u64,
    /// The old leader had released the epoch (a planned handover).
    pub planned: bool,
    /// Held events found already in Kafka (not forwarded again).
    pub found_in_kafka: u64,
    /// Held events left to forward.
    pub to_forward: u64,
    /// From the claim read back to forwarding.
    pub took_ms: u64,
}

/// This member's view, pushed by the coordinator.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ClusterState {
    pub member: String,
    pub topic: String,
    /// `standby`, `taking_over` or `leader`.
    pub role: String,
    /// A leader whose lease runs (it hands records to Kafka now).
    pub forwarding: bool,
    pub epoch: u64,
    pub leader: Option<String>,
    /// The leader's wall clock at its claim (informative).
    pub leader_since_ms: Option<u64>,
    /// Events this member holds that the leader has not reported (a
    /// standby's distance behind).
    pub behind: u64,
    pub oldest_behind_ms: Option<u64>,
    /// Milliseconds since the leader's last record was read (a standby).
    pub leader_silent_ms: Option<u64>,
    pub members: Vec<MemberState>,
    /// Why this member could not take over now, when it could not.
    pub problem: Option<String>,
    pub last_takeover: Option<Takeover>,
}

/// The coordination topic names the cluster: alerts sum over members by it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ClusterLabel {
    cluster: String,
}

type LabelledGauge = Family<ClusterLabel, Gauge<i64, AtomicI64>>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

pub struct ClusterTelemetry {
    shared: Arc<Shared>,
    state: Mutex<Option<ClusterState>>,
    is_leader: LabelledGauge,
    forwarding: LabelledGauge,
    ready: LabelledGauge,
    epoch: Gauge<i64, AtomicI64>,
    members: Gauge<i64, AtomicI64>,
    behind: Gauge<i64, AtomicI64>,
    takeovers: Counter,
    found_in_kafka: Counter,
    stepdowns: Counter,
    dropped: Family<ReasonLabel, Counter>,
    last_takeover_seconds: Gauge<f64, AtomicU64>,
}

impl ClusterTelemetry {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        let dropped = Family::<ReasonLabel, Counter>::default();
        for reason in ["covered", "expired", "made"] {
            let _ = dropped.get_or_create(&ReasonLabel { reason });
        }
        ClusterTelemetry {
            shared,
            state: Mutex::default(),
            is_leader: Family::default(),
            forwarding: Family::default(),
            ready: Family::default(),
            epoch: Gauge::default(),
            members: Gauge::default(),
            behind: Gauge::default(),
            takeovers: Counter::default(),
            found_in_kafka: Counter::default(),
            stepdowns: Counter::default(),
            dropped,
            last_takeover_seconds: Gauge::default(),
        }
    }

    /// The coordinator's latest view.
    pub fn update(&self, mut state: ClusterState) {
        let label = ClusterLabel {
            cluster: state.topic.clone(),
        };
        self.is_leader
            .get_or_create(&label)
            .set(i64::from(state.role == "leader"));
        self.forwarding
            .get_or_create(&label)
            .set(i64::from(state.forwarding));
        self.ready
            .get_or_create(&label)
            .set(i64::from(state.problem.is_none()));
        self.epoch.set(state.epoch as i64);
        self.members.set(state.members.len() as i64);
        self.behind.set(state.behind as i64);
        let mut kept = lock(&self.state);
        if state.last_takeover.is_none() {
            state.last_takeover = kept.as_ref().and_then(|s| s.last_takeover.clone());
        }
        *kept = Some(state);
    }

    /// This member leads `epoch` and forwards from now.
    pub fn took_over(&self, takeover: Takeover) {
        self.takeovers.inc();
        self.found_in_kafka.inc_by(takeover.found_in_kafka);
        self.last_takeover_seconds
            .set(takeover.took_ms as f64 / 1000.0);
        tracing::warn!(
            epoch = takeover.epoch,
            planned = takeover.planned,
            found_in_kafka = takeover.found_in_kafka,
            to_forward = takeover.to_forward,
            took_ms = takeover.took_ms,
            "cluster: this member leads now and forwards"
        );
        if let Some(state) = lock(&self.state).as_mut() {
            state.last_takeover = Some(takeover);
        }
    }

    /// The check of Kafka at a takeover failed: forwarding starts anyway
    /// (what was in Kafka may go again: duplicates, never a loss).
    pub fn check_failed(&self, reason: &str) {
        tracing::warn!(reason, "cluster: could not check what Kafka holds before taking over; events it already has may be sent again");
        self.shared.problem(
            Level::Warn,
            "cluster",
            "takeover check of Kafka failed",
            &reason,
        );
    }

    /// This member stopped leading.
    pub fn stepped_down(&self, epoch: u64, why: &str) {
        self.stepdowns.inc();
        tracing::warn!(epoch, why, "cluster: this member stopped leading");
        self.shared
            .problem(Level::Warn, "cluster", "stepped down as leader", &why);
    }

    /// This member released its epoch (a planned handover).
    pub fn released(&self, epoch: u64, confirmed: bool) {
        if confirmed {
            tracing::info!(
                epoch,
                "cluster: leadership released; another member takes over"
            );
        } else {
            tracing::warn!(epoch, "cluster: the release was not confirmed by Kafka in time; a standby takes over when the lease ends");
        }
    }

    /// Standby drops, by reason.
    pub fn dropped(&self, covered: u64, expired: u64, made: u64) {
        for (reason, n) in [("covered", covered), ("expired", expired), ("made", made)] {
            if n > 0 {
                self.dropped
                    .get_or_create(&ReasonLabel { reason })
                    .inc_by(n);
            }
        }
        if expired > 0 {
            tracing::warn!(
                events = expired,
                "cluster: standby dropped events the leader never reported within cluster.standby_keep_secs"
            );
        }
    }

    /// The coordination topic cannot be read or written.
    pub fn coordination_failed(&self, reason: &str) {
        tracing::warn!(reason, "cluster: coordination topic unavailable; retrying");
        self.shared.problem(
            Level::Warn,
            "cluster",
            "coordination topic unavailable",
            &reason,
        );
    }

    pub(super) fn not_ready(&self, reasons: &mut Vec<String>) {
        if let Some(problem) = lock(&self.state).as_ref().and_then(|s| s.problem.clone()) {
            reasons.push(format!("cluster: {problem}"));
        }
    }

    /// /status's `cluster` (null without `[cluster]`).
    pub fn report(&self) -> serde_json::Value {
        let state = lock(&self.state).clone();
        match state {
            None => serde_json::Value::Null,
            Some(state) => {
                let mut v = serde_json::to_value(state).unwrap_or_default();
                v["takeovers"] = self.takeovers.get().into();
                v["stepdowns"] = self.stepdowns.get().into();
                v
            }
        }
    }

    pub(super) fn register(&self, r: &mut Registry) {
        if lock(&self.state).is_none() {
            return;
        }
        register(
            r,
            "cluster_is_leader",
            "1 when this member leads its cluster's epoch (sum over members: 1 when healthy).",
            self.is_leader.clone(),
        );
        register(
            r,
            "cluster_forwarding",
            "1 when this member is the leader within its lease: it hands records to Kafka.",
            self.forwarding.clone(),
        );
        register(
            r,
            "cluster_ready",
            "1 when this member could lead now (follows the coordination topic; its buffer and sockets are fine).",
            self.ready.clone(),
        );
        register(
            r,
            "cluster_epoch",
            "The current leadership epoch as this member read it.",
            self.epoch.clone(),
        );
        register(
            r,
            "cluster_members_seen",
            "Members seen in the coordination topic (this one included).",
            self.members.clone(),
        );
        register(
            r,
            "cluster_standby_behind_events",
            "Events this member holds that the leader has not reported in Kafka.",
            self.behind.clone(),
        );
        register(
            r,
            "cluster_takeovers",
            "Times this member took the lead.",
            self.takeovers.clone(),
        );
        register(
            r,
            "cluster_takeover_found_in_kafka",
            "Events found already in Kafka by takeover checks (not forwarded again).",
            self.found_in_kafka.clone(),
        );
        register(
            r,
            "cluster_stepdowns",
            "Times this member stopped leading without a planned release (another member took over).",
            self.stepdowns.clone(),
        );
        register(
            r,
            "cluster_standby_dropped",
            "Events a standby dropped from its buffer, by reason (covered: the leader reported them in Kafka; expired: never reported within standby_keep_secs; made: snapshot or backfill records).",
            self.dropped.clone(),
        );
        register(
            r,
            "cluster_last_takeover_seconds",
            "How long this member's last takeover took, from its claim read back to forwarding.",
            self.last_takeover_seconds.clone(),
        );
    }
}
