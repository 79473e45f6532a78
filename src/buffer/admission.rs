//! Whether the buffer takes new events: a flag read on every append, set
//! by a sampler that measures the disk off the hot path.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// Why new events are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Refusal {
    /// The buffer reached `max_bytes`.
    Limit = 1,
    /// Its filesystem has less than `min_free_bytes` free.
    FreeSpace = 2,
    /// A write, flush or removal failed; the buffer is reopening.
    Failing = 3,
}

impl Refusal {
    fn from_u8(v: u8) -> Option<Refusal> {
        match v {
            1 => Some(Refusal::Limit),
            2 => Some(Refusal::FreeSpace),
            3 => Some(Refusal::Failing),
            _ => None,
        }
    }
}

/// The bound and what the sampler last measured.
///
/// sled's file does not shrink after a drain, and under churn it keeps
/// garbage of its own (measured with 1 KB events: 50 MB held took an
/// 88 MB file; drained, then 300 MB flowing through a 10 MB backlog grew
/// it to 130 MB, where it levelled off). So the file's size alone cannot
/// say whether the buffer is full: the bound is reached when the file is
/// at `max_bytes` *and* at least a third of it is live data (or the live
/// data alone reaches `max_bytes`). After a drain the file is mostly free
/// space sled will reuse, and events are taken again. Reopening needs 10%
/// more room than closing, so the flag does not flap.
pub struct Admission {
    pub max_bytes: u64,
    pub min_free_bytes: u64,
    /// 0 = open, else a [`Refusal`] from the bound (failures are kept
    /// apart, in the buffer's `failing` flag).
    state: AtomicU8,
    /// Bytes of keys and values held, kept exactly as entries come and go.
    pub held_bytes: AtomicU64,
    pub disk_bytes: AtomicU64,
    pub free_bytes: AtomicU64,
    /// Samples taken, so that an observer can wait for a fresh one.
    pub samples: AtomicU64,
    /// The reserve (`reserve.rs`) is not in place: released to reopen, or
    /// not yet put back. Its room is then kept free on top of the floor,
    /// so that new events do not take it before it is back.
    pub reserve_owed: AtomicBool,
}

/// What one sample decided, for the caller to log.
#[derive(Debug, PartialEq, Eq)]
pub enum Transition {
    None,
    Closed(Refusal),
    Opened,
}

impl Admission {
    pub fn new(max_bytes: u64, min_free_bytes: u64) -> Admission {
        Admission {
            max_bytes,
            min_free_bytes,
            state: AtomicU8::new(0),
            held_bytes: AtomicU64::new(0),
            disk_bytes: AtomicU64::new(0),
            free_bytes: AtomicU64::new(u64::MAX),
            samples: AtomicU64::new(0),
            reserve_owed: AtomicBool::new(false),
        }
    }

    /// The bound's refusal, if any; two atomic loads.
    pub fn refusal(&self) -> Option<Refusal> {
        if let Some(r) = Refusal::from_u8(self.state.load(Ordering::Relaxed)) {
            return Some(r);
        }
        // Held data alone over the bound: full whatever the file says,
        // known without waiting for the sampler.
        (self.held_bytes.load(Ordering::Relaxed) >= self.max_bytes).then_some(Refusal::Limit)
    }

    /// Measures the directory and its filesystem, and opens or closes.
    pub fn sample(&self, dir: &Path) -> Transition {
        let disk = dir_bytes(dir);
        let free = free_bytes(dir).unwrap_or(u64::MAX);
        let transition = self.decide(disk, free);
        self.samples.fetch_add(1, Ordering::SeqCst);
        transition
    }

    pub fn decide(&self, disk: u64, free: u64) -> Transition {
        self.disk_bytes.store(disk, Ordering::Relaxed);
        self.free_bytes.store(free, Ordering::Relaxed);
        let held = u128::from(self.held_bytes.load(Ordering::Relaxed));
        let (disk, max) = (u128::from(disk), u128::from(self.max_bytes));
        let before = Refusal::from_u8(self.state.load(Ordering::Relaxed));
        let full = if before == Some(Refusal::Limit) {
            held * 10 >= max * 9 || (disk >= max && held * 10 >= disk * 3)
        } else {
            held >= max || (disk >= max && held * 3 >= disk)
        };
        // Space inside the buffer's file that sled will reuse (live data
        // takes about twice its size there; measured 1.8) counts as free:
        // otherwise a file grown during an outage would hold the floor
        // shut after the drain, since it never shrinks.
        let reusable = disk.saturating_sub(held * 2);
        let owed = if self.reserve_owed.load(Ordering::Relaxed) {
            super::reserve::RESERVE_BYTES
        } else {
            0
        };
        let mut floor = u128::from(self.min_free_bytes) + u128::from(owed);
        if before == Some(Refusal::FreeSpace) {
            // Taking events again needs a quarter more room than refusing
            // them (the drain's own writes need some of it at once).
            floor += floor / 4;
        }
        let after = if u128::from(free) + reusable < floor {
            Some(Refusal::FreeSpace)
        } else if full {
            Some(Refusal::Limit)
        } else {
            None
        };
        self.state
            .store(after.map_or(0, |r| r as u8), Ordering::Relaxed);
        match (before, after) {
            (b, Some(a)) if b != Some(a) => Transition::Closed(a),
            (Some(_), None) => Transition::Opened,
            _ => Transition::None,
        }
    }
}

