//! The slow failures of a long-running bridge, sped up: tokens that expire
//! every few seconds and channels that expire every few seconds, while
//! events keep flowing. Every event delivered to an open socket must reach
//! Kafka exactly once; events sent while no socket was open are counted
//! apart (Genesys drops them too).

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::{consumer, eventually, http, ledger, Stack, TOPICS};

#[test]
fn expiring_tokens_and_channels_are_replaced_while_events_flow() {
    let dir = tempfile::tempdir().unwrap();
    let Stack {
        broker,
        sim,
        bridge,
        secret,
    } = Stack::start_with(
        dir.path(),
        10,
        &[
            "--token-ttl",
            "3",
            "--channel-ttl",
            "8",
            "--subscribe-extends-channel",
            "false",
        ],
        &[],
    );

    // 1,500 events over 15 s: several token lifetimes, two channel lifetimes.
    let reply = http::post_json(
        &format!("{}/sim/generate", sim.url),
        &serde_json::json!({ "count": 1_500, "rate_per_sec": 100 }),
    )
    .unwrap();
    assert!(reply.status == 200 || reply.status == 202, "{}", reply.body);
    eventually("the generator to finish", Duration::from_secs(120), || {
        let state: serde_json::Value =
            serde_json::from_str(&http::get(&format!("{}/sim/state", sim.url)).ok()?.body).ok()?;
        (state["generator_running"] == false).then_some(())
    });

    // The simulator logs one entry per channel an event was sent to: an
    // old channel that is still subscribed but has no socket gets an
    // undelivered copy, as Genesys would send it one.
    let emitted = ledger::emitted(&sim.url);
    let distinct: HashSet<&str> = emitted.iter().map(|e| e.correlation_id.as_str()).collect();
    let delivered: HashSet<&str> = emitted
        .iter()
        .filter(|e| e.delivered)
        .map(|e| e.correlation_id.as_str())
        .collect();
    let delivered = delivered.len();
    let m = bridge.wait_forwarded(delivered, Duration::from_secs(120));
    let tokens = m.get("gkb_tokens_granted_total");
    let channels = m.get("gkb_channels_created_total");

    let consumed = consumer::read_all(&broker.bootstrap(), &TOPICS, Duration::from_secs(120));
    let report = ledger::reconcile(&emitted, &consumed);
    println!(
        "lifecycle: {} events emitted, {delivered} delivered to an open socket, {} missed between sockets; \
         tokens granted {tokens}, channels created {channels}; in Kafka {}; lost {}; duplicates {}; reordered {}",
        distinct.len(),
        distinct.len() - delivered,
        consumed.len(),
        report.lost,
        report.duplicates,
        report.reordered
    );
    assert_eq!(distinct.len(), 1_500);
    assert_eq!(report.expected, delivered);
    assert!(tokens >= 4.0, "tokens were not refreshed: {tokens}");
    assert!(channels >= 2.0, "channels were not rolled over: {channels}");
    assert!(report.is_perfect(), "{report:#?}");

    // Seven logins later, the secret is still nowhere to be seen.
    let status = http::get(&format!("{}/status", bridge.health))
        .unwrap()
        .body;
    for (what, text) in [
        ("log", bridge.proc.log_text()),
        ("/status", status),
        ("/metrics", m.0),
    ] {
        assert!(
            !text.contains(&secret),
            "the client secret appears in the bridge's {what}"
        );
    }
    // A channel id grants access to the channel's events: never whole.
    let log = bridge.proc.log_text();
    let channels: HashSet<&str> = emitted
        .iter()
        .filter_map(|e| e.channel_id.as_deref())
        .collect();
    assert!(channels.len() >= 2);
    for id in channels {
        assert!(
            !log.contains(id),
            "a whole channel id appears in the bridge's log"
        );
    }
}
