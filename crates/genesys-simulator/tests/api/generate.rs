//! Event generation and delivery: `POST /sim/generate` (now and in the
//! background), the event log of `GET /sim/emitted`, seq order per channel,
//! and what counts as delivered when a client does not read.

use std::collections::HashMap;
use std::collections::HashSet;
use std::time::Duration;

use actix_web::http::StatusCode;
use awc::ws::{CloseCode, Frame};
use serde_json::{json, Value};

use crate::support::*;

#[actix_rt::test]
async fn generated_events_arrive_in_seq_order_and_match_the_log() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let users = sim.get(&token, "/api/v2/users?pageSize=5").await;
    let user = users.body["entities"][0]["id"].as_str().unwrap().to_owned();
    let topics = vec![
        sim.queue_topic(0),
        sim.queue_topic(1),
        format!("v2.routing.queues.{}.conversations", sim.queue_id(2)),
        format!("v2.users.{user}.presence"),
        format!("v2.users.{user}.routingStatus"),
        format!("v2.analytics.users.{user}.aggregates"),
        format!("v2.detail.events.agent.{user}.state"),
        conversation_topic("customer.start"),
        conversation_topic("acw"),
    ];
    let (channel, mut ws) = sim.open_socket(&token, &topics).await;
    let id = channel["id"].as_str().unwrap();
    wait_state(&sim, "socket", |s| s["channels"][0]["connected"] == true).await;

    const N: usize = 3000;
    let generated = sim.control("/sim/generate", json!({"count": N})).await;
    assert_eq!(generated.status, StatusCode::OK, "{}", generated.body);
    assert_eq!(generated.body["emitted"], N);
    assert_eq!(generated.body["delivered"], N);
    assert_eq!(generated.body["first_seq"], 1);
    assert_eq!(generated.body["last_seq"], N);

    let mut received = Vec::with_capacity(N);
    while received.len() < N {
        match next_frame(&mut ws, WAIT).await {
            Some(Frame::Text(bytes)) => {
                let text = String::from_utf8(bytes.to_vec()).unwrap();
                if !text.contains("\"channel.metadata\"") {
                    received.push(text);
                }
            }
            Some(Frame::Ping(_) | Frame::Pong(_)) => {}
            other => panic!("unexpected {other:?} after {} frames", received.len()),
        }
    }

    let log = reply(
        sim.http
            .get(sim.url("/sim/emitted?since_seq=0&frames=true"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let events = log.body["events"].as_array().unwrap();
    assert_eq!(events.len(), N);
    let mut correlation_ids = HashSet::new();
    let mut per_topic: HashMap<&str, usize> = HashMap::new();
    for (i, (event, frame)) in events.iter().zip(&received).enumerate() {
        assert_eq!(event["seq"], i + 1);
        assert_eq!(
            event["frame"].as_str().unwrap(),
            frame,
            "frame {i} differs from the log"
        );
        assert_eq!(event["channel_id"], id);
        assert_eq!(event["delivered"], true);
        let parsed: Value = serde_json::from_str(frame).unwrap();
        assert_eq!(parsed["topicName"], event["topic"]);
        assert_eq!(parsed["version"], "2");
        assert!(parsed["eventBody"].is_object());
        assert_eq!(parsed["metadata"]["CorrelationId"], event["correlation_id"]);
        assert!(correlation_ids.insert(event["correlation_id"].as_str().unwrap().to_owned()));
        *per_topic
            .entry(event["topic"].as_str().unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        per_topic.len(),
        topics.len(),
        "every subscribed topic got events"
    );
    assert!(per_topic.values().all(|&n| n >= N / topics.len()));

    let later = reply(
        sim.http
            .get(sim.url("/sim/emitted?since_seq=2990"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(later.body["events"].as_array().unwrap().len(), 10);
    assert!(later.body["events"][0].get("frame").is_none());
}

#[actix_rt::test]
async fn events_without_a_socket_are_recorded_as_undelivered() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let topic = conversation_topic("user.end");
    sim.subscribe(&token, id, &[topic.as_str()], "").await;
    let r = sim.control("/sim/generate", json!({"count": 5})).await;
    assert_eq!(
        (r.body["emitted"].as_u64(), r.body["delivered"].as_u64()),
        (Some(5), Some(0))
    );
    let log = reply(sim.http.get(sim.url("/sim/emitted")).send().await.unwrap()).await;
    assert!(log.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["delivered"] == false));

    // An unsubscribed topic given explicitly: recorded, delivered nowhere.
    let r = sim
        .control(
            "/sim/generate",
            json!({"count": 2, "topics": [conversation_topic("acw")]}),
        )
        .await;
    assert_eq!(r.body["emitted"], 2);
    let log = reply(
        sim.http
            .get(sim.url("/sim/emitted?since_seq=5"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(log.body["events"][0]["channel_id"], Value::Null);

    let none = start(|_| {}).await;
    assert_eq!(
        none.control("/sim/generate", json!({"count": 1}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    let bad = none
        .control("/sim/generate", json!({"count": 1, "topics": ["v2.nope"]}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[actix_rt::test]
async fn two_channels_on_one_topic_get_the_same_event() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let topic = conversation_topic("customer.end");
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let (_, ws) = sim.open_socket(&token, &[topic.as_str()]).await;
        sockets.push(ws);
    }
    wait_state(&sim, "both sockets", |s| s["sockets_opened"] == 2).await;
    let r = sim.control("/sim/generate", json!({"count": 1})).await;
    assert_eq!(r.body["delivered"], 2);
    let a = next_json(&mut sockets[0], true).await;
    let b = next_json(&mut sockets[1], true).await;
    assert_eq!(
        a, b,
        "overlapping channels see the same event (same CorrelationId)"
    );
}

#[actix_rt::test]
async fn background_generation_runs_and_stops() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let (_, mut ws) = sim
        .open_socket(&token, &[conversation_topic("attributes")])
        .await;
    wait_state(&sim, "socket", |s| s["sockets_opened"] == 1).await;

    let r = sim
        .control("/sim/generate", json!({"count": 40, "rate_per_sec": 400}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.body["started"], true);
    for _ in 0..40 {
        assert_eq!(next_json(&mut ws, true).await["version"], "2");
    }
    wait_state(&sim, "job finished", |s| {
        s["generator_running"] == false && s["events_generated"] == 40
    })
    .await;

    sim.control("/sim/generate", json!({"rate_per_sec": 50}))
        .await;
    wait_state(&sim, "forever job", |s| s["generator_running"] == true).await;
    let stopped = sim.control("/sim/stop-generator", json!({})).await;
    assert_eq!(stopped.body["stopped"], 1);
    wait_state(&sim, "job stopped", |s| s["generator_running"] == false).await;

    // Jobs that run forever are capped.
    for _ in 0..64 {
        let r = sim
            .control("/sim/generate", json!({"rate_per_sec": 1}))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    }
    let r = sim
        .control("/sim/generate", json!({"rate_per_sec": 1}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let stopped = sim.control("/sim/stop-generator", json!({})).await;
    assert_eq!(stopped.body["stopped"], 64);
}

#[actix_rt::test]
async fn rate_flag_generates_in_the_background() {
    let sim = start(|a| a.rate = 200.0).await;
    let token = sim.token().await;
    let (_, mut ws) = sim
        .open_socket(&token, &[conversation_topic("user.start")])
        .await;
    let event = next_json(&mut ws, true).await;
    assert!(event["eventBody"]["eventTime"].is_u64());
    sim.sim.stop().await;
}

#[actix_rt::test]
async fn concurrent_generators_keep_seq_order_per_channel() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let topics: Vec<String> = (0..7)
        .map(|_| conversation_topic("customer.start"))
        .collect();
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let (_, ws) = sim.open_socket(&token, &topics).await;
        sockets.push(ws);
    }
    wait_state(&sim, "sockets", |s| s["sockets_opened"] == 2).await;

    // A background job and two on-demand batches at the same time.
    let job = sim
        .control("/sim/generate", json!({"count": 600, "rate_per_sec": 3000}))
        .await;
    assert_eq!(job.status, StatusCode::ACCEPTED);
    let (a, b) = futures_util::join!(
        sim.control("/sim/generate", json!({"count": 700})),
        sim.control("/sim/generate", json!({"count": 700})),
    );
    assert_eq!(
        (a.body["emitted"].as_u64(), b.body["emitted"].as_u64()),
        (Some(700), Some(700))
    );
    wait_state(&sim, "job done", |s| s["events_generated"] == 2000).await;

    let log = reply(sim.http.get(sim.url("/sim/emitted")).send().await.unwrap()).await;
    let seq_of: HashMap<String, u64> = log.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["correlation_id"].as_str().unwrap().to_owned(),
                e["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seq_of.len(), 2000);
    for ws in &mut sockets {
        let mut last = 0;
        for _ in 0..2000 {
            let event = next_json(ws, true).await;
            let seq = seq_of[event["metadata"]["CorrelationId"].as_str().unwrap()];
            assert!(seq > last, "seq {seq} arrived after {last}");
            last = seq;
        }
    }
}

#[actix_rt::test]
async fn generate_replies_even_when_the_client_stops_reading() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let (_, _unread) = sim.open_socket(&token, &[sim.queue_topic(0)]).await;
    wait_state(&sim, "socket", |s| s["sockets_opened"] == 1).await;
    // ~100 KB frames: far more than the socket buffers hold.
    let topic = format!("v2.analytics.queues.{}.observations", uuid::Uuid::new_v4());
    let body = json!({"count": 400, "topics": [topic], "observation_conversations": 400});
    let r =
        actix_web::rt::time::timeout(Duration::from_secs(30), sim.control("/sim/generate", body))
            .await
            .expect("/sim/generate must not hang on a client that does not read");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["flushed"], true,
        "nobody subscribed to that topic: nothing to flush"
    );

    let r = sim
        .control(
            "/sim/generate",
            json!({"count": 300, "observation_conversations": 400}),
        )
        .await;
    assert_eq!(r.body["flushed"], false, "{}", r.body);
    let delivered = r.body["delivered"].as_u64().unwrap();
    assert!(
        delivered < 300,
        "frames still queued for a client that does not read are not delivered yet: {}",
        r.body
    );
    // The client still does not read: nothing more was written since.
    assert_eq!(
        sim.state().await["events_delivered"].as_u64(),
        Some(delivered)
    );
}

/// Counts the `/sim/emitted` entries whose frame reached a socket.
async fn delivered_in_log(sim: &Sim) -> usize {
    sim.get("", "/sim/emitted").await.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["delivered"] == true)
        .count()
}

#[actix_rt::test]
async fn frames_queued_to_a_socket_that_goes_away_are_not_delivered() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let (_, unread) = sim.open_socket(&token, &[sim.queue_topic(0)]).await;
    wait_state(&sim, "socket", |s| s["sockets_opened"] == 1).await;
    // ~100 KB frames: most stay queued behind a client that does not read.
    let r = sim
        .control(
            "/sim/generate",
            json!({"count": 300, "observation_conversations": 400}),
        )
        .await;
    assert_eq!(r.body["flushed"], false, "{}", r.body);
    // The client goes away: what was still queued is never written.
    drop(unread);
    let state = wait_state(&sim, "the socket to close", |s| {
        s["channels"][0]["connected"] == false
            && s["events_delivered"].as_u64().unwrap() + s["events_dropped"].as_u64().unwrap()
                == 300
    })
    .await;
    let delivered = state["events_delivered"].as_u64().unwrap();
    assert!(delivered < 300, "{state}");
    assert_eq!(delivered_in_log(&sim).await as u64, delivered, "{state}");
}

#[actix_rt::test]
async fn a_client_that_does_not_read_has_its_socket_closed_at_the_backlog_bound() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let (_, mut ws) = sim.open_socket(&token, &[sim.queue_topic(0)]).await;
    wait_state(&sim, "socket", |s| s["sockets_opened"] == 1).await;
    // ~250 KB frames, ~100 MB in all: beyond the 64 MiB a socket may queue.
    let r = sim
        .control(
            "/sim/generate",
            json!({"count": 400, "observation_conversations": 1000}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let state = sim.state().await;
    assert_eq!(
        state["channels"][0]["connected"], false,
        "the socket was given up on: {state}"
    );
    let dropped = state["events_dropped"].as_u64().unwrap();
    assert!(dropped > 0 && dropped < 400, "{state}");

    // Reading again, the client gets what was queued, then a 1008 close.
    let mut frames = 0u64;
    let close = loop {
        match next_frame(&mut ws, Duration::from_secs(30)).await {
            Some(Frame::Text(_)) => frames += 1,
            Some(Frame::Close(reason)) => break reason,
            Some(_) => {}
            None => panic!("connection ended without a close frame after {frames} frames"),
        }
    };
    assert_eq!(close.map(|r| r.code), Some(CloseCode::Policy));
    let state = sim.state().await;
    assert_eq!(state["events_delivered"].as_u64().unwrap(), 400 - dropped);
    assert!(frames >= 400 - dropped, "{frames} frames, {state}");
}

#[actix_rt::test]
async fn every_topic_family_generates_with_an_empty_directory() {
    let sim = start(|a| {
        a.queues = 0;
        a.users = 0;
    })
    .await;
    let id = uuid::Uuid::new_v4();
    let mut topics: Vec<String> = [
        "v2.analytics.queues.{id}.observations",
        "v2.analytics.users.{id}.aggregates",
        "v2.routing.queues.{id}.conversations",
        "v2.users.{id}.presence",
        "v2.users.{id}.routingStatus",
        "v2.users.{id}.conversations",
        "v2.detail.events.agent.{id}.state",
    ]
    .iter()
    .map(|t| t.replace("{id}", &id.to_string()))
    .collect();
    for kind in [
        "customer.start",
        "customer.end",
        "user.start",
        "user.end",
        "acd.start",
        "acd.end",
        "acw",
        "attributes",
    ] {
        topics.push(conversation_topic(kind));
    }
    let n = topics.len() * 20;
    let r = sim
        .control("/sim/generate", json!({"count": n, "topics": topics}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["emitted"], n);
}
