//! The events as a series of sled databases, *segments*, as Kafka's log
//! segments and Vector's data files are: each holds a run of sequences
//! (from its first, named in its directory, to the next one's first),
//! appends go to the newest, and a segment the drain emptied is closed
//! and deleted whole, giving its disk space back.
//!
//! Why: sled 0.34 keeps a page-table entry for every page a database ever
//! had, so one database's memory grows with the backlog and never comes
//! back (issue 16: about 17 MiB per million events, kept after the
//! drain). A segment is bounded (`buffer.segment_bytes`), and only a few
//! are open at once ([`MAX_OPEN`]: the newest, which takes appends, and
//! the ones being read and acknowledged); the others wait on disk,
//! costing no memory, until the reader reaches them.
//!
//! Layout: `<buffer>/segments/<first sequence, 20 digits>/`, each a sled
//! database with the trees `events` and `chunks` (the layout of
//! `keyed.rs`). The main database keeps everything else (dead letters,
//! quarantine, gaps, marks) and, from before segments (format 2), older
//! events, read first (`store.rs`).
//!
//! Concurrency: the list is behind one lock, held only to look up, count
//! and hand out `Arc`s; opening, syncing and deleting happen outside it.
//! A segment is deleted only when it is empty, not the newest, and nobody
//! but the list holds it (a reader still iterating it keeps it); a
//! deletion cut short by a crash leaves an empty segment, deleted at the
//! next open.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::database::{self, SyncError};
use super::keyed::{self, Area, Census, Keyed};
use super::sync::lock;

/// Directory of the segments, inside the buffer's.
pub const SEGMENTS_DIR: &str = "segments";
/// Segments open at once, at most (beyond it the least recently used
/// other than the newest is synced and closed).
pub const MAX_OPEN: usize = 3;

/// What the segments' metrics read (`gkb_buffer_segments*`), kept
/// across reopens by the ledger.
#[derive(Debug, Default)]
pub struct SegmentGauges {
    /// Segments on disk.
    pub segments: AtomicU64,
    /// Of those, open now.
    pub open: AtomicU64,
    /// Drained segments deleted since start.
    pub deleted: AtomicU64,
}

/// One open segment.
pub struct Segment {
    pub first: u64,
    pub events: Keyed,
    db: sled::Db,
    /// Our own handle on sled's data file, for `fsync` (see `store.rs`).
    db_file: File,
}

impl Segment {
    fn open(root: &Path, first: u64, cache_bytes: u64) -> sled::Result<Segment> {
        let path = root.join(name(first));
        let db = database::open_db(&path, cache_bytes)?;
        let chunks = db.open_tree("chunks")?;
        let segment = Segment {
            first,
            events: Keyed {
                area: Area::Events,
                values: db.open_tree("events")?,
                chunks,
            },
            db_file: File::open(path.join("db"))?,
            db,
        };
        database::sync_dir(&path)?;
        Ok(segment)
    }

    /// sled's flush, then an fsync of its data file.
    pub fn sync(&self) -> Result<(), SyncError> {
        self.db.flush().map_err(SyncError::Flush)?;
        self.db_file.sync_all().map_err(SyncError::Fsync)?;
        Ok(())
    }
}

/// What the list knows of a segment, open or not.
struct Entry {
    /// Events it holds.
    live: u64,
    /// Bytes written to it (held bytes, counted as `max_bytes` counts
    /// them); the newest rolls over at `segment_bytes`.
    written_bytes: u64,
    open: Option<Arc<Segment>>,
    /// After it was closed: still alive while someone holds it, and then
    /// reused rather than opened twice (sled locks its files).
    closed: Weak<Segment>,
    used: u64,
}

/// The segments of one buffer.
pub struct Segments {
    root: PathBuf,
    cache_bytes: u64,
    segment_bytes: u64,
    state: Mutex<State>,
    gauges: Arc<SegmentGauges>,
    /// One open at a time: two opens of one directory would fight over
    /// sled's lock.
    opening: Mutex<()>,
}

