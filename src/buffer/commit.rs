//! Flushes for threads that must not wait for one: the buffer's
//! committer thread (started in `intake.rs`) flushes on request; requests
//! made while a flush runs make exactly one more; [`Commit::wait_durable`]
//! waits for `durable_seq`.
//!
//! Who asks: the forwarder's removals. The journal of unflushed changes
//! keeps every removal until a flush covers it, and while a backlog drains
//! nothing is appended, so the writer thread's per-batch flush never runs:
//! the journal grew by one entry per event drained (the bridge reached
//! 244 MiB draining 5,000,000). A removal that leaves 4,096 of them asks
//! here (`reader.rs`); the forwarder never waits for the fsync.

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
