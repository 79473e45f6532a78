//! Model-based tests: the buffer must behave like an ordered map that
//! survives being closed and reopened.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        topic: u8,
        payload: Vec<u8>,
    },
    RemoveOldest(usize),
    RemoveNewest,
    DeadLetterOldest,
    Read {
        after_index: usize,
        limit: usize,
    },
    Get(usize),
    Reopen,
    /// A storage failure: the newest unflushed records vanish from sled,
    /// as after ENOSPC, and the buffer reopens in-process.
    FailAndReopen {
        vanish: usize,
    },
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(topic, payload)| Op::Append { topic, payload }),
        // Chunked records (format 2) take part in everything too.
        1 => (any::<u8>(), proptest::collection::vec(any::<u8>(), 3990..9000))
            .prop_map(|(topic, payload)| Op::Append { topic, payload }),
        2 => (1usize..5).prop_map(Op::RemoveOldest),
        1 => Just(Op::RemoveNewest),
        1 => Just(Op::DeadLetterOldest),
        2 => (0usize..20, 1usize..10).prop_map(|(after_index, limit)| Op::Read { after_index, limit }),
        1 => (0usize..20).prop_map(Op::Get),
        1 => Just(Op::Reopen),
        1 => (0usize..4).prop_map(|vanish| Op::FailAndReopen { vanish }),
        1 => Just(Op::Flush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn behaves_like_an_ordered_map(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let open = |path: &Path| {
            let buffer = Buffer::open_for_tests(path).unwrap();
            // This test reopens by hand; the watcher must not race it.
            buffer.inner.shared.auto_reopen.store(false, Ordering::SeqCst);
            buffer
        };
        let mut buffer = open(dir.path());
        let mut model: BTreeMap<u64, Record> = BTreeMap::new();
        let mut dead = 0usize;
        let mut dead_max = 0u64;
        let mut last_seq = 0u64;
        let mut generation = 0u64;
        for op in ops {
            match op {
                Op::Append { topic, payload } => {
                    let name = format!("v2.users.u{topic}.presence");
                    let corr = (topic % 2 == 0).then(|| format!("c{topic}"));
                    let seq = buffer.append(7, &name, corr.as_deref(), &payload).unwrap();
                    prop_assert!(seq > last_seq, "sequences only grow");
                    last_seq = seq;
                    model.insert(seq, Record { seq, received_at_ms: 7, topic_name: name, correlation_id: corr, payload });
                }
                Op::RemoveOldest(n) => {
                    let mut seqs: Vec<u64> = model.keys().take(n).copied().collect();
                    // Removing a record twice (an ack seen twice) counts once.
                    seqs.extend(seqs.clone());
                    buffer.remove(&seqs).unwrap();
                    for s in seqs { model.remove(&s); }
                }
                Op::RemoveNewest => {
                    if let Some(&s) = model.keys().next_back() {
                        buffer.remove(&[s]).unwrap();
                        model.remove(&s);
                    }
                }
                Op::DeadLetterOldest => {
                    if let Some((_, r)) = model.pop_first() {
                        buffer.dead_letter(&r, "k", "refused").unwrap();
                        dead += 1;
                        dead_max = dead_max.max(r.seq);
                    }
                }
                Op::Read { after_index, limit } => {
                    let after = model.keys().nth(after_index).copied().unwrap_or(0);
                    let (got, quarantined) = buffer.read_after(after, limit).unwrap();
                    prop_assert!(quarantined.is_empty());
                    let want: Vec<Record> = model.range(after + 1..).take(limit).map(|(_, r)| r.clone()).collect();
                    prop_assert_eq!(got, want);
                }
                Op::Get(index) => {
                    let seq = model.keys().nth(index).copied().unwrap_or(last_seq + 1);
                    prop_assert_eq!(buffer.get(seq).unwrap(), model.get(&seq).cloned());
                }
                Op::Flush => {
                    buffer.flush_blocking().unwrap();
                    prop_assert_eq!(buffer.durable_seq(), buffer.last_seq());
                }
                Op::FailAndReopen { vanish } => {
                    let store = buffer.store().unwrap();
                    let unflushed: Vec<u64> = model
                        .keys()
                        .copied()
                        .filter(|s| *s > buffer.durable_seq())
                        .rev()
                        .take(vanish)
                        .collect();
                    for seq in &unflushed {
                        store.remove(Area::Events, *seq).unwrap();
                    }
                    drop(store);
                    buffer.fail("a test", &"injected");
                    let refused = matches!(buffer.append(1, "v2.x", None, b"{}"), Err(BufferError::Refused(_)));
                    prop_assert!(refused, "a failing buffer refuses");
                    prop_assert!(!buffer.problems().is_empty());
                    buffer.reopen().unwrap();
                    generation += 1;
                    prop_assert_eq!(buffer.generation(), generation);
                    prop_assert!(buffer.problems().is_empty(), "{:?}", buffer.problems());
                    prop_assert_eq!(buffer.lost(), 0, "every vanished record was written back");
                    prop_assert_eq!(buffer.last_seq(), last_seq, "sequences never go back");
                }
                Op::Reopen => {
                    buffer.flush_blocking().unwrap();
                    drop(buffer);
                    buffer = open(dir.path());
                    prop_assert!(buffer.last_seq() <= last_seq);
                    // A reopened buffer may reuse sequences of records that
                    // are gone everywhere, never of one it still keeps.
                    last_seq = model.keys().next_back().copied().unwrap_or(0).max(dead_max);
                    prop_assert_eq!(buffer.last_seq(), last_seq);
                    generation = 0;
                }
            }
            prop_assert_eq!(buffer.len(), model.len());
            prop_assert_eq!(buffer.len(), buffer.store().unwrap().events.len(), "the counter matches the tree");
            prop_assert_eq!(buffer.dead_letter_len(), dead);
            let census = buffer.store().unwrap().census().unwrap();
            prop_assert_eq!(census.held_bytes, buffer.inner.shared.admission.held_bytes.load(Ordering::SeqCst), "held bytes are counted exactly");
            prop_assert_eq!(census.orphan_chunks, 0);
        }
        let (all, _) = buffer.read_after(0, usize::MAX).unwrap();
        prop_assert_eq!(all, model.into_values().collect::<Vec<_>>());
    }
}

