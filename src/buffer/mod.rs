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
//!   notifications and of buffer entries that could not be read, kept
//!   for an operator rather than dropped (see [`Quarantined`]);
//! - `chunks`: the pieces of values above 4,000 bytes (format 2);
//! - `gaps`, `gap_topics`: the recorded gaps, times a connection had no
//!   subscribed socket, and their topic lists (`gaps.rs`);
//! - `meta` `last_alive`: u64 BE ms, written every [`ALIVE_EVERY`] while a
//!   bridge runs and at its shutdown: after a crash, the start of the time
//!   the bridge was not running.
//!
//! sled writes are cheap and land in its page cache; durability comes from
//! a flush, which [`Buffer::request_flush`] groups: while one flush runs,
//! further requests make at most one more, so a burst of events costs a few
//! fsyncs rather than one each. Flushes run on the blocking pool, never on
//! an actor thread.
//!
//! The newest appends (4 MiB) are also kept in memory, in the *tail*
//! (`tail.rs`), which mirrors the `events` tree for every sequence it
//! covers: [`Buffer::read_after`] serves a reader that keeps up from it and
//! goes to sled only for older records (a backlog, a restart).
//!
//! # What a flush makes durable
//!
//! sled 0.34's flush writes its log and ends in `sync_file_range`, which
//! pushes data pages but not the file's metadata (its size and, on ext4 and
//! XFS, the allocation of newly written blocks): after a power loss a log
//! that had grown could be cut back. Each flush is therefore followed by an
//! `fsync` of the data file through our own descriptor (fsync works per
//! inode), and the directory is synced after open, when sled creates its
//! files. Only then does [`Buffer::durable_seq`] move.
//!
//! sled moves any log item above a quarter of a segment (128 KiB) into a
//! separate blob file that it writes and never syncs, and a torn blob makes
//! recovery stop reading the log at that point. A log item is not one
//! value: a leaf node (up to ~17 entries, more just after a merge) is
//! written whole, so sequential 15 KB values already produce blobs while
//! 14 KB ones do not (measured). Rather than syncing blobs after the fact
//! (their pointer can be durable before their content), format 2 never
//! lets a value exceed 4,000 bytes: larger records, dead letters and
//! quarantine entries are cut into 4,000-byte chunks in the `chunks` tree
//! (written before their stub, removed after it), so that even a merged
//! leaf of 30 entries stays under the threshold. A test checks that no
//! blob file appears.
//!
//! # Overflow policy: refuse new events, keep what is held
//!
//! The buffer is bounded by `buffer.max_bytes` (its files) and
//! `buffer.min_free_bytes` (its filesystem's free space). At the bound it
//! refuses new events — [`Buffer::append`] fails at once, the refusal is
//! counted exactly (`gkb_buffer_refused_events_total`) and
//! [`Buffer::problems`] says why — and keeps every event it holds. Held
//! events were acknowledged to nobody else and Genesys replays nothing, so
//! each is the only copy; dropping the oldest would throw away events
//! already accepted, in the middle of the stream the consumer is waiting
//! for, to make room for others equally valuable. Refusing at the edge
//! loses the same number of events, at the one place the loss is visible
//! and counted as it happens. The bound is measured by a sampler thread
//! every `check_interval_ms` (no statvfs per event); appends read a flag.
//! Since sled's file does not shrink after a drain, "full" means the file
//! is at the bound *and* at least a third of it is live data (see
//! `admission`, with the measurements behind it).
//!
//! # Storage failures: reopen in-process
//!
//! After an I/O error (ENOSPC, EIO…) sled 0.34 fails every later
//! operation until the database is reopened. When a write, flush or
//! removal fails, the buffer marks itself failing (one ERROR line), refuses
//! new events at once (counted as refused), and a watcher thread reopens
//! the database with backoff and jitter, once the filesystem has room for
//! sled to open (2 MiB; not `min_free_bytes`, which only draining the
//! reopened buffer may give back). It reopens rather than exiting for a
//! supervisor to restart the process: a restart would drop every socket,
//! and events Genesys sends meanwhile are gone for good. A successful
//! reopen bumps [`Buffer::generation`], recounts, and logs one line.
//!
//! Changes made after the last good flush may be missing from the
//! reopened database (measured: 63 of 65 appends that had returned Ok,
//! after ENOSPC). The buffer journals them in memory until a flush covers
//! them — each write with a copy of its value (bounded: 8 MiB of copies;
//! beyond that only the sequence is kept), each removal by sequence — and
//! replays them onto what the reopened database kept: it then holds what
//! the failed one held, and readers' cursors stay valid. An event whose copy was not kept
//! and that is missing is counted in `gkb_buffer_lost_events_total` and
//! named by `problems()` for 15 minutes. Sequences keep growing across a
//! reopen: the next one is above both the last handed out and every key
//! the reopened database holds.
//!
//! # Unreadable entries
//!
//! An entry that does not decode, or whose chunks are missing, moves to
//! the quarantine with the bytes found. A node sled cannot read (a torn or
//! damaged page: the iterator fails at the same place forever) is skipped:
//! the first readable key beyond it is found by galloping and bisecting,
//! the range is recorded in the quarantine and skipped from then on, so
//! `read_after` always makes progress.

mod admission;
mod config;
mod gaps;
mod inspect;
mod record;
mod store;
mod tail;
#[cfg(test)]
mod tests;
mod view;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use sled::IVec;

pub use admission::Refusal;
pub use config::BufferConfig;
pub use gaps::{GapError, GapRecord, MAX_GAPS};
pub use inspect::{SideAreas, Usage, Walked};
pub use record::{field_fits, DecodeError, Record};

use admission::{Admission, Transition};
use store::{is_local, seq_of, Area, ReadError, Store};

