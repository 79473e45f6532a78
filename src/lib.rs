//! genesys-kafka-bridge streams Genesys Cloud notifications (queue
//! observations, conversation and agent events) into Kafka, through an
//! on-disk write-ahead buffer so that nothing received is lost to a Kafka
//! outage or a crash.
//!
//! Module map, bottom to top (ARCHITECTURE.md has the actor tree, the
//! invariants and the import rules `tests/import_graph.rs` holds):
//! - [`backoff`], [`secret`], [`gap`] (one gap's record): small shared
//!   types; `config::error` is the error every config section returns.
//! - [`telemetry`]: the one place that logs and counts; it imports no
//!   component (each pushes facts into its areas or registers metrics).
//! - [`net`]: outbound HTTP proxies (CONNECT tunnels) and extra CAs.
//! - [`genesys`]: Genesys facts: regions, topic names, frames, the REST
//!   client and its rate limiter, channel-id masking.
//! - [`buffer`]: the sled write-ahead buffer; an append wakes its readers.
//! - [`subscriptions`]: `[topics]` and how topics spread over channels.
//! - [`snapshots`]: `[snapshots]`, and observation snapshots made from an
//!   Analytics answer and the deltas buffered while it was out.
//! - [`token`]: the token actor (OAuth client credentials, refresh) and
//!   REST calls made with its token.
//! - [`producer`]: the producer actor (buffer → Kafka) and topic routing.
//! - [`cluster`]: cluster mode: leadership through a coordination topic,
//!   a standby's trimmed buffer, the takeover check of Kafka.
//! - [`connection`]: the connection actor (channel, socket, subscriptions,
//!   pings, heartbeat watchdog, reconnects, planned moves).
//! - [`backfill`]: the backfill actor (the conversations a gap missed,
//!   from the Analytics API, as durable work kept in the buffer).
//! - [`planner`]: the topic planner (listings, channel assignment, refresh).
//! - [`config`]: the TOML file and environment overrides, assembled from
//!   each component's own section.
//! - [`app`]: starts the actor tree under supervisors, drains on shutdown.
//! - [`buffer_tools`]: `buffer stats/check/export`, served by a running
//!   bridge on its control socket or read from a stopped one's files.
//! - [`replay`]: sends dead letters to Kafka again (`dead-letters --replay`).
//! - [`health`]: /healthz, /readyz, /metrics, /status and the status page.
//! - [`systemd`]: READY=1, watchdog pings and STATUS= for `Type=notify`.
//! - [`cli`]: the command line, the only place errors become exit codes.
//! - [`demo`]: the one-command tour (broker + simulator + bridge); the
//!   simulator itself is the `genesys-simulator` crate (crates/).

pub mod app;
pub mod backfill;
pub mod backoff;
pub mod buffer;
pub mod buffer_tools;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod demo;
pub mod gap;
pub mod genesys;
pub mod health;
pub mod net;
pub mod planner;
pub mod producer;
pub mod replay;
pub mod secret;
pub mod snapshots;
pub mod subscriptions;
pub mod systemd;
pub mod telemetry;
pub mod token;

/// jemalloc's options for every binary of this package (the bridge and
/// the sled memory benchmark, so its figures match): give freed memory back
/// to the system within a second or so (a drain's peak should not stay
/// resident for the life of a months-long process), from jemalloc's own
/// background thread rather than on the hot paths. Each binary exports it
/// as `malloc_conf`, the symbol jemalloc reads at start-up;
/// `MALLOC_CONF=confirm_conf:true genesys-kafka-bridge --version` shows
/// what it applied.
pub const JEMALLOC_CONF: &[u8; 60] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds
/// (`2026-11-24T15:26:18.353Z`): how gaps and buffer tools show times.
/// A time past 9999-12-31 (only a damaged record has one) is shown as
/// its number, not formatted.
pub fn rfc3339_ms(ms: u64) -> String {
    const YEAR_10000_MS: u64 = 253_402_300_800_000;
    if ms >= YEAR_10000_MS {
        return format!("(not a time: {ms} ms since the epoch)");
    }
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
pub fn cut_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