#[derive(Default)]
struct State {
    list: BTreeMap<u64, Entry>,
    clock: u64,
}

impl Segments {
    /// The segments under `buffer`, none opened yet (a census opens each
    /// once, see [`Segments::census`]).
    pub fn open(
        buffer: &Path,
        cache_bytes: u64,
        segment_bytes: u64,
        gauges: Arc<SegmentGauges>,
    ) -> std::io::Result<Segments> {
        let root = buffer.join(SEGMENTS_DIR);
        let created = !root.exists();
        std::fs::create_dir_all(&root)?;
        if created {
            database::sync_dir(buffer)?;
        }
        let mut list = BTreeMap::new();
        for entry in std::fs::read_dir(&root)? {
            let entry = entry?;
            let Some(first) = parse_name(&entry.file_name().to_string_lossy()) else {
                tracing::warn!(name = %entry.file_name().to_string_lossy(), "ignoring a file in the buffer's segments directory that is not a segment");
                continue;
            };
            if entry.file_type()?.is_dir() {
                list.insert(first, Entry::new(0, 0));
            }
        }
        let state = State { list, clock: 0 };
        state.publish(&gauges);
        Ok(Segments {
            root,
            cache_bytes,
            segment_bytes: segment_bytes.max(1),
            state: Mutex::new(state),
            gauges,
            opening: Mutex::new(()),
        })
    }

    /// First sequences of all segments, oldest first.
    pub fn firsts(&self) -> Vec<u64> {
        lock(&self.state).list.keys().copied().collect()
    }

    /// How many are open now.
    #[cfg(test)]
    pub fn open_count(&self) -> usize {
        lock(&self.state)
            .list
            .values()
            .filter(|e| e.open.is_some())
            .count()
    }

    /// The segment `seq` belongs to (the one with the highest first at or
    /// below it), opened, and where the next one starts.
    pub fn containing(&self, seq: u64) -> sled::Result<Option<(Arc<Segment>, Option<u64>)>> {
        let first = {
            let state = lock(&self.state);
            match state.list.range(..=seq).next_back() {
                Some((&first, _)) => first,
                None => return Ok(None),
            }
        };
        self.get(first)
    }

    /// The segment holding `seq`, or else the first one after it.
    pub fn at_or_after(&self, seq: u64) -> sled::Result<Option<(Arc<Segment>, Option<u64>)>> {
        let first = {
            let state = lock(&self.state);
            match state.list.range(..=seq).next_back() {
                Some((&first, _)) => first,
                None => match state.list.range(seq..).next() {
                    Some((&first, _)) => first,
                    None => return Ok(None),
                },
            }
        };
        self.get(first)
    }

    /// Where a value under `seq` is written: the newest segment, or a new
    /// one starting at `seq` once the newest is full (or there is none);
    /// an older sequence (a reopen writing back) goes where it belongs.
    pub fn for_put(&self, seq: u64) -> sled::Result<Arc<Segment>> {
        let first = {
            let state = lock(&self.state);
            match state.list.iter().next_back() {
                Some((&last, entry)) if seq >= last => {
                    (entry.written_bytes < self.segment_bytes || seq == last).then_some(last)
                }
                Some(_) => state.list.range(..=seq).next_back().map(|(&f, _)| f),
                None => None,
            }
        };
        let first = match first {
            Some(first) => first,
            None => {
                let first = self.create(seq)?;
                // The one it follows may have been drained already.
                self.delete_empty(false);
                first
            }
        };
        match self.get(first)? {
            Some((segment, _)) => Ok(segment),
            // Only an empty segment other than the newest is deleted, and
            // puts come from one thread: not reached.
            None => Err(sled::Error::ReportableBug(format!(
                "buffer segment {first} vanished before a write to it"
            ))),
        }
    }

    /// Counts a value written to the segment starting at `first`.
    pub fn added(&self, first: u64, bytes: u64) {
        if let Some(entry) = lock(&self.state).list.get_mut(&first) {
            entry.live += 1;
            entry.written_bytes += bytes;
        }
    }

