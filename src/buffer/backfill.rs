//! Each gap's backfill progress, kept beside the gaps so that it survives
//! restarts and `kill -9`: tree `backfill`, key = the gap's key
//! (`[start_ms u64 BE][connection u32 BE]`, as in `gaps`) → the progress as
//! its owner (`crate::backfill`) encodes it (JSON). The buffer stores it
//! and makes it durable; it does not read it.

use super::error::BufferError;
use super::handle::Buffer;

/// A stored progress: the gap's key and the progress's bytes.
pub type StoredProgress = (Vec<u8>, Vec<u8>);

impl Buffer {
    /// The stored progress of the gap with `key`, if any.
    pub fn backfill_progress(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BufferError> {
        let store = self.store()?;
        Ok(store
            .backfill
            .get(key)
            .map_err(BufferError::Read)?
            .map(|v| v.to_vec()))
    }

    /// Stores the progress of the gap with `key` and flushes: once this
    /// returns, a crash keeps it. Blocking (sled and fsync): not for a
    /// thread that reads sockets.
    pub fn set_backfill_progress(&self, key: &[u8], value: &[u8]) -> Result<(), BufferError> {
        let store = self.store()?;
        store
            .backfill
            .insert(key, value)
            .map_err(BufferError::Write)?;
        self.flush_blocking()
    }

    /// Every stored progress, by gap key.
    pub fn backfill_progresses(&self) -> Result<Vec<StoredProgress>, BufferError> {
        let store = self.store()?;
        store
            .backfill
            .iter()
            .map(|kv| {
                kv.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(BufferError::Read)
            })
            .collect()
    }
}
