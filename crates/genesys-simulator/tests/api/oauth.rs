//! Login (`POST /oauth/token`), the bearer check of `/api/v2` calls, the per-
//! token rate limit, and tokens ending (expiry, revocation) with their
//! channels; which routes each host serves.

use std::time::Duration;

use actix_web::http::StatusCode;
use awc::ws::Frame;
use serde_json::{json, Value};

use crate::support::*;

#[actix_rt::test]
async fn token_is_issued_for_the_right_secret_only() {
    let sim = start(|_| {}).await;
    let ok = sim.login("demo-client", "demo-secret").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["token_type"], "bearer");
    assert_eq!(ok.body["expires_in"], 86399);
    assert!(ok.body["access_token"]
        .as_str()
        .is_some_and(|t| t.len() > 40));

    let bad = sim.login("demo-client", "wrong").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.body["error"], "invalid_client");
    assert!(bad.body["description"].is_string() && bad.body["error_description"].is_string());
    assert_eq!(
        sim.login("someone-else", "demo-secret").await.status,
        StatusCode::UNAUTHORIZED
    );

    let resp = sim
        .http
        .post(sim.login_url("/oauth/token"))
        .basic_auth("demo-client", "demo-secret")
        .send_form(&[("grant_type", "password")])
        .await
        .unwrap();
    let grant = reply(resp).await;
    assert_eq!(grant.status, StatusCode::BAD_REQUEST);
    assert_eq!(grant.body["error"], "unsupported_grant_type");

    // The 400 variant of wrong credentials, switched at run time.
    sim.control("/sim/faults", json!({"bad_credentials_status": 400}))
        .await;
    assert_eq!(
        sim.login("demo-client", "wrong").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(sim.state().await["tokens_issued"], 1);
}

#[actix_rt::test]
async fn bad_credentials_status_flag_gives_400() {
    let sim = start(|a| a.bad_credentials_status = 400).await;
    let bad = sim.login("demo-client", "nope").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error"], "invalid_client");
}

#[actix_rt::test]
async fn api_calls_need_a_valid_bearer_token() {
    let sim = start(|a| a.token_ttl = 1).await;
    let resp = sim
        .http
        .get(sim.url("/api/v2/notifications/channels"))
        .send()
        .await
        .unwrap();
    let missing = reply(resp).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.body["status"], 401);
    assert_eq!(missing.body["code"], "authentication.required");
    assert!(missing.body["contextId"].is_string());
    assert_eq!(missing.body["details"], json!([]));
    assert_eq!(missing.body["errors"], json!([]));

    let unknown = sim
        .get("not-a-token", "/api/v2/notifications/channels")
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.body["code"], "bad.credentials");

    let token = sim.token().await;
    assert_eq!(
        sim.get(&token, "/api/v2/notifications/channels")
            .await
            .status,
        StatusCode::OK
    );
    // --token-ttl 1: the token stops working about a second later.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let r = sim.get(&token, "/api/v2/notifications/channels").await;
        if r.status == StatusCode::UNAUTHORIZED {
            // Expired, not unknown: the service's own code for it.
            assert_eq!(r.body["code"], "credentials.expired", "{}", r.body);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "token never expired");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn unknown_routes_get_genesys_errors() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let r = sim.get(&token, "/api/v2/analytics/realtime/events").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["code"], "not.found");
    let r = sim
        .get(&token, "/api/v2/notifications/channels/x/y/z")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let one_port = start(|a| a.login_on_api_port = true).await;
    let token = one_port.token().await;
    let r = one_port.get(&token, "/oauth/token").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.body["status"], 405);
}

