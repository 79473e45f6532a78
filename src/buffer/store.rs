//! One open sled database and the value layout of format 2: values above
//! [`INLINE_MAX`] are cut into chunks so that no log item sled writes can
//! reach its blob threshold (see the module docs of `buffer` for why).

use std::fs::File;
use std::path::Path;

use sled::IVec;

/// Largest value stored in one piece. sled writes a consolidated leaf (up
/// to ~20 entries after a merge) as one log item and moves items above a
/// quarter of a segment (128 KiB) into unsynced blob files; 20 × 4,000
/// bytes stays well under that.
pub const INLINE_MAX: usize = 4000;
/// Size of each chunk of a larger value.
pub const CHUNK: usize = 4000;

/// First byte of a chunked value's stub: `[2][u64 total LE][u32 count LE]`.
/// Records start with their format (1) and JSON with `{`, so a stub is
/// never mistaken for either.
const STUB: u8 = 2;
const STUB_LEN: usize = 13;
const CHUNK_KEY_LEN: usize = 13;
pub const SEQ_KEY_LEN: u64 = 8;

const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// sled reports its file lock held elsewhere in words only.
pub fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// The trees keyed by sequence; the tag prefixes their chunk keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Events,
    DeadLetter,
    Quarantine,
}

impl Area {
    pub const ALL: [Area; 3] = [Area::Events, Area::DeadLetter, Area::Quarantine];

    fn tag(self) -> u8 {
        match self {
            Area::Events => b'e',
            Area::DeadLetter => b'd',
            Area::Quarantine => b'q',
        }
    }

    fn from_tag(tag: u8) -> Option<Area> {
        Area::ALL.into_iter().find(|a| a.tag() == tag)
    }
}

/// Why a stored value could not be read back whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Sled(#[from] sled::Error),
    /// The stub is there but its chunks are not (torn or damaged); the
    /// bytes found are kept for the quarantine.
    #[error("chunked value incomplete: {reason}")]
    Incomplete { reason: String, found: Vec<u8> },
}

pub struct Store {
    pub db: sled::Db,
    pub meta: sled::Tree,
    pub events: sled::Tree,
    pub dead_letter: sled::Tree,
    pub quarantine: sled::Tree,
    pub chunks: sled::Tree,
    /// Recorded gaps and their topic lists (see `gaps.rs`).
    pub gaps: sled::Tree,
    pub gap_topics: sled::Tree,
    /// Our own handle on sled's data file: `fsync` is per inode, so it
    /// also commits the file's size and block map, which sled's
    /// `sync_file_range` leaves out.
    db_file: File,
}

