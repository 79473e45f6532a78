//! `[snapshots]`: when the bridge writes observation snapshots, and of
//! which metrics.

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;

/// The observation metrics the API knows (`QueueObservationQuery`).
pub const KNOWN_METRICS: &[&str] = &[
    "oActiveUsers",
    "oAlerting",
    "oInteracting",
    "oLongestInteracting",
    "oLongestWaiting",
    "oMemberUsers",
    "oOffQueueUsers",
    "oOnQueueUsers",
    "oServiceLevel",
    "oUserPresences",
    "oUserRoutingStatuses",
    "oWaiting",
];

/// Observation snapshots: queue observation events are deltas (only the
/// metrics that changed), so after a gap, or for a consumer that starts
/// reading anywhere, a queue's state cannot be rebuilt from the topic
/// alone. For every `v2.analytics.queues.{id}.observations` topic it
/// forwards, the bridge writes a *snapshot record*: the queue's current
/// observations from the Analytics API, in the shape of an observation
/// event carrying every metric, to the same Kafka topic, partition and key
/// as the deltas, in order with them, with the header `gkb-kind:
/// snapshot`. "The latest snapshot, then every delta after it" is the
/// queue's state. Snapshots are taken at start-up, once a connection's
/// subscription is back after a gap, when topics are added, and every
/// `interval_secs`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Write snapshots at all.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Seconds between snapshots besides those at start-up and after gaps
    /// (a consumer that starts reading finds one at most this old). 0:
    /// only at start-up, after gaps and when topics are added. Each
    /// snapshot costs one Analytics request per 100 queues out of the API
    /// budget (`genesys.api_requests_per_minute`).
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// The metrics asked for: every observation metric the topics carry.
    /// A snapshot replaces a queue's state, so leave a metric out only if
    /// the topics never carry it.
    #[serde(default = "default_metrics")]
    pub metrics: Vec<String>,
}

fn default_enabled() -> bool {
    true
}

fn default_interval_secs() -> u64 {
    900
}

fn default_metrics() -> Vec<String> {
    KNOWN_METRICS.iter().map(|m| (*m).to_owned()).collect()
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            enabled: default_enabled(),
            interval_secs: default_interval_secs(),
            metrics: default_metrics(),
        }
    }
}

impl SnapshotConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled && self.metrics.is_empty() {
            return Err(ConfigError::invalid(
                "snapshots.metrics",
                "must name at least one metric while snapshots.enabled is true",
            ));
        }
        for m in &self.metrics {
            if !KNOWN_METRICS.contains(&m.as_str()) {
                return Err(ConfigError::invalid(
                    "snapshots.metrics",
                    format!(
                        "{m:?} is not an observation metric (known: {})",
                        KNOWN_METRICS.join(", ")
                    ),
                ));
            }
        }
        if self.interval_secs > 0 && self.interval_secs < 60 {
            return Err(ConfigError::invalid(
                "snapshots.interval_secs",
                format!(
                    "{} is below 60 (each snapshot costs Analytics requests); use 0 for none between gaps",
                    self.interval_secs
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_key() {
        assert!(SnapshotConfig::default().validate().is_ok());
        let bad = SnapshotConfig {
            metrics: vec!["oWaiting".into(), "nOffered".into()],
            ..Default::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(
            e.contains("snapshots.metrics") && e.contains("nOffered"),
            "{e}"
        );
        let bad = SnapshotConfig {
            interval_secs: 5,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("snapshots.interval_secs"));
        let off = SnapshotConfig {
            enabled: false,
            metrics: vec![],
            ..Default::default()
        };
        assert!(off.validate().is_ok());
    }
}
