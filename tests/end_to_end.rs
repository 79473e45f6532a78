//! The main job, end to end, with real processes: the simulator emits
//! 10,000 events on 120 subscribed topics, the bridge forwards them into a
//! Tansu broker, and an independent consumer checks each arrived exactly
//! once, with the right key, headers and byte-identical value, in emit
//! order per key.

mod support;

use std::time::{Duration, Instant};

use support::{consumer, http, ledger, Stack, TOPICS};

const EVENTS: usize = 10_000;

#[test]
fn ten_thousand_events_arrive_exactly_once_in_order() {
    let test_started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let Stack {
        broker,
        sim,
        bridge,
        ..
    } = Stack::start(dir.path(), 60);
    let state: serde_json::Value =
        serde_json::from_str(&http::get(&format!("{}/sim/state", sim.url)).unwrap().body).unwrap();
    let subscribed: usize = state["channels"]
        .as_array()
        .expect("channels in /sim/state")
        .iter()
        .map(|c| c["topics"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(
        subscribed >= 50,
        "only {subscribed} topics subscribed: {state}"
    );

    let started = Instant::now();
    sim.generate(EVENTS);

    bridge.wait_forwarded(EVENTS, Duration::from_secs(300));
    let elapsed = started.elapsed();
    let (rss, peak) = bridge.proc.rss_kib();

    let setup = started.duration_since(test_started);
    let consuming = Instant::now();
    let consumed = consumer::read_all(&broker.bootstrap(), &TOPICS, Duration::from_secs(120));
    println!(
        "e2e phases: start-up to ready {:.2}s, independent consumer read {:.2}s",
        setup.as_secs_f64(),
        consuming.elapsed().as_secs_f64()
    );
    let emitted = ledger::emitted(&sim.url);
    let report = ledger::reconcile(&emitted, &consumed);
    println!(
        "e2e: {EVENTS} events on {subscribed} topics in {:.2}s = {:.0} events/s; bridge RSS {} KiB (peak {} KiB); \
         records in Kafka {}; arrived once {}; lost {}; duplicates {}; reordered {}; unknown {}",
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64(),
        rss,
        peak,
        consumed.len(),
        report.arrived_once,
        report.lost,
        report.duplicates,
        report.reordered,
        report.unknown,
    );
    assert_eq!(report.expected, EVENTS);
    assert!(report.is_perfect(), "{report:#?}");
    assert_eq!(consumed.len(), EVENTS);
    drop(sim);
}
