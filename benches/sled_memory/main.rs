//! What sled 0.34 itself costs in memory to hold a backlog, apart from
//! everything else the bridge does: one process, one sled database opened
//! as the buffer opens it (high-throughput mode, the given cache), values
//! the size of the benchmark's frames, inserted in sequence order with a
//! flush every 50,000 records and then removed in order, as a drain does.
//!
//! It answers two questions the forwarding benchmark cannot separate:
//! how much of the bridge's RSS with a large backlog is sled's floor, and
//! whether packing several records into one sled value (fewer keys) would
//! lower it. Measured on the 2-core machine, 1,000,000 × 1,533 bytes,
//! jemalloc as in the bridge (RSS peak while filling):
//!
//! | records per value | RSS peak (two runs) |
//! |---|---|
//! | 1 (format 2) | 59–62 MiB; with a cache of 1 MiB: 58–61 MiB; of 32 MiB: 202–203 MiB |
//! | 2 | 75 MiB |
//! | 4 | 99–115 MiB |
//! | 8 | 132–159 MiB |
//! | 32 | 367–370 MiB |
//!
//! So sled alone needs about 60 MiB for a million waiting events whatever
//! its cache is told, and larger values make it worse, not better.
//!
//! Run: `cargo bench --bench sled_memory -- [RECORDS] [PER_VALUE] [CACHE_MIB]`
//! (defaults 1,000,000, 1 and 8). `cargo test --all-targets` builds this
//! target and runs it without `--bench`: it then exits at once.

use std::time::Instant;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The bridge's own jemalloc settings, so the figures match.
#[allow(non_upper_case_globals)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8; 60] = genesys_kafka_bridge::JEMALLOC_CONF;

/// The benchmark's average frame (benches/forwarding).
const RECORD_BYTES: usize = 1533;
const FLUSH_EVERY: usize = 50_000;

fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

fn arg(args: &[String], index: usize, default: usize) -> usize {
    args.get(index).map_or(default, |a| {
        a.parse()
            .unwrap_or_else(|_| panic!("argument {index} must be a number, got {a:?}"))
    })
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !std::env::args().any(|a| a == "--bench") {
        println!("sled memory benchmark: skipped (not run by cargo test; run cargo bench --bench sled_memory)");
        return;
    }
    let records = arg(&args, 0, 1_000_000);
    let per_value = arg(&args, 1, 1).max(1);
    let cache_mib = arg(&args, 2, 8) as u64;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = sled::Config::new()
        .path(dir.path())
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(cache_mib << 20)
        .open()
        .expect("sled opens");
    let events = db.open_tree("events").expect("a tree");
    let record = vec![b'x'; RECORD_BYTES];
    let mut value = Vec::with_capacity(per_value * RECORD_BYTES);
    let mut key = 0u64;
    let mut peak = rss_mib();

    let started = Instant::now();
    for i in 0..records {
        value.extend_from_slice(&record);
        if (i + 1) % per_value == 0 || i + 1 == records {
            events
                .insert(key.to_be_bytes(), value.as_slice())
                .expect("insert");
            key += 1;
            value.clear();
        }
        if (i + 1) % FLUSH_EVERY == 0 {
            db.flush().expect("flush");
            peak = peak.max(rss_mib());
        }
    }
    db.flush().expect("flush");
    peak = peak.max(rss_mib());
    println!(
        "filled: {records} records of {RECORD_BYTES} bytes, {per_value} per sled value ({key} keys), cache {cache_mib} MiB: {:.1} s; RSS {} MiB, peak {peak} MiB",
        started.elapsed().as_secs_f64(),
        rss_mib()
    );

    let started = Instant::now();
    let mut removed = 0usize;
    for entry in events.iter() {
        let (key, _) = entry.expect("read");
        events.remove(key).expect("remove");
        removed += 1;
        if removed % (FLUSH_EVERY / per_value).max(1) == 0 {
            db.flush().expect("flush");
            peak = peak.max(rss_mib());
        }
    }
    db.flush().expect("flush");
    println!(
        "drained: {removed} keys in {:.1} s; RSS {} MiB, peak {peak} MiB",
        started.elapsed().as_secs_f64(),
        rss_mib()
    );
}
