//! Quiet, useful logs, with real processes: Kafka (`kill -9` of the broker)
//! is away for two minutes while events keep arriving. The bridge must say
//! so in fewer than 10 log lines: one WARN when the outage starts, a
//! summary a minute while it lasts, one INFO when it ends, librdkafka's
//! repeated complaints folded into the summaries. Then everything drains,
//! exactly once. The bridge logs JSON at the level the package ships
//! (`info`), so the fields are checked as a collector reads them.

mod support;

use std::time::{Duration, Instant};

use support::{eventually, ledger, Stack};

const OUTAGE: Duration = Duration::from_secs(120);

/// The bridge's JSON log lines after byte `from`.
fn lines_after(log: &str, from: usize) -> Vec<serde_json::Value> {
    log.get(from..)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| serde_json::json!({ "unparsed": l })))
        .collect()
}

fn message(line: &serde_json::Value) -> &str {
    line["message"].as_str().unwrap_or_default()
}

#[test]
fn a_two_minute_kafka_outage_is_a_handful_of_log_lines_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = Stack::builder(dir.path())
        .queues(10)
        .env("RUST_LOG", "info")
        .env("GKB_LOG__FORMAT", "json")
        .start();
    let (broker, sim, bridge) = (&mut stack.broker, &stack.sim, &stack.bridge);

    // 1. Events flowing.
    sim.generate(500);
    bridge.wait_forwarded(500, Duration::from_secs(120));

    // 2. Kafka goes away for two minutes; events keep coming.
    let from = bridge.proc.log_text().len();
    broker.kill9();
    let killed = Instant::now();
    eventually(
        "the outage's start in the log",
        Duration::from_secs(60),
        || {
            lines_after(&bridge.proc.log_text(), from)
                .iter()
                .any(|l| message(l).starts_with("Kafka outage:"))
                .then_some(())
        },
    );
    let mut sent = 500;
    while killed.elapsed() + Duration::from_secs(20) < OUTAGE {
        sim.generate(300);
        sent += 300;
        bridge.wait_for_metrics(
            "the outage's events in the buffer",
            Duration::from_secs(30),
            |m| m.get("gkb_events_received_total") >= sent as f64,
        );
        // The fault under test is real time: Kafka away for two minutes.
        std::thread::sleep(Duration::from_secs(20));
    }
    std::thread::sleep(OUTAGE.saturating_sub(killed.elapsed()));
    let held = bridge
        .wait_for_metrics("a scrape", Duration::from_secs(10), |_| true)
        .get("gkb_buffer_events");

    // 3. Kafka back: the outage ends, the backlog drains.
    broker.restart();
    let outage = eventually(
        "the outage's end in the log",
        Duration::from_secs(120),
        || {
            let lines = lines_after(&bridge.proc.log_text(), from);
            let end = lines
                .iter()
                .position(|l| message(l).starts_with("Kafka outage over"))?;
            Some(lines[..=end].to_vec())
        },
    );
    bridge.wait_forwarded(sent, Duration::from_secs(180));

    println!(
        "quiet logs: Kafka away {:?}; {held} events held in the buffer; {} log lines from the kill to the outage's end:",
        killed.elapsed(),
        outage.len()
    );
    for line in &outage {
        println!("  {line}");
    }
    let after: Vec<_> = lines_after(&bridge.proc.log_text(), from)
        .into_iter()
        .skip(outage.len())
        .collect();
    println!("then, until drained ({} lines):", after.len());
    for line in &after {
        println!("  {line}");
    }
    ledger::assert_exactly_once(
        &format!("quiet logs: {sent} events sent"),
        sim,
        broker,
        sent,
    );

    let start = outage
        .iter()
        .find(|l| message(l).starts_with("Kafka outage:"))
        .expect("a WARN when the outage starts");
    assert_eq!(start["level"], "WARN", "{start}");
    assert!(start["reason"].is_string(), "{start}");
    let summaries: Vec<_> = outage
        .iter()
        .filter(|l| message(l) == "Kafka outage continues")
        .collect();
    assert!(!summaries.is_empty(), "a summary every minute");
    for summary in &summaries {
        assert!(summary["outage_secs"].as_u64().unwrap() >= 60, "{summary}");
        assert!(summary["backlog"].as_u64().unwrap() > 0, "{summary}");
        assert!(summary["client_errors_folded"].is_u64(), "{summary}");
        assert!(summary["delivery_errors_folded"].is_u64(), "{summary}");
    }
    let end = outage.last().unwrap();
    assert_eq!(end["level"], "INFO", "{end}");
    assert!(end["outage_secs"].as_u64().unwrap() >= 100, "{end}");
    assert!(end["backlog"].as_u64().unwrap() > 0, "{end}");
    assert!(
        outage.len() < 10,
        "{} log lines during a two-minute Kafka outage",
        outage.len()
    );
    assert!(held > 0.0, "the outage's events waited in the buffer");
}
