//! The write-ahead buffer: every received notification is stored here
//! before anything else happens to it, and removed only once Kafka has
//! acknowledged it.
//!
//! Layout (format 3; see `migrations/` for each format version): a main
//! sled database and the event *segments* (`segments.rs`), each its own
//! sled database under `segments/<first sequence>/`, holding the events
//! from its first sequence to the next segment's. Appends go to the
//! newest segment, which rolls over at `buffer.segment_bytes`; a segment
//! the drain emptied is deleted whole; at most [`segments::MAX_OPEN`] are
//! open, so memory does not grow with the backlog (sled keeps an entry per
//! page a database ever had). The main database holds:
//! - `meta`: `format_version` → u32 BE, the on-disk format;
//! - `events`: only in a buffer upgraded from format 2, the events it held
//!   (u64 BE sequence → [`Record`] encoding), read and drained first;
//! - `dead_letter`: u64 BE sequence → JSON of the record and why Kafka
//!   refused it for good (a record too large, a forbidden topic…);
//! - `quarantine`: u64 BE sequence → JSON of frames that were not
//!   notifications and of buffer entries that could not be read, kept
//!   for an operator rather than dropped (see [`Quarantined`]);
//! - `chunks`: the pieces of values above 4,000 bytes (format 2; each
//!   segment has its own for its events);
//! - `gaps`, `gap_topics`: the recorded gaps, times a connection had no
//!   subscribed socket, and their topic lists (`gaps.rs`);
//! - `meta` `last_alive`: u64 BE ms, written every [`ALIVE_EVERY`] while a
//!   bridge runs and at its shutdown: after a crash, the start of the time
//!   the bridge was not running.
//!
//! Sequence order is receive order, which the producer keeps per Kafka
//! key; a read runs through the segments in order.
//!
//! Received frames come in through [`Buffer::submit`] (`intake.rs`): the
//! thread that reads the sockets only queues them, bounded in bytes
//! (`buffer.write_queue_bytes`), and the buffer's writer thread appends
//! them in order and flushes each batch it wrote (a group commit). No sled
//! call runs on a thread that reads sockets; a slow disk fills the queue,
//! and beyond its bound frames are refused and counted.
//!
//! sled writes are cheap and land in its page cache; durability comes from
//! a flush: the writer thread's, the committer thread's (asked for by
//! removals while a backlog drains, `commit.rs`), or one
//! [`Buffer::request_flush`] groups
//! for other writers (gap records): while one flush runs, further
//! requests make at most one more. Flushes never run on an actor thread.
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
//! beyond that only the sequence is kept), each removal by sequence (a
//! drain asks the committer for a flush every 4,096 removals, so this
//! stays bounded while nothing is appended) — and
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
//! [`Buffer::submit`] is the whole hand-off of a received event: queued,
//! appended by the writer thread (which wakes the readers) and flushed
//! with its batch. [`Buffer::wait_written`] waits for it.
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
//! - `store.rs`: the main database and the segments, and which one a
//!   sequence lives in; `segments.rs`: the segments (roll over, open at
//!   most a few, delete the drained); `keyed.rs`: the value layout
//!   (chunks) inside one database; `database.rs`: opening and syncing
//!   one sled database; `migrate.rs`: the format marker and migrations;
//!   `record.rs`: the encoding of an event;
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
mod backfill;
mod commit;
mod config;
mod database;
mod error;
mod flush;
mod gaps;
mod handle;
mod handoff;
mod inspect;
mod intake;
mod journal;
mod keyed;
mod ledger;
mod metrics;
mod migrate;
mod open;
mod queue;
mod reader;
mod record;
mod recovery;
mod reserve;
mod segments;
mod side_trees;
mod store;
mod sync;
mod tail;
#[cfg(test)]
mod tests;
mod view;
mod watch;
mod writer;

pub use crate::gap::{GapError, GapRecord};
pub use admission::Refusal;
pub use alive::ALIVE_EVERY;
pub use config::BufferConfig;
pub use error::BufferError;
pub use gaps::MAX_GAPS;
pub use handle::Buffer;
pub use handoff::AppendWatch;
pub use inspect::{SideAreas, Usage, Walked};
pub use metrics::BufferMetrics;
pub use record::{event_id, field_fits, DecodeError, Kind, Record, FORMAT_VERSION};
pub use side_trees::{DeadLetter, Quarantined};
