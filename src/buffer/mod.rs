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
//!
//! # Hand-off to readers
//!
//! An append is visible to readers at once, and the buffer itself tells
//! them: a reader registers a wake function with
//! [`Buffer::wake_on_append`] and keeps the returned [`AppendWatch`].
//! After an append, every watch that is *armed* is disarmed and its
//! function called once, on the appending thread; a burst of appends
//! therefore costs a reader one wake, not one per event. The reader
//! re-arms with [`AppendWatch::rearm`] *before* it reads the buffer, so
//! an append that lands during the read wakes it again. The function must
//! be quick and must not block (sending one message on a channel is the
//! intended use: a thread waiting on its queue, such as the forwarding
//! thread, gets one coalesced message), must not register or drop a watch
//! (it runs under the readers' lock) and must not hold a [`Buffer`] (that
//! would keep the buffer open for ever). Dropping the watch unregisters
//! it. The buffer knows nothing of who reads.
//!
//! [`Buffer::append_and_hand_off`] is the whole hand-off of a received
//! event in one call: the append (which wakes readers) and a grouped
//! flush request. [`Buffer::append`] with [`Buffer::request_flush`] does
//! the same in two.
//!
//! # Metrics
//!
//! The buffer describes its own metrics: [`Buffer::metrics`] is a
//! `prometheus-client` collector of every `gkb_buffer_*` series (gauges,
//! counters and the flush-time histogram) for `/metrics` to register,
//! read from the buffer's counters at each scrape (`metrics.rs`).
//!
//! # Files
//!
//! The store layer, the writer path and the reader path are kept apart
//! (after Vector's disk buffer: ledger, writer, reader, record):
//! - `store.rs`: one open sled database and the value layout (chunks);
//!   `migrate.rs`: its format marker and migrations; `record.rs`: the
//!   encoding of an event;
//! - `ledger.rs`: the positions and counts shared by all paths, without
//!   the database;
//! - `writer.rs`: appends; `handoff.rs`: waking readers after them;
//!   `flush.rs`: grouped flushes and what they make durable;
//! - `reader.rs`: reads in sequence order, acknowledged removals, and
//!   skipping what cannot be read; `tail.rs`: the newest appends in memory;
//! - `side_trees.rs`: dead letters and the quarantine;
//! - `recovery.rs`: the journal of unflushed changes and the reopen after
//!   a storage failure; `watch.rs`: the thread that samples admission,
//!   writes alive marks and retries reopens; `admission.rs`: the bound;
//! - `alive.rs`: `last_alive` and the downtime it dates; `gaps.rs`: gap
//!   records;
//! - `inspect.rs`: read-only walks for the operator's tools;
//!   `metrics.rs`: the collector; `config.rs`: `[buffer]`;
//! - `tests/`: the buffer as a whole, by concern (the model-based proptest
//!   in `tests/model.rs`).

mod admission;
mod alive;
mod config;
mod flush;
mod gaps;
mod handoff;
mod inspect;
mod ledger;
mod metrics;
mod migrate;
mod reader;
mod record;
mod recovery;
mod side_trees;
mod store;
mod tail;
#[cfg(test)]
mod tests;
mod view;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use admission::Refusal;
pub use alive::ALIVE_EVERY;
pub use config::BufferConfig;
pub use gaps::{GapError, GapRecord, MAX_GAPS};
pub use handoff::AppendWatch;
pub use inspect::{SideAreas, Usage, Walked};
pub use metrics::BufferMetrics;
pub use migrate::FORMAT_VERSION;
pub use record::{field_fits, DecodeError, Record};
pub use side_trees::{DeadLetter, Quarantined};

use admission::Admission;
use ledger::Shared;
use recovery::Unflushed;
use store::Store;

/// How long a loss stays on /readyz (the counter stays forever).
const LOSS_REPORT_WINDOW: Duration = Duration::from_secs(15 * 60);

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
    /// The open database; `None` only while a reopen swaps it. Writers and
    /// readers take it from here ([`Buffer::store`]), nowhere else.
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
    /// Readers to wake after an append.
    readers: Arc<handoff::Readers>,
    /// `last_alive` as the previous run left it (ms since the epoch).
    previous_alive: Option<u64>,
    /// Connections that took the downtime gap since `previous_alive`.
    downtime_claimed: Mutex<std::collections::BTreeSet<usize>>,
    flush: flush::Grouping,
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
        migrate::migrate(&store, path)?;
        let census = store.census().map_err(open_err)?;
        if census.orphan_chunks > 0 {
            tracing::warn!(
                chunks = census.orphan_chunks,
                "removed chunks of values whose write was cut short by a crash"
            );
        }
        let unreadable = recovery::known_unreadable(&census);
        let previous_alive = alive::previous(&store).map_err(open_err)?;
        let admission = Admission::new(config.max_bytes, config.min_free_bytes);
        let shared = Arc::new(Shared::new(
            admission,
            Duration::from_millis(config.check_interval_ms),
            &census,
            store.gaps.len() as u64,
        ));
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
            readers: Arc::default(),
            previous_alive,
            downtime_claimed: Mutex::default(),
            flush: flush::Grouping::default(),
        });
        watch::spawn(shared, Arc::downgrade(&inner), path.to_owned())
            .map_err(|e| BufferError::Flush(format!("cannot start the buffer watcher: {e}")))?;
        Ok(Buffer { inner })
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
        self.inner.shared.last_seq()
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
        self.inner.shared.refusal()
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

    /// Whether a storage failure is being handled (reopen pending).
    fn is_failing(&self) -> bool {
        self.inner.shared.failing.load(Ordering::SeqCst)
    }

    /// The open database, or why there is none to use: the one way the
    /// writer and reader paths reach the store.
    fn store(&self) -> Result<Arc<Store>, BufferError> {
        if self.is_failing() {
            return Err(BufferError::Failing(self.flush_error().unwrap_or_default()));
        }
        self.inner
            .store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| BufferError::Failing("reopening".into()))
    }
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
