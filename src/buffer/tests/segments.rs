//! Segments: the events spread over several sled databases, read in
//! order across them, a drained one deleted whole, few open at once, and
//! the same after a restart and from a format-2 buffer.

use std::path::Path;

use crate::buffer::segments::{MAX_OPEN, SEGMENTS_DIR};
use crate::buffer::{Buffer, BufferConfig};

fn small_segments(path: &Path, segment_bytes: u64) -> Buffer {
    let config = BufferConfig {
        min_free_bytes: 4 << 20,
        segment_bytes,
        ..BufferConfig::default()
    };
    Buffer::open_with_config(path, &config).unwrap()
}

fn segment_dirs(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path.join(SEGMENTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn payload(seq: u64) -> Vec<u8> {
    let mut p = format!("{{\"n\":{seq}}}").into_bytes();
    // Every tenth one is chunked.
    p.resize(if seq % 10 == 0 { 9_000 } else { 1_000 }, b' ');
    p
}

#[test]
fn events_roll_over_into_segments_read_in_order_and_drained_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = small_segments(dir.path(), 20_000);
    let seqs: Vec<u64> = (1..=200)
        .map(|i| buffer.append(i, "v2.a", None, &payload(i)).unwrap())
        .collect();
    let made = segment_dirs(dir.path()).len();
    assert!(
        made >= 10,
        "200 events of ~1.8 KB in 20 KB segments: {made}"
    );
    assert!(buffer.store().unwrap().segments.open_count() <= MAX_OPEN);

    // From sled, not the tail: across every segment, in order.
    buffer.forget_tail();
    let (records, quarantined) = buffer.read_after(0, usize::MAX).unwrap();
    assert!(quarantined.is_empty());
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), seqs);
    assert!(records
        .iter()
        .all(|r| r.payload == payload(r.received_at_ms)));
    assert!(buffer.store().unwrap().segments.open_count() <= MAX_OPEN);

    // Acknowledge the older half out of order: the segments it emptied go.
    let mut older: Vec<u64> = seqs[..100].to_vec();
    older.reverse();
    buffer.remove(&older).unwrap();
    let left = segment_dirs(dir.path()).len();
    assert!(left < made, "drained segments deleted: {made} → {left}");
    assert_eq!(buffer.len(), 100);
    let (records, _) = buffer.read_after(0, usize::MAX).unwrap();
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        &seqs[100..]
    );

    // A restart counts them again, segment by segment.
    buffer.flush_blocking().unwrap();
    drop(buffer);
    let buffer = small_segments(dir.path(), 20_000);
    assert_eq!(buffer.len(), 100);
    assert_eq!(buffer.last_seq(), 200);
    let (records, _) = buffer.read_after(150, 10).unwrap();
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (151..=160).collect::<Vec<_>>()
    );

    // Everything acknowledged: one (new, empty) segment at most is left,
    // and the next append is read after a restart.
    buffer.remove(&seqs[100..]).unwrap();
    assert!(buffer.is_empty());
    assert!(
        segment_dirs(dir.path()).len() <= 1,
        "{:?}",
        segment_dirs(dir.path())
    );
    let next = buffer.append(1, "v2.b", None, b"{}").unwrap();
    assert_eq!(next, 201);
    buffer.flush_blocking().unwrap();
    drop(buffer);
    let buffer = small_segments(dir.path(), 20_000);
    let (records, _) = buffer.read_after(0, 10).unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [201]);
}

#[test]
fn a_crash_between_segments_leaves_nothing_behind_and_loses_nothing() {
    // An empty segment left by a deletion cut short, and a stray file:
    // the empty one is removed at open, the file ignored.
    let dir = tempfile::tempdir().unwrap();
    let buffer = small_segments(dir.path(), 20_000);
    let seqs: Vec<u64> = (1..=60)
        .map(|i| buffer.append(i, "v2.a", None, &payload(i)).unwrap())
        .collect();
    buffer.flush_blocking().unwrap();
    drop(buffer);
    let empty = dir
        .path()
        .join(SEGMENTS_DIR)
        .join(format!("{:020}", 1_000_000));
    std::fs::create_dir(&empty).unwrap();
    let before = dir.path().join(SEGMENTS_DIR).join(format!("{:020}", 0));
    std::fs::create_dir(&before).unwrap();
    std::fs::write(dir.path().join(SEGMENTS_DIR).join("notes.txt"), b"x").unwrap();
    let buffer = small_segments(dir.path(), 20_000);
    assert!(!empty.exists() && !before.exists());
    assert_eq!(buffer.len(), 60);
    let (records, _) = buffer.read_after(0, usize::MAX).unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(buffer.append(1, "v2.a", None, b"{}").unwrap(), 61);
}

