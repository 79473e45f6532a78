//! The buffer's own thread: it samples admission every `check_interval`,
//! puts the reserve back when there is room (`reserve.rs`), writes the
//! alive mark every [`ALIVE_EVERY`] while a bridge runs, and while the
//! buffer is failing retries the reopen with backoff and jitter.
//! It holds the ledger and only a weak handle on the database, and ends
//! when the last [`Buffer`] is dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::admission::Transition;
use super::alive::ALIVE_EVERY;
use super::handle::{Buffer, Inner};
use super::ledger::Shared;
use super::recovery;
use super::sync::lock;

/// Reopen attempts: first after ~100 ms, then doubling to 10 s.
const REOPEN_MIN_DELAY: Duration = Duration::from_millis(100);
const REOPEN_MAX_DELAY: Duration = Duration::from_secs(10);

impl Shared {
    /// Wakes the watcher now (a failure to handle).
    pub(super) fn poke(&self) {
        lock(&self.watch).poked = true;
        self.wake.notify_all();
    }

    /// Samples admission (the watcher every turn, the writer thread after
    /// each megabyte written) and logs a change, once.
    pub(super) fn sample(&self, dir: &Path) {
        let _one = lock(&self.sampling);
        match self.admission.sample(dir) {
            Transition::Closed(reason) => tracing::warn!(
                reason = ?reason,
                disk_bytes = self.admission.disk_bytes.load(Ordering::Relaxed),
                held_bytes = self.admission.held_bytes.load(Ordering::Relaxed),
                free_bytes = self.admission.free_bytes.load(Ordering::Relaxed),
                reserve_owed = self.admission.reserve_owed.load(Ordering::Relaxed),
                "buffer at its bound: refusing new events, keeping what it holds"
            ),
            Transition::Opened => tracing::info!(
                refused = self.refused.load(Ordering::SeqCst),
                "buffer below its bound again: taking new events"
            ),
            Transition::None => {}
        }
    }

    /// Sleeps up to `timeout` or until poked; false once the buffer is gone.
    fn sleep(&self, timeout: Duration) -> bool {
        let watch = lock(&self.watch);
        let (mut watch, _) = self
            .wake
            .wait_timeout_while(watch, timeout, |w| !w.closed && !w.poked)
            .unwrap_or_else(|e| e.into_inner());
        watch.poked = false;
        !watch.closed
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer thread ends once it wrote what is queued, the
        // committer after the flush it owes.
        self.shared.queue.close();
        self.shared.commit.close();
        let mut watch = lock(&self.shared.watch);
        watch.closed = true;
        self.shared.wake.notify_all();
    }
}

/// Starts the watcher thread for the buffer `buffer` at `dir`.
pub(super) fn spawn(shared: Arc<Shared>, buffer: Weak<Inner>, dir: PathBuf) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("gkb-buffer-watch".into())
        .spawn(move || watch(shared, buffer, dir))
        .map(drop)
}

/// The watcher thread's loop.
fn watch(shared: Arc<Shared>, buffer: Weak<Inner>, dir: PathBuf) {
    let mut backoff = crate::backoff::Backoff::new(REOPEN_MIN_DELAY, REOPEN_MAX_DELAY)
        .expect("constant bounds are valid");
    let mut next_attempt: Option<Instant> = None;
    let mut last_mark: Option<Instant> = None;
    loop {
        let wait = match next_attempt {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => shared.check_interval.min(ALIVE_EVERY),
        };
        if !shared.sleep(wait) {
            return;
        }
        if shared.alive_marks.load(Ordering::SeqCst)
            && !shared.failing.load(Ordering::SeqCst)
            && last_mark.map_or(true, |at| at.elapsed() >= ALIVE_EVERY)
        {
            let Some(inner) = buffer.upgrade() else {
                return;
            };
            // A failed mark is retried next turn; a failing buffer is
            // reopened by the code below.
            if (Buffer { inner }).mark_alive().is_ok() {
                last_mark = Some(Instant::now());
            }
        }
        shared.sample(&dir);
        if !shared.failing.load(Ordering::SeqCst) {
            recovery::keep_reserve(&dir, &shared.admission);
        }
        if !shared.failing.load(Ordering::SeqCst) || !shared.auto_reopen.load(Ordering::SeqCst) {
            next_attempt = None;
            backoff.reset();
            continue;
        }
        match next_attempt {
            Some(at) if Instant::now() >= at => {}
            Some(_) => continue,
            None => {
                next_attempt = Some(Instant::now() + backoff.next_delay());
                continue;
            }
        }
        let Some(inner) = buffer.upgrade() else {
            return;
        };
        let handle = Buffer { inner };
        match handle.reopen() {
            Ok(()) => {
                backoff.reset();
                next_attempt = None;
            }
            Err(e) => {
                tracing::debug!(error = %e, "buffer reopen attempt failed");
                if let Some(f) = lock(&shared.failure).as_mut() {
                    f.attempts += 1;
                    f.last_attempt_error = Some(e);
                }
                next_attempt = Some(Instant::now() + backoff.next_delay());
            }
        }
    }
}
