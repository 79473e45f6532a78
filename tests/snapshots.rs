//! Observation snapshots with real processes: 60 queues, 100 events/s,
//! the socket dropped and its reconnection refused for 10 s, twice, and
//! the Analytics answer held back so that deltas made after the state was
//! read reach the bridge before the answer (the race `snapshots::merge`
//! handles). Afterwards an independent consumer that reads the observation
//! topic from its start, and one that starts at each queue's last
//! snapshot, applying snapshots and deltas in order, must both hold
//! exactly the simulator's `/sim/observations` for every queue.
//!
//! The race is then made exact: a third gap's snapshot query is held by
//! the simulator, a delta is made for every queue while it is held, and
//! nothing after: without the window merge, the snapshot (older) would
//! follow those deltas and set their metrics back for good.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{json, Value};
use support::consumer::{self, Consumed};
use support::{eventually, ledger, Bridge, Simulator, Stack};

const TOPIC: &str = "genesys.queue-observations";
const QUEUES: usize = 60;

/// `(metric, qualifier)` → stats.
type State = BTreeMap<(String, Option<String>), Value>;

fn key_of(m: &Value) -> (String, Option<String>) {
    (
        m["metric"].as_str().unwrap().to_owned(),
        m["qualifier"].as_str().map(str::to_owned),
    )
}

/// Applies one observation-topic record to `state`, as the README tells
/// a consumer to: a snapshot replaces the queue's state, a delta each
/// observation metric it carries (aggregates, `n…`/`t…`, are not state).
fn apply(state: &mut State, record: &Consumed) {
    let v: Value = serde_json::from_slice(&record.value).unwrap();
    if record.header("gkb-kind") == Some("snapshot") {
        state.clear();
    }
    for data in v["eventBody"]["data"].as_array().unwrap() {
        for m in data["metrics"].as_array().unwrap() {
            if m["metric"].as_str().unwrap().starts_with('o') {
                state.insert(key_of(m), m["stats"].clone());
            }
        }
    }
}

/// The simulator's truth: queue id → state.
fn truth(sim: &Simulator) -> HashMap<String, State> {
    let reply = support::http::get(&format!("{}/sim/observations", sim.url)).unwrap();
    let v: Value = serde_json::from_str(&reply.body).unwrap();
    v["queues"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(q, metrics)| {
            let state = metrics
                .as_array()
                .unwrap()
                .iter()
                .map(|m| (key_of(m), m["stats"].clone()))
                .collect();
            (q.clone(), state)
        })
        .collect()
}

