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
use super::directory::{Directory, Media, Queue, User};
use super::ids::{hash_str, stable_uuid, uuid_from};
use super::topics::{DetailKind, Topic};

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

/// The body of one event on `topic`.
pub(crate) fn body(topic: &Topic, ctx: &BodyContext<'_>, rng: &mut impl Rng) -> Value {
    match topic {
        Topic::QueueObservations { queue_id } => {
            if rng.gen_ratio(1, 4) {
                queue_aggregates(queue_id, ctx, rng)
            } else {
                queue_observation(queue_id, ctx, rng)
            }
        }
        Topic::UserAggregates { user_id } => user_aggregates(user_id, ctx, rng),
        Topic::QueueConversations { queue_id } => {
            let queue = ctx.directory.queue(queue_id);
            let members: Vec<&User> =
                queue.map_or_else(Vec::new, |q| ctx.directory.members(q).collect());
            let agent = members.choose(rng).copied();
            conversation(queue_id, queue, agent, ctx, rng)
        }
        Topic::UserConversations { user_id } => {
            let agent = ctx.directory.user(user_id);
            let queue = ctx.directory.random_queue(rng);
            let queue_id = queue.map_or_else(|| uuid_from(rng).to_string(), |q| q.id.clone());
            conversation(&queue_id, queue, agent, ctx, rng)
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
        Topic::AgentState { user_id } => agent_state(user_id, ctx, rng),
        Topic::ConversationDetail {
            conversation_id,
            kind,
        } => detail_event(conversation_id, *kind, ctx, rng),
    }
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

fn qualified(metric: &str, qualifier: &str, n: u64) -> Value {
    json!({"metric": metric, "qualifier": qualifier, "stats": {"count": n}})
}

/// Duration statistics (`tHandle`, `tAnswered`, …) over `n` samples.
fn timing(metric: &str, n: u64, rng: &mut impl Rng) -> Value {
    if n == 0 {
        return json!({"metric": metric, "stats": {"count": 0, "sum": 0.0}});
    }
    let min = rng.gen_range(2_000..30_000) as f64;
    let max = min + rng.gen_range(0..900_000) as f64;
    let sum = (min + max) / 2.0 * n as f64;
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

/// Live queue statistics: `{"group":{queueId,mediaType},"data":[{interval,metrics}]}`.
fn queue_observation(queue_id: &str, ctx: &BodyContext<'_>, rng: &mut impl Rng) -> Value {
    let queue = ctx.directory.queue(queue_id);
    let members = queue.map_or(5, |q| q.members.len() as u64);
    let waiting = ctx
        .observation_conversations
        .unwrap_or_else(|| rng.gen_range(0..=4));
    let interacting = rng.gen_range(0..=members.min(waiting as u64 + 2));
    let idle = members.saturating_sub(interacting);
    let now = rfc3339_ms(ctx.now_ms);

    let mut o_waiting = count("oWaiting", waiting as u64);
    if waiting > 0 {
        o_waiting["observations"] = (0..waiting)
            .map(|_| observation_value(queue, ctx, rng))
            .collect();
    }
    let mut o_interacting = count("oInteracting", interacting);
    if interacting > 0 {
        o_interacting["observations"] = (0..interacting)
            .map(|_| observation_value(queue, ctx, rng))
            .collect();
    }
    let on_queue = ctx
        .directory
        .presences
        .iter()
        .find(|p| p.system_presence == "On Queue");
    let metrics = vec![
        count("oAlerting", rng.gen_range(0..=1)),
        o_interacting,
        o_waiting,
        count("oMemberUsers", members),
        count("oActiveUsers", members),
        qualified("oOnQueueUsers", "IDLE", idle),
        qualified("oOnQueueUsers", "INTERACTING", interacting),
        qualified("oOnQueueUsers", "NOT_RESPONDING", 0),
        qualified("oUserRoutingStatuses", "IDLE", idle),
        qualified("oUserRoutingStatuses", "INTERACTING", interacting),
        qualified(
            "oUserPresences",
            on_queue.map_or("", |p| p.id.as_str()),
            members,
        ),
    ];
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

/// One communication (call, chat, …) of a participant in a conversation.
fn communication(
    state: &str,
    media: Media,
    connected_ms: u64,
    ended_ms: Option<u64>,
    address: &str,
    rng: &mut impl Rng,
) -> Value {
    let mut c = json!({
        "id": uuid_from(rng).to_string(),
        "state": state,
        "initialState": "alerting",
        "held": false,
        "direction": "inbound",
        "provider": match media {
            Media::Voice => "Edge",
            Media::Chat => "PureCloud Webchat v2",
            Media::Email => "PureCloud Email",
            Media::Message => "PureCloud Messaging",
        },
        "connectedTime": rfc3339_ms(connected_ms),
    });
    if media == Media::Voice {
        c["recording"] = json!(false);
        c["recordingState"] = json!("none");
        c["muted"] = json!(false);
        c["confined"] = json!(false);
        c["self"] = json!({"addressNormalized": "tel:+18005550100"});
        c["other"] = json!({"addressNormalized": address});
    }
    if let Some(end) = ended_ms {
        c["disconnectedTime"] = json!(rfc3339_ms(end));
        c["disconnectType"] = json!("peer");
    }
    c
}

/// A conversation as `v2.routing.queues.{id}.conversations` and
/// `v2.users.{id}.conversations` carry it: customer, ACD and agent
/// participants at a random stage of the call.
fn conversation(
    queue_id: &str,
    queue: Option<&Queue>,
    agent: Option<&User>,
    ctx: &BodyContext<'_>,
    rng: &mut impl Rng,
) -> Value {
    let media = media_of(queue);
    let key = media.communications_key();
    let start = ctx.now_ms - rng.gen_range(60_000..1_200_000);
    let answered = start + rng.gen_range(5_000..50_000);
    let stage = ["alerting", "connected", "connected", "disconnected"]
        .choose(rng)
        .copied()
        .unwrap_or("connected");
    let ended = (stage == "disconnected").then_some(ctx.now_ms - rng.gen_range(0..50_000));
    let address = phone(rng.gen());

    let mut customer = json!({
        "id": uuid_from(rng).to_string(),
        "connectedTime": rfc3339_ms(start),
        "name": "Customer",
        "purpose": "customer",
        "address": address,
        "wrapupRequired": false,
        "attributes": {},
    });
    customer[key] = json!([communication(
        if ended.is_some() {
            "disconnected"
        } else {
            "connected"
        },
        media,
        start,
        ended,
        &address,
        rng
    )]);

    let mut acd = json!({
        "id": uuid_from(rng).to_string(),
        "connectedTime": rfc3339_ms(start),
        "endTime": rfc3339_ms(answered),
        "queueId": queue_id,
        "name": queue.map_or("Queue", |q| q.name.as_str()),
        "purpose": "acd",
        "wrapupRequired": false,
        "attributes": {},
    });
    acd[key] = json!([communication(
        "disconnected",
        media,
        start,
        Some(answered),
        &address,
        rng
    )]);

    let mut participants = vec![customer, acd];
    if let Some(agent) = agent {
        let agent_state = match (stage, ended) {
            ("alerting", _) => "alerting",
            (_, Some(_)) => "disconnected",
            _ => "connected",
        };
        let mut p = json!({
            "id": uuid_from(rng).to_string(),
            "userId": agent.id,
            "queueId": queue_id,
            "name": agent.name,
            "purpose": "agent",
            "wrapupRequired": true,
            "wrapupExpected": true,
            "attributes": {},
        });
        if stage != "alerting" {
            p["connectedTime"] = json!(rfc3339_ms(answered));
        }
        if let Some(end) = ended {
            p["endTime"] = json!(rfc3339_ms(end));
        }
        p[key] = json!([communication(
            agent_state,
            media,
            answered,
            ended,
            &address,
            rng
        )]);
        participants.push(p);
    }
    json!({
        "id": uuid_from(rng).to_string(),
        "maxParticipants": participants.len(),
        "participants": participants,
        "recordingState": "none",
        "address": address,
        "divisions": [{"division": {"id": ctx.directory.division_id}, "entities": [{"id": queue_id}]}],
    })
}

/// Facts of a conversation derived from its id, shared by its detail events.
struct ConversationFacts<'a> {
    queue: Option<&'a Queue>,
    agent: Option<&'a User>,
    media: Media,
    ids: [String; 6],
    seed: u64,
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
            queue,
            agent,
            media: media_of(queue),
            ids: std::array::from_fn(|k| stable_uuid(seed, k as u64).to_string()),
            seed,
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
/// `*DetailEventTopic*Event` models.
fn detail_event(
    conversation_id: &str,
    kind: DetailKind,
    ctx: &BodyContext<'_>,
    rng: &mut impl Rng,
) -> Value {
    let facts = ConversationFacts::of(conversation_id, ctx.directory);
    let (participant_id, session_id) = match kind {
        DetailKind::CustomerStart | DetailKind::CustomerEnd | DetailKind::Attributes => {
            facts.customer()
        }
        DetailKind::AcdStart | DetailKind::AcdEnd => facts.acd(),
        DetailKind::UserStart | DetailKind::UserEnd | DetailKind::Acw => facts.agent(),
    };
    let mut b = Map::new();
    let mut put = |k: &str, v: Value| {
        b.insert(k.to_owned(), v);
    };
    put("eventTime", json!(ctx.now_ms));
    put("conversationId", json!(conversation_id));
    put("participantId", json!(participant_id));
    if kind == DetailKind::Attributes {
        put(
            "participantStartTime",
            json!(ctx.now_ms - rng.gen_range(10_000..600_000)),
        );
        let language = ["en-US", "es-US", "fr-CA"].choose(rng);
        let tier = ["gold", "silver", "bronze"].choose(rng);
        let case = format!("CS-{:06}", rng.gen_range(0..1_000_000));
        put(
            "attributes",
            json!({"ivr.language": language, "crm.accountTier": tier, "crm.caseNumber": case}),
        );
        return Value::Object(b);
    }
    put("sessionId", json!(session_id));
    put("mediaType", json!(facts.media.upper()));
    put("direction", json!("INBOUND"));
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
    let queue_id = facts.queue.map(|q| json!(q.id));
    let user_id = facts.agent.map(|u| json!(u.id));
    let interacting = rng.gen_range(20_000..900_000u64);
    match kind {
        DetailKind::CustomerStart | DetailKind::Attributes => {}
        DetailKind::CustomerEnd => {
            put(
                "disconnectType",
                json!(["CLIENT", "PEER", "ENDPOINT"].choose(rng)),
            );
            put("interactingDurationMs", json!(interacting));
        }
        DetailKind::AcdStart => {
            put("routingPriority", json!(0));
            put("requestedRoutingSkillIds", json!([]));
            put("queueId", queue_id.unwrap_or(Value::Null));
        }
        DetailKind::AcdEnd => {
            let answered = facts.agent.is_some() && rng.gen_ratio(9, 10);
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
            put("requestedRoutings", json!(["Standard"]));
            put("usedRouting", json!("Standard"));
            put("routingPriority", json!(0));
            put("connectedDurationMs", json!(rng.gen_range(1_000..120_000)));
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
                json!(["CLIENT", "PEER", "TRANSFER"].choose(rng)),
            );
            put("interactingDurationMs", json!(interacting));
            put("heldDurationMs", json!(rng.gen_range(0..60_000)));
            put("alertingDurationMs", json!(rng.gen_range(1_000..15_000)));
            put("contactingDurationMs", json!(0));
            put("dialingDurationMs", json!(0));
        }
        DetailKind::Acw => {
            put("userId", user_id.unwrap_or(Value::Null));
            put("queueId", queue_id.unwrap_or(Value::Null));
            put(
                "wrapupCode",
                json!(stable_uuid(0x57, rng.gen_range(0..8)).to_string()),
            );
            put("wrapupNotes", json!(""));
            put("wrapupDurationMs", json!(rng.gen_range(5_000..120_000)));
        }
    }
    // Nulls only arise in an empty directory; real events omit such fields.
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
        let b = queue_observation(q, &ctx, &mut rng);
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
        let b = queue_observation(&dir.queues[0].id, &ctx, &mut rng);
        assert!(b.to_string().len() > 64 * 1024);
    }

    #[test]
    fn detail_events_of_one_conversation_agree() {
        let dir = Directory::new(10, 10);
        let mut rng = StdRng::seed_from_u64(3);
        let conv = "3b2f6a52-8c3e-4d0e-9a55-2b7c1e0d4f11";
        let start = detail_event(conv, DetailKind::CustomerStart, &ctx(&dir), &mut rng);
        let end = detail_event(conv, DetailKind::CustomerEnd, &ctx(&dir), &mut rng);
        assert_eq!(start["participantId"], end["participantId"]);
        assert_eq!(start["sessionId"], end["sessionId"]);
        assert_eq!(start["conversationId"], conv);
        assert_eq!(start["eventTime"], 1_795_340_814_839u64);
        assert!(end["interactingDurationMs"].is_u64());
        let user_start = detail_event(conv, DetailKind::UserStart, &ctx(&dir), &mut rng);
        let acw = detail_event(conv, DetailKind::Acw, &ctx(&dir), &mut rng);
        assert_eq!(user_start["userId"], acw["userId"]);
        assert!(dir.user(user_start["userId"].as_str().unwrap()).is_some());
        assert!(dir.queue(user_start["queueId"].as_str().unwrap()).is_some());
    }

    #[test]
    fn every_family_builds_in_an_empty_directory() {
        let dir = Directory::new(0, 0);
        let mut rng = StdRng::seed_from_u64(4);
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
                assert!(body(&topic, &ctx(&dir), &mut rng).is_object());
            }
        }
    }
}
