//! Opening a buffer: the database (migrated from an older format), its
//! census and ledger, what the previous run left (`last_alive`, unreadable
//! ranges), and the watcher thread.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::admission::{Admission, Transition};
use super::alive;
use super::config::BufferConfig;
use super::error::{open_error, BufferError};
use super::handle::{Buffer, Grouping, Inner};
use super::intake;
use super::ledger::Shared;
use super::migrate;
use super::recovery;
use super::segments::SegmentGauges;
use super::store::Store;
use super::tail;
use super::watch;

impl Buffer {
    /// Opens (creating if needed) the buffer at `path` with the default
    /// configuration. Blocking: call before the actors start or on the
    /// blocking pool.
    pub fn open(path: &Path) -> Result<Buffer, BufferError> {
        Self::open_with_config(path, &BufferConfig::default())
    }

    /// [`Buffer::open`] for unit tests: the free-space floor is the lowest
    /// `check-config` accepts (4 MiB), not the default 256 MiB, because the
    /// suite runs on CI machines with little disk free. The floor itself is
    /// tested on its own (`the_free_space_floor_refuses_new_events`).
    #[cfg(test)]
    pub(crate) fn open_for_tests(path: &Path) -> Result<Buffer, BufferError> {
        Self::open_with_config(
            path,
            &BufferConfig {
                min_free_bytes: 4 * 1024 * 1024,
                ..BufferConfig::default()
            },
        )
    }

    /// [`Buffer::open`] with a page cache of `cache_mib` MiB (sled's own
    /// default is 1 GiB, too much for a sidecar-sized service).
    pub fn open_with_cache(path: &Path, cache_mib: u64) -> Result<Buffer, BufferError> {
        Self::open_with_config(
            path,
            &BufferConfig {
                cache_mib,
                ..BufferConfig::default()
            },
        )
    }

    /// Opens the buffer at `path` (which takes the place of
    /// `config.path`) with `config`'s cache and bounds, migrating an older
    /// format, and starts its watcher thread (admission sampling, reopen
    /// after failures; it ends when the last handle is dropped).
    pub fn open_with_config(path: &Path, config: &BufferConfig) -> Result<Buffer, BufferError> {
        let cache_bytes = config.cache_mib * 1024 * 1024;
        let open_err = |source: sled::Error| open_error(path, source);
        let admission = Admission::new(config.max_bytes, config.min_free_bytes);
        // A bridge restarted on a full disk: the reserve makes room to open.
        recovery::room_to_open(path, &admission);
        let gauges = Arc::new(SegmentGauges::default());
        let store = Store::open(path, cache_bytes, config.segment_bytes, gauges.clone())
            .map_err(open_err)?;
        migrate::migrate(&store, path)?;
        let census = store.census().map_err(open_err)?;
        if census.orphan_chunks > 0 {
            tracing::warn!(
                chunks = census.orphan_chunks,
                "removed chunks of values whose write was cut short by a crash"
            );
        }
        let unreadable = recovery::known_unreadable(&census);
        let previous_alive = alive::previous(&store).map_err(open_err)?;
        let shared = Arc::new(Shared::new(
            admission,
            Duration::from_millis(config.check_interval_ms),
            &census,
            store.gaps.len() as u64,
            config.write_queue_bytes,
            gauges,
        ));
        // A first sample before any event, so a full disk refuses at once,
        // and says so once (the watcher logs only changes after this).
        if let Transition::Closed(reason) = shared.admission.sample(path) {
            let a = &shared.admission;
            tracing::warn!(
                reason = ?reason,
                free_bytes = a.free_bytes.load(Ordering::Relaxed),
                min_free_bytes = a.min_free_bytes,
                disk_bytes = a.disk_bytes.load(Ordering::Relaxed),
                max_bytes = a.max_bytes,
                path = %path.display(),
                "the buffer refuses new events from the start: its filesystem is below buffer.min_free_bytes or the buffer at buffer.max_bytes; received events are lost until space is freed"
            );
        }
        let inner = Arc::new(Inner {
            path: path.to_owned(),
            cache_bytes,
            segment_bytes: config.segment_bytes,
            store: RwLock::new(Some(Arc::new(store))),
            shared: shared.clone(),
            unflushed: Mutex::default(),
            unreadable: Mutex::new(unreadable),
            reopening: Mutex::new(()),
            tail: Mutex::new(tail::Tail::new(shared.next_seq.load(Ordering::SeqCst))),
            readers: Arc::default(),
            previous_alive,
            downtime_claimed: Mutex::default(),
            flush: Grouping::default(),
        });
        intake::spawn(shared.queue.clone(), Arc::downgrade(&inner))
            .map_err(|e| BufferError::Flush(format!("cannot start the buffer writer: {e}")))?;
        intake::spawn_committer(shared.commit.clone(), Arc::downgrade(&inner))
            .map_err(|e| BufferError::Flush(format!("cannot start the buffer committer: {e}")))?;
        watch::spawn(shared, Arc::downgrade(&inner), path.to_owned())
            .map_err(|e| BufferError::Flush(format!("cannot start the buffer watcher: {e}")))?;
        Ok(Buffer { inner })
    }
}