fn snapshot_rounds(bridge: &Bridge) -> u64 {
    bridge.status().unwrap()["repair"]["snapshots"]["rounds_ok"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_consumer_of_snapshots_and_deltas_holds_the_queues_state_after_two_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::builder(dir.path())
        .queues(QUEUES)
        .snapshot_keys("enabled = true\ninterval_secs = 0")
        .start();
    let (broker, sim, bridge) = (&stack.broker, &stack.sim, &stack.bridge);
    eventually("the start-up snapshot", Duration::from_secs(60), || {
        (snapshot_rounds(bridge) >= 1).then_some(())
    });
    // Every answer held 1.5 s after the state was read: at 100 events/s
    // on 60 queues, deltas made meanwhile reach the bridge first.
    sim.control("/sim/faults", json!({ "analytics_delay_ms": 1500 }));
    sim.generate_in_background(5_000, 100.0);
    eventually("events to flow", Duration::from_secs(60), || {
        (bridge.status()?["forwarded"]["total"].as_u64()? >= 500).then_some(())
    });
    for n in 0..2 {
        let rounds = snapshot_rounds(bridge);
        support::gap_with_refused_reconnection(sim, bridge, Duration::from_secs(10), n);
        eventually(
            "the snapshot after the gap",
            Duration::from_secs(60),
            || (snapshot_rounds(bridge) > rounds).then_some(()),
        );
    }
    sim.wait_generated(Duration::from_secs(180));

    // The exact race: a snapshot query held 3 s, a delta for every queue
    // made while it is held (after the state it answers was read), then
    // quiet.
    sim.control("/sim/faults", json!({ "analytics_delay_ms": 3000 }));
    let rounds = snapshot_rounds(bridge);
    sim.control("/sim/faults/drop-sockets", json!({ "mode": "abort" }));
    eventually("a snapshot query held", Duration::from_secs(60), || {
        (sim.state()["analytics_held"].as_u64()? >= 1).then_some(())
    });
    sim.generate(2 * QUEUES);
    assert!(
        sim.state()["analytics_held"].as_u64().unwrap() >= 1,
        "the burst was made while the query was held"
    );
    eventually("the held snapshot written", Duration::from_secs(60), || {
        (snapshot_rounds(bridge) > rounds).then_some(())
    });
    let delivered = ledger::distinct_and_delivered(&ledger::emitted(&sim.url)).1;
    bridge.wait_for_metrics(
        "every delivered event forwarded",
        Duration::from_secs(120),
        |m| {
            m.get("gkb_events_forwarded_total") >= delivered as f64
                && m.get("gkb_buffer_events") == 0.0
        },
    );

    let records = consumer::read_all(&broker.bootstrap(), &[TOPIC], Duration::from_secs(60));
    let mut by_queue: BTreeMap<String, Vec<&Consumed>> = BTreeMap::new();
    for r in &records {
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        by_queue.entry(key).or_default().push(r);
    }
    let truth = truth(sim);
    let snapshots = records
        .iter()
        .filter(|r| r.header("gkb-kind") == Some("snapshot"))
        .count();
    let status = bridge.status().unwrap();
    let metrics = support::Metrics(bridge.metrics().unwrap());
    let merged = metrics.get("gkb_snapshots_merged_deltas_total");
    let missed = ledger::emitted(&sim.url)
        .iter()
        .filter(|e| !e.delivered)
        .count();
    println!(
        "{} records on {TOPIC}, {snapshots} snapshots; {missed} events emitted to no socket (the gaps); \
         deltas merged into snapshots (the race): {merged}; /status repair: {}",
        records.len(),
        status["repair"]
    );
    assert!(missed > 0, "the gaps missed events");
    assert!(merged > 0.0, "the held answers met deltas made meanwhile");
    assert!(
        snapshots >= 3 * QUEUES,
        "start-up and two gaps: {snapshots}"
    );
    assert_eq!(truth.len(), QUEUES, "every queue has state");

    let mut wrong_from_start = Vec::new();
    let mut wrong_from_snapshot = Vec::new();
    for (queue, expected) in &truth {
        let list = by_queue.get(queue).map(Vec::as_slice).unwrap_or_default();
        // From the start, partition order (the list is in offset order).
        let mut state = State::new();
        list.iter().for_each(|r| apply(&mut state, r));
        if &state != expected {
            wrong_from_start.push(queue.clone());
        }
        // From the queue's last snapshot.
        let last = list
            .iter()
            .rposition(|r| r.header("gkb-kind") == Some("snapshot"))
            .unwrap_or_else(|| panic!("queue {queue} has a snapshot"));
        let mut state = State::new();
        list[last..].iter().for_each(|r| apply(&mut state, r));
        if &state != expected {
            wrong_from_snapshot.push(queue.clone());
        }
        // Every snapshot is keyed and headed like its queue's deltas.
        let s = list[last];
        assert_eq!(
            s.header("genesys-topic"),
            Some(format!("v2.analytics.queues.{queue}.observations").as_str())
        );
        assert!(s.header("genesys-correlation-id").is_none());
    }
    assert!(
        wrong_from_start.is_empty() && wrong_from_snapshot.is_empty(),
        "queues whose state differs from /sim/observations: from the start {wrong_from_start:?}, \
         from the last snapshot {wrong_from_snapshot:?}"
    );
}
