//! Gaps are data, with real processes: while events flow, the socket is
//! dropped and its reconnection refused a few times; the gap the bridge
//! records (on `/status`, then in the buffer read by `gaps --json` once it
//! stopped) must cover every event the simulator emitted to no socket, and
//! no event it delivered. A stop and a `kill -9` are gaps too ("bridge not
//! running", from the last `last_alive` mark to the first subscribed
//! socket of the next run).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::{eventually, ledger, Bridge, Simulator, Stack, BRIDGE};

/// How far a gap's bound may sit from the events around it: the bridge
/// notices a dropped socket, and the simulator sends on a reused channel
/// before the subscription reply arrives, within a few milliseconds.
const SLACK_MS: u64 = 300;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn recent_gaps(bridge: &Bridge) -> Option<Vec<Value>> {
    Some(bridge.status()?["gaps"]["recent"].as_array()?.clone())
}

/// (emitted_at_ms, delivered) of every distinct event so far: delivered
/// when the service wrote it to any socket. (The ledger has an entry per
/// channel: after a restart the previous run's channel, still subscribed
/// but without a socket, gets an undelivered copy of what the new one
/// delivers.)
fn emitted(sim: &Simulator) -> Vec<(u64, bool)> {
    let mut events: std::collections::BTreeMap<String, (u64, bool)> = Default::default();
    for e in ledger::emitted(&sim.url) {
        let entry = events
            .entry(e.correlation_id)
            .or_insert((e.emitted_at_ms, false));
        entry.0 = entry.0.min(e.emitted_at_ms);
        entry.1 |= e.delivered;
    }
    events.into_values().collect()
}

/// The socket dropped without a close frame, the next `upgrades` socket
/// upgrades refused (503).
fn drop_socket_refusing(sim: &Simulator, upgrades: u64) {
    sim.control(
        "/sim/faults",
        serde_json::json!({ "ws_status": 503, "ws_status_count": upgrades }),
    );
    sim.control(
        "/sim/faults/drop-sockets",
        serde_json::json!({ "mode": "abort" }),
    );
}

fn bounds(gap: &Value) -> (u64, u64) {
    (
        gap["start_ms"].as_u64().unwrap(),
        gap["end_ms"].as_u64().unwrap(),
    )
}

