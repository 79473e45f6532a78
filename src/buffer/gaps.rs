//! Gaps as data: every time a connection had no open, subscribed socket is
//! kept in the buffer's metadata, so an operator (and a later backfill
//! through the Analytics API) knows exactly which minutes may be missing
//! for which topics. Format: `migrations/v2.md` ("Gaps").
//!
//! - `gaps`: key `[start_ms u64 BE][connection u32 BE]` (time order) →
//!   JSON of a [`GapRecord`] without its topic list: a few hundred bytes,
//!   far below the 4,000-byte value limit whatever the channel holds.
//! - `gap_topics`: key `[topics_id u64 BE][index u32 BE]` → up to 4,000
//!   bytes of the topic names joined by `\n` (piece `index` of the list).
//!   A list is stored once per distinct content (`topics_id` is its FNV-1a
//!   hash): a connection's topics rarely change, so 10,000 gaps of a
//!   1,000-topic channel cost ~60 KB of topic names once, not 600 MB.
//!
//! Bounded: at most [`MAX_GAPS`] records are kept; past that the oldest
//! are removed (down to [`PRUNE_TO`], so pruning is rare) together with
//! the topic lists no remaining gap names.
//!
//! Written off the actors' threads ([`Buffer::record_gap`]), read by the
//! status pages and the operator's tools.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sled::IVec;

use super::error::BufferError;
use super::handle::Buffer;
use super::store::Store;
use crate::gap::{GapError, GapRecord};

/// Gap records kept at most (the newest).
pub const MAX_GAPS: usize = 10_000;
/// A prune removes down to this many, so it runs once per 500 gaps.
pub const PRUNE_TO: usize = MAX_GAPS - 500;
/// Largest piece of a topic list.
const TOPICS_PIECE: usize = 4000;

