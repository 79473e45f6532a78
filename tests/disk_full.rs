//! Storage faults, with real processes: the buffer lives on a 48 MiB
//! filesystem of its own. While Kafka is down, the filesystem is filled to
//! the last byte (sled meets ENOSPC), then freed; events then arrive until
//! the buffer's bound refuses them. Kafka comes back. With no hand on the
//! keyboard, everything the bridge held must arrive in Kafka exactly once,
//! every event it did not take must be counted as refused, and new events
//! must flow again.
//!
//! Then the plain case an operator meets, at two filesystem sizes and two
//! floors each: nothing else on the disk, Kafka down, events until the
//! buffer itself has filled its filesystem to the floor (or sled meets
//! ENOSPC first, whichever the timing gives), Kafka back. The backlog
//! drains and intake resumes by itself, although sled's file never
//! shrinks: the space inside it that sled reuses counts as free.

mod support;

use std::time::{Duration, Instant};

use support::tmpfs::Tmpfs;
use support::{http, ledger, Metrics, Stack};

const MIB: u64 = 1 << 20;

#[test]
fn a_full_disk_then_the_bound_then_kafka_back_loses_nothing_held_and_counts_every_refusal() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("small-disk"), 48);
    let buffer_keys = format!(
        "max_bytes = {}\nmin_free_bytes = {}\ncheck_interval_ms = 2000",
        24 * MIB,
        6 * MIB
    );
    let mut stack = Stack::builder(dir.path())
        .queues(30)
        .buffer(&fs.path.join("buffer"))
        .buffer_keys(&buffer_keys)
        .start();
    let (broker, sim, bridge) = (&mut stack.broker, &stack.sim, &stack.bridge);
    let metrics = || Metrics(bridge.metrics().unwrap_or_default());
    let readyz = || http::get(&format!("{}/readyz", bridge.health)).unwrap();

    sim.generate(1_000);
    bridge.wait_forwarded(1_000, Duration::from_secs(120));

    // 1. Kafka goes away: events wait in the buffer.
    broker.kill9();
    sim.generate(2_000);
    bridge.wait_received_and_flushed(3_000, Duration::from_secs(60));

    // 2. Something else fills the disk to the last byte; events keep
    //    coming, so sled meets ENOSPC (unless the sampler sees the floor
    //    first: then more come, until sled's reusable space runs out).
    let filler = fs.fill("filler");
    assert_eq!(fs.free_bytes(), 0);
    let mut sent_while_full = 0;
    let failing = support::eventually(
        "sled to hit ENOSPC and the buffer to fail",
        Duration::from_secs(60),
        || {
            let m = metrics();
            if m.get("gkb_buffer_failing") == 1.0 {
                return Some(m);
            }
            assert!(sent_while_full < 20_000, "the buffer never failed");
            sim.generate(2_500);
            sent_while_full += 2_500;
            None
        },
    );
    let ready = readyz();
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.contains("No space left on device"),
        "/readyz must say why: {}",
        ready.body
    );
    let refused_while_full = failing.get("gkb_buffer_refused_events_total");

    // 3. The space comes back: the buffer reopens by itself.
    std::fs::remove_file(fs.path.join("filler")).unwrap();
    let freed_at = Instant::now();
    let reopened = bridge.wait_for_metrics("the buffer to reopen", Duration::from_secs(60), |m| {
        m.get("gkb_buffer_reopens_total") >= 1.0 && m.get("gkb_buffer_failing") == 0.0
    });
    let reopen_after = freed_at.elapsed();
    assert_eq!(reopened.get("gkb_buffer_generation"), 1.0);
    assert_eq!(reopened.get("gkb_buffer_lost_events_total"), 0.0);

    // 4. Events arrive until the bound refuses them, keeping what it holds.
    let mut batches = 0;
    let at_bound = support::eventually(
        "the buffer's bound to refuse new events",
        Duration::from_secs(120),
        || {
            let m = metrics();
            let refusing_for_the_bound = m.get("gkb_buffer_admitting") == 0.0
                && m.get("gkb_buffer_failing") == 0.0
                && m.get("gkb_buffer_refused_events_total") > refused_while_full;
            if refusing_for_the_bound {
                return Some(m);
            }
            assert!(batches < 40, "the bound never refused: {}", m.0);
            sim.generate(2_000);
            batches += 1;
            // The bound is sampled every 2 s: let a sample see this batch
            // before the next, so the files do not outgrow the disk.
            let seen = m.get("gkb_buffer_samples_total");
            bridge.wait_for_metrics("a fresh sample", Duration::from_secs(10), |m| {
                m.get("gkb_buffer_samples_total") >= seen + 2.0
            });
            None
        },
    );
    let ready = readyz();
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("max_bytes"), "{}", ready.body);
    // Every event arriving now is refused, and counted one by one.
    let before = at_bound.get("gkb_buffer_refused_events_total");
    sim.generate(1_000);
    let after = bridge.wait_for_metrics("1,000 more refusals", Duration::from_secs(30), |m| {
        m.get("gkb_buffer_refused_events_total") >= before + 1_000.0
    });
    assert_eq!(
        after.get("gkb_buffer_refused_events_total"),
        before + 1_000.0
    );
    let held = after.get("gkb_buffer_events");
    let disk = after.get("gkb_buffer_disk_bytes");

    // 5. Kafka comes back: everything held drains, new events are taken.
    broker.restart();
    bridge.wait_for_metrics(
        "the buffer to drain and take events again",
        Duration::from_secs(150),
        |m| m.get("gkb_buffer_events") == 0.0 && m.get("gkb_buffer_admitting") == 1.0,
    );
    sim.generate(2_000);
    let last = bridge.wait_for_metrics("new events forwarded", Duration::from_secs(60), |m| {
        m.get("gkb_buffer_events") == 0.0
            && m.get("gkb_events_forwarded_total") >= m.get("gkb_events_received_total")
    });
    // Readiness is sampled (the watcher's admission sample, the Kafka
    // probe): it turns green within a few of their intervals, not
    // necessarily at the scrape that saw the backlog empty.
    let mut last_body = String::new();
    let green = (0..150).any(|_| {
        let reply = readyz();
        if reply.status == 200 {
            return true;
        }
        last_body = reply.body;
        std::thread::sleep(Duration::from_millis(200));
        false
    });
    assert!(green, "/readyz stayed 503 after the drain: {last_body}");

    let report = ledger::check("disk full", sim, broker);
    let refused = last.get("gkb_buffer_refused_events_total");
    println!(
        "disk full: {} events delivered to the bridge's sockets; filler {} MiB; refused {refused} \
         ({refused_while_full} while the disk was full, the rest at the bound); reopened {:?} after \
         the space came back; {held} events held at the bound in {:.1} MiB of files; restored {} \
         unflushed; lost {}; in Kafka once {}, duplicates {}, reordered {}; {:?} in all",
        report.expected,
        filler / MIB,
        reopen_after,
        disk / MIB as f64,
        last.get("gkb_buffer_restored_events_total"),
        last.get("gkb_buffer_lost_events_total"),
        report.arrived_once,
        report.duplicates,
        report.reordered,
        started.elapsed(),
    );
    assert!(refused_while_full > 0.0);
    assert_eq!(last.get("gkb_buffer_lost_events_total"), 0.0);
    assert_eq!(
        report.lost as f64, refused,
        "every event not in Kafka was refused, and counted: {report:#?}"
    );
    assert_eq!(
        report.expected as f64,
        last.get("gkb_events_received_total") + refused,
        "delivered to the sockets = buffered + refused"
    );
    assert_eq!(report.arrived_once + report.lost, report.expected);
    assert_eq!(report.duplicates, 0, "{report:#?}");
    assert_eq!(report.reordered, 0, "{report:#?}");
    assert_eq!(report.unknown, 0, "{report:#?}");
    assert!(report.mismatches.is_empty(), "{report:#?}");
}

