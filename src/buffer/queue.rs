//! The write queue: received frames waiting for the writer thread
//! (`intake.rs`), bounded in bytes. The thread that reads the sockets only
//! ever pushes here (a lock held for a `VecDeque::push_back`), so a slow
//! or stalled disk is absorbed up to the bound instead of stalling socket
//! reading; beyond it frames are refused and counted, as at a full disk.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::sync::lock;

/// What the writer thread is asked to write.
pub(super) enum Job {
    /// A notification, appended to the events in this order.
    Event {
        received_at_ms: u64,
        topic_name: String,
        correlation_id: Option<String>,
        payload: Vec<u8>,
        kind: super::record::Kind,
    },
    /// A frame that is not a notification, kept in the quarantine.
    Quarantine { reason: String, frame: Vec<u8> },
}

impl Job {
    /// Bytes the job holds while it waits (its buffers and a little for
    /// the job itself).
    pub(super) fn bytes(&self) -> u64 {
        const OVERHEAD: usize = 64;
        let held = match self {
            Job::Event {
                topic_name,
                correlation_id,
                payload,
                ..
            } => topic_name.len() + correlation_id.as_ref().map_or(0, String::len) + payload.len(),
            Job::Quarantine { reason, frame } => reason.len() + frame.len(),
        };
        (held + OVERHEAD) as u64
    }
}

/// The queue was at its bound: the job was refused.
#[derive(Debug)]
pub(super) struct Full {
    pub(super) queued_bytes: u64,
}

#[derive(Default)]
struct State {
    /// Each job with its size and when it was queued.
    jobs: VecDeque<(Job, u64, Instant)>,
    /// Jobs taken by the writer and not yet written.
    in_hand: usize,
    /// When the oldest job in the writer's hands was queued.
    in_hand_since: Option<Instant>,
    /// Jobs ever queued, and ever written: the writer takes and finishes
    /// them in order, so a waiter for the first `n` waits for `written`
    /// to reach `n`, however busy the queue stays meanwhile.
    queued_total: u64,
    written_total: u64,
    closed: bool,
}

pub(super) struct WriteQueue {
    pub(super) bound: u64,
    state: Mutex<State>,
    /// Signalled when a job arrives or the queue closes.
    arrived: Condvar,
    /// Signalled when the writer finished a batch.
    written: Condvar,
    /// Bytes waiting or in the writer's hands (read by /metrics).
    pub(super) bytes: AtomicU64,
    /// The most bytes that ever waited.
    pub(super) peak: AtomicU64,
    /// Jobs refused because the queue was at its bound.
    pub(super) refused: AtomicU64,
    pub(super) last_refusal: Mutex<Option<Instant>>,
}

impl WriteQueue {
    pub(super) fn new(bound: u64) -> WriteQueue {
        WriteQueue {
            bound,
            state: Mutex::default(),
            arrived: Condvar::new(),
            written: Condvar::new(),
            bytes: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_refusal: Mutex::default(),
        }
    }

    /// Queues `job`, unless that would take the queue past its bound.
    pub(super) fn push(&self, job: Job) -> Result<(), Full> {
        let size = job.bytes();
        let mut state = lock(&self.state);
        let queued = self.bytes.load(Ordering::SeqCst);
        if queued + size > self.bound {
            drop(state);
            self.refused.fetch_add(1, Ordering::SeqCst);
            *lock(&self.last_refusal) = Some(Instant::now());
            return Err(Full {
                queued_bytes: queued,
            });
        }
        state.jobs.push_back((job, size, Instant::now()));
        state.queued_total += 1;
        let now = self.bytes.fetch_add(size, Ordering::SeqCst) + size;
        self.peak.fetch_max(now, Ordering::SeqCst);
        drop(state);
        self.arrived.notify_one();
        Ok(())
    }