/// Bytes of the files in the buffer's directory and below it (sled's
/// `blobs/`, the segments and theirs), the reserve (`reserve.rs`) not
/// counted.
pub fn dir_bytes(dir: &Path) -> u64 {
    // buffer/segments/<first>/blobs/<file> is the deepest sled goes.
    const DEPTH: u8 = 4;
    fn sum(dir: &Path, depth: u8) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                if meta.is_dir() && depth < DEPTH {
                    Some(sum(&e.path(), depth + 1))
                } else if depth == 0 && super::reserve::is_reserve(&e.file_name()) {
                    None
                } else {
                    meta.is_file().then_some(meta.len())
                }
            })
            .sum()
    }
    sum(dir, 0)
}

/// Bytes an unprivileged writer may still use on `dir`'s filesystem.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    filesystem_bytes(dir).map(|(free, _)| free)
}

/// `dir`'s filesystem: bytes an unprivileged writer may still use, and
/// its size.
pub fn filesystem_bytes(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a writable statvfs.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    if rc != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ by target
    Some((
        stat.f_bavail as u64 * stat.f_frsize as u64,
        stat.f_blocks as u64 * stat.f_frsize as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn closes_when_the_file_at_the_bound_is_live_data_and_opens_after_a_drain() {
        let a = Admission::new(100 * MIB, 10 * MIB);
        a.held_bytes.store(40 * MIB, Ordering::Relaxed);
        assert_eq!(a.decide(90 * MIB, 500 * MIB), Transition::None);
        assert_eq!(a.refusal(), None);
        assert_eq!(
            a.decide(101 * MIB, 500 * MIB),
            Transition::Closed(Refusal::Limit)
        );
        assert_eq!(a.refusal(), Some(Refusal::Limit));
        // A little drained: still closed (hysteresis).
        a.held_bytes.store(32 * MIB, Ordering::Relaxed);
        assert_eq!(a.decide(101 * MIB, 500 * MIB), Transition::None);
        assert_eq!(a.refusal(), Some(Refusal::Limit));
        // Drained: open, though the file is as large as ever.
        a.held_bytes.store(10 * MIB, Ordering::Relaxed);
        assert_eq!(a.decide(101 * MIB, 500 * MIB), Transition::Opened);
        assert_eq!(a.refusal(), None);
        // A file grown by churn, mostly garbage, is not full either…
        assert_eq!(a.decide(140 * MIB, 500 * MIB), Transition::None);
        // …until live data fills a third of it again.
        a.held_bytes.store(47 * MIB, Ordering::Relaxed);
        assert_eq!(
            a.decide(140 * MIB, 500 * MIB),
            Transition::Closed(Refusal::Limit)
        );
    }

    #[test]
    fn free_space_floor_and_held_bytes_refuse_at_once() {
        let a = Admission::new(100 * MIB, 10 * MIB);
        assert_eq!(a.decide(0, 9 * MIB), Transition::Closed(Refusal::FreeSpace));
        assert_eq!(a.refusal(), Some(Refusal::FreeSpace));
        // Taking events again needs a quarter more room than the floor.
        assert_eq!(a.decide(0, 11 * MIB), Transition::None);
        assert_eq!(a.decide(0, 13 * MIB), Transition::Opened);
        // A drained file that filled the disk: its space is reused.
        a.held_bytes.store(45 * MIB, Ordering::Relaxed);
        assert_eq!(
            a.decide(90 * MIB, MIB),
            Transition::Closed(Refusal::FreeSpace)
        );
        a.held_bytes.store(MIB, Ordering::Relaxed);
        assert_eq!(a.decide(90 * MIB, MIB), Transition::Opened);
        a.held_bytes.store(100 * MIB, Ordering::Relaxed);
        assert_eq!(a.refusal(), Some(Refusal::Limit), "no sample needed");
        a.held_bytes.store(0, Ordering::Relaxed);
        assert_eq!(a.refusal(), None);
    }

    #[test]
    fn measures_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        std::fs::write(dir.path().join("blobs/1"), vec![0u8; 24]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 1024);
        assert!(free_bytes(dir.path()).unwrap() > 0);
    }
}
