//! The start of a time in which a connection holds no subscribed socket,
//! and the record it becomes when it ends.

use std::sync::Arc;
use std::time::SystemTime;

use crate::buffer::GapRecord;

/// The start of a time without any subscribed socket.
pub(super) struct Gap {
    pub(super) since_wall: SystemTime,
    pub(super) reason: String,
    /// The topics the channel had subscribed: what the gap misses.
    pub(super) topics: Arc<Vec<String>>,
}

impl Gap {
    /// The record of this gap ending now.
    pub(super) fn record(&self, index: usize, open: bool) -> GapRecord {
        GapRecord::new(
            index,
            self.since_wall,
            SystemTime::now(),
            &self.reason,
            open,
            &self.topics,
        )
    }
}
