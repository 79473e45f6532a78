//! A connection's timing and limits, and the constants of its shutdown
//! and downtime.

use std::sync::Arc;
use std::time::Duration;

use super::slots;

/// Timing and limits of a connection.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub ping_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub rollover_margin: Duration,
    pub handshake_timeout: Duration,
    pub max_frame_bytes: usize,
    pub ignore_errors: bool,
    /// Shared by every connection of the bridge (one OAuth client).
    pub slots: Arc<slots::ChannelSlots>,
    /// `[snapshots]`.
    pub snapshots: crate::snapshots::SnapshotConfig,
    /// In a cluster only the leader takes snapshots (a standby's would be
    /// dropped from its buffer, and forwarded late at a takeover they
    /// would be older than the deltas before them).
    pub leadership: Arc<crate::cluster::leadership::Leadership>,
}

/// Longest wait on shutdown for the sockets to be closed and read out.
pub const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Why the gap of a restart after a stop or crash is open.
pub const NOT_RUNNING: &str = "bridge not running";