/// Fills a `fs_mib` filesystem with the buffer alone (Kafka down, `floor_mib`
/// floor, no `max_bytes` in the way), brings Kafka back and checks that the
/// backlog drains and new events are taken again with no hand on the
/// keyboard; returns the line the test prints.
fn fills_drains_and_resumes(fs_mib: u64, floor_mib: u64) -> String {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("small-disk"), fs_mib);
    let buffer_keys = format!(
        "max_bytes = {}\nmin_free_bytes = {}\ncheck_interval_ms = 500",
        1024 * MIB,
        floor_mib * MIB
    );
    let mut stack = Stack::builder(dir.path())
        .queues(30)
        .buffer(&fs.path.join("buffer"))
        .buffer_keys(&buffer_keys)
        .start();
    let (broker, sim, bridge) = (&mut stack.broker, &stack.sim, &stack.bridge);
    let label = format!("{fs_mib} MiB filesystem, floor {floor_mib} MiB");
    let metrics = || Metrics(bridge.metrics().unwrap_or_default());
    // Every frame sent has been taken or refused.
    let handled = |sent: usize| {
        bridge.wait_for_metrics(
            "every frame taken or refused",
            Duration::from_secs(60),
            |m| {
                m.get("gkb_events_received_total") + m.get("gkb_buffer_refused_events_total")
                    >= sent as f64
            },
        )
    };

    sim.generate(500);
    bridge.wait_forwarded(500, Duration::from_secs(120));
    let mut sent = 500;

    // Kafka goes away; events come in batches until the buffer refuses.
    broker.kill9();
    let full_at = support::eventually(
        &format!("{label}: the buffer to refuse new events"),
        Duration::from_secs(180),
        || {
            let m = handled(sent);
            if m.get("gkb_buffer_admitting") == 0.0 || m.get("gkb_buffer_failing") == 1.0 {
                return Some(m);
            }
            assert!(sent < 200_000, "{label}: never full: {}", m.0);
            sim.generate(1_500);
            sent += 1_500;
            None
        },
    );
    let why = http::get(&format!("{}/readyz", bridge.health)).unwrap();
    assert_eq!(why.status, 503, "{label}: {}", why.body);
    let full_because = if full_at.get("gkb_buffer_failing") == 1.0 {
        "sled met ENOSPC"
    } else {
        "the floor was reached"
    };
    // Refused for a while: everything arriving now is lost, and counted.
    for _ in 0..3 {
        sim.generate(1_500);
        sent += 1_500;
        handled(sent);
    }
    let at_full = metrics();
    let held = at_full.get("gkb_buffer_events");
    let free_at_full = fs.free_bytes();
    assert!(
        at_full.get("gkb_buffer_refused_events_total") >= 4_500.0,
        "{label}: {}",
        at_full.0
    );

    // Kafka back: everything held drains and intake resumes by itself.
    broker.restart();
    let drained_at = Instant::now();
    bridge.wait_for_metrics(
        &format!("{label}: the backlog to drain and intake to resume"),
        Duration::from_secs(180),
        |m| {
            m.get("gkb_buffer_events") == 0.0
                && m.get("gkb_buffer_admitting") == 1.0
                && m.get("gkb_buffer_failing") == 0.0
        },
    );
    let resumed_after = drained_at.elapsed();
    let after_drain = metrics();
    let refused_before_new = metrics().get("gkb_buffer_refused_events_total");
    for _ in 0..4 {
        sim.generate(1_500);
        sent += 1_500;
    }
    let last = bridge.wait_for_metrics(
        &format!("{label}: new events forwarded"),
        Duration::from_secs(120),
        |m| {
            m.get("gkb_events_received_total") + m.get("gkb_buffer_refused_events_total")
                >= sent as f64
                && m.get("gkb_buffer_events") == 0.0
                && m.get("gkb_events_forwarded_total") >= m.get("gkb_events_received_total")
        },
    );
    let refused = last.get("gkb_buffer_refused_events_total");
    assert_eq!(
        refused, refused_before_new,
        "{label}: events refused after the drain: {}",
        last.0
    );
    // Ready again (Kafka's reachability is probed, so it may take a turn).
    bridge.wait_ready();

    let report = ledger::check(&label, sim, broker);
    let line = format!(
        "{label}: {} events sent; {held} held when full ({} bytes free on the filesystem; \
         refused because {}); refused {refused}; drained and taking events again {:?} after \
         Kafka came back (buffer reopens {}, reserve owed {}), then 6,000 more all taken; \
         lost {}, in Kafka once {}, duplicates {}, reordered {}; {:?} in all",
        report.expected,
        free_at_full,
        full_because,
        resumed_after,
        after_drain.get("gkb_buffer_reopens_total"),
        after_drain.get("gkb_buffer_reserve_owed"),
        report.lost,
        report.arrived_once,
        report.duplicates,
        report.reordered,
        started.elapsed(),
    );
    assert_eq!(
        report.lost as f64, refused,
        "{label}: every event not in Kafka was refused, and counted: {report:#?}"
    );
    assert_eq!(report.arrived_once + report.lost, report.expected);
    assert_eq!(report.duplicates, 0, "{label}: {report:#?}");
    assert_eq!(report.reordered, 0, "{label}: {report:#?}");
    assert_eq!(report.unknown, 0, "{label}: {report:#?}");
    assert!(report.mismatches.is_empty(), "{label}: {report:#?}");
    line
}

#[test]
fn a_32_mib_filesystem_filled_by_the_buffer_resumes_by_itself_at_two_floors() {
    for floor in [4, 12] {
        println!("disk full: {}", fills_drains_and_resumes(32, floor));
    }
}

#[test]
fn a_48_mib_filesystem_filled_by_the_buffer_resumes_by_itself_at_two_floors() {
    for floor in [4, 16] {
        println!("disk full: {}", fills_drains_and_resumes(48, floor));
    }
}