    /// Counts values removed from the segment starting at `first`, and
    /// deletes every segment that is now empty and free.
    pub fn removed(&self, first: u64, count: u64) {
        if count == 0 {
            return;
        }
        let empty = {
            let mut state = lock(&self.state);
            match state.list.get_mut(&first) {
                Some(entry) => {
                    entry.live = entry.live.saturating_sub(count);
                    entry.live == 0
                }
                None => false,
            }
        };
        if empty {
            self.delete_empty(false);
        }
    }

    /// Sets a segment's counts from a walk of it (the census).
    fn counted(&self, first: u64, live: u64, bytes: u64) {
        if let Some(entry) = lock(&self.state).list.get_mut(&first) {
            entry.live = live;
            entry.written_bytes = bytes;
        }
    }

    /// Walks every segment once (opening each in turn, so that only
    /// [`MAX_OPEN`] are open at a time), adds what it holds to `census`,
    /// and deletes the empty ones but the newest.
    pub fn census(&self, census: &mut Census) -> sled::Result<()> {
        for first in self.firsts() {
            let Some((segment, _)) = self.get(first)? else {
                continue;
            };
            let mut own = Census::default();
            keyed::census(&[&segment.events], &segment.events.chunks, &mut own)?;
            let live = own.entries[Area::Events as usize];
            self.counted(first, live, own.held_bytes);
            census.entries[Area::Events as usize] += live;
            census.held_bytes += own.held_bytes;
            census.last_seq = census.last_seq.max(own.last_seq);
            census.orphan_chunks += own.orphan_chunks;
            census.unreadable.extend(own.unreadable);
        }
        // Nothing writes during a census (an open, a reopen): an empty
        // newest segment goes too, and the next append starts one where
        // the sequences are.
        self.delete_empty(true);
        Ok(())
    }

    /// Syncs every open segment.
    pub fn sync(&self) -> Result<(), SyncError> {
        let open: Vec<Arc<Segment>> = lock(&self.state)
            .list
            .values()
            .filter_map(|e| e.open.clone())
            .collect();
        for segment in open {
            segment.sync()?;
        }
        Ok(())
    }

    /// The segment starting at `first`, opened if it is not; closes the
    /// least recently used beyond [`MAX_OPEN`].
    fn get(&self, first: u64) -> sled::Result<Option<(Arc<Segment>, Option<u64>)>> {
        if let Some(found) = self.lookup(first) {
            return Ok(found);
        }
        let _one = lock(&self.opening);
        if let Some(found) = self.lookup(first) {
            return Ok(found);
        }
        let segment = Arc::new(Segment::open(&self.root, first, self.cache_bytes)?);
        let (found, evicted) = {
            let mut state = lock(&self.state);
            state.clock += 1;
            let clock = state.clock;
            let Some(entry) = state.list.get_mut(&first) else {
                // Deleted meanwhile (it was empty).
                return Ok(None);
            };
            entry.open = Some(segment.clone());
            entry.closed = Weak::new();
            entry.used = clock;
            let next = next_first(&state.list, first);
            let evicted = evict(&mut state.list);
            state.publish(&self.gauges);
            (Some((segment, next)), evicted)
        };
        for segment in evicted {
            // Its removals since the last flush: a closed segment is
            // flushed by nobody else.
            if let Err(e) = segment.sync() {
                return Err(match e {
                    SyncError::Flush(e) => e,
                    SyncError::Fsync(e) => sled::Error::Io(e),
                });
            }
        }
        Ok(found)
    }

    /// An open (or still alive) segment, under the lock; `None` when it
    /// must be opened, `Some(None)` when there is no such segment.
    #[allow(clippy::type_complexity)]
    fn lookup(&self, first: u64) -> Option<Option<(Arc<Segment>, Option<u64>)>> {
        let mut state = lock(&self.state);
        state.clock += 1;
        let clock = state.clock;
        let next = next_first(&state.list, first);
        let Some(entry) = state.list.get_mut(&first) else {
            return Some(None);
        };
        entry.used = clock;
        if entry.open.is_none() {
            entry.open = entry.closed.upgrade();
        }
        entry.open.clone().map(|s| Some((s, next)))
    }

