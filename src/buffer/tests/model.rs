//! The buffer as an ordered map: a model-based proptest (appends,
//! removals, dead letters, reads, flushes, reopens, storage failures with
//! their reopen) against a `BTreeMap`, and examples of the same API.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use proptest::prelude::*;

use crate::buffer::segments::MAX_OPEN;
use crate::buffer::store::Area;
use crate::buffer::{Buffer, BufferConfig, BufferError, Record};

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
    fn behaves_like_an_ordered_map(
        ops in proptest::collection::vec(op(), 1..60),
        // Segments of a few records each (rolling over all the time), or
        // one segment for the whole run.
        segment_bytes in prop_oneof![500u64..20_000, Just(64u64 << 20)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let open = |path: &Path| {
            let config = BufferConfig {
                min_free_bytes: 4 << 20,
                segment_bytes,
                ..BufferConfig::default()
            };
            let buffer = Buffer::open_with_config(path, &config).unwrap();
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
                    model.insert(seq, Record { seq, received_at_ms: 7, topic_name: name, correlation_id: corr, payload, kind: Default::default() });
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
            prop_assert_eq!(buffer.len(), buffer.store().unwrap().event_entries_for_tests(), "the counter matches the tree");
            prop_assert_eq!(buffer.dead_letter_len(), dead);
            let census = buffer.store().unwrap().census().unwrap();
            prop_assert_eq!(census.held_bytes, buffer.inner.shared.admission.held_bytes.load(Ordering::SeqCst), "held bytes are counted exactly");
            prop_assert_eq!(census.orphan_chunks, 0);
            let store = buffer.store().unwrap();
            prop_assert!(store.segments.open_count() <= MAX_OPEN, "at most {} segments open", MAX_OPEN);
            // Drained segments are deleted: every one but the newest holds
            // an event.
            let firsts = store.segments.firsts();
            for (i, first) in firsts.iter().enumerate().rev().skip(1) {
                let end = firsts[i + 1];
                prop_assert!(model.range(first..&end).next().is_some(), "segment {} is empty", first);
            }
        }
        let (all, _) = buffer.read_after(0, usize::MAX).unwrap();
        prop_assert_eq!(all, model.into_values().collect::<Vec<_>>());
    }
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
