//! `[cluster]`: running two or more bridges as one, an active leader and
//! hot standbys, coordinated through the Kafka cluster they write to.

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;

/// Cluster mode. Every member has the same topic plan and its own buffer
/// and health port (and, recommended, its own OAuth client: each member's
/// channels count against its client's 20). Every member keeps its own
/// channels subscribed to the whole plan and buffers what it receives;
/// only the *leader* forwards to Kafka. Leadership is decided by the order
/// of records in the coordination topic (one partition): a member claims
/// the next epoch when the leader released it or its lease ran out, and
/// the first claim in the log wins. A standby drops what the leader's
/// recorded progress covers; a member that takes over first removes what
/// Kafka already holds (`gkb-id` headers), then forwards the rest. Without
/// this section the bridge runs alone, as it always did.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This member's name: unique in the cluster, 1–64 of `A-Z a-z 0-9 . _ -`
    /// (e.g. the host name, or `a` and `b` for two members on one host).
    pub member: String,
    /// The coordination topic: one partition, shared by the members of one
    /// cluster (one per cluster when several share a Kafka).
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Create the coordination topic at start-up when it is missing (one
    /// partition, `kafka.create_topics_replication_factor`).
    #[serde(default = "default_create_topic")]
    pub create_topic: bool,
    /// Milliseconds without a record from the leader after which a standby
    /// claims leadership. The leader stops handing records to Kafka at 80 %
    /// of it counted from when it sent its last heartbeat that Kafka took,
    /// so the two never forward at once. Takeover after a crash takes
    /// about this long. At least 2,000.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// Milliseconds between the leader's heartbeats, which carry its
    /// progress (the ids Kafka acknowledged). At most a third of `lease_ms`.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Seconds a standby keeps an event the leader's progress never named
    /// (the leader missed it, or it was serialised differently): forwarded
    /// if this member takes over meanwhile, then dropped and counted
    /// (`gkb_cluster_standby_expired_total`). Bounds a standby's buffer.
    #[serde(default = "default_standby_keep_secs")]
    pub standby_keep_secs: u64,
}

fn default_topic() -> String {
    "genesys-bridge.cluster".to_owned()
}

fn default_create_topic() -> bool {
    true
}

fn default_lease_ms() -> u64 {
    10_000
}

fn default_heartbeat_ms() -> u64 {
    1_000
}

fn default_standby_keep_secs() -> u64 {
    900
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name_ok = |s: &str| {
            (1..=64).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if !name_ok(&self.member) {
            return Err(ConfigError::invalid(
                "cluster.member",
                "must be 1–64 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
            ));
        }
        if !(1..=249).contains(&self.topic.len())
            || !self
                .topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(ConfigError::invalid(
                "cluster.topic",
                "must be a Kafka topic name: 1–249 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
            ));
        }
        if self.lease_ms < 2_000 {
            return Err(ConfigError::invalid(
                "cluster.lease_ms",
                "must be at least 2000 (a heartbeat must reach Kafka and come back within it)",
            ));
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms * 3 > self.lease_ms {
            return Err(ConfigError::invalid(
                "cluster.heartbeat_ms",
                "must be above 0 and at most a third of cluster.lease_ms",
            ));
        }
        if self.standby_keep_secs < 60 {
            return Err(ConfigError::invalid(
                "cluster.standby_keep_secs",
                "must be at least 60",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> ClusterConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let c = config("member = \"a\"");
        c.validate().unwrap();
        assert_eq!(c.topic, "genesys-bridge.cluster");
        assert_eq!((c.lease_ms, c.heartbeat_ms), (10_000, 1_000));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("member = \"\"", "cluster.member"),
            ("member = \"a b\"", "cluster.member"),
            ("member = \"a\"\ntopic = \"x/y\"", "cluster.topic"),
            ("member = \"a\"\nlease_ms = 1000", "cluster.lease_ms"),
            (
                "member = \"a\"\nheartbeat_ms = 4000",
                "cluster.heartbeat_ms",
            ),
            ("member = \"a\"\nheartbeat_ms = 0", "cluster.heartbeat_ms"),
            (
                "member = \"a\"\nstandby_keep_secs = 5",
                "cluster.standby_keep_secs",
            ),
        ] {
            let err = config(text).validate().unwrap_err();
            assert_eq!(err.key(), Some(key), "{text}");
        }
    }
}
