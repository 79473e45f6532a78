//! Injected faults: dropped sockets (close and abort), injected statuses on
//! login, REST and upgrades, and black-holed sockets.

use actix_web::http::StatusCode;
use awc::ws::{CloseCode, Frame};
use serde_json::{json, Value};

use crate::support::*;

#[actix_rt::test]
async fn drop_sockets_abort_ends_without_a_close_frame() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let (_, mut ws) = sim
        .open_socket(&token, &[conversation_topic("acd.start")])
        .await;
    wait_state(&sim, "socket", |s| s["sockets_opened"] == 1).await;

    let r = sim
        .control("/sim/faults/drop-sockets", json!({"mode": "abort"}))
        .await;
    assert_eq!(r.body["dropped"], 1);
    loop {
        match next_frame(&mut ws, WAIT).await {
            None => break, // EOF: what a client reports as 1006
            Some(Frame::Close(reason)) => panic!("abort sent a close frame: {reason:?}"),
            Some(_) => continue,
        }
    }
    let after = sim.control("/sim/generate", json!({"count": 3})).await;
    assert_eq!(after.body["delivered"], 0, "dropped socket gets nothing");
    assert_eq!(sim.state().await["channels"][0]["connected"], false);
}

#[actix_rt::test]
async fn drop_sockets_close_sends_1001_idle_timeout() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let (channel, mut ws) = sim.open_socket(&token, &NO_TOPICS).await;
    let id = channel["id"].as_str().unwrap();
    wait_state(&sim, "socket", |s| s["sockets_opened"] == 1).await;
    let r = sim
        .control(
            "/sim/faults/drop-sockets",
            json!({"channel_id": id, "mode": "close"}),
        )
        .await;
    assert_eq!(r.body["dropped"], 1);
    match next_frame(&mut ws, WAIT).await {
        Some(Frame::Close(Some(reason))) => {
            assert_eq!(reason.code, CloseCode::Away);
            assert_eq!(reason.description.as_deref(), Some("idle timeout"));
        }
        other => panic!("expected close 1001, got {other:?}"),
    }
    // The channel survives its socket: a client reconnects to it.
    let mut again = connect(channel["connectUri"].as_str().unwrap()).await;
    send_text(&mut again, r#"{"message":"ping"}"#).await;
    assert_eq!(
        next_json(&mut again, true).await["eventBody"]["message"],
        "pong"
    );
    let unknown = sim
        .control(
            "/sim/faults/drop-sockets",
            json!({"channel_id": "streaming-0-x"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn injected_statuses_hit_the_next_calls_then_stop() {
    let sim = start(|_| {}).await;
    sim.control(
        "/sim/faults",
        json!({"token_status": 429, "token_status_count": 1, "retry_after": 3}),
    )
    .await;
    let limited = sim.login("demo-client", "demo-secret").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers.get("retry-after").unwrap(), "3");
    assert_eq!(limited.body["code"], "too.many.requests.retry.after");
    let token = sim.token().await;

    let set = sim
        .control(
            "/sim/faults",
            json!({"api_status": 503, "api_status_count": 2}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK);
    for _ in 0..2 {
        let r = sim.get(&token, "/api/v2/notifications/channels").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers.contains_key("retry-after"));
    }
    assert_eq!(
        sim.get(&token, "/api/v2/notifications/channels")
            .await
            .status,
        StatusCode::OK
    );

    sim.control("/sim/faults", json!({"api_status": 502})).await;
    assert_eq!(
        sim.get(&token, "/api/v2/users").await.status,
        StatusCode::BAD_GATEWAY
    );
    let cleared = sim
        .send_json("DELETE", None, "/sim/faults", &json!(null))
        .await;
    assert_eq!(cleared.body["api"], Value::Null);
    assert_eq!(
        sim.get(&token, "/api/v2/users").await.status,
        StatusCode::OK
    );

    let typo = sim.control("/sim/faults", json!({"api_stauts": 500})).await;
    assert_eq!(typo.status, StatusCode::BAD_REQUEST);

    sim.control("/sim/faults/expire-tokens", json!({})).await;
    assert_eq!(
        sim.get(&token, "/api/v2/users").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[actix_rt::test]
async fn a_blackholed_socket_gets_nothing_not_even_socket_closing() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let (_, mut ws) = sim.open_socket(&token, &[sim.queue_topic(0)]).await;
    wait_state(&sim, "socket", |s| s["sockets_opened"] == 1).await;
    sim.control("/sim/faults", json!({"blackhole": true})).await;

    let r = sim.control("/sim/generate", json!({"count": 2})).await;
    assert_eq!(r.body["delivered"], 0, "{}", r.body);
    send_text(&mut ws, r#"{"message":"ping"}"#).await;
    let r = sim
        .control(
            "/sim/faults/socket-closing",
            json!({"close_after_secs": 0.2}),
        )
        .await;
    assert_eq!(r.body["notified"], 1);
    // Nothing reaches the socket until it is closed: no event, no pong, no
    // socket_closing notice.
    loop {
        match next_frame(&mut ws, WAIT).await {
            Some(Frame::Close(Some(reason))) => {
                assert_eq!(reason.code, CloseCode::Away);
                break;
            }
            Some(Frame::Ping(_) | Frame::Pong(_)) => {}
            other => panic!("a black-holed socket got {other:?}"),
        }
    }
    let state = sim.state().await;
    assert_eq!(state["events_dropped"], 2, "{state}");
}
