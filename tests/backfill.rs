//! Conversation backfill with real processes.
//!
//! 1. 100 events/s on 60 queues; the socket dropped and its reconnection
//!    refused for 10 s, twice. The Analytics API first answers with partial
//!    bodies (conversations without ids): each gap's backfill fails, is
//!    counted and shown, and writes nothing; once the answers are whole,
//!    every conversation that had an event inside either gap (the
//!    simulator emitted it to no socket) must be in Kafka as a backfill
//!    record; none may lie outside its gap's margins; `gaps` shows both
//!    gaps backfilled, with their counts; `gaps --backfill` runs one again.
//! 2. The bridge stopped while thousands of conversations happen (a gap of
//!    over 5,000), started again, and `kill -9`ed while that gap's backfill
//!    runs: after a restart it resumes and ends; every conversation is in
//!    Kafka, the records written twice are counted, and the simulator
//!    answered no request with 429.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::consumer::{self, Consumed};
use support::{eventually, ledger, Simulator, Stack, BRIDGE};

/// Where backfill records land: the default topic (no route matches
/// `v2.analytics.conversations.*` in the test configuration).
const TOPIC: &str = "genesys.events";
const MARGIN_MS: u64 = 5_000;

/// `gaps --json` of the buffer (through the running bridge when it runs).
fn gaps(buffer: &Path) -> Vec<Value> {
    let out = Command::new(BRIDGE)
        .args(["gaps", "--json", "--buffer"])
        .arg(buffer)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn state(gap: &Value) -> &str {
    gap["backfill"]["state"].as_str().unwrap_or("none")
}

/// Conversation ids of the conversation events after `since_seq` that
/// reached no socket (the log has an entry per channel: an event one
/// channel delivered was not missed).
fn missed_conversations(sim: &Simulator, since_seq: u64) -> HashSet<String> {
    let mut events: HashMap<String, (bool, Option<String>)> = HashMap::new();
    for e in ledger::emitted(&sim.url)
        .into_iter()
        .filter(|e| e.seq > since_seq && e.topic.ends_with(".conversations"))
    {
        let entry = events.entry(e.correlation_id).or_insert((false, None));
        entry.0 |= e.delivered;
        if entry.1.is_none() {
            entry.1 = e
                .frame
                .as_deref()
                .and_then(|f| serde_json::from_str::<Value>(f).ok())
                .and_then(|f| f["eventBody"]["id"].as_str().map(str::to_owned));
        }
    }
    events
        .into_values()
        .filter(|(delivered, _)| !delivered)
        .filter_map(|(_, id)| id)
        .collect()
}

/// The backfill records in Kafka, by gap start.
fn backfilled(bootstrap: &str) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    let records: Vec<Consumed> = consumer::read_all(bootstrap, &[TOPIC], Duration::from_secs(120));
    for r in records
        .iter()
        .filter(|r| r.header("gkb-kind") == Some("backfill"))
    {
        let v: Value = serde_json::from_slice(&r.value).unwrap();
        let id = v["eventBody"]["conversationId"].as_str().unwrap();
        assert_eq!(
            r.key.as_deref(),
            Some(id.as_bytes()),
            "keyed by the conversation"
        );
        let gap = v["metadata"]["gap"]["start"].as_str().unwrap().to_owned();
        out.entry(gap).or_default().push(v);
    }
    out
}

