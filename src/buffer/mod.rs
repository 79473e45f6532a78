//! The write-ahead buffer: every received notification is stored here
//! before anything else happens to it, and removed only once Kafka has
//! acknowledged it.
//!
//! Layout (one sled database, see `migrations/` for each format version):
//! - `meta`: `format_version` → u32 BE, the on-disk format of this database;
//! - `events`: u64 BE sequence → [`Record`] encoding; key order is receive
//!   order, which the producer keeps per Kafka key;
//! - `dead_letter`: u64 BE sequence → JSON of the record and why Kafka
//!   refused it for good (a record too large, a forbidden topic…);
//! - `quarantine`: u64 BE sequence → JSON of frames that were not
//!   notifications and of buffer entries that could not be decoded, kept
//!   for an operator rather than dropped (see [`Quarantined`]).
//!
//! sled writes are cheap and land in its page cache; durability comes from
//! `flush`, which [`Buffer::request_flush`] groups: while one flush runs,
//! further requests make at most one more, so a burst of events costs a few
//! fsyncs rather than one each. Flushes run on the blocking pool, never on
//! an actor thread.

mod config;
mod record;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

pub use config::BufferConfig;
pub use record::{field_fits, DecodeError, Record};

/// On-disk format this build writes. Older formats are migrated at open
/// (see `migrations/`); newer ones are refused, never rewritten.
pub const FORMAT_VERSION: u32 = 1;

const META_FORMAT_KEY: &[u8] = b"format_version";

/// What can go wrong with the buffer.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("cannot open the buffer at {path}: {source} (if the files are corrupt, move the directory aside and start again; nothing in it is deleted)")]
    Open { path: PathBuf, source: sled::Error },
    #[error(
        "the buffer at {path} is in use by another process (is a bridge already running on it?)"
    )]
    Locked { path: PathBuf },
    #[error("the buffer at {path} has format version {found}, newer than this build understands ({FORMAT_VERSION}); run a newer bridge or move the directory aside")]
    NewerFormat { path: PathBuf, found: u32 },
    #[error("the buffer at {path} has an unreadable format version marker")]
    BadFormatMarker { path: PathBuf },
    #[error("buffer write failed: {0} (is the disk full?)")]
    Write(sled::Error),
    #[error("buffer read failed: {0}")]
    Read(sled::Error),
    #[error("buffer flush failed: {0} (is the disk full?)")]
    Flush(String),
}

/// A handle to the buffer; clones share it.
#[derive(Clone)]
pub struct Buffer {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    events: sled::Tree,
    dead_letter: sled::Tree,
    quarantine: sled::Tree,
    /// Next sequence to hand out; only grows within a process, so a reader's
    /// cursor never misses a new record.
    next_seq: AtomicU64,
    /// Highest sequence known to be on disk.
    durable_seq: AtomicU64,
    flush_running: AtomicBool,
    flush_wanted: AtomicBool,
    /// Entries per tree, kept as they change: sled's own `len` walks the
    /// whole tree, too slow for every /metrics scrape of a large backlog.
    events_len: AtomicU64,
    dead_letter_len: AtomicU64,
    quarantine_len: AtomicU64,
    /// The last flush's failure, until a flush succeeds.
    flush_error: std::sync::Mutex<Option<String>>,
}

/// Something kept aside rather than lost: a frame that was not a
/// notification, or a buffer entry that could not be decoded.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Quarantined {
    pub seq: u64,
    /// `malformed frame` or `undecodable buffer entry`.
    pub kind: String,
    pub reason: String,
    pub at_ms: u64,
    /// The bytes exactly as they were.
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
}

impl Buffer {
    /// Opens (creating if needed) the buffer at `path`, migrating an older
    /// format. Blocking: call before the actors start or on the blocking pool.
    pub fn open(path: &Path) -> Result<Buffer, BufferError> {
        Self::open_with_cache(path, BufferConfig::default().cache_mib)
    }

