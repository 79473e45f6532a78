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
    /// New records in the buffer (coalesced: see [`Waker`]).
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

/// Wakes the forwarding thread at most once per batch (of appends, or of
/// delivery reports): one message in its queue until it looked.
#[derive(Clone)]
pub struct Waker {
    pending: Arc<AtomicBool>,
    events: Sender<Event>,
    event: fn() -> Event,
}

impl Waker {
    /// Wakes with `Event::Wake` (new records in the buffer).
    pub fn new(events: Sender<Event>) -> Self {
        Waker {
            pending: Arc::default(),
            events,
            event: || Event::Wake,
        }
    }

    /// Wakes with `Event::Reports` (delivery reports to take).
    pub fn for_reports(events: Sender<Event>) -> Self {
        Waker {
            pending: Arc::default(),
            events,
            event: || Event::Reports,
        }
    }

    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = self.events.send((self.event)());
        }
    }

    /// The thread looked: the next wake sends a message again.
    pub fn woken(&self) {
        self.pending.store(false, Ordering::Release);
    }
}
