//! The value layout of format 2 and later, for one sequence-keyed area:
//! values above [`INLINE_MAX`] are cut into chunks (in the area's
//! `chunks` tree) so that no log item sled writes can reach its blob
//! threshold (see the module docs of `buffer` for why). [`Keyed`] is one
//! area of one sled database; `store.rs` decides which database an area
//! or an event's sequence lives in.

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

/// One area of one database: its values by sequence, and the chunks tree
/// its large values are cut into (shared with the database's other
/// areas; chunk keys carry the area's tag).
#[derive(Clone)]
pub struct Keyed {
    pub area: Area,
    pub values: sled::Tree,
    pub chunks: sled::Tree,
}

impl Keyed {
    /// Stores `value` under `seq`; returns the bytes it adds. Chunks are
    /// written before the stub, so a crash in between leaves only orphan
    /// chunks (removed at open), never a stub without its data.
    pub fn put(&self, seq: u64, value: IVec) -> sled::Result<u64> {
        let key = seq.to_be_bytes();
        if value.len() <= INLINE_MAX {
            let size = SEQ_KEY_LEN + value.len() as u64;
            self.values.insert(key, value)?;
            return Ok(size);
        }
        let mut batch = sled::Batch::default();
        let mut count = 0u32;
        for (index, piece) in value.chunks(CHUNK).enumerate() {
            batch.insert(&chunk_key(self.area, seq, index as u32)[..], piece);
            count += 1;
        }
        self.chunks.apply_batch(batch)?;
        self.values
            .insert(key, &stub(value.len() as u64, count)[..])?;
        Ok(stored_size(value.len() as u64, count))
    }

    /// The value under `seq`, reassembled.
    pub fn get(&self, seq: u64) -> Result<Option<IVec>, ReadError> {
        match self.values.get(seq.to_be_bytes())? {
            None => Ok(None),
            Some(raw) => self.resolve(seq, raw).map(Some),
        }
    }

    /// A value as read from its tree: itself, or its chunks joined.
    pub fn resolve(&self, seq: u64, raw: IVec) -> Result<IVec, ReadError> {
        let Some((total, count)) = parse_stub(&raw) else {
            return Ok(raw);
        };
        let prefix = chunk_prefix(self.area, seq);
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
    pub fn remove(&self, seq: u64) -> sled::Result<Option<u64>> {
        let Some(raw) = self.values.remove(seq.to_be_bytes())? else {
            return Ok(None);
        };
        let Some((total, count)) = parse_stub(&raw) else {
            return Ok(Some(SEQ_KEY_LEN + raw.len() as u64));
        };
        let mut batch = sled::Batch::default();
        for index in 0..count {
            batch.remove(&chunk_key(self.area, seq, index)[..]);
        }
        self.chunks.apply_batch(batch)?;
        Ok(Some(stored_size(total, count)))
    }

    /// Removes many sequences (and their chunks, in one batch after them);
    /// returns how many were present and the bytes freed.
    pub fn remove_many(&self, seqs: &[u64]) -> sled::Result<(u64, u64)> {
        let mut chunk_batch = sled::Batch::default();
        let mut chunked = false;
        let (mut present, mut freed) = (0u64, 0u64);
        // One traversal per record: `remove` hands back the value it took
        // (its size and whether it was chunked). A `get` before a batch
        // walked the tree twice and read evicted leaves from disk on the
        // forwarder's thread (perf, end to end at full speed).
        for &seq in seqs {
            let Some(raw) = self.values.remove(seq.to_be_bytes())? else {
                continue;
            };
            present += 1;
            match parse_stub(&raw) {
                None => freed += SEQ_KEY_LEN + raw.len() as u64,
                Some((total, count)) => {
                    freed += stored_size(total, count);
                    chunked = true;
                    for index in 0..count {
                        chunk_batch.remove(&chunk_key(self.area, seq, index)[..]);
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
}

/// Walks `areas` (all keyed in one database, sharing `chunks`) once:
/// entries per area, the bytes they hold, the highest sequence, ranges
/// sled cannot read (skipped), and orphan chunks of these areas removed
/// (left by a crash between a chunked write's two steps).
pub fn census(areas: &[&Keyed], chunks: &sled::Tree, census: &mut Census) -> sled::Result<()> {
    for keyed in areas {
        let tree = &keyed.values;
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
                        census
                            .unreadable
                            .push((keyed.area, pos, good - 1, e.to_string()));
                        pos = good;
                        continue 'walk;
                    }
                    Err(e) => return Err(e),
                };
                entries += 1;
                census.held_bytes += held_size(&raw);
                let seq = seq_of(&key);
                census.last_seq = census.last_seq.max(seq);
                pos = seq.saturating_add(1);
            }
            break;
        }
        census.entries[keyed.area as usize] += entries;
    }
    let mut orphans = sled::Batch::default();
    for entry in chunks.iter().keys() {
        let key = entry?;
        let Some((area, seq, index)) = parse_chunk_key(&key) else {
            orphans.remove(key);
            census.orphan_chunks += 1;
            continue;
        };
        let Some(keyed) = areas.iter().find(|k| k.area == area) else {
            // Another database's area (events before segments): its
            // own walk decides.
            continue;
        };
        let owned = match keyed.values.get(seq.to_be_bytes()) {
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
    chunks.apply_batch(orphans)?;
    Ok(())
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

/// Bytes a value takes as keys and values, as counted against
/// `max_bytes` (sled's own overhead comes on top, seen on disk).
pub fn stored_size(total: u64, count: u32) -> u64 {
    SEQ_KEY_LEN + STUB_LEN as u64 + u64::from(count) * CHUNK_KEY_LEN as u64 + total
}

/// Bytes an entry as read from its tree (a value or a stub) holds.
pub fn held_size(raw: &[u8]) -> u64 {
    match parse_stub(raw) {
        Some((total, count)) => stored_size(total, count),
        None => SEQ_KEY_LEN + raw.len() as u64,
    }
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
