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
//! overlap and for [`TAIL`] after it: the socket we left can close the
//! moment it delivered a frame whose copy is still on its way on the
//! other socket (seen when the service ended a channel with its token
//! 7 ms after the new socket opened). Outside that, no per-event work is
//! done.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// Most frames remembered (about 24 bytes each).
const MAX_REMEMBERED: usize = 262_144;
/// Frames older than this are forgotten: an overlap's copies arrive
/// within seconds of each other.
const MAX_AGE: Duration = Duration::from_secs(600);

/// How long copies are still recognised after an overlap ended.
pub const TAIL: Duration = Duration::from_secs(10);

/// What an overlap did, reported when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverlapSummary {
    pub duplicates: u64,
    pub lasted: Duration,
}

#[derive(Default)]
pub struct Overlap {
    /// When the current overlap began (None: no overlap).
    since: Option<Instant>,
    /// After an overlap: copies are recognised until then; after it,
    /// nothing is kept.
    tail_until: Option<Instant>,
    /// Copies recognised in a tail, not yet reported.
    late: u64,
    /// Frame hash → the socket that delivered the copy we kept.
    seen: HashMap<u64, u64>,
    order: VecDeque<(u64, Instant)>,
    duplicates: u64,
}

/// A frame's identity in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameKey(u64);

impl FrameKey {
    pub fn of(frame: &[u8]) -> FrameKey {
        let mut hasher = DefaultHasher::new();
        frame.hash(&mut hasher);
        FrameKey(hasher.finish())
    }
}

impl Overlap {
    /// Whether frames must be checked: during an overlap or its tail. A
    /// tail that has run out is forgotten here.
    pub fn active(&mut self, now: Instant) -> bool {
        if self.since.is_some() {
            return true;
        }
        match self.tail_until {
            Some(until) if now < until => true,
            Some(_) => {
                self.tail_until = None;
                self.seen.clear();
                self.order.clear();
                false
            }
            None => false,
        }
    }

    /// Opens the window (no-op when open); a tail becomes an overlap.
    pub fn begin(&mut self, now: Instant) {
        self.since.get_or_insert(now);
        self.tail_until = None;
    }

    /// Ends the overlap and reports it (None when there was none); copies
    /// are still recognised for [`TAIL`].
    pub fn end(&mut self, now: Instant) -> Option<OverlapSummary> {
        let since = self.since.take()?;
        self.tail_until = Some(now + TAIL);
        Some(OverlapSummary {
            duplicates: std::mem::take(&mut self.duplicates),
            lasted: now.saturating_duration_since(since),
        })
    }

    /// Whether the frame is a copy of one another socket delivered and we
    /// kept (then it is counted and must be dropped). Never outside an
    /// overlap; never for a repeat on the same socket: that is the
    /// service's own repeat, not an overlap's copy, and is kept as it
    /// would be outside one.
    pub fn is_copy(&mut self, key: FrameKey, socket: u64) -> bool {
        if !self.remembering() {
            return false;
        }
        match self.seen.get(&key.0) {
            Some(&kept_from) if kept_from != socket => {
                if self.since.is_some() {
                    self.duplicates += 1;
                } else {
                    self.late += 1;
                }
                true
            }
            _ => false,
        }
    }

    /// Whether frames are remembered and compared: during an overlap or
    /// its tail (which `active` ends once it has run out).
    fn remembering(&self) -> bool {
        self.since.is_some() || self.tail_until.is_some()
    }

    /// Copies recognised after their overlap was reported, since the last
    /// call.
    pub fn take_late(&mut self) -> u64 {
        std::mem::take(&mut self.late)
    }

