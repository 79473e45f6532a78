//! The bridge's memory does not grow with its backlog (issue 16): the
//! Debian package's service unit caps it with `MemoryMax=`, and this test
//! holds a real bridge process under that cap through a 1,000,000-event
//! backlog, buffered while the broker is down, and its drain once the
//! broker is back.
//!
//! How the cap is checked: the unit's `MemoryMax=` is read from
//! `packaging/genesys-kafka-bridge.service`, and the bridge's peak
//! resident memory (`VmHWM`, which the kernel keeps for the process, so no
//! peak between two samples is missed) must stay below it. A cgroup would
//! also charge the page cache the buffer's writes leave (reclaimable,
//! so it does not get a service killed); the process's own memory is what
//! would.

mod support;

use std::time::{Duration, Instant};

use support::{Bridge, Stack};

/// A metric of the bridge now; NaN when it cannot be read, so that every
/// comparison fails and the wait goes on.
fn get(bridge: &Bridge, name: &str) -> f64 {
    bridge
        .metrics()
        .and_then(|text| support::metric(&text, name))
        .unwrap_or(f64::NAN)
}

const BACKLOG: u64 = 1_000_000;
const BATCH: u64 = 20_000;
const STEADY: u64 = 20_000;

/// `MemoryMax=` of the package's unit, in bytes.
fn unit_memory_max() -> u64 {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/genesys-kafka-bridge.service"
    ))
    .unwrap();
    let value = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("MemoryMax="))
        .expect("the unit sets MemoryMax=");
    let (digits, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let n: u64 = digits
        .parse()
        .expect("MemoryMax= is a number of bytes, K, M or G");
    n * match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        other => panic!("MemoryMax= suffix {other:?}"),
    }
}

#[test]
fn the_bridge_stays_under_its_units_memory_max_through_a_million_event_backlog_and_its_drain() {
    let max = unit_memory_max();
    let dir = tempfile::tempdir().unwrap();
    let mut stack = Stack::builder(dir.path())
        .queues(10)
        // The drain does not need the simulator's event log.
        .simulator_args(&["--event-log-limit", "1000"])
        .start();
    stack.bridge.wait_ready();
    // Steady flow first: the RSS "before the outage".
    stack.sim.generate(STEADY as usize);
    stack
        .bridge
        .wait_forwarded(STEADY as usize, Duration::from_secs(120));
    let before = stack.bridge.proc.rss_kib();
    stack.broker.kill9();

    // Fill: batches as fast as the bridge reads them.
    let started = Instant::now();
    let base = get(&stack.bridge, "gkb_events_received_total");
    let mut emitted = 0u64;
    let mut peak_filling = 0;
    while emitted < BACKLOG {
        let count = BATCH.min(BACKLOG - emitted);
        let reply = stack
            .sim
            .generate_with(serde_json::json!({ "count": count }));
        assert_eq!(reply["emitted"].as_u64(), Some(count), "{reply}");
        emitted += count;
        support::eventually(
            "the bridge to receive the batch",
            Duration::from_secs(120),
            || {
                peak_filling = peak_filling.max(stack.bridge.proc.rss_kib().0);
                let received = get(&stack.bridge, "gkb_events_received_total") - base;
                (received + (BATCH as f64) >= emitted as f64).then_some(())
            },
        );
    }
    let waiting = support::eventually(
        "the backlog to be buffered",
        Duration::from_secs(120),
        || {
            let held = get(&stack.bridge, "gkb_buffer_events");
            (held >= BACKLOG as f64).then_some(held)
        },
    );
    let filled = started.elapsed();
    let at_full = stack.bridge.proc.rss_kib();
    let state = stack.sim.state();
    assert_eq!(state["events_dropped"], 0, "{state}");
    assert_eq!(get(&stack.bridge, "gkb_buffer_refused_events_total"), 0.0);

    // Drain.
    let forwarded_base = get(&stack.bridge, "gkb_events_forwarded_total");
    stack.broker.restart();
    let started = Instant::now();
    let mut peak_draining = 0;
    support::eventually("the backlog to drain", Duration::from_secs(900), || {
        peak_draining = peak_draining.max(stack.bridge.proc.rss_kib().0);
        let forwarded = get(&stack.bridge, "gkb_events_forwarded_total") - forwarded_base;
        let held = get(&stack.bridge, "gkb_buffer_events");
        (forwarded >= waiting && held == 0.0).then_some(())
    });
    let drained = started.elapsed();
    let after_drain = stack.bridge.proc.rss_kib();
    let segments = get(&stack.bridge, "gkb_buffer_segments");
    let deleted = get(&stack.bridge, "gkb_buffer_segments_deleted_total");
    // Steady flow again.
    let forwarded = get(&stack.bridge, "gkb_events_forwarded_total");
    stack.sim.generate(STEADY as usize);
    stack.bridge.wait_forwarded(
        forwarded as usize + STEADY as usize,
        Duration::from_secs(120),
    );
    let after = stack.bridge.proc.rss_kib();
    println!(
        "memory bound: MemoryMax {} MiB; RSS after {STEADY} events flowed {} MiB; filling {BACKLOG} in {:.0} s, RSS peak {} MiB; \
         {waiting} waiting: RSS {} MiB; drained in {:.0} s, RSS peak {} MiB, {} MiB at the end; \
         after {STEADY} more flowed: RSS {} MiB; VmHWM {} MiB; segments {segments} left, {deleted} deleted",
        max >> 20,
        before.0 >> 10,
        filled.as_secs_f64(),
        peak_filling >> 10,
        at_full.0 >> 10,
        drained.as_secs_f64(),
        peak_draining >> 10,
        after_drain.0 >> 10,
        after.0 >> 10,
        after.1 >> 10,
    );
    assert!(
        after.1 * 1024 < max,
        "the bridge's peak RSS {} KiB reached MemoryMax {} KiB",
        after.1,
        max >> 10
    );
    assert!(deleted > 0.0, "drained segments are deleted");
    assert!(segments <= 1.0, "{segments} segments left after the drain");
}