/// On-disk format this build writes. Older formats are migrated at open
/// (see `migrations/`); newer ones are refused, never rewritten.
pub const FORMAT_VERSION: u32 = 2;

const META_FORMAT_KEY: &[u8] = b"format_version";
const META_PROBE_KEY: &[u8] = b"reopen_probe";
const META_ALIVE_KEY: &[u8] = b"last_alive";
/// How often a running bridge writes `last_alive`: an 8-byte insert, made
/// durable by sled's own periodic flush (every 500 ms) or the next grouped
/// flush; a crash is dated at most this much too early (a gap that starts
/// early costs a backfill a few seconds more, never a minute less).
pub const ALIVE_EVERY: Duration = Duration::from_secs(2);

/// Copies of unflushed events kept for a reopen, at most.
const RETAIN_MAX_BYTES: usize = 8 << 20;
/// How long a loss stays on /readyz (the counter stays forever).
const LOSS_REPORT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Free space a reopen waits for: a few sled segments.
const REOPEN_MIN_FREE: u64 = 2 << 20;
/// Reopen attempts: first after ~100 ms, then doubling to 10 s.
const REOPEN_MIN_DELAY: Duration = Duration::from_millis(100);
const REOPEN_MAX_DELAY: Duration = Duration::from_secs(10);

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
    #[error("the buffer refuses new events: {0}")]
    Refused(String),
    #[error("the buffer is failing and reopening: {0}")]
    Failing(String),
    #[error(transparent)]
    Gap(#[from] GapError),
}

/// A handle to the buffer; clones share it.
#[derive(Clone)]
pub struct Buffer {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    cache_bytes: u64,
    /// `None` only while a reopen swaps it.
    store: RwLock<Option<Arc<Store>>>,
    shared: Arc<Shared>,
    /// Also serialises appends, so that every sequence at or below the
    /// last one handed out was written to sled before a flush starts.
    unflushed: Mutex<Unflushed>,
    /// Sequence ranges sled could not read, skipped by `read_after`.
    unreadable: Mutex<Vec<(u64, u64)>>,
    /// One reopen at a time (the watcher's, or a test's).
    reopening: Mutex<()>,
    /// The newest appends, served to readers from memory.
    tail: Mutex<tail::Tail>,
    /// `last_alive` as the previous run left it (ms since the epoch).
    previous_alive: Option<u64>,
    /// Connections that took the downtime gap since `previous_alive`.
    downtime_claimed: Mutex<std::collections::BTreeSet<usize>>,
    flush_running: AtomicBool,
    flush_wanted: AtomicBool,
}

/// What the watcher thread needs, without keeping the database open.
struct Shared {
    admission: Admission,
    check_interval: Duration,
    /// Next sequence to hand out; only grows within a process (reopens
    /// included), so a reader's cursor never misses a new record.
    next_seq: AtomicU64,
    /// Highest sequence known to be on disk.
    durable_seq: AtomicU64,
    generation: AtomicU64,
    /// Entries per tree, kept as they change: sled's own `len` walks the
    /// whole tree, too slow for every /metrics scrape of a large backlog.
    events_len: AtomicU64,
    dead_letter_len: AtomicU64,
    quarantine_len: AtomicU64,
    refused: AtomicU64,
    lost: AtomicU64,
    restored: AtomicU64,
    reopens: AtomicU64,
    unreadable_ranges: AtomicU64,
    /// Gap records kept.
    gaps_len: AtomicU64,
    /// On while a bridge runs on this buffer: the watcher writes
    /// `last_alive` every [`ALIVE_EVERY`].
    alive_marks: AtomicBool,
    /// Flush times, read by /metrics.
    flush_seconds: crate::telemetry::AtomicHistogram,
    failing: AtomicBool,
    /// Off only in tests that reopen by hand.
    auto_reopen: AtomicBool,
    failure: Mutex<Option<Failure>>,
    last_loss: Mutex<Option<Instant>>,
    watch: Mutex<Watch>,
    wake: Condvar,
}

struct Failure {
    reason: String,
    since: Instant,
    attempts: u64,
    last_attempt_error: Option<String>,
}

#[derive(Default)]
struct Watch {
    closed: bool,
    poked: bool,
}

/// Changes not yet covered by a successful flush: writes (with a copy of
/// each value while the copies stay under [`RETAIN_MAX_BYTES`]) and
/// removals of events. A reopen replays them onto what the disk kept, so
/// the reopened buffer holds what the failed one held in memory.
#[derive(Default)]
struct Unflushed {
    /// Bumped when a flush starts; a flush covers what was registered
    /// before (`epoch` at most the value it read).
    epoch: u64,
    writes: BTreeMap<(u64, u8), Pending>,
    /// Events removed (acknowledged or dead-lettered), with their epoch.
    removals: BTreeMap<u64, u64>,
    bytes: usize,
}

struct Pending {
    area: Area,
    epoch: u64,
    value: Option<IVec>,
}

impl Unflushed {
    fn add(&mut self, seq: u64, area: Area, value: &IVec) {
        let value = (self.bytes + value.len() <= RETAIN_MAX_BYTES).then(|| {
            self.bytes += value.len();
            value.clone()
        });
        let pending = Pending {
            area,
            epoch: self.epoch,
            value,
        };
        if let Some(old) = self.writes.insert((seq, area as u8), pending) {
            self.bytes -= old.value.map_or(0, |v| v.len());
        }
    }

    /// An event left the events tree: its write need not be replayed, its
    /// removal must be.
    fn removed(&mut self, seq: u64) {
        if let Some(p) = self.writes.remove(&(seq, Area::Events as u8)) {
            self.bytes -= p.value.map_or(0, |v| v.len());
        }
        self.removals.insert(seq, self.epoch);
    }