    /// Takes up to `max` jobs in order, waiting for the first; `None` once
    /// the queue is closed and empty. The jobs count as queued until
    /// [`WriteQueue::done`].
    pub(super) fn take(&self, max: usize) -> Option<Vec<(Job, u64)>> {
        let mut state = lock(&self.state);
        while state.jobs.is_empty() && !state.closed {
            state = self.arrived.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.jobs.is_empty() {
            return None;
        }
        let n = state.jobs.len().min(max);
        if state.in_hand == 0 {
            state.in_hand_since = state.jobs.front().map(|(_, _, at)| *at);
        }
        state.in_hand += n;
        Some(
            state
                .jobs
                .drain(..n)
                .map(|(job, size, _)| (job, size))
                .collect(),
        )
    }

    /// The writer is done with `jobs` jobs of `bytes` bytes in all.
    pub(super) fn done(&self, jobs: usize, bytes: u64) {
        let mut state = lock(&self.state);
        state.in_hand -= jobs;
        state.written_total += jobs as u64;
        if state.in_hand == 0 {
            state.in_hand_since = None;
        }
        self.bytes.fetch_sub(bytes, Ordering::SeqCst);
        drop(state);
        self.written.notify_all();
    }

    /// Waits until every job queued before the call has been written (and
    /// the batch it was in flushed), at most `timeout`. True if it was.
    /// Jobs queued after the call do not delay it: a queue that never
    /// empties (steady traffic) does not starve the waiter.
    pub(super) fn wait_written(&self, timeout: Duration) -> bool {
        let ticket = self.ticket();
        self.wait_ticket(ticket, timeout)
    }

    /// How many jobs were ever queued: what [`WriteQueue::wait_ticket`]
    /// waits for.
    pub(super) fn ticket(&self) -> u64 {
        lock(&self.state).queued_total
    }

    /// Waits until the first `target` jobs ever queued are written, at
    /// most `timeout`. True if they were.
    pub(super) fn wait_ticket(&self, target: u64, timeout: Duration) -> bool {
        let state = lock(&self.state);
        let (state, _) = self
            .written
            .wait_timeout_while(state, timeout, |s| !s.closed && s.written_total < target)
            .unwrap_or_else(|e| e.into_inner());
        state.written_total >= target
    }

    /// No more jobs: the writer ends once it wrote what is queued.
    pub(super) fn close(&self) {
        lock(&self.state).closed = true;
        self.arrived.notify_all();
        self.written.notify_all();
    }

    /// How long the oldest job not yet written has waited (zero when
    /// none waits): a slow or stalled disk shows here first.
    pub(super) fn oldest_wait(&self) -> Duration {
        let state = lock(&self.state);
        state
            .in_hand_since
            .or_else(|| state.jobs.front().map(|(_, _, at)| *at))
            .map_or(Duration::ZERO, |at| at.elapsed())
    }

    /// Jobs waiting or in the writer's hands.
    pub(super) fn len(&self) -> usize {
        let state = lock(&self.state);
        state.jobs.len() + state.in_hand
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(bytes: usize) -> Job {
        Job::Event {
            received_at_ms: 1,
            topic_name: String::new(),
            correlation_id: None,
            payload: vec![b'x'; bytes],
            kind: Default::default(),
        }
    }

    #[test]
    fn the_bound_refuses_exactly_what_does_not_fit_and_counts_it() {
        let q = WriteQueue::new(1_000);
        let mut accepted = 0;
        for _ in 0..10 {
            if q.push(event(136)).is_ok() {
                accepted += 1;
            }
        }
        // 200 bytes each with the overhead: five fit.
        assert_eq!(accepted, 5);
        assert_eq!(q.refused.load(Ordering::SeqCst), 5);
        assert_eq!(q.bytes.load(Ordering::SeqCst), 1_000);
        let batch = q.take(3).unwrap();
        assert_eq!(batch.len(), 3);
        // Taken is not written: still counted against the bound.
        assert!(q.push(event(136)).is_err());
        q.done(3, batch.iter().map(|(_, b)| b).sum());
        assert!(q.push(event(136)).is_ok());
        assert_eq!(q.peak.load(Ordering::SeqCst), 1_000);
        assert_eq!(q.len(), 3);
        assert!(q.oldest_wait() > Duration::ZERO);
        let rest = q.take(16).unwrap();
        q.done(rest.len(), rest.iter().map(|(_, b)| b).sum());
        assert_eq!(q.oldest_wait(), Duration::ZERO);
    }

    #[test]
    fn later_jobs_do_not_delay_a_waiter() {
        let q = WriteQueue::new(1 << 20);
        q.push(event(10)).unwrap();
        let ticket = q.ticket();
        let batch = q.take(16).unwrap();
        // Steady traffic: the queue is never empty again.
        q.push(event(10)).unwrap();
        assert!(!q.wait_ticket(ticket, Duration::from_millis(10)));
        q.done(batch.len(), batch.iter().map(|(_, b)| b).sum());
        assert!(q.wait_ticket(ticket, Duration::ZERO));
        assert!(
            !q.wait_ticket(q.ticket(), Duration::ZERO),
            "the later one is not written"
        );
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn waiting_for_the_writer_ends_when_it_wrote_or_at_the_timeout() {
        let q = std::sync::Arc::new(WriteQueue::new(1 << 20));
        q.push(event(10)).unwrap();
        assert!(!q.wait_written(Duration::from_millis(20)));
        let writer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let batch = q.take(16).unwrap();
                q.done(batch.len(), batch.iter().map(|(_, b)| b).sum());
            })
        };
        assert!(q.wait_written(Duration::from_secs(30)));
        writer.join().unwrap();
        q.close();
        assert!(q.take(1).is_none());
    }
}
