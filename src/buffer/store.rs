//! The buffer's storage: the main sled database (dead letters, quarantine,
//! gaps, marks, and the events of format 2, from before segments) and the
//! event segments (`segments.rs`); which database a sequence lives in; a
//! sync of all of them; and a census of what they hold. The value layout
//! inside each database is `keyed.rs`.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use sled::IVec;

pub use super::database::{open_db, sync_dir, SyncError};
#[cfg(test)]
pub use super::keyed::first_readable_by;
pub use super::keyed::{
    first_readable, held_size, is_local, seq_of, Area, Census, Keyed, ReadError,
};
use super::segments::{Segment, SegmentGauges, Segments};

/// Where a run of events is read from: a segment, or the main database's
/// events of format 2. Holding it keeps a segment from being deleted.
pub struct Source {
    segment: Option<Arc<Segment>>,
    legacy: Option<Keyed>,
    /// The first sequence past this source (the next one's first).
    pub end: Option<u64>,
}

impl Source {
    pub fn events(&self) -> &Keyed {
        match (&self.segment, &self.legacy) {
            (Some(segment), _) => &segment.events,
            (None, Some(legacy)) => legacy,
            (None, None) => unreachable!("a source is a segment or the legacy events"),
        }
    }

    fn segment((segment, end): (Arc<Segment>, Option<u64>)) -> Source {
        Source {
            segment: Some(segment),
            legacy: None,
            end,
        }
    }

    fn segment_first(&self) -> Option<u64> {
        self.segment.as_ref().map(|s| s.first)
    }
}

pub struct Store {
    pub db: sled::Db,
    pub meta: sled::Tree,
    /// Events of format 2, written before segments: read (and drained)
    /// first; nothing new is written here.
    pub legacy_events: sled::Tree,
    /// Sequences up to this one are in `legacy_events` (0: none).
    legacy_end: u64,
    pub dead_letter: sled::Tree,
    pub quarantine: sled::Tree,
    /// Chunks of the main database's areas (dead letters, quarantine,
    /// legacy events); each segment has its own.
    pub chunks: sled::Tree,
    /// Recorded gaps and their topic lists (see `gaps.rs`).
    pub gaps: sled::Tree,
    pub gap_topics: sled::Tree,
    /// Each gap's backfill progress (see `backfill.rs`).
    pub backfill: sled::Tree,
    pub segments: Segments,
    /// Our own handle on sled's data file: `fsync` is per inode, so it
    /// also commits the file's size and block map, which sled's
    /// `sync_file_range` leaves out.
    db_file: File,
}

impl Store {
    /// Opens the main database at `path` and lists the segments under it
    /// (`segment_bytes`: when the newest one rolls over). The main
    /// database gets a quarter of `cache_bytes`, each open segment half.
    pub fn open(
        path: &Path,
        cache_bytes: u64,
        segment_bytes: u64,
        gauges: Arc<SegmentGauges>,
    ) -> sled::Result<Store> {
        let db = open_db(path, (cache_bytes / 4).max(1 << 20))?;
        let legacy_events = db.open_tree("events")?;
        let legacy_end = match legacy_events.last()? {
            Some((key, _)) => seq_of(&key),
            None => 0,
        };
        let store = Store {
            meta: db.open_tree("meta")?,
            legacy_events,
            legacy_end,
            dead_letter: db.open_tree("dead_letter")?,
            quarantine: db.open_tree("quarantine")?,
            chunks: db.open_tree("chunks")?,
            gaps: db.open_tree("gaps")?,
            gap_topics: db.open_tree("gap_topics")?,
            backfill: db.open_tree("backfill")?,
            segments: Segments::open(path, (cache_bytes / 2).max(1 << 20), segment_bytes, gauges)?,
            db_file: File::open(path.join("db"))?,
            db,
        };
        // The directory entries of files sled just created (db, conf,
        // snapshots) are durable only once their directory is synced.
        sync_dir(path)?;
        Ok(store)
    }

    /// An area of the main database (dead letters, quarantine, and the
    /// legacy events).
    pub fn main(&self, area: Area) -> Keyed {
        Keyed {
            area,
            values: match area {
                Area::Events => self.legacy_events.clone(),
                Area::DeadLetter => self.dead_letter.clone(),
                Area::Quarantine => self.quarantine.clone(),
            },
            chunks: self.chunks.clone(),
        }
    }

    /// Where event `seq` lives: the legacy events, or its segment.
    pub fn events_for(&self, seq: u64) -> sled::Result<Option<Source>> {
        if seq <= self.legacy_end {
            return Ok(Some(self.legacy_source()));
        }
        Ok(self.segments.containing(seq)?.map(Source::segment))
    }

    /// Events from `seq` on: the source holding `seq`, or else the first
    /// one after it; `None` past the last.
    pub fn events_from(&self, seq: u64) -> sled::Result<Option<Source>> {
        if seq <= self.legacy_end {
            return Ok(Some(self.legacy_source()));
        }
        Ok(self.segments.at_or_after(seq)?.map(Source::segment))
    }

    fn legacy_source(&self) -> Source {
        Source {
            segment: None,
            legacy: Some(self.main(Area::Events)),
            end: Some(self.legacy_end + 1),
        }
    }

