//! Event bodies per topic family, shaped like the real notifications (field
//! names and enum values follow the models of Genesys' own SDKs), and the
//! notification envelope.
//!
//! Per-conversation facts (queue, agent, participant and session ids, phone
//! numbers) are derived from the conversation id, so `customer.start` and
//! `customer.end` of one conversation agree with each other.

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::clock::rfc3339_ms;
use super::conversations::{self, Conversation, ConversationPool, Stage};
use super::directory::{Directory, Media, Queue, User};
use super::ids::{hash_str, stable_uuid, uuid_from};
use super::observations::{metric_json, QueueObservations};
use super::topics::{DetailKind, Topic};

/// What the simulated contact centre remembers between events: queue
/// statistics (observations are deltas against them) and the live
/// conversations.
#[derive(Debug)]
pub(crate) struct Model {
    pub observations: QueueObservations,
    pub conversations: ConversationPool,
}

impl Model {
    pub fn new(conversations_per_entity: usize) -> Self {
        Model {
            observations: QueueObservations::default(),
            conversations: ConversationPool::new(conversations_per_entity),
        }
    }
}

/// What a body builder may look at besides the random generator.
pub(crate) struct BodyContext<'a> {
    pub directory: &'a Directory,
    pub now_ms: u64,
    /// Conversations listed under `oWaiting` / `oInteracting` in queue
    /// observations (random 0..=4 when `None`). Large values make the
    /// tens-of-KB frames the field reference warns about.
    pub observation_conversations: Option<usize>,
}

/// `{"topicName","version":"2","eventBody":{…},"metadata":{"CorrelationId"}}`
///
/// Written by hand around `Value`'s `Display`: that code is compiled (and
/// optimized) inside serde_json, whereas a generic `serde_json::to_string`
/// would be instantiated, unoptimized, in this crate's dev builds; and the
/// field order stays the real one (`topicName` first).
pub(crate) fn envelope(topic_name: &str, body: &Value, correlation_id: &Uuid) -> String {
    let topic = Value::from(topic_name);
    format!(
        r#"{{"topicName":{topic},"version":"2","eventBody":{body},"metadata":{{"CorrelationId":"{correlation_id}"}}}}"#
    )
}

/// The body of one event on `topic`. Detail topics of pool conversations
/// are the generator's business (see `conversations`); here a detail topic
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

/// A detail event of a pool conversation (see `conversations`).
pub(crate) fn pool_detail_event(
    conv: &Conversation,
    kind: DetailKind,
    ctx: &BodyContext<'_>,
    rng: &mut impl Rng,
) -> Value {
    let facts = ConversationFacts::of_pool(conv, ctx.directory);
    detail_event(&facts, kind, ctx, rng)
}

fn media_of(queue: Option<&Queue>) -> Media {
    queue.map_or(Media::Voice, |q| q.media)
}

fn phone(n: u64) -> String {
    format!("tel:+1317555{:04}", n % 10_000)
}

/// `2026-11-22T09:30:00.000Z/2026-11-22T10:00:00.000Z` around `now_ms`.
fn half_hour_interval(now_ms: u64) -> String {
    const HALF_HOUR: u64 = 30 * 60 * 1000;
    let start = now_ms - now_ms % HALF_HOUR;
    format!("{}/{}", rfc3339_ms(start), rfc3339_ms(start + HALF_HOUR))
}

fn count(metric: &str, n: u64) -> Value {
    json!({"metric": metric, "stats": {"count": n}})
}

/// Duration statistics (`tHandle`, `tAnswered`, …) over `n` samples.
fn timing(metric: &str, n: u64, rng: &mut impl Rng) -> Value {
    if n == 0 {
        return json!({"metric": metric, "stats": {"count": 0, "sum": 0}});
    }
    let min: u64 = rng.gen_range(2_000..30_000);
    let max = min + rng.gen_range(0..900_000);
    let sum = (min + max) / 2 * n;
    json!({"metric": metric, "stats": {"max": max, "min": min, "count": n, "sum": sum}})
}

