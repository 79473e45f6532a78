//! The newest appends, kept in memory so that a reader that keeps up (the
//! forwarder, in steady state) gets them without going back to sled: a
//! sled read of a just-written record costs a page lookup, often a pread
//! and a node decode, which was most of the forwarding thread's time.
//!
//! The tail mirrors the `events` tree for every sequence at or above
//! `from`: each successful append is pushed, each removal (acknowledged,
//! dead-lettered, quarantined) is blanked. It is bounded in bytes; what
//! falls off the front is read from sled as before. After a reopen it is
//! emptied, since the reopened tree is the truth.

use std::collections::VecDeque;

use super::record::Record;

/// Bytes of payload the tail keeps at most.
const TAIL_BYTES: usize = 4 * 1024 * 1024;

pub struct Tail {
    /// Every event with a sequence at or above this one is in `records`
    /// (or was removed, and is `None` there).
    from: u64,
    records: VecDeque<(u64, Option<Record>)>,
    bytes: usize,
}

impl Tail {
    /// An empty tail covering sequences from `next_seq` on.
    pub fn new(next_seq: u64) -> Tail {
        Tail {
            from: next_seq,
            records: VecDeque::new(),
            bytes: 0,
        }
    }

    /// A record was stored. Appends come in sequence order (they are
    /// serialised by the buffer).
    pub fn push(&mut self, record: Record) {
        self.bytes += size(&record);
        self.records.push_back((record.seq, Some(record)));
        while self.bytes > TAIL_BYTES {
            let Some((seq, dropped)) = self.records.pop_front() else {
                break;
            };
            self.bytes -= dropped.as_ref().map_or(0, size);
            self.from = seq + 1;
        }
    }

    /// These sequences left the `events` tree.
    pub fn remove(&mut self, seqs: impl IntoIterator<Item = u64>) {
        for seq in seqs {
            if seq < self.from {
                continue;
            }
            if let Ok(i) = self.records.binary_search_by_key(&seq, |(s, _)| *s) {
                if let Some(record) = self.records[i].1.take() {
                    self.bytes -= size(&record);
                }
            }
        }
        while matches!(self.records.front(), Some((_, None))) {
            let (seq, _) = self.records.pop_front().expect("front exists");
            self.from = seq + 1;
        }
    }

    /// Up to `limit` records above `after`, or `None` when part of that
    /// range is older than the tail (then sled must be read).
    pub fn read_after(&self, after: u64, limit: usize) -> Option<Vec<Record>> {
        if after.saturating_add(1) < self.from {
            return None;
        }
        let start = self.records.partition_point(|(seq, _)| *seq <= after);
        Some(
            self.records
                .range(start..)
                .filter_map(|(_, record)| record.clone())
                .take(limit)
                .collect(),
        )
    }

    /// Forgets everything: only sequences from `next_seq` on are covered.
    pub fn reset(&mut self, next_seq: u64) {
        *self = Tail::new(next_seq);
    }
}

fn size(record: &Record) -> usize {
    record.payload.len() + record.topic_name.len() + 64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, bytes: usize) -> Record {
        Record {
            seq,
            received_at_ms: seq,
            topic_name: "t".into(),
            correlation_id: None,
            payload: vec![0; bytes],
            kind: Default::default(),
        }
    }

    #[test]
    fn serves_what_it_covers_and_defers_the_rest_to_sled() {
        let mut tail = Tail::new(10);
        assert_eq!(tail.read_after(3, 10), None, "below the tail: sled");
        assert_eq!(tail.read_after(9, 10), Some(vec![]));
        for seq in 10..20 {
            tail.push(record(seq, 10));
        }
        let seqs = |v: Option<Vec<Record>>| v.map(|v| v.iter().map(|r| r.seq).collect::<Vec<_>>());
        assert_eq!(seqs(tail.read_after(14, 3)), Some(vec![15, 16, 17]));
        tail.remove([15, 16, 10]);
        assert_eq!(seqs(tail.read_after(14, 3)), Some(vec![17, 18, 19]));
        assert_eq!(tail.from, 11, "a removed front moves the covered range");
        assert_eq!(seqs(tail.read_after(10, 2)), Some(vec![11, 12]));
        assert_eq!(tail.read_after(9, 2), None, "10 is no longer covered");
    }

    #[test]
    fn bounded_in_bytes() {
        let mut tail = Tail::new(0);
        for seq in 0..100 {
            tail.push(record(seq, TAIL_BYTES / 10));
        }
        assert!(tail.bytes <= TAIL_BYTES);
        assert!(tail.read_after(0, 1).is_none(), "the oldest fell off");
        assert_eq!(tail.read_after(98, 5).unwrap().len(), 1);
    }
}
