//! Event bodies that carry state from one event to the next: queue
//! observation deltas and conversations going through their stages.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

/// `(metric, qualifier)` of an observation metric entry.
fn metric_key(m: &Value) -> (String, String) {
    (
        m["metric"].as_str().expect("metric name").to_owned(),
        m["qualifier"].as_str().unwrap_or_default().to_owned(),
    )
}

#[actix_rt::test]
async fn queue_observations_are_deltas_that_add_up_to_the_state() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let topic = sim.queue_topic(0);
    let queue = sim.queue_id(0);
    let (_, mut ws) = sim.open_socket(&token, &[&topic]).await;
    wait_state(&sim, "socket connected", |s| {
        s["channels"][0]["connected"] == true
    })
    .await;

    let r = sim.control("/sim/generate", json!({"count": 80})).await;
    assert_eq!(r.body["emitted"], 80, "{}", r.body);
    let events = read_events(&mut ws, 80).await;

    let mut rebuilt: HashMap<(String, String), Value> = HashMap::new();
    let mut observations = 0;
    let mut full_size = 0;
    for event in &events {
        assert_eq!(event["topicName"], topic.as_str());
        let body = &event["eventBody"];
        assert_eq!(body["group"]["queueId"], queue.as_str());
        let data = &body["data"][0];
        let interval = data["interval"].as_str().unwrap();
        let (from, to) = interval.split_once('/').unwrap();
        let metrics = data["metrics"].as_array().unwrap();
        // Every count is an integer, in observations and aggregates alike.
        for m in metrics {
            for (k, v) in m["stats"].as_object().unwrap() {
                if k != "ratio" && k != "target" {
                    assert!(v.is_u64(), "{k} of {} is not an integer: {v}", m["metric"]);
                }
            }
        }
        if from != to {
            continue; // a 30-minute aggregate on the same topic
        }
        observations += 1;
        if observations == 1 {
            full_size = metrics.len();
            assert!(
                full_size >= 10,
                "the first event carries every metric: {body}"
            );
            let sl = metrics
                .iter()
                .find(|m| m["metric"] == "oServiceLevel")
                .expect("oServiceLevel in the first event");
            let stats = &sl["stats"];
            for field in ["ratio", "numerator", "denominator", "target"] {
                assert!(stats[field].is_number(), "{field} missing: {stats}");
            }
        } else {
            assert!(!metrics.is_empty(), "an empty delta: {body}");
            assert!(metrics.len() < full_size, "not a delta: {body}");
        }
        for m in metrics {
            let key = metric_key(m);
            // Only what changed: never the value the consumer already has.
            assert_ne!(
                rebuilt.get(&key),
                Some(&m["stats"]),
                "unchanged {key:?} sent again"
            );
            if m["metric"] == "oServiceLevel" {
                let s = &m["stats"];
                let (n, d) = (
                    s["numerator"].as_u64().unwrap(),
                    s["denominator"].as_u64().unwrap(),
                );
                assert!(n <= d);
                if d > 0 {
                    let ratio = s["ratio"].as_f64().unwrap();
                    assert!((ratio - n as f64 / d as f64).abs() < 1e-9, "{s}");
                }
            }
            rebuilt.insert(key, m["stats"].clone());
        }
    }
    assert!(observations > 30, "only {observations} observation events");

    let state = sim.get(&token, "/sim/observations?queue_id=").await;
    assert_eq!(state.status, StatusCode::OK);
    let r = reply(
        sim.http
            .get(sim.url(&format!("/sim/observations?queue_id={queue}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let held: HashMap<(String, String), Value> = r.body["queues"][queue.as_str()]
        .as_array()
        .expect("the queue's statistics")
        .iter()
        .map(|m| (metric_key(m), m["stats"].clone()))
        .collect();
    assert_eq!(
        rebuilt, held,
        "applying the deltas in order rebuilds the state"
    );
}

/// The stage a conversation snapshot shows (see the `events` docs).
fn snapshot_stage(conv: &Value) -> &'static str {
    let agent = conv["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == "agent")
        .expect("an agent participant");
    let comms = ["calls", "chats", "emails", "messages"]
        .iter()
        .find_map(|k| agent[*k].as_array())
        .expect("the agent's communications");
    match (
        comms[0]["state"].as_str().unwrap(),
        agent["wrapup"].is_object(),
    ) {
        ("alerting", false) => "alerting",
        ("connected", false) => "connected",
        ("disconnected", false) => "acw",
        ("disconnected", true) => "disconnected",
        other => panic!("impossible snapshot {other:?}: {conv}"),
    }
}

#[actix_rt::test]
async fn a_conversation_goes_through_its_stages_in_order_on_every_topic() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let queue = sim.queue_id(0);
    let queue_topic = format!("v2.routing.queues.{queue}.conversations");
    let (channel, mut ws) = sim.open_socket(&token, &[&queue_topic]).await;
    let id = channel["id"].as_str().unwrap();
    wait_state(&sim, "socket connected", |s| {
        s["channels"][0]["connected"] == true
    })
    .await;

    // The first event starts a conversation on the queue.
    assert_eq!(
        sim.control("/sim/generate", json!({"count": 1})).await.body["emitted"],
        1
    );
    let first = next_json(&mut ws, true).await;
    let conv = first["eventBody"].clone();
    let conv_id = conv["id"].as_str().unwrap().to_owned();
    assert_eq!(snapshot_stage(&conv), "alerting");
    let agent = conv["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == "agent")
        .unwrap()["userId"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = reply(
        sim.http
            .get(sim.url("/sim/conversations"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        listed.body["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == conv_id.as_str() && c["stage"] == "alerting"),
        "{}",
        listed.body
    );

    // Now follow it everywhere: queue, agent, and its detail events.
    let kinds = [
        "customer.start",
        "acd.start",
        "attributes",
        "acd.end",
        "user.start",
        "customer.end",
        "user.end",
        "acw",
    ];
    let mut topics = vec![
        queue_topic.clone(),
        format!("v2.users.{agent}.conversations"),
        format!("v2.detail.events.agent.{agent}.state"),
    ];
    topics.extend(
        kinds
            .iter()
            .map(|k| format!("v2.detail.events.conversation.{conv_id}.{k}")),
    );
    assert_eq!(
        sim.subscribe(&token, id, &topics, "").await.status,
        StatusCode::OK
    );

    let mut stages = vec!["alerting"];
    let mut details: Vec<Value> = Vec::new();
    // Last stage of every conversation seen in a snapshot, and how many
    // agent state events named one of them.
    let mut last_stage: HashMap<String, &'static str> = HashMap::new();
    last_stage.insert(conv_id.clone(), "alerting");
    let mut agent_states = 0;
    for _round in 0..20 {
        if details.len() == kinds.len() && stages.last() == Some(&"disconnected") {
            break;
        }
        let r = sim.control("/sim/generate", json!({"count": 10})).await;
        let n = r.body["emitted"].as_u64().unwrap();
        for event in read_events(&mut ws, n).await {
            let topic = event["topicName"].as_str().unwrap();
            let body = &event["eventBody"];
            if topic.starts_with("v2.detail.events.conversation.") {
                assert!(topic.starts_with(&format!("v2.detail.events.conversation.{conv_id}.")));
                assert_eq!(body["conversationId"], conv_id.as_str());
                details.push(event.clone());
            } else if topic.starts_with("v2.detail.events.agent.") {
                // The agent's live conversation, at the stage last shown.
                let id = body["conversationId"].as_str().unwrap();
                let stage = last_stage
                    .get(id)
                    .unwrap_or_else(|| panic!("unknown {id}: {body}"));
                let expected = match *stage {
                    "alerting" => "ALERT",
                    "connected" => "INTERACT",
                    "acw" => "WRAPUP",
                    other => panic!("agent state of an ended conversation ({other}): {body}"),
                };
                assert_eq!(body["currentState"], expected, "{body}");
                assert_eq!(body["userId"], agent.as_str());
                agent_states += 1;
            } else {
                let stage = snapshot_stage(body);
                last_stage.insert(body["id"].as_str().unwrap().to_owned(), stage);
                if body["id"] == conv_id.as_str() {
                    stages.push(stage);
                }
            }
        }
    }
    assert_eq!(stages, ["alerting", "connected", "acw", "disconnected"]);
    assert!(agent_states > 0, "no agent state event");
    let seen: Vec<&str> = details
        .iter()
        .map(|e| {
            let t = e["topicName"].as_str().unwrap();
            &t[t.find(&conv_id).unwrap() + conv_id.len() + 1..]
        })
        .collect();
    assert_eq!(seen, kinds, "detail events in lifecycle order");

    let by_kind: HashMap<&str, &Value> = seen
        .iter()
        .copied()
        .zip(details.iter().map(|e| &e["eventBody"]))
        .collect();
    for (kind, body) in &by_kind {
        assert!(body["eventTime"].is_u64(), "{kind}: {body}");
        assert!(body["participantId"].is_string(), "{kind}: {body}");
        if *kind != "attributes" {
            assert!(body["sessionId"].is_string(), "{kind}: {body}");
            let media = body["mediaType"].as_str().unwrap();
            assert!(
                ["VOICE", "CHAT", "EMAIL", "MESSAGE"].contains(&media),
                "{media}"
            );
            assert_eq!(body["direction"], "INBOUND");
        }
    }
    assert_eq!(
        by_kind["customer.start"]["participantId"],
        by_kind["customer.end"]["participantId"]
    );
    assert_eq!(
        by_kind["user.start"]["sessionId"],
        by_kind["acw"]["sessionId"]
    );
    assert_eq!(by_kind["acd.start"]["queueId"], queue.as_str());
    assert_eq!(
        by_kind["acd.start"]["requestedRoutings"],
        json!(["STANDARD"])
    );
    assert_eq!(by_kind["acd.end"]["usedRouting"], "STANDARD");
    assert_eq!(by_kind["acd.end"]["acdOutcome"], "ANSWERED");
    assert_eq!(by_kind["user.start"]["userId"], agent.as_str());
    assert_eq!(by_kind["acw"]["userId"], agent.as_str());
    assert!(by_kind["customer.end"]["disconnectType"].is_string());
    assert!(by_kind["user.end"]["interactingDurationMs"].is_u64());
    assert!(by_kind["customer.end"]["interactingDurationMs"].is_u64());

    // Ended: no more events about it, and it left the live set.
    let r = sim.control("/sim/generate", json!({"count": 20})).await;
    for event in read_events(&mut ws, r.body["emitted"].as_u64().unwrap()).await {
        assert_ne!(event["eventBody"]["id"], conv_id.as_str(), "{event}");
        assert!(
            !event["topicName"].as_str().unwrap().contains(&conv_id),
            "{event}"
        );
    }
    let listed = reply(
        sim.http
            .get(sim.url("/sim/conversations"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let live = listed.body["conversations"].as_array().unwrap();
    assert!(live.iter().all(|c| c["id"] != conv_id.as_str()));
    let on_queue = live
        .iter()
        .filter(|c| c["queue_id"] == queue.as_str())
        .count();
    assert!((1..=3).contains(&on_queue), "bounded per queue: {on_queue}");
}
