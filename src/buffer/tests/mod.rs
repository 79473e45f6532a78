//! Tests of the buffer as a whole, by concern: the model (`model.rs`), the
//! bound (`bounds.rs`), storage failures (`recovery.rs`), the on-disk
//! format and damage (`format.rs`), and a memory measurement that only
//! prints (`measure.rs`).

mod bounds;
mod format;
mod measure;
mod model;
mod recovery;
mod segments;

use super::{Buffer, BufferConfig};

fn config(max_bytes: u64) -> BufferConfig {
    BufferConfig {
        max_bytes,
        // The tests measure the bound alone; the machine's free space is
        // not theirs to depend on.
        min_free_bytes: 0,
        cache_mib: 8,
        // Samples are taken by the tests themselves, not the watcher.
        check_interval_ms: 3_600_000,
        ..BufferConfig::default()
    }
}

fn append_n(buffer: &Buffer, n: usize, size: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            buffer
                .append(i as u64, "v2.users.u.presence", None, &vec![b'x'; size])
                .unwrap()
        })
        .collect()
}

/// The value of series `name` (`gkb_…`) as the buffer's collector
/// encodes it.
fn metric(buffer: &Buffer, name: &str) -> u64 {
    let text = super::metrics::render(buffer);
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from {text}"));
    value
        .parse::<f64>()
        .unwrap_or_else(|e| panic!("{name} = {value}: {e}")) as u64
}
