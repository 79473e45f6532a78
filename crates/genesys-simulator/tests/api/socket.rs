//! The channel WebSocket: one socket per channel, refused upgrades,
//! ping/pong, heartbeats, subscribe messages, large client frames and
//! `v2.system.socket_closing`.

use std::time::Duration;

use actix_web::http::StatusCode;
use awc::ws::{CloseCode, Frame};
use futures_util::StreamExt as _;
use genesys_simulator::SimulatorArgs;
use serde_json::json;

use crate::support::*;

#[actix_rt::test]
async fn a_second_socket_closes_the_first() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let (channel, mut first) = sim.open_socket(&token, &NO_TOPICS).await;
    let uri = channel["connectUri"].as_str().unwrap();
    wait_state(&sim, "first socket", |s| s["sockets_opened"] == 1).await;
    let mut second = connect(uri).await;
    match next_frame(&mut first, WAIT).await {
        Some(Frame::Close(Some(_))) => {}
        other => panic!("expected the first socket to be closed, got {other:?}"),
    }
    send_text(&mut second, r#"{"message":"ping"}"#).await;
    assert_eq!(
        next_json(&mut second, true).await["eventBody"]["message"],
        "pong"
    );
    let state = sim.state().await;
    assert_eq!(state["channels"][0]["sockets_opened"], 2);
    assert_eq!(state["channels"][0]["connected"], true);
}

#[actix_rt::test]
async fn unknown_channels_refuse_the_upgrade() {
    let sim = start(|_| {}).await;
    let uri = format!("{}/channels/streaming-0-nope", sim.sim.ws_base_url());
    match awc::Client::new().ws(uri).connect().await {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status, StatusCode::NOT_FOUND)
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("upgrade to an unknown channel succeeded"),
    }
}

