//! The socket side under the faults a long-running bridge meets, with real
//! processes: a process pause, channel rollovers and `socket_closing`
//! while events flow, and a run of failed connection attempts. Every event
//! the simulator wrote to a socket is counted end to end in Kafka.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{consumer, eventually, http, ledger, Metrics, Simulator, Stack, TOPICS};

fn sim_state(sim: &Simulator) -> Option<Value> {
    serde_json::from_str(&http::get(&format!("{}/sim/state", sim.url)).ok()?.body).ok()
}

/// Starts a background generation job of `count` events at `rate`/s.
fn generate_in_background(sim: &Simulator, count: u64, rate: u64) {
    let reply = http::post_json(
        &format!("{}/sim/generate", sim.url),
        &serde_json::json!({ "count": count, "rate_per_sec": rate }),
    )
    .unwrap();
    assert!(reply.status == 200 || reply.status == 202, "{}", reply.body);
}

fn wait_emitted(sim: &Simulator, at_least: u64) {
    eventually(
        &format!("the simulator to have emitted {at_least} events"),
        Duration::from_secs(120),
        || (sim_state(sim)?["last_seq"].as_u64()? >= at_least).then_some(()),
    );
}

fn wait_generator_done(sim: &Simulator) {
    eventually("the generator to finish", Duration::from_secs(300), || {
        (sim_state(sim)?["generator_running"] == false).then_some(())
    });
}

/// Events the service wrote to two sockets at once (an overlap's copies).
fn written_twice(emitted: &[ledger::Emitted]) -> usize {
    let mut sockets: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for e in emitted.iter().filter(|e| e.delivered) {
        *sockets.entry(e.correlation_id.as_str()).or_default() += 1;
    }
    sockets.values().filter(|&&n| n > 1).count()
}

/// Distinct events emitted, and how many of them reached an open socket.
fn emitted_and_delivered(emitted: &[ledger::Emitted]) -> (usize, usize) {
    let distinct: HashSet<&str> = emitted.iter().map(|e| e.correlation_id.as_str()).collect();
    let delivered: HashSet<&str> = emitted
        .iter()
        .filter(|e| e.delivered)
        .map(|e| e.correlation_id.as_str())
        .collect();
    (distinct.len(), delivered.len())
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on a child process we own.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

#[test]
fn a_30_second_pause_loses_nothing_the_service_wrote_to_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let Stack {
        broker,
        sim,
        mut bridge,
        ..
    } = Stack::start(dir.path(), 10);
    // 100 events/s for 60 s; the heartbeat timeout is 20 s (support's
    // bridge_config), so a 30 s pause is what used to kill the socket.
    generate_in_background(&sim, 6_000, 100);
    wait_emitted(&sim, 1_000);

    let pid = bridge.proc.pid();
    signal(pid, libc::SIGSTOP);
    let paused_at = sim_state(&sim).unwrap()["last_seq"].as_u64().unwrap();
    // The fault under test is the pause itself: 30 s of it.
    std::thread::sleep(Duration::from_secs(30));
    let resumed_at = sim_state(&sim).unwrap()["last_seq"].as_u64().unwrap();
    signal(pid, libc::SIGCONT);
    let resumed = Instant::now();

    wait_generator_done(&sim);
    let emitted = ledger::emitted(&sim.url);
    let (distinct, delivered) = emitted_and_delivered(&emitted);
    let m = bridge.wait_forwarded(delivered, Duration::from_secs(120));
    let consumed = consumer::read_all(&broker.bootstrap(), &TOPICS, Duration::from_secs(120));
    let report = ledger::reconcile(&emitted, &consumed);
    println!(
        "pause: {distinct} events emitted, {} during the 30 s pause, {delivered} written to the socket; \
         in Kafka {}; lost {}; duplicates {}; reordered {}; stalls detected {}; reconnects {}; caught up {:.1}s after resume",
        resumed_at - paused_at,
        consumed.len(),
        report.lost,
        report.duplicates,
        report.reordered,
        m.get("gkb_stalls_total"),
        m.get("gkb_reconnects_total"),
        resumed.elapsed().as_secs_f64(),
    );
    assert_eq!(distinct, 6_000);
    assert!(
        resumed_at - paused_at >= 2_000,
        "the pause covered too few events"
    );
    assert_eq!(delivered, distinct, "every event was written to the socket");
    assert!(report.is_perfect(), "{report:#?}");
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
    let Stack {
        broker,
        sim,
        bridge,
        ..
    } = Stack::start_with(
        dir.path(),
        10,
        &[
            "--channel-ttl",
            "20",
            "--subscribe-extends-channel",
            "false",
        ],
        &[],
    );
    generate_in_background(&sim, 12_000, 200);
    for at in [2_500, 7_500] {
        wait_emitted(&sim, at);
        let reply = http::post_json(
            &format!("{}/sim/faults/socket-closing", sim.url),
            &serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    wait_generator_done(&sim);

    let emitted = ledger::emitted(&sim.url);
    let (distinct, delivered) = emitted_and_delivered(&emitted);
    let m = bridge.wait_forwarded(delivered, Duration::from_secs(120));
    let consumed = consumer::read_all(&broker.bootstrap(), &TOPICS, Duration::from_secs(120));
    let report = ledger::reconcile(&emitted, &consumed);
    println!(
        "rollovers: {distinct} events emitted, {delivered} reached an open socket; in Kafka {}; lost {}; duplicates {}; reordered {}; \
         moves {}, channels created {}, copies written to two sockets {}, overlap copies removed {}, gaps {} ({} s)",
        consumed.len(),
        report.lost,
        report.duplicates,
        report.reordered,
        m.get("gkb_planned_moves_total"),
        m.get("gkb_channels_created_total"),
        written_twice(&emitted),
        m.get("gkb_overlap_duplicates_total"),
        m.get("gkb_socket_gaps_total"),
        m.get("gkb_socket_gap_seconds_total"),
    );
    assert_eq!(distinct, 12_000);
    assert_eq!(delivered, distinct, "every event reached an open socket");
    assert!(report.is_perfect(), "{report:#?}");
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
    // The broker must be bound: a `..` pattern would drop (and stop) it here.
    let Stack {
        broker: _broker,
        sim,
        bridge,
        ..
    } = Stack::start(dir.path(), 10);
    let channels_alive = |sim: &Simulator| -> usize {
        sim_state(sim).unwrap()["channels"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(channels_alive(&sim), 1);

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
        let reply = http::post_json(&format!("{}/sim/faults", sim.url), &faults).unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        let reply = http::post_json(
            &format!("{}/sim/faults/drop-sockets", sim.url),
            &serde_json::json!({ "mode": "abort" }),
        )
        .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        let mut most = 0;
        eventually(
            &format!("the refused {what} to run out and the bridge to reconnect"),
            Duration::from_secs(240),
            || {
                most = most.max(channels_alive(&sim));
                let state = sim_state(&sim)?;
                let faults = &state["faults"];
                let drained = faults["websocket"].is_null() && faults["api"].is_null();
                let m = Metrics(bridge.metrics()?);
                (drained && m.get("gkb_connections_open") == 1.0).then_some(())
            },
        );
        bridge.wait_ready();
        let m = Metrics(bridge.metrics().unwrap());
        let failed = m.get("gkb_reconnects_total") - reconnects;
        most = most.max(channels_alive(&sim));
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
