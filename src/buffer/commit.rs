//! The group commit, off the writer's path: the buffer's committer thread
//! (`intake.rs`) flushes what the writer thread appended while the writer
//! goes on with the next batch. Requests made while a flush runs make exactly one more;
//! `durable_seq` follows each flush, and [`Commit::wait_durable`] waits
//! for it.
//!
//! Why a thread of its own: a flush ends in an fsync (milliseconds, and
//! tens of them when the disk is busy). Flushing between batches on the
//! writer thread made every event that arrived during an fsync wait for
//! it before it was appended, and so before the forwarder could see it:
//! receive → acknowledged latency carried the disk's sync time (measured
//! by `scripts/bench`: p50 9.9 ms against the broker's own 4.9 ms).
//! Forwarding never waited for durability; it only waited behind it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::sync::lock;

#[derive(Default)]
struct State {
    wanted: bool,
    closed: bool,
}

/// The committer's signals, shared by the writer (requests), the handle
/// (close) and whoever waits for durability.
#[derive(Default)]
pub(super) struct Commit {
    state: Mutex<State>,
    /// A request or the close.
    requested: Condvar,
    /// A flush ended.
    flushed: Condvar,
}

impl Commit {
    /// Asks for a flush of everything appended so far.
    pub(super) fn request(&self) {
        lock(&self.state).wanted = true;
        self.requested.notify_one();
    }

    /// No more requests: the committer ends after the flush it owes.
    pub(super) fn close(&self) {
        lock(&self.state).closed = true;
        self.requested.notify_all();
        self.flushed.notify_all();
    }

    /// Waits until `durable` reaches `seq`, at most until `deadline`; true
    /// if it did.
    pub(super) fn wait_durable(&self, durable: &AtomicU64, seq: u64, deadline: Instant) -> bool {
        let mut state = lock(&self.state);
        loop {
            if durable.load(Ordering::SeqCst) >= seq {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            if state.closed {
                return false;
            }
            // A flush may be needed that nobody asked for yet.
            state.wanted = true;
            self.requested.notify_one();
            state = self
                .flushed
                .wait_timeout(state, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for a request; false once closed with nothing owed. (The
    /// committer thread's loop is in `intake.rs`, beside the writer's.)
    pub(super) fn next(&self) -> bool {
        let mut state = lock(&self.state);
        while !state.wanted && !state.closed {
            state = self
                .requested
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        let owed = state.wanted;
        state.wanted = false;
        owed
    }

    /// A flush ended: wakes whoever waits for durability.
    pub(super) fn done(&self) {
        let _state = lock(&self.state);
        self.flushed.notify_all();
    }
}
