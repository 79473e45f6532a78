//! The reader path: records in sequence order (from the tail while the
//! reader keeps up, from sled otherwise), one record by sequence, and the
//! removal of what Kafka acknowledged. What cannot be read never stops a
//! read: an undecodable entry is quarantined (`side_trees.rs`), a range
//! sled cannot read is found, recorded and skipped (see the module docs of
//! `buffer`, "Unreadable entries").

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::BufferError;

/// Removals the journal holds before the committer is asked to flush.
const FLUSH_AFTER_REMOVALS: usize = 4096;
use super::handle::Buffer;
use super::record::Record;
use super::side_trees;
use super::store::{self, is_local, seq_of, Area, Keyed, ReadError, Store};
use super::sync::lock;

impl Buffer {
    /// The record under `seq`, if the buffer holds it. An entry that
    /// cannot be decoded is moved to the quarantine and reads as `None`.
    pub fn get(&self, seq: u64) -> Result<Option<Record>, BufferError> {
        let store = self.store()?;
        match store.get(Area::Events, seq) {
            Ok(None) => Ok(None),
            Ok(Some(value)) => match Record::decode(seq, &value) {
                Ok(record) => Ok(Some(record)),
                Err(e) => {
                    self.quarantine_entry(&store, seq, &e.to_string(), &value)?;
                    Ok(None)
                }
            },
            Err(ReadError::Incomplete { reason, found }) => {
                self.quarantine_entry(&store, seq, &reason, &found)?;
                Ok(None)
            }
            Err(ReadError::Sled(e)) => Err(self.read_failed(e)),
        }
    }

