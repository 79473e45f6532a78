//! The reserve: a file of [`RESERVE_BYTES`] kept in the buffer's directory
//! so that a buffer whose filesystem filled up can always be reopened and
//! drained.
//!
//! Why: after a failed write (ENOSPC) sled can neither read nor remove
//! until it is reopened, and its open writes (a snapshot, a new segment).
//! When the backlog itself filled the filesystem, the only thing that
//! would free room is the drain, and the drain needs the buffer open:
//! without a reserve the buffer stayed failing for good (seen: a 32 MiB
//! filesystem filled during a Kafka outage, Kafka back, nothing drained in
//! three minutes). So a reopen (or an open at start-up) that finds less
//! than [`super::recovery::REOPEN_MIN_FREE`] free releases the reserve
//! first; once the filesystem has room for it above the floor again, the
//! watcher puts it back.
//!
//! The reserve is not counted in the buffer's disk bytes (`max_bytes`),
//! and it is not free space: the floor (`min_free_bytes`) is kept on top
//! of it.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// The reserve's file name in the buffer's directory.
pub const RESERVE_FILE: &str = "reserve";
/// Its size: room for sled's open and the first removals of a drain
/// (a few segments).
pub const RESERVE_BYTES: u64 = 8 << 20;

/// Whether the reserve is in place, whole.
pub fn present(dir: &Path) -> bool {
    std::fs::metadata(dir.join(RESERVE_FILE)).is_ok_and(|m| m.len() == RESERVE_BYTES)
}

/// Removes the reserve; true if it was there.
pub fn release(dir: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(dir.join(RESERVE_FILE)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes the reserve (zeros, so its blocks are allocated, then synced and
/// renamed into place): only called with room for it above the floor. A
/// reserve cut short is removed, not left half.
pub fn put_back(dir: &Path) -> std::io::Result<()> {
    let partial = dir.join(format!("{RESERVE_FILE}.partial"));
    let written = (|| {
        let mut file = File::create(&partial)?;
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..RESERVE_BYTES / chunk.len() as u64 {
            file.write_all(&chunk)?;
        }
        file.sync_all()?;
        std::fs::rename(&partial, dir.join(RESERVE_FILE))?;
        super::store::sync_dir(dir)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// Whether `name`, a file in the buffer's directory, is the reserve (or
/// one being written): not part of the buffer's data.
pub fn is_reserve(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n == RESERVE_FILE || n == "reserve.partial")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_back_released_and_not_counted_as_the_buffers_data() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), [1u8; 1000]).unwrap();
        assert!(!present(dir.path()));
        put_back(dir.path()).unwrap();
        assert!(present(dir.path()));
        assert!(!dir.path().join("reserve.partial").exists());
        assert_eq!(super::super::admission::dir_bytes(dir.path()), 1000);
        assert!(release(dir.path()).unwrap());
        assert!(!present(dir.path()));
        assert!(!release(dir.path()).unwrap());
    }
}
