//! The open channel's subscription: the topic list it was last subscribed
//! with and the update in flight. Kept in step by [`super::subscribe`].

use std::sync::Arc;
use std::time::Instant;

/// The open channel's subscription.
#[derive(Default)]
pub(super) struct Subscription {
    /// The topic list the open channel was last subscribed with (None: no
    /// open channel); differs from the actor's `topics` while an update is
    /// pending.
    pub(super) subscribed: Option<Arc<Vec<String>>>,
    /// A subscription update is in flight: later ones wait for it.
    pub(super) updating: bool,
    /// The next update replaces the whole list (`PUT`), whatever changed.
    pub(super) resubscribe: bool,
    pub(super) last_resubscribe: Option<Instant>,
}

impl Subscription {
    /// The actor restarted: no channel is open, no update in flight.
    pub(super) fn restart(&mut self) {
        self.subscribed = None;
        self.updating = false;
    }
}
