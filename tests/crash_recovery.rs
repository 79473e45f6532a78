//! Survival, with real processes: Kafka goes down (`kill -9` of the
//! broker) while events keep arriving, then the bridge itself is killed
//! with `kill -9`. After both come back, every event the bridge received
//! must be in Kafka exactly once and in order per key.

mod support;

use std::time::Duration;

use support::{ledger, Metrics, Stack};

#[test]
fn events_survive_a_kafka_outage_and_a_bridge_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = Stack::builder(dir.path()).queues(30).start();
    let (broker, sim, bridge) = (&mut stack.broker, &stack.sim, &mut stack.bridge);

    // 1. Normal traffic.
    sim.generate(2_000);
    bridge.wait_forwarded(2_000, Duration::from_secs(120));

    // 2. Kafka dies; events keep coming and must wait, durably, in the buffer.
    broker.kill9();
    sim.generate(3_000);
    let flushed = bridge.wait_received_and_flushed(5_000, Duration::from_secs(120));
    let buffered = flushed.get("gkb_buffer_events");

    // 3. The bridge dies too, without a chance to clean up.
    bridge.proc.kill9();

    // 4. Both come back; more traffic after the restart.
    broker.restart();
    bridge.restart();
    bridge.wait_ready();
    sim.generate(2_000);
    bridge.wait_for_metrics(
        "the buffer drained after the restart",
        Duration::from_secs(180),
        |m| m.get("gkb_events_received_total") >= 2_000.0 && m.get("gkb_buffer_events") == 0.0,
    );

    println!(
        "crash recovery: {buffered} events waited in the buffer through a broker kill -9 and a bridge kill -9"
    );
    ledger::assert_exactly_once("crash recovery", sim, broker, 7_000);
    assert!(
        buffered > 0.0,
        "the outage batch should have waited in the buffer"
    );
}

#[test]
fn a_dropped_socket_is_replaced_and_nothing_received_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::builder(dir.path()).queues(30).start();
    let (broker, sim, bridge) = (&stack.broker, &stack.sim, &stack.bridge);
    sim.generate(1_000);

    // What a proxy does to an idle connection: the TCP connection vanishes
    // without a close frame (1006), then, once replaced, a polite close.
    for mode in ["abort", "close"] {
        let before = Metrics(bridge.metrics().unwrap()).get("gkb_reconnects_total");
        sim.control(
            "/sim/faults/drop-sockets",
            serde_json::json!({ "mode": mode }),
        );
        bridge.wait_for_metrics(
            "the bridge to notice and reconnect",
            Duration::from_secs(60),
            |m| m.get("gkb_reconnects_total") > before && m.get("gkb_connections_open") == 1.0,
        );
        bridge.wait_ready();
        sim.generate(1_000);
    }

    let settled = bridge.wait_forwarded(3_000, Duration::from_secs(120));
    assert_eq!(
        settled.get("gkb_channels_created_total"),
        1.0,
        "a dropped socket reconnects to its channel, which is still alive"
    );
    ledger::assert_exactly_once(
        "socket drops, an abort (1006) and a close",
        sim,
        broker,
        3_000,
    );
}
