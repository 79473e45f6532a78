//! A disk that stops answering, then crawls, under a steady 300 events/s
//! (issue 16): the buffer is on a loop-mounted ext4 filesystem that the
//! test freezes with `fsfreeze` (every write and fsync to it then blocks in
//! the kernel) for 10 s, then thaws for 200 ms of every second for 10 s
//! more. The sockets are read on a thread that never touches the disk, so
//! the events wait in the buffer's write queue meanwhile: no socket is
//! closed as a slow consumer, no gap, nothing lost or sent twice, and
//! `/readyz` names the slow disk while it is. Skipped, saying why, where
//! the machine cannot freeze a filesystem (not root, no loop device).

mod support;

use std::time::{Duration, Instant};

use support::loopfs::LoopFs;
use support::{http, ledger, metric, Stack};

const RATE: f64 = 300.0;
const EVENTS: u64 = 9_000;

#[test]
fn a_stalled_then_crawling_disk_loses_nothing_and_closes_no_socket() {
    let dir = tempfile::tempdir().unwrap();
    let fs = match LoopFs::mount(dir.path(), 512) {
        Ok(fs) => fs,
        Err(why) => {
            println!("disk stall: SKIPPED, this machine cannot freeze a filesystem: {why}");
            return;
        }
    };
    let stack = Stack::builder(dir.path())
        .queues(30)
        // Harsher than the default 64 MiB: a bridge that stopped reading
        // for the stall would be given up on.
        .simulator_args(&["--slow-consumer-bytes", "1048576"])
        .buffer(&fs.path.join("buffer"))
        .start();
    let thaw = fs.thaw_on_drop();
    let (sim, bridge) = (&stack.sim, &stack.bridge);
    let metrics = || bridge.metrics().unwrap_or_default();
    let get = |text: &str, name: &str| metric(text, name).unwrap_or(f64::NAN);

    sim.generate_in_background(EVENTS, RATE);
    bridge.wait_for_metrics("1,500 events flowing", Duration::from_secs(60), |m| {
        m.get("gkb_events_forwarded_total") >= 1_500.0
    });

    // The disk stops: 10 s frozen. /readyz must name it meanwhile.
    let received_before = get(&metrics(), "gkb_events_received_total");
    fs.freeze().unwrap();
    let frozen_at = Instant::now();
    let mut named = None;
    while frozen_at.elapsed() < Duration::from_secs(10) {
        if named.is_none() {
            if let Ok(r) = http::get(&format!("{}/readyz", bridge.health)) {
                if r.status == 503 && r.body.contains("the disk is not keeping up") {
                    named = Some((frozen_at.elapsed(), r.body));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let during = metrics();
    // The sockets were read all along: events were received (queued for
    // the writer) while nothing could be written. About 3,000 arrive in
    // the 10 s; a thread blocked on the disk would have taken a handful.
    let received_frozen = get(&during, "gkb_events_received_total") - received_before;
    // Then it crawls: 200 ms of every second for 10 s.
    for _ in 0..10 {
        fs.thaw();
        std::thread::sleep(Duration::from_millis(200));
        fs.freeze().unwrap();
        std::thread::sleep(Duration::from_millis(800));
    }
    fs.thaw();
    drop(thaw);

    sim.wait_generated(Duration::from_secs(120));
    let done = bridge.wait_forwarded(EVENTS as usize, Duration::from_secs(180));
    let peak = done.get("gkb_buffer_write_queue_peak_bytes");
    let gaps: f64 = done
        .0
        .lines()
        .filter(|l| l.starts_with("gkb_socket_gaps_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let state = sim.state();
    println!(
        "disk stall: 10 s frozen + 10 s crawling at {RATE} events/s; write queue peak {:.0} KiB, \
         oldest wait at the end of the freeze {:.1} s; {received_frozen} received while frozen; \
         /readyz named the disk after {:?}; refused {}, gaps {gaps}, simulator dropped {}",
        peak / 1024.0,
        get(&during, "gkb_buffer_write_queue_oldest_seconds"),
        named.as_ref().map(|(at, _)| *at),
        done.get("gkb_buffer_write_queue_refused_total"),
        state["events_dropped"],
    );
    let (_, body) = named.expect("/readyz named the slow disk while it was frozen");
    assert!(body.contains("waited"), "{body}");
    assert_eq!(state["events_dropped"], 0, "no socket given up: {state}");
    assert_eq!(gaps, 0.0, "no gap");
    assert_eq!(done.get("gkb_buffer_write_queue_refused_total"), 0.0);
    assert_eq!(done.get("gkb_buffer_refused_events_total"), 0.0);
    assert!(peak > 0.0);
    assert!(
        received_frozen >= 1_000.0,
        "the sockets were not read while the disk was frozen: {received_frozen} received"
    );
    assert!(get(&during, "gkb_buffer_write_queue_oldest_seconds") >= 5.0);
    ledger::assert_exactly_once("disk stall", sim, &stack.broker, EVENTS as usize);
    drop(stack);
    drop(fs);
}
