//! Read-only walks over the buffer for the operator's tools (`buffer
//! stats`, `buffer check`, `buffer export`; see `crate::buffer_tools`).
//!
//! They run beside a live bridge (its control socket serves them on its
//! own handle), so they never write: an entry that does not decode is
//! reported, not quarantined (only `check --repair`, on a stopped bridge,
//! moves it), and a range sled cannot read is skipped and reported. The
//! producer removes records while a walk runs, so a chunked value whose
//! chunks vanish under the walk is looked up again before it is called
//! damaged: gone means acknowledged, not broken.

use super::error::BufferError;
use super::handle::Buffer;
use super::record::Record;
use super::side_trees::{DeadLetter, Quarantined};
use super::store::{first_readable, held_size, is_local, seq_of, Area, ReadError, Store};
use crate::gap::GapRecord;

/// One step of [`Buffer::walk_events`].
#[derive(Debug)]
pub enum Walked {
    /// A record and the bytes the buffer holds for it (key, value and
    /// chunks), as counted in `gkb_buffer_held_bytes`.
    Record { record: Record, held_bytes: u64 },
    /// An entry that is there but cannot be read as a record.
    Damaged { seq: u64, reason: String },
    /// Keys sled cannot read at all (a damaged node); `to` is `None` when
    /// nothing readable follows.
    Unreadable {
        from: u64,
        to: Option<u64>,
        error: String,
    },
}

/// What [`Buffer::check_side_areas`] found outside the events.
#[derive(Debug, Default, serde::Serialize)]
pub struct SideAreas {
    pub dead_letters: u64,
    pub quarantined: u64,
    pub gaps: u64,
    /// Entries of those areas that do not decode, `(area, seq or key, why)`.
    pub damaged: Vec<(String, String, String)>,
}

/// Disk use and bounds, as the buffer's sampler last measured them.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Bytes of keys and values held (events, dead letters, quarantine).
    pub held_bytes: u64,
    /// Bytes of the buffer's files.
    pub disk_bytes: u64,
    /// Free bytes on its filesystem.
    pub fs_free_bytes: u64,
    pub max_bytes: u64,
    pub min_free_bytes: u64,
    pub last_seq: u64,
    pub durable_seq: u64,
}

