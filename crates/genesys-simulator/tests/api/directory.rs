//! The directory: paged queue and user listings, and entries added and
//! removed at run time.

use std::collections::HashSet;

use actix_web::http::StatusCode;
use serde_json::json;

use crate::support::*;

#[actix_rt::test]
async fn queues_and_users_are_paged() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let first = sim
        .get(&token, "/api/v2/routing/queues?pageSize=25&pageNumber=1")
        .await;
    assert_eq!(first.body["total"], 60);
    assert_eq!(first.body["pageCount"], 3);
    assert_eq!(first.body["pageSize"], 25);
    assert_eq!(first.body["pageNumber"], 1);
    assert!(first.body["nextUri"].is_string());
    let mut ids = HashSet::new();
    for page in 1..=3 {
        let r = sim
            .get(
                &token,
                &format!("/api/v2/routing/queues?pageSize=25&pageNumber={page}"),
            )
            .await;
        for q in r.body["entities"].as_array().unwrap() {
            assert!(q["name"].as_str().is_some_and(|n| !n.is_empty()));
            ids.insert(q["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(ids.len(), 60);
    let beyond = sim
        .get(&token, "/api/v2/routing/queues?pageSize=25&pageNumber=9")
        .await;
    assert_eq!(beyond.body["entities"], json!([]));
    let bad = sim.get(&token, "/api/v2/routing/queues?pageSize=abc").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let users = sim.get(&token, "/api/v2/users?pageSize=100").await;
    assert_eq!(users.body["total"], 20);
    let one = users.body["entities"][0]["id"].as_str().unwrap();
    assert_eq!(
        sim.get(&token, &format!("/api/v2/users/{one}")).await.body["id"],
        one
    );
    let sales = sim.get(&token, "/api/v2/routing/queues?name=Sales*").await;
    assert_eq!(sales.body["total"], 4);

    // Stable ids: a second simulator lists the same queues.
    let other = start(|_| {}).await;
    let other_token = other.token().await;
    let again = other
        .get(
            &other_token,
            "/api/v2/routing/queues?pageSize=25&pageNumber=1",
        )
        .await;
    assert_eq!(again.body["entities"], first.body["entities"]);
}

#[actix_rt::test]
async fn queues_and_users_come_and_go_at_run_time() {
    let sim = start(|a| {
        a.queues = 2;
        a.users = 3;
    })
    .await;
    let token = sim.token().await;
    let added = sim
        .control("/sim/directory/queues", json!({"count": 2}))
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    let ids: Vec<String> = serde_json::from_value(added.body["ids"].clone()).unwrap();
    assert_eq!(ids.len(), 2);
    let listed = sim.get(&token, "/api/v2/routing/queues").await;
    assert_eq!(listed.body["total"], 4);
    let users = sim
        .control("/sim/directory/users", json!({"count": 1}))
        .await;
    let user = users.body["ids"][0].as_str().unwrap().to_owned();
    assert_eq!(
        sim.get(&token, &format!("/api/v2/users/{user}"))
            .await
            .status,
        StatusCode::OK
    );

    let gone = format!("v2.analytics.queues.{}.observations", ids[0]);
    let kept = format!("v2.analytics.queues.{}.observations", ids[1]);
    let (channel, mut ws) = sim.open_socket(&token, &[&gone, &kept]).await;
    let id = channel["id"].as_str().unwrap();
    wait_state(&sim, "socket connected", |s| {
        s["channels"][0]["connected"] == true
    })
    .await;

    let removed = sim
        .send_json(
            "DELETE",
            None,
            &format!("/sim/directory/queues/{}", ids[0]),
            &json!(null),
        )
        .await;
    assert_eq!(removed.body, json!({"removed": ids[0]}));
    let again = sim
        .send_json(
            "DELETE",
            None,
            &format!("/sim/directory/queues/{}", ids[0]),
            &json!(null),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(
        sim.get(&token, "/api/v2/routing/queues").await.body["total"],
        3
    );
    let r = sim
        .get(&token, &format!("/api/v2/routing/queues/{}", ids[0]))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A new subscription to the removed queue is refused.
    let r = sim.subscribe(&token, id, &[&gone], "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    let r = sim.control("/sim/generate", json!({"count": 6})).await;
    assert_eq!(r.body["emitted"], 6, "{}", r.body);
    for _ in 0..6 {
        let event = next_json(&mut ws, true).await;
        assert_eq!(
            event["topicName"],
            kept.as_str(),
            "events for a removed queue stop"
        );
    }
    let removed = sim
        .send_json(
            "DELETE",
            None,
            &format!("/sim/directory/users/{user}"),
            &json!(null),
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(
        sim.get(&token, &format!("/api/v2/users/{user}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(sim.get(&token, "/api/v2/users").await.body["total"], 3);
}
