//! The buffer's handle: what one open buffer holds (the database, its
//! ledger, the journal, the tail, the readers to wake) and the questions
//! every path asks of it (counts, positions, refusals, problems). Opening
//! is `open.rs`; each path's work is in its own file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::admission::Refusal;
use super::error::BufferError;
use super::handoff::{AppendWatch, Readers};
use super::journal::Unflushed;
use super::ledger::Shared;
use super::store::Store;
use super::sync::lock;
use super::tail::Tail;

/// How long received events may wait for the writer thread before the
/// disk is named as slow (a flush takes milliseconds).
const SLOW_DISK_AFTER: Duration = Duration::from_secs(2);

/// How long a loss stays on /readyz (the counter stays forever).
const LOSS_REPORT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// A handle to the buffer; clones share it.
#[derive(Clone)]
pub struct Buffer {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) path: PathBuf,
    pub(super) cache_bytes: u64,
    /// When the newest segment rolls over (`buffer.segment_bytes`).
    pub(super) segment_bytes: u64,
    /// The open database; `None` only while a reopen swaps it. Writers and
    /// readers take it from here ([`Buffer::store`]), nowhere else.
    pub(super) store: RwLock<Option<Arc<Store>>>,
    pub(super) shared: Arc<Shared>,
    /// Also serialises appends, so that every sequence at or below the
    /// last one handed out was written to sled before a flush starts.
    pub(super) unflushed: Mutex<Unflushed>,
    /// Sequence ranges sled could not read, skipped by `read_after`.
    pub(super) unreadable: Mutex<Vec<(u64, u64)>>,
    /// One reopen at a time (the watcher's, or a test's).
    pub(super) reopening: Mutex<()>,
    /// The newest appends, served to readers from memory.
    pub(super) tail: Mutex<Tail>,
    /// Readers to wake after an append.
    pub(super) readers: Arc<Readers>,
    /// `last_alive` as the previous run left it (ms since the epoch).
    pub(super) previous_alive: Option<u64>,
    /// Connections that took the downtime gap since `previous_alive`.
    pub(super) downtime_claimed: Mutex<std::collections::BTreeSet<usize>>,
    pub(super) flush: Grouping,
}

/// The state of grouped flushes: while one runs, further requests make
/// at most one more.
#[derive(Default)]
pub(super) struct Grouping {
    pub(super) running: AtomicBool,
    pub(super) wanted: AtomicBool,
}

impl Buffer {
    /// Records waiting for Kafka.
    pub fn len(&self) -> usize {
        self.inner.shared.events_len.load(Ordering::SeqCst) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dead_letter_len(&self) -> usize {
        self.inner.shared.dead_letter_len.load(Ordering::SeqCst) as usize
    }

    pub fn quarantine_len(&self) -> usize {
        self.inner.shared.quarantine_len.load(Ordering::SeqCst) as usize
    }

    /// Highest sequence handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.inner.shared.last_seq()
    }

    /// Highest sequence known to be on disk.
    pub fn durable_seq(&self) -> u64 {
        self.inner.shared.durable_seq.load(Ordering::SeqCst)
    }

    /// Increases on every reopen after a storage failure. The reopened
    /// buffer holds what the failed one held (appends, removals and
    /// dead-letter moves since the last good flush are replayed onto what
    /// the disk kept), except events counted in `lost`: a reader's cursor
    /// stays valid, and records it has in flight are still in the buffer,
    /// so reading again from the start would send them twice.
    pub fn generation(&self) -> u64 {
        self.inner.shared.generation.load(Ordering::SeqCst)
    }

    /// Events refused so far (bound reached, or failing).
    pub fn refused(&self) -> u64 {
        self.inner.shared.refused.load(Ordering::SeqCst)
    }

    /// Events accepted and then lost by a storage failure, so far.
    pub fn lost(&self) -> u64 {
        self.inner.shared.lost.load(Ordering::SeqCst)
    }

    /// Why new events are refused right now, if they are.
    pub fn refusal(&self) -> Option<Refusal> {
        self.inner.shared.refusal()
    }

