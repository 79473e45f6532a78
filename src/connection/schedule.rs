//! When the connection's next attempt runs: the scheduled attempt, the
//! backoff that grows with failures and repeated moves, and when the last
//! planned move was. Decided by [`super::moves`].

use std::time::{Duration, Instant};

use actix::prelude::SpawnHandle;

use crate::backoff::Backoff;

/// A socket open this long resets the reconnect backoff, and planned moves
/// further apart than this are not a loop.
pub(super) const STABLE_AFTER: Duration = Duration::from_secs(60);

/// When the next attempt runs.
pub(super) struct Schedule {
    /// Grows with failed attempts, repeated planned moves and failed
    /// subscription updates; reset once a socket stays up
    /// [`STABLE_AFTER`].
    pub(super) backoff: Backoff,
    /// The next attempt, when one is scheduled.
    pub(super) next: Option<SpawnHandle>,
    pub(super) last_planned_move: Option<Instant>,
}

impl Schedule {
    pub(super) fn new(backoff: Backoff) -> Schedule {
        Schedule {
            backoff,
            next: None,
            last_planned_move: None,
        }
    }

    /// The actor restarted: its timers are gone.
    pub(super) fn restart(&mut self) {
        self.next = None;
        self.backoff.reset();
    }
}
