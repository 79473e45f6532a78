//! `last_alive`: the mark a running bridge leaves in the buffer every
//! [`ALIVE_EVERY`] and at shutdown, so that after a crash the next run
//! knows when the bridge stopped running — the start of a gap no socket
//! saw, which each connection of the first plan claims once.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::BufferError;
use super::handle::Buffer;
use super::store::Store;
use super::sync::lock;

/// `meta` key of the mark: u64 BE, ms since the epoch.
const META_ALIVE_KEY: &[u8] = b"last_alive";

/// How often a running bridge writes `last_alive`: an 8-byte insert, made
/// durable by sled's own periodic flush (every 500 ms) or the next grouped
/// flush; a crash is dated at most this much too early (a gap that starts
/// early costs a backfill a few seconds more, never a minute less).
pub const ALIVE_EVERY: Duration = Duration::from_secs(2);

/// The mark the previous run left, read at open.
pub(super) fn previous(store: &Store) -> sled::Result<Option<u64>> {
    Ok(store
        .meta
        .get(META_ALIVE_KEY)?
        .and_then(|raw| Some(u64::from_be_bytes(raw.as_ref().try_into().ok()?))))
}

impl Buffer {
    /// Writes `last_alive` = now (an 8-byte insert; durable with the next
    /// flush).
    pub fn mark_alive(&self) -> Result<(), BufferError> {
        let store = self.store()?;
        store
            .meta
            .insert(META_ALIVE_KEY, &crate::now_ms().to_be_bytes())
            .map_err(|e| {
                self.fail("a write", &e);
                BufferError::Write(e)
            })?;
        Ok(())
    }

    /// A bridge runs on this buffer: mark `last_alive` now and every
    /// [`ALIVE_EVERY`] from the watcher thread (never an actor's).
    pub fn keep_alive_marks(&self) -> Result<(), BufferError> {
        self.mark_alive()?;
        self.inner.shared.alive_marks.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Shutdown: a last `last_alive` mark now, and no more.
    pub fn stop_alive_marks(&self) -> Result<(), BufferError> {
        self.inner.shared.alive_marks.store(false, Ordering::SeqCst);
        self.mark_alive()
    }

    /// When the previous run was last known alive, if it ever marked it.
    pub fn previous_alive_ms(&self) -> Option<u64> {
        self.inner.previous_alive
    }

    /// The start of the time the bridge was not running, for connection
    /// `index` of the first plan: `previous_alive`, once per index.
    pub fn claim_downtime(&self, index: usize) -> Option<SystemTime> {
        let since = self.inner.previous_alive?;
        lock(&self.inner.downtime_claimed)
            .insert(index)
            .then(|| UNIX_EPOCH + Duration::from_millis(since))
    }
}
