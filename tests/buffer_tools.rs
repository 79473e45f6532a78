//! The buffer tools against real processes: with Kafka gone and a backlog
//! held, `buffer stats` on the running bridge (answered on its control
//! socket) matches `/metrics`, `buffer export` lists every held event once
//! and `buffer check` finds nothing wrong; after a stop the same figures
//! come from the files. The client secret is not needed for any of it.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::{Stack, BRIDGE};

const EVENTS: usize = 2_000;

fn tool(args: &[&str], config: &Path) -> Output {
    let output = Command::new(BRIDGE)
        .arg("buffer")
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("E2E_CLIENT_SECRET")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "buffer {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stats(config: &Path) -> serde_json::Value {
    serde_json::from_slice(&tool(&["stats", "--json"], config).stdout).unwrap()
}

/// Events per Kafka topic in a `buffer stats --json` answer.
fn per_topic(stats: &serde_json::Value) -> Vec<(String, u64)> {
    stats["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["topic"].as_str().unwrap().to_owned(),
                t["events"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The value of `name{topic="…"}` in /metrics text.
fn topic_series(metrics: &str, name: &str, topic: &str) -> Option<f64> {
    let series = format!("{name}{{topic=\"{topic}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn stats_on_a_running_bridge_with_a_backlog_match_the_metrics_and_the_files_after_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = Stack::builder(dir.path()).queues(10).start();
    let (broker, sim, bridge) = (&mut stack.broker, &stack.sim, &mut stack.bridge);
    broker.kill9();
    sim.generate(EVENTS);
    let scrape = bridge.wait_for_metrics(
        "every event held in the buffer",
        Duration::from_secs(60),
        |m| m.get("gkb_buffer_events") == EVENTS as f64,
    );

    let live = stats(&bridge.config);
    println!("buffer stats (running): {live:#}");
    assert_eq!(
        live["source"].as_str().unwrap(),
        "running bridge (control socket)"
    );
    assert_eq!(live["events"].as_u64().unwrap(), EVENTS as u64);
    assert_eq!(live["damaged"].as_u64(), Some(0));
    let topics = per_topic(&live);
    assert_eq!(
        topics.iter().map(|(_, n)| n).sum::<u64>(),
        EVENTS as u64,
        "{topics:?}"
    );
    assert_eq!(
        topics.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["genesys.queue-conversations", "genesys.queue-observations"],
        "grouped by the configuration's routes"
    );

    // Per topic, against the producer's own figures: a fresh scrape, since
    // the producer reports on its own beat.
    let metrics =
        bridge.wait_for_metrics("per-topic backlog reported", Duration::from_secs(30), |m| {
            topics.iter().all(|(topic, events)| {
                topic_series(&m.0, "gkb_kafka_topic_backlog_events", topic) == Some(*events as f64)
            })
        });
    let now_ms = live["at_ms"].as_u64().unwrap();
    for (i, (topic, _)) in topics.iter().enumerate() {
        let oldest_ms = live["topics"][i]["oldest_received_at_ms"].as_u64().unwrap();
        let stats_age = now_ms.saturating_sub(oldest_ms) as f64 / 1000.0;
        let metric_age = topic_series(
            &metrics.0,
            "gkb_kafka_topic_oldest_unacknowledged_age_seconds",
            topic,
        )
        .unwrap();
        println!("{topic}: oldest {stats_age:.1} s (stats) / {metric_age:.1} s (metrics)");
        // Read at different moments, a few seconds apart at most.
        assert!(
            (stats_age - metric_age).abs() < 10.0,
            "{topic}: {stats_age} vs {metric_age}"
        );
    }
    assert_eq!(
        live["usage"]["held_bytes"].as_f64().unwrap(),
        scrape.get("gkb_buffer_held_bytes")
    );
    assert_eq!(
        live["event_bytes"].as_u64(),
        live["usage"]["held_bytes"].as_u64(),
        "nothing dead-lettered or quarantined: every held byte is an event's"
    );
    assert_eq!(
        live["dead_letters"].as_f64().unwrap(),
        scrape.get("gkb_buffer_dead_letters")
    );

    let exported = tool(&["export"], &bridge.config);
    let seqs: Vec<u64> = String::from_utf8(exported.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(record["event"].is_object(), "{record}");
            record["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(seqs.len(), EVENTS);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first, once each"
    );
    let observations = tool(
        &["export", "--kafka-topic", "genesys.queue-observations"],
        &bridge.config,
    );
    let wanted = topics
        .iter()
        .find(|(t, _)| t == "genesys.queue-observations")
        .unwrap()
        .1;
    assert_eq!(
        String::from_utf8(observations.stdout)
            .unwrap()
            .lines()
            .count() as u64,
        wanted
    );

    let check: serde_json::Value =
        serde_json::from_slice(&tool(&["check", "--json"], &bridge.config).stdout).unwrap();
    assert_eq!(check["events_checked"].as_u64(), Some(EVENTS as u64));
    let repair = Command::new(BRIDGE)
        .args(["buffer", "check", "--repair", "--config"])
        .arg(&bridge.config)
        .output()
        .unwrap();
    assert_eq!(repair.status.code(), Some(2), "refused while running");
    assert!(String::from_utf8_lossy(&repair.stderr).contains("needs the bridge stopped"));

    let socket = dir.path().join("buffer").join("control.sock");
    assert!(socket.exists());
    assert!(bridge.proc.terminate().success());
    assert!(!socket.exists(), "the control socket goes with the bridge");

    let stopped = stats(&bridge.config);
    assert_eq!(
        stopped["source"].as_str().unwrap(),
        "buffer files (no bridge running)"
    );
    assert_eq!(stopped["events"].as_u64(), Some(EVENTS as u64));
    assert_eq!(per_topic(&stopped), topics);
    let unique: BTreeSet<u64> = seqs.into_iter().collect();
    assert_eq!(unique.len(), EVENTS);
    let repaired = tool(&["check", "--repair"], &bridge.config);
    assert!(String::from_utf8_lossy(&repaired.stdout).contains("result         ok"));

    // Without a configuration: by Genesys topic pattern.
    let by_pattern = Command::new(BRIDGE)
        .args(["buffer", "stats", "--buffer"])
        .arg(dir.path().join("buffer"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&by_pattern.stdout);
    println!("{text}");
    assert!(by_pattern.status.success());
    assert!(
        text.contains("v2.analytics.queues.{id}.observations"),
        "{text}"
    );
}
