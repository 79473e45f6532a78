//! Conversations with a lifecycle: stable ids that go through alerting,
//! connected, wrap-up (after-call work) and disconnected.
//!
//! Events on `v2.routing.queues.{id}.conversations` and
//! `v2.users.{id}.conversations` drive the conversations of that queue or
//! agent: each such event either starts a conversation (while the queue or
//! agent has fewer than `per_entity` live ones) or moves the one waiting
//! longest on to its next stage, and carries the conversation's snapshot at
//! its new stage. A conversation that reaches `disconnected` ends; a new
//! one starts in its place on a later event.
//!
//! Each stage change queues the detail events it causes
//! (`customer.start`, `acd.start`, `attributes` on start; `acd.end`,
//! `user.start` on connect; `customer.end`, `user.end` on wrap-up; `acw`
//! once wrap-up is done). Events on
//! `v2.detail.events.conversation.{id}.*` of a pool conversation deliver
//! those in that order (kinds whose topic is not subscribed at that moment
//! are skipped: sent to nobody); after the last one the conversation's
//! detail topics get nothing more, as on the real service.
//!
//! Pool ids are UUIDs whose last four bytes are a check of the first twelve,
//! so a finished conversation is recognised without remembering it.

use std::collections::{HashMap, VecDeque};

use rand::Rng;

use crate::ids::{hash_str, splitmix64};
use crate::topics::DetailKind;

/// Stages in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    Alerting,
    Connected,
    Acw,
    Disconnected,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Alerting => "alerting",
            Stage::Connected => "connected",
            Stage::Acw => "acw",
            Stage::Disconnected => "disconnected",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Conversation {
    pub id: String,
    /// `None`: an outbound call the agent placed (no ACD participant).
    pub queue_id: Option<String>,
    pub agent_id: Option<String>,
    pub stage: Stage,
    pub started_ms: u64,
    pub connected_ms: Option<u64>,
    /// When the agent's call (and the customer's) ended: wrap-up began.
    pub call_ended_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    /// Detail events caused so far and not yet sent.
    pending: VecDeque<DetailKind>,
    /// Pool clock value of the last change (the oldest moves next).
    touched: u64,
}

impl Conversation {
    fn advance(&mut self, now_ms: u64) {
        let queued = self.queue_id.is_some();
        let (next, details): (Stage, &[DetailKind]) = match (self.stage, &self.agent_id) {
            (Stage::Alerting, None) => (
                Stage::Disconnected,
                &[DetailKind::AcdEnd, DetailKind::CustomerEnd],
            ),
            (Stage::Alerting, Some(_)) if queued => (
                Stage::Connected,
                &[DetailKind::AcdEnd, DetailKind::UserStart],
            ),
            (Stage::Alerting, Some(_)) => (Stage::Connected, &[DetailKind::CustomerStart]),
            (Stage::Connected, _) => (Stage::Acw, &[DetailKind::CustomerEnd, DetailKind::UserEnd]),
            (Stage::Acw, _) | (Stage::Disconnected, _) => (Stage::Disconnected, &[DetailKind::Acw]),
        };
        match next {
            Stage::Connected => self.connected_ms = Some(now_ms),
            Stage::Acw => self.call_ended_ms = Some(now_ms),
            Stage::Disconnected => {
                self.call_ended_ms.get_or_insert(now_ms);
                self.ended_ms = Some(now_ms);
            }
            Stage::Alerting => {}
        }
        self.stage = next;
        self.pending.extend(details.iter().copied());
    }
}

/// What a detail topic of a conversation id can send now.
pub(crate) enum DetailDue {
    /// This detail event of this pool conversation (its topic is subscribed).
    Send(DetailKind, Conversation),
    /// A live pool conversation with nothing due on subscribed topics.
    NothingYet,
    /// A pool conversation whose detail events are all sent.
    Finished,
    /// Not a pool id: the topic's own kind, facts derived from the id.
    Unknown,
}

/// Most live conversations in all (reached only with a directory of tens
/// of thousands of queues and users, or `/sim/generate` `topics` naming
/// ever new ids): beyond it the conversation changed least recently is
/// dropped without further events.
const MAX_LIVE: usize = 200_000;

/// Conversations the Analytics API remembers, at most (the oldest started
/// are forgotten first).
const MAX_HISTORY: usize = 100_000;

/// Ended conversations whose detail events are still due: at most this many
/// (beyond, the oldest are forgotten: their details are never sent).
const MAX_ENDED: usize = 10_000;

#[derive(Debug)]
pub(crate) struct ConversationPool {
    per_entity: usize,
    live: HashMap<String, Conversation>,
    by_queue: HashMap<String, Vec<String>>,
    by_agent: HashMap<String, Vec<String>>,
    ended: HashMap<String, Conversation>,
    ended_order: VecDeque<String>,
    /// Every conversation's latest state (the Analytics API's memory),
    /// with ids in start order to bound it.
    history: HashMap<String, Conversation>,
    history_order: VecDeque<String>,
    clock: u64,
}

