//! The writer path: appends of received events, in sequence order, each
//! journalled until a flush covers it (`recovery.rs`), pushed to the tail
//! and handed to the readers (`handoff.rs`); and the counted writes and
//! removals every area uses. Received frames reach it through the writer
//! thread (`intake.rs`); tools and tests may append directly.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use sled::IVec;

use super::error::BufferError;
use super::handle::Buffer;
use super::record::{Kind, Record};
use super::store::{Area, Store};
use super::sync::lock;

impl Buffer {
    /// Stores a received notification and returns its sequence. The record
    /// is visible to readers at once (registered readers are woken, see
    /// [`Buffer::wake_on_append`]) and durable after the next flush.
    /// Refused at once (and counted) while the buffer is at its bound or
    /// failing.
    pub fn append(
        &self,
        received_at_ms: u64,
        topic_name: &str,
        correlation_id: Option<&str>,
        payload: &[u8],
    ) -> Result<u64, BufferError> {
        let shared = &self.inner.shared;
        if let Some(refusal) = self.refusal() {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            return Err(BufferError::Refused(self.refusal_text(refusal)));
        }
        self.write_event(
            Kind::Notification,
            received_at_ms,
            topic_name,
            correlation_id,
            payload,
        )
        .inspect_err(|_| {
            shared.refused.fetch_add(1, Ordering::SeqCst);
        })
    }

    /// Writes an event already admitted (by [`Buffer::submit`]; the
    /// writer thread's way in): no admission check, nothing counted as
    /// refused. A failed write marks the buffer failing.
    pub(super) fn write_event(
        &self,
        kind: Kind,
        received_at_ms: u64,
        topic_name: &str,
        correlation_id: Option<&str>,
        payload: &[u8],
    ) -> Result<u64, BufferError> {
        let shared = &self.inner.shared;
        let store = self.store()?;
        let mut unflushed = self.lock_unflushed();
        let seq = shared.next_seq.fetch_add(1, Ordering::SeqCst);
        let record = Record {
            seq,
            received_at_ms,
            topic_name: topic_name.to_owned(),
            correlation_id: correlation_id.map(str::to_owned),
            payload: payload.to_vec(),
            kind,
        };
        let value: IVec = record.encode().into();
        match store.put(Area::Events, seq, value.clone()) {
            Ok(bytes) => {
                unflushed.add(seq, Area::Events, &value);
                // Still under the append lock: the tail gets sequences in order.
                lock(&self.inner.tail).push(record);
                shared.events_len.fetch_add(1, Ordering::SeqCst);
                shared
                    .admission
                    .held_bytes
                    .fetch_add(bytes, Ordering::SeqCst);
                drop(unflushed);
                self.inner.readers.notify();
                Ok(seq)
            }
            Err(e) => {
                drop(unflushed);
                self.fail("a write", &e);
                Err(BufferError::Write(e))
            }
        }
    }

    /// Stores `value` under `seq` in `area`, replacing (and uncounting) a
    /// value already there.
    pub(super) fn put_counted(
        &self,
        store: &Store,
        area: Area,
        seq: u64,
        value: IVec,
    ) -> Result<(), BufferError> {
        let result = store
            .remove(area, seq)
            .and_then(|old| Ok((old, store.put(area, seq, value)?)));
        match result {
            Ok((old, added)) => {
                self.count_removed(area, old);
                self.inner
                    .shared
                    .counter(area)
                    .fetch_add(1, Ordering::SeqCst);
                self.inner
                    .shared
                    .admission
                    .held_bytes
                    .fetch_add(added, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                self.fail("a write", &e);
                Err(BufferError::Write(e))
            }
        }
    }

    /// Removes the entries `seqs` of `area` (each once, however often it
    /// is named: an ack seen twice must not count twice) and uncounts
    /// them. Returns the sequences asked for, deduplicated and sorted, and
    /// how many were there.
    pub(super) fn remove_counted(
        &self,
        store: &Store,
        area: Area,
        seqs: &[u64],
    ) -> Result<(Vec<u64>, u64), BufferError> {
        let unique: Vec<u64> = seqs
            .iter()
            .copied()
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect();
        match store.remove_many(area, &unique) {
            Ok((present, freed)) => {
                let shared = &self.inner.shared;
                shared.counter(area).fetch_sub(present, Ordering::SeqCst);
                shared
                    .admission
                    .held_bytes
                    .fetch_sub(freed, Ordering::SeqCst);
                Ok((unique, present))
            }
            Err(e) => {
                self.fail("a removal", &e);
                Err(BufferError::Write(e))
            }
        }
    }

    /// Uncounts an entry of `area` that was removed (`freed` bytes), if
    /// there was one.
    pub(super) fn count_removed(&self, area: Area, freed: Option<u64>) {
        if let Some(freed) = freed {
            self.inner
                .shared
                .counter(area)
                .fetch_sub(1, Ordering::SeqCst);
            self.inner
                .shared
                .admission
                .held_bytes
                .fetch_sub(freed, Ordering::SeqCst);
        }
    }
}
