//! What the bridge's buffer costs in memory as its backlog grows and
//! drains: the `Buffer` as the bridge opens it (default cache, segments),
//! one process, jemalloc with the bridge's settings, records the size of
//! the forwarding benchmark's frames.
//!
//! Phases: a steady state first (records appended and drained as they
//! come, as while Kafka keeps up: the RSS "before the outage"), then an
//! outage (appends only, RSS printed at every million waiting), then the
//! drain (read in order and removed, as the forwarder does), then RSS
//! after the drain and a short steady state again. Between outage and
//! drain the buffer is closed and opened again, as by a restart: the open
//! is timed (it walks every segment). Issue 16's goals:
//! RSS with 5,000,000 waiting ≤ 1.1 × RSS with 1,000,000 waiting, and RSS
//! after the drain within 10 % of before the outage.
//!
//! Run: `cargo bench --bench buffer_memory -- [RECORDS]` (default
//! 5,000,000; about 8 GB of disk under `$TMPDIR`). `cargo test
//! --all-targets` builds this target and runs it without `--bench`: it
//! then exits at once.

use std::time::Instant;

use genesys_kafka_bridge::buffer::{Buffer, BufferConfig};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The bridge's own jemalloc settings, so the figures match.
#[allow(non_upper_case_globals)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8; 60] = genesys_kafka_bridge::JEMALLOC_CONF;

/// The forwarding benchmark's average frame.
const RECORD_BYTES: usize = 1533;
/// The writer thread flushes each batch it wrote; batches of this size.
const FLUSH_EVERY: u64 = 2_000;
const STEADY: u64 = 200_000;
const TOPIC: &str = "v2.routing.queues.q1.observations";

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn append(buffer: &Buffer, n: u64, record: &[u8]) {
    for i in 0..n {
        buffer.append(i, TOPIC, None, record).expect("append");
        if i % FLUSH_EVERY == FLUSH_EVERY - 1 {
            buffer.flush_blocking().expect("flush");
        }
    }
    buffer.flush_blocking().expect("flush");
}

/// Reads everything in order and removes it, in batches as the forwarder
/// does; returns how many.
fn drain(buffer: &Buffer, mut cursor: u64) -> (u64, u64) {
    let mut drained = 0;
    loop {
        let (records, _) = buffer.read_after(cursor, 1_000).expect("read");
        let Some(last) = records.last() else {
            return (drained, cursor);
        };
        cursor = last.seq;
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        buffer.remove(&seqs).expect("remove");
        drained += seqs.len() as u64;
        if drained % FLUSH_EVERY < 1_000 {
            buffer.flush_blocking().expect("flush");
        }
    }
}

/// Appends and drains `n` in steps, as while Kafka keeps up.
fn steady(buffer: &Buffer, n: u64, record: &[u8], cursor: u64) -> u64 {
    let mut cursor = cursor;
    for _ in 0..n / FLUSH_EVERY {
        append(buffer, FLUSH_EVERY, record);
        cursor = drain(buffer, cursor).1;
    }
    cursor
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("buffer memory benchmark: skipped (not run by cargo test; run cargo bench --bench buffer_memory)");
        return;
    }
    let records: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map_or(5_000_000, |a| a.parse().expect("RECORDS must be a number"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = BufferConfig {
        // The benchmark's disk is not the bridge's: no floor to meet.
        min_free_bytes: 4 << 20,
        max_bytes: u64::MAX / 4,
        ..BufferConfig::default()
    };
    let buffer = Buffer::open_with_config(dir.path(), &config).expect("buffer opens");
    let record = vec![b'x'; RECORD_BYTES];

    let started = Instant::now();
    let cursor = steady(&buffer, STEADY, &record, 0);
    let before = rss_mib();
    println!(
        "steady state: {STEADY} appended and drained in {:.1} s; RSS {before:.1} MiB (before the outage)",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mut at_million = None;
    let mut peak = before;
    let mut waiting = 0u64;
    while waiting < records {
        let n = (records - waiting).min(1_000_000);
        append(&buffer, n, &record);
        waiting += n;
        let now = rss_mib();
        peak = peak.max(now);
        if waiting == 1_000_000 {
            at_million = Some(now);
        }
        println!(
            "outage: {waiting} waiting after {:.0} s; RSS {now:.1} MiB; segments on disk {}",
            started.elapsed().as_secs_f64(),
            std::fs::read_dir(dir.path().join("segments")).map_or(0, |d| d.count())
        );
    }
    let at_end = rss_mib();

    // A restart with the backlog waiting: the open walks every segment
    // (the census), during which a bridge reads no socket.
    drop(buffer);
    let started = Instant::now();
    let buffer = Buffer::open_with_config(dir.path(), &config).expect("buffer reopens");
    assert_eq!(buffer.len() as u64, records);
    println!(
        "reopened with {records} waiting in {:.1} s; RSS {:.1} MiB",
        started.elapsed().as_secs_f64(),
        rss_mib()
    );

    let started = Instant::now();
    let (drained, cursor) = drain(&buffer, cursor);
    let after = rss_mib();
    println!(
        "drain: {drained} in {:.1} s ({:.0}/s); RSS {after:.1} MiB; segments on disk {}",
        started.elapsed().as_secs_f64(),
        drained as f64 / started.elapsed().as_secs_f64(),
        std::fs::read_dir(dir.path().join("segments")).map_or(0, |d| d.count())
    );
    // jemalloc returns freed pages after its decay time (1 s, the
    // bridge's setting): measured again once that has passed.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let idle = rss_mib();
    println!("after the drain and 3 s idle: RSS {idle:.1} MiB");
    steady(&buffer, STEADY, &record, cursor);
    let settled = rss_mib();
    println!("steady state again: RSS {settled:.1} MiB");
    if let Some(million) = at_million {
        println!(
            "RSS with {records} waiting / with 1,000,000 waiting: {:.2} (goal <= 1.10)",
            at_end / million
        );
    }
    println!(
        "RSS after the drain / before the outage: {:.2} at once, {:.2} after 3 s idle, {:.2} in the steady state again (goal within 10 %); peak while filling {peak:.1} MiB",
        after / before,
        idle / before,
        settled / before
    );
}
