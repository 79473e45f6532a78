//! Facts of one conversation that all its events share (queue, agent,
//! media, participant and session ids, times): derived from the id alone
//! for ids the simulator did not make, taken from the pool otherwise, so
//! that `customer.start` and `customer.end` of one conversation agree.

use crate::directory::{Directory, Media, Queue, User};
use crate::ids::{hash_str, stable_uuid};
use crate::model::conversations::{self, Conversation};

use super::context::media_of;

/// The wrap-up code a conversation ends with (one of eight per org).
pub(crate) fn wrapup_code(seed: u64) -> String {
    stable_uuid(0x57, seed % 8).to_string()
}

/// Times of a pool conversation, for detail event durations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeline {
    pub started_ms: u64,
    pub connected_ms: Option<u64>,
    pub call_ended_ms: Option<u64>,
    pub ended_ms: Option<u64>,
}

/// Facts of a conversation shared by its events: derived from the id alone
/// for ids the simulator does not know, taken from the pool otherwise.
pub(crate) struct ConversationFacts<'a> {
    pub conversation_id: String,
    pub queue_id: Option<String>,
    pub queue: Option<&'a Queue>,
    pub user_id: Option<String>,
    pub agent: Option<&'a User>,
    pub media: Media,
    /// `INBOUND` (queued) or `OUTBOUND` (placed by the agent).
    pub direction: &'static str,
    pub ids: [String; 6],
    pub seed: u64,
    pub timeline: Option<Timeline>,
}

impl<'a> ConversationFacts<'a> {
    pub fn of(conversation_id: &str, directory: &'a Directory) -> Self {
        let seed = hash_str(conversation_id);
        let queue = (!directory.queues.is_empty())
            .then(|| directory.live_from((seed % directory.queues.len() as u64) as usize))
            .flatten();
        let agent = queue.and_then(|q| {
            let members: Vec<&User> = directory.members(q).collect();
            members
                .get((seed / 7) as usize % members.len().max(1))
                .copied()
        });
        ConversationFacts {
            conversation_id: conversation_id.to_owned(),
            queue_id: queue.map(|q| q.id.clone()),
            queue,
            user_id: agent.map(|u| u.id.clone()),
            agent,
            media: media_of(queue),
            direction: "INBOUND",
            ids: std::array::from_fn(|k| stable_uuid(seed, k as u64).to_string()),
            seed,
            timeline: None,
        }
    }

    pub fn of_pool(conv: &Conversation, directory: &'a Directory) -> Self {
        let seed = conversations::seed_of(&conv.id);
        let queue = conv.queue_id.as_deref().and_then(|q| directory.queue(q));
        ConversationFacts {
            conversation_id: conv.id.clone(),
            queue_id: conv.queue_id.clone(),
            queue,
            user_id: conv.agent_id.clone(),
            agent: conv.agent_id.as_deref().and_then(|u| directory.user(u)),
            media: media_of(queue),
            direction: if conv.queue_id.is_some() {
                "INBOUND"
            } else {
                "OUTBOUND"
            },
            ids: std::array::from_fn(|k| stable_uuid(seed, k as u64).to_string()),
            seed,
            timeline: Some(Timeline {
                started_ms: conv.started_ms,
                connected_ms: conv.connected_ms,
                call_ended_ms: conv.call_ended_ms,
                ended_ms: conv.ended_ms,
            }),
        }
    }

    /// (participantId, sessionId) of the customer, ACD and agent participants.
    pub fn customer(&self) -> (&str, &str) {
        (&self.ids[0], &self.ids[1])
    }
    pub fn acd(&self) -> (&str, &str) {
        (&self.ids[2], &self.ids[3])
    }
    pub fn agent(&self) -> (&str, &str) {
        (&self.ids[4], &self.ids[5])
    }
}