fn observation_value(queue: Option<&Queue>, ctx: &BodyContext<'_>, rng: &mut impl Rng) -> Value {
    let media = media_of(queue);
    let mut v = json!({
        "observationDate": rfc3339_ms(ctx.now_ms - rng.gen_range(0..900_000)),
        "conversationId": uuid_from(rng).to_string(),
        "sessionId": uuid_from(rng).to_string(),
        "routingPriority": 0,
        "direction": "inbound",
        "requestedRoutings": ["Standard"],
    });
    if media == Media::Voice {
        let n = rng.gen::<u64>();
        v["addressFrom"] = json!(phone(n));
        v["addressTo"] = json!("tel:+18005550100");
        v["ani"] = json!(phone(n));
        v["dnis"] = json!("tel:+18005550100");
    }
    v
}

/// Live queue statistics, as a delta: `{"group":{queueId,mediaType},
/// "data":[{interval,metrics}]}` where `metrics` holds only what changed
/// since the queue's previous observation event (everything on its first).
/// With `observation_conversations`, `oWaiting` is set to that many and
/// always sent, listing them (the waiting conversations changed).
fn queue_observation(
    queue_id: &str,
    ctx: &BodyContext<'_>,
    model: &mut Model,
    rng: &mut impl Rng,
) -> Value {
    let queue = ctx.directory.queue(queue_id);
    let members = queue.map_or(0, |q| ctx.directory.members(q).count() as u64);
    let on_queue = ctx
        .directory
        .presences
        .iter()
        .find(|p| p.system_presence == "On Queue")
        .map_or("", |p| p.id.as_str());
    let stats = model.observations.get(queue_id);
    let mut delta = stats.step(members, on_queue, rng);
    if let Some(k) = ctx.observation_conversations {
        let waiting = stats.force_waiting(k as u64);
        delta.changed.retain(|(key, _)| key.0 != "oWaiting");
        delta.changed.push((("oWaiting", None), waiting));
    }
    let now = rfc3339_ms(ctx.now_ms);
    let metrics: Vec<Value> = delta
        .changed
        .iter()
        .map(|((metric, qualifier), stat)| {
            let mut m = metric_json(metric, qualifier.as_deref(), *stat);
            let listed = match (*metric, stat) {
                ("oWaiting" | "oInteracting", super::observations::Stat::Count(n)) => *n,
                _ => 0,
            };
            if listed > 0 {
                // What `observation_conversations` asks for, else a few
                // (ordinary frames stay a few KB).
                let listed = listed.min(ctx.observation_conversations.map_or(4, |k| k as u64));
                m["observations"] = (0..listed)
                    .map(|_| observation_value(queue, ctx, rng))
                    .collect();
            }
            m
        })
        .collect();
    json!({
        "group": {"queueId": queue_id, "mediaType": media_of(queue).lower()},
        "data": [{"interval": format!("{now}/{now}"), "metrics": metrics}],
    })
}

/// The 30-minute aggregates that arrive on the same topic.
fn queue_aggregates(queue_id: &str, ctx: &BodyContext<'_>, rng: &mut impl Rng) -> Value {
    let queue = ctx.directory.queue(queue_id);
    let offered = rng.gen_range(0..60);
    let abandoned = rng.gen_range(0..=offered / 10);
    let answered = offered - abandoned;
    json!({
        "group": {"queueId": queue_id, "mediaType": media_of(queue).lower()},
        "data": [{"interval": half_hour_interval(ctx.now_ms), "metrics": [
            count("nOffered", offered),
            timing("tAnswered", answered, rng),
            timing("tAbandon", abandoned, rng),
            timing("tWait", offered, rng),
            timing("tHandle", answered, rng),
            timing("tTalk", answered, rng),
            timing("tAcw", answered, rng),
            count("nTransferred", rng.gen_range(0..=answered / 5)),
        ]}],
    })
}

