//! The socket side's way in: [`Buffer::submit`] queues a received frame
//! (`queue.rs`) and returns at once; the buffer's writer thread appends
//! what is queued, in order (`writer.rs`), and flushes each batch to disk
//! before it takes the next (a group commit). Here too: the committer
//! thread, which flushes for threads that must not wait for a flush
//! (`commit.rs`). So no sled call, and no
//! wait on the disk, ever runs on the thread that reads the sockets: a
//! slow disk fills the queue up to its bound (`buffer.write_queue_bytes`),
//! and beyond it frames are refused and counted, never a stalled socket
//! that the service would close as a slow consumer.
//!
//! What the writer appended is visible to readers (and wakes them) as
//! before; `durable_seq` follows the flushes. [`Buffer::wait_written`]
//! waits for what was submitted (shutdown, tests).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::commit::Commit;
use super::error::BufferError;
use super::handle::{Buffer, Inner};
use super::queue::{Job, WriteQueue};
use super::record::Kind;

/// Most jobs written between two flushes.
const BATCH: usize = 512;
/// The writer samples admission itself after this many bytes, so that a
/// burst does not outrun the watcher's `check_interval` and write the
/// filesystem full under its floor.
const SAMPLE_AFTER_BYTES: u64 = 1 << 20;
/// How long the writer waits for a failing buffer's reopen before it
/// looks again.
const REOPEN_WAIT: Duration = Duration::from_secs(1);

impl Buffer {
    /// Queues a received notification for the writer thread. Returns at
    /// once; refused (and counted) while the buffer refuses new events,
    /// and when the queue is at its bound (the disk is not keeping up).
    pub fn submit(
        &self,
        received_at_ms: u64,
        topic_name: &str,
        correlation_id: Option<&str>,
        payload: &[u8],
    ) -> Result<(), BufferError> {
        self.refuse_early()?;
        self.queue(Job::Event {
            received_at_ms,
            topic_name: topic_name.to_owned(),
            correlation_id: correlation_id.map(str::to_owned),
            payload: payload.to_vec(),
            kind: Kind::Notification,
        })
    }

    /// Queues a record the bridge made (a snapshot, a backfill record)
    /// behind the notifications submitted before it, as [`Buffer::submit`]
    /// does; it is forwarded with the header `gkb-kind`. A refusal is the
    /// maker's to retry: it is not counted with the refused events
    /// (`gkb_buffer_refused_total` counts received events lost).
    pub fn submit_made(
        &self,
        kind: Kind,
        received_at_ms: u64,
        topic_name: &str,
        payload: Vec<u8>,
    ) -> Result<(), BufferError> {
        self.refusal_of_made()?;
        let queue = &self.inner.shared.queue;
        queue
            .push(Job::Event {
                received_at_ms,
                topic_name: topic_name.to_owned(),
                correlation_id: None,
                payload,
                kind,
            })
            .map_err(|full| {
                BufferError::Refused(format!(
                    "the disk is not keeping up: {} bytes wait to be written, at the bound buffer.write_queue_bytes {}",
                    full.queued_bytes, queue.bound
                ))
            })
    }

    fn refusal_of_made(&self) -> Result<(), BufferError> {
        if let Some(refusal) = self.refusal() {
            return Err(BufferError::Refused(self.refusal_text(refusal)));
        }
        if self.is_failing() {
            return Err(BufferError::Failing(self.flush_error().unwrap_or_default()));
        }
        Ok(())
    }

    /// Queues a frame that is not a notification for the quarantine.
    pub fn submit_quarantine(&self, reason: &str, frame: &[u8]) -> Result<(), BufferError> {
        self.queue(Job::Quarantine {
            reason: reason.to_owned(),
            frame: frame.to_vec(),
        })
    }

    /// Waits until everything submitted before the call is written and
    /// flushed, at most `timeout`; true if it was.
    pub fn wait_written(&self, timeout: Duration) -> bool {
        // The writer marks a batch done after its flush.
        self.inner.shared.queue.wait_written(timeout)
    }

    /// Frames waiting for the writer thread.
    pub fn waiting_writes(&self) -> usize {
        self.inner.shared.queue.len()
    }

    /// The checks `append` makes first, made here too so that a frame the
    /// writer would refuse does not take room in the queue: two atomic
    /// loads.
    fn refuse_early(&self) -> Result<(), BufferError> {
        let shared = &self.inner.shared;
        if let Some(refusal) = self.refusal() {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            return Err(BufferError::Refused(self.refusal_text(refusal)));
        }
        if self.is_failing() {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            return Err(BufferError::Failing(self.flush_error().unwrap_or_default()));
        }
        Ok(())
    }

    fn queue(&self, job: Job) -> Result<(), BufferError> {
        let queue = &self.inner.shared.queue;
        queue.push(job).map_err(|full| {
            self.inner.shared.refused.fetch_add(1, Ordering::SeqCst);
            BufferError::Refused(format!(
                "the disk is not keeping up: {} bytes of received events wait to be written, at the bound buffer.write_queue_bytes {}",
                full.queued_bytes, queue.bound
            ))
        })
    }
}

/// Starts the writer thread of the buffer `inner`. It holds the buffer
/// only while it writes a batch, and ends when the queue closes (the last
/// handle dropped) and is empty.
pub(super) fn spawn(queue: Arc<WriteQueue>, inner: Weak<Inner>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("gkb-buffer-writer".into())
        .spawn(move || write(&queue, &inner))
        .map(drop)
}