impl Store {
    pub fn open(path: &Path, cache_bytes: u64) -> sled::Result<Store> {
        remove_unfinished_snapshots(path);
        let config = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes);
        // A database just dropped in this process keeps its file lock
        // until sled's background writes of it finish (measured: a few
        // ms); another process's lock outlasts the wait and is reported.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let mut backoff = crate::backoff::Backoff::new(
            std::time::Duration::from_millis(5),
            std::time::Duration::from_millis(200),
        )
        .expect("constant bounds are valid");
        let db = loop {
            match config.open() {
                Err(e) if is_lock_error(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(backoff.next_delay());
                }
                other => break other?,
            }
        };
        let store = Store {
            meta: db.open_tree("meta")?,
            events: db.open_tree("events")?,
            dead_letter: db.open_tree("dead_letter")?,
            quarantine: db.open_tree("quarantine")?,
            chunks: db.open_tree("chunks")?,
            gaps: db.open_tree("gaps")?,
            gap_topics: db.open_tree("gap_topics")?,
            db_file: File::open(path.join("db"))?,
            db,
        };
        // The directory entries of files sled just created (db, conf,
        // snapshots) are durable only once their directory is synced.
        sync_dir(path)?;
        Ok(store)
    }

    pub fn tree(&self, area: Area) -> &sled::Tree {
        match area {
            Area::Events => &self.events,
            Area::DeadLetter => &self.dead_letter,
            Area::Quarantine => &self.quarantine,
        }
    }

    /// Stores `value` under `seq`; returns the bytes it adds. Chunks are
    /// written before the stub, so a crash in between leaves only orphan
    /// chunks (removed at open), never a stub without its data.
    pub fn put(&self, area: Area, seq: u64, value: IVec) -> sled::Result<u64> {
        let key = seq.to_be_bytes();
        if value.len() <= INLINE_MAX {
            let size = SEQ_KEY_LEN + value.len() as u64;
            self.tree(area).insert(key, value)?;
            return Ok(size);
        }
        let mut batch = sled::Batch::default();
        let mut count = 0u32;
        for (index, piece) in value.chunks(CHUNK).enumerate() {
            batch.insert(&chunk_key(area, seq, index as u32)[..], piece);
            count += 1;
        }
        self.chunks.apply_batch(batch)?;
        self.tree(area)
            .insert(key, &stub(value.len() as u64, count)[..])?;
        Ok(stored_size(value.len() as u64, count))
    }

    /// The value under `seq`, reassembled.
    pub fn get(&self, area: Area, seq: u64) -> Result<Option<IVec>, ReadError> {
        match self.tree(area).get(seq.to_be_bytes())? {
            None => Ok(None),
            Some(raw) => self.resolve(area, seq, raw).map(Some),
        }
    }

    /// A value as read from its tree: itself, or its chunks joined.
    pub fn resolve(&self, area: Area, seq: u64, raw: IVec) -> Result<IVec, ReadError> {
        let Some((total, count)) = parse_stub(&raw) else {
            return Ok(raw);
        };
        let prefix = chunk_prefix(area, seq);
        let mut out = Vec::with_capacity(total.min(64 << 20) as usize);
        let mut next = 0u32;
        for entry in self.chunks.scan_prefix(prefix) {
            let (key, piece) = entry?;
            if chunk_index(&key) != Some(next) {
                break;
            }
            out.extend_from_slice(&piece);
            next += 1;
        }
        if next != count || out.len() as u64 != total {
            return Err(ReadError::Incomplete {
                reason: format!("{next} of {count} chunks, {} of {total} bytes", out.len()),
                found: out,
            });
        }
        Ok(out.into())
    }

    /// Removes `seq`; returns the bytes freed, `None` when it was absent.
    pub fn remove(&self, area: Area, seq: u64) -> sled::Result<Option<u64>> {
        let Some(raw) = self.tree(area).remove(seq.to_be_bytes())? else {
            return Ok(None);
        };
        Ok(Some(self.remove_chunks_of(area, seq, &raw)?))
    }

    /// Removes many sequences of one area (and their chunks, in one batch
    /// after them); returns how many were present and the bytes freed.
    pub fn remove_many(&self, area: Area, seqs: &[u64]) -> sled::Result<(u64, u64)> {
        let tree = self.tree(area);
        let mut chunk_batch = sled::Batch::default();
        let mut chunked = false;
        let (mut present, mut freed) = (0u64, 0u64);
        // One traversal per record: `remove` hands back the value it took
        // (its size and whether it was chunked). A `get` before a batch
        // walked the tree twice and read evicted leaves from disk on the
        // forwarder's thread (perf, end to end at full speed).
        for &seq in seqs {
            let Some(raw) = tree.remove(seq.to_be_bytes())? else {
                continue;
            };
            present += 1;
            match parse_stub(&raw) {
                None => freed += SEQ_KEY_LEN + raw.len() as u64,
                Some((total, count)) => {
                    freed += stored_size(total, count);
                    chunked = true;
                    for index in 0..count {
                        chunk_batch.remove(&chunk_key(area, seq, index)[..]);
                    }
                }
            }
        }
        // Stubs first: a crash in between leaves orphan chunks only.
        if chunked {
            self.chunks.apply_batch(chunk_batch)?;
        }
        Ok((present, freed))
    }

    fn remove_chunks_of(&self, area: Area, seq: u64, raw: &[u8]) -> sled::Result<u64> {
        let Some((total, count)) = parse_stub(raw) else {
            return Ok(SEQ_KEY_LEN + raw.len() as u64);
        };
        let mut batch = sled::Batch::default();
        for index in 0..count {
            batch.remove(&chunk_key(area, seq, index)[..]);
        }
        self.chunks.apply_batch(batch)?;
        Ok(stored_size(total, count))
    }

    /// Writes everything so far to disk: sled's flush, then an fsync of
    /// its data file (size and block map included).
    pub fn sync(&self) -> Result<(), SyncError> {
        self.db.flush().map_err(SyncError::Flush)?;
        self.db_file.sync_all().map_err(SyncError::Fsync)?;
        Ok(())
    }

    /// Walks every tree once: entries per area, the bytes they hold, the
    /// highest sequence kept anywhere, ranges sled cannot read (skipped),
    /// and orphan chunks removed (left by a crash between a chunked
    /// write's two steps).
    pub fn census(&self) -> sled::Result<Census> {
        let mut census = Census::default();
        for area in Area::ALL {
            let tree = self.tree(area);
            let mut entries = 0u64;
            let mut pos = 0u64;
            // Each turn ends the walk or moves past an unreadable range.
            'walk: loop {
                for entry in tree.range(pos.to_be_bytes()..) {
                    let (key, raw) = match entry {
                        Ok(kv) => kv,
                        Err(e) if is_local(&e) => {
                            let Some(good) = first_readable(tree, pos) else {
                                return Err(e);
                            };
                            census.unreadable.push((area, pos, good - 1, e.to_string()));
                            pos = good;
                            continue 'walk;
                        }
                        Err(e) => return Err(e),
                    };
                    entries += 1;
                    census.held_bytes += match parse_stub(&raw) {
                        None => SEQ_KEY_LEN + raw.len() as u64,
                        // The chunks are counted here, from the stub, as
                        // removal will free them.
                        Some((total, count)) => stored_size(total, count),
                    };
                    let seq = seq_of(&key);
                    census.last_seq = census.last_seq.max(seq);
                    pos = seq.saturating_add(1);
                }
                break;
            }
            census.entries[area as usize] = entries;
        }
        let mut orphans = sled::Batch::default();
        for entry in self.chunks.iter().keys() {
            let key = entry?;
            let Some((area, seq, index)) = parse_chunk_key(&key) else {
                orphans.remove(key);
                census.orphan_chunks += 1;
                continue;
            };
            let owned = match self.tree(area).get(seq.to_be_bytes()) {
                Ok(raw) => raw
                    .and_then(|raw| parse_stub(&raw))
                    .is_some_and(|(_, count)| index < count),
                // Its stub is in a range that cannot be read: keep them.
                Err(e) if is_local(&e) => true,
                Err(e) => return Err(e),
            };
            if !owned {
                orphans.remove(key);
                census.orphan_chunks += 1;
            }
        }
        self.chunks.apply_batch(orphans)?;
        Ok(census)
    }
}

