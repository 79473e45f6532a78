//! Whether the buffer takes new events: a flag read on every append, set
//! by a sampler that measures the disk off the hot path.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

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
pub struct Admission {
    pub max_bytes: u64,
    pub min_free_bytes: u64,
    /// 0 = open, else a [`Refusal`] from the bound (failures are kept
    /// apart, in `Shared::failing`).
    state: AtomicU8,
    /// Bytes of keys and values held, kept exactly as entries come and go.
    pub held_bytes: AtomicU64,
    pub disk_bytes: AtomicU64,
    pub free_bytes: AtomicU64,
    limit: Mutex<LimitState>,
}

/// The file does not shrink after a drain: sled reuses its free space.
/// So "the file is at `max_bytes`" says the buffer is full only if the
/// file had to grow to get there. Admission closes when the file is at or
/// over the bound and grew since admission last opened, and opens again
/// once the backlog is a tenth smaller than when it closed (the space it
/// freed is what new events will reuse).
#[derive(Default)]
struct LimitState {
    /// Disk bytes when admission last opened (or at start).
    disk_at_open: u64,
    /// Held bytes when admission closed for the bound.
    held_at_close: Option<u64>,
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
            limit: Mutex::default(),
        }
    }

    /// The bound's refusal, if any; one atomic load plus one compare.
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
        self.decide(disk, free)
    }

    /// Forgets the file's history: after a reopen, or at start.
    pub fn reset(&self, disk_bytes: u64) {
        let mut limit = self.limit.lock().unwrap_or_else(|e| e.into_inner());
        *limit = LimitState {
            disk_at_open: disk_bytes,
            held_at_close: None,
        };
        self.disk_bytes.store(disk_bytes, Ordering::Relaxed);
    }

    pub fn decide(&self, disk: u64, free: u64) -> Transition {
        self.disk_bytes.store(disk, Ordering::Relaxed);
        self.free_bytes.store(free, Ordering::Relaxed);
        let held = self.held_bytes.load(Ordering::Relaxed);
        let mut limit = self.limit.lock().unwrap_or_else(|e| e.into_inner());
        let before = Refusal::from_u8(self.state.load(Ordering::Relaxed));
        let over_limit = match limit.held_at_close {
            Some(at_close) => held > at_close - at_close / 10 && held > 0,
            None => disk >= self.max_bytes && disk > limit.disk_at_open,
        };
        if over_limit && limit.held_at_close.is_none() {
            limit.held_at_close = Some(held);
        }
        if !over_limit && limit.held_at_close.is_some() {
            limit.held_at_close = None;
            limit.disk_at_open = disk;
        }
        let after = if free < self.min_free_bytes {
            Some(Refusal::FreeSpace)
        } else if over_limit {
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

/// Bytes of the files in the buffer's directory and its `blobs/`.
pub fn dir_bytes(dir: &Path) -> u64 {
    fn sum(dir: &Path, depth: u8) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                if meta.is_dir() && depth == 0 {
                    Some(sum(&e.path(), 1))
                } else {
                    meta.is_file().then(|| meta.len())
                }
            })
            .sum()
    }
    sum(dir, 0)
}

/// Bytes an unprivileged writer may still use on `dir`'s filesystem.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a writable statvfs.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    if rc != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ by target
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn closes_when_the_file_grows_past_the_bound_and_opens_after_a_drain() {
        let a = Admission::new(100 * MIB, 10 * MIB);
        a.reset(0);
        a.held_bytes.store(40 * MIB, Ordering::Relaxed);
        assert_eq!(a.decide(90 * MIB, 500 * MIB), Transition::None);
        assert_eq!(a.refusal(), None);
        a.held_bytes.store(50 * MIB, Ordering::Relaxed);
        assert_eq!(
            a.decide(101 * MIB, 500 * MIB),
            Transition::Closed(Refusal::Limit)
        );
        assert_eq!(a.refusal(), Some(Refusal::Limit));
        // A little drained: still closed (hysteresis).
        a.held_bytes.store(48 * MIB, Ordering::Relaxed);
        assert_eq!(a.decide(101 * MIB, 500 * MIB), Transition::None);
        assert_eq!(a.refusal(), Some(Refusal::Limit));
        // Drained by more than a tenth: open, though the file is as large.
        a.held_bytes.store(10 * MIB, Ordering::Relaxed);
        assert_eq!(a.decide(101 * MIB, 500 * MIB), Transition::Opened);
        assert_eq!(a.refusal(), None);
        // The file at the same size is not a reason to close again…
        a.held_bytes.store(44 * MIB, Ordering::Relaxed);
        assert_eq!(a.decide(101 * MIB, 500 * MIB), Transition::None);
        // …its growth is.
        assert_eq!(
            a.decide(102 * MIB, 500 * MIB),
            Transition::Closed(Refusal::Limit)
        );
    }

    #[test]
    fn free_space_floor_and_held_bytes_refuse_at_once() {
        let a = Admission::new(100 * MIB, 10 * MIB);
        a.reset(0);
        assert_eq!(
            a.decide(MIB, 9 * MIB),
            Transition::Closed(Refusal::FreeSpace)
        );
        assert_eq!(a.refusal(), Some(Refusal::FreeSpace));
        assert_eq!(a.decide(MIB, 11 * MIB), Transition::Opened);
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
