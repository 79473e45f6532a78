//! The connection's attempt under way (one at a time) and the channel the
//! next attempt may reuse: the state [`super::establish`] works on.

use super::channel::HeldChannel;

/// The attempt under way, and what the next one starts from.
#[derive(Default)]
pub(super) struct Setup {
    /// Bumped when an attempt starts and on restart: a late result of an
    /// abandoned attempt is recognised and dropped.
    pub(super) attempt: u64,
    /// An attempt is under way.
    pub(super) running: bool,
    /// A channel the next attempt should reuse (created by an attempt that
    /// failed later, or the channel of a socket that failed).
    pub(super) candidate: Option<HeldChannel>,
    /// The id of the last socket opened (ids tell the sockets' frames
    /// apart).
    pub(super) last_socket_id: u64,
}

impl Setup {
    /// The actor restarted: its attempt's future is gone.
    pub(super) fn restart(&mut self) {
        self.candidate = None;
        self.attempt += 1;
        self.running = false;
    }
}