#[actix_rt::test]
async fn login_is_a_host_of_its_own_unless_asked_otherwise() {
    let sim = start(|_| {}).await;
    assert_ne!(sim.sim.login_url, sim.sim.base_url);
    let on_api_host = sim
        .http
        .post(sim.url("/oauth/token"))
        .basic_auth("demo-client", "demo-secret")
        .send_form(&[("grant_type", "client_credentials")])
        .await
        .unwrap();
    let on_api_host = reply(on_api_host).await;
    assert_eq!(
        on_api_host.status,
        StatusCode::NOT_FOUND,
        "{}",
        on_api_host.body
    );
    // The login host serves login only.
    let token = sim.token().await;
    let r = sim
        .http
        .get(sim.login_url("/api/v2/notifications/channels"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let one_port = start(|a| a.login_on_api_port = true).await;
    assert_eq!(one_port.sim.login_url, one_port.sim.base_url);
    one_port.token().await;
}

#[actix_rt::test]
async fn the_rate_limit_answers_both_429_forms_per_token() {
    let sim = start(|a| a.rate_limit_per_minute = 3).await;
    let token = sim.token().await;
    for n in 1..=3 {
        let r = sim.get(&token, "/api/v2/notifications/channels").await;
        assert_eq!(r.status, StatusCode::OK, "call {n}: {}", r.body);
        assert_eq!(
            r.headers
                .get("inin-ratelimit-allowed")
                .expect("inin-ratelimit-allowed header"),
            "3"
        );
        assert_eq!(
            r.headers
                .get("inin-ratelimit-count")
                .expect("inin-ratelimit-count header"),
            n.to_string().as_str()
        );
        let reset: u64 = r
            .headers
            .get("inin-ratelimit-reset")
            .expect("inin-ratelimit-reset header")
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&reset), "reset {reset}");
    }
    let first = sim.get(&token, "/api/v2/notifications/channels").await;
    assert_eq!(first.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first.body["code"], "too.many.requests");
    assert!(first.headers.get("retry-after").is_none());
    let second = sim.get(&token, "/api/v2/users").await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second.body["code"], "too.many.requests.retry.after");
    let wait: u64 = second
        .headers
        .get("retry-after")
        .expect("retry-after header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");

    // Per token: a fresh one has its own minute.
    let other = sim.token().await;
    assert_eq!(
        sim.get(&other, "/api/v2/users").await.status,
        StatusCode::OK
    );
    let state = sim.state().await;
    assert_eq!(state["rate_limited_without_retry_after"], 1, "{state}");
    assert_eq!(state["rate_limited_with_retry_after"], 1, "{state}");

    let unlimited = start(|a| a.rate_limit_per_minute = 0).await;
    let token = unlimited.token().await;
    for _ in 0..10 {
        let r = unlimited.get(&token, "/api/v2/users").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.headers.get("inin-ratelimit-count").is_none());
    }
}

#[actix_rt::test]
async fn the_default_rate_limit_is_about_300_a_minute() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let mut ok = 0;
    let refused = loop {
        let r = sim.get(&token, "/api/v2/users?pageSize=1").await;
        if r.status != StatusCode::OK {
            break r;
        }
        ok += 1;
        assert!(ok <= 300, "more than 300 calls in a minute were served");
    };
    assert_eq!(ok, 300);
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
}

#[actix_rt::test]
async fn a_channel_ends_with_the_token_that_created_it() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let (channel, mut ws) = sim.open_socket(&token, &[sim.queue_topic(0)]).await;
    let id = channel["id"].as_str().unwrap().to_owned();
    wait_state(&sim, "socket connected", |s| {
        s["channels"][0]["connected"] == true
    })
    .await;

    let r = sim.control("/sim/faults/expire-tokens", json!({})).await;
    assert_eq!(r.body["revoked"], 1);
    let notice = next_json(&mut ws, true).await;
    assert_eq!(notice["topicName"], "v2.system.token_revoked", "{notice}");
    assert_eq!(notice["eventBody"]["systemTopicType"], "token_revoked");
    assert_eq!(notice["eventBody"]["channelId"], id.as_str());
    match next_frame(&mut ws, WAIT).await {
        Some(Frame::Close(Some(_))) | None => {}
        other => panic!("expected the socket to close, got {other:?}"),
    }
    let fresh = sim.token().await;
    let path = format!("/api/v2/notifications/channels/{id}");
    assert_eq!(sim.head(&fresh, &path).await, StatusCode::NOT_FOUND);
    let uri = channel["connectUri"].as_str().unwrap();
    assert!(
        awc::Client::new().ws(uri).connect().await.is_err(),
        "socket refused"
    );
    assert_eq!(sim.state().await["channels_ended_with_token"], 1);
}

