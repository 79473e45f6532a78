//! The on-disk format and damage to it: the format marker and the
//! migration from version 1, chunked values (no sled blob files, missing
//! and orphan chunks), undecodable entries and ranges sled cannot read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::config;
use crate::buffer::migrate::META_FORMAT_KEY;
use crate::buffer::{store, Buffer, BufferError, Record, FORMAT_VERSION};

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
            .events_keyed_for_tests(99)
            .values
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
fn a_chunked_record_missing_a_chunk_is_quarantined_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_for_tests(dir.path()).unwrap();
    let broken = buffer.append(1, "v2.a", None, &vec![b'z'; 20_000]).unwrap();
    let after = buffer.append(1, "v2.a", None, b"{}").unwrap();
    let chunks = buffer
        .store()
        .unwrap()
        .events_keyed_for_tests(broken)
        .chunks;
    let second_chunk = chunks.iter().keys().nth(1).unwrap().unwrap();
    chunks.remove(second_chunk).unwrap();
    drop(chunks);
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
    let seq = {
        let buffer = Buffer::open_for_tests(dir.path()).unwrap();
        let seq = buffer.append(1, "v2.a", None, &vec![b'z'; 20_000]).unwrap();
        // A crash after the chunks, before the stub.
        buffer
            .store()
            .unwrap()
            .events_keyed_for_tests(seq)
            .values
            .remove(seq.to_be_bytes())
            .unwrap();
        buffer.flush_blocking().unwrap();
        seq
    };
    let buffer = Buffer::open_for_tests(dir.path()).unwrap();
    let store = buffer.store().unwrap();
    assert_eq!(store.chunks.len(), 0);
    assert_eq!(store.events_keyed_for_tests(seq).chunks.len(), 0);
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
        kind: Default::default(),
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
