//! Conversation snapshots: the body of `v2.routing.queues.{id}.conversations`
//! and `v2.users.{id}.conversations`, a pool conversation with its
//! participants at its current stage.

use serde_json::{json, Value};

use super::context::{phone, BodyContext};
use super::facts::{wrapup_code, ConversationFacts};
use crate::clock::rfc3339_ms;
use crate::directory::Media;
use crate::ids::stable_uuid;
use crate::model::conversations::{Conversation, Stage};

/// One communication (call, chat, …) of a participant in a conversation.
struct Comm<'a> {
    id: String,
    state: &'a str,
    media: Media,
    connected_ms: Option<u64>,
    ended_ms: Option<u64>,
    address: &'a str,
    direction: &'a str,
}

fn communication(c: &Comm<'_>) -> Value {
    let mut v = json!({
        "id": c.id,
        "state": c.state,
        "initialState": if c.direction == "outbound" { "dialing" } else { "alerting" },
        "held": false,
        "direction": c.direction,
        "provider": match c.media {
            Media::Voice => "Edge",
            Media::Chat => "PureCloud Webchat v2",
            Media::Email => "PureCloud Email",
            Media::Message => "PureCloud Messaging",
        },
    });
    if let Some(t) = c.connected_ms {
        v["connectedTime"] = json!(rfc3339_ms(t));
    }
    if c.media == Media::Voice {
        v["recording"] = json!(false);
        v["recordingState"] = json!("none");
        v["muted"] = json!(false);
        v["confined"] = json!(false);
        v["self"] = json!({"addressNormalized": "tel:+18005550100"});
        v["other"] = json!({"addressNormalized": c.address});
    }
    if let Some(end) = c.ended_ms {
        v["disconnectedTime"] = json!(rfc3339_ms(end));
        v["disconnectType"] = json!("peer");
    }
    v
}

/// A pool conversation as `v2.routing.queues.{id}.conversations` and
/// `v2.users.{id}.conversations` carry it, at its current stage:
///
/// | stage | customer | acd | agent |
/// |---|---|---|---|
/// | alerting | connected | connected | alerting |
/// | connected | connected | disconnected | connected |
/// | acw | disconnected | disconnected | disconnected, `wrapupRequired`, no `wrapup` |
/// | disconnected | disconnected | disconnected | disconnected, `wrapup` |
///
/// (Without an agent the conversation is abandoned: alerting, then
/// disconnected. An outbound call has no ACD participant.)
pub(crate) fn conversation(conv: &Conversation, ctx: &BodyContext<'_>) -> Value {
    let facts = ConversationFacts::of_pool(conv, ctx.directory);
    let media = facts.media;
    let key = media.communications_key();
    let address = phone(facts.seed);
    let direction = facts.direction.to_ascii_lowercase();
    let call_end = conv.call_ended_ms;
    let comm_id = |k: u64| stable_uuid(facts.seed, 100 + k).to_string();
    let mut participants = Vec::new();

    let mut customer = json!({
        "id": facts.customer().0,
        "connectedTime": rfc3339_ms(conv.started_ms),
        "name": "Customer",
        "purpose": if conv.queue_id.is_some() { "customer" } else { "external" },
        "address": address,
        "wrapupRequired": false,
        "attributes": {},
    });
    if let Some(end) = call_end {
        customer["endTime"] = json!(rfc3339_ms(end));
    }
    customer[key] = json!([communication(&Comm {
        id: comm_id(0),
        state: if call_end.is_some() {
            "disconnected"
        } else {
            "connected"
        },
        media,
        connected_ms: Some(conv.started_ms),
        ended_ms: call_end,
        address: &address,
        direction: &direction,
    })]);
    participants.push(customer);

    if let Some(queue_id) = &conv.queue_id {
        // The ACD leg ends when an agent answers, or with the abandon.
        let acd_end = conv.connected_ms.or(conv.ended_ms);
        let mut acd = json!({
            "id": facts.acd().0,
            "connectedTime": rfc3339_ms(conv.started_ms),
            "queueId": queue_id,
            "name": facts.queue.map_or("Queue", |q| q.name.as_str()),
            "purpose": "acd",
            "wrapupRequired": false,
            "attributes": {},
        });
        if let Some(end) = acd_end {
            acd["endTime"] = json!(rfc3339_ms(end));
        }
        acd[key] = json!([communication(&Comm {
            id: comm_id(1),
            state: if acd_end.is_some() {
                "disconnected"
            } else {
                "connected"
            },
            media,
            connected_ms: Some(conv.started_ms),
            ended_ms: acd_end,
            address: &address,
            direction: &direction,
        })]);
        participants.push(acd);
    }

    if let Some(agent_id) = &conv.agent_id {
        let state = match conv.stage {
            Stage::Alerting => "alerting",
            Stage::Connected => "connected",
            Stage::Acw | Stage::Disconnected => "disconnected",
        };
        let mut p = json!({
            "id": facts.agent().0,
            "userId": agent_id,
            "name": facts.agent.map_or("Agent", |u| u.name.as_str()),
            "purpose": "agent",
            "wrapupRequired": true,
            "wrapupExpected": true,
            "attributes": {},
        });
        if let Some(q) = &conv.queue_id {
            p["queueId"] = json!(q);
        }
        if let Some(t) = conv.connected_ms {
            p["connectedTime"] = json!(rfc3339_ms(t));
        }
        if conv.stage == Stage::Disconnected {
            if let Some(end) = conv.ended_ms {
                p["endTime"] = json!(rfc3339_ms(end));
            }
            p["wrapup"] = json!({
                "code": wrapup_code(facts.seed),
                "notes": "",
                "durationSeconds": conv
                    .ended_ms
                    .zip(call_end)
                    .map_or(0, |(e, c)| e.saturating_sub(c) / 1000),
                "endTime": conv.ended_ms.map(rfc3339_ms),
            });
        }
        p[key] = json!([communication(&Comm {
            id: comm_id(2),
            state,
            media,
            connected_ms: conv.connected_ms,
            ended_ms: call_end,
            address: &address,
            direction: &direction,
        })]);
        participants.push(p);
    }
    let mut entities = Vec::new();
    if let Some(q) = &conv.queue_id {
        entities.push(json!({"id": q}));
    }
    json!({
        "id": conv.id,
        "maxParticipants": participants.len(),
        "participants": participants,
        "recordingState": "none",
        "address": address,
        "divisions": [{"division": {"id": ctx.directory.division_id}, "entities": entities}],
    })
}