impl Buffer {
    /// Visits every record from the oldest, without writing anything.
    /// `visit` returns `false` to stop early.
    pub fn walk_events(&self, mut visit: impl FnMut(Walked) -> bool) -> Result<(), BufferError> {
        let store = self.store()?;
        let mut pos = 0u64;
        // Each turn ends the walk, moves past a range sled cannot read, or
        // on to the next segment.
        'walk: loop {
            let Some(source) = store.events_from(pos).map_err(BufferError::Read)? else {
                return Ok(());
            };
            let events = source.events();
            for entry in events.values.range(pos.to_be_bytes()..) {
                let (key, raw) = match entry {
                    Ok(kv) => kv,
                    Err(e) if is_local(&e) => {
                        let good = first_readable(&events.values, pos)
                            .map(|g| source.end.map_or(g, |end| g.min(end)))
                            .or(source.end);
                        let step = Walked::Unreadable {
                            from: pos,
                            to: good.map(|g| g - 1),
                            error: e.to_string(),
                        };
                        if !visit(step) {
                            return Ok(());
                        }
                        match good {
                            Some(good) => {
                                pos = good;
                                continue 'walk;
                            }
                            None => return Ok(()),
                        }
                    }
                    Err(e) => return Err(BufferError::Read(e)),
                };
                // A walk holds the database open: after a storage failure
                // it must let go, or the buffer cannot reopen (sled's lock)
                // and refuses events until the walk ends.
                if self.is_failing() {
                    return Err(BufferError::Failing(
                        "stopped a read-only walk so that the buffer can reopen".into(),
                    ));
                }
                let seq = seq_of(&key);
                if source.end.is_some_and(|end| seq >= end) {
                    break;
                }
                pos = seq.saturating_add(1);
                let held_bytes = held_size(&raw);
                let step = match events.resolve(seq, raw) {
                    Ok(value) => match Record::decode(seq, &value) {
                        Ok(record) => Walked::Record { record, held_bytes },
                        Err(e) => Walked::Damaged {
                            seq,
                            reason: e.to_string(),
                        },
                    },
                    Err(ReadError::Incomplete { reason, .. }) => {
                        if !still_there(&store, seq)? {
                            continue;
                        }
                        Walked::Damaged { seq, reason }
                    }
                    Err(ReadError::Sled(e)) if is_local(&e) => Walked::Damaged {
                        seq,
                        reason: e.to_string(),
                    },
                    Err(ReadError::Sled(e)) => return Err(BufferError::Read(e)),
                };
                if !visit(step) {
                    return Ok(());
                }
            }
            match source.end {
                Some(end) => pos = pos.max(end),
                None => return Ok(()),
            }
        }
    }

    /// Counts and decodes the dead letters, the quarantine and the gaps,
    /// without writing anything.
    pub fn check_side_areas(&self) -> Result<SideAreas, BufferError> {
        let store = self.store()?;
        let mut found = SideAreas::default();
        for (area, count) in [
            (Area::DeadLetter, &mut found.dead_letters),
            (Area::Quarantine, &mut found.quarantined),
        ] {
            for entry in store.main(area).values.iter() {
                let (key, raw) = match entry {
                    Ok(kv) => kv,
                    Err(e) if is_local(&e) => {
                        found
                            .damaged
                            .push((area_name(area), "?".into(), e.to_string()));
                        break;
                    }
                    Err(e) => return Err(BufferError::Read(e)),
                };
                let seq = seq_of(&key);
                *count += 1;
                let problem = match store.resolve(area, seq, raw) {
                    Ok(value) => decodes(area, &value).err(),
                    Err(ReadError::Incomplete { reason, .. }) => {
                        still_there_in(&store, area, seq)?.then_some(reason)
                    }
                    Err(ReadError::Sled(e)) if is_local(&e) => Some(e.to_string()),
                    Err(ReadError::Sled(e)) => return Err(BufferError::Read(e)),
                };
                if let Some(why) = problem {
                    found.damaged.push((area_name(area), seq.to_string(), why));
                }
            }
        }
        for entry in store.gaps.iter() {
            match entry {
                Ok((key, value)) => {
                    found.gaps += 1;
                    if let Err(e) = GapRecord::decode(&value) {
                        found
                            .damaged
                            .push(("gaps".into(), hex(&key), e.to_string()));
                    }
                }
                Err(e) if is_local(&e) => {
                    found
                        .damaged
                        .push(("gaps".into(), "?".into(), e.to_string()));
                    break;
                }
                Err(e) => return Err(BufferError::Read(e)),
            }
        }
        Ok(found)
    }

    /// Disk use and bounds (the figures of `gkb_buffer_*`).
    pub fn usage(&self) -> Usage {
        let admission = &self.inner.shared.admission;
        let load = |v: &std::sync::atomic::AtomicU64| v.load(std::sync::atomic::Ordering::SeqCst);
        Usage {
            held_bytes: load(&admission.held_bytes),
            disk_bytes: load(&admission.disk_bytes),
            fs_free_bytes: load(&admission.free_bytes),
            max_bytes: admission.max_bytes,
            min_free_bytes: admission.min_free_bytes,
            last_seq: self.last_seq(),
            durable_seq: self.durable_seq(),
        }
    }

    /// Reads every record through [`Buffer::read_after`], which moves what
    /// cannot be decoded to the quarantine and records ranges sled cannot
    /// read, then flushes. For a stopped bridge (`buffer check --repair`):
    /// returns the sequences moved.
    pub fn salvage(&self) -> Result<Vec<u64>, BufferError> {
        let mut moved = Vec::new();
        let mut after = 0u64;
        loop {
            let (records, quarantined) = self.read_after(after, 4096)?;
            let furthest = records
                .last()
                .map(|r| r.seq)
                .into_iter()
                .chain(quarantined.iter().copied())
                .max();
            moved.extend(quarantined);
            match furthest {
                Some(seq) => after = seq,
                None => break,
            }
        }
        self.flush_blocking()?;
        Ok(moved)
    }
}

/// The bytes an entry holds, counted as the buffer counts them.
fn still_there(store: &Store, seq: u64) -> Result<bool, BufferError> {
    still_there_in(store, Area::Events, seq)
}

/// Whether `seq` is still in `area`: a chunked value removed under a walk
/// loses its chunks after its stub, so a walk can see the stub and then
/// miss chunks.
fn still_there_in(store: &Store, area: Area, seq: u64) -> Result<bool, BufferError> {
    match store.contains(area, seq) {
        Ok(found) => Ok(found),
        Err(e) if is_local(&e) => Ok(true),
        Err(e) => Err(BufferError::Read(e)),
    }
}

fn decodes(area: Area, value: &[u8]) -> Result<(), String> {
    match area {
        Area::DeadLetter => serde_json::from_slice::<DeadLetter>(value).map(drop),
        Area::Quarantine => serde_json::from_slice::<Quarantined>(value).map(drop),
        Area::Events => {
            return Record::decode(0, value)
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }
    .map_err(|e| e.to_string())
}

fn area_name(area: Area) -> String {
    match area {
        Area::Events => "events",
        Area::DeadLetter => "dead_letter",
        Area::Quarantine => "quarantine",
    }
    .to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