/// After a read of `tree` from `from` failed: the smallest key above
/// `from` from which reading works (or the tree's end), found by galloping
/// then bisecting — a damaged node fails every read that enters it, so
/// reads starting past it work. `None` when nothing past `from` reads.
pub fn first_readable(tree: &sled::Tree, from: u64) -> Option<u64> {
    first_readable_by(from, |k| {
        tree.range(k.to_be_bytes()..)
            .next()
            .map_or(true, |r| r.is_ok())
    })
}

/// [`first_readable`] over any test of "reads from here work"; at most
/// 2 × 64 probes.
pub fn first_readable_by(from: u64, readable: impl Fn(u64) -> bool) -> Option<u64> {
    // Invariant: reads from `bad` fail; reads from `good` work.
    let (mut bad, mut step) = (from, 1u64);
    let mut good = loop {
        let probe = from.saturating_add(step);
        if readable(probe) {
            break probe;
        }
        if probe == u64::MAX {
            return None;
        }
        bad = probe;
        step = step.saturating_mul(2);
    };
    while good - bad > 1 {
        let mid = bad + (good - bad) / 2;
        if readable(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Some(good)
}

/// Errors that concern one page (damaged, torn, a missing blob) rather
/// than the whole database: skipped, not a reason to reopen.
pub fn is_local(e: &sled::Error) -> bool {
    use std::io::ErrorKind::*;
    match e {
        sled::Error::Corruption { .. } => true,
        sled::Error::Io(io) => matches!(io.kind(), NotFound | InvalidData | UnexpectedEof),
        _ => false,
    }
}

#[derive(Debug, Default)]
pub struct Census {
    /// Indexed by `Area as usize`.
    pub entries: [u64; 3],
    pub held_bytes: u64,
    pub last_seq: u64,
    pub orphan_chunks: u64,
    /// Key ranges that could not be read, with the error.
    pub unreadable: Vec<(Area, u64, u64, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("flush failed: {0}")]
    Flush(sled::Error),
    #[error("fsync of the data file failed: {0}")]
    Fsync(std::io::Error),
}

/// Bytes a value takes as keys and values, as counted against
/// `max_bytes` (sled's own overhead comes on top, seen on disk).
pub fn stored_size(total: u64, count: u32) -> u64 {
    SEQ_KEY_LEN + STUB_LEN as u64 + u64::from(count) * CHUNK_KEY_LEN as u64 + total
}

fn stub(total: u64, count: u32) -> [u8; STUB_LEN] {
    let mut out = [0u8; STUB_LEN];
    out[0] = STUB;
    out[1..9].copy_from_slice(&total.to_le_bytes());
    out[9..].copy_from_slice(&count.to_le_bytes());
    out
}

pub fn parse_stub(raw: &[u8]) -> Option<(u64, u32)> {
    if raw.len() != STUB_LEN || raw[0] != STUB {
        return None;
    }
    let total = u64::from_le_bytes(raw[1..9].try_into().ok()?);
    let count = u32::from_le_bytes(raw[9..].try_into().ok()?);
    Some((total, count))
}

fn chunk_prefix(area: Area, seq: u64) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = area.tag();
    out[1..].copy_from_slice(&seq.to_be_bytes());
    out
}

fn chunk_key(area: Area, seq: u64, index: u32) -> [u8; CHUNK_KEY_LEN] {
    let mut out = [0u8; CHUNK_KEY_LEN];
    out[..9].copy_from_slice(&chunk_prefix(area, seq));
    out[9..].copy_from_slice(&index.to_be_bytes());
    out
}

fn chunk_index(key: &[u8]) -> Option<u32> {
    parse_chunk_key(key).map(|(_, _, index)| index)
}

fn parse_chunk_key(key: &[u8]) -> Option<(Area, u64, u32)> {
    if key.len() != CHUNK_KEY_LEN {
        return None;
    }
    let area = Area::from_tag(key[0])?;
    let seq = u64::from_be_bytes(key[1..9].try_into().ok()?);
    let index = u32::from_be_bytes(key[9..].try_into().ok()?);
    Some((area, seq, index))
}

pub fn seq_of(key: &[u8]) -> u64 {
    u64::from_be_bytes(key.try_into().unwrap_or([0; 8]))
}

/// sled 0.34 writes a snapshot to `snap.<lsn>.generating` and renames it
/// when complete, but at open takes the highest `snap.*` name as the
/// newest snapshot — including an unfinished one. A snapshot cut short
/// (ENOSPC during an open) therefore makes every later open fail with
/// `Corruption`. An unfinished snapshot holds nothing the log does not:
/// removing it lets sled use the previous one, or replay the log.
fn remove_unfinished_snapshots(path: &Path) {
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::warn!(file = %name, "removed an unfinished sled snapshot (left by a failed write)")
                }
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "cannot remove an unfinished sled snapshot")
                }
            }
        }
    }
}

pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
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
