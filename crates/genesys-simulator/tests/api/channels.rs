//! The Notification Service REST API: channels (creation, listing, limit,
//! expiry) and their subscriptions (replace, add, delete, limits, rejections,
//! combined topics).

use std::collections::HashMap;
use std::collections::HashSet;
use std::time::Duration;

use actix_web::http::StatusCode;
use awc::ws::{CloseCode, Frame};
use serde_json::json;

use crate::support::*;

#[actix_rt::test]
async fn channels_are_created_checked_and_listed() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    assert!(id.starts_with("streaming-0-"), "{id}");
    assert_eq!(
        channel["connectUri"],
        format!("{}/channels/{id}", sim.sim.ws_base_url())
    );
    assert!(channel["connectUri"]
        .as_str()
        .unwrap()
        .starts_with("ws://127.0.0.1:"));
    let expires = channel["expires"].as_str().unwrap();
    assert!(expires.ends_with('Z') && expires.len() == 24, "{expires}");
    humantime::parse_rfc3339(expires).expect("expires is RFC 3339");

    assert_eq!(
        sim.head(&token, &format!("/api/v2/notifications/channels/{id}"))
            .await,
        StatusCode::OK
    );
    assert_eq!(
        sim.head(
            &token,
            "/api/v2/notifications/channels/streaming-0-doesnotexist"
        )
        .await,
        StatusCode::NOT_FOUND
    );

    let other_token = sim.token().await;
    sim.create_channel(&other_token).await;
    let mine = sim
        .get(
            &token,
            "/api/v2/notifications/channels?includechannels=token",
        )
        .await;
    assert_eq!(mine.body["entities"].as_array().unwrap().len(), 1);
    assert_eq!(mine.body["entities"][0]["id"], id);
    let default = sim.get(&token, "/api/v2/notifications/channels").await;
    assert_eq!(default.body, mine.body);
    let all = sim
        .get(
            &token,
            "/api/v2/notifications/channels?includechannels=oauthclient",
        )
        .await;
    assert_eq!(all.body["entities"].as_array().unwrap().len(), 2);
}

#[actix_rt::test]
async fn subscriptions_are_replaced_added_listed_and_deleted() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let path = format!("/api/v2/notifications/channels/{id}/subscriptions");

    let put = sim
        .subscribe(&token, id, &[sim.queue_topic(0), sim.queue_topic(1)], "")
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["entities"].as_array().unwrap().len(), 2);
    assert_eq!(put.body["entities"][0]["state"], "Permitted");

    let extra = conversation_topic("customer.start");
    let post = sim
        .send_json("POST", Some(&token), &path, &json!([{ "id": extra }]))
        .await;
    assert_eq!(post.status, StatusCode::OK);
    let ids: Vec<&str> = post.body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            sim.queue_topic(0).as_str(),
            sim.queue_topic(1).as_str(),
            extra.as_str()
        ]
    );

    let get = sim.get(&token, &path).await;
    assert_eq!(get.body["entities"].as_array().unwrap().len(), 3);

    let resp = sim
        .http
        .delete(sim.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(sim.get(&token, &path).await.body["entities"], json!([]));

    let unknown = sim
        .subscribe(&token, "streaming-0-nope", &[sim.queue_topic(0)], "")
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let malformed = sim
        .send_json("PUT", Some(&token), &path, &json!({"id": "not a list"}))
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.body["code"], "bad.request");
}

#[actix_rt::test]
async fn more_than_the_topic_limit_is_a_400() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let topics: Vec<String> = (0..1001).map(|_| conversation_topic("acd.end")).collect();
    let over = sim.subscribe(&token, id, &topics, "").await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST, "{}", over.body);
    assert_eq!(over.body["code"], "bad.request");
    let state = sim.state().await;
    assert_eq!(state["channels"][0]["topics_count"], 0);

    let at_limit = sim.subscribe(&token, id, &topics[..1000], "").await;
    assert_eq!(at_limit.status, StatusCode::OK);
    assert_eq!(at_limit.body["entities"].as_array().unwrap().len(), 1000);
}

