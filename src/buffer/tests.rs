//! Model-based tests: the buffer must behave like an ordered map that
//! survives being closed and reopened.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Append { topic: u8, payload: Vec<u8> },
    RemoveOldest(usize),
    RemoveNewest,
    DeadLetterOldest,
    Read { after_index: usize, limit: usize },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(topic, payload)| Op::Append { topic, payload }),
        2 => (1usize..5).prop_map(Op::RemoveOldest),
        1 => Just(Op::RemoveNewest),
        1 => Just(Op::DeadLetterOldest),
        2 => (0usize..20, 1usize..10).prop_map(|(after_index, limit)| Op::Read { after_index, limit }),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn behaves_like_an_ordered_map(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(dir.path()).unwrap();
        let mut model: BTreeMap<u64, Record> = BTreeMap::new();
        let mut dead = 0usize;
        let mut dead_max = 0u64;
        let mut last_seq = 0u64;
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
                Op::Reopen => {
                    buffer.flush_blocking().unwrap();
                    drop(buffer);
                    buffer = Buffer::open(dir.path()).unwrap();
                    prop_assert!(buffer.last_seq() <= last_seq);
                    // A reopened buffer may reuse sequences of records that
                    // are gone everywhere, never of one it still keeps.
                    last_seq = model.keys().next_back().copied().unwrap_or(0).max(dead_max);
                    prop_assert_eq!(buffer.last_seq(), last_seq);
                }
            }
            prop_assert_eq!(buffer.len(), model.len());
            prop_assert_eq!(buffer.len(), buffer.store().unwrap().events.len(), "the counter matches the tree");
            prop_assert_eq!(buffer.dead_letter_len(), dead);
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
    let err = Buffer::open(dir.path()).err().expect("must refuse");
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
        let buffer = Buffer::open(dir.path()).unwrap();
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
    let buffer = Buffer::open(dir.path()).unwrap();
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
    let buffer = Buffer::open(dir.path()).unwrap();
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