fn gaps_command(buffer: &Path, extra: &[&str]) -> (bool, String, String, Duration) {
    let started = Instant::now();
    let out = Command::new(BRIDGE)
        .arg("gaps")
        .arg("--buffer")
        .arg(buffer)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn socket_gaps_and_downtime_are_recorded_with_the_bounds_of_what_was_missed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let buffer = dir.join("buffer");
    // Two queues: four topics, one connection.
    let mut stack = Stack::builder(dir).queues(2).start();
    let (sim, bridge) = (&stack.sim, &mut stack.bridge);
    // 50 events/s for up to 4 minutes: they flow through every phase.
    sim.generate_in_background(12_000, 50.0);
    eventually("events to flow", Duration::from_secs(60), || {
        (emitted(sim).len() >= 100).then_some(())
    });

    // The socket dropped, the next four upgrades refused.
    drop_socket_refusing(sim, 4);
    let gap = eventually("the gap on /status", Duration::from_secs(60), || {
        recent_gaps(bridge)?.first().cloned()
    });
    let (start, end) = bounds(&gap);
    let events = emitted(sim);
    let missed: Vec<u64> = events.iter().filter(|e| !e.1).map(|e| e.0).collect();
    let (first, last) = (*missed.iter().min().unwrap(), *missed.iter().max().unwrap());
    println!(
        "socket gap: {} → {} ({} s, {}); the simulator emitted {} events to no socket between {first} and {last}; /status: {gap}",
        gap["start"], gap["end"], gap["seconds"], gap["reason"], missed.len()
    );
    assert!(end - start >= 300, "a measurable gap: {gap}");
    assert!(
        start <= first + SLACK_MS && last <= end + SLACK_MS,
        "the gap [{start}, {end}] covers every missed event [{first}, {last}]"
    );
    let inside_delivered = events
        .iter()
        .filter(|e| e.1 && e.0 > start + SLACK_MS && e.0 + SLACK_MS < end)
        .count();
    assert_eq!(
        inside_delivered, 0,
        "no delivered event lies inside the gap"
    );
    assert_eq!(gap["connection"], 0);
    assert_eq!(gap["topic_count"], 4);
    assert_eq!(gap["open"], false);
    let report = bridge.status().unwrap();
    assert_eq!(report["gaps"]["this_run"]["gaps"], 1, "{report}");
    assert_eq!(report["gaps"]["recorded"], 1, "{report}");
    let metrics = support::Metrics(bridge.metrics().unwrap());
    assert_eq!(metrics.get("gkb_socket_gaps_total"), 1.0);
    assert!(
        (metrics.get("gkb_socket_gap_last_end_timestamp_seconds") - end as f64 / 1000.0).abs()
            < 0.01
    );

    // While the bridge runs, it answers the command itself (its control
    // socket); stopped, the files give the same list.
    let (ok, running, stderr, took) = gaps_command(&buffer, &["--json"]);
    println!("gaps on a running bridge ({took:?})");
    assert!(ok, "{stderr}");
    let stopped_at = now_ms();
    assert!(bridge.proc.terminate().success());
    let (ok, stdout, stderr, _) = gaps_command(&buffer, &["--json"]);
    assert!(ok, "{stderr}");
    assert_eq!(running, stdout, "the running bridge's list and the files'");
    println!("gaps --json:\n{stdout}");
    let listed: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1, "{stdout}");
    for key in ["start", "end", "start_ms", "end_ms", "reason", "connection"] {
        assert_eq!(listed[0][key], gap[key], "{key}");
    }
    let topics = listed[0]["topics"].as_array().unwrap();
    assert_eq!(topics.len(), 4);
    assert!(topics
        .iter()
        .all(|t| t.as_str().unwrap().starts_with("v2.")));
    let (ok, text, _, _) = gaps_command(&buffer, &[]);
    println!("gaps:\n{text}");
    assert!(ok && text.contains("1 gaps"), "{text}");
    let (ok, text, _, _) = gaps_command(&buffer, &["--since", "2999-01-01T00:00:00Z"]);
    assert!(ok && text.contains("0 gaps"), "{text}");

    // A clean restart: the time it was stopped is a gap.
    bridge.restart();
    bridge.wait_ready();
    let stop_gap = eventually("the stop's gap", Duration::from_secs(60), || {
        recent_gaps(bridge)?
            .into_iter()
            .find(|g| g["reason"] == "bridge not running")
    });
    println!("after a stop: {stop_gap}");
    let (s, e) = bounds(&stop_gap);
    assert!(s >= stopped_at && s <= stopped_at + 5_000, "{stop_gap}");
    assert!(e > s);

    // kill -9: the gap starts at the last mark before the kill.
    std::thread::sleep(Duration::from_secs(5));
    let killed_at = now_ms();
    bridge.proc.kill9();
    std::thread::sleep(Duration::from_secs(3));
    let restarted_at = now_ms();
    bridge.restart();
    bridge.wait_ready();
    let crash_gap = eventually("the crash's gap", Duration::from_secs(60), || {
        recent_gaps(bridge)?
            .into_iter()
            .filter(|g| g["reason"] == "bridge not running")
            .nth(1)
    });
    println!("after kill -9: {crash_gap}");
    let (s, e) = bounds(&crash_gap);
    assert!(
        s <= killed_at && s + 2_000 + SLACK_MS >= killed_at,
        "starts at most one mark interval (2 s) before the kill: {crash_gap}, killed at {killed_at}"
    );
    assert!(e >= restarted_at, "{crash_gap}");

    // Every event emitted to no socket lies within a recorded gap.
    let gaps = recent_gaps(bridge).unwrap();
    assert_eq!(gaps.len(), 3, "{gaps:?}");
    let events = emitted(sim);
    let uncovered: Vec<u64> = events
        .iter()
        .filter(|e| !e.1)
        .map(|e| e.0)
        .filter(|&t| {
            !gaps
                .iter()
                .map(bounds)
                .any(|(s, e)| s <= t + SLACK_MS && t <= e + SLACK_MS)
        })
        .collect();
    println!(
        "{} events emitted, {} to no socket, {} of them outside every recorded gap",
        events.len(),
        events.iter().filter(|e| !e.1).count(),
        uncovered.len()
    );
    assert!(uncovered.is_empty(), "{uncovered:?}");

    // A gap still open at shutdown is recorded as open, ending then.
    drop_socket_refusing(sim, 1_000);
    eventually("the bridge to notice", Duration::from_secs(30), || {
        let m = support::Metrics(bridge.metrics()?);
        (m.get("gkb_connections_open") == 0.0).then_some(())
    });
    let stopping_at = now_ms();
    assert!(bridge.proc.terminate().success());
    let (ok, stdout, stderr, _) = gaps_command(&buffer, &["--json"]);
    assert!(ok, "{stderr}");
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    println!("open at shutdown: {last}");
    assert_eq!(last["open"], true, "{stdout}");
    assert_eq!(
        last["reason"],
        "socket dropped without a close frame (1006)"
    );
    let (s, e) = bounds(&last);
    assert!(
        s < stopping_at && e >= stopping_at && e < stopping_at + 15_000,
        "{last}"
    );
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
}