#[actix_rt::test]
async fn rejected_topics_fail_the_request_unless_errors_are_ignored() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let good = sim.queue_topic(3);
    let unknown_queue = format!("v2.analytics.queues.{}.observations", uuid::Uuid::new_v4());
    let malformed = "v2.analytics.queues.all.observations".to_string();
    let topics = vec![good.clone(), unknown_queue.clone(), malformed.clone()];

    let strict = sim.subscribe(&token, id, &topics, "").await;
    assert_eq!(strict.status, StatusCode::FORBIDDEN, "{}", strict.body);
    assert_eq!(strict.body["status"], 403);
    assert_eq!(strict.body["details"].as_array().unwrap().len(), 2);
    let path = format!("/api/v2/notifications/channels/{id}/subscriptions");
    assert_eq!(
        sim.get(&token, &path).await.body["entities"],
        json!([]),
        "nothing subscribed"
    );

    let lenient = sim
        .subscribe(&token, id, &topics, "?ignoreErrors=true")
        .await;
    assert_eq!(lenient.status, StatusCode::OK, "{}", lenient.body);
    let states: HashMap<&str, &str> = lenient.body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states[good.as_str()], "Permitted");
    assert_eq!(states[unknown_queue.as_str()], "Rejected");
    assert_eq!(states[malformed.as_str()], "Rejected");
    assert!(lenient.body["entities"][1]["rejectionReason"].is_string());
    assert_eq!(
        sim.get(&token, &path).await.body["entities"],
        json!([{"id": good, "state": "Permitted"}])
    );

    // Permission denial, injected.
    sim.control(
        "/sim/faults",
        json!({"deny_topics": ["v2.analytics.queues"]}),
    )
    .await;
    let denied = sim
        .subscribe(&token, id, &[good.as_str()], "?ignoreErrors=true")
        .await;
    assert_eq!(denied.body["entities"][0]["state"], "Rejected");
    assert_eq!(
        denied.body["entities"][0]["missingPermissions"],
        json!(["analytics:queueObservation:view"])
    );
}

