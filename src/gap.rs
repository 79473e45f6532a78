//! The record of one gap: an interval in which a connection held no open,
//! subscribed socket, with its bounds, reason and the topics it missed.
//! Plain data, shared by the buffer (which stores it), telemetry (which
//! reports it) and the tools; it knows none of them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Longest reason kept, in bytes (a reason is a log line's worth).
pub const REASON_MAX: usize = 200;

/// One interval without an open, subscribed socket on one connection.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GapRecord {
    pub connection: u32,
    /// RFC 3339, milliseconds, UTC (wall clock).
    pub start: String,
    pub end: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub seconds: f64,
    pub reason: String,
    /// Still open when the bridge stopped: `end` is the shutdown time.
    #[serde(default)]
    pub open: bool,
    pub topic_count: u32,
    /// The stored topic list (`gap_topics`), 16 hex digits.
    pub topics_id: String,
    /// The topic names, when read with them (never stored in the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    /// Its backfill's progress, when listed with it (kept apart, in the
    /// buffer's `backfill` tree; never stored in the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<serde_json::Value>,
}

/// Why a stored gap could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GapError {
    #[error("unreadable gap record: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("gap store: {0}")]
    Sled(#[from] sled::Error),
}

impl GapRecord {
    /// A gap of `connection` from `start` to `end` (an end before the
    /// start, after a clock step, counts as no time). Channel ids in the
    /// reason are masked and it is cut to [`REASON_MAX`] bytes.
    pub fn new(
        connection: usize,
        start: SystemTime,
        end: SystemTime,
        reason: &str,
        open: bool,
        topics: &[String],
    ) -> GapRecord {
        let end = end.max(start);
        let start_ms = ms(start);
        let end_ms = ms(end);
        GapRecord {
            connection: connection as u32,
            start: crate::rfc3339_ms(start_ms),
            end: crate::rfc3339_ms(end_ms),
            start_ms,
            end_ms,
            seconds: (end_ms - start_ms) as f64 / 1000.0,
            reason: cut(
                &crate::genesys::channel_id::mask_channel_ids(reason),
                REASON_MAX,
            ),
            open,
            topic_count: topics.len() as u32,
            topics_id: format!("{:016x}", topics_id(topics)),
            topics: None,
            backfill: None,
        }
    }

    pub fn key(&self) -> [u8; 12] {
        let mut key = [0u8; 12];
        key[..8].copy_from_slice(&self.start_ms.to_be_bytes());
        key[8..].copy_from_slice(&self.connection.to_be_bytes());
        key
    }

    /// The stored value: JSON without the topic names.
    pub fn encode(&self) -> Vec<u8> {
        let mut stored = self.clone();
        stored.topics = None;
        stored.backfill = None;
        serde_json::to_vec(&stored).expect("a gap record serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<GapRecord, GapError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    pub fn topics_key(&self) -> Option<u64> {
        u64::from_str_radix(&self.topics_id, 16).ok()
    }
}

/// FNV-1a 64 of the names joined by `\n`: stable across builds (std's
/// hasher is not promised to be).
pub fn topics_id(topics: &[String]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, topic) in topics.iter().enumerate() {
        let sep: &[u8] = if i == 0 { b"" } else { b"\n" };
        for &b in sep.iter().chain(topic.as_bytes()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn cut(text: &str, max: usize) -> String {
    crate::cut_at_char_boundary(text, max).to_owned()
}
