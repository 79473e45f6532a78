//! Detail events, `v2.detail.events.conversation.{id}.<kind>`: one per
//! step of a conversation's life, with durations from its own times.

use rand::Rng;
use serde_json::{json, Map, Value};

use super::context::{phone, BodyContext};
use super::facts::{wrapup_code, ConversationFacts};
use crate::directory::Media;
use crate::model::conversations::Conversation;
use crate::topics::DetailKind;

/// A detail event of a pool conversation (see `model::conversations`).
pub(crate) fn pool_detail_event(
    conv: &Conversation,
    kind: DetailKind,
    ctx: &BodyContext<'_>,
    rng: &mut impl Rng,
) -> Value {
    let facts = ConversationFacts::of_pool(conv, ctx.directory);
    detail_event(&facts, kind, ctx, rng)
}

/// `v2.detail.events.conversation.{id}.<kind>`: fields of the SDK's
/// `*DetailEventTopic*Event` models; routing enums uppercase (`STANDARD`).
pub(crate) fn detail_event(
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
    use crate::directory::Directory;
    use crate::events::context::test_context as ctx;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

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
}