/// The payload `write_format_2_fixture` wrote for `seq` (see
/// `tests/fixtures/README.md`).
fn fixture_payload(seq: u64) -> Vec<u8> {
    let size = if seq % 50 == 0 {
        10_000
    } else {
        200 + (seq as usize % 13)
    };
    let mut payload = format!("{{\"seq\":{seq},\"pad\":\"").into_bytes();
    payload.resize(size - 2, b'a' + (seq % 26) as u8);
    payload.extend_from_slice(b"\"}");
    payload
}

#[test]
fn a_format_2_buffer_written_by_the_previous_release_is_read_whole_then_new_events_follow() {
    let dir = tempfile::tempdir().unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/buffer-format-2.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let buffer = small_segments(dir.path(), 20_000);
    let marker = buffer
        .store()
        .unwrap()
        .meta
        .get(crate::buffer::migrate::META_FORMAT_KEY)
        .unwrap()
        .unwrap();
    assert_eq!(marker.as_ref(), crate::buffer::FORMAT_VERSION.to_be_bytes());
    let kept: Vec<u64> = (6..=300).filter(|&s| s != 10).collect();
    assert_eq!(buffer.len(), kept.len());
    assert_eq!(buffer.last_seq(), 300);
    let letters = buffer.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].seq, letters[0].reason.as_str()),
        (10, "MessageSizeTooLarge")
    );

    // New events go to segments, after the old ones.
    let new: Vec<u64> = (1..=40)
        .map(|i| buffer.append(i, "v2.new", None, &payload(i)).unwrap())
        .collect();
    assert_eq!(new[0], 301);
    assert!(!segment_dirs(dir.path()).is_empty());
    buffer.forget_tail();
    let (records, quarantined) = buffer.read_after(0, usize::MAX).unwrap();
    assert!(quarantined.is_empty());
    let want: Vec<u64> = kept.iter().copied().chain(new.iter().copied()).collect();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), want);
    for r in &records[..kept.len()] {
        assert_eq!(r.payload, fixture_payload(r.seq), "seq {}", r.seq);
        assert_eq!(r.received_at_ms, r.seq * 1000);
        assert_eq!(
            r.topic_name,
            format!("v2.routing.queues.q{}.observations", r.seq % 7)
        );
        assert_eq!(
            r.correlation_id,
            (r.seq % 3 == 0).then(|| format!("c{}", r.seq))
        );
    }

    // The old events drain from the main database; a restart then reads
    // only the new ones.
    buffer.remove(&kept).unwrap();
    assert_eq!(buffer.store().unwrap().legacy_events.len(), 0);
    buffer.flush_blocking().unwrap();
    drop(buffer);
    let buffer = small_segments(dir.path(), 20_000);
    let (records, _) = buffer.read_after(0, usize::MAX).unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), new);
    assert_eq!(buffer.store().unwrap().census().unwrap().orphan_chunks, 0);
}

#[test]
fn a_drain_alone_keeps_the_journal_of_removals_bounded() {
    // Nothing is appended while a backlog drains: the removals must still
    // be flushed (and so forgotten by the journal) as they pile up.
    let dir = tempfile::tempdir().unwrap();
    let buffer = small_segments(dir.path(), 64 << 20);
    let seqs: Vec<u64> = (0..20_000)
        .map(|i| buffer.append(i, "v2.a", None, b"{}").unwrap())
        .collect();
    buffer.flush_blocking().unwrap();
    for batch in seqs.chunks(500) {
        buffer.remove(batch).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let held = buffer.lock_unflushed().removals.len();
        if held < 4096 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{held} removals still journalled: nothing flushed them"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