#[actix_rt::test]
async fn an_expiring_token_takes_its_channels_along_unless_turned_off() {
    for follow in [true, false] {
        let sim = start(|a| {
            a.token_ttl = 1;
            a.channels_follow_token = follow;
        })
        .await;
        let token = sim.token().await;
        let (_, mut ws) = sim.open_socket(&token, &NO_TOPICS).await;
        if follow {
            let notice = next_json(&mut ws, true).await;
            assert_eq!(notice["eventBody"]["systemTopicType"], "token_revoked");
            send_text(
                &mut ws,
                &json!({"message": "subscribe", "topics": [conversation_topic("acw")]}).to_string(),
            )
            .await;
            // Closed, or (had the frame raced the close) a 404.
            loop {
                match next_frame(&mut ws, WAIT).await {
                    Some(Frame::Close(_)) | None => break,
                    Some(Frame::Text(t)) => {
                        let v: Value = serde_json::from_slice(&t).unwrap();
                        if v["result"].is_string() {
                            assert_eq!(v["result"], "404", "{v}");
                        }
                    }
                    _ => {}
                }
            }
        } else {
            wait_state(&sim, "the token to expire", |s| s["tokens_active"] == 0).await;
            send_text(
                &mut ws,
                &json!({"message": "subscribe", "topics": [conversation_topic("acw")]}).to_string(),
            )
            .await;
            assert_eq!(next_json(&mut ws, true).await["result"], "200");
        }
    }
}

#[actix_rt::test]
async fn revoking_one_token_ends_its_channels_and_spares_the_others() {
    let sim = start(|_| {}).await;
    let (t1, t2) = (sim.token().await, sim.token().await);
    sim.load_directory(&t1).await;
    let mut sockets = Vec::new();
    let mut ids = Vec::new();
    for t in [&t1, &t2] {
        let (channel, ws) = sim.open_socket(t, &[sim.queue_topic(0)]).await;
        sockets.push(ws);
        ids.push(channel["id"].as_str().unwrap().to_owned());
    }
    wait_state(&sim, "both sockets connected", |s| {
        s["channels"]
            .as_array()
            .is_some_and(|c| c.iter().filter(|c| c["connected"] == true).count() == 2)
    })
    .await;

    let unknown = sim
        .control(
            "/sim/faults/revoke-token",
            json!({"token_prefix": "no-such-token"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    let r = sim
        .control(
            "/sim/faults/revoke-token",
            json!({"token_prefix": &t1[..16]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["channels_ended"], 1);

    let notice = next_json(&mut sockets[0], true).await;
    assert_eq!(notice["topicName"], "v2.system.token_revoked", "{notice}");
    assert_eq!(notice["eventBody"]["channelId"], ids[0].as_str());
    loop {
        match next_frame(&mut sockets[0], WAIT).await {
            Some(Frame::Close(_)) | None => break,
            Some(Frame::Ping(_) | Frame::Pong(_)) => {}
            Some(Frame::Text(t)) => {
                let v: Value = serde_json::from_slice(&t).unwrap();
                assert_eq!(v["eventBody"]["message"], "WebSocket Heartbeat", "{v}");
            }
            other => panic!("expected the revoked token's socket to close, got {other:?}"),
        }
    }
    let revoked = sim.get(&t1, "/api/v2/notifications/channels").await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    assert_eq!(revoked.body["code"], "bad.credentials");
    let path = |id: &str| format!("/api/v2/notifications/channels/{id}");
    assert_eq!(sim.head(&t2, &path(&ids[0])).await, StatusCode::NOT_FOUND);
    assert_eq!(sim.head(&t2, &path(&ids[1])).await, StatusCode::OK);

    // The other token's channel lives on and still gets events.
    let r = sim.control("/sim/generate", json!({"count": 3})).await;
    assert_eq!(r.body["delivered"], 3, "{}", r.body);
    for event in read_events(&mut sockets[1], 3).await {
        assert_eq!(event["topicName"], sim.queue_topic(0).as_str());
    }
    assert_eq!(sim.state().await["channels_ended_with_token"], 1);
}

#[actix_rt::test]
async fn expired_tokens_answer_credentials_expired_or_alternate_by_option() {
    let sim = start(|a| {
        a.token_ttl = 1;
        a.expired_token_code = "alternate".into();
    })
    .await;
    let token = sim.token().await;
    let deadline = std::time::Instant::now() + WAIT;
    let first = loop {
        let r = sim.get(&token, "/api/v2/notifications/channels").await;
        if r.status == StatusCode::UNAUTHORIZED {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "token never expired");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(first.body["code"], "credentials.expired", "{}", first.body);
    let second = sim.get(&token, "/api/v2/notifications/channels").await;
    assert_eq!(second.status, StatusCode::UNAUTHORIZED);
    assert_eq!(second.body["code"], "bad.credentials");
    let third = sim.get(&token, "/api/v2/notifications/channels").await;
    assert_eq!(third.body["code"], "credentials.expired");
    // A token never issued is unknown, not expired.
    let unknown = sim
        .get("never-issued", "/api/v2/notifications/channels")
        .await;
    assert_eq!(unknown.body["code"], "bad.credentials");
}