#[test]
fn newer_format_is_refused_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert(META_FORMAT_KEY, &(FORMAT_VERSION + 1).to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = Buffer::open_for_tests(dir.path())
        .err()
        .expect("must refuse");
    assert!(matches!(err, BufferError::NewerFormat { found, .. } if found == FORMAT_VERSION + 1));
    let db = sled::open(dir.path()).unwrap();
    let meta = db.open_tree("meta").unwrap();
    assert_eq!(
        meta.get(META_FORMAT_KEY).unwrap().unwrap().as_ref(),
        (FORMAT_VERSION + 1).to_be_bytes()
    );
}

#[test]
fn undecodable_entries_are_quarantined_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let good = {
        // Damage written behind the buffer's back, as a bad disk would.
        let buffer = Buffer::open_for_tests(dir.path()).unwrap();
        let good = buffer.append(1, "v2.a", None, b"{}").unwrap();
        buffer
            .store()
            .unwrap()
            .events
            .insert(99u64.to_be_bytes(), &[42u8, 1, 2][..])
            .unwrap();
        buffer.flush_blocking().unwrap();
        good
    };
    let buffer = Buffer::open_for_tests(dir.path()).unwrap();
    assert_eq!(buffer.len(), 2);
    let (records, quarantined) = buffer.read_after(0, 10).unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [good]);
    assert_eq!(quarantined, [99]);
    assert_eq!(buffer.quarantine_len(), 1);
    assert_eq!(buffer.len(), 1);
    let frame = buffer.quarantine_frame("not JSON", b"\xffgarbage").unwrap();
    assert!(frame > 99, "a quarantined frame takes a fresh sequence");
    let kept = buffer.quarantined().unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let entry = kept.iter().find(|q| q.seq == 99).unwrap();
    assert_eq!(entry.kind, "undecodable buffer entry");
    assert_eq!(entry.bytes_base64, "KgEC");
    let garbage = kept.iter().find(|q| q.seq == frame).unwrap();
    assert_eq!(
        (garbage.kind.as_str(), garbage.reason.as_str()),
        ("malformed frame", "not JSON")
    );
    assert_eq!(garbage.bytes_base64, "/2dhcmJhZ2U=");
}

#[test]
fn dead_letters_keep_the_reason_and_payload() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_for_tests(dir.path()).unwrap();
    let seq = buffer.append(5, "v2.a", Some("c"), b"{\"x\":1}").unwrap();
    let (records, _) = buffer.read_after(0, 1).unwrap();
    buffer
        .dead_letter(&records[0], "topic-k", "MessageSizeTooLarge")
        .unwrap();
    assert!(buffer.is_empty());
    let letters = buffer.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].seq, seq);
    assert_eq!(letters[0].reason, "MessageSizeTooLarge");
    assert_eq!(letters[0].payload, "{\"x\":1}");
}

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