    /// Stores `value` under `seq` in `area`; returns the bytes it adds.
    pub fn put(&self, area: Area, seq: u64, value: IVec) -> sled::Result<u64> {
        if area != Area::Events || seq <= self.legacy_end {
            return self.main(area).put(seq, value);
        }
        let segment = self.segments.for_put(seq)?;
        let bytes = segment.events.put(seq, value)?;
        self.segments.added(segment.first, bytes);
        Ok(bytes)
    }

    /// The value under `seq` in `area`, reassembled.
    pub fn get(&self, area: Area, seq: u64) -> Result<Option<IVec>, ReadError> {
        if area != Area::Events {
            return self.main(area).get(seq);
        }
        match self.events_for(seq)? {
            Some(source) => source.events().get(seq),
            None => Ok(None),
        }
    }

    /// Whether `area` holds `seq`.
    pub fn contains(&self, area: Area, seq: u64) -> sled::Result<bool> {
        if area != Area::Events {
            return self.main(area).values.contains_key(seq.to_be_bytes());
        }
        match self.events_for(seq)? {
            Some(source) => source.events().values.contains_key(seq.to_be_bytes()),
            None => Ok(false),
        }
    }

    /// A value of the main database as read from its tree (see
    /// [`Keyed::resolve`]).
    pub fn resolve(&self, area: Area, seq: u64, raw: IVec) -> Result<IVec, ReadError> {
        self.main(area).resolve(seq, raw)
    }

    /// Removes `seq`; returns the bytes freed, `None` when it was absent.
    pub fn remove(&self, area: Area, seq: u64) -> sled::Result<Option<u64>> {
        if area != Area::Events {
            return self.main(area).remove(seq);
        }
        let Some(source) = self.events_for(seq)? else {
            return Ok(None);
        };
        let freed = source.events().remove(seq)?;
        if let (Some(first), Some(_)) = (source.segment_first(), freed) {
            drop(source);
            self.segments.removed(first, 1);
        }
        Ok(freed)
    }

    /// Removes many sequences of one area (ascending); returns how many
    /// were present and the bytes freed. A segment emptied by it is
    /// deleted.
    pub fn remove_many(&self, area: Area, seqs: &[u64]) -> sled::Result<(u64, u64)> {
        if area != Area::Events {
            return self.main(area).remove_many(seqs);
        }
        let (mut present, mut freed) = (0u64, 0u64);
        let mut rest = seqs;
        while let Some(&seq) = rest.first() {
            let Some(source) = self.events_for(seq)? else {
                // Below every segment: nothing there.
                rest = &rest[1..];
                continue;
            };
            let upto = match source.end {
                Some(end) => rest.partition_point(|&s| s < end).max(1),
                None => rest.len(),
            };
            let (p, f) = source.events().remove_many(&rest[..upto])?;
            present += p;
            freed += f;
            if let Some(first) = source.segment_first() {
                drop(source);
                self.segments.removed(first, p);
            }
            rest = &rest[upto..];
        }
        Ok((present, freed))
    }

    /// Writes everything so far to disk: sled's flush, then an fsync of
    /// its data file (size and block map included), for the main
    /// database and every open segment.
    pub fn sync(&self) -> Result<(), SyncError> {
        self.db.flush().map_err(SyncError::Flush)?;
        self.db_file.sync_all().map_err(SyncError::Fsync)?;
        self.segments.sync()
    }

    /// Walks every area once, segments included: entries per area, the
    /// bytes they hold, the highest sequence kept anywhere, ranges sled
    /// cannot read (skipped), and orphan chunks removed (left by a crash
    /// between a chunked write's two steps). Empty segments but the
    /// newest are deleted.
    pub fn census(&self) -> sled::Result<Census> {
        let mut census = Census::default();
        let areas = Area::ALL.map(|a| self.main(a));
        super::keyed::census(&areas.iter().collect::<Vec<_>>(), &self.chunks, &mut census)?;
        self.segments.census(&mut census)?;
        Ok(census)
    }
}

#[cfg(test)]
impl Store {
    /// The events area `seq` is (or would be) in, behind the buffer's
    /// back: for tests that damage it as a bad disk would.
    pub fn events_keyed_for_tests(&self, seq: u64) -> Keyed {
        match self.events_for(seq).unwrap() {
            Some(source) => source.events().clone(),
            None => self.main(Area::Events),
        }
    }

    /// Entries in every events tree, counted by sled.
    pub fn event_entries_for_tests(&self) -> usize {
        let mut n = self.legacy_events.len();
        for first in self.segments.firsts() {
            if let Some(source) = self.events_for(first).unwrap() {
                n += source.events().values.len();
            }
        }
        n
    }
}

/// Format 1 stored large values as they came, so sled may have put them
/// in blob files it never synced: sync them once, on migration.
pub fn sync_legacy_blobs(path: &Path) -> std::io::Result<usize> {
    let blobs = path.join("blobs");
    let Ok(entries) = std::fs::read_dir(&blobs) else {
        return Ok(0);
    };
    let mut synced = 0;
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            File::open(entry.path())?.sync_all()?;
            synced += 1;
        }
    }
    sync_dir(&blobs)?;
    Ok(synced)
}