fn user_aggregates(user_id: &str, ctx: &BodyContext<'_>, rng: &mut impl Rng) -> Value {
    let handled = rng.gen_range(0..20);
    json!({
        "group": {"userId": user_id, "mediaType": "voice"},
        "data": [{"interval": half_hour_interval(ctx.now_ms), "metrics": [
            timing("tHandle", handled, rng),
            timing("tTalk", handled, rng),
            timing("tAcw", handled, rng),
            timing("tHeld", rng.gen_range(0..=handled / 3), rng),
            timing("tAnswered", handled, rng),
            count("nTransferred", rng.gen_range(0..=handled / 4)),
            count("nOutbound", rng.gen_range(0..3)),
        ]}],
    })
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
fn conversation(conv: &Conversation, ctx: &BodyContext<'_>) -> Value {
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

/// The wrap-up code a conversation ends with (one of eight per org).
fn wrapup_code(seed: u64) -> String {
    stable_uuid(0x57, seed % 8).to_string()
}

/// Times of a pool conversation, for detail event durations.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    started_ms: u64,
    connected_ms: Option<u64>,
    call_ended_ms: Option<u64>,
    ended_ms: Option<u64>,
}

/// Facts of a conversation shared by its events: derived from the id alone
/// for ids the simulator does not know, taken from the pool otherwise.
struct ConversationFacts<'a> {
    conversation_id: String,
    queue_id: Option<String>,
    queue: Option<&'a Queue>,
    user_id: Option<String>,
    agent: Option<&'a User>,
    media: Media,
    /// `INBOUND` (queued) or `OUTBOUND` (placed by the agent).
    direction: &'static str,
    ids: [String; 6],
    seed: u64,
    timeline: Option<Timeline>,
}

