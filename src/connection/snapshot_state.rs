//! The connection's observation snapshot state (worked on by
//! [`super::snapshot`]): the window of the query out, whether a round
//! runs, and the round asked for meanwhile.

use crate::backoff::Backoff;
use crate::snapshots::Window;

/// The connection's snapshot state.
pub(super) struct Snapshots {
    /// The window of the query out, if any.
    pub(super) window: Option<Window>,
    /// A round is under way (or waiting for its retry).
    pub(super) running: bool,
    /// Why another round was asked for while one ran.
    pub(super) again: Option<&'static str>,
    /// Whether a round was ever asked for (the first one is start-up's).
    pub(super) asked_once: bool,
    /// A round asked for while this member did not lead (cluster mode):
    /// taken once it leads, so a gap both members had is repaired by
    /// whichever leads after it.
    pub(super) owed: Option<&'static str>,
    pub(super) backoff: Backoff,
}

impl Snapshots {
    pub(super) fn new(backoff: Backoff) -> Self {
        Snapshots {
            window: None,
            running: false,
            again: None,
            asked_once: false,
            owed: None,
            backoff,
        }
    }

    /// The actor restarted: its futures (the query, a retry) are gone.
    pub(super) fn restart(&mut self) {
        self.window = None;
        self.running = false;
        self.again = None;
        self.asked_once = false;
        self.owed = None;
    }
}
