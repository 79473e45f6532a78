//! Event bodies per topic family, shaped like the real notifications (field
//! names and enum values follow the models of Genesys' own SDKs), and the
//! notification envelope they travel in.
//!
//! [`body`] picks the builder of a topic's family; the families with more
//! to them have a file each: `analytics` (queue observations and
//! aggregates), `conversation` (conversation snapshots), `detail` (detail
//! events, from the `facts` of their conversation). Presence, routing
//! status and agent state bodies are built here.

mod analytics;
mod context;
mod conversation;
mod detail;
mod envelope;
pub(crate) mod facts;

pub(crate) use context::BodyContext;
pub(crate) use detail::pool_detail_event;
pub(crate) use envelope::envelope;

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

use crate::clock::rfc3339_ms;
use crate::directory::Directory;
use crate::ids::uuid_from;
use crate::model::conversations::{Conversation, Stage};
use crate::model::Model;
use crate::topics::Topic;
use analytics::{queue_aggregates, queue_observation, user_aggregates};
use context::media_of;
use conversation::conversation;
use detail::detail_event;
use facts::ConversationFacts;

/// The body of one event on `topic`. Detail topics of pool conversations
/// are the generator's business (see `model::conversations`); here a detail topic
/// gets an event of its own kind with facts derived from its id.
pub(crate) fn body(
    topic: &Topic,
    ctx: &BodyContext<'_>,
    model: &mut Model,
    rng: &mut impl Rng,
) -> Value {
    match topic {
        Topic::QueueObservations { queue_id } => {
            // Asked for a listing of a given size: always an observation.
            if ctx.observation_conversations.is_none() && rng.gen_ratio(1, 4) {
                queue_aggregates(queue_id, ctx, rng)
            } else {
                queue_observation(queue_id, ctx, model, rng)
            }
        }
        Topic::UserAggregates { user_id } => user_aggregates(user_id, ctx, rng),
        Topic::QueueConversations { queue_id } => {
            let members: Vec<String> = ctx.directory.queue(queue_id).map_or_else(Vec::new, |q| {
                ctx.directory.members(q).map(|u| u.id.clone()).collect()
            });
            let conv = model
                .conversations
                .on_queue(queue_id, &members, ctx.now_ms, rng);
            conversation(&conv, ctx)
        }
        Topic::UserConversations { user_id } => {
            let queues = queues_of(ctx.directory, user_id);
            let conv = model
                .conversations
                .on_agent(user_id, &queues, ctx.now_ms, rng);
            conversation(&conv, ctx)
        }
        Topic::UserPresence { .. } => presence(ctx, rng),
        Topic::UserRoutingStatus { .. } => {
            let status = [
                "IDLE",
                "INTERACTING",
                "NOT_RESPONDING",
                "OFF_QUEUE",
                "COMMUNICATING",
            ]
            .choose(rng);
            json!({"routingStatus": {"status": status, "startTime": rfc3339_ms(ctx.now_ms - rng.gen_range(0..600_000))}})
        }
        Topic::AgentState { user_id } => match model.conversations.latest_of_agent(user_id) {
            Some(conv) => pool_agent_state(&conv, ctx),
            None => agent_state(user_id, ctx, rng),
        },
        Topic::ConversationDetail {
            conversation_id,
            kind,
        } => {
            let facts = ConversationFacts::of(conversation_id, ctx.directory);
            detail_event(&facts, *kind, ctx, rng)
        }
    }
}

/// The live queues `user_id` is a member of.
fn queues_of(directory: &Directory, user_id: &str) -> Vec<String> {
    let Some(index) = directory.users.iter().position(|u| u.id == user_id) else {
        return Vec::new();
    };
    directory
        .live_queues()
        .filter(|q| q.members.contains(&index))
        .map(|q| q.id.clone())
        .collect()
}

fn presence(ctx: &BodyContext<'_>, rng: &mut impl Rng) -> Value {
    let definition = ctx.directory.presences.choose(rng).map_or(
        json!({"id": "", "systemPresence": "Available"}),
        |p| json!({"id": p.id, "systemPresence": p.system_presence}),
    );
    json!({
        "source": "PURECLOUD",
        "presenceDefinition": definition,
        "primary": true,
        "message": "",
        "modifiedDate": rfc3339_ms(ctx.now_ms),
    })
}

fn agent_state(user_id: &str, ctx: &BodyContext<'_>, rng: &mut impl Rng) -> Value {
    let queue = ctx.directory.random_queue(rng);
    let state = ["ALERT", "INTERACT", "HOLD", "WRAPUP", "TERMINATED"].choose(rng);
    let session_start = ctx.now_ms - rng.gen_range(0..1_800_000);
    let mut body = json!({
        "conversationId": uuid_from(rng).to_string(),
        "sessionId": uuid_from(rng).to_string(),
        "sessionStart": session_start,
        "currentStateStart": ctx.now_ms - rng.gen_range(0..=(ctx.now_ms - session_start)),
        "currentState": state,
        "userId": user_id,
        "originatingDirection": "INBOUND",
        "mediaType": media_of(queue).upper(),
        "requestedSkillIds": [],
    });
    if let Some(q) = queue {
        body["queueId"] = json!(q.id);
    }
    body
}

/// `v2.detail.events.agent.{id}.state` for an agent with a live pool
/// conversation: that conversation's id, session and stage.
fn pool_agent_state(conv: &Conversation, ctx: &BodyContext<'_>) -> Value {
    let facts = ConversationFacts::of_pool(conv, ctx.directory);
    let (state, since) = match conv.stage {
        Stage::Alerting => ("ALERT", conv.started_ms),
        Stage::Connected => ("INTERACT", conv.connected_ms.unwrap_or(conv.started_ms)),
        Stage::Acw => ("WRAPUP", conv.call_ended_ms.unwrap_or(conv.started_ms)),
        Stage::Disconnected => ("TERMINATED", conv.ended_ms.unwrap_or(conv.started_ms)),
    };
    let mut body = json!({
        "conversationId": conv.id,
        "sessionId": facts.agent().1,
        "sessionStart": conv.started_ms,
        "currentStateStart": since,
        "currentState": state,
        "userId": conv.agent_id,
        "originatingDirection": facts.direction,
        "mediaType": facts.media.upper(),
        "requestedSkillIds": [],
    });
    if let Some(q) = &conv.queue_id {
        body["queueId"] = json!(q);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::DetailKind;
    use context::test_context as ctx;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn every_family_builds_in_an_empty_directory() {
        let dir = Directory::new(0, 0);
        let mut rng = StdRng::seed_from_u64(4);
        let mut model = Model::new(3);
        let id = "3b2f6a52-8c3e-4d0e-9a55-2b7c1e0d4f11".to_string();
        for topic in [
            Topic::QueueObservations {
                queue_id: id.clone(),
            },
            Topic::UserAggregates {
                user_id: id.clone(),
            },
            Topic::QueueConversations {
                queue_id: id.clone(),
            },
            Topic::UserPresence {
                user_id: id.clone(),
            },
            Topic::UserRoutingStatus {
                user_id: id.clone(),
            },
            Topic::UserConversations {
                user_id: id.clone(),
            },
            Topic::AgentState {
                user_id: id.clone(),
            },
            Topic::ConversationDetail {
                conversation_id: id.clone(),
                kind: DetailKind::AcdEnd,
            },
        ] {
            for _ in 0..20 {
                assert!(body(&topic, &ctx(&dir), &mut model, &mut rng).is_object());
            }
        }
    }
}