impl<'a> ConversationFacts<'a> {
    fn of(conversation_id: &str, directory: &'a Directory) -> Self {
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

    fn of_pool(conv: &Conversation, directory: &'a Directory) -> Self {
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
    fn customer(&self) -> (&str, &str) {
        (&self.ids[0], &self.ids[1])
    }
    fn acd(&self) -> (&str, &str) {
        (&self.ids[2], &self.ids[3])
    }
    fn agent(&self) -> (&str, &str) {
        (&self.ids[4], &self.ids[5])
    }
}

/// `v2.detail.events.conversation.{id}.<kind>`: fields of the SDK's
/// `*DetailEventTopic*Event` models; routing enums uppercase (`STANDARD`).
fn detail_event(
    facts: &ConversationFacts<'_>,
    kind: DetailKind,
    ctx: &BodyContext<'_>,
    rng: &mut impl Rng,
) -> Value {
    let (participant_id, session_id) = match kind {
        DetailKind::CustomerStart | DetailKind::CustomerEnd | DetailKind::Attributes => {
            facts.customer()
        }
        DetailKind::AcdStart | DetailKind::AcdEnd => facts.acd(),
        DetailKind::UserStart | DetailKind::UserEnd | DetailKind::Acw => facts.agent(),
    };
    let t = facts.timeline;
    // Durations: from the pool's times when known, else plausible draws.
    let span =
        |from: Option<u64>, to: Option<u64>, rng: &mut dyn rand::RngCore, lo: u64, hi: u64| match (
            t, from, to,
        ) {
            (Some(_), Some(a), Some(b)) => b.saturating_sub(a),
            (Some(_), _, _) => 0,
            (None, _, _) => rng.gen_range(lo..hi),
        };
    let mut b = Map::new();
    let mut put = |k: &str, v: Value| {
        b.insert(k.to_owned(), v);
    };
    put("eventTime", json!(ctx.now_ms));
    put("conversationId", json!(facts.conversation_id));
    put("participantId", json!(participant_id));
    if kind == DetailKind::Attributes {
        put(
            "participantStartTime",
            json!(t.map_or_else(
                || ctx.now_ms - rng.gen_range(10_000..600_000),
                |t| t.started_ms
            )),
        );
        let language = ["en-US", "es-US", "fr-CA"][(facts.seed % 3) as usize];
        let tier = ["gold", "silver", "bronze"][(facts.seed / 3 % 3) as usize];
        let case = format!("CS-{:06}", facts.seed % 1_000_000);
        put(
            "attributes",
            json!({"ivr.language": language, "crm.accountTier": tier, "crm.caseNumber": case}),
        );
        return Value::Object(b);
    }
    put("sessionId", json!(session_id));
    put("mediaType", json!(facts.media.upper()));
    put("direction", json!(facts.direction));
    put("divisionId", json!(ctx.directory.division_id));
    match facts.media {
        Media::Voice => {
            put("provider", json!("Edge"));
            put("ani", json!(phone(facts.seed)));
            put("dnis", json!("tel:+18005550100"));
            put("addressFrom", json!(phone(facts.seed)));
            put("addressTo", json!("tel:+18005550100"));
        }
        Media::Email => {
            put("provider", json!("PureCloud Email"));
            put(
                "addressFrom",
                json!(format!("customer{}@example.net", facts.seed % 1000)),
            );
            put("addressTo", json!("support@example.com"));
            put("subject", json!("Question about my order"));
        }
        Media::Chat => {
            put("provider", json!("PureCloud Webchat v2"));
            put("addressFrom", json!("Web Visitor"));
        }
        Media::Message => {
            put("provider", json!("PureCloud Messaging"));
            put("messageType", json!("WEBMESSAGING"));
            put("addressFrom", json!(facts.ids[1]));
        }
    }
    let queue_id = facts.queue_id.as_ref().map(|q| json!(q));
    let user_id = facts.user_id.as_ref().map(|u| json!(u));
    let connected = t.and_then(|t| t.connected_ms);
    let call_ended = t.and_then(|t| t.call_ended_ms);
    match kind {
        DetailKind::CustomerStart | DetailKind::Attributes => {}
        DetailKind::CustomerEnd => {
            let disconnect = match t {
                Some(t) if t.connected_ms.is_none() => "CLIENT",
                Some(_) => "PEER",
                None => ["CLIENT", "PEER", "ENDPOINT"][(facts.seed % 3) as usize],
            };
            put("disconnectType", json!(disconnect));
            let interacting = span(connected, call_ended, rng, 20_000, 900_000);
            put("interactingDurationMs", json!(interacting));
        }
        DetailKind::AcdStart => {
            put("routingPriority", json!(0));
            put("requestedRoutingSkillIds", json!([]));
            put("requestedRoutings", json!(["STANDARD"]));
            put("queueId", queue_id.unwrap_or(Value::Null));
        }
        DetailKind::AcdEnd => {
            let answered = match t {
                Some(t) => t.connected_ms.is_some(),
                None => facts.agent.is_some() && rng.gen_ratio(9, 10),
            };
            put("queueId", queue_id.unwrap_or(Value::Null));
            put(
                "disconnectType",
                json!(if answered { "TRANSFER" } else { "CLIENT" }),
            );
            put(
                "acdOutcome",
                json!(if answered { "ANSWERED" } else { "ABANDON" }),
            );
            if answered {
                put("answeredUserId", user_id.unwrap_or(Value::Null));
            }
            put("requestedRoutings", json!(["STANDARD"]));
            put("usedRouting", json!("STANDARD"));
            put("routingPriority", json!(0));
            let acd_end = t.and_then(|t| t.connected_ms.or(t.ended_ms));
            let waited = span(t.map(|t| t.started_ms), acd_end, rng, 1_000, 120_000);
            put("connectedDurationMs", json!(waited));
        }
        DetailKind::UserStart => {
            put("userId", user_id.unwrap_or(Value::Null));
            put("queueId", queue_id.unwrap_or(Value::Null));
        }
        DetailKind::UserEnd => {
            put("userId", user_id.unwrap_or(Value::Null));
            put("queueId", queue_id.unwrap_or(Value::Null));
            put(
                "disconnectType",
                json!(["CLIENT", "PEER", "TRANSFER"][(facts.seed % 3) as usize]),
            );
            let interacting = span(connected, call_ended, rng, 20_000, 900_000);
            put("interactingDurationMs", json!(interacting));
            put("heldDurationMs", json!(0));
            let alerting = span(t.map(|t| t.started_ms), connected, rng, 1_000, 15_000);
            put("alertingDurationMs", json!(alerting));
            put("contactingDurationMs", json!(0));
            put("dialingDurationMs", json!(0));
        }
        DetailKind::Acw => {
            put("userId", user_id.unwrap_or(Value::Null));
            put("queueId", queue_id.unwrap_or(Value::Null));
            put("wrapupCode", json!(wrapup_code(facts.seed)));
            put("wrapupNotes", json!(""));
            let ended = t.and_then(|t| t.ended_ms);
            let wrapup = span(call_ended, ended, rng, 5_000, 120_000);
            put("wrapupDurationMs", json!(wrapup));
        }
    }
    // Nulls only arise without a queue or agent; real events omit them.
    b.retain(|_, v| !v.is_null());
    Value::Object(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn ctx(dir: &Directory) -> BodyContext<'_> {
        BodyContext {
            directory: dir,
            now_ms: 1_795_340_814_839,
            observation_conversations: None,
        }
    }

    #[test]
    fn envelope_has_the_real_shape() {
        let id = Uuid::new_v4();
        let frame = envelope("v2.users.x.presence", &json!({"a": 1}), &id);
        let v: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["topicName"], "v2.users.x.presence");
        assert_eq!(v["version"], "2");
        assert_eq!(v["eventBody"]["a"], 1);
        assert_eq!(v["metadata"]["CorrelationId"], id.to_string());
        assert!(frame.starts_with(r#"{"topicName":"#));
    }

    #[test]
    fn observation_body_matches_the_reference() {
        let dir = Directory::new(4, 6);
        let q = &dir.queues[0].id;
        let mut rng = StdRng::seed_from_u64(1);
        let ctx = BodyContext {
            observation_conversations: Some(3),
            ..ctx(&dir)
        };
        let mut model = Model::new(3);
        let b = queue_observation(q, &ctx, &mut model, &mut rng);
        assert_eq!(b["group"]["queueId"], json!(q));
        assert_eq!(b["group"]["mediaType"], "voice");
        assert_eq!(
            b["data"][0]["interval"],
            "2026-11-22T09:46:54.839Z/2026-11-22T09:46:54.839Z"
        );
        let metrics = b["data"][0]["metrics"].as_array().unwrap();
        let waiting = metrics.iter().find(|m| m["metric"] == "oWaiting").unwrap();
        assert_eq!(waiting["stats"]["count"], 3);
        assert_eq!(waiting["observations"].as_array().unwrap().len(), 3);
        let agg = queue_aggregates(q, &ctx, &mut rng);
        assert_eq!(
            agg["data"][0]["interval"],
            "2026-11-22T09:30:00.000Z/2026-11-22T10:00:00.000Z"
        );
    }

    #[test]
    fn large_observations_reach_tens_of_kilobytes() {
        let dir = Directory::new(1, 5);
        let mut rng = StdRng::seed_from_u64(2);
        let ctx = BodyContext {
            observation_conversations: Some(400),
            ..ctx(&dir)
        };
        let b = queue_observation(&dir.queues[0].id, &ctx, &mut Model::new(3), &mut rng);
        assert!(b.to_string().len() > 64 * 1024);
    }

    #[test]
    fn detail_events_of_one_conversation_agree() {
        let dir = Directory::new(10, 10);
        let mut rng = StdRng::seed_from_u64(3);
        let conv = "3b2f6a52-8c3e-4d0e-9a55-2b7c1e0d4f11";
        let facts = ConversationFacts::of(conv, &dir);
        let start = detail_event(&facts, DetailKind::CustomerStart, &ctx(&dir), &mut rng);
        let end = detail_event(&facts, DetailKind::CustomerEnd, &ctx(&dir), &mut rng);
        assert_eq!(start["participantId"], end["participantId"]);
        assert_eq!(start["sessionId"], end["sessionId"]);
        assert_eq!(start["conversationId"], conv);
        assert_eq!(start["eventTime"], 1_795_340_814_839u64);
        assert!(end["interactingDurationMs"].is_u64());
        let user_start = detail_event(&facts, DetailKind::UserStart, &ctx(&dir), &mut rng);
        let acw = detail_event(&facts, DetailKind::Acw, &ctx(&dir), &mut rng);
        assert_eq!(user_start["userId"], acw["userId"]);
        assert!(dir.user(user_start["userId"].as_str().unwrap()).is_some());
        assert!(dir.queue(user_start["queueId"].as_str().unwrap()).is_some());
    }

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