fn metric(buffer: &Buffer, name: &str) -> u64 {
    let values = buffer.metric_values();
    values
        .iter()
        .find(|(n, ..)| name.strip_prefix("gkb_") == Some(n))
        .unwrap_or_else(|| panic!("{name} missing from {values:?}"))
        .3
}

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

#[test]
fn no_value_reaches_sleds_blob_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_with_config(dir.path(), &config(u64::MAX)).unwrap();
    let sizes = [
        100,
        3_990,
        4_000,
        4_001,
        9_000,
        15_000,
        40_000,
        200_000,
        1 << 20,
    ];
    let mut kept = BTreeMap::new();
    for round in 0..12 {
        for size in sizes {
            let payload = vec![b'a' + (round % 26) as u8; size];
            let seq = buffer.append(round, "v2.a", Some("c"), &payload).unwrap();
            kept.insert(seq, payload);
        }
        // Holes, as acknowledgements of several topics leave them.
        let gone: Vec<u64> = kept.keys().copied().step_by(3).collect();
        buffer.remove(&gone).unwrap();
        for seq in gone {
            kept.remove(&seq);
        }
        buffer.flush_blocking().unwrap();
    }
    let (first, _) = buffer.read_after(0, 1).unwrap();
    buffer.dead_letter(&first[0], "k", "too large").unwrap();
    kept.remove(&first[0].seq);
    buffer
        .quarantine_frame("binary", &vec![0u8; 300_000])
        .unwrap();
    buffer.flush_blocking().unwrap();
    let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
    assert_eq!(blobs, 0, "sled wrote blob files");
    let (records, _) = buffer.read_after(0, usize::MAX).unwrap();
    assert_eq!(records.len(), kept.len());
    for r in &records {
        assert_eq!(&r.payload, &kept[&r.seq]);
    }
    assert_eq!(
        buffer.dead_letters().unwrap()[0].payload.len(),
        first[0].payload.len()
    );
    assert_eq!(buffer.quarantined().unwrap().len(), 1);

    // The same sizes stored whole do make blobs: the check above can fail.
    let raw_dir = tempfile::tempdir().unwrap();
    let raw = sled::open(raw_dir.path()).unwrap();
    for seq in 0u64..40 {
        raw.insert(seq.to_be_bytes(), vec![b'x'; 15_000]).unwrap();
    }
    raw.flush().unwrap();
    assert!(
        std::fs::read_dir(raw_dir.path().join("blobs"))
            .unwrap()
            .count()
            > 0
    );
}

#[test]
fn get_reads_one_record_by_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_for_tests(dir.path()).unwrap();
    let small = buffer.append(1, "v2.a", Some("c"), b"{\"a\":1}").unwrap();
    let large = buffer.append(2, "v2.b", None, &vec![b'y'; 50_000]).unwrap();
    assert_eq!(buffer.get(small).unwrap().unwrap().payload, b"{\"a\":1}");
    let r = buffer.get(large).unwrap().unwrap();
    assert_eq!(
        (r.seq, r.received_at_ms, r.payload.len()),
        (large, 2, 50_000)
    );
    assert_eq!(buffer.get(large + 1).unwrap(), None);
    buffer.remove(&[large]).unwrap();
    assert_eq!(buffer.get(large).unwrap(), None);
}

#[test]
fn a_chunked_record_missing_a_chunk_is_quarantined_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_for_tests(dir.path()).unwrap();
    let broken = buffer.append(1, "v2.a", None, &vec![b'z'; 20_000]).unwrap();
    let after = buffer.append(1, "v2.a", None, b"{}").unwrap();
    let store = buffer.store().unwrap();
    let second_chunk = store.chunks.iter().keys().nth(1).unwrap().unwrap();
    store.chunks.remove(second_chunk).unwrap();
    drop(store);
    // The damage is on disk; the in-memory tail still holds the record as
    // it was appended. A restarted bridge reads the disk: do the same.
    buffer.forget_tail();
    let (records, quarantined) = buffer.read_after(0, 10).unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [after]);
    assert_eq!(quarantined, [broken]);
    let q = &buffer.quarantined().unwrap()[0];
    assert!(q.reason.contains("1 of 6 chunks"), "{}", q.reason);
    assert_eq!(buffer.len(), 1);
}

