//! Waking readers after appends: the buffer owns the hand-off from the
//! threads that append to the threads that read (as the ledger of Vector's
//! disk buffer notifies its reader). A reader registers a wake function
//! and holds the [`AppendWatch`]; each append calls the function of every
//! armed watch once and disarms it, so a burst of appends costs a reader
//! one wake. The buffer knows nothing of who reads or how it is woken.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};

/// The readers to wake.
#[derive(Default)]
pub(super) struct Readers {
    watches: RwLock<Vec<Arc<Watch>>>,
}

struct Watch {
    /// Whether the next append calls `wake` (the reader looked since the
    /// last call).
    armed: AtomicBool,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl Readers {
    /// Registers a reader (see [`super::handle::Buffer::wake_on_append`]).
    pub(super) fn register(
        self: &Arc<Self>,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> AppendWatch {
        let watch = Arc::new(Watch {
            armed: AtomicBool::new(true),
            wake: Box::new(wake),
        });
        self.watches
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(watch.clone());
        AppendWatch {
            watch,
            readers: Arc::downgrade(self),
        }
    }

    /// An append was made: wakes each armed reader once.
    pub(super) fn notify(&self) {
        let watches = self.watches.read().unwrap_or_else(|e| e.into_inner());
        for watch in watches.iter() {
            if watch.armed.swap(false, Ordering::SeqCst) {
                (watch.wake)();
            }
        }
    }
}

/// A reader's registration with [`Buffer::wake_on_append`]. Dropping it
/// unregisters the reader.
pub struct AppendWatch {
    watch: Arc<Watch>,
    readers: Weak<Readers>,
}

impl AppendWatch {
    /// The reader is about to read: the next append wakes it again. Call
    /// it *before* reading the buffer (an append during the read then
    /// wakes the reader once more), never after.
    pub fn rearm(&self) {
        self.watch.armed.store(true, Ordering::SeqCst);
    }
}

impl Drop for AppendWatch {
    fn drop(&mut self) {
        if let Some(readers) = self.readers.upgrade() {
            readers
                .watches
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|w| !Arc::ptr_eq(w, &self.watch));
        }
    }
}

impl std::fmt::Debug for AppendWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendWatch")
            .field("armed", &self.watch.armed.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{channel, Receiver, TryRecvError};
    use std::time::Duration;

    use crate::buffer::Buffer;

    /// What the wake function sent so far. It runs inside `append`, on
    /// the appending thread: when an append has returned, its wake is in
    /// the channel already, so nothing needs waiting for.
    fn woken(rx: &Receiver<&'static str>) -> Result<&'static str, TryRecvError> {
        rx.try_recv()
    }

    #[test]
    fn a_burst_of_appends_wakes_a_reader_once_until_it_rearms() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = Buffer::open_for_tests(dir.path()).unwrap();
        let (tx, rx) = channel();
        let watch = buffer.wake_on_append(move || tx.send("wake").unwrap());
        assert_eq!(
            woken(&rx),
            Err(TryRecvError::Empty),
            "registering wakes no one"
        );
        for _ in 0..100 {
            buffer.append(1, "v2.a", None, b"{}").unwrap();
        }
        assert_eq!(woken(&rx), Ok("wake"), "the first append wakes the reader");
        assert_eq!(woken(&rx), Err(TryRecvError::Empty), "the other 99 do not");
        // Woken: the reader re-arms, then reads what is there.
        watch.rearm();
        assert_eq!(buffer.read_after(0, 1000).unwrap().0.len(), 100);
        assert_eq!(
            woken(&rx),
            Err(TryRecvError::Empty),
            "re-arming wakes no one"
        );
        let seq = buffer.append(1, "v2.a", None, b"{}").unwrap();
        assert_eq!(woken(&rx), Ok("wake"), "an append after re-arming wakes it");
        assert_eq!(buffer.read_after(seq - 1, 10).unwrap().0[0].seq, seq);
        // A quarantined frame and a refused event are no appends.
        watch.rearm();
        buffer.quarantine_frame("not JSON", b"x").unwrap();
        buffer.fail("a test", &"injected");
        assert!(buffer.append(1, "v2.a", None, b"{}").is_err());
        assert_eq!(woken(&rx), Err(TryRecvError::Empty));
    }

    #[test]
    fn every_reader_is_woken_and_a_dropped_watch_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = Buffer::open_for_tests(dir.path()).unwrap();
        let (tx, rx) = channel();
        let tx2 = tx.clone();
        let first = buffer.wake_on_append(move || tx.send("first").unwrap());
        let second = buffer.wake_on_append(move || tx2.send("second").unwrap());
        buffer.append(1, "v2.a", None, b"{}").unwrap();
        let mut got = vec![woken(&rx).unwrap(), woken(&rx).unwrap()];
        got.sort();
        assert_eq!(got, ["first", "second"]);
        drop(first);
        second.rearm();
        buffer.append(1, "v2.a", None, b"{}").unwrap();
        assert_eq!(woken(&rx), Ok("second"));
        // Unregistered: the buffer no longer holds the wake function (and
        // its sender), so the channel closes once the last watch is gone.
        drop(second);
        buffer.append(1, "v2.a", None, b"{}").unwrap();
        assert_eq!(woken(&rx), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn a_submitted_event_wakes_readers_and_is_durable_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = Buffer::open_for_tests(dir.path()).unwrap();
        let (tx, rx) = channel();
        let _watch = buffer.wake_on_append(move || tx.send("wake").unwrap());
        buffer.submit(1, "v2.a", Some("c"), b"{}").unwrap();
        assert!(
            buffer.wait_written(Duration::from_secs(30)),
            "never written"
        );
        assert_eq!(woken(&rx), Ok("wake"));
        // The writer flushed the batch before it counted it written.
        assert_eq!(buffer.last_seq(), 1);
        assert_eq!(buffer.durable_seq(), 1);
        let (read, _) = buffer.read_after(0, 10).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].topic_name, "v2.a");
    }
}