    /// Up to `limit` records with a sequence above `after`, in order.
    /// Entries that cannot be decoded are moved to the quarantine tree and
    /// skipped; their sequences are returned in the second list. Ranges
    /// sled cannot read are skipped (see the module docs).
    pub fn read_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Record>, Vec<u64>), BufferError> {
        let _cpu = CpuSpent::start(&self.inner.shared.read_cpu_ns);
        if let Some(records) = lock(&self.inner.tail).read_after(after, limit) {
            return Ok((records, Vec::new()));
        }
        let store = self.store()?;
        let mut records = Vec::with_capacity(limit.min(1024));
        let mut quarantined = Vec::new();
        let mut pos = after.saturating_add(1);
        // Each turn either ends the read, moves `pos` past a range sled
        // cannot read (which only happens below `last_seq`), or on to the
        // next segment.
        'scan: while records.len() < limit && pos <= self.last_seq() {
            pos = self.skip_known_unreadable(pos);
            let Some(source) = store.events_from(pos).map_err(|e| self.read_failed(e))? else {
                break;
            };
            let events = source.events();
            for entry in events.values.range(pos.to_be_bytes()..) {
                if records.len() >= limit {
                    break 'scan;
                }
                let (key, raw) = match entry {
                    Ok(kv) => kv,
                    Err(e) if is_local(&e) => {
                        pos = self.skip_unreadable(&store, events, source.end, pos, &e)?;
                        continue 'scan;
                    }
                    Err(e) => return Err(self.read_failed(e)),
                };
                let seq = seq_of(&key);
                if source.end.is_some_and(|end| seq >= end) {
                    // Beyond this source (a value written back where it
                    // does not belong): its own source reads it.
                    break;
                }
                pos = seq.saturating_add(1);
                let bad = match events.resolve(seq, raw) {
                    Ok(value) => match Record::decode(seq, &value) {
                        Ok(record) => {
                            records.push(record);
                            continue;
                        }
                        Err(e) => (e.to_string(), value.to_vec()),
                    },
                    Err(ReadError::Incomplete { reason, found }) => (reason, found),
                    Err(ReadError::Sled(e)) if is_local(&e) => (e.to_string(), Vec::new()),
                    Err(ReadError::Sled(e)) => return Err(self.read_failed(e)),
                };
                self.quarantine_entry(&store, seq, &bad.0, &bad.1)?;
                quarantined.push(seq);
            }
            match source.end {
                Some(end) if end > pos => pos = end,
                Some(_) => {}
                None => break,
            }
        }
        Ok((records, quarantined))
    }

    /// Removes records Kafka acknowledged.
    pub fn remove(&self, seqs: &[u64]) -> Result<(), BufferError> {
        let _cpu = CpuSpent::start(&self.inner.shared.remove_cpu_ns);
        let store = self.store()?;
        let (removed, _) = self.remove_counted(&store, Area::Events, seqs)?;
        lock(&self.inner.tail).remove(removed.iter().copied());
        // Kafka has them: a reopen must not write them back.
        let mut unflushed = self.lock_unflushed();
        for seq in removed {
            unflushed.removed(seq);
        }
        // The journal keeps each removal until a flush covers it. While a
        // backlog drains nothing is appended, so nothing else asks for a
        // flush: without this the journal grew by an entry per event
        // drained (measured: the bridge at 244 MiB after draining
        // 5,000,000, against 107 MiB with them waiting).
        if unflushed.removals.len() >= FLUSH_AFTER_REMOVALS {
            drop(unflushed);
            self.inner.shared.commit.request();
        }
        Ok(())
    }

    /// Finds the first readable key after a read error at `from` and
    /// records the range in between as unreadable. Returns where to go on.
    fn skip_unreadable(
        &self,
        store: &Store,
        events: &Keyed,
        end: Option<u64>,
        from: u64,
        error: &sled::Error,
    ) -> Result<u64, BufferError> {
        // Past the source's end reads work by definition (the next source).
        let Some(good) = store::first_readable(&events.values, from)
            .map(|g| end.map_or(g, |end| g.min(end)))
            .or(end)
        else {
            return Err(self.read_failed(error.clone()));
        };
        let last_bad = good - 1;
        lock(&self.inner.unreadable).push((from, last_bad));
        self.inner
            .shared
            .unreadable_ranges
            .fetch_add(1, Ordering::SeqCst);
        tracing::error!(from, to = last_bad, error = %error, "buffer range sled cannot read: skipped and recorded in the quarantine");
        let seq = self.inner.shared.next_seq.fetch_add(1, Ordering::SeqCst);
        let reason = format!("sequences {from}..={last_bad} cannot be read: {error}");
        let value = side_trees::quarantine_json(seq, "unreadable buffer range", &reason, &[]);
        self.put_counted(store, Area::Quarantine, seq, value)?;
        Ok(good)
    }

    fn skip_known_unreadable(&self, mut pos: u64) -> u64 {
        let ranges = lock(&self.inner.unreadable);
        // Ranges may touch one another; a few passes settle it.
        for _ in 0..=ranges.len() {
            match ranges.iter().find(|(a, b)| (*a..=*b).contains(&pos)) {
                Some((_, b)) => pos = b.saturating_add(1),
                None => break,
            }
        }
        pos
    }

    /// Writes raw bytes as event `seq` behind the buffer's back, as a bad
    /// disk would: for tests of the tools that find such damage.
    #[cfg(test)]
    pub(crate) fn damage_event_for_tests(&self, seq: u64, bytes: &[u8]) {
        let store = self.store().unwrap();
        match store.events_for(seq).unwrap() {
            Some(source) => source.events().values.insert(seq.to_be_bytes(), bytes),
            None => store.legacy_events.insert(seq.to_be_bytes(), bytes),
        }
        .unwrap();
    }

    /// Test hook: read everything from sled, as after a restart.
    #[cfg(test)]
    pub(crate) fn forget_tail(&self) {
        lock(&self.inner.tail).reset(self.inner.shared.next_seq.load(Ordering::SeqCst));
    }
}

/// Adds the calling thread's CPU time from its start to its drop to a
/// counter (`gkb_buffer_read_cpu_seconds_total`, …): reads and removals
/// are batched, so two clock reads per call cost nothing measurable.
struct CpuSpent<'a> {
    counter: &'a AtomicU64,
    start: u64,
}

impl<'a> CpuSpent<'a> {
    fn start(counter: &'a AtomicU64) -> CpuSpent<'a> {
        CpuSpent {
            counter,
            start: thread_cpu_ns(),
        }
    }
}

impl Drop for CpuSpent<'_> {
    fn drop(&mut self) {
        let spent = thread_cpu_ns().saturating_sub(self.start);
        self.counter.fetch_add(spent, Ordering::Relaxed);
    }
}

/// CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own; this clock exists
    // on every Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
