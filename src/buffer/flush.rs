//! Flushes: what makes appends durable, and how requests are grouped so
//! that a burst of events costs a few fsyncs rather than one each (see the
//! module docs of `buffer`, "What a flush makes durable"). A flush that
//! fails marks the buffer failing (`recovery.rs`).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::error::BufferError;
use super::handle::Buffer;

impl Buffer {
    /// Writes everything appended so far to disk. Blocking.
    pub fn flush_blocking(&self) -> Result<(), BufferError> {
        let store = self.store()?;
        // Appends hold this lock from taking a sequence to writing it, so
        // every sequence up to `upto` is in sled before the flush starts.
        let (upto, covered) = {
            let mut unflushed = self.lock_unflushed();
            (self.last_seq(), unflushed.start_flush())
        };
        let started = Instant::now();
        match store.sync() {
            Ok(()) => {
                let took = started.elapsed().as_secs_f64();
                self.inner.shared.flush_seconds.observe(took);
                self.lock_unflushed().flushed(covered);
                self.inner
                    .shared
                    .durable_seq
                    .fetch_max(upto, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                self.fail("a flush", &e);
                Err(BufferError::Flush(e.to_string()))
            }
        }
    }

    /// Asks for a flush soon, grouped with others (see the module docs).
    /// Must be called from within an actix/tokio runtime.
    pub fn request_flush(&self) {
        let grouping = &self.inner.flush;
        grouping.wanted.store(true, Ordering::SeqCst);
        if grouping.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let buffer = self.clone();
        actix_rt::spawn(async move {
            let grouping = &buffer.inner.flush;
            // Bounded by demand: each turn consumes one request flag, and
            // turns stop as soon as no request came in during a flush.
            while grouping.wanted.swap(false, Ordering::SeqCst) {
                let b = buffer.clone();
                // A failure is logged once, by `fail`, not per flush.
                if let Err(e) = actix_rt::task::spawn_blocking(move || b.flush_blocking()).await {
                    tracing::error!(error = %e, "buffer flush task failed");
                }
            }
            grouping.running.store(false, Ordering::SeqCst);
            // A request that raced the store above would otherwise wait for
            // the next event.
            if grouping.wanted.load(Ordering::SeqCst) {
                buffer.request_flush();
            }
        });
    }

    /// Time of each flush to disk (`gkb_buffer_flush_seconds`).
    pub fn flush_seconds(&self) -> crate::telemetry::AtomicHistogram {
        self.inner.shared.flush_seconds.clone()
    }
}
