//! `[backfill]`: when the bridge fetches the conversations a gap missed,
//! and how wide it looks.

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;

/// Conversation backfill: for every recorded gap whose topics include
/// conversation families (`v2.routing.queues.{id}.conversations`,
/// `v2.users.{id}.conversations`, `v2.detail.events.conversation.{id}.*`),
/// once the gap's end is older than `data_lag_secs`, the bridge asks the
/// Analytics API for the conversations active in the gap (widened by
/// `margin_secs`) on the gap's queues and users, and writes each as a
/// *backfill record* (Kafka header `gkb-kind: backfill`, key = the
/// conversation id, Genesys topic name
/// `v2.analytics.conversations.{id}.details` for the routes). Progress is
/// kept in the buffer: a restart resumes it, `gaps` shows it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillConfig {
    /// Backfill gaps at all.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Seconds after a gap's end before it is backfilled: the Analytics
    /// API lags behind the live service, and a conversation queried too
    /// early is missing or incomplete.
    #[serde(default = "default_data_lag_secs")]
    pub data_lag_secs: u64,
    /// Seconds added on both sides of a gap: a conversation active within
    /// them is backfilled (a gap's bounds are known to within the time it
    /// took to notice a dead socket).
    #[serde(default = "default_margin_secs")]
    pub margin_secs: u64,
    /// How long before a gap a conversation may have started and still
    /// been active in it. The synchronous query finds conversations by
    /// their start, so the query reaches back this far (and keeps only
    /// those still active in the gap).
    #[serde(default = "default_lookback_secs")]
    pub lookback_secs: u64,
}

fn default_enabled() -> bool {
    true
}
fn default_data_lag_secs() -> u64 {
    300
}
fn default_margin_secs() -> u64 {
    60
}
fn default_lookback_secs() -> u64 {
    3600
}

impl Default for BackfillConfig {
    fn default() -> Self {
        BackfillConfig {
            enabled: default_enabled(),
            data_lag_secs: default_data_lag_secs(),
            margin_secs: default_margin_secs(),
            lookback_secs: default_lookback_secs(),
        }
    }
}

impl BackfillConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |key: &str, value: u64, max: u64| {
            if value > max {
                Err(ConfigError::invalid(
                    key,
                    format!("{value} is above the most allowed, {max}"),
                ))
            } else {
                Ok(())
            }
        };
        check("backfill.data_lag_secs", self.data_lag_secs, 86_400)?;
        check("backfill.margin_secs", self.margin_secs, 3_600)?;
        check("backfill.lookback_secs", self.lookback_secs, 7 * 86_400)
    }
}
