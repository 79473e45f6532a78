//! Storage failures: the reopen writes back what the disk lost and
//! counts what it could not, and the watcher reopens by itself.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{append_n, config, metric};
use crate::buffer::store::Area;
use crate::buffer::{Buffer, BufferError, Record};

#[test]
fn a_reopen_writes_back_unflushed_events_and_counts_what_it_could_not() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_with_config(dir.path(), &config(u64::MAX)).unwrap();
    buffer
        .inner
        .shared
        .auto_reopen
        .store(false, Ordering::SeqCst);
    let durable = append_n(&buffer, 3, 100);
    let acked = append_n(&buffer, 1, 100)[0];
    let refused = append_n(&buffer, 1, 100)[0];
    buffer.flush_blocking().unwrap();
    // Kafka took one and refused one for good, after the last flush…
    buffer.remove(&[acked]).unwrap();
    let record = buffer.get(refused).unwrap().unwrap();
    buffer.dead_letter(&record, "k", "too large").unwrap();
    // Copies are kept up to 8 MiB: the third large event's is not.
    let large = append_n(&buffer, 3, 3 << 20);
    let small = append_n(&buffer, 2, 100);
    // What sled does after ENOSPC: accepted writes missing on reopen.
    let store = buffer.store().unwrap();
    for seq in large.iter().chain(&small) {
        store.remove(Area::Events, *seq).unwrap();
    }
    // …and the disk kept neither change.
    let value = |seq: u64, r: &Record| {
        store
            .put(
                Area::Events,
                seq,
                Record { seq, ..r.clone() }.encode().into(),
            )
            .unwrap()
    };
    value(acked, &record);
    value(refused, &record);
    store.remove(Area::DeadLetter, refused).unwrap();
    drop(store);
    buffer.fail("a flush", &"No space left on device (injected)");
    assert!(matches!(
        buffer.append(1, "v2.a", None, b"{}"),
        Err(BufferError::Refused(_))
    ));
    assert!(matches!(
        buffer.read_after(0, 10),
        Err(BufferError::Failing(_))
    ));
    assert!(
        buffer.problems()[0].contains("No space left"),
        "{:?}",
        buffer.problems()
    );
    assert_eq!(metric(&buffer, "gkb_buffer_failing"), 1);

    buffer.reopen().unwrap();
    assert_eq!(buffer.generation(), 1);
    // Four events and one dead letter written back.
    assert_eq!(metric(&buffer, "gkb_buffer_restored_events_total"), 5);
    assert_eq!(buffer.dead_letters().unwrap()[0].seq, refused);
    assert_eq!(buffer.dead_letter_len(), 1);
    assert_eq!(buffer.lost(), 1);
    assert_eq!(metric(&buffer, "gkb_buffer_lost_events_total"), 1);
    assert!(
        buffer
            .problems()
            .iter()
            .any(|p| p.starts_with("1 received events lost")),
        "{:?}",
        buffer.problems()
    );
    let (records, _) = buffer.read_after(0, 100).unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    let want: Vec<u64> = durable
        .iter()
        .chain(&large[..2])
        .chain(&small)
        .copied()
        .collect();
    assert_eq!(seqs, want);
    assert_eq!(buffer.len(), want.len());
    assert_eq!(records[3].payload.len(), 3 << 20);
    let next = buffer.append(1, "v2.a", None, b"{}").unwrap();
    assert!(next > small[1], "sequences keep growing across a reopen");
    assert_eq!(buffer.durable_seq(), small[1]);
}

#[test]
fn the_watcher_reopens_a_failed_buffer_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_with_config(dir.path(), &config(u64::MAX)).unwrap();
    let seq = buffer.append(1, "v2.a", None, b"{}").unwrap();
    buffer.fail("a write", &"injected");
    let deadline = Instant::now() + Duration::from_secs(20);
    while buffer.generation() == 0 {
        assert!(
            Instant::now() < deadline,
            "not reopened: {:?}",
            buffer.problems()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(buffer.get(seq).unwrap().unwrap().payload, b"{}");
    assert!(buffer.append(1, "v2.a", None, b"{}").is_ok());
}
