//! The slow failures of a long-running bridge, sped up: tokens that expire
//! every few seconds and channels that expire every few seconds, while
//! events keep flowing. Every event delivered to an open socket must reach
//! Kafka exactly once; events sent while no socket was open are counted
//! apart (Genesys drops them too).

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::{http, ledger, Stack};

#[test]
fn expiring_tokens_and_channels_are_replaced_while_events_flow() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::builder(dir.path())
        .queues(10)
        .simulator_args(&[
            "--token-ttl",
            "3",
            "--channel-ttl",
            "8",
            "--subscribe-extends-channel",
            "false",
        ])
        .start();
    let (broker, sim, bridge) = (&stack.broker, &stack.sim, &stack.bridge);
    let secret = stack.secret.as_str();

    // 1,500 events over 15 s: several token lifetimes, two channel lifetimes.
    sim.generate_in_background(1_500, 100.0);
    sim.wait_generated(Duration::from_secs(120));

    // The simulator logs one entry per channel an event was sent to: an
    // old channel that is still subscribed but has no socket gets an
    // undelivered copy, as Genesys would send it one.
    let emitted = ledger::emitted(&sim.url);
    let (distinct, delivered) = ledger::distinct_and_delivered(&emitted);
    let m = bridge.wait_forwarded(delivered, Duration::from_secs(120));
    let tokens = m.get("gkb_tokens_granted_total");
    let channels = m.get("gkb_channels_created_total");
    println!(
        "lifecycle: {distinct} events emitted, {delivered} delivered to an open socket, {} missed between sockets; \
         tokens granted {tokens}, channels created {channels}",
        distinct - delivered,
    );
    ledger::assert_exactly_once("lifecycle", sim, broker, delivered);
    assert_eq!(distinct, 1_500);
    assert!(tokens >= 4.0, "tokens were not refreshed: {tokens}");
    assert!(channels >= 2.0, "channels were not rolled over: {channels}");

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
            !text.contains(secret),
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

/// A planned move has a deadline: the end of the token its channel is
/// tied to. Moves every 9 s are "repeated" (less than a minute apart), so
/// each backs off further; with a first step of 1-2 s the second move
/// would start after its channel ended (a gap) if the backoff were not cut
/// at the deadline. Measured before the cut: delays 0 → 135 → 293 → 714 →
/// 1,390 → 2,982 ms with 30 s tokens under CPU starvation, and 4 gaps in
/// 100 s.
#[test]
fn planned_moves_never_back_off_past_the_token_end() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::builder(dir.path())
        .queues(5)
        .simulator_args(&["--token-ttl", "10"])
        .genesys_keys("retry_min_delay_ms = 2000\nretry_max_delay_ms = 30000")
        .start();
    let (broker, sim, bridge) = (&stack.broker, &stack.sim, &stack.bridge);

    // 1,600 events over 40 s: four token lifetimes, four planned moves.
    sim.generate_in_background(1_600, 40.0);
    sim.wait_generated(Duration::from_secs(180));
    let emitted = ledger::emitted(&sim.url);
    let (distinct, delivered) = ledger::distinct_and_delivered(&emitted);
    let m = bridge.wait_forwarded(delivered, Duration::from_secs(120));
    let gaps = m.get("gkb_socket_gaps_total");
    let channels = m.get("gkb_channels_created_total");
    println!(
        "deadline: {distinct} events emitted, {delivered} delivered to an open socket, \
         {} missed between sockets; channels created {channels}; socket gaps {gaps}",
        distinct - delivered
    );
    assert!(channels >= 4.0, "the channels did not move: {channels}");
    assert_eq!(gaps, 0.0, "a planned move became a gap");
    assert_eq!(
        delivered, distinct,
        "events were emitted while no socket was open"
    );
    ledger::assert_exactly_once("deadline", sim, broker, delivered);
}