    pub(super) fn refusal_text(&self, refusal: Refusal) -> String {
        let a = &self.inner.shared.admission;
        match refusal {
            Refusal::Limit => format!(
                "the buffer is full: {} bytes on disk, {} held, max_bytes {}",
                a.disk_bytes.load(Ordering::Relaxed),
                a.held_bytes.load(Ordering::Relaxed),
                a.max_bytes
            ),
            Refusal::FreeSpace if a.reserve_owed.load(Ordering::Relaxed) => format!(
                "its filesystem has {} bytes free (space inside the buffer's files that sled reuses counted too), below min_free_bytes {} plus the buffer's {}-byte reserve, which is not in place (released to reopen a full buffer, or no room for it yet)",
                a.free_bytes.load(Ordering::Relaxed),
                a.min_free_bytes,
                super::reserve::RESERVE_BYTES
            ),
            Refusal::FreeSpace => format!(
                "its filesystem has {} bytes free, below min_free_bytes {}",
                a.free_bytes.load(Ordering::Relaxed),
                a.min_free_bytes
            ),
            Refusal::Failing => self
                .flush_error()
                .unwrap_or_else(|| "a storage operation failed".into()),
        }
    }

    /// Why the buffer is failing, while it is.
    pub fn flush_error(&self) -> Option<String> {
        lock(&self.inner.shared.failure)
            .as_ref()
            .map(|f| f.reason.clone())
    }

    /// Why the buffer is not fit to take or keep events, for /readyz; empty
    /// when it is.
    pub fn problems(&self) -> Vec<String> {
        let shared = &self.inner.shared;
        let mut problems = Vec::new();
        let refused = shared.refused.load(Ordering::SeqCst);
        if let Some(f) = lock(&shared.failure).as_ref() {
            let mut text = format!(
                "{} {}s ago; refusing new events ({refused} refused so far) and reopening",
                f.reason,
                f.since.elapsed().as_secs()
            );
            if let Some(e) = &f.last_attempt_error {
                text.push_str(&format!(" (attempt {} failed: {e})", f.attempts));
            }
            problems.push(text);
        } else if let Some(r) = shared.admission.refusal() {
            problems.push(format!(
                "refusing new events ({refused} refused so far), keeping what it holds: {}",
                self.refusal_text(r)
            ));
        }
        let queue = &shared.queue;
        let waiting = queue.bytes.load(Ordering::SeqCst);
        let full_refused = queue.refused.load(Ordering::SeqCst);
        let oldest = queue.oldest_wait();
        if waiting * 2 > queue.bound || oldest >= SLOW_DISK_AFTER {
            problems.push(format!(
                "the disk is not keeping up: received events have waited {:.1} s to be written, {waiting} bytes of them (bound buffer.write_queue_bytes {}); beyond it new events are refused",
                oldest.as_secs_f64(),
                queue.bound
            ));
        }
        if lock(&queue.last_refusal).is_some_and(|at| at.elapsed() < LOSS_REPORT_WINDOW) {
            problems.push(format!(
                "{full_refused} received events refused because the disk did not keep up (the write queue was at buffer.write_queue_bytes)"
            ));
        }
        let lost = shared.lost.load(Ordering::SeqCst);
        if lock(&shared.last_loss).is_some_and(|at| at.elapsed() < LOSS_REPORT_WINDOW) {
            problems.push(format!(
                "{lost} received events lost by a storage failure (accepted after the last good flush, missing after the reopen)"
            ));
        }
        problems
    }

    /// Whether a storage failure is being handled (reopen pending).
    pub(super) fn is_failing(&self) -> bool {
        self.inner.shared.failing.load(Ordering::SeqCst)
    }

    /// The open database, or why there is none to use: the one way the
    /// writer and reader paths reach the store.
    pub(super) fn store(&self) -> Result<Arc<Store>, BufferError> {
        if self.is_failing() {
            return Err(BufferError::Failing(self.flush_error().unwrap_or_default()));
        }
        self.inner
            .store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| BufferError::Failing("reopening".into()))
    }

    /// Registers a reader to be woken after appends: `wake` is called on
    /// the appending thread after the first append that follows the
    /// registration or the last [`AppendWatch::rearm`], once, when the
    /// record can already be read. It must return quickly, must not block
    /// (sending one message on a channel is the intended use), must not
    /// register or drop a watch (it runs under the readers' lock) and must
    /// not hold a [`Buffer`] (the buffer would never close). Register
    /// before the first read, so that no append falls between the two.
    pub fn wake_on_append(&self, wake: impl Fn() + Send + Sync + 'static) -> AppendWatch {
        self.inner.readers.register(wake)
    }
}
