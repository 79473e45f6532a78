//! Event generation over the topics of the org's activity: every topic
//! a channel subscribes now, and every topic one ever subscribed (the org
//! goes on while nobody listens: those events are emitted to no socket,
//! recorded without a channel, as Genesys drops them).
//!
//! Topics are visited round-robin (a cursor that survives between calls), so
//! every subscribed topic gets events. One event goes to every channel
//! subscribed to its topic, with the same CorrelationId (as overlapping
//! sockets during a rollover see it); it is recorded once per channel, and
//! as undelivered when the channel has no open socket (Genesys drops it).
//! A frame queued to an open socket counts as delivered once the socket has
//! written it (see `state::Progress`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use crate::clock::epoch_ms;
use crate::events::{self, BodyContext};
use crate::model::conversations::DetailDue;
use crate::state::{EmittedRecord, Inner, Progress, SimState, SocketRef, EVENT_LOG_MAX_BYTES};
use crate::topics::{DetailKind, Topic};

/// Events generated per lock acquisition: keeps REST calls and sockets
/// responsive while a large batch is generated.
const CHUNK: u64 = 256;

#[derive(Debug, Clone, Default)]
pub(crate) struct GenerateOptions {
    /// Generate on these topics instead of the subscribed ones (events on a
    /// topic nobody subscribed to are recorded with no channel).
    pub topics: Option<Vec<String>>,
    /// See [`BodyContext::observation_conversations`].
    pub observation_conversations: Option<usize>,
}

#[derive(Debug, Default)]
pub(crate) struct EmitOutcome {
    pub emitted: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Sockets that got frames (to await their flush), with the positions
    /// of those frames in each socket's queue, as runs `(first, len)` (one
    /// run per chunk at most: other generators interleave only between).
    pub sockets: HashMap<u64, (SocketRef, Vec<(u64, u64)>)>,
}

impl EmitOutcome {
    /// Frames of this outcome handed to open sockets so far.
    pub fn delivered(&self) -> u64 {
        self.sockets
            .values()
            .flat_map(|(socket, runs)| {
                runs.iter()
                    .map(|&(first, len)| socket.progress.written_of(first, len))
            })
            .sum()
    }
}

/// A channel subscribed to a topic, with its open socket if any.
type Subscriber = (Arc<str>, Option<SocketRef>);

/// Nothing to generate: no topic is subscribed (and none was given).
#[derive(Debug)]
pub(crate) struct NoTopics;

/// Generates `count` events now.
pub(crate) fn emit(
    state: &SimState,
    count: u64,
    opts: &GenerateOptions,
) -> Result<EmitOutcome, NoTopics> {
    let mut outcome = EmitOutcome::default();
    let mut remaining = count;
    // A batch of millions takes a while: it ends early when the server stops.
    while remaining > 0 && !state.shutting_down() {
        let n = remaining.min(CHUNK);
        let before = outcome.emitted;
        match emit_chunk(state, n, opts, &mut outcome) {
            Ok(()) => {}
            // Topics left with nothing more to send (finished
            // conversations): what was emitted stands.
            Err(NoTopics) if outcome.emitted > 0 => break,
            Err(NoTopics) => return Err(NoTopics),
        }
        if outcome.emitted - before < n {
            break;
        }
        remaining -= n;
    }
    Ok(outcome)
}