    /// A flush starts: returns the epoch it covers.
    fn start_flush(&mut self) -> u64 {
        self.epoch += 1;
        self.epoch - 1
    }

    /// Drops what a successful flush covered.
    fn flushed(&mut self, covered: u64) {
        let mut freed = 0;
        self.writes.retain(|_, p| {
            let keep = p.epoch > covered;
            if !keep {
                freed += p.value.as_ref().map_or(0, |v| v.len());
            }
            keep
        });
        self.bytes -= freed;
        self.removals.retain(|_, epoch| *epoch > covered);
    }
}

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
}

impl Buffer {
    /// Opens (creating if needed) the buffer at `path` with the default
    /// configuration. Blocking: call before the actors start or on the
    /// blocking pool.
    pub fn open(path: &Path) -> Result<Buffer, BufferError> {
        Self::open_with_config(path, &BufferConfig::default())
    }

    /// [`Buffer::open`] for unit tests: the free-space floor is the lowest
    /// `check-config` accepts (4 MiB), not the default 256 MiB, because the
    /// suite runs on CI machines with little disk free. The floor itself is
    /// tested on its own (`the_free_space_floor_refuses_new_events`).
    #[cfg(test)]
    pub(crate) fn open_for_tests(path: &Path) -> Result<Buffer, BufferError> {
        Self::open_with_config(
            path,
            &BufferConfig {
                min_free_bytes: 4 * 1024 * 1024,
                ..BufferConfig::default()
            },
        )
    }

    /// [`Buffer::open`] with a page cache of `cache_mib` MiB (sled's own
    /// default is 1 GiB, too much for a sidecar-sized service).
    pub fn open_with_cache(path: &Path, cache_mib: u64) -> Result<Buffer, BufferError> {
        Self::open_with_config(
            path,
            &BufferConfig {
                cache_mib,
                ..BufferConfig::default()
            },
        )
    }

    /// Opens the buffer at `path` (which takes the place of
    /// `config.path`) with `config`'s cache and bounds, migrating an older
    /// format, and starts its watcher thread (admission sampling, reopen
    /// after failures; it ends when the last handle is dropped).
    pub fn open_with_config(path: &Path, config: &BufferConfig) -> Result<Buffer, BufferError> {
        let cache_bytes = config.cache_mib * 1024 * 1024;
        let open_err = |source: sled::Error| open_error(path, source);
        let store = Store::open(path, cache_bytes).map_err(open_err)?;
        migrate(&store, path)?;
        let census = store.census().map_err(open_err)?;
        if census.orphan_chunks > 0 {
            tracing::warn!(
                chunks = census.orphan_chunks,
                "removed chunks of values whose write was cut short by a crash"
            );
        }
        let unreadable = known_unreadable(&census);
        let previous_alive = store
            .meta
            .get(META_ALIVE_KEY)
            .map_err(open_err)?
            .and_then(|raw| Some(u64::from_be_bytes(raw.as_ref().try_into().ok()?)));
        let gaps_len = store.gaps.len() as u64;
        let admission = Admission::new(config.max_bytes, config.min_free_bytes);
        admission
            .held_bytes
            .store(census.held_bytes, Ordering::SeqCst);
        let shared = Arc::new(Shared {
            admission,
            check_interval: Duration::from_millis(config.check_interval_ms),
            // Sequences key the dead-letter and quarantine trees too: a new
            // record must not take the key of one still kept there.
            next_seq: AtomicU64::new(census.last_seq + 1),
            durable_seq: AtomicU64::new(census.last_seq),
            generation: AtomicU64::new(0),
            events_len: AtomicU64::new(census.entries[Area::Events as usize]),
            dead_letter_len: AtomicU64::new(census.entries[Area::DeadLetter as usize]),
            quarantine_len: AtomicU64::new(census.entries[Area::Quarantine as usize]),
            refused: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            restored: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
            unreadable_ranges: AtomicU64::new(census.unreadable.len() as u64),
            gaps_len: AtomicU64::new(gaps_len),
            alive_marks: AtomicBool::new(false),
            flush_seconds: crate::telemetry::AtomicHistogram::new(&crate::telemetry::FLUSH_BUCKETS),
            failing: AtomicBool::new(false),
            auto_reopen: AtomicBool::new(true),
            failure: Mutex::default(),
            last_loss: Mutex::default(),
            watch: Mutex::default(),
            wake: Condvar::new(),
        });
        // A first sample before any event, so a full disk refuses at once.
        shared.admission.sample(path);
        let inner = Arc::new(Inner {
            path: path.to_owned(),
            cache_bytes,
            store: RwLock::new(Some(Arc::new(store))),
            shared: shared.clone(),
            unflushed: Mutex::default(),
            unreadable: Mutex::new(unreadable),
            reopening: Mutex::new(()),
            tail: Mutex::new(tail::Tail::new(shared.next_seq.load(Ordering::SeqCst))),
            previous_alive,
            downtime_claimed: Mutex::default(),
            flush_running: AtomicBool::new(false),
            flush_wanted: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        let dir = path.to_owned();
        std::thread::Builder::new()
            .name("gkb-buffer-watch".into())
            .spawn(move || watch(shared, weak, dir))
            .map_err(|e| BufferError::Flush(format!("cannot start the buffer watcher: {e}")))?;
        Ok(Buffer { inner })
    }

    /// Stores a received notification and returns its sequence. The record
    /// is visible to readers at once and durable after the next flush.
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
        let store = match self.store() {
            Ok(store) => store,
            Err(e) => {
                shared.refused.fetch_add(1, Ordering::SeqCst);
                return Err(e);
            }
        };
        let mut unflushed = self.lock_unflushed();
        let seq = shared.next_seq.fetch_add(1, Ordering::SeqCst);
        let record = Record {
            seq,
            received_at_ms,
            topic_name: topic_name.to_owned(),
            correlation_id: correlation_id.map(str::to_owned),
            payload: payload.to_vec(),
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
                Ok(seq)
            }
            Err(e) => {
                drop(unflushed);
                shared.refused.fetch_add(1, Ordering::SeqCst);
                self.fail("a write", &e);
                Err(BufferError::Write(e))
            }
        }
    }

