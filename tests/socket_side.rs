//! The socket side under the faults a long-running bridge meets, with real
//! processes: a process pause, channel rollovers and `socket_closing`
//! while events flow, and a run of failed connection attempts. Every event
//! the simulator wrote to a socket is counted end to end in Kafka.

mod support;

use std::time::{Duration, Instant};

use support::{eventually, ledger, Metrics, Simulator, Stack};

fn wait_emitted(sim: &Simulator, at_least: u64) {
    eventually(
        &format!("the simulator to have emitted {at_least} events"),
        Duration::from_secs(120),
        || (sim.state()["last_seq"].as_u64()? >= at_least).then_some(()),
    );
}

/// Events the service wrote to two sockets at once (an overlap's copies).
fn written_twice(emitted: &[ledger::Emitted]) -> usize {
    let mut sockets: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for e in emitted.iter().filter(|e| e.delivered) {
        *sockets.entry(e.correlation_id.as_str()).or_default() += 1;
    }
    sockets.values().filter(|&&n| n > 1).count()
}

#[test]
fn a_30_second_pause_loses_nothing_the_service_wrote_to_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = Stack::builder(dir.path()).queues(10).start();
    let (broker, sim, bridge) = (&stack.broker, &stack.sim, &mut stack.bridge);
    // 100 events/s for 60 s; the heartbeat timeout is 20 s (support's
    // bridge_config), so a 30 s pause is what used to kill the socket.
    sim.generate_in_background(6_000, 100.0);
    wait_emitted(sim, 1_000);

    bridge.proc.signal(libc::SIGSTOP);
    let paused_at = sim.state()["last_seq"].as_u64().unwrap();
    // The fault under test is the pause itself: 30 s of it.
    std::thread::sleep(Duration::from_secs(30));
    let resumed_at = sim.state()["last_seq"].as_u64().unwrap();
    bridge.proc.signal(libc::SIGCONT);
    let resumed = Instant::now();

    sim.wait_generated(Duration::from_secs(300));
    let emitted = ledger::emitted(&sim.url);
    let (distinct, delivered) = ledger::distinct_and_delivered(&emitted);
    let m = bridge.wait_forwarded(delivered, Duration::from_secs(120));
    println!(
        "pause: {distinct} events emitted, {} during the 30 s pause, {delivered} written to the socket; \
         stalls detected {}; reconnects {}; caught up {:.1}s after resume",
        resumed_at - paused_at,
        m.get("gkb_stalls_total"),
        m.get("gkb_reconnects_total"),
        resumed.elapsed().as_secs_f64(),
    );
    ledger::assert_exactly_once("pause", sim, broker, delivered);
    assert_eq!(distinct, 6_000);
    assert!(
        resumed_at - paused_at >= 2_000,
        "the pause covered too few events"
    );
    assert_eq!(delivered, distinct, "every event was written to the socket");
    assert!(m.get("gkb_stalls_total") >= 1.0, "the pause went unnoticed");
    assert_eq!(
        m.get("gkb_reconnects_total"),
        0.0,
        "a paused bridge must not take its socket for dead"
    );
    bridge.proc.terminate();
}

#[test]
fn rollovers_and_socket_closing_lose_nothing_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Channels live 20 s and subscribing does not extend them: in 60 s at
    // 200 events/s, several rollovers plus two `socket_closing` notices,
    // after which the service closes the socket by itself (its default).
    let stack = Stack::builder(dir.path())
        .queues(10)
        .simulator_args(&[
            "--channel-ttl",
            "20",
            "--subscribe-extends-channel",
            "false",
        ])
        .start();
    let (broker, sim, bridge) = (&stack.broker, &stack.sim, &stack.bridge);
    sim.generate_in_background(12_000, 200.0);
    for at in [2_500, 7_500] {
        wait_emitted(sim, at);
        sim.control("/sim/faults/socket-closing", serde_json::json!({}));
    }
    sim.wait_generated(Duration::from_secs(300));

    let emitted = ledger::emitted(&sim.url);
    let (distinct, delivered) = ledger::distinct_and_delivered(&emitted);
    let m = bridge.wait_forwarded(delivered, Duration::from_secs(120));
    println!(
        "rollovers: {distinct} events emitted, {delivered} reached an open socket; \
         moves {}, channels created {}, copies written to two sockets {}, overlap copies removed {}, gaps {} ({} s)",
        m.get("gkb_planned_moves_total"),
        m.get("gkb_channels_created_total"),
        written_twice(&emitted),
        m.get("gkb_overlap_duplicates_total"),
        m.get("gkb_socket_gaps_total"),
        m.get("gkb_socket_gap_seconds_total"),
    );
    ledger::assert_exactly_once("rollovers", sim, broker, delivered);
    assert_eq!(distinct, 12_000);
    assert_eq!(delivered, distinct, "every event reached an open socket");
    assert!(
        m.get("gkb_planned_moves_total") >= 4.0,
        "expected rollovers and socket_closing moves"
    );
    assert_eq!(m.get("gkb_socket_gaps_total"), 0.0);
    // The overlaps did hold copies, and the bridge removed them (Kafka's
    // count above shows none got through).
    let copies = written_twice(&emitted) as f64;
    let removed = m.get("gkb_overlap_duplicates_total");
    assert!(
        copies > 0.0,
        "no overlap carried a copy: nothing was tested"
    );
    assert!(
        removed > 0.0 && removed <= copies,
        "removed {removed} of {copies} copies"
    );
}

#[test]
fn ten_failed_attempts_in_a_row_leave_at_most_two_channels() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::builder(dir.path()).queues(10).start();
    let (sim, bridge) = (&stack.sim, &stack.bridge);
    let channels_alive =
        |sim: &Simulator| -> usize { sim.state()["channels"].as_array().unwrap().len() };
    assert_eq!(channels_alive(sim), 1);

    // Ten socket upgrades refused, then the socket dropped: the bridge
    // fails ten attempts in a row before one succeeds.
    for (faults, what) in [
        (
            serde_json::json!({ "ws_status": 503, "ws_status_count": 10 }),
            "socket upgrades",
        ),
        (
            serde_json::json!({ "api_status": 503, "api_status_count": 100 }),
            "API calls",
        ),
    ] {
        let reconnects = Metrics(bridge.metrics().unwrap()).get("gkb_reconnects_total");
        sim.control("/sim/faults", faults);
        sim.control(
            "/sim/faults/drop-sockets",
            serde_json::json!({ "mode": "abort" }),
        );
        let mut most = 0;
        eventually(
            &format!("the refused {what} to run out and the bridge to reconnect"),
            Duration::from_secs(240),
            || {
                most = most.max(channels_alive(sim));
                let state = sim.state();
                let faults = &state["faults"];
                let drained = faults["websocket"].is_null() && faults["api"].is_null();
                let m = Metrics(bridge.metrics()?);
                (drained && m.get("gkb_connections_open") == 1.0).then_some(())
            },
        );
        bridge.wait_ready();
        let m = Metrics(bridge.metrics().unwrap());
        let failed = m.get("gkb_reconnects_total") - reconnects;
        most = most.max(channels_alive(sim));
        println!(
            "failed attempts ({what}): {failed} reconnect attempts; at most {most} channels alive; {} created in all",
            m.get("gkb_channels_created_total")
        );
        assert!(failed >= 10.0, "expected ten failed attempts, saw {failed}");
        assert!(most <= 2, "{most} channels alive for one connection");
    }
    sim.generate(500);
    bridge.wait_forwarded(500, Duration::from_secs(60));
}