/// The list cut into pieces of at most 4,000 bytes (whole names; a name
/// longer than that alone in its piece is cut, which Genesys names never
/// are).
pub fn topic_pieces(topics: &[String]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut piece: Vec<u8> = Vec::new();
    for topic in topics {
        let name = &topic.as_bytes()[..topic.len().min(TOPICS_PIECE)];
        let extra = usize::from(!piece.is_empty()) + name.len();
        if piece.len() + extra > TOPICS_PIECE {
            pieces.push(std::mem::take(&mut piece));
        }
        if !piece.is_empty() {
            piece.push(b'\n');
        }
        piece.extend_from_slice(name);
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

fn topics_piece_key(id: u64, index: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&id.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// Stores `gap` (and its topic list unless already stored), then prunes
/// beyond [`MAX_GAPS`]. Returns how many gaps are kept.
pub fn write(store: &Store, gap: &GapRecord, topics: &[String]) -> sled::Result<usize> {
    write_bounded(store, gap, topics, MAX_GAPS, PRUNE_TO)
}

fn write_bounded(
    store: &Store,
    gap: &GapRecord,
    topics: &[String],
    max: usize,
    prune_to: usize,
) -> sled::Result<usize> {
    if let Some(id) = gap.topics_key() {
        // The list first: a gap never names a list that is not there.
        if !store.gap_topics.contains_key(topics_piece_key(id, 0))? {
            for (index, piece) in topic_pieces(topics).into_iter().enumerate() {
                store
                    .gap_topics
                    .insert(topics_piece_key(id, index as u32), piece)?;
            }
        }
    }
    store.gaps.insert(gap.key(), gap.encode())?;
    let len = store.gaps.len();
    if len > max {
        return prune(store, prune_to);
    }
    Ok(len)
}

/// Removes the oldest gaps down to `keep`, and the topic lists no gap
/// names any more. Returns how many gaps are kept.
pub fn prune(store: &Store, keep: usize) -> sled::Result<usize> {
    let len = store.gaps.len();
    let excess = len.saturating_sub(keep);
    let old: Vec<IVec> = store
        .gaps
        .iter()
        .keys()
        .take(excess)
        .collect::<sled::Result<_>>()?;
    for key in &old {
        store.gaps.remove(key)?;
    }
    let mut named = BTreeSet::new();
    for entry in store.gaps.iter().values() {
        if let Some(id) = GapRecord::decode(&entry?).ok().and_then(|g| g.topics_key()) {
            named.insert(id);
        }
    }
    for key in store.gap_topics.iter().keys() {
        let key = key?;
        let id = u64::from_be_bytes(key[..8].try_into().unwrap_or_default());
        if !named.contains(&id) {
            store.gap_topics.remove(&key)?;
        }
    }
    if excess > 0 {
        tracing::info!(
            removed = excess,
            kept = len - excess,
            "oldest recorded gaps removed (at most {MAX_GAPS} are kept)"
        );
    }
    Ok(len - excess)
}

/// The stored topic list `id`, in order.
pub fn read_topics(store: &Store, id: &str) -> sled::Result<Vec<String>> {
    let Ok(id) = u64::from_str_radix(id, 16) else {
        return Ok(Vec::new());
    };
    let mut topics = Vec::new();
    for entry in store.gap_topics.scan_prefix(id.to_be_bytes()) {
        let (_, piece) = entry?;
        topics.extend(
            String::from_utf8_lossy(&piece)
                .split('\n')
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        );
    }
    Ok(topics)
}

/// Gaps that end at or after `since_ms`, oldest first; the newest `last`
/// only, when given.
pub fn read(
    store: &Store,
    since_ms: Option<u64>,
    last: Option<usize>,
    with_topics: bool,
) -> Result<Vec<GapRecord>, GapError> {
    let mut out = Vec::new();
    let order = match last {
        Some(_) => Order::NewestFirst,
        None => Order::OldestFirst,
    };
    visit(store, since_ms, with_topics, order, |gap| {
        out.push(gap);
        last.map_or(true, |n| out.len() < n)
    })?;
    if last.is_some() {
        out.reverse();
    }
    Ok(out)
}

/// Which end of the gap list a visit starts from.
#[derive(Debug, Clone, Copy)]
pub enum Order {
    OldestFirst,
    NewestFirst,
}

/// Visits the gaps that end at or after `since_ms` in `order`, reading
/// each one's topic list only when it is visited; `visit` returns `false`
/// to stop.
pub fn visit(
    store: &Store,
    since_ms: Option<u64>,
    with_topics: bool,
    order: Order,
    mut visit: impl FnMut(GapRecord) -> bool,
) -> Result<(), GapError> {
    let values = store.gaps.iter().values();
    let values: Box<dyn Iterator<Item = sled::Result<IVec>>> = match order {
        Order::OldestFirst => Box::new(values),
        Order::NewestFirst => Box::new(values.rev()),
    };
    for entry in values {
        let mut gap = match GapRecord::decode(&entry?) {
            Ok(gap) => gap,
            Err(e) => {
                tracing::warn!(error = %e, "skipping an unreadable gap record");
                continue;
            }
        };
        if since_ms.is_some_and(|since| gap.end_ms < since) {
            continue;
        }
        if with_topics {
            gap.topics = Some(read_topics(store, &gap.topics_id)?);
        }
        if !visit(gap) {
            break;
        }
    }
    Ok(())
}

impl Buffer {
    /// Records a gap without blocking the caller: the sled writes (and a
    /// prune, rarely) run on the blocking pool, then a grouped flush is
    /// requested. A failure is logged with the gap's bounds (the gap was
    /// logged and counted by telemetry already). Await the handle to know
    /// the write was made (shutdown does, before its final flush). Must be
    /// called from within an actix/tokio runtime.
    pub fn record_gap(
        &self,
        gap: GapRecord,
        topics: Arc<Vec<String>>,
    ) -> actix_rt::task::JoinHandle<()> {
        let buffer = self.clone();
        actix_rt::spawn(async move {
            let b = buffer.clone();
            let (start, end) = (gap.start.clone(), gap.end.clone());
            let written =
                actix_rt::task::spawn_blocking(move || b.record_gap_blocking(&gap, &topics)).await;
            match written {
                Ok(Ok(())) => buffer.request_flush(),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, start, end, "gap not recorded in the buffer")
                }
                Err(e) => tracing::error!(error = %e, start, end, "gap recording task failed"),
            }
        })
    }

    /// [`Buffer::record_gap`] on the calling thread (blocking: sled writes,
    /// and at most once per 500 gaps a prune of the oldest).
    pub fn record_gap_blocking(
        &self,
        gap: &GapRecord,
        topics: &[String],
    ) -> Result<(), BufferError> {
        let store = self.store()?;
        match write(&store, gap, topics) {
            Ok(kept) => {
                self.inner
                    .shared
                    .gaps_len
                    .store(kept as u64, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                self.fail("a gap write", &e);
                Err(BufferError::Write(e))
            }
        }
    }

    /// Recorded gaps that end at or after `since_ms`, oldest first, with
    /// their topic names when `with_topics`.
    pub fn gaps(
        &self,
        since_ms: Option<u64>,
        with_topics: bool,
    ) -> Result<Vec<GapRecord>, BufferError> {
        let store = self.store()?;
        Ok(read(&store, since_ms, None, with_topics)?)
    }

    /// Visits the gaps that end at or after `since_ms`, oldest first, one
    /// at a time (with topics, 10,000 gaps can name 600 MB of topics: a
    /// listing never holds them all); `visit` returns `false` to stop.
    pub fn each_gap(
        &self,
        since_ms: Option<u64>,
        with_topics: bool,
        visit: impl FnMut(GapRecord) -> bool,
    ) -> Result<(), BufferError> {
        let store = self.store()?;
        Ok(self::visit(
            &store,
            since_ms,
            with_topics,
            Order::OldestFirst,
            visit,
        )?)
    }

    /// The topic names of a stored list (a gap's `topics_id`).
    pub fn gap_topics(&self, topics_id: &str) -> Result<Vec<String>, BufferError> {
        let store = self.store()?;
        Ok(read_topics(&store, topics_id).map_err(GapError::from)?)
    }

    /// The newest `n` recorded gaps, oldest first, without topic names.
    pub fn recent_gaps(&self, n: usize) -> Result<Vec<GapRecord>, BufferError> {
        let store = self.store()?;
        Ok(read(&store, None, Some(n), false)?)
    }

    /// Gap records kept (at most [`MAX_GAPS`]).
    pub fn gaps_len(&self) -> u64 {
        self.inner.shared.gaps_len.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gap::{topics_id, REASON_MAX};
    use std::time::Duration;
    use std::time::{SystemTime, UNIX_EPOCH};

    fn topics(n: usize, tag: &str) -> Vec<String> {
        (0..n)
            .map(|i| {
                format!("v2.routing.queues.{tag}{i:08}-1234-5678-9abc-def012345678.conversations")
            })
            .collect()
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn a_record_stays_small_whatever_the_channel_holds_and_shows_no_channel_id() {
        let list = topics(1_000, "q");
        let reason = format!(
            "socket dropped without a close frame (1006) on streaming-0-{} {}",
            "a".repeat(40),
            "é".repeat(300)
        );
        let gap = GapRecord::new(
            19,
            at(1_700_000_000_123),
            at(1_700_000_009_999),
            &reason,
            true,
            &list,
        );
        let encoded = gap.encode();
        assert!(encoded.len() < 1_000, "{} bytes", encoded.len());
        assert!(!String::from_utf8_lossy(&encoded).contains(&"a".repeat(40)));
        assert!(gap.reason.len() <= REASON_MAX && gap.reason.starts_with("socket dropped"));
        assert_eq!(gap.start, "2023-11-14T22:13:20.123Z");
        assert_eq!(gap.end, "2023-11-14T22:13:29.999Z");
        assert_eq!(gap.seconds, 9.876);
        assert_eq!(gap.topic_count, 1_000);
        assert_eq!(GapRecord::decode(&encoded).unwrap(), gap);
        // An end before the start (a clock step) is no time, not a wrap.
        let stepped = GapRecord::new(0, at(5_000), at(1_000), "x", false, &list);
        assert_eq!((stepped.seconds, stepped.end_ms), (0.0, 5_000));
    }

    #[test]
    fn topic_lists_are_cut_into_pieces_under_the_value_limit() {
        for n in [0, 1, 57, 1_000] {
            let list = topics(n, "p");
            let pieces = topic_pieces(&list);
            assert!(pieces.iter().all(|p| p.len() <= TOPICS_PIECE));
            let joined: Vec<String> = pieces
                .iter()
                .flat_map(|p| {
                    String::from_utf8_lossy(p)
                        .split('\n')
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .filter(|t| !t.is_empty())
                .collect();
            assert_eq!(joined, list);
        }
        assert_ne!(topics_id(&topics(3, "a")), topics_id(&topics(3, "b")));
        // The separator counts: ["ab"] and ["a", "b"] differ.
        assert_ne!(
            topics_id(&["ab".into()]),
            topics_id(&["a".into(), "b".into()])
        );
    }

    #[test]
    fn gaps_are_bounded_and_unnamed_topic_lists_go_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20, 1 << 20, Default::default()).unwrap();
        let (old, new) = (topics(200, "old"), topics(200, "new"));
        for i in 0..30u64 {
            let list = if i < 10 { &old } else { &new };
            let gap = GapRecord::new(0, at(1_000 * i), at(1_000 * i + 500), "drop", false, list);
            let kept = write_bounded(&store, &gap, list, 20, 15).unwrap();
            assert!(kept <= 20, "{kept}");
        }
        let kept = read(&store, None, None, true).unwrap();
        // Pruned to 15 at the 21st and the 27th write, then 3 more.
        assert_eq!(kept.len(), 18);
        assert_eq!(kept.last().unwrap().start_ms, 29_000);
        assert!(kept.windows(2).all(|w| w[0].start_ms < w[1].start_ms));
        assert!(kept.iter().all(|g| g.topics.as_deref() == Some(&new[..])));
        let old_id = topics_id(&old);
        assert_eq!(
            store.gap_topics.scan_prefix(old_id.to_be_bytes()).count(),
            0
        );
        assert!(
            store
                .gap_topics
                .scan_prefix(topics_id(&new).to_be_bytes())
                .count()
                > 1
        );
        // The newest n, oldest first; and those ending after a time.
        let last3 = read(&store, None, Some(3), false).unwrap();
        assert_eq!(
            last3.iter().map(|g| g.start_ms).collect::<Vec<_>>(),
            [27_000, 28_000, 29_000]
        );
        assert!(last3[0].topics.is_none());
        let since = read(&store, Some(28_400), None, false).unwrap();
        assert_eq!(
            since.iter().map(|g| g.start_ms).collect::<Vec<_>>(),
            [28_000, 29_000]
        );
    }

    #[test]
    fn gaps_and_the_alive_mark_survive_a_reopen_and_downtime_is_claimed_once() {
        use crate::buffer::Buffer;
        let dir = tempfile::tempdir().unwrap();
        {
            let buffer = Buffer::open_for_tests(dir.path()).unwrap();
            assert_eq!(buffer.previous_alive_ms(), None);
            assert_eq!(
                buffer.claim_downtime(0),
                None,
                "a new buffer had no previous run"
            );
            let list = topics(3, "q");
            let gap = GapRecord::new(1, at(1_000), at(4_500), "socket dropped", false, &list);
            buffer.record_gap_blocking(&gap, &list).unwrap();
            assert_eq!(buffer.gaps_len(), 1);
            buffer.keep_alive_marks().unwrap();
            buffer.flush_blocking().unwrap();
        }
        let before = crate::now_ms();
        let buffer = Buffer::open_for_tests(dir.path()).unwrap();
        let alive = buffer.previous_alive_ms().expect("the mark was kept");
        assert!(
            alive <= before && alive + 60_000 > before,
            "{alive} vs {before}"
        );
        let since = buffer.claim_downtime(0).expect("first claim");
        assert_eq!(since, UNIX_EPOCH + Duration::from_millis(alive));
        assert_eq!(buffer.claim_downtime(0), None, "once per connection");
        assert!(buffer.claim_downtime(1).is_some());
        assert_eq!(buffer.gaps_len(), 1);
        let gaps = buffer.gaps(None, true).unwrap();
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].topics.as_deref(), Some(&topics(3, "q")[..]));
        assert_eq!((gaps[0].connection, gaps[0].seconds), (1, 3.5));
        assert!(buffer.gaps(Some(4_501), false).unwrap().is_empty());
    }
}
