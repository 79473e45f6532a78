//! Surviving a storage failure in-process: the journal of changes no
//! flush has covered yet, marking the buffer failing, and the reopen that
//! replays the journal onto what the disk kept (see the module docs of
//! `buffer`, "Storage failures"). The retries are the watcher's
//! (`watch.rs`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use super::admission;
use super::error::BufferError;
use super::handle::Buffer;
use super::journal::Unflushed;
use super::ledger::Failure;
use super::reserve;
use super::store::{self, is_local, Area, Store};
use super::sync::lock;

/// Free space a reopen waits for: a few sled segments.
pub(super) const REOPEN_MIN_FREE: u64 = 2 << 20;
/// `meta` key of the write that proves a reopened database takes writes.
const META_PROBE_KEY: &[u8] = b"reopen_probe";

impl Buffer {
    pub(super) fn lock_unflushed(&self) -> MutexGuard<'_, Unflushed> {
        lock(&self.inner.unflushed)
    }

    pub(super) fn read_failed(&self, e: sled::Error) -> BufferError {
        if !is_local(&e) {
            self.fail("a read", &e);
        }
        BufferError::Read(e)
    }

    /// Marks the buffer failing: one log line, then the watcher reopens.
    pub(super) fn fail(&self, what: &str, error: &dyn std::fmt::Display) {
        let shared = &self.inner.shared;
        let mut failure = lock(&shared.failure);
        if shared.failing.swap(true, Ordering::SeqCst) {
            return;
        }
        let reason = format!("{what} failed: {error}");
        tracing::error!(error = %reason, "buffer failing: refusing new events until it is reopened (retrying with backoff)");
        *failure = Some(Failure {
            reason,
            since: Instant::now(),
            attempts: 0,
            last_attempt_error: None,
        });
        drop(failure);
        shared.poke();
    }

    /// Closes and reopens the database after a failure: writes back what
    /// the reopened database lacks of the unflushed writes, recounts, and
    /// bumps the generation. Run by the watcher thread.
    pub(super) fn reopen(&self) -> Result<(), String> {
        let inner = &self.inner;
        let shared = &inner.shared;
        let _one = lock(&inner.reopening);
        if !shared.failing.load(Ordering::SeqCst) {
            return Ok(());
        }
        if let Some(free) = room_to_open(&inner.path, &shared.admission) {
            // sled's open writes (a snapshot, a new segment): on a disk
            // with no room at all it fails, or leaves a half-written
            // snapshot (removed at open, see store.rs). Not more than
            // that is waited for: draining, which frees the buffer's own
            // space, needs the buffer open; the reserve is what makes
            // that room when the backlog itself filled the disk.
            if free < REOPEN_MIN_FREE {
                return Err(format!(
                    "{free} bytes free on the buffer's filesystem, waiting for {REOPEN_MIN_FREE}"
                ));
            }
        }
        // sled locks its files: the failed database must be closed first.
        drop(
            inner
                .store
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let store = Store::open(
            &inner.path,
            inner.cache_bytes,
            inner.segment_bytes,
            shared.segments.clone(),
        )
        .map_err(|e| e.to_string())?;
        store
            .meta
            .insert(META_PROBE_KEY, &crate::now_ms().to_be_bytes())
            .map_err(|e| format!("probe write: {e}"))?;
        store.sync().map_err(|e| format!("probe: {e}"))?;
        let mut unflushed = self.lock_unflushed();
        let (mut restored, mut lost, mut removed_again) = (0u64, 0u64, 0u64);
        for (&(seq, _), pending) in &unflushed.writes {
            let present = store
                .contains(pending.area, seq)
                .map_err(|e| format!("checking what survived: {e}"))?;
            if present {
                continue;
            }
            match &pending.value {
                Some(value) => {
                    store
                        .put(pending.area, seq, value.clone())
                        .map_err(|e| format!("writing back: {e}"))?;
                    restored += 1;
                }
                None => lost += 1,
            }
        }
        // Removals after the writes: an event written back and then
        // dead-lettered ends in the dead-letter tree only.
        for &seq in unflushed.removals.keys() {
            if store
                .remove(Area::Events, seq)
                .map_err(|e| format!("removing again: {e}"))?
                .is_some()
            {
                removed_again += 1;
            }
        }
        store.sync().map_err(|e| e.to_string())?;
        let census = store.census().map_err(|e| e.to_string())?;
        // Nothing can fail from here on: commit the new state.
        *unflushed = Unflushed::default();
        shared
            .events_len
            .store(census.entries[Area::Events as usize], Ordering::SeqCst);
        shared
            .dead_letter_len
            .store(census.entries[Area::DeadLetter as usize], Ordering::SeqCst);
        shared
            .quarantine_len
            .store(census.entries[Area::Quarantine as usize], Ordering::SeqCst);
        shared
            .admission
            .held_bytes
            .store(census.held_bytes, Ordering::SeqCst);
        shared.admission.sample(&inner.path);
        shared
            .next_seq
            .fetch_max(census.last_seq + 1, Ordering::SeqCst);
        shared
            .durable_seq
            .fetch_max(self.last_seq(), Ordering::SeqCst);
        *lock(&inner.unreadable) = known_unreadable(&census);
        shared
            .unreadable_ranges
            .fetch_add(census.unreadable.len() as u64, Ordering::SeqCst);
        *inner.store.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(store));
        // The reopened tree is the truth; the tail fills again from here.
        lock(&inner.tail).reset(shared.next_seq.load(Ordering::SeqCst));
        drop(unflushed);
        shared.restored.fetch_add(restored, Ordering::SeqCst);
        if lost > 0 {
            shared.lost.fetch_add(lost, Ordering::SeqCst);
            *lock(&shared.last_loss) = Some(Instant::now());
        }
        shared.reopens.fetch_add(1, Ordering::SeqCst);
        let generation = shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let mut failure_slot = lock(&shared.failure);
        let failure = failure_slot.take();
        shared.failing.store(false, Ordering::SeqCst);
        drop(failure_slot);
        shared.reopened.notify_all();
        tracing::info!(
            generation,
            events = census.entries[Area::Events as usize],
            restored,
            removed_again,
            lost,
            failed_for_ms = failure.map_or(0, |f| f.since.elapsed().as_millis() as u64),
            "buffer reopened; taking new events again"
        );
        Ok(())
    }
}

