//! Analytics topics: `v2.analytics.queues.{id}.observations` (live
//! statistics as deltas, and the 30-minute aggregates that share the topic)
//! and `v2.analytics.users.{id}.aggregates`.

use rand::Rng;
use serde_json::{json, Value};

use super::context::{media_of, phone, BodyContext};
use crate::clock::rfc3339_ms;
use crate::directory::{Media, Queue};
use crate::ids::uuid_from;
use crate::model::observations::{metric_json, Stat};
use crate::model::Model;

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
pub(crate) fn queue_observation(
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
                ("oWaiting" | "oInteracting", Stat::Count(n)) => *n,
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
pub(crate) fn queue_aggregates(queue_id: &str, ctx: &BodyContext<'_>, rng: &mut impl Rng) -> Value {
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

pub(crate) fn user_aggregates(user_id: &str, ctx: &BodyContext<'_>, rng: &mut impl Rng) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Directory;
    use crate::events::context::test_context as ctx;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

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
}