    /// The record under `seq`, if the buffer holds it. An entry that
    /// cannot be decoded is moved to the quarantine and reads as `None`.
    pub fn get(&self, seq: u64) -> Result<Option<Record>, BufferError> {
        let store = self.store()?;
        match store.get(Area::Events, seq) {
            Ok(None) => Ok(None),
            Ok(Some(value)) => match Record::decode(seq, &value) {
                Ok(record) => Ok(Some(record)),
                Err(e) => {
                    self.quarantine_entry(&store, seq, &e.to_string(), &value)?;
                    Ok(None)
                }
            },
            Err(ReadError::Incomplete { reason, found }) => {
                self.quarantine_entry(&store, seq, &reason, &found)?;
                Ok(None)
            }
            Err(ReadError::Sled(e)) => Err(self.read_failed(e)),
        }
    }

    /// Writes raw bytes as event `seq` behind the buffer's back, as a bad
    /// disk would: for tests of the tools that find such damage.
    #[cfg(test)]
    pub(crate) fn damage_event_for_tests(&self, seq: u64, bytes: &[u8]) {
        self.store()
            .unwrap()
            .events
            .insert(seq.to_be_bytes(), bytes)
            .unwrap();
    }

    /// Test hook: read everything from sled, as after a restart.
    #[cfg(test)]
    pub(crate) fn forget_tail(&self) {
        lock(&self.inner.tail).reset(self.inner.shared.next_seq.load(Ordering::SeqCst));
    }

