//! A standby's buffer, kept bounded: the events the leader's progress
//! names are dropped from it, and so are records the bridge made (a
//! standby makes none; an earlier life as leader may have left some) and
//! events nobody named for `standby_keep_secs`. What stays is what the
//! leader has not yet reported in Kafka: exactly what a takeover forwards.
//!
//! [`Covered`] remembers the ids progress records named (for events this
//! member receives after the leader reported them: its socket can lag the
//! leader's); [`Index`] knows the id of every event in the buffer, so a
//! progress record is matched by lookups, not by reading the buffer again.
//! Runs on the coordinator's thread, never on one that reads sockets.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::buffer::{Buffer, BufferError, Kind};

/// How long an id named by a progress record is remembered.
pub const COVERED_FOR: Duration = Duration::from_secs(600);
/// At most this many remembered ids (about 40 bytes each).
pub const COVERED_MAX: usize = 2_000_000;
/// Records read from the buffer per call.
const READ_BATCH: usize = 2_000;

/// Ids the leader reported in Kafka, for a bounded time.
#[derive(Debug, Default)]
pub struct Covered {
    ids: HashSet<u64>,
    order: VecDeque<(Instant, u64)>,
    /// Added since the index last looked.
    fresh: Vec<u64>,
}

impl Covered {
    pub fn insert(&mut self, id: u64, now: Instant) {
        if self.ids.insert(id) {
            self.order.push_back((now, id));
            self.fresh.push(id);
        }
        while self.order.len() > COVERED_MAX
            || self
                .order
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > COVERED_FOR)
        {
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    /// The ids named within `window` before `now`.
    pub fn recent(&self, window: Duration, now: Instant) -> HashSet<u64> {
        self.order
            .iter()
            .rev()
            .take_while(|(at, _)| now.saturating_duration_since(*at) <= window)
            .map(|(_, id)| *id)
            .collect()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.ids.contains(&id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn take_fresh(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.fresh)
    }
}

/// One buffered event as the index knows it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u64,
    received_at_ms: u64,
}

/// What one pass dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Named by the leader's progress.
    pub covered: u64,
    /// Kept `standby_keep_secs` without being named.
    pub expired: u64,
    /// Records the bridge made.
    pub made: u64,
}

/// The buffer's events by id, read incrementally.
#[derive(Debug, Default)]
pub struct Index {
    cursor: u64,
    generation: u64,
    by_seq: BTreeMap<u64, Entry>,
    by_id: HashMap<u64, Vec<u64>>,
}

impl Index {
    /// Events held that the leader has not reported.
    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// Receive time of the oldest event held.
    pub fn oldest_ms(&self) -> Option<u64> {
        self.by_seq.values().map(|e| e.received_at_ms).min()
    }

    /// Forget everything: the next pass reads the buffer from its start
    /// (after a takeover's forwarder owned it, or a reopen).
    pub fn reset(&mut self) {
        *self = Index::default();
    }

    /// Reads new records, then drops from the buffer what `covered` names,
    /// what the bridge made, and what is older than `keep`.
    pub fn pass(
        &mut self,
        buffer: &Buffer,
        covered: &mut Covered,
        keep: Duration,
        now_ms: u64,
    ) -> Result<Dropped, BufferError> {
        if buffer.generation() != self.generation {
            self.reset();
            self.generation = buffer.generation();
        }
        let mut dropped = Dropped::default();
        let mut remove = Vec::new();
        loop {
            let (records, _quarantined) = buffer.read_after(self.cursor, READ_BATCH)?;
            let Some(last) = records.last() else { break };
            self.cursor = last.seq;
            for record in records {
                let id = record.event_id();
                if record.kind != Kind::Notification {
                    dropped.made += 1;
                    remove.push(record.seq);
                } else if covered.contains(id) {
                    dropped.covered += 1;
                    remove.push(record.seq);
                } else {
                    self.by_seq.insert(
                        record.seq,
                        Entry {
                            id,
                            received_at_ms: record.received_at_ms,
                        },
                    );
                    self.by_id.entry(id).or_default().push(record.seq);
                }
            }
        }
        for id in covered.take_fresh() {
            if let Some(seqs) = self.by_id.remove(&id) {
                for seq in seqs {
                    self.by_seq.remove(&seq);
                    dropped.covered += 1;
                    remove.push(seq);
                }
            }
        }
        let cutoff = now_ms.saturating_sub(keep.as_millis() as u64);
        // Receive order is (nearly) time order: the old ones come first.
        let expired: Vec<u64> = self
            .by_seq
            .iter()
            .take_while(|(_, e)| e.received_at_ms < cutoff)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in expired {
            if let Some(entry) = self.by_seq.remove(&seq) {
                self.forget_id(entry.id, seq);
                dropped.expired += 1;
                remove.push(seq);
            }
        }
        if !remove.is_empty() {
            remove.sort_unstable();
            buffer.remove(&remove)?;
        }
        Ok(dropped)
    }