    /// Creates the segment starting at `first` (its directory; sled
    /// creates the rest when it is opened).
    fn create(&self, first: u64) -> sled::Result<u64> {
        let path = self.root.join(name(first));
        std::fs::create_dir_all(&path)?;
        database::sync_dir(&self.root)?;
        let mut state = lock(&self.state);
        state.list.entry(first).or_insert_with(|| Entry::new(0, 0));
        state.publish(&self.gauges);
        drop(state);
        tracing::debug!(first, "buffer segment created");
        Ok(first)
    }

    /// Deletes every segment that is empty, not the newest (unless
    /// `newest_too`: only when nothing appends), and held by nobody else;
    /// one that is still held is deleted by a later call.
    fn delete_empty(&self, newest_too: bool) {
        let doomed: Vec<(u64, Option<Arc<Segment>>)> = {
            let mut state = lock(&self.state);
            let newest = match newest_too {
                true => None,
                false => state.list.keys().next_back().copied(),
            };
            let firsts: Vec<u64> = state
                .list
                .iter()
                .filter(|(&first, e)| {
                    e.live == 0
                        && Some(first) != newest
                        && e.open.as_ref().map_or(0, Arc::strong_count) <= 1
                        && e.closed.strong_count() == 0
                })
                .map(|(&first, _)| first)
                .collect();
            let doomed = firsts
                .into_iter()
                .filter_map(|first| state.list.remove(&first).map(|e| (first, e.open)))
                .collect();
            state.publish(&self.gauges);
            doomed
        };
        for (first, segment) in doomed {
            drop(segment);
            let path = self.root.join(name(first));
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    self.gauges.deleted.fetch_add(1, Ordering::Relaxed);
                    let _ = database::sync_dir(&self.root);
                    tracing::debug!(first, "drained buffer segment deleted");
                }
                // Left for the next open, which deletes empty segments.
                Err(e) => {
                    tracing::warn!(first, error = %e, "cannot delete a drained buffer segment yet")
                }
            }
        }
    }
}

impl State {
    fn publish(&self, gauges: &SegmentGauges) {
        let open = self.list.values().filter(|e| e.open.is_some()).count();
        gauges
            .segments
            .store(self.list.len() as u64, Ordering::Relaxed);
        gauges.open.store(open as u64, Ordering::Relaxed);
    }
}

impl Entry {
    fn new(live: u64, written_bytes: u64) -> Entry {
        Entry {
            live,
            written_bytes,
            open: None,
            closed: Weak::new(),
            used: 0,
        }
    }
}

/// Closes the least recently used open segments, other than the newest,
/// while more than [`MAX_OPEN`] are open; returns them for a last sync.
fn evict(list: &mut BTreeMap<u64, Entry>) -> Vec<Arc<Segment>> {
    let newest = list.keys().next_back().copied();
    let mut evicted = Vec::new();
    while list.values().filter(|e| e.open.is_some()).count() > MAX_OPEN {
        let Some((_, entry)) = list
            .iter_mut()
            .filter(|(&first, e)| e.open.is_some() && Some(first) != newest)
            .min_by_key(|(_, e)| e.used)
        else {
            break;
        };
        let segment = entry.open.take().expect("filtered on open");
        entry.closed = Arc::downgrade(&segment);
        evicted.push(segment);
    }
    evicted
}

fn next_first(list: &BTreeMap<u64, Entry>, first: u64) -> Option<u64> {
    list.range(first.saturating_add(1)..)
        .next()
        .map(|(&f, _)| f)
}

fn name(first: u64) -> String {
    format!("{first:020}")
}

fn parse_name(name: &str) -> Option<u64> {
    (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_as_their_sequences() {
        assert_eq!(name(42), "00000000000000000042");
        assert_eq!(parse_name(&name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_name("0042"), None);
        assert_eq!(parse_name("0000000000000000004x"), None);
    }
}