/// How the check of a pool id is computed from its first twelve bytes.
fn check(bytes: &[u8]) -> [u8; 4] {
    let mut h = 0x5EED_C0FF_EE00_u64;
    for b in bytes {
        h = splitmix64(h ^ u64::from(*b));
    }
    (h as u32).to_be_bytes()
}

/// Whether `id` was made by [`ConversationPool`] (1 in 2^32 random UUIDs
/// look like one).
pub(crate) fn is_pool_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|u| {
        let b = u.as_bytes();
        b[12..] == check(&b[..12])
    })
}

fn pool_id(rng: &mut impl Rng) -> String {
    let mut bytes: [u8; 16] = rng.gen();
    // Version 4, RFC 4122 variant (bytes 6 and 8), then the check.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let c = check(&bytes[..12]);
    bytes[12..].copy_from_slice(&c);
    uuid::Uuid::from_bytes(bytes).to_string()
}

impl ConversationPool {
    pub fn new(per_entity: usize) -> Self {
        ConversationPool {
            per_entity: per_entity.max(1),
            live: HashMap::new(),
            by_queue: HashMap::new(),
            by_agent: HashMap::new(),
            ended: HashMap::new(),
            ended_order: VecDeque::new(),
            history: HashMap::new(),
            history_order: VecDeque::new(),
            clock: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn start(
        &mut self,
        queue_id: Option<String>,
        agent_id: Option<String>,
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> String {
        if self.live.len() >= MAX_LIVE {
            if let Some(stale) = self
                .live
                .values()
                .min_by_key(|c| c.touched)
                .map(|c| c.id.clone())
            {
                if let Some(conv) = self.live.get_mut(&stale) {
                    conv.pending.clear();
                }
                self.end(&stale);
            }
        }
        let id = pool_id(rng);
        let pending: VecDeque<DetailKind> = if queue_id.is_some() {
            [
                DetailKind::CustomerStart,
                DetailKind::AcdStart,
                DetailKind::Attributes,
            ]
            .into()
        } else {
            [DetailKind::UserStart].into()
        };
        let touched = self.tick();
        if let Some(q) = &queue_id {
            self.by_queue.entry(q.clone()).or_default().push(id.clone());
        }
        if let Some(a) = &agent_id {
            self.by_agent.entry(a.clone()).or_default().push(id.clone());
        }
        self.live.insert(
            id.clone(),
            Conversation {
                id: id.clone(),
                queue_id,
                agent_id,
                stage: Stage::Alerting,
                started_ms: now_ms,
                connected_ms: None,
                call_ended_ms: None,
                ended_ms: None,
                pending,
                touched,
            },
        );
        self.history_order.push_back(id.clone());
        self.history.insert(id.clone(), self.live[&id].clone());
        while self.history_order.len() > MAX_HISTORY {
            if let Some(old) = self.history_order.pop_front() {
                self.history.remove(&old);
            }
        }
        id
    }

    /// Moves a live conversation on; one that reaches `disconnected` leaves
    /// the live set (kept while detail events are due).
    fn advance(&mut self, id: &str, now_ms: u64) -> Option<Conversation> {
        let touched = self.tick();
        let conv = self.live.get_mut(id)?;
        conv.advance(now_ms);
        conv.touched = touched;
        let snapshot = conv.clone();
        if let Some(kept) = self.history.get_mut(id) {
            *kept = snapshot.clone();
        }
        if snapshot.stage == Stage::Disconnected {
            self.end(id);
        }
        Some(snapshot)
    }

    fn end(&mut self, id: &str) {
        let Some(conv) = self.live.remove(id) else {
            return;
        };
        for (index, key) in [
            (&mut self.by_queue, &conv.queue_id),
            (&mut self.by_agent, &conv.agent_id),
        ] {
            if let Some(k) = key {
                if let Some(list) = index.get_mut(k) {
                    list.retain(|c| c != id);
                    if list.is_empty() {
                        index.remove(k);
                    }
                }
            }
        }
        if conv.pending.is_empty() {
            return;
        }
        self.ended_order.push_back(conv.id.clone());
        self.ended.insert(conv.id.clone(), conv);
        while self.ended_order.len() > MAX_ENDED {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }

    /// The oldest-touched live conversation of `ids`.
    fn oldest(&self, ids: &[String]) -> Option<String> {
        ids.iter()
            .filter_map(|id| self.live.get(id))
            .min_by_key(|c| c.touched)
            .map(|c| c.id.clone())
    }

    /// An event on `v2.routing.queues.{queue_id}.conversations`: starts a
    /// conversation (agent drawn from `members`) or moves one on.
    pub fn on_queue(
        &mut self,
        queue_id: &str,
        members: &[String],
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> Conversation {
        let ids = self.by_queue.get(queue_id).cloned().unwrap_or_default();
        let room = ids.len() < self.per_entity;
        if ids.is_empty() || (room && rng.gen_ratio(1, 3)) {
            let agent =
                (!members.is_empty()).then(|| members[rng.gen_range(0..members.len())].clone());
            let id = self.start(Some(queue_id.to_owned()), agent, now_ms, rng);
            return self.live[&id].clone();
        }
        let id = self.oldest(&ids).unwrap_or_default();
        self.advance(&id, now_ms)
            .expect("indexed conversations are live")
    }

    /// An event on `v2.users.{agent_id}.conversations`: starts a
    /// conversation for the agent (on one of `queues` with room, else an
    /// outbound call) or moves one of the agent's on.
    pub fn on_agent(
        &mut self,
        agent_id: &str,
        queues: &[String],
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> Conversation {
        let ids = self.by_agent.get(agent_id).cloned().unwrap_or_default();
        let room = ids.len() < self.per_entity;
        if ids.is_empty() || (room && rng.gen_ratio(1, 3)) {
            let queue = queues
                .iter()
                .find(|q| self.by_queue.get(*q).map_or(0, Vec::len) < self.per_entity)
                .cloned();
            let id = self.start(queue, Some(agent_id.to_owned()), now_ms, rng);
            return self.live[&id].clone();
        }
        let id = self.oldest(&ids).unwrap_or_default();
        self.advance(&id, now_ms)
            .expect("indexed conversations are live")
    }

    /// What a detail topic of `conversation_id` may send now; `subscribed`
    /// says whether the topic of a kind is in the topic set.
    pub fn detail_due(
        &mut self,
        conversation_id: &str,
        subscribed: impl Fn(DetailKind) -> bool,
    ) -> DetailDue {
        let (conv, live) = match self.live.get_mut(conversation_id) {
            Some(c) => (c, true),
            None => match self.ended.get_mut(conversation_id) {
                Some(c) => (c, false),
                None if is_pool_id(conversation_id) => return DetailDue::Finished,
                None => return DetailDue::Unknown,
            },
        };
        while let Some(kind) = conv.pending.pop_front() {
            if subscribed(kind) {
                let snapshot = conv.clone();
                if !live && conv.pending.is_empty() {
                    self.ended.remove(conversation_id);
                    self.ended_order.retain(|c| c != conversation_id);
                }
                return DetailDue::Send(kind, snapshot);
            }
        }
        if live {
            DetailDue::NothingYet
        } else {
            self.ended.remove(conversation_id);
            self.ended_order.retain(|c| c != conversation_id);
            DetailDue::Finished
        }
    }

    /// Moves a live conversation on because only its detail topics are
    /// visited (time passes for it all the same). `false` when not live.
    pub fn advance_for_details(&mut self, conversation_id: &str, now_ms: u64) -> bool {
        self.advance(conversation_id, now_ms).is_some()
    }

    /// The agent's live conversation changed last, if any (for agent state
    /// events, which do not move it).
    pub fn latest_of_agent(&self, agent_id: &str) -> Option<Conversation> {
        self.by_agent
            .get(agent_id)?
            .iter()
            .filter_map(|id| self.live.get(id))
            .max_by_key(|c| c.touched)
            .cloned()
    }

    /// Live conversations, oldest first: `GET /sim/conversations`.
    pub fn view(&self) -> Vec<serde_json::Value> {
        let mut live: Vec<&Conversation> = self.live.values().collect();
        live.sort_by_key(|c| c.started_ms);
        live.iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "queue_id": c.queue_id,
                    "user_id": c.agent_id,
                    "stage": c.stage.name(),
                })
            })
            .collect()
    }

    /// Every remembered conversation's latest state (the Analytics API).
    pub fn history(&self) -> impl Iterator<Item = &Conversation> {
        self.history.values()
    }

    #[cfg(test)]
    pub fn live_count(&self) -> usize {
        self.live.len()
    }
}

/// A seed for per-conversation facts (participant ids, phone numbers).
pub(crate) fn seed_of(id: &str) -> u64 {
    hash_str(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn pool_ids_are_recognised_and_random_ones_are_not() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let id = pool_id(&mut rng);
            assert!(is_pool_id(&id), "{id}");
            assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
            assert!(!is_pool_id(&uuid::Uuid::new_v4().to_string()));
        }
    }

    #[test]
    fn a_queue_keeps_at_most_its_bound_and_each_goes_through_every_stage() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut pool = ConversationPool::new(3);
        let members = vec!["agent".to_owned()];
        let mut stages: HashMap<String, Vec<Stage>> = HashMap::new();
        for t in 0..300 {
            let c = pool.on_queue("q", &members, t, &mut rng);
            stages.entry(c.id.clone()).or_default().push(c.stage);
            assert!(pool.live_count() <= 3);
        }
        let finished: Vec<&Vec<Stage>> = stages
            .values()
            .filter(|s| s.last() == Some(&Stage::Disconnected))
            .collect();
        assert!(finished.len() > 10);
        for s in finished {
            assert_eq!(
                s,
                &[
                    Stage::Alerting,
                    Stage::Connected,
                    Stage::Acw,
                    Stage::Disconnected
                ]
            );
        }
    }
}