    /// Up to `limit` records with a sequence above `after`, in order.
    /// Entries that cannot be decoded are moved to the quarantine tree and
    /// skipped; their sequences are returned in the second list. Ranges
    /// sled cannot read are skipped (see the module docs).
    pub fn read_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Record>, Vec<u64>), BufferError> {
        if let Some(records) = lock(&self.inner.tail).read_after(after, limit) {
            return Ok((records, Vec::new()));
        }
        let store = self.store()?;
        let mut records = Vec::with_capacity(limit.min(1024));
        let mut quarantined = Vec::new();
        let mut pos = after.saturating_add(1);
        // Each turn either ends the read or moves `pos` past a range sled
        // cannot read, which only happens below `last_seq`.
        'scan: while records.len() < limit && pos <= self.last_seq() {
            pos = self.skip_known_unreadable(pos);
            for entry in store.events.range(pos.to_be_bytes()..) {
                if records.len() >= limit {
                    break 'scan;
                }
                let (key, raw) = match entry {
                    Ok(kv) => kv,
                    Err(e) if is_local(&e) => {
                        pos = self.skip_unreadable(&store, pos, &e)?;
                        continue 'scan;
                    }
                    Err(e) => return Err(self.read_failed(e)),
                };
                let seq = seq_of(&key);
                pos = seq.saturating_add(1);
                let bad = match store.resolve(Area::Events, seq, raw) {
                    Ok(value) => match Record::decode(seq, &value) {
                        Ok(record) => {
                            records.push(record);
                            continue;
                        }
                        Err(e) => (e.to_string(), value.to_vec()),
                    },
                    Err(ReadError::Incomplete { reason, found }) => (reason, found),
                    Err(ReadError::Sled(e)) if is_local(&e) => (e.to_string(), Vec::new()),
                    Err(ReadError::Sled(e)) => return Err(self.read_failed(e)),
                };
                self.quarantine_entry(&store, seq, &bad.0, &bad.1)?;
                quarantined.push(seq);
            }
            break;
        }
        Ok((records, quarantined))
    }

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
    fn quarantine_entry(
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

    /// Finds the first readable key after a read error at `from` and
    /// records the range in between as unreadable. Returns where to go on.
    fn skip_unreadable(
        &self,
        store: &Store,
        from: u64,
        error: &sled::Error,
    ) -> Result<u64, BufferError> {
        let Some(good) = store::first_readable(&store.events, from) else {
            return Err(self.read_failed(error.clone()));
        };
        let last_bad = good - 1;
        lock(&self.inner.unreadable).push((from, last_bad));
        self.inner
            .shared
            .unreadable_ranges
            .fetch_add(1, Ordering::SeqCst);
        tracing::error!(from, to = last_bad, error = %error, "buffer range sled cannot read: skipped and recorded in the quarantine");
        let seq = self.inner.shared.next_seq.fetch_add(1, Ordering::SeqCst);
        let reason = format!("sequences {from}..={last_bad} cannot be read: {error}");
        let value = quarantine_json(seq, "unreadable buffer range", &reason, &[]);
        self.put_counted(store, Area::Quarantine, seq, value)?;
        Ok(good)
    }

    fn skip_known_unreadable(&self, mut pos: u64) -> u64 {
        let ranges = lock(&self.inner.unreadable);
        // Ranges may touch one another; a few passes settle it.
        for _ in 0..=ranges.len() {
            match ranges.iter().find(|(a, b)| (*a..=*b).contains(&pos)) {
                Some((_, b)) => pos = b.saturating_add(1),
                None => break,
            }
        }
        pos
    }

    /// Removes records Kafka acknowledged.
    pub fn remove(&self, seqs: &[u64]) -> Result<(), BufferError> {
        let store = self.store()?;
        // An ack seen twice must not count twice.
        let unique: Vec<u64> = seqs
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<u64>>()
            .into_iter()
            .collect();
        match store.remove_many(Area::Events, &unique) {
            Ok((present, freed)) => {
                let shared = &self.inner.shared;
                shared.events_len.fetch_sub(present, Ordering::SeqCst);
                shared
                    .admission
                    .held_bytes
                    .fetch_sub(freed, Ordering::SeqCst);
                lock(&self.inner.tail).remove(unique.iter().copied());
                // Kafka has them: a reopen must not write them back.
                let mut unflushed = self.lock_unflushed();
                for seq in unique {
                    unflushed.removed(seq);
                }
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
        let unique: Vec<u64> = seqs
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<u64>>()
            .into_iter()
            .collect();
        match store.remove_many(Area::DeadLetter, &unique) {
            Ok((present, freed)) => {
                let shared = &self.inner.shared;
                shared.dead_letter_len.fetch_sub(present, Ordering::SeqCst);
                shared
                    .admission
                    .held_bytes
                    .fetch_sub(freed, Ordering::SeqCst);
                Ok(present as usize)
            }
            Err(e) => {
                self.fail("a removal", &e);
                Err(BufferError::Write(e))
            }
        }
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
        for entry in store.tree(area).iter() {
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

    /// Stores `value` under `seq` in `area`, replacing (and uncounting) a
    /// value already there.
    fn put_counted(
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
                self.counter(area).fetch_add(1, Ordering::SeqCst);
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

    fn count_removed(&self, area: Area, freed: Option<u64>) {
        if let Some(freed) = freed {
            self.counter(area).fetch_sub(1, Ordering::SeqCst);
            self.inner
                .shared
                .admission
                .held_bytes
                .fetch_sub(freed, Ordering::SeqCst);
        }
    }

    fn counter(&self, area: Area) -> &AtomicU64 {
        let shared = &self.inner.shared;
        match area {
            Area::Events => &shared.events_len,
            Area::DeadLetter => &shared.dead_letter_len,
            Area::Quarantine => &shared.quarantine_len,
        }
    }

    /// Records waiting for Kafka.
    pub fn len(&self) -> usize {
        self.inner.shared.events_len.load(Ordering::SeqCst) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dead_letter_len(&self) -> usize {
        self.inner.shared.dead_letter_len.load(Ordering::SeqCst) as usize
    }

    pub fn quarantine_len(&self) -> usize {
        self.inner.shared.quarantine_len.load(Ordering::SeqCst) as usize
    }

    /// Highest sequence handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.inner.shared.next_seq.load(Ordering::SeqCst) - 1
    }

    /// Highest sequence known to be on disk.
    pub fn durable_seq(&self) -> u64 {
        self.inner.shared.durable_seq.load(Ordering::SeqCst)
    }

    /// Increases on every reopen after a storage failure. The reopened
    /// buffer holds what the failed one held (appends, removals and
    /// dead-letter moves since the last good flush are replayed onto what
    /// the disk kept), except events counted in `lost`: a reader's cursor
    /// stays valid, and records it has in flight are still in the buffer,
    /// so reading again from the start would send them twice.
    pub fn generation(&self) -> u64 {
        self.inner.shared.generation.load(Ordering::SeqCst)
    }

    /// Events refused so far (bound reached, or failing).
    pub fn refused(&self) -> u64 {
        self.inner.shared.refused.load(Ordering::SeqCst)
    }

    /// Events accepted and then lost by a storage failure, so far.
    pub fn lost(&self) -> u64 {
        self.inner.shared.lost.load(Ordering::SeqCst)
    }

    /// Why new events are refused right now, if they are.
    pub fn refusal(&self) -> Option<Refusal> {
        if self.inner.shared.failing.load(Ordering::SeqCst) {
            return Some(Refusal::Failing);
        }
        self.inner.shared.admission.refusal()
    }

    fn refusal_text(&self, refusal: Refusal) -> String {
        let a = &self.inner.shared.admission;
        match refusal {
            Refusal::Limit => format!(
                "the buffer is full: {} bytes on disk, {} held, max_bytes {}",
                a.disk_bytes.load(Ordering::Relaxed),
                a.held_bytes.load(Ordering::Relaxed),
                a.max_bytes
            ),
            Refusal::FreeSpace => format!(
                "its filesystem has {} bytes free, below min_free_bytes {}",
                a.free_bytes.load(Ordering::Relaxed),
                a.min_free_bytes
            ),
            Refusal::Failing => self
                .flush_error()
                .unwrap_or_else(|| "a storage operation failed".into()),
        }
    }

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

    /// Why the buffer is failing, while it is.
    pub fn flush_error(&self) -> Option<String> {
        lock(&self.inner.shared.failure)
            .as_ref()
            .map(|f| f.reason.clone())
    }

    /// Why the buffer is not fit to take or keep events, for /readyz; empty
    /// when it is.
    pub fn problems(&self) -> Vec<String> {
        let shared = &self.inner.shared;
        let mut problems = Vec::new();
        let refused = shared.refused.load(Ordering::SeqCst);
        if let Some(f) = lock(&shared.failure).as_ref() {
            let mut text = format!(
                "{} {}s ago; refusing new events ({refused} refused so far) and reopening",
                f.reason,
                f.since.elapsed().as_secs()
            );
            if let Some(e) = &f.last_attempt_error {
                text.push_str(&format!(" (attempt {} failed: {e})", f.attempts));
            }
            problems.push(text);
        } else if let Some(r) = shared.admission.refusal() {
            problems.push(format!(
                "refusing new events ({refused} refused so far), keeping what it holds: {}",
                self.refusal_text(r)
            ));
        }
        let lost = shared.lost.load(Ordering::SeqCst);
        if lock(&shared.last_loss).is_some_and(|at| at.elapsed() < LOSS_REPORT_WINDOW) {
            problems.push(format!(
                "{lost} received events lost by a storage failure (accepted after the last good flush, missing after the reopen)"
            ));
        }
        problems
    }

    /// Appends the buffer's own gauges and counters to a Prometheus text
    /// exposition (`gkb_buffer_*`).
    /// The buffer's metrics as (name without `gkb_`, kind, help, value),
    /// read now; `crate::telemetry` encodes them.
    pub fn metric_values(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        let s = &self.inner.shared;
        let a = &s.admission;
        let load = |v: &AtomicU64| v.load(Ordering::SeqCst);
        let metrics = [
            (
                "buffer_events",
                "gauge",
                "Events in the buffer waiting for Kafka.",
                self.len() as u64,
            ),
            (
                "buffer_dead_letters",
                "gauge",
                "Events in the dead-letter area.",
                self.dead_letter_len() as u64,
            ),
            (
                "buffer_quarantined",
                "gauge",
                "Entries in the quarantine.",
                self.quarantine_len() as u64,
            ),
            (
                "buffer_last_seq",
                "gauge",
                "Sequence of the last event appended.",
                self.last_seq(),
            ),
            (
                "buffer_durable_seq",
                "gauge",
                "Sequence up to which the buffer is flushed to disk.",
                self.durable_seq(),
            ),
            (
                "buffer_held_bytes",
                "gauge",
                "Bytes of keys and values the buffer holds.",
                load(&a.held_bytes),
            ),
            (
                "buffer_disk_bytes",
                "gauge",
                "Bytes of the buffer's files, last measured.",
                load(&a.disk_bytes),
            ),
            (
                "buffer_max_bytes",
                "gauge",
                "buffer.max_bytes.",
                a.max_bytes,
            ),
            (
                "buffer_fs_free_bytes",
                "gauge",
                "Free bytes on the buffer's filesystem, last measured.",
                load(&a.free_bytes).min(i64::MAX as u64),
            ),
            (
                "buffer_admitting",
                "gauge",
                "1 while the buffer takes new events.",
                u64::from(self.refusal().is_none()),
            ),
            (
                "buffer_failing",
                "gauge",
                "1 while a storage failure is being recovered.",
                u64::from(s.failing.load(Ordering::SeqCst)),
            ),
            (
                "buffer_generation",
                "gauge",
                "Reopens since start; readers rewind when it changes.",
                self.generation(),
            ),
            (
                "buffer_refused_events_total",
                "counter",
                "Events refused because the buffer was at its bound or failing.",
                load(&s.refused),
            ),
            (
                "buffer_lost_events_total",
                "counter",
                "Events accepted, then lost by a storage failure.",
                load(&s.lost),
            ),
            (
                "buffer_restored_events_total",
                "counter",
                "Unflushed events written back after a reopen.",
                load(&s.restored),
            ),
            (
                "buffer_reopens_total",
                "counter",
                "Reopens after storage failures.",
                load(&s.reopens),
            ),
            (
                "buffer_unreadable_ranges_total",
                "counter",
                "Ranges sled could not read, skipped.",
                load(&s.unreadable_ranges),
            ),
            (
                "buffer_samples_total",
                "counter",
                "Measurements of disk use and free space taken.",
                load(&a.samples),
            ),
        ];
        metrics.to_vec()
    }

    /// Time of each flush to disk (`gkb_buffer_flush_seconds`).
    pub fn flush_seconds(&self) -> crate::telemetry::AtomicHistogram {
        self.inner.shared.flush_seconds.clone()
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
                // A failure is logged once, by `fail`, not per flush.
                if let Err(e) = actix_rt::task::spawn_blocking(move || b.flush_blocking()).await {
                    tracing::error!(error = %e, "buffer flush task failed");
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

    /// Records a gap without blocking the caller: the sled writes (and a
    /// prune, rarely) run on the blocking pool, then a grouped flush is
    /// requested. A failure is logged with the gap's bounds (the gap was
    /// logged and counted by telemetry already). Await the handle to know
    /// the write was made (shutdown does, before its final flush). Must be
    /// called from within an actix/tokio runtime.
    pub fn record_gap(
        &self,
        gap: GapRecord,
        topics: Arc<Vec<String>>,
    ) -> actix_rt::task::JoinHandle<()> {
        let buffer = self.clone();
        actix_rt::spawn(async move {
            let b = buffer.clone();
            let (start, end) = (gap.start.clone(), gap.end.clone());
            let written =
                actix_rt::task::spawn_blocking(move || b.record_gap_blocking(&gap, &topics)).await;
            match written {
                Ok(Ok(())) => buffer.request_flush(),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, start, end, "gap not recorded in the buffer")
                }
                Err(e) => tracing::error!(error = %e, start, end, "gap recording task failed"),
            }
        })
    }

    /// [`Buffer::record_gap`] on the calling thread (blocking: sled writes,
    /// and at most once per 500 gaps a prune of the oldest).
    pub fn record_gap_blocking(
        &self,
        gap: &GapRecord,
        topics: &[String],
    ) -> Result<(), BufferError> {
        let store = self.store()?;
        match gaps::write(&store, gap, topics) {
            Ok(kept) => {
                self.inner
                    .shared
                    .gaps_len
                    .store(kept as u64, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                self.fail("a gap write", &e);
                Err(BufferError::Write(e))
            }
        }
    }

    /// Recorded gaps that end at or after `since_ms`, oldest first, with
    /// their topic names when `with_topics`.
    pub fn gaps(
        &self,
        since_ms: Option<u64>,
        with_topics: bool,
    ) -> Result<Vec<GapRecord>, BufferError> {
        let store = self.store()?;
        Ok(gaps::read(&store, since_ms, None, with_topics)?)
    }

    /// Visits the gaps that end at or after `since_ms`, oldest first, one
    /// at a time (with topics, 10,000 gaps can name 600 MB of topics: a
    /// listing never holds them all); `visit` returns `false` to stop.
    pub fn each_gap(
        &self,
        since_ms: Option<u64>,
        with_topics: bool,
        visit: impl FnMut(GapRecord) -> bool,
    ) -> Result<(), BufferError> {
        let store = self.store()?;
        Ok(gaps::visit(
            &store,
            since_ms,
            with_topics,
            gaps::Order::OldestFirst,
            visit,
        )?)
    }

    /// The newest `n` recorded gaps, oldest first, without topic names.
    pub fn recent_gaps(&self, n: usize) -> Result<Vec<GapRecord>, BufferError> {
        let store = self.store()?;
        Ok(gaps::read(&store, None, Some(n), false)?)
    }

    /// Gap records kept (at most [`MAX_GAPS`]).
    pub fn gaps_len(&self) -> u64 {
        self.inner.shared.gaps_len.load(Ordering::SeqCst)
    }

    /// Writes `last_alive` = now (an 8-byte insert; durable with the next
    /// flush).
    pub fn mark_alive(&self) -> Result<(), BufferError> {
        let store = self.store()?;
        store
            .meta
            .insert(META_ALIVE_KEY, &crate::now_ms().to_be_bytes())
            .map_err(|e| {
                self.fail("a write", &e);
                BufferError::Write(e)
            })?;
        Ok(())
    }

    /// A bridge runs on this buffer: mark `last_alive` now and every
    /// [`ALIVE_EVERY`] from the watcher thread (never an actor's).
    pub fn keep_alive_marks(&self) -> Result<(), BufferError> {
        self.mark_alive()?;
        self.inner.shared.alive_marks.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Shutdown: a last `last_alive` mark now, and no more.
    pub fn stop_alive_marks(&self) -> Result<(), BufferError> {
        self.inner.shared.alive_marks.store(false, Ordering::SeqCst);
        self.mark_alive()
    }

    /// When the previous run was last known alive, if it ever marked it.
    pub fn previous_alive_ms(&self) -> Option<u64> {
        self.inner.previous_alive
    }

    /// The start of the time the bridge was not running, for connection
    /// `index` of the first plan: `previous_alive`, once per index.
    pub fn claim_downtime(&self, index: usize) -> Option<std::time::SystemTime> {
        let since = self.inner.previous_alive?;
        lock(&self.inner.downtime_claimed)
            .insert(index)
            .then(|| std::time::UNIX_EPOCH + Duration::from_millis(since))
    }

    /// Whether a storage failure is being handled (reopen pending).
    fn is_failing(&self) -> bool {
        self.inner.shared.failing.load(Ordering::SeqCst)
    }

    /// The open database, or why there is none to use.
    fn store(&self) -> Result<Arc<Store>, BufferError> {
        if self.inner.shared.failing.load(Ordering::SeqCst) {
            return Err(BufferError::Failing(self.flush_error().unwrap_or_default()));
        }
        self.inner
            .store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| BufferError::Failing("reopening".into()))
    }

    fn lock_unflushed(&self) -> std::sync::MutexGuard<'_, Unflushed> {
        lock(&self.inner.unflushed)
    }

    fn read_failed(&self, e: sled::Error) -> BufferError {
        if !is_local(&e) {
            self.fail("a read", &e);
        }
        BufferError::Read(e)
    }

    /// Marks the buffer failing: one log line, then the watcher reopens.
    fn fail(&self, what: &str, error: &dyn std::fmt::Display) {
        let shared = &self.inner.shared;
        let mut failure = lock(&shared.failure);
        if shared.failing.swap(true, Ordering::SeqCst) {
            return;
        }
        let reason = format!("{what} failed: {error}");
        tracing::error!(error = %reason, "buffer failing: refusing new events until it is reopened (retrying with backoff)");
        *failure = Some(Failure {
            reason,
            since: Instant::now(),
            attempts: 0,
            last_attempt_error: None,
        });
        drop(failure);
        shared.poke();
    }

    /// Closes and reopens the database after a failure: writes back what
    /// the reopened database lacks of the unflushed writes, recounts, and
    /// bumps the generation. Run by the watcher thread.
    fn reopen(&self) -> Result<(), String> {
        let inner = &self.inner;
        let shared = &inner.shared;
        let _one = lock(&inner.reopening);
        if !shared.failing.load(Ordering::SeqCst) {
            return Ok(());
        }
        if let Some(free) = admission::free_bytes(&inner.path) {
            // sled's open writes (a snapshot, a new segment): on a disk
            // with no room at all it fails, or leaves a half-written
            // snapshot (removed at open, see store.rs). Not more than
            // that is waited for: draining, which frees the buffer's own
            // space, needs the buffer open.
            if free < REOPEN_MIN_FREE {
                return Err(format!(
                    "{free} bytes free on the buffer's filesystem, waiting for {REOPEN_MIN_FREE}"
                ));
            }
        }
        // sled locks its files: the failed database must be closed first.
        drop(
            inner
                .store
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let store = Store::open(&inner.path, inner.cache_bytes).map_err(|e| e.to_string())?;
        store
            .meta
            .insert(META_PROBE_KEY, &crate::now_ms().to_be_bytes())
            .map_err(|e| format!("probe write: {e}"))?;
        store.sync().map_err(|e| format!("probe: {e}"))?;
        let mut unflushed = self.lock_unflushed();
        let (mut restored, mut lost, mut removed_again) = (0u64, 0u64, 0u64);
        for (&(seq, _), pending) in &unflushed.writes {
            let present = store
                .tree(pending.area)
                .contains_key(seq.to_be_bytes())
                .map_err(|e| format!("checking what survived: {e}"))?;
            if present {
                continue;
            }
            match &pending.value {
                Some(value) => {
                    store
                        .put(pending.area, seq, value.clone())
                        .map_err(|e| format!("writing back: {e}"))?;
                    restored += 1;
                }
                None => lost += 1,
            }
        }
        // Removals after the writes: an event written back and then
        // dead-lettered ends in the dead-letter tree only.
        for &seq in unflushed.removals.keys() {
            if store
                .remove(Area::Events, seq)
                .map_err(|e| format!("removing again: {e}"))?
                .is_some()
            {
                removed_again += 1;
            }
        }
        store.sync().map_err(|e| e.to_string())?;
        let census = store.census().map_err(|e| e.to_string())?;
        // Nothing can fail from here on: commit the new state.
        *unflushed = Unflushed::default();
        shared
            .events_len
            .store(census.entries[Area::Events as usize], Ordering::SeqCst);
        shared
            .dead_letter_len
            .store(census.entries[Area::DeadLetter as usize], Ordering::SeqCst);
        shared
            .quarantine_len
            .store(census.entries[Area::Quarantine as usize], Ordering::SeqCst);
        shared
            .admission
            .held_bytes
            .store(census.held_bytes, Ordering::SeqCst);
        shared.admission.sample(&inner.path);
        shared
            .next_seq
            .fetch_max(census.last_seq + 1, Ordering::SeqCst);
        shared
            .durable_seq
            .fetch_max(self.last_seq(), Ordering::SeqCst);
        *lock(&inner.unreadable) = known_unreadable(&census);
        shared
            .unreadable_ranges
            .fetch_add(census.unreadable.len() as u64, Ordering::SeqCst);
        *inner.store.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(store));
        // The reopened tree is the truth; the tail fills again from here.
        lock(&inner.tail).reset(shared.next_seq.load(Ordering::SeqCst));
        drop(unflushed);
        shared.restored.fetch_add(restored, Ordering::SeqCst);
        if lost > 0 {
            shared.lost.fetch_add(lost, Ordering::SeqCst);
            *lock(&shared.last_loss) = Some(Instant::now());
        }
        shared.reopens.fetch_add(1, Ordering::SeqCst);
        let generation = shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let failure = lock(&shared.failure).take();
        shared.failing.store(false, Ordering::SeqCst);
        tracing::info!(
            generation,
            events = census.entries[Area::Events as usize],
            restored,
            removed_again,
            lost,
            failed_for_ms = failure.map_or(0, |f| f.since.elapsed().as_millis() as u64),
            "buffer reopened; taking new events again"
        );
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut watch = lock(&self.shared.watch);
        watch.closed = true;
        self.shared.wake.notify_all();
    }
}

impl Shared {
    fn poke(&self) {
        lock(&self.watch).poked = true;
        self.wake.notify_all();
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

/// The watcher thread: samples admission every `check_interval`, and
/// while the buffer is failing, reopens it with backoff and jitter. Ends
/// when the last handle is dropped.
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
        match shared.admission.sample(&dir) {
            Transition::Closed(reason) => tracing::warn!(
                reason = ?reason,
                disk_bytes = shared.admission.disk_bytes.load(Ordering::Relaxed),
                held_bytes = shared.admission.held_bytes.load(Ordering::Relaxed),
                free_bytes = shared.admission.free_bytes.load(Ordering::Relaxed),
                "buffer at its bound: refusing new events, keeping what it holds"
            ),
            Transition::Opened => tracing::info!(
                refused = shared.refused.load(Ordering::SeqCst),
                "buffer below its bound again: taking new events"
            ),
            Transition::None => {}
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

/// Event ranges the census could not read: logged, and skipped by reads.
fn known_unreadable(census: &store::Census) -> Vec<(u64, u64)> {
    let mut events = Vec::new();
    for (area, from, to, error) in &census.unreadable {
        tracing::error!(?area, from, to, error = %error, "buffer range sled cannot read: skipped (its entries are not counted)");
        if *area == Area::Events {
            events.push((*from, *to));
        }
    }
    events
}

fn quarantine_json(seq: u64, kind: &str, reason: &str, bytes: &[u8]) -> IVec {
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

fn open_error(path: &Path, source: sled::Error) -> BufferError {
    if store::is_lock_error(&source) {
        BufferError::Locked {
            path: path.to_owned(),
        }
    } else {
        BufferError::Open {
            path: path.to_owned(),
            source,
        }
    }
}

/// Checks the format marker; writes it into a new database and moves a
/// version-1 database to version 2 (nothing to rewrite: v1 records read as
/// they are; their unsynced blob files are synced once).
fn migrate(store: &Store, path: &Path) -> Result<(), BufferError> {
    let open_err = |source: sled::Error| open_error(path, source);
    let found = match store.meta.get(META_FORMAT_KEY).map_err(open_err)? {
        None => None,
        Some(raw) => Some(u32::from_be_bytes(raw.as_ref().try_into().map_err(
            |_| BufferError::BadFormatMarker {
                path: path.to_owned(),
            },
        )?)),
    };
    match found {
        Some(v) if v > FORMAT_VERSION => {
            return Err(BufferError::NewerFormat {
                path: path.to_owned(),
                found: v,
            })
        }
        Some(FORMAT_VERSION) => return Ok(()),
        Some(1) => {
            let synced =
                store::sync_legacy_blobs(path).map_err(|e| open_err(sled::Error::Io(e)))?;
            tracing::info!(
                blobs_synced = synced,
                "buffer format 1 → 2 (large values are chunked from now on; see migrations/v2.md)"
            );
        }
        Some(_) | None => {}
    }
    store
        .meta
        .insert(META_FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())
        .map_err(open_err)?;
    store
        .sync()
        .map_err(|e| BufferError::Flush(e.to_string()))?;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
