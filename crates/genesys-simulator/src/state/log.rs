//! The event log behind `GET /sim/emitted`: every generated event, once per
//! receiving channel, with its sequence number, bounded in entries and in
//! frame bytes (the oldest entries are forgotten first).

use std::collections::VecDeque;
use std::sync::Arc;

use super::sockets::Progress;

/// Most bytes of frame text the event log keeps (each event's frame counted
/// once, however many channels got it): with `observation_conversations`
/// frames reach megabytes, so an entry count alone does not bound memory.
pub(crate) const EVENT_LOG_MAX_BYTES: usize = 256 * 1024 * 1024;

/// One generated event as delivered (or not) to one channel.
#[derive(Debug, Clone)]
pub(crate) struct EmittedRecord {
    pub seq: u64,
    pub correlation_id: uuid::Uuid,
    pub topic: Arc<str>,
    /// `None` when no channel was subscribed to the topic.
    pub channel_id: Option<Arc<str>>,
    pub emitted_at_ms: u64,
    /// The socket the frame was queued to (`None`: dropped at once, no open
    /// socket or black-holed).
    pub socket: Option<Arc<Progress>>,
    pub frame: Arc<str>,
}

impl EmittedRecord {
    /// Whether the frame was handed to an open socket (so far: a frame
    /// still queued for a client that does not read is not, yet).
    pub fn delivered(&self) -> bool {
        self.socket.as_ref().is_some_and(|p| p.wrote(self.seq))
    }
}

#[derive(Debug)]
pub(crate) struct EventLog {
    /// Next event sequence number (the first event gets 1).
    pub next_seq: u64,
    pub entries: VecDeque<EmittedRecord>,
    /// Frame bytes held by `entries` (each seq once).
    pub bytes: usize,
    /// Entries forgotten from the front of `entries` so far.
    pub forgotten: u64,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            next_seq: 1,
            entries: VecDeque::new(),
            bytes: 0,
            forgotten: 0,
        }
    }
}

impl EventLog {
    /// The seq of the last event generated (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Appends, forgetting the oldest entries beyond `limit` entries or
    /// `max_bytes` bytes of frames (the newest entry is always kept).
    pub fn push(&mut self, record: EmittedRecord, limit: usize, max_bytes: usize) {
        // Copies of one event (one per channel) are adjacent and share the
        // frame: its bytes count while any copy is in the log.
        if self.entries.back().map(|r| r.seq) != Some(record.seq) {
            self.bytes += record.frame.len();
        }
        self.entries.push_back(record);
        while self.entries.len() > limit || (self.bytes > max_bytes && self.entries.len() > 1) {
            let Some(gone) = self.entries.pop_front() else {
                break;
            };
            self.forgotten += 1;
            if self.entries.front().map(|r| r.seq) != Some(gone.seq) {
                self.bytes -= gone.frame.len();
            }
        }
    }

    /// Up to `limit` entries with `seq > since`, of `channel` when given,
    /// oldest first (cheap `Arc` copies).
    pub fn since(&self, since: u64, channel: Option<&str>, limit: usize) -> Vec<EmittedRecord> {
        let start = self.entries.partition_point(|r| r.seq <= since);
        self.entries
            .range(start..)
            .filter(|r| channel.map_or(true, |c| r.channel_id.as_deref() == Some(c)))
            .take(limit)
            .cloned()
            .collect()
    }
}
