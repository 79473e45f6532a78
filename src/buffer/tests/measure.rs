//! Not a check: what a backlog of a million events costs in memory.

use std::path::PathBuf;
use std::time::Instant;

use crate::buffer::admission;
use crate::buffer::{Buffer, BufferConfig};

/// Not a check: prints the memory a large backlog costs. Run with
/// `GKB_MEASURE_CACHE_MIB=16 cargo test --release --lib buffer::tests::measure -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_rss_with_a_million_events_waiting() {
    let cache_mib = std::env::var("GKB_MEASURE_CACHE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let rss = || {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                / 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    };
    // GKB_MEASURE_DIR keeps the buffer for a second run, which then
    // measures a process that only opens and drains it.
    let temp = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("GKB_MEASURE_DIR").map(PathBuf::from);
    let dir = kept.as_deref().unwrap_or(temp.path());
    let fresh = !dir.join("db").exists();
    let config = BufferConfig {
        cache_mib,
        min_free_bytes: 4 * 1024 * 1024,
        ..BufferConfig::default()
    };
    let payload = vec![b'x'; 1_000];
    let started = Instant::now();
    if fresh {
        let buffer = Buffer::open_with_config(dir, &config).unwrap();
        for i in 0..1_000_000u64 {
            buffer
                .append(
                    i,
                    "v2.analytics.queues.q1.observations",
                    Some("c"),
                    &payload,
                )
                .unwrap();
            if i % 2_000 == 1_999 {
                buffer.flush_blocking().unwrap();
            }
        }
        buffer.flush_blocking().unwrap();
        let (now, peak) = rss();
        eprintln!(
            "cache {cache_mib} MiB: 1,000,000 appended in {:?}; RSS {now} MiB (peak {peak} MiB); files {} MiB",
            started.elapsed(),
            admission::dir_bytes(dir) >> 20
        );
        if kept.is_some() {
            return;
        }
    }
    let reopened = Instant::now();
    let buffer = Buffer::open_with_config(dir, &config).unwrap();
    assert_eq!(buffer.len(), 1_000_000);
    let (now, peak) = rss();
    eprintln!(
        "reopened (census of 1,000,000) in {:?}; RSS {now} MiB (peak {peak} MiB)",
        reopened.elapsed()
    );
    let read = Instant::now();
    let mut cursor = 0;
    loop {
        let (records, _) = buffer.read_after(cursor, 1024).unwrap();
        let Some(last) = records.last() else { break };
        cursor = last.seq;
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        buffer.remove(&seqs).unwrap();
    }
    buffer.flush_blocking().unwrap();
    let (now, peak) = rss();
    eprintln!(
        "read and removed 1,000,000 in {:?}; RSS {now} MiB (peak {peak} MiB)",
        read.elapsed()
    );
}
