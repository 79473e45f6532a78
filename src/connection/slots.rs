//! How many sockets the bridge may have connected at once.
//!
//! The service allows 20 channels per OAuth client; creating one more
//! removes the least recently used, unconnected ones first. Channels we
//! left (emptied, unconnected) are therefore taken first and cost nothing;
//! but if every channel were connected, the service would take a live one
//! from another connection: a gap. Make-before-break needs one channel more
//! than a connection holds while it moves, and connections made together
//! fall due together (same token, same creation time). So every socket,
//! and every attempt that may create a channel, holds a slot of one pool
//! shared by all connections; an attempt without a free slot fails and is
//! retried with backoff, while the live socket keeps delivering.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct ChannelSlots {
    limit: usize,
    used: AtomicUsize,
}

/// One slot, given back when dropped (the socket ended, the attempt
/// failed).
#[derive(Debug)]
pub struct Slot(Arc<ChannelSlots>);

impl ChannelSlots {
    pub fn new(limit: usize) -> Arc<ChannelSlots> {
        Arc::new(ChannelSlots {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// A slot, if one is free.
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.limit).then_some(used + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_and_given_back() {
        let slots = ChannelSlots::new(2);
        let a = slots.try_take().unwrap();
        let b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        drop(a);
        assert_eq!(slots.in_use(), 1);
        let c = slots.try_take().unwrap();
        drop((b, c));
        assert_eq!(slots.in_use(), 0);
    }
}