#[actix_rt::test]
async fn ping_gets_pong_and_pong_can_be_silenced() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let (_, mut ws) = sim.open_socket(&token, &NO_TOPICS).await;
    send_text(&mut ws, r#"{"message":"ping"}"#).await;
    let pong = next_json(&mut ws, true).await;
    assert_eq!(
        pong,
        json!({"topicName": "channel.metadata", "eventBody": {"message": "pong"}})
    );

    sim.control("/sim/faults", json!({"pong": false})).await;
    send_text(&mut ws, r#"{"message":"ping"}"#).await;
    send_text(&mut ws, r#"{"message":"hello"}"#).await;
    // The reply to the unknown message arrives; no pong came before it.
    let next = next_json(&mut ws, true).await;
    assert_eq!(next["result"], "400", "{next}");
}

#[actix_rt::test]
async fn heartbeats_arrive_every_interval_and_can_be_silenced() {
    let sim = start(|a| a.heartbeat_interval = 1).await;
    let token = sim.token().await;
    let (_, mut ws) = sim.open_socket(&token, &NO_TOPICS).await;
    let beat = next_json(&mut ws, false).await;
    assert_eq!(
        beat,
        json!({"topicName": "channel.metadata", "eventBody": {"message": "WebSocket Heartbeat"}})
    );

    sim.control("/sim/faults", json!({"heartbeats": false}))
        .await;
    // Drain a heartbeat that may already be on its way, then expect silence.
    let _ = actix_web::rt::time::timeout(Duration::from_millis(1100), ws.rx.next()).await;
    assert!(
        actix_web::rt::time::timeout(Duration::from_millis(2500), ws.rx.next())
            .await
            .is_err(),
        "a heartbeat arrived although heartbeats are silenced"
    );
}

#[actix_rt::test]
async fn socket_subscribe_message_and_socket_closing() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let (channel, mut ws) = sim.open_socket(&token, &NO_TOPICS).await;
    let id = channel["id"].as_str().unwrap();

    let topic = sim.queue_topic(5);
    send_text(
        &mut ws,
        &json!({"message": "subscribe", "topics": [topic], "correlationId": "c-1"}).to_string(),
    )
    .await;
    assert_eq!(
        next_json(&mut ws, true).await,
        json!({"result": "200", "status": "subscribed"})
    );
    send_text(
        &mut ws,
        &json!({"message": "subscribe", "topics": ["v2.bogus"], "correlationId": "c-2"})
            .to_string(),
    )
    .await;
    let failure = next_json(&mut ws, true).await;
    assert_eq!(
        (failure["result"].as_str(), failure["status"].as_str()),
        (Some("400"), Some("failure"))
    );
    assert!(failure["message"].is_string());
    let subs = sim
        .get(
            &token,
            &format!("/api/v2/notifications/channels/{id}/subscriptions"),
        )
        .await;
    assert_eq!(
        subs.body["entities"],
        json!([{"id": topic, "state": "Permitted"}])
    );

    sim.control(
        "/sim/generate",
        json!({"count": 1, "observation_conversations": 800}),
    )
    .await;
    let big = next_json(&mut ws, true).await;
    assert_eq!(big["topicName"], topic.as_str());
    assert!(
        big.to_string().len() > 100 * 1024,
        "large observation frames go through"
    );

    let r = sim
        .control(
            "/sim/faults/socket-closing",
            json!({"close_after_secs": 0.2, "system_topic_type": "no_longer_subscribed ", "reason": "maintenance"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["code"], "bad.request");
    let r = sim
        .control(
            "/sim/faults/socket-closing",
            json!({"close_after_secs": 0.2, "system_topic_type": "no_longer_subscribed", "reason": "another_channel_subscribed"}),
        )
        .await;
    assert_eq!(r.body["notified"], 1);
    let closing = next_json(&mut ws, true).await;
    assert_eq!(closing["topicName"], "v2.system.socket_closing");
    assert_eq!(closing["eventBody"]["channelId"], id);
    assert_eq!(
        closing["eventBody"]["systemTopicType"],
        "no_longer_subscribed"
    );
    assert_eq!(closing["eventBody"]["reason"], "another_channel_subscribed");
    assert!(closing["metadata"]["CorrelationId"].is_string());
    match next_frame(&mut ws, WAIT).await {
        Some(Frame::Close(Some(reason))) => assert_eq!(reason.code, CloseCode::Away),
        other => panic!("expected the socket to close after the notice, got {other:?}"),
    }
}

#[actix_rt::test]
async fn large_client_frames_are_accepted() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let (_, mut ws) = sim.open_socket(&token, &NO_TOPICS).await;
    let topics: Vec<String> = (0..900).map(|_| conversation_topic("acd.end")).collect();
    let message =
        json!({"message": "subscribe", "topics": topics, "correlationId": "big"}).to_string();
    assert!(message.len() > 64 * 1024);
    send_text(&mut ws, &message).await;
    assert_eq!(next_json(&mut ws, true).await["result"], "200");
    assert_eq!(sim.state().await["channels"][0]["topics_count"], 900);
}

#[actix_rt::test]
async fn socket_closing_is_followed_by_the_service_closing_the_socket() {
    let sim = start(|a| a.socket_closing_grace = 0.3).await;
    let token = sim.token().await;
    let (_, mut ws) = sim.open_socket(&token, &NO_TOPICS).await;
    let sent = std::time::Instant::now();
    let r = sim.control("/sim/faults/socket-closing", json!({})).await;
    assert_eq!(r.body["notified"], 1);
    let notice = next_json(&mut ws, true).await;
    assert_eq!(notice["topicName"], "v2.system.socket_closing");
    match next_frame(&mut ws, WAIT).await {
        Some(Frame::Close(Some(reason))) => assert_eq!(reason.code, CloseCode::Away),
        other => panic!("expected the service to close the socket, got {other:?}"),
    }
    assert!(
        sent.elapsed() >= Duration::from_millis(300),
        "closed before the grace"
    );
    assert_eq!(SimulatorArgs::default().socket_closing_grace, 60.0);
}
