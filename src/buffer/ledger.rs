//! The ledger: the positions and counts every path of the buffer shares —
//! sequences handed out and made durable, entries per area, refusals and
//! losses, the failure being handled — kept apart from the database, so
//! that the watcher thread and the metrics can hold them without keeping
//! sled open.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::admission::{Admission, Refusal};
use super::commit::Commit;
use super::queue::WriteQueue;
use super::segments::SegmentGauges;
use super::store::{Area, Census};

/// The storage failure being handled.
pub(super) struct Failure {
    pub(super) reason: String,
    pub(super) since: Instant,
    pub(super) attempts: u64,
    pub(super) last_attempt_error: Option<String>,
}

/// What wakes the thread before its next turn.
#[derive(Default)]
pub(super) struct Watch {
    pub(super) closed: bool,
    pub(super) poked: bool,
}

/// The ledger of one buffer, shared by its handles, its watcher thread and
/// its metrics collector.
pub(super) struct Shared {
    pub(super) admission: Admission,
    pub(super) check_interval: Duration,
    /// Next sequence to hand out; only grows within a process (reopens
    /// included), so a reader's cursor never misses a new record.
    pub(super) next_seq: AtomicU64,
    /// Highest sequence known to be on disk.
    pub(super) durable_seq: AtomicU64,
    pub(super) generation: AtomicU64,
    /// Segment counts (`segments.rs`), kept across reopens.
    pub(super) segments: Arc<SegmentGauges>,
    /// The committer thread's signals (`commit.rs`).
    pub(super) commit: Arc<Commit>,
    /// Entries per tree, kept as they change: sled's own `len` walks the
    /// whole tree, too slow for every /metrics scrape of a large backlog.
    pub(super) events_len: AtomicU64,
    pub(super) dead_letter_len: AtomicU64,
    pub(super) quarantine_len: AtomicU64,
    pub(super) refused: AtomicU64,
    /// CPU time (ns, of the calling threads) spent in reads and in
    /// removals: what forwarding costs the buffer (`reader.rs`).
    pub(super) read_cpu_ns: AtomicU64,
    pub(super) remove_cpu_ns: AtomicU64,
    pub(super) lost: AtomicU64,
    pub(super) restored: AtomicU64,
    pub(super) reopens: AtomicU64,
    pub(super) unreadable_ranges: AtomicU64,
    /// Gap records kept.
    pub(super) gaps_len: AtomicU64,
    /// On while a bridge runs on this buffer: the watcher writes
    /// `last_alive` every [`super::ALIVE_EVERY`].
    pub(super) alive_marks: AtomicBool,
    /// Flush times, read by /metrics.
    pub(super) flush_seconds: crate::telemetry::AtomicHistogram,
    pub(super) failing: AtomicBool,
    /// Off only in tests that reopen by hand.
    pub(super) auto_reopen: AtomicBool,
    pub(super) failure: Mutex<Option<Failure>>,
    /// Notified (with `failure`) when a reopen ends a failure.
    pub(super) reopened: Condvar,
    pub(super) last_loss: Mutex<Option<Instant>>,
    pub(super) watch: Mutex<Watch>,
    pub(super) wake: Condvar,
    /// One admission sample at a time (the watcher's and the writer's), so
    /// that a change is logged once.
    pub(super) sampling: Mutex<()>,
    /// Received frames waiting for the writer thread.
    pub(super) queue: Arc<WriteQueue>,
}

impl Shared {
    /// The ledger of a database just opened, from its census.
    pub(super) fn new(
        admission: Admission,
        check_interval: Duration,
        census: &Census,
        gaps_len: u64,
        write_queue_bytes: u64,
        segments: Arc<SegmentGauges>,
    ) -> Shared {
        admission
            .held_bytes
            .store(census.held_bytes, Ordering::SeqCst);
        Shared {
            admission,
            check_interval,
            // Sequences key the dead-letter and quarantine trees too: a new
            // record must not take the key of one still kept there.
            next_seq: AtomicU64::new(census.last_seq + 1),
            durable_seq: AtomicU64::new(census.last_seq),
            generation: AtomicU64::new(0),
            segments,
            commit: Arc::default(),
            events_len: AtomicU64::new(census.entries[Area::Events as usize]),
            dead_letter_len: AtomicU64::new(census.entries[Area::DeadLetter as usize]),
            quarantine_len: AtomicU64::new(census.entries[Area::Quarantine as usize]),
            refused: AtomicU64::new(0),
            read_cpu_ns: AtomicU64::new(0),
            remove_cpu_ns: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            restored: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
            unreadable_ranges: AtomicU64::new(census.unreadable.len() as u64),
            gaps_len: AtomicU64::new(gaps_len),
            alive_marks: AtomicBool::new(false),
            flush_seconds: crate::telemetry::AtomicHistogram::new(&crate::telemetry::FLUSH_BUCKETS),
            failing: AtomicBool::new(false),
            auto_reopen: AtomicBool::new(true),
            failure: Mutex::default(),
            reopened: Condvar::new(),
            last_loss: Mutex::default(),
            watch: Mutex::default(),
            queue: Arc::new(WriteQueue::new(write_queue_bytes)),
            wake: Condvar::new(),
            sampling: Mutex::default(),
        }
    }

    /// Highest sequence handed out so far.
    pub(super) fn last_seq(&self) -> u64 {
        self.next_seq.load(Ordering::SeqCst) - 1
    }

    /// Why new events are refused right now, if they are.
    pub(super) fn refusal(&self) -> Option<Refusal> {
        if self.failing.load(Ordering::SeqCst) {
            return Some(Refusal::Failing);
        }
        self.admission.refusal()
    }

    /// Waits until the buffer is not failing, at most `timeout`.
    pub(super) fn wait_reopened(&self, timeout: Duration) {
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .reopened
            .wait_timeout_while(failure, timeout, |_| self.failing.load(Ordering::SeqCst));
    }

    /// The entry count of `area`.
    pub(super) fn counter(&self, area: Area) -> &AtomicU64 {
        match area {
            Area::Events => &self.events_len,
            Area::DeadLetter => &self.dead_letter_len,
            Area::Quarantine => &self.quarantine_len,
        }
    }
}
