//! The bound and the free-space floor: refusing new events, counting
//! them exactly, keeping what is held, and taking events again after a
//! drain.

use super::{append_n, config, metric};
use crate::buffer::admission;
use crate::buffer::{Buffer, BufferConfig, BufferError, Refusal};

#[test]
fn the_bound_refuses_new_events_counts_them_and_opens_again_after_a_drain() {
    const MIB: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_with_config(dir.path(), &config(2 * MIB)).unwrap();
    // Held bytes reaching the bound refuse at once, before any sample.
    let mut held = Vec::new();
    let refused_at = loop {
        match buffer.append(1, "v2.a", None, &[b'x'; 1000]) {
            Ok(seq) => held.push(seq),
            Err(BufferError::Refused(_)) => break buffer.last_seq(),
            Err(e) => panic!("{e}"),
        }
        assert!(held.len() < 10_000, "never refused");
    };
    for _ in 0..41 {
        assert!(buffer.append(1, "v2.a", None, b"{}").is_err());
    }
    assert_eq!(buffer.refused(), 42);
    assert_eq!(metric(&buffer, "gkb_buffer_refused_events_total"), 42);
    assert_eq!(metric(&buffer, "gkb_buffer_admitting"), 0);
    assert_eq!(
        buffer.last_seq(),
        refused_at,
        "a refused event takes no sequence"
    );
    assert_eq!(buffer.len(), held.len(), "what is held is kept");
    let problems = buffer.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("42 refused") && p.contains("max_bytes")),
        "{problems:?}"
    );
    buffer.flush_blocking().unwrap();
    let path = dir.path();
    let sampled = buffer.inner.shared.admission.sample(path);
    assert_eq!(sampled, admission::Transition::Closed(Refusal::Limit));
    let disk_when_full = admission::dir_bytes(path);

    // Kafka takes it all: the file stays as large, admission opens anyway.
    buffer.remove(&held).unwrap();
    buffer.flush_blocking().unwrap();
    assert_eq!(
        buffer.inner.shared.admission.sample(path),
        admission::Transition::Opened
    );
    assert!(
        admission::dir_bytes(path) * 10 >= disk_when_full * 9,
        "sled's file is expected not to shrink ({} then {})",
        disk_when_full,
        admission::dir_bytes(path)
    );
    assert!(buffer.problems().is_empty(), "{:?}", buffer.problems());
    // A file as large as before is not a reason to close again: new
    // events reuse the space the drain freed.
    let again = append_n(&buffer, 500, 1000);
    buffer.flush_blocking().unwrap();
    eprintln!(
        "disk when full {disk_when_full}, after drain+500: {}",
        admission::dir_bytes(path)
    );
    assert_eq!(
        buffer.inner.shared.admission.sample(path),
        admission::Transition::None
    );
    assert_eq!(buffer.len(), again.len());
    assert_eq!(buffer.refused(), 42, "the count stays exact");
}

#[test]
fn the_free_space_floor_refuses_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let free = admission::free_bytes(dir.path()).unwrap();
    let buffer = Buffer::open_with_config(
        dir.path(),
        &BufferConfig {
            min_free_bytes: free.saturating_mul(2),
            ..config(u64::MAX)
        },
    )
    .unwrap();
    // The first sample is taken at open.
    assert!(matches!(
        buffer.append(1, "v2.a", None, b"{}"),
        Err(BufferError::Refused(_))
    ));
    assert_eq!(buffer.refusal(), Some(Refusal::FreeSpace));
    assert!(buffer.problems()[0].contains("min_free_bytes"));
    assert_eq!(buffer.refused(), 1);
}