/// Free bytes on `dir`'s filesystem for sled's open, after releasing the
/// reserve (`reserve.rs`) if there is less than [`REOPEN_MIN_FREE`]; the
/// release is logged once and owed until the watcher puts it back.
pub(super) fn room_to_open(dir: &std::path::Path, admission: &admission::Admission) -> Option<u64> {
    let free = admission::free_bytes(dir)?;
    if free >= REOPEN_MIN_FREE {
        return Some(free);
    }
    match reserve::release(dir) {
        Ok(true) => {
            admission.reserve_owed.store(true, Ordering::SeqCst);
            let now = admission::free_bytes(dir);
            tracing::warn!(
                free_bytes_before = free,
                free_bytes = now,
                reserve_bytes = reserve::RESERVE_BYTES,
                "the buffer's filesystem is full: released the buffer's reserve so that it can open and drain; new events wait until the reserve is back"
            );
            now
        }
        Ok(false) => Some(free),
        Err(e) => {
            tracing::warn!(error = %e, "cannot release the buffer's reserve");
            Some(free)
        }
    }
}

/// Puts the reserve back once the filesystem has room for it (and a
/// reopen's worth more), after a release or at start-up. Run by the
/// watcher thread after each sample.
pub(super) fn keep_reserve(dir: &std::path::Path, admission: &admission::Admission) {
    if !admission.reserve_owed.load(Ordering::SeqCst) && reserve::present(dir) {
        return;
    }
    let free = admission.free_bytes.load(Ordering::Relaxed);
    if free < reserve::RESERVE_BYTES + REOPEN_MIN_FREE {
        admission.reserve_owed.store(true, Ordering::SeqCst);
        return;
    }
    match reserve::put_back(dir) {
        Ok(()) => {
            if admission.reserve_owed.swap(false, Ordering::SeqCst) {
                tracing::info!(
                    reserve_bytes = reserve::RESERVE_BYTES,
                    "the buffer's reserve is back in place"
                );
            }
        }
        Err(e) => {
            admission.reserve_owed.store(true, Ordering::SeqCst);
            tracing::debug!(error = %e, "cannot put the buffer's reserve back yet");
        }
    }
}

/// Event ranges the census could not read: logged, and skipped by reads.
pub(super) fn known_unreadable(census: &store::Census) -> Vec<(u64, u64)> {
    let mut events = Vec::new();
    for (area, from, to, error) in &census.unreadable {
        tracing::error!(?area, from, to, error = %error, "buffer range sled cannot read: skipped (its entries are not counted)");
        if *area == Area::Events {
            events.push((*from, *to));
        }
    }
    events
}
