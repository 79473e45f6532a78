//! Flushes for threads that must not wait for one: the buffer's
//! committer thread (started in `intake.rs`) flushes on request; requests
//! made while a flush runs make exactly one more.
//!
//! Who asks: the forwarder's removals. The journal of unflushed changes
//! keeps every removal until a flush covers it, and while a backlog drains
//! nothing is appended, so the writer thread's per-batch flush never runs:
//! the journal grew by one entry per event drained (the bridge reached
//! 244 MiB draining 5,000,000). A removal that leaves 4,096 of them asks
//! here (`reader.rs`); the forwarder never waits for the fsync.

use std::sync::{Condvar, Mutex};

use super::sync::lock;

#[derive(Default)]
struct State {
    wanted: bool,
    closed: bool,
}

/// The committer's signals, shared by the removals (requests) and the
/// handle (close).
#[derive(Default)]
pub(super) struct Commit {
    state: Mutex<State>,
    /// A request or the close.
    requested: Condvar,
}

impl Commit {
    /// Asks for a flush of everything written and removed so far.
    pub(super) fn request(&self) {
        lock(&self.state).wanted = true;
        self.requested.notify_one();
    }

    /// No more requests: the committer ends after the flush it owes.
    pub(super) fn close(&self) {
        lock(&self.state).closed = true;
        self.requested.notify_all();
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
}