#[test]
fn orphan_chunks_from_a_cut_write_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let buffer = Buffer::open_for_tests(dir.path()).unwrap();
        let seq = buffer.append(1, "v2.a", None, &vec![b'z'; 20_000]).unwrap();
        // A crash after the chunks, before the stub.
        buffer
            .store()
            .unwrap()
            .events
            .remove(seq.to_be_bytes())
            .unwrap();
        buffer.flush_blocking().unwrap();
    }
    let buffer = Buffer::open_for_tests(dir.path()).unwrap();
    assert_eq!(buffer.store().unwrap().chunks.len(), 0);
    assert!(buffer.is_empty());
}

/// Writes a format-1 database as the previous release did: records whole,
/// however large.
fn write_v1(path: &Path, records: &[Record]) {
    let db = sled::open(path).unwrap();
    db.open_tree("meta")
        .unwrap()
        .insert(META_FORMAT_KEY, &1u32.to_be_bytes())
        .unwrap();
    let events = db.open_tree("events").unwrap();
    for r in records {
        events.insert(r.seq.to_be_bytes(), r.encode()).unwrap();
    }
    db.flush().unwrap();
}

fn v1_records(seqs: std::ops::RangeInclusive<u64>, size: usize) -> Vec<Record> {
    seqs.map(|seq| Record {
        seq,
        received_at_ms: seq,
        topic_name: format!("v2.t{seq}"),
        correlation_id: None,
        payload: vec![b'p'; size],
    })
    .collect()
}

#[test]
fn a_version_1_buffer_is_migrated_and_its_records_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = v1_records(1..=3, 10);
    records.extend(v1_records(4..=6, 300_000));
    write_v1(dir.path(), &records);
    let buffer = Buffer::open_for_tests(dir.path()).unwrap();
    let marker = buffer
        .store()
        .unwrap()
        .meta
        .get(META_FORMAT_KEY)
        .unwrap()
        .unwrap();
    assert_eq!(marker.as_ref(), FORMAT_VERSION.to_be_bytes());
    assert_eq!(buffer.read_after(0, 100).unwrap().0, records);
    buffer.remove(&[1, 5]).unwrap();
    assert_eq!(buffer.len(), 4);
    let census = buffer.store().unwrap().census().unwrap();
    assert_eq!(
        census.held_bytes,
        buffer
            .inner
            .shared
            .admission
            .held_bytes
            .load(Ordering::SeqCst)
    );
}

#[test]
fn a_damaged_file_costs_what_follows_the_damage_and_never_wedges() {
    let dir = tempfile::tempdir().unwrap();
    // Format 1 kept these in blob files, which sled re-reads when it
    // replays its log at open: damage there ends the replay early.
    let mut records = v1_records(1..=40, 30_000);
    records.extend(v1_records(41..=80, 10));
    write_v1(dir.path(), &records);
    let blobs: Vec<PathBuf> = std::fs::read_dir(dir.path().join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!blobs.is_empty());
    for blob in &blobs {
        let mut bytes = std::fs::read(blob).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(blob, bytes).unwrap();
    }
    let buffer = Buffer::open_for_tests(dir.path()).unwrap();
    let (got, quarantined) = buffer.read_after(0, 1000).unwrap();
    eprintln!(
        "damaged blobs: {} of 80 records readable after open",
        got.len()
    );
    assert!(
        got.len() < 80,
        "nothing was damaged: the test proves nothing"
    );
    assert!(quarantined.is_empty());
    // What sled loses depends on where the damage lies in its log, which
    // depends on timing: usually the damaged record and all after it, but
    // once seen (a CI rehearsal): record 10 lost, 11–17 kept, 18–80 lost.
    // What it returns is always intact and in order.
    for record in &got {
        assert_eq!(
            record,
            &records[record.seq as usize - 1],
            "what is read is intact"
        );
    }
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
    // The buffer works on; new events take sequences above every record
    // it still holds (those lost with the log's tail are free again).
    let seq = buffer.append(1, "v2.a", None, b"{}").unwrap();
    assert!(seq > got.last().unwrap().seq);
    let all: Vec<u64> = got.iter().map(|r| r.seq).chain([seq]).collect();
    buffer.remove(&all).unwrap();
    assert!(buffer.is_empty());
}

#[test]
fn first_readable_finds_the_end_of_a_damaged_range() {
    for (from, first_good) in [
        (5u64, 6u64),
        (5, 7),
        (5, 1_000),
        (0, 1 << 40),
        (7, u64::MAX),
    ] {
        let found = store::first_readable_by(from, |k| k >= first_good);
        assert_eq!(found, Some(first_good), "from {from}");
    }
    assert_eq!(store::first_readable_by(3, |_| false), None);
}

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
