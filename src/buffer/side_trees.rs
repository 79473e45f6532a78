//! The areas beside the events: dead letters (records Kafka refused for
//! good, kept with the reason) and the quarantine (frames that were not
//! notifications, entries that could not be read), each kept for an
//! operator rather than dropped, with the moves into them and their
//! listings.

use std::sync::atomic::Ordering;

use sled::IVec;

use super::error::BufferError;
use super::handle::Buffer;
use super::record::Record;
use super::store::{is_local, seq_of, Area, ReadError, Store};
use super::sync::lock;

/// Something kept aside rather than lost: a frame that was not a
/// notification, or a buffer entry that could not be read.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Quarantined {
    pub seq: u64,
    /// `malformed frame`, `undecodable buffer entry` or `unreadable buffer
    /// range`.
    pub kind: String,
    pub reason: String,
    pub at_ms: u64,
    /// The bytes exactly as they were (what could be read of them).
    pub bytes_base64: String,
}

/// A record refused by Kafka for good, kept with the reason.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DeadLetter {
    pub seq: u64,
    pub received_at_ms: u64,
    pub topic_name: String,
    pub correlation_id: Option<String>,
    pub kafka_topic: String,
    pub reason: String,
    pub dead_at_ms: u64,
    /// The notification text (lossy only if it was not UTF-8, which a
    /// WebSocket text frame cannot be).
    pub payload: String,
    /// `snapshot` or `backfill` for a record the bridge made; absent for
    /// a notification (and in dead letters of builds before kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl Buffer {
    /// Keeps a received frame that is not a notification (not JSON, binary,
    /// no topic…) for an operator, instead of dropping it.
    pub fn quarantine_frame(&self, reason: &str, frame: &[u8]) -> Result<u64, BufferError> {
        let store = self.store()?;
        let mut unflushed = self.lock_unflushed();
        let seq = self.inner.shared.next_seq.fetch_add(1, Ordering::SeqCst);
        let value = quarantine_json(seq, "malformed frame", reason, frame);
        self.put_counted(&store, Area::Quarantine, seq, value.clone())?;
        unflushed.add(seq, Area::Quarantine, &value);
        Ok(seq)
    }

    /// Every quarantined entry, oldest first.
    pub fn quarantined(&self) -> Result<Vec<Quarantined>, BufferError> {
        self.all_json(Area::Quarantine)
    }

    /// Moves an entry that cannot be read to the quarantine, with what
    /// could be read of it.
    pub(super) fn quarantine_entry(
        &self,
        store: &Store,
        seq: u64,
        reason: &str,
        bytes: &[u8],
    ) -> Result<(), BufferError> {
        tracing::error!(seq, error = %reason, "undecodable buffer entry moved to quarantine");
        let value = quarantine_json(seq, "undecodable buffer entry", reason, bytes);
        self.put_counted(store, Area::Quarantine, seq, value)?;
        match store.remove(Area::Events, seq) {
            Ok(freed) => {
                self.count_removed(Area::Events, freed);
                lock(&self.inner.tail).remove([seq]);
                Ok(())
            }
            // In a node sled cannot read: skip it from now on instead.
            Err(e) if is_local(&e) => {
                lock(&self.inner.unreadable).push((seq, seq));
                Ok(())
            }
            Err(e) => {
                self.fail("a removal", &e);
                Err(BufferError::Write(e))
            }
        }
    }

    /// Moves a record Kafka refused for good to the dead-letter tree.
    pub fn dead_letter(
        &self,
        record: &Record,
        kafka_topic: &str,
        reason: &str,
    ) -> Result<(), BufferError> {
        let store = self.store()?;
        let letter = DeadLetter {
            seq: record.seq,
            received_at_ms: record.received_at_ms,
            topic_name: record.topic_name.clone(),
            correlation_id: record.correlation_id.clone(),
            kafka_topic: kafka_topic.to_owned(),
            reason: reason.to_owned(),
            dead_at_ms: crate::now_ms(),
            payload: String::from_utf8_lossy(&record.payload).into_owned(),
            kind: (record.kind != super::record::Kind::Notification)
                .then(|| record.kind.as_str().to_owned()),
        };
        let json = serde_json::to_vec(&letter).expect("a dead letter serialises");
        // Insert first: a crash between the two leaves the record in both
        // trees (sent again later), never in neither.
        let json: IVec = json.into();
        let mut unflushed = self.lock_unflushed();
        self.put_counted(&store, Area::DeadLetter, record.seq, json.clone())?;
        unflushed.add(record.seq, Area::DeadLetter, &json);
        match store.remove(Area::Events, record.seq) {
            Ok(freed) => {
                self.count_removed(Area::Events, freed);
                unflushed.removed(record.seq);
                lock(&self.inner.tail).remove([record.seq]);
                Ok(())
            }
            Err(e) => {
                self.fail("a removal", &e);
                Err(BufferError::Write(e))
            }
        }
    }

    /// Removes the dead letters with these sequences (a replay delivered
    /// them), chunks included; returns how many were there.
    pub fn remove_dead_letters(&self, seqs: &[u64]) -> Result<usize, BufferError> {
        let store = self.store()?;
        let (_, present) = self.remove_counted(&store, Area::DeadLetter, seqs)?;
        Ok(present as usize)
    }

    /// Every dead letter, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, BufferError> {
        self.all_json(Area::DeadLetter)
    }

    /// Visits every dead letter, oldest first, one at a time (they can be
    /// large: a listing never holds them all); `visit` returns `false` to
    /// stop.
    pub fn each_dead_letter(
        &self,
        visit: impl FnMut(DeadLetter) -> bool,
    ) -> Result<(), BufferError> {
        self.each_json(Area::DeadLetter, visit)
    }

    /// [`Buffer::each_dead_letter`] for the quarantine.
    pub fn each_quarantined(
        &self,
        visit: impl FnMut(Quarantined) -> bool,
    ) -> Result<(), BufferError> {
        self.each_json(Area::Quarantine, visit)
    }

    fn all_json<T: serde::de::DeserializeOwned>(&self, area: Area) -> Result<Vec<T>, BufferError> {
        let mut out = Vec::new();
        self.each_json(area, |entry| {
            out.push(entry);
            true
        })?;
        Ok(out)
    }

    fn each_json<T: serde::de::DeserializeOwned>(
        &self,
        area: Area,
        mut visit: impl FnMut(T) -> bool,
    ) -> Result<(), BufferError> {
        let store = self.store()?;
        for entry in store.main(area).values.iter() {
            let (key, raw) = entry.map_err(BufferError::Read)?;
            let value = match store.resolve(area, seq_of(&key), raw) {
                Ok(v) => v,
                Err(ReadError::Sled(e)) => return Err(BufferError::Read(e)),
                Err(ReadError::Incomplete { reason, .. }) => {
                    tracing::warn!(seq = seq_of(&key), error = %reason, "skipping an incomplete entry");
                    continue;
                }
            };
            // Written by this module, but a damaged disk can change them:
            // `buffer check` reports such entries; listings skip them.
            match serde_json::from_slice(&value) {
                Ok(entry) => {
                    if !visit(entry) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(seq = seq_of(&key), error = %e, "skipping an entry that does not decode")
                }
            }
        }
        Ok(())
    }
}

/// The stored form of a quarantine entry.
pub(super) fn quarantine_json(seq: u64, kind: &str, reason: &str, bytes: &[u8]) -> IVec {
    use base64::Engine;
    let entry = Quarantined {
        seq,
        kind: kind.to_owned(),
        reason: reason.to_owned(),
        at_ms: crate::now_ms(),
        bytes_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
    };
    serde_json::to_vec(&entry)
        .expect("a quarantine entry serialises")
        .into()
}
