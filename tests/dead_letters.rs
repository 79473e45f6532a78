//! A broker that refuses records: events too large for Kafka's limit go
//! to the dead-letter area (counted, kept with the reason, listed by
//! `dead-letters`), the others flow on; once the limit is raised,
//! `dead-letters --replay` delivers them and empties the dead-letter area.
//! Nothing is lost between the three.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{ledger, replay_dead_letters, Stack, BRIDGE};

/// librdkafka refuses records above `message.max.bytes` before sending;
/// the simulator's frames run from about 900 to 3,800 bytes.
const LIMIT: &str = "2000";

#[test]
fn records_kafka_refuses_are_dead_lettered_and_the_rest_flow() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = Stack::builder(dir.path())
        .queues(10)
        .env("GKB_KAFKA__PROPERTIES__message.max.bytes", LIMIT)
        .start();
    let (broker, sim, bridge) = (&stack.broker, &stack.sim, &mut stack.bridge);
    let secret = stack.secret.as_str();
    sim.generate(1_000);
    let settled = bridge.wait_for_metrics(
        "every event forwarded or dead-lettered",
        Duration::from_secs(120),
        |m| {
            m.get("gkb_events_forwarded_total") + m.get("gkb_events_dead_lettered_total") >= 1_000.0
                && m.get("gkb_buffer_events") == 0.0
        },
    );
    let (forwarded, dead) = (
        settled.get("gkb_events_forwarded_total"),
        settled.get("gkb_events_dead_lettered_total"),
    );
    assert_eq!(settled.get("gkb_buffer_dead_letters"), dead);

    let buffer = dir.path().join("buffer");
    // Listed by the running bridge itself (its control socket)…
    let live = support::list_dead_letters(&buffer);
    assert_eq!(live.lines().count() as f64, dead);
    // …but sent again only by a stopped one: the buffer is locked.
    let locked = replay_dead_letters(&buffer, &bridge.config, secret, &[]);
    assert!(!locked.status.success());
    let stderr = String::from_utf8_lossy(&locked.stderr);
    assert!(stderr.contains("in use"), "{stderr}");

    let status = bridge.proc.terminate();
    assert!(
        status.success(),
        "SIGTERM should end the bridge cleanly: {status}"
    );

    let listed = support::list_dead_letters(&buffer);
    assert_eq!(listed, live, "the same list from the files");
    let letters: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    let emitted = ledger::emitted(&sim.url);
    let report = ledger::check(
        &format!(
            "dead letters: 1000 events; dead-lettered {dead} (listed {})",
            letters.len()
        ),
        sim,
        broker,
    );
    assert!(
        dead > 0.0 && forwarded > 0.0,
        "the limit should split the events"
    );
    assert_eq!(letters.len() as f64, dead);
    assert_eq!(report.records as f64, forwarded);
    // Every event missing from Kafka is a listed dead letter, with its
    // payload intact and the broker's reason.
    let by_corr: std::collections::HashMap<&str, &ledger::Emitted> = emitted
        .iter()
        .map(|e| (e.correlation_id.as_str(), e))
        .collect();
    for letter in &letters {
        let corr = letter["correlation_id"].as_str().unwrap();
        let event = by_corr[corr];
        assert_eq!(letter["payload"].as_str(), event.frame.as_deref());
        assert!(
            letter["reason"].as_str().unwrap().contains("too large"),
            "{letter}"
        );
    }
    assert_eq!(report.lost, letters.len());
    assert_eq!(
        (report.duplicates, report.reordered, report.unknown),
        (0, 0, 0)
    );
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);

    // The limit raised (the override is gone from the replay's
    // environment): every dead letter reaches Kafka, the area is empty.
    let started = std::time::Instant::now();
    let replayed = replay_dead_letters(&buffer, &bridge.config, secret, &[]);
    let summary = String::from_utf8_lossy(&replayed.stdout);
    assert!(
        replayed.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    assert!(
        summary.contains(&format!(
            "{} sent and removed, 0 still refused",
            letters.len()
        )),
        "{summary}"
    );
    let left = Command::new(BRIDGE)
        .arg("dead-letters")
        .arg("--buffer")
        .arg(&buffer)
        .output()
        .unwrap();
    assert!(left.status.success() && left.stdout.is_empty());
    let report = ledger::check(
        &format!(
            "replay: {} dead letters in {:.1} s (replayed records land after newer events of their key)",
            letters.len(),
            started.elapsed().as_secs_f64(),
        ),
        sim, broker,
    );
    assert_eq!((report.lost, report.duplicates, report.unknown), (0, 0, 0));
    assert!(report.reordered <= letters.len(), "{report:#?}");
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
}

/// A Kafka topic that does not exist holds back only its own events; once
/// it is created, they follow, in order and exactly once.
#[test]
fn a_missing_topic_holds_back_only_its_own_events() {
    let dir = tempfile::tempdir().unwrap();
    let missing = "genesys.queue-conversations";
    let stack = Stack::builder(dir.path())
        .queues(10)
        .without_topic(missing)
        .spawn();
    let (broker, sim, bridge) = (&stack.broker, &stack.sim, &stack.bridge);
    bridge.wait_unready_naming(missing);
    sim.generate(1_000);
    let emitted = ledger::emitted(&sim.url);
    let held_back = emitted
        .iter()
        .filter(|e| e.topic.starts_with("v2.routing.queues."))
        .count();
    assert!(held_back > 0 && held_back < 1_000);
    let waiting = bridge
        .wait_for_metrics("the other events forwarded", Duration::from_secs(60), |m| {
            m.get("gkb_events_forwarded_total") >= (1_000 - held_back) as f64
        })
        .get("gkb_buffer_events");
    assert_eq!(
        waiting, held_back as f64,
        "exactly the missing topic's events wait"
    );

    broker.create_topic(missing, 3);
    bridge.wait_ready();
    bridge.wait_forwarded(1_000, Duration::from_secs(120));
    let report = ledger::check(
        &format!("missing topic: {held_back} of 1000 events waited for their topic"),
        sim,
        broker,
    );
    assert!(report.is_perfect(), "{report:#?}");
}