    /// [`Buffer::open`] with a page cache of `cache_mib` MiB (sled's own
    /// default is 1 GiB, too much for a sidecar-sized service).
    pub fn open_with_cache(path: &Path, cache_mib: u64) -> Result<Buffer, BufferError> {
        let open_err = |source: sled::Error| match &source {
            // sled takes an exclusive file lock; its error says so in words only.
            sled::Error::Io(e) if e.to_string().contains("could not acquire lock") => {
                BufferError::Locked {
                    path: path.to_owned(),
                }
            }
            _ => BufferError::Open {
                path: path.to_owned(),
                source,
            },
        };
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_mib * 1024 * 1024)
            .open()
            .map_err(open_err)?;
        let meta = db.open_tree("meta").map_err(open_err)?;
        let events = db.open_tree("events").map_err(open_err)?;
        match meta.get(META_FORMAT_KEY).map_err(open_err)? {
            None => {
                meta.insert(META_FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())
                    .map_err(open_err)?;
                db.flush().map_err(open_err)?;
            }
            Some(raw) => {
                let found = u32::from_be_bytes(raw.as_ref().try_into().map_err(|_| {
                    BufferError::BadFormatMarker {
                        path: path.to_owned(),
                    }
                })?);
                if found > FORMAT_VERSION {
                    return Err(BufferError::NewerFormat {
                        path: path.to_owned(),
                        found,
                    });
                }
                // Version 1 is the first format: there is nothing older to
                // migrate yet. A future format adds its step here and a
                // page in migrations/.
            }
        }
        // Sequences key the dead-letter and quarantine trees too: a new
        // record must not take the key of one still kept there.
        let dead_letter = db.open_tree("dead_letter").map_err(open_err)?;
        let quarantine = db.open_tree("quarantine").map_err(open_err)?;
        let mut last = 0;
        for tree in [&events, &dead_letter, &quarantine] {
            if let Some((key, _)) = tree.last().map_err(open_err)? {
                last = last.max(seq_of(&key));
            }
        }
        // Walks each tree once; kept up to date from here on.
        let (events_len, dead_letter_len, quarantine_len) = (
            events.len() as u64,
            dead_letter.len() as u64,
            quarantine.len() as u64,
        );
        Ok(Buffer {
            inner: Arc::new(Inner {
                dead_letter,
                quarantine,
                db,
                events,
                next_seq: AtomicU64::new(last + 1),
                durable_seq: AtomicU64::new(last),
                flush_running: AtomicBool::new(false),
                flush_wanted: AtomicBool::new(false),
                flush_error: Default::default(),
                events_len: AtomicU64::new(events_len),
                dead_letter_len: AtomicU64::new(dead_letter_len),
                quarantine_len: AtomicU64::new(quarantine_len),
            }),
        })
    }

    /// Stores a received notification and returns its sequence. The record
    /// is visible to readers at once and durable after the next flush.
    pub fn append(
        &self,
        received_at_ms: u64,
        topic_name: &str,
        correlation_id: Option<&str>,
        payload: &[u8],
    ) -> Result<u64, BufferError> {
        let seq = self.inner.next_seq.fetch_add(1, Ordering::SeqCst);
        let record = Record {
            seq,
            received_at_ms,
            topic_name: topic_name.to_owned(),
            correlation_id: correlation_id.map(str::to_owned),
            payload: payload.to_vec(),
        };
        let previous = self
            .inner
            .events
            .insert(seq.to_be_bytes(), record.encode())
            .map_err(BufferError::Write)?;
        count_insert(&self.inner.events_len, &previous);
        Ok(seq)
    }

    /// Up to `limit` records with a sequence above `after`, in order.
    /// Entries that cannot be decoded are moved to the quarantine tree and
    /// skipped; their sequences are returned in the second list.
    pub fn read_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Record>, Vec<u64>), BufferError> {
        let mut records = Vec::with_capacity(limit.min(1024));
        let mut quarantined = Vec::new();
        let start = after.saturating_add(1).to_be_bytes();
        for entry in self.inner.events.range(start..) {
            if records.len() >= limit {
                break;
            }
            let (key, value) = entry.map_err(BufferError::Read)?;
            let seq = seq_of(&key);
            match Record::decode(seq, &value) {
                Ok(record) => records.push(record),
                Err(e) => {
                    tracing::error!(seq, error = %e, "undecodable buffer entry moved to quarantine");
                    self.put_quarantine(seq, "undecodable buffer entry", &e.to_string(), &value)?;
                    let removed = self.inner.events.remove(key).map_err(BufferError::Write)?;
                    count_remove(&self.inner.events_len, &removed);
                    quarantined.push(seq);
                }
            }
        }
        Ok((records, quarantined))
    }

    /// Keeps a received frame that is not a notification (not JSON, binary,
    /// no topic…) for an operator, instead of dropping it.
    pub fn quarantine_frame(&self, reason: &str, frame: &[u8]) -> Result<u64, BufferError> {
        let seq = self.inner.next_seq.fetch_add(1, Ordering::SeqCst);
        self.put_quarantine(seq, "malformed frame", reason, frame)?;
        Ok(seq)
    }

    /// Every quarantined entry, oldest first.
    pub fn quarantined(&self) -> Result<Vec<Quarantined>, BufferError> {
        self.inner
            .quarantine
            .iter()
            .values()
            .map(|v| {
                let v = v.map_err(BufferError::Read)?;
                Ok(serde_json::from_slice(&v)
                    .expect("quarantine entries are written by this module"))
            })
            .collect()
    }

    fn put_quarantine(
        &self,
        seq: u64,
        kind: &str,
        reason: &str,
        bytes: &[u8],
    ) -> Result<(), BufferError> {
        use base64::Engine;
        let entry = Quarantined {
            seq,
            kind: kind.to_owned(),
            reason: reason.to_owned(),
            at_ms: crate::now_ms(),
            bytes_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        };
        let json = serde_json::to_vec(&entry).expect("a quarantine entry serialises");
        let previous = self
            .inner
            .quarantine
            .insert(seq.to_be_bytes(), json)
            .map_err(BufferError::Write)?;
        count_insert(&self.inner.quarantine_len, &previous);
        Ok(())
    }

    /// Removes records Kafka acknowledged.
    pub fn remove(&self, seqs: &[u64]) -> Result<(), BufferError> {
        let mut batch = sled::Batch::default();
        let mut present = 0;
        let unique: std::collections::BTreeSet<&u64> = seqs.iter().collect();
        for seq in unique {
            // An ack seen twice must not count twice.
            if self
                .inner
                .events
                .contains_key(seq.to_be_bytes())
                .map_err(BufferError::Read)?
            {
                present += 1;
                batch.remove(&seq.to_be_bytes());
            }
        }
        self.inner
            .events
            .apply_batch(batch)
            .map_err(BufferError::Write)?;
        self.inner.events_len.fetch_sub(present, Ordering::SeqCst);
        Ok(())
    }

    /// Moves a record Kafka refused for good to the dead-letter tree.
    pub fn dead_letter(
        &self,
        record: &Record,
        kafka_topic: &str,
        reason: &str,
    ) -> Result<(), BufferError> {
        let letter = DeadLetter {
            seq: record.seq,
            received_at_ms: record.received_at_ms,
            topic_name: record.topic_name.clone(),
            correlation_id: record.correlation_id.clone(),
            kafka_topic: kafka_topic.to_owned(),
            reason: reason.to_owned(),
            dead_at_ms: crate::now_ms(),
            payload: String::from_utf8_lossy(&record.payload).into_owned(),
        };
        let json = serde_json::to_vec(&letter).expect("a dead letter serialises");
        // Insert first: a crash between the two leaves the record in both
        // trees (sent again later), never in neither.
        let previous = self
            .inner
            .dead_letter
            .insert(record.seq.to_be_bytes(), json)
            .map_err(BufferError::Write)?;
        count_insert(&self.inner.dead_letter_len, &previous);
        let removed = self
            .inner
            .events
            .remove(record.seq.to_be_bytes())
            .map_err(BufferError::Write)?;
        count_remove(&self.inner.events_len, &removed);
        Ok(())
    }

    /// Every dead letter, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, BufferError> {
        self.inner
            .dead_letter
            .iter()
            .values()
            .map(|v| {
                let v = v.map_err(BufferError::Read)?;
                Ok(serde_json::from_slice(&v).expect("dead letters are written by this module"))
            })
            .collect()
    }

    /// Records waiting for Kafka.
    pub fn len(&self) -> usize {
        self.inner.events_len.load(Ordering::SeqCst) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dead_letter_len(&self) -> usize {
        self.inner.dead_letter_len.load(Ordering::SeqCst) as usize
    }

    pub fn quarantine_len(&self) -> usize {
        self.inner.quarantine_len.load(Ordering::SeqCst) as usize
    }

    /// Highest sequence handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.inner.next_seq.load(Ordering::SeqCst) - 1
    }

    /// Highest sequence known to be on disk.
    pub fn durable_seq(&self) -> u64 {
        self.inner.durable_seq.load(Ordering::SeqCst)
    }

    /// Writes everything appended so far to disk. Blocking.
    pub fn flush_blocking(&self) -> Result<(), BufferError> {
        let upto = self.last_seq();
        let result = self.inner.db.flush();
        let mut error = self
            .inner
            .flush_error
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(_) => {
                *error = None;
                self.inner.durable_seq.fetch_max(upto, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                let e = BufferError::Flush(e.to_string());
                *error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Why the last flush failed, while no flush has succeeded since.
    pub fn flush_error(&self) -> Option<String> {
        self.inner
            .flush_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why the buffer is not fit to take or keep events, for /readyz; empty
    /// when it is.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(e) = self.flush_error() {
            problems.push(format!("{e}; received events are not reaching the disk"));
        }
        problems
    }

    /// Appends the buffer's own gauges and counters to a Prometheus text
    /// exposition (`gkb_buffer_*`).
    pub fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let gauges = [
            (
                "buffer_events",
                "Events in the buffer waiting for Kafka.",
                self.len() as u64,
            ),
            (
                "buffer_dead_letters",
                "Events in the dead-letter area.",
                self.dead_letter_len() as u64,
            ),
            (
                "buffer_last_seq",
                "Sequence of the last event appended.",
                self.last_seq(),
            ),
            (
                "buffer_durable_seq",
                "Sequence up to which the buffer is flushed to disk.",
                self.durable_seq(),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP gkb_{name} {help}\n# TYPE gkb_{name} gauge\ngkb_{name} {value}"
            );
        }
    }

    /// Asks for a flush soon, grouped with others (see the module docs).
    /// Must be called from within an actix/tokio runtime.
    pub fn request_flush(&self) {
        self.inner.flush_wanted.store(true, Ordering::SeqCst);
        if self.inner.flush_running.swap(true, Ordering::SeqCst) {
            return;
        }
        let buffer = self.clone();
        actix_rt::spawn(async move {
            // Bounded by demand: each turn consumes one request flag, and
            // turns stop as soon as no request came in during a flush.
            while buffer.inner.flush_wanted.swap(false, Ordering::SeqCst) {
                let b = buffer.clone();
                let result = actix_rt::task::spawn_blocking(move || b.flush_blocking()).await;
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "buffer flush failed"),
                    Err(e) => tracing::error!(error = %e, "buffer flush task failed"),
                }
            }
            buffer.inner.flush_running.store(false, Ordering::SeqCst);
            // A request that raced the store above would otherwise wait for
            // the next event.
            if buffer.inner.flush_wanted.load(Ordering::SeqCst) {
                buffer.request_flush();
            }
        });
    }
}

fn count_insert(len: &AtomicU64, previous: &Option<sled::IVec>) {
    if previous.is_none() {
        len.fetch_add(1, Ordering::SeqCst);
    }
}

fn count_remove(len: &AtomicU64, removed: &Option<sled::IVec>) {
    if removed.is_some() {
        len.fetch_sub(1, Ordering::SeqCst);
    }
}

fn seq_of(key: &[u8]) -> u64 {
    u64::from_be_bytes(key.try_into().unwrap_or([0; 8]))
}
