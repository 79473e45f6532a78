//! The main job, end to end, with real processes: the simulator emits
//! 10,000 events on 120 subscribed topics, the bridge forwards them into a
//! Tansu broker, and an independent consumer checks each arrived exactly
//! once, with the right key, headers and byte-identical value, in emit
//! order per key.

mod support;

use std::time::{Duration, Instant};

use support::{ledger, Stack};

const EVENTS: usize = 10_000;

#[test]
fn ten_thousand_events_arrive_exactly_once_in_order() {
    let test_started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // Snapshots on: their records share the observation topic with the
    // deltas and must cost no event (the ledger counts them apart).
    let stack = Stack::builder(dir.path())
        .queues(60)
        .snapshot_keys("enabled = true")
        .start();
    let (broker, sim, bridge) = (&stack.broker, &stack.sim, &stack.bridge);
    let subscribed = sim.subscribed_topics().len();
    assert!(
        subscribed >= 50,
        "only {subscribed} topics subscribed: {}",
        sim.state()
    );

    let started = Instant::now();
    sim.generate(EVENTS);

    bridge.wait_forwarded(EVENTS, Duration::from_secs(300));
    let elapsed = started.elapsed();
    let (rss, peak) = bridge.proc.rss_kib();
    println!(
        "e2e: start-up to ready {:.2}s; {EVENTS} events on {subscribed} topics in {:.2}s = {:.0} events/s; \
         bridge RSS {rss} KiB (peak {peak} KiB)",
        started.duration_since(test_started).as_secs_f64(),
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64(),
    );
    ledger::assert_exactly_once("e2e", sim, broker, EVENTS);
}