    /// Remembers a frame that was kept (appended to the buffer): only a
    /// kept frame may make a later copy redundant.
    pub fn kept(&mut self, key: FrameKey, socket: u64, now: Instant) {
        if !self.remembering() {
            return;
        }
        while let Some(&(old, at)) = self.order.front() {
            if self.order.len() < MAX_REMEMBERED && now.saturating_duration_since(at) < MAX_AGE {
                break;
            }
            self.seen.remove(&old);
            self.order.pop_front();
        }
        if self.seen.insert(key.0, socket).is_none() {
            self.order.push_back((key.0, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offers `frame` from `socket` as the actor does: dropped if a copy,
    /// else kept (appended) and remembered. Returns whether it was kept.
    fn offer(overlap: &mut Overlap, frame: &[u8], socket: u64, now: Instant) -> bool {
        if !overlap.active(now) {
            return true;
        }
        let key = FrameKey::of(frame);
        if overlap.is_copy(key, socket) {
            return false;
        }
        overlap.kept(key, socket, now);
        true
    }

    #[test]
    fn copies_from_another_socket_are_dropped_only_during_an_overlap() {
        let mut overlap = Overlap::default();
        let now = Instant::now();
        assert!(offer(&mut overlap, b"a", 1, now));
        assert!(
            offer(&mut overlap, b"a", 2, now),
            "no overlap: nothing is dropped"
        );
        overlap.begin(now);
        assert!(offer(&mut overlap, b"a", 1, now));
        assert!(offer(&mut overlap, b"b", 2, now));
        assert!(!offer(&mut overlap, b"a", 2, now));
        assert!(!offer(&mut overlap, b"b", 1, now));
        let summary = overlap.end(now + Duration::from_secs(2)).unwrap();
        assert_eq!(
            summary,
            OverlapSummary {
                duplicates: 2,
                lasted: Duration::from_secs(2)
            }
        );
        let after_tail = now + Duration::from_secs(2) + TAIL;
        assert!(offer(&mut overlap, b"a", 2, after_tail));
        assert_eq!(overlap.end(after_tail), None);
    }

    #[test]
    fn a_copy_arriving_just_after_the_overlap_is_still_dropped() {
        // The socket we left delivered a frame and closed; its copy comes
        // on the other socket a moment later.
        let mut overlap = Overlap::default();
        let now = Instant::now();
        overlap.begin(now);
        assert!(offer(&mut overlap, b"a", 1, now));
        let summary = overlap.end(now + Duration::from_millis(7)).unwrap();
        assert_eq!(summary.duplicates, 0);
        let moment_later = now + Duration::from_millis(9);
        assert!(!offer(&mut overlap, b"a", 2, moment_later));
        assert_eq!(overlap.take_late(), 1);
        assert_eq!(overlap.take_late(), 0);
        assert!(
            offer(&mut overlap, b"b", 2, moment_later),
            "a new frame is kept"
        );
        let after_tail = now + Duration::from_millis(7) + TAIL;
        assert!(!overlap.active(after_tail));
        assert!(overlap.seen.is_empty(), "the tail's frames are forgotten");
        assert!(offer(&mut overlap, b"a", 1, after_tail));
    }

    #[test]
    fn a_repeat_on_the_same_socket_is_kept() {
        let mut overlap = Overlap::default();
        let now = Instant::now();
        overlap.begin(now);
        assert!(offer(&mut overlap, b"a", 1, now));
        assert!(
            offer(&mut overlap, b"a", 1, now),
            "the service's own repeat"
        );
        assert!(!offer(&mut overlap, b"a", 2, now));
    }

    #[test]
    fn a_copy_whose_first_was_not_kept_is_kept() {
        // The buffer refused the first copy (full): the second is the
        // only chance to keep the event.
        let mut overlap = Overlap::default();
        let now = Instant::now();
        overlap.begin(now);
        let key = FrameKey::of(b"a");
        assert!(!overlap.is_copy(key, 1));
        // ...append failed, so `kept` is not called...
        assert!(offer(&mut overlap, b"a", 2, now));
    }

    #[test]
    fn the_window_forgets_the_oldest_frames_first() {
        let mut overlap = Overlap::default();
        let start = Instant::now();
        overlap.begin(start);
        assert!(offer(&mut overlap, b"old", 1, start));
        let later = start + MAX_AGE + Duration::from_secs(1);
        assert!(offer(&mut overlap, b"new", 1, later));
        assert!(
            offer(&mut overlap, b"old", 2, later),
            "forgotten after MAX_AGE"
        );
        assert!(!offer(&mut overlap, b"new", 2, later));
        assert!(overlap.order.len() <= MAX_REMEMBERED);
    }
}