#[actix_rt::test]
async fn channel_limit_removes_the_least_recently_used_unconnected_channel() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(
            sim.create_channel(&token).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let state = sim.state().await;
    let uri = |id: &str| format!("{}/channels/{id}", sim.sim.ws_base_url());
    let mut ws0 = connect(&uri(&ids[0])).await; // oldest, but connected
    wait_state(&sim, "socket registered", |s| s["sockets_opened"] == 1).await;
    sim.get(
        &token,
        &format!("/api/v2/notifications/channels/{}/subscriptions", ids[1]),
    )
    .await; // used
    assert_eq!(state["channels"].as_array().unwrap().len(), 20);

    let newest = sim.create_channel(&token).await;
    let head = |id: String| {
        let sim = &sim;
        let token = token.clone();
        async move {
            sim.head(&token, &format!("/api/v2/notifications/channels/{id}"))
                .await
        }
    };
    assert_eq!(
        head(ids[2].clone()).await,
        StatusCode::NOT_FOUND,
        "LRU unconnected channel removed"
    );
    assert_eq!(
        head(ids[0].clone()).await,
        StatusCode::OK,
        "connected channel kept"
    );
    assert_eq!(
        head(ids[1].clone()).await,
        StatusCode::OK,
        "recently used channel kept"
    );
    assert_eq!(
        head(newest["id"].as_str().unwrap().to_owned()).await,
        StatusCode::OK
    );
    let all = sim
        .get(
            &token,
            "/api/v2/notifications/channels?includechannels=oauthclient",
        )
        .await;
    assert_eq!(all.body["entities"].as_array().unwrap().len(), 20);
    assert_eq!(sim.state().await["channels_evicted"], 1);

    send_text(&mut ws0, r#"{"message":"ping"}"#).await;
    assert_eq!(
        next_json(&mut ws0, true).await["eventBody"]["message"],
        "pong"
    );
}

#[actix_rt::test]
async fn a_removed_channel_has_its_socket_closed() {
    let sim = start(|a| a.max_channels = 2).await;
    let token = sim.token().await;
    let (a, mut ws_a) = sim.open_socket(&token, &NO_TOPICS).await;
    wait_state(&sim, "first socket", |s| s["sockets_opened"] == 1).await;
    let (_, _ws_b) = sim.open_socket(&token, &NO_TOPICS).await;
    wait_state(&sim, "second socket", |s| s["sockets_opened"] == 2).await;

    sim.create_channel(&token).await; // both connected: the older use (a) goes
    match next_frame(&mut ws_a, WAIT).await {
        Some(Frame::Close(Some(reason))) => assert_eq!(reason.code, CloseCode::Normal),
        other => panic!("expected a close frame, got {other:?}"),
    }
    let path = format!(
        "/api/v2/notifications/channels/{}",
        a["id"].as_str().unwrap()
    );
    assert_eq!(sim.head(&token, &path).await, StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn expired_channels_close_their_socket() {
    let sim = start(|a| a.channel_ttl = 1).await;
    let token = sim.token().await;
    let (channel, mut ws) = sim.open_socket(&token, &NO_TOPICS).await;
    match next_frame(&mut ws, WAIT).await {
        Some(Frame::Close(Some(reason))) => {
            assert_eq!(reason.description.as_deref(), Some("channel expired"))
        }
        other => panic!("expected a close on expiry, got {other:?}"),
    }
    let path = format!(
        "/api/v2/notifications/channels/{}",
        channel["id"].as_str().unwrap()
    );
    assert_eq!(sim.head(&token, &path).await, StatusCode::NOT_FOUND);
    assert_eq!(sim.state().await["channels_expired"], 1);
}

#[actix_rt::test]
async fn subscribing_leaves_the_expiry_alone_by_default() {
    let sim = start(|a| a.channel_ttl = 3600).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let before = sim.state().await["channels"][0]["expires_ms"].clone();
    actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    let r = sim
        .subscribe(&token, id, &[conversation_topic("acw")], "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(sim.state().await["channels"][0]["expires_ms"], before);
}

#[actix_rt::test]
async fn subscribing_extends_the_channel_when_asked() {
    let sim = start(|a| {
        a.channel_ttl = 3600;
        a.subscribe_extends_channel = true;
    })
    .await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let before = sim.state().await["channels"][0]["expires_ms"]
        .as_u64()
        .unwrap();
    // Wait for the clock to move past the creation millisecond.
    actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    sim.subscribe(&token, id, &[conversation_topic("acw")], "")
        .await;
    let after = sim.state().await["channels"][0]["expires_ms"]
        .as_u64()
        .unwrap();
    assert!(after > before, "expires moved from {before} to {after}");
}

#[actix_rt::test]
async fn combined_topics_expand_into_their_sub_topics() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let users = sim.get(&token, "/api/v2/users?pageSize=1").await;
    let user = users.body["entities"][0]["id"].as_str().unwrap().to_owned();
    let combined = format!("v2.users.{user}?presence&routingStatus");
    let (channel, mut ws) = sim.open_socket(&token, &[&combined]).await;
    let id = channel["id"].as_str().unwrap();
    let expanded = [
        format!("v2.users.{user}.presence"),
        format!("v2.users.{user}.routingStatus"),
    ];
    let listed = sim
        .get(
            &token,
            &format!("/api/v2/notifications/channels/{id}/subscriptions"),
        )
        .await;
    let listed: Vec<&str> = listed.body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [expanded[0].as_str(), expanded[1].as_str()]);

    wait_state(&sim, "socket connected", |s| {
        s["channels"][0]["connected"] == true
    })
    .await;
    sim.control("/sim/generate", json!({"count": 4})).await;
    let mut names = HashSet::new();
    for _ in 0..4 {
        names.insert(
            next_json(&mut ws, true).await["topicName"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(names, expanded.iter().cloned().collect::<HashSet<_>>());

    let too_long = format!("v2.users.{user}?{}", vec!["presence"; 30].join("&"));
    let r = sim.subscribe(&token, id, &[&too_long], "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

#[actix_rt::test]
async fn oversized_bodies_get_a_genesys_413() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let path = format!(
        "/api/v2/notifications/channels/{}/subscriptions",
        channel["id"].as_str().unwrap()
    );
    let body = vec![b' '; 17 * 1024 * 1024];
    let resp = sim
        .http
        .put(sim.url(&path))
        .bearer_auth(&token)
        .insert_header(("content-type", "application/json"))
        .send_body(body)
        .await
        .expect("PUT");
    let r = reply(resp).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.body["status"], 413, "{}", r.body);
    assert!(r.body["code"].is_string() && r.body["contextId"].is_string());
}
