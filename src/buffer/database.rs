//! Opening and syncing one sled database, as the main database and each
//! segment need it: the lock wait, unfinished snapshots, and what a sync
//! of it means (see the module docs of `buffer`, "What a flush makes
//! durable").

use std::fs::File;
use std::path::Path;

const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// sled reports its file lock held elsewhere in words only.
pub fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Opens the sled database at `path`, waiting a little for a lock held by
/// a database of this process that is still closing.
pub fn open_db(path: &Path, cache_bytes: u64) -> sled::Result<sled::Db> {
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
    loop {
        match config.open() {
            Err(e) if is_lock_error(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(backoff.next_delay());
            }
            other => return other,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("flush failed: {0}")]
    Flush(sled::Error),
    #[error("fsync of the data file failed: {0}")]
    Fsync(std::io::Error),
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