fn emit_chunk(
    state: &SimState,
    n: u64,
    opts: &GenerateOptions,
    outcome: &mut EmitOutcome,
) -> Result<(), NoTopics> {
    let now = SystemTime::now();
    let now_ms = epoch_ms(now);
    let blackhole = state.faults.blackhole();
    let limit = state.settings.event_log_limit;
    // Most frame bytes queued to one socket and not written yet
    // (`--slow-consumer-bytes`). A client that stops reading would
    // otherwise make its socket's queue grow without end (a `--rate` job
    // runs forever): beyond this the simulator gives up on the socket, as
    // a server gives up on a slow consumer: it is detached from its
    // channel (later events are undelivered) and told to close (1008)
    // once the frames queued before are written.
    let max_backlog = state.settings.slow_consumer_bytes;
    let mut guard = state.lock();
    let inner = &mut *guard;
    let directory = state.directory();

    // topic → its subscribers (and their sockets), for live channels.
    let mut subscribers: BTreeMap<Arc<str>, Vec<Subscriber>> = BTreeMap::new();
    for channel in inner.channels.iter().filter(|c| c.alive(now)) {
        for topic in channel.topics.iter() {
            subscribers
                .entry(topic.clone())
                .or_default()
                .push((channel.id.clone(), channel.socket.clone()));
        }
    }
    let topics: Vec<(Arc<str>, Topic)> = match &opts.topics {
        Some(list) => list
            .iter()
            .map(|t| Arc::from(t.as_str()))
            .collect::<Vec<Arc<str>>>(),
        None => {
            let mut all: std::collections::BTreeSet<Arc<str>> =
                subscribers.keys().cloned().collect();
            all.extend(inner.remembered_topics.iter().cloned());
            all.into_iter().collect()
        }
    }
    .into_iter()
    // Subscribed topics passed the same check; given ones were validated.
    .filter_map(|name| Topic::parse(&name).ok().map(|t| (name, t)))
    // A removed queue or user gets no more events (its subscriptions stay).
    .filter(|(_, topic)| !directory.is_removed(topic.id()))
    .collect();
    if topics.is_empty() {
        return Err(NoTopics);
    }

    let ctx = BodyContext {
        directory: &directory,
        now_ms,
        observation_conversations: opts.observation_conversations,
    };
    let names: HashSet<Arc<str>> = topics.iter().map(|(name, _)| name.clone()).collect();
    for _ in 0..n {
        let Some((name, body)) = next_event(inner, &topics, &names, &ctx) else {
            return Err(NoTopics);
        };
        let name = &name;
        let seq = inner.log.next_seq;
        inner.log.next_seq += 1;
        inner.counters.events_generated += 1;
        let correlation_id = uuid::Uuid::new_v4();
        let frame: Arc<str> = events::envelope(name, &body, &correlation_id).into();
        let record = |channel_id: Option<Arc<str>>, socket: Option<Arc<Progress>>| EmittedRecord {
            seq,
            correlation_id,
            topic: name.clone(),
            channel_id,
            emitted_at_ms: now_ms,
            socket,
            frame: frame.clone(),
        };
        match subscribers.get(name) {
            None => inner.record(record(None, None), limit, EVENT_LOG_MAX_BYTES),
            Some(list) => {
                for (channel_id, socket) in list {
                    let socket = socket
                        .as_ref()
                        .filter(|s| !blackhole && !s.progress.given_up());
                    let socket = match socket {
                        Some(s)
                            if s.progress.backlog_bytes() + frame.len() as u64 > max_backlog =>
                        {
                            inner.channels.give_up_socket(channel_id, s);
                            None
                        }
                        other => other,
                    };
                    if let Some(socket) = socket {
                        // Queued under the lock: mailbox order is seq order.
                        let position = socket.progress.queue(frame.len());
                        socket.deliver(frame.clone(), seq);
                        let runs = &mut outcome
                            .sockets
                            .entry(socket.id)
                            .or_insert_with(|| (socket.clone(), Vec::new()))
                            .1;
                        match runs.last_mut() {
                            Some((first, len)) if *first + *len == position => *len += 1,
                            _ => runs.push((position, 1)),
                        }
                    }
                    let progress = socket.map(|s| s.progress.clone());
                    inner.record(
                        record(Some(channel_id.clone()), progress),
                        limit,
                        EVENT_LOG_MAX_BYTES,
                    );
                }
            }
        }
        outcome.emitted += 1;
        outcome.first_seq.get_or_insert(seq);
        outcome.last_seq = Some(seq);
    }
    Ok(())
}

/// The next event: its topic (the one the round-robin cursor is at, or, for
/// a detail topic of a pool conversation, the topic of that conversation's
/// next due detail event) and body. Topics with nothing to send are passed
/// over; after a whole round with nothing sent, the pool conversation the
/// cursor is at moves on (time passes for it even when only its detail
/// topics are visited). `None`: no topic can send anything any more.
fn next_event(
    inner: &mut Inner,
    topics: &[(Arc<str>, Topic)],
    names: &HashSet<Arc<str>>,
    ctx: &BodyContext<'_>,
) -> Option<(Arc<str>, serde_json::Value)> {
    // Two rounds: the first may find only detail topics with nothing due,
    // the second moves their conversations on (at most four stages each).
    let mut idle = 0;
    for _ in 0..2 * topics.len() + 1 {
        let (name, topic) = &topics[inner.cursor % topics.len()];
        inner.cursor = inner.cursor.wrapping_add(1);
        let Topic::ConversationDetail {
            conversation_id, ..
        } = topic
        else {
            let body = events::body(topic, ctx, &mut inner.model, &mut inner.rng);
            return Some((name.clone(), body));
        };
        let pool = &mut inner.model.conversations;
        let subscribed = |k: DetailKind| names.contains(k.topic(conversation_id).as_str());
        let mut due = pool.detail_due(conversation_id, subscribed);
        // A whole round without an event: this conversation moves on.
        let mut stages = 0;
        while matches!(due, DetailDue::NothingYet) && idle >= topics.len() && stages < 4 {
            pool.advance_for_details(conversation_id, ctx.now_ms);
            due = pool.detail_due(conversation_id, subscribed);
            stages += 1;
        }
        match due {
            DetailDue::Send(kind, conv) => {
                let target = names.get(kind.topic(conversation_id).as_str())?.clone();
                let body = events::pool_detail_event(&conv, kind, ctx, &mut inner.rng);
                return Some((target, body));
            }
            DetailDue::Unknown => {
                let body = events::body(topic, ctx, &mut inner.model, &mut inner.rng);
                return Some((name.clone(), body));
            }
            DetailDue::NothingYet | DetailDue::Finished => idle += 1,
        }
    }
    None
}
