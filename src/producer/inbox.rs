//! The forwarding thread's inbox: the messages it waits for, and the
//! [`Waker`] that coalesces wake-ups (new records in the buffer, delivery
//! reports) into one queued message until the thread looked.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

/// Messages to the forwarding thread.
pub enum Event {
    /// Delivery reports are waiting (coalesced like wakes).
    Reports,
    /// New records in the buffer (from its append watch, coalesced: one
    /// until the thread re-armed it).
    Wake,
    /// The metadata probe's view of each routed topic: its partition
    /// count, or why it cannot be used.
    Metadata(BTreeMap<String, Result<i32, String>>),
    /// Stop reading; report once nothing is in flight or at the deadline.
    Drain {
        deadline: Instant,
        done: tokio::sync::oneshot::Sender<bool>,
    },
    Stop,
}

/// Wakes the forwarding thread at most once per batch of delivery
/// reports: one `Event::Reports` in its queue until it looked. (Appends
/// wake it through the buffer's own watch, coalesced the same way.)
#[derive(Clone)]
pub struct Waker {
    pending: Arc<AtomicBool>,
    events: Sender<Event>,
}

impl Waker {
    pub fn for_reports(events: Sender<Event>) -> Self {
        Waker {
            pending: Arc::default(),
            events,
        }
    }

    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = self.events.send(Event::Reports);
        }
    }

    /// The thread looked: the next wake sends a message again.
    pub fn woken(&self) {
        self.pending.store(false, Ordering::Release);
    }
}