    /// Drops these events (found in Kafka by a takeover's check).
    pub fn drop_ids(&mut self, buffer: &Buffer, ids: &HashSet<u64>) -> Result<u64, BufferError> {
        let mut remove = Vec::new();
        for id in ids {
            if let Some(seqs) = self.by_id.remove(id) {
                for seq in seqs {
                    self.by_seq.remove(&seq);
                    remove.push(seq);
                }
            }
        }
        remove.sort_unstable();
        if !remove.is_empty() {
            buffer.remove(&remove)?;
        }
        Ok(remove.len() as u64)
    }

    /// The ids held, with their sequence.
    pub fn held(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.by_seq.iter().map(|(seq, e)| (*seq, e.id))
    }

    fn forget_id(&mut self, id: u64, seq: u64) {
        if let Some(seqs) = self.by_id.get_mut(&id) {
            seqs.retain(|s| *s != seq);
            if seqs.is_empty() {
                self.by_id.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_ids_are_forgotten_after_their_window() {
        let mut c = Covered::default();
        let t0 = Instant::now();
        c.insert(1, t0);
        assert!(c.contains(1));
        c.insert(2, t0 + COVERED_FOR + Duration::from_secs(1));
        assert!(!c.contains(1) && c.contains(2));
    }

    #[test]
    fn a_pass_drops_what_is_covered_made_or_old_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = Buffer::open(dir.path()).unwrap();
        let now = 10_000_000;
        let topic = "v2.routing.queues.q.conversations";
        for (payload, at, kind) in [
            ("old", now - 1_000_000, Kind::Notification),
            ("a", now, Kind::Notification),
            ("b", now, Kind::Notification),
            ("s", now, Kind::Snapshot),
            ("c", now, Kind::Notification),
        ] {
            if kind == Kind::Notification {
                buffer.append(at, topic, None, payload.as_bytes()).unwrap();
            } else {
                buffer
                    .submit_made(kind, at, topic, payload.as_bytes().to_vec())
                    .unwrap();
                assert!(buffer.wait_written(Duration::from_secs(10)));
            }
        }
        let mut covered = Covered::default();
        let t = Instant::now();
        // "a" was reported before this member received it.
        covered.insert(crate::buffer::event_id(b"a"), t);
        let mut index = Index::default();
        let keep = Duration::from_secs(900);
        let dropped = index.pass(&buffer, &mut covered, keep, now).unwrap();
        assert_eq!(
            dropped,
            Dropped {
                covered: 1,
                expired: 1,
                made: 1
            }
        );
        assert_eq!(index.len(), 2);
        // "c" reported after it was indexed.
        covered.insert(crate::buffer::event_id(b"c"), t);
        let dropped = index.pass(&buffer, &mut covered, keep, now).unwrap();
        assert_eq!(dropped.covered, 1);
        assert_eq!(buffer.len(), 1, "only b is left");
        let found: HashSet<u64> = [crate::buffer::event_id(b"b")].into();
        assert_eq!(index.drop_ids(&buffer, &found).unwrap(), 1);
        assert!(buffer.is_empty() && index.is_empty());
    }
}