fn ms(t: &str) -> u64 {
    humantime::parse_rfc3339_weak(t.trim_end_matches('Z'))
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Every backfilled conversation of `gap` was active within its margins.
fn outside_margins(gap: &Value, records: &[Value]) -> Vec<String> {
    let (start, end) = (
        gap["start_ms"].as_u64().unwrap(),
        gap["end_ms"].as_u64().unwrap(),
    );
    records
        .iter()
        .filter(|r| {
            let c = &r["eventBody"];
            let began = ms(c["conversationStart"].as_str().unwrap());
            let ended = c["conversationEnd"].as_str().map(ms);
            began > end + MARGIN_MS || ended.is_some_and(|e| e + MARGIN_MS < start)
        })
        .map(|r| {
            r["eventBody"]["conversationId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn ids(records: &[Value]) -> HashSet<String> {
    records
        .iter()
        .map(|r| {
            r["eventBody"]["conversationId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn conversations_a_gap_missed_are_backfilled_and_a_killed_backfill_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = dir.path().join("buffer");
    let mut stack = Stack::builder(dir.path())
        .queues(60)
        .simulator_args(&["--analytics-lag", "1"])
        .backfill_keys("enabled = true\ndata_lag_secs = 2\nmargin_secs = 5\nlookback_secs = 600")
        .start();
    let (broker, sim) = (&stack.broker, &stack.sim);
    let bridge = &mut stack.bridge;

    // ---- 1. two gaps of 10 s at 100 events/s ----
    sim.control("/sim/faults", json!({ "analytics_malformed": true }));
    sim.generate_in_background(4_000, 100.0);
    eventually("events to flow", Duration::from_secs(60), || {
        (bridge.status()?["forwarded"]["total"].as_u64()? >= 300).then_some(())
    });
    for n in 0..2 {
        support::gap_with_refused_reconnection(sim, bridge, Duration::from_secs(10), n);
    }
    let failed = eventually(
        "a partial answer failing a backfill",
        Duration::from_secs(120),
        || gaps(&buffer).into_iter().find(|g| state(g) == "failed"),
    );
    println!("with partial answers: {}", failed["backfill"]);
    assert!(
        failed["backfill"]["last_error"]
            .as_str()
            .unwrap()
            .contains("conversationId"),
        "{failed}"
    );
    assert_eq!(failed["backfill"]["records"], 0);
    let status = bridge.status().unwrap();
    assert!(
        status["repair"]["backfill"]["runs_failed"]
            .as_u64()
            .unwrap()
            >= 1,
        "{}",
        status["repair"]
    );
    assert!(
        backfilled(&broker.bootstrap()).is_empty(),
        "a partial answer reached Kafka"
    );
    sim.control("/sim/faults", json!({ "analytics_malformed": false }));
    sim.wait_generated(Duration::from_secs(180));
    let listed = eventually("both gaps backfilled", Duration::from_secs(180), || {
        let listed = gaps(&buffer);
        (listed.len() == 2 && listed.iter().all(|g| state(g) == "done")).then_some(listed)
    });
    let missed = missed_conversations(sim, 0);
    let in_kafka = eventually(
        "the backfill records in Kafka",
        Duration::from_secs(120),
        || {
            let by_gap = backfilled(&broker.bootstrap());
            let all: usize = by_gap.values().map(Vec::len).sum();
            let stored: u64 = listed
                .iter()
                .map(|g| g["backfill"]["records"].as_u64().unwrap())
                .sum();
            (all as u64 >= stored).then_some(by_gap)
        },
    );
    let mut backfilled_ids = HashSet::new();
    for gap in &listed {
        let records = in_kafka
            .get(gap["start"].as_str().unwrap())
            .cloned()
            .unwrap_or_default();
        println!(
            "gap {} → {} ({} s): backfill {}; {} records in Kafka, {} conversations",
            gap["start"],
            gap["end"],
            gap["seconds"],
            gap["backfill"],
            records.len(),
            ids(&records).len()
        );
        assert_eq!(
            records.len() as u64,
            gap["backfill"]["records"].as_u64().unwrap(),
            "gaps counts what reached Kafka"
        );
        let outside = outside_margins(gap, &records);
        assert!(
            outside.is_empty(),
            "backfilled outside the gap's margins: {outside:?}"
        );
        backfilled_ids.extend(ids(&records));
    }
    let not_backfilled: Vec<&String> = missed.difference(&backfilled_ids).collect();
    println!(
        "{} conversations had an event inside a gap; {} backfilled; {} missing",
        missed.len(),
        backfilled_ids.len(),
        not_backfilled.len()
    );
    assert!(!missed.is_empty(), "the gaps missed conversation events");
    assert!(
        not_backfilled.is_empty(),
        "not backfilled: {not_backfilled:?}"
    );

    // By hand: the first gap again, from its first page.
    let first = &listed[0];
    let out = Command::new(BRIDGE)
        .args([
            "gaps",
            "--json",
            "--backfill",
            first["start"].as_str().unwrap(),
            "--buffer",
        ])
        .arg(&buffer)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rerun = eventually("the rerun done", Duration::from_secs(120), || {
        gaps(&buffer)
            .into_iter()
            .find(|g| g["start"] == first["start"])
            .filter(|g| {
                state(g) == "done" && g["backfill"]["updated_ms"] != first["backfill"]["updated_ms"]
            })
    });
    println!("gaps --backfill {}: {}", first["start"], rerun["backfill"]);
    assert!(rerun["backfill"]["records"].as_u64() >= first["backfill"]["records"].as_u64());
    let unknown = Command::new(BRIDGE)
        .args(["gaps", "--backfill", "2001-01-01T00:00:00Z", "--buffer"])
        .arg(&buffer)
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no recorded gap starts at"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    // ---- 2. a long stop, then kill -9 during its backfill ----
    let since = sim.state()["last_seq"].as_u64().unwrap();
    assert!(bridge.proc.terminate().success());
    let reply = sim.generate_with(json!({ "count": 50_000 }));
    assert_eq!(
        reply["delivered"], 0,
        "nobody listens while it is stopped: {reply}"
    );
    bridge.restart();
    bridge.wait_ready();
    let downtime = |listed: &[Value]| {
        listed
            .iter()
            .find(|g| g["reason"] == "bridge not running")
            .cloned()
    };
    let running = eventually(
        "the stop's backfill under way",
        Duration::from_secs(180),
        || {
            let gap = downtime(&gaps(&buffer))?;
            (state(&gap) == "running" && gap["backfill"]["page"].as_u64()? >= 5).then_some(gap)
        },
    );
    println!("kill -9 during {}", running["backfill"]);
    bridge.proc.kill9();
    bridge.restart();
    bridge.wait_ready();
    let done = eventually(
        "the stop's backfill resumed and done",
        Duration::from_secs(300),
        || downtime(&gaps(&buffer)).filter(|g| state(g) == "done"),
    );
    let missed = missed_conversations(sim, since);
    let records = eventually("its records in Kafka", Duration::from_secs(120), || {
        let records = backfilled(&broker.bootstrap())
            .remove(done["start"].as_str().unwrap())
            .unwrap_or_default();
        (records.len() as u64 >= done["backfill"]["records"].as_u64().unwrap()).then_some(records)
    });
    let distinct = ids(&records);
    let not_backfilled = missed.difference(&distinct).count();
    let state = sim.state();
    let rate_limited = state["rate_limited_with_retry_after"].as_u64().unwrap()
        + state["rate_limited_without_retry_after"].as_u64().unwrap();
    println!(
        "stop gap {} → {}: {} conversations missed, {} backfill records, {} distinct, {} written twice \
         (the page the kill interrupted, and records Kafka had taken that the buffer had not removed yet), {} missing; 429 answers: {rate_limited}; backfill {}",
        done["start"],
        done["end"],
        missed.len(),
        records.len(),
        distinct.len(),
        records.len() - distinct.len(),
        not_backfilled,
        done["backfill"]
    );
    assert!(distinct.len() >= 5_000, "a gap of over 5,000 conversations");
    assert_eq!(not_backfilled, 0);
    assert!(outside_margins(&done, &records).is_empty());
    assert_eq!(rate_limited, 0, "no request answered 429");
}