fn write(queue: &WriteQueue, inner: &Weak<Inner>) {
    let mut since_sample = 0;
    while let Some(batch) = queue.take(BATCH) {
        let jobs = batch.len();
        let bytes = batch.iter().map(|(_, size)| size).sum();
        let Some(inner) = inner.upgrade() else {
            queue.done(jobs, bytes);
            return;
        };
        let buffer = Buffer { inner };
        since_sample += bytes;
        if since_sample >= SAMPLE_AFTER_BYTES {
            since_sample = 0;
            buffer.inner.shared.sample(&buffer.inner.path);
        }
        for (job, _) in batch {
            // Admitted at `submit`: written whatever the bound says now
            // (the socket side counted it received, and overlap dedupe
            // may have dropped its twin). A failed write marks the buffer
            // failing; the job waits for the reopen and is written then.
            // (`submit` refuses while the buffer is failing, so the queue
            // does not grow meanwhile.)
            loop {
                let written = match &job {
                    Job::Event {
                        received_at_ms,
                        topic_name,
                        correlation_id,
                        payload,
                        kind,
                    } => buffer
                        .write_event(
                            *kind,
                            *received_at_ms,
                            topic_name,
                            correlation_id.as_deref(),
                            payload,
                        )
                        .map(drop),
                    Job::Quarantine { reason, frame } => {
                        buffer.quarantine_frame(reason, frame).map(drop)
                    }
                };
                if written.is_ok() || !buffer.is_failing() {
                    break;
                }
                buffer.inner.shared.wait_reopened(REOPEN_WAIT);
            }
        }
        // The group commit: one flush per batch, before the next batch
        // is taken. A failure marks the buffer failing (logged once by
        // `fail`). Flushing on the committer thread instead, while the
        // writer went on, changed no latency (p50 10.6 → 10.7 ms at
        // 2,000/s) and hid a stalled disk: appends kept landing in
        // sled's memory, so the write queue never filled and /readyz
        // said nothing (tests/disk_stall.rs caught it).
        let _ = buffer.flush_blocking();
        queue.done(jobs, bytes);
    }
}

/// Starts the committer thread of the buffer `inner` (see `commit.rs`):
/// it flushes when a thread that must not wait for a flush asks for one
/// (the forwarder's removals while a backlog drains). It holds the buffer
/// only while it flushes, and ends when the commit closes (the last handle
/// dropped).
pub(super) fn spawn_committer(commit: Arc<Commit>, inner: Weak<Inner>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("gkb-buffer-sync".into())
        .spawn(move || {
            // Bounded by requests: each turn consumes one; it ends at close.
            while commit.next() {
                let Some(inner) = inner.upgrade() else {
                    break;
                };
                // A failure marks the buffer failing (logged once there).
                let _ = Buffer { inner }.flush_blocking();
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BufferConfig;

    const MIB: u64 = 1024 * 1024;

    /// A disk that stalls: the test holds the journal's lock, which every
    /// append takes, so the writer thread waits inside its first append as
    /// it would on a stalled write. Submitting goes on: the queue absorbs
    /// the stall up to its bound and refuses, exactly counted, beyond it;
    /// once the disk is back, everything accepted is written in order.
    #[test]
    fn a_stalled_disk_fills_the_queue_and_never_the_submitter() {
        let dir = tempfile::tempdir().unwrap();
        let config = BufferConfig {
            min_free_bytes: 4 * MIB,
            write_queue_bytes: MIB,
            ..BufferConfig::default()
        };
        let buffer = Buffer::open_with_config(dir.path(), &config).unwrap();
        let payload = vec![b'x'; 10_000];
        let stalled = buffer.lock_unflushed();
        let (mut accepted, mut refused) = (Vec::new(), 0);
        for i in 0..300u64 {
            match buffer.submit(i, "v2.a", None, &payload) {
                Ok(()) => accepted.push(i),
                Err(BufferError::Refused(why)) => {
                    assert!(why.contains("write_queue_bytes"), "{why}");
                    refused += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        // About 1 MiB of 10 kB frames fits; what did not is counted.
        assert!((90..=110).contains(&accepted.len()), "{}", accepted.len());
        assert_eq!(accepted.len() + refused, 300);
        assert_eq!(buffer.refused(), refused as u64);
        assert_eq!(
            buffer.inner.shared.queue.refused.load(Ordering::SeqCst),
            refused as u64
        );
        let problems = buffer.problems().join("; ");
        assert!(
            problems.contains("the disk is not keeping up"),
            "{problems}"
        );
        assert!(buffer.inner.shared.queue.peak.load(Ordering::SeqCst) > MIB / 2);

        drop(stalled);
        assert!(
            buffer.wait_written(Duration::from_secs(60)),
            "never written"
        );
        let (records, _) = buffer.read_after(0, 1_000).unwrap();
        let order: Vec<u64> = records.iter().map(|r| r.received_at_ms).collect();
        assert_eq!(order, accepted, "written in the order submitted");
        assert_eq!(buffer.durable_seq(), buffer.last_seq());
        assert_eq!(buffer.waiting_writes(), 0);
        assert_eq!(buffer.inner.shared.queue.bytes.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_refusing_buffer_refuses_before_queueing() {
        let dir = tempfile::tempdir().unwrap();
        let config = BufferConfig {
            min_free_bytes: u64::MAX / 2,
            ..BufferConfig::default()
        };
        let buffer = Buffer::open_with_config(dir.path(), &config).unwrap();
        let err = buffer.submit(1, "v2.a", None, b"{}").unwrap_err();
        assert!(matches!(err, BufferError::Refused(_)), "{err}");
        assert_eq!(buffer.waiting_writes(), 0);
        assert_eq!(buffer.refused(), 1);
    }
}
