//! Removing the duplicates of a make-before-break move.
//!
//! While a new socket is being set up beside a live one, and while a
//! socket we left is still being read, the service sends each event to
//! both channels: the copies must reach the buffer once. An event is
//! recognised by a hash of its whole frame (topic, CorrelationId, body):
//! the service is not documented to make CorrelationIds unique, so an id
//! alone could merge two different events, while identical frames carry
//! nothing new. If the service ever serialised the two copies differently,
//! they would both be kept: a duplicate, never a loss.
//!
//! The window is bounded by count and age, and only open during an
//! overlap: outside one, no per-event work is done.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// Most frames remembered (about 24 bytes each).
const MAX_REMEMBERED: usize = 262_144;
/// Frames older than this are forgotten: an overlap's copies arrive
/// within seconds of each other.
const MAX_AGE: Duration = Duration::from_secs(600);

/// What an overlap did, reported when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverlapSummary {
    pub duplicates: u64,
    pub lasted: Duration,
}

#[derive(Default)]
pub struct Overlap {
    /// When the current overlap began (None: no overlap, nothing kept).
    since: Option<Instant>,
    seen: HashSet<u64>,
    order: VecDeque<(u64, Instant)>,
    duplicates: u64,
}

impl Overlap {
    pub fn active(&self) -> bool {
        self.since.is_some()
    }

    /// Opens the window (no-op when open).
    pub fn begin(&mut self, now: Instant) {
        self.since.get_or_insert(now);
    }

    /// Closes the window and reports it (None when it was not open).
    pub fn end(&mut self, now: Instant) -> Option<OverlapSummary> {
        let since = self.since.take()?;
        self.seen.clear();
        self.order.clear();
        Some(OverlapSummary {
            duplicates: std::mem::take(&mut self.duplicates),
            lasted: now.saturating_duration_since(since),
        })
    }

    /// Whether `frame` is new (keep it) or a copy already kept. Always new
    /// outside an overlap.
    pub fn first_copy(&mut self, frame: &[u8], now: Instant) -> bool {
        if self.since.is_none() {
            return true;
        }
        let mut hasher = DefaultHasher::new();
        frame.hash(&mut hasher);
        let key = hasher.finish();
        if self.seen.contains(&key) {
            self.duplicates += 1;
            return false;
        }
        while let Some(&(old, at)) = self.order.front() {
            if self.order.len() < MAX_REMEMBERED && now.saturating_duration_since(at) < MAX_AGE {
                break;
            }
            self.seen.remove(&old);
            self.order.pop_front();
        }
        self.seen.insert(key);
        self.order.push_back((key, now));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_dropped_only_during_an_overlap() {
        let mut overlap = Overlap::default();
        let now = Instant::now();
        assert!(overlap.first_copy(b"a", now));
        assert!(
            overlap.first_copy(b"a", now),
            "no overlap: nothing is dropped"
        );
        overlap.begin(now);
        assert!(overlap.first_copy(b"a", now));
        assert!(overlap.first_copy(b"b", now));
        assert!(!overlap.first_copy(b"a", now));
        assert!(!overlap.first_copy(b"b", now));
        let summary = overlap.end(now + Duration::from_secs(2)).unwrap();
        assert_eq!(
            summary,
            OverlapSummary {
                duplicates: 2,
                lasted: Duration::from_secs(2)
            }
        );
        assert!(overlap.first_copy(b"a", now));
        assert_eq!(overlap.end(now), None);
    }

    #[test]
    fn the_window_forgets_the_oldest_frames_first() {
        let mut overlap = Overlap::default();
        let start = Instant::now();
        overlap.begin(start);
        assert!(overlap.first_copy(b"old", start));
        let later = start + MAX_AGE + Duration::from_secs(1);
        assert!(overlap.first_copy(b"new", later));
        assert!(overlap.first_copy(b"old", later), "forgotten after MAX_AGE");
        assert!(!overlap.first_copy(b"new", later));
        assert!(overlap.order.len() <= MAX_REMEMBERED);
    }
}
