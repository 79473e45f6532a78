//! The forwarding benchmark (`scripts/bench`): on this machine, in one run,
//! a Tansu broker, the Genesys simulator and the bridge (each its own
//! process) and, side by side:
//!
//! 1. the ceiling: a plain librdkafka producer sending the same frames
//!    (topic, key, headers, byte-identical value), twice, each time to a
//!    broker on a fresh store (a Tansu store slows as it grows: the bridge
//!    is compared with the ceiling on brokers in the same state);
//! 2. the bridge end to end: the simulator emits N events as fast as the
//!    bridge reads them; first received → last acknowledged (/metrics),
//!    on a fresh store;
//! 3. the bridge draining a backlog (1,000,000 events, grown to 5,000,000)
//!    buffered while the broker was down: broker back → buffer empty, on
//!    a fresh store;
//! 4. the bridge's RSS (VmRSS sampled, VmHWM) in (2) and (3), and with
//!    each backlog size waiting and after the drain;
//! 5. receive → acknowledged latency p50/p99 at a steady rate, from the
//!    bridge's `gkb_receive_to_ack_seconds` histogram;
//! 6. the bridge's CPU per event by stage (receive, append, read,
//!    produce, remove) from its threads' CPU and its own counters.
//!
//! Options (environment; `scripts/bench --help` maps flags onto them):
//! `BENCH_QUICK=1`, `BENCH_EVENTS`, `BENCH_BACKLOG`, `BENCH_RATE`,
//! `BENCH_LATENCY_SECS`, `BENCH_QUEUES`, `BENCH_PARTITIONER`,
//! `BENCH_TIMEOUT_SECS`, `BENCH_DIR`, `TANSU_BIN`.
//!
//! `cargo test --all-targets` builds this target and runs it without
//! `--bench`: it then exits at once.

#[path = "../../tests/support/mod.rs"]
mod support;

mod ceiling;
mod cpu;
mod drive;
mod metrics;
mod procs;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use metrics::{Counters, Histogram, Quantile, HISTOGRAM};
use support::{Bridge, Broker, Simulator, TOPICS};

const MIB: f64 = 1024.0;
/// Events that flow before the backlog phase's outage.
const WARM_UP: u64 = 20_000;

struct Options {
    quick: bool,
    events: u64,
    backlog: u64,
    /// The backlog keeps growing to this many (RSS at both sizes).
    backlog_max: u64,
    rate: f64,
    latency_secs: u64,
    queues: usize,
    partitioner: String,
    timeout: Duration,
    dir: Option<PathBuf>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        _ => default,
    }
}

impl Options {
    fn from_env() -> Options {
        let quick = env_or("BENCH_QUICK", 0u8) != 0;
        let o = Options {
            quick,
            events: env_or("BENCH_EVENTS", if quick { 20_000 } else { 100_000 }),
            backlog: env_or("BENCH_BACKLOG", if quick { 50_000 } else { 1_000_000 }),
            backlog_max: env_or("BENCH_BACKLOG_MAX", if quick { 100_000 } else { 5_000_000 }),
            rate: env_or("BENCH_RATE", 2_000.0),
            latency_secs: env_or("BENCH_LATENCY_SECS", if quick { 10 } else { 60 }),
            queues: env_or("BENCH_QUEUES", 60),
            partitioner: std::env::var("BENCH_PARTITIONER")
                .unwrap_or_else(|_| "murmur2_random".into()),
            timeout: Duration::from_secs(env_or(
                "BENCH_TIMEOUT_SECS",
                if quick { 600 } else { 1_800 },
            )),
            dir: std::env::var_os("BENCH_DIR").map(PathBuf::from),
        };
        assert!(o.events >= 1_000, "BENCH_EVENTS must be at least 1000");
        assert!(o.backlog >= 1_000, "BENCH_BACKLOG must be at least 1000");
        assert!(
            o.backlog_max >= o.backlog,
            "BENCH_BACKLOG_MAX must be at least BENCH_BACKLOG"
        );
        assert!(
            o.rate > 0.0 && o.latency_secs > 0,
            "BENCH_RATE and BENCH_LATENCY_SECS above 0"
        );
        assert!(
            (1..=500).contains(&o.queues),
            "BENCH_QUEUES in 1..=500 (one channel)"
        );
        o
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not.
    if !std::env::args().any(|a| a == "--bench") {
        println!("forwarding benchmark: skipped (not run by cargo test; run scripts/bench)");
        return;
    }
    metrics::self_check();
    let opts = Options::from_env();
    procs::watchdog(opts.timeout);
    let started = Instant::now();
    let tmp = match &opts.dir {
        Some(base) => {
            std::fs::create_dir_all(base).expect("BENCH_DIR can be created");
            tempfile::Builder::new()
                .prefix("gkb-bench-")
                .tempdir_in(base)
        }
        None => tempfile::Builder::new().prefix("gkb-bench-").tempdir(),
    }
    .expect("a temporary directory");
    procs::set_dir(tmp.path());
    let report = run(&opts, tmp.path());
    report.print(&opts, started.elapsed());
}

/// A bridge process's resident memory over a phase, in KiB.
#[derive(Debug, Default, Clone, Copy)]
struct Rss {
    max_sampled: u64,
    last: u64,
    /// VmHWM at the first and the last sample.
    hwm_first: u64,
    hwm: u64,
    samples: u64,
}

impl Rss {
    fn sample(&mut self, bridge: &Bridge) {
        let (rss, hwm) = bridge.proc.rss_kib();
        if rss > 0 {
            self.max_sampled = self.max_sampled.max(rss);
            self.last = rss;
            if self.samples == 0 {
                self.hwm_first = hwm;
            }
            self.hwm = self.hwm.max(hwm);
            self.samples += 1;
        }
    }

    /// The peak within this phase: VmHWM when it rose during the phase
    /// (the process's peak was reached in it), else the largest sample.
    fn phase_peak(&self) -> u64 {
        if self.hwm > self.hwm_first {
            self.hwm
        } else {
            self.max_sampled
        }
    }
}

struct Phase {
    events: u64,
    secs: f64,
    rss: Rss,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.events as f64 / self.secs
    }
}

struct Latency {
    rate: f64,
    secs: f64,
    achieved: f64,
    histogram: Option<Histogram>,
    rss: Rss,
    /// The plain producer's send → acknowledged p50 and p99 (ms) at the
    /// same rate on the same broker: the broker's own share.
    plain: (f64, f64),
}

struct Drain {
    events: u64,
    /// RSS (KiB, sampled) with BENCH_BACKLOG and BENCH_BACKLOG_MAX
    /// waiting, and after the drain (at once, and 5 s later).
    rss_at_backlog: u64,
    rss_at_max: u64,
    rss_after: u64,
    rss_after_idle: u64,
    /// RSS while events flowed before the outage (the e2e bridge's is
    /// another process: this one's own warm-up).
    rss_before: u64,
    /// Broker accepting connections → buffer empty.
    secs: f64,
    /// First acknowledgement seen → buffer empty.
    secs_after_first_ack: f64,
    first_ack_after: f64,
    fill: Phase,
    waiting: Rss,
    rss: Rss,
}

struct Report {
    /// CPU seconds per phase: bridge, broker, simulator, this process.
    cpu: Vec<(&'static str, f64, [Option<f64>; 4])>,
    /// The bridge's CPU per event by stage, per phase.
    stages: Vec<(&'static str, cpu::Stages)>,
    frames: u64,
    frame_bytes: u64,
    ceiling_before: ceiling::Run,
    ceiling_after: ceiling::Run,
    e2e: Phase,
    latency: Latency,
    drain: Drain,
}

fn say(what: &str) {
    use std::io::Write as _;
    println!("[bench] {what}");
    let _ = std::io::stdout().flush();
}

fn alive(bridge: &mut Bridge) {
    if let Ok(Some(status)) = bridge.proc.child.try_wait() {
        panic!(
            "the bridge exited with {status}:\n{}",
            bridge.proc.log_text()
        );
    }
}

fn scrape(bridge: &Bridge) -> Counters {
    support::eventually("the bridge's /metrics", Duration::from_secs(60), || {
        drive::scrape(&bridge.health)
    })
}

fn start_simulator(dir: &Path, queues: usize, extra: &[&str]) -> Simulator {
    std::fs::create_dir_all(dir).unwrap();
    let queues = queues.to_string();
    let mut flags = vec![
        "--client-id",
        "e2e-client",
        "--client-secret",
        "bench-secret",
        "--queues",
        &queues,
    ];
    flags.extend_from_slice(extra);
    let sim = Simulator::start(dir, &flags);
    procs::track(sim.proc.pid());
    sim
}

/// A broker on a store of its own, with the topics: each phase a ratio
/// compares runs on a fresh store (a Tansu store slows as it grows, and a
/// slow broker would hide the bridge's own cost).
fn fresh_broker(dir: &Path, name: &str) -> Broker {
    let broker_dir = dir.join(name);
    std::fs::create_dir_all(&broker_dir).unwrap();
    let broker = Broker::start(&broker_dir);
    procs::track(broker.proc.pid());
    for topic in TOPICS {
        broker.create_topic(topic, 3);
    }
    broker
}

fn metrics_now(bridge: &Bridge) -> String {
    drive::metrics_text(&bridge.health).unwrap_or_default()
}

fn start_bridge(dir: &Path, sim: &Simulator, bootstrap: &str) -> Bridge {
    // 5,000,000 frames of 1.5 KB take about 14 GB on disk: above the
    // default 8 GiB bound.
    let config = support::bridge_config_with_buffer(
        &sim.url,
        bootstrap,
        &dir.join("buffer"),
        "max_bytes = 68719476736",
    );
    let bridge = Bridge::start(dir, &config, &[("E2E_CLIENT_SECRET", "bench-secret")]);
    procs::track(bridge.proc.pid());
    bridge
}

fn stop(proc: &mut support::Proc) {
    procs::untrack(proc.pid());
    proc.kill9();
}

/// Waits until the simulator has an open socket for every subscribed topic.
fn wait_subscribed(sim: &Simulator, topics: usize) {
    support::eventually(
        "the bridge to subscribe every topic",
        Duration::from_secs(90),
        || (drive::connected_topics(&sim.url) >= topics).then_some(()),
    );
}

/// Emits `count` events as fast as possible while polling the bridge
/// every `poll`; returns when `done(counters)` holds. Times the first
/// poll that saw a received event → the poll that saw `done`.
fn emit_and_follow(
    sim: &Simulator,
    bridge: &mut Bridge,
    count: u64,
    poll: Duration,
    limit: Duration,
    done: impl Fn(&Counters) -> bool,
) -> (drive::Emitted, f64, Rss) {
    let base = scrape(bridge);
    let (url, health) = (sim.url.clone(), bridge.health.clone());
    let mut generator = Some(std::thread::spawn(move || {
        drive::emit(&url, &health, base.received, count)
    }));
    let mut emitted = None;
    let deadline = Instant::now() + limit;
    let mut rss = Rss::default();
    let mut first: Option<Instant> = None;
    let end = loop {
        let now = Instant::now();
        if let Some(c) = drive::scrape(&bridge.health) {
            assert!(
                c.refused == 0.0,
                "the bridge refused {} events (its buffer's bound or free-space floor: BENCH_DIR needs room for the backlog)",
                c.refused
            );
            if first.is_none() && c.received > base.received {
                first = Some(now);
            }
            if done(&c) {
                break now;
            }
        }
        rss.sample(bridge);
        alive(bridge);
        // A failed generator ends the run now, not at the deadline.
        if generator.as_ref().is_some_and(|g| g.is_finished()) {
            let g = generator.take().expect("checked");
            emitted = Some(g.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        assert!(
            now < deadline,
            "timed out after {limit:?}: {:?}",
            drive::scrape(&bridge.health)
        );
        std::thread::sleep(poll);
    };
    if let Some(g) = generator {
        emitted = Some(g.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
    }
    let emitted = emitted.expect("the generator finished");
    rss.sample(bridge);
    let first = first.expect("a first received event was seen");
    (emitted, end.duration_since(first).as_secs_f64(), rss)
}

fn check_no_drops(sim: &Simulator) {
    let state = drive::sim_state(&sim.url);
    assert_eq!(
        state.events_dropped, 0,
        "the simulator dropped {} events (no open socket, or it gave up on a bridge that did not read)",
        state.events_dropped
    );
}

fn run(opts: &Options, dir: &Path) -> Report {
    let topics = 2 * opts.queues;
    say(&format!(
        "broker: {} ({})",
        support::tansu_bin().display(),
        dir.display()
    ));
    let mut broker = fresh_broker(dir, "broker-e2e");
    let bootstrap = broker.bootstrap();
    let mut stages = Vec::new();

    // ---- (2) end to end, then (1) the ceiling with the same frames ----
    let e2e_dir = dir.join("e2e");
    let mut sim = start_simulator(&e2e_dir, opts.queues, &[]);
    let mut bridge = start_bridge(&e2e_dir, &sim, &bootstrap);
    bridge.wait_ready();
    wait_subscribed(&sim, topics);
    say("bridge ready; warm-up of 2,000 events");
    drive::emit(&sim.url, &bridge.health, scrape(&bridge).received, 2_000);
    bridge.wait_forwarded(2_000, Duration::from_secs(120));

    say(&format!("(2) end to end: {} events", opts.events));
    let base = scrape(&bridge);
    let target = base.forwarded + opts.events as f64;
    let meter = cpu::Meter::start(
        Some(bridge.proc.pid()),
        Some(broker.proc.pid()),
        Some(sim.proc.pid()),
    );
    let stage = cpu::StageMeter::start(bridge.proc.pid(), &metrics_now(&bridge));
    let (emitted, secs, rss) = emit_and_follow(
        &sim,
        &mut bridge,
        opts.events,
        Duration::from_millis(25),
        Duration::from_secs(600),
        |c| c.forwarded >= target && c.buffered == 0.0,
    );
    let mut cpu_rows = vec![("(2) bridge end to end", secs, meter.stop())];
    stages.push((
        "(2) end to end",
        stage.stop(&metrics_now(&bridge), opts.events),
    ));
    check_no_drops(&sim);
    let e2e = Phase {
        events: opts.events,
        secs,
        rss,
    };
    say(&format!(
        "    {:.0} events/s; RSS max {:.1} MiB, peak {:.1} MiB",
        e2e.rate(),
        rss.max_sampled as f64 / MIB,
        rss.hwm as f64 / MIB
    ));

    let frames = ceiling::frames(&sim.url, emitted.first_seq, emitted.last_seq);
    assert!(
        frames.len() as u64 >= opts.events / 2,
        "only {} of {} frames still in the simulator's log",
        frames.len(),
        opts.events
    );
    let frame_bytes: u64 = frames.iter().map(|f| f.value.len() as u64).sum();
    say(&format!(
        "(1) plain producer: the same {} frames (avg {} bytes)",
        frames.len(),
        frame_bytes / frames.len() as u64
    ));
    let mut fresh = fresh_broker(dir, "broker-ceiling-before");
    let meter = cpu::Meter::start(None, Some(fresh.proc.pid()), None);
    let ceiling_before = ceiling::run(&fresh.bootstrap(), &opts.partitioner, &frames, &TOPICS);
    cpu_rows.push(("(1) plain producer", ceiling_before.secs, meter.stop()));
    stop(&mut fresh.proc);
    say(&format!("    {:.0} records/s", ceiling_before.rate()));

    // ---- (5) latency at a steady rate ----
    let count = (opts.rate * opts.latency_secs as f64).round() as u64;
    say(&format!("(5) latency: {} events at {}/s", count, opts.rate));
    let before = drive::metrics_text(&bridge.health).and_then(|t| Histogram::parse(&t, HISTOGRAM));
    let base = scrape(&bridge);
    let mut rss = Rss::default();
    let meter = cpu::Meter::start(
        Some(bridge.proc.pid()),
        Some(broker.proc.pid()),
        Some(sim.proc.pid()),
    );
    let stage = cpu::StageMeter::start(bridge.proc.pid(), &metrics_now(&bridge));
    let started = Instant::now();
    drive::start_rate(&sim.url, count, opts.rate);
    let limit = Duration::from_secs(opts.latency_secs * 2 + 120);
    let target = base.forwarded + count as f64;
    loop {
        rss.sample(&bridge);
        alive(&mut bridge);
        if drive::scrape(&bridge.health).is_some_and(|c| c.forwarded >= target && c.buffered == 0.0)
        {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "latency phase: not all {count} events forwarded within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let secs = started.elapsed().as_secs_f64();
    cpu_rows.push(("(5) latency phase", secs, meter.stop()));
    stages.push((
        "(5) at a steady rate",
        stage.stop(&metrics_now(&bridge), count),
    ));
    check_no_drops(&sim);
    let after = drive::metrics_text(&bridge.health).and_then(|t| Histogram::parse(&t, HISTOGRAM));
    say(&format!(
        "    the plain producer at {}/s for {} s on the same broker",
        opts.rate, opts.latency_secs
    ));
    let plain = ceiling::latency(
        &bootstrap,
        &opts.partitioner,
        &frames,
        &TOPICS,
        opts.rate,
        opts.latency_secs,
    );
    let latency = Latency {
        rate: opts.rate,
        secs,
        achieved: count as f64 / secs,
        histogram: after.map(|a| a.since(before.as_ref())),
        rss,
        plain: (
            ceiling::quantile(&plain, 0.5),
            ceiling::quantile(&plain, 0.99),
        ),
    };
    stop(&mut bridge.proc);
    stop(&mut sim.proc);

    stop(&mut broker.proc);

    // ---- (3) a backlog buffered while the broker is down, then drained ----
    say(&format!(
        "(3) backlog: a fresh broker and bridge; {} events flow, then the broker is stopped and {} (then up to {}) wait",
        WARM_UP, opts.backlog, opts.backlog_max
    ));
    let mut broker = fresh_broker(dir, "broker-drain");
    let bootstrap = broker.bootstrap();
    let backlog_dir = dir.join("backlog");
    // The drain does not need the simulator's event log: keep it small.
    let mut sim = start_simulator(&backlog_dir, opts.queues, &["--event-log-limit", "1000"]);
    let mut bridge = start_bridge(&backlog_dir, &sim, &bootstrap);
    bridge.wait_ready();
    wait_subscribed(&sim, topics);
    drive::emit(&sim.url, &bridge.health, scrape(&bridge).received, WARM_UP);
    bridge.wait_forwarded(WARM_UP as usize, Duration::from_secs(120));
    let rss_before = bridge.proc.rss_kib().0;
    stop(&mut broker.proc);
    let base = scrape(&bridge);
    let backlog = opts.backlog as f64;
    let meter = cpu::Meter::start(Some(bridge.proc.pid()), None, Some(sim.proc.pid()));
    let (_, fill_secs, fill_rss) = emit_and_follow(
        &sim,
        &mut bridge,
        opts.backlog,
        Duration::from_millis(100),
        Duration::from_secs(1_200),
        |c| c.received >= base.received + backlog && c.buffered >= backlog,
    );
    cpu_rows.push(("(3) filling, broker down", fill_secs, meter.stop()));
    check_no_drops(&sim);
    let fill = Phase {
        events: opts.backlog,
        secs: fill_secs,
        rss: fill_rss,
    };
    say(&format!(
        "    buffered at {:.0} events/s; waiting 10 s with the broker down",
        fill.rate()
    ));
    let mut waiting = Rss::default();
    for _ in 0..50 {
        waiting.sample(&bridge);
        alive(&mut bridge);
        std::thread::sleep(Duration::from_millis(200));
    }
    let rss_at_backlog = bridge.proc.rss_kib().0;
    let mut total = opts.backlog;
    if opts.backlog_max > opts.backlog {
        let more = opts.backlog_max - opts.backlog;
        say(&format!("    {more} more, to {} waiting", opts.backlog_max));
        let want = base.received + opts.backlog_max as f64;
        let (_, _, more_rss) = emit_and_follow(
            &sim,
            &mut bridge,
            more,
            Duration::from_millis(200),
            Duration::from_secs(3_600),
            |c| c.received >= want && c.buffered >= opts.backlog_max as f64,
        );
        check_no_drops(&sim);
        waiting.max_sampled = waiting.max_sampled.max(more_rss.max_sampled);
        waiting.hwm = waiting.hwm.max(more_rss.hwm);
        // Measured as at BENCH_BACKLOG: after 10 s of waiting, once the
        // fill's own transient memory has gone back.
        for _ in 0..50 {
            waiting.sample(&bridge);
            alive(&mut bridge);
            std::thread::sleep(Duration::from_millis(200));
        }
        total = opts.backlog_max;
    }
    let rss_at_max = bridge.proc.rss_kib().0;
    let held = scrape(&bridge);
    assert!(
        held.forwarded == base.forwarded && held.buffered >= total as f64,
        "the backlog is not held while the broker is down: {held:?}"
    );

    say("    broker started again: draining");
    broker.restart();
    procs::track(broker.proc.pid());
    let meter = cpu::Meter::start(
        Some(bridge.proc.pid()),
        Some(broker.proc.pid()),
        Some(sim.proc.pid()),
    );
    let stage = cpu::StageMeter::start(bridge.proc.pid(), &metrics_now(&bridge));
    let started = Instant::now();
    let mut rss = Rss::default();
    let mut first_ack: Option<Instant> = None;
    let target = base.forwarded + total as f64;
    let limit = Duration::from_secs(3_600);
    let end = loop {
        let now = Instant::now();
        if let Some(c) = drive::scrape(&bridge.health) {
            if first_ack.is_none() && c.forwarded > base.forwarded {
                first_ack = Some(now);
            }
            if c.forwarded >= target && c.buffered == 0.0 {
                break now;
            }
        }
        rss.sample(&bridge);
        alive(&mut bridge);
        assert!(
            started.elapsed() < limit,
            "drain: not done within {limit:?}: {:?}",
            drive::scrape(&bridge.health)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    rss.sample(&bridge);
    cpu_rows.push((
        "(3) draining",
        end.duration_since(started).as_secs_f64(),
        meter.stop(),
    ));
    stages.push(("(3) draining", stage.stop(&metrics_now(&bridge), total)));
    let rss_after = bridge.proc.rss_kib().0;
    // jemalloc hands freed pages back after its decay time (1 s).
    std::thread::sleep(Duration::from_secs(5));
    let rss_after_idle = bridge.proc.rss_kib().0;
    let first_ack = first_ack.expect("an acknowledgement was seen");
    let drain = Drain {
        events: total,
        rss_at_backlog,
        rss_at_max,
        rss_after,
        rss_after_idle,
        rss_before,
        secs: end.duration_since(started).as_secs_f64(),
        secs_after_first_ack: end.duration_since(first_ack).as_secs_f64(),
        first_ack_after: first_ack.duration_since(started).as_secs_f64(),
        fill,
        waiting,
        rss,
    };
    let dead = scrape(&bridge).dead_lettered;
    assert_eq!(dead, 0.0, "the bridge dead-lettered {dead} events");
    say(&format!(
        "    drained in {:.1} s ({:.0} events/s)",
        drain.secs,
        drain.events as f64 / drain.secs
    ));
    stop(&mut bridge.proc);
    stop(&mut sim.proc);
    stop(&mut broker.proc);

    say("(1') plain producer again, on a fresh store");
    let mut fresh = fresh_broker(dir, "broker-ceiling-after");
    let meter = cpu::Meter::start(None, Some(fresh.proc.pid()), None);
    let ceiling_after = ceiling::run(&fresh.bootstrap(), &opts.partitioner, &frames, &TOPICS);
    cpu_rows.push(("(1') plain producer", ceiling_after.secs, meter.stop()));
    say(&format!("    {:.0} records/s", ceiling_after.rate()));
    stop(&mut fresh.proc);

    Report {
        cpu: cpu_rows,
        stages,
        frames: frames.len() as u64,
        frame_bytes,
        ceiling_before,
        ceiling_after,
        e2e,
        latency,
        drain,
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / MIB)
}

impl Report {
    fn print(&self, opts: &Options, total: Duration) {
        let c1 = self.ceiling_before.rate();
        let c2 = self.ceiling_after.rate();
        let e2e_ratio = self.e2e.rate() / c1;
        let drain_rate = self.drain.events as f64 / self.drain.secs;
        let drain_ratio = drain_rate / c2;
        let drain_flow = self.drain.events as f64 / self.drain.secs_after_first_ack;
        let rss_goal = 64 * 1024;
        println!();
        println!(
            "== genesys-kafka-bridge forwarding benchmark{} ({} cores, {:.0} s) ==",
            if opts.quick { " (--quick)" } else { "" },
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            total.as_secs_f64()
        );
        println!(
            "frames: {} events on {} topics, avg {} bytes; Tansu sqlite store; topics with 3 partitions; partitioner {}",
            self.frames,
            2 * opts.queues,
            self.frame_bytes / self.frames.max(1),
            opts.partitioner
        );
        println!(
            "options: BENCH_EVENTS={} BENCH_BACKLOG={} BENCH_BACKLOG_MAX={} BENCH_RATE={} BENCH_LATENCY_SECS={} BENCH_QUEUES={}",
            opts.events, opts.backlog, opts.backlog_max, opts.rate, opts.latency_secs, opts.queues
        );
        println!("Ratios are against the plain producer, each run on a fresh broker store (as are (2) and (3)).");
        println!();
        println!(
            "{:<48} {:>9} {:>8} {:>10} {:>6}  goal",
            "", "events", "secs", "per sec", "ratio"
        );
        let row = |name: &str, events: u64, secs: f64, ratio: Option<f64>, goal: &str| {
            println!(
                "{:<48} {:>9} {:>8.2} {:>10.0} {:>6}  {}",
                name,
                events,
                secs,
                events as f64 / secs,
                ratio.map_or("1.00".to_owned(), |r| format!("{r:.2}")),
                goal
            );
        };
        row(
            "(1) plain librdkafka producer (fresh store)",
            self.ceiling_before.records,
            self.ceiling_before.secs,
            None,
            "ceiling for (2)",
        );
        row(
            "(2) bridge end to end (first recv → last ack)",
            self.e2e.events,
            self.e2e.secs,
            Some(e2e_ratio),
            &format!(">= 0.90 {}", verdict(e2e_ratio >= 0.9)),
        );
        row(
            "(1') plain librdkafka producer (fresh store)",
            self.ceiling_after.records,
            self.ceiling_after.secs,
            None,
            "ceiling for (3)",
        );
        row(
            "(3) bridge drains backlog (broker up → empty)",
            self.drain.events,
            self.drain.secs,
            Some(drain_ratio),
            &format!(">= 0.90 {}", verdict(drain_ratio >= 0.9)),
        );
        row(
            "    same, first ack → empty",
            self.drain.events,
            self.drain.secs_after_first_ack,
            Some(drain_flow / c2),
            &format!(
                "(first ack {:.1} s after the broker was up)",
                self.drain.first_ack_after
            ),
        );
        row(
            "    filling the backlog, broker down (recv rate)",
            self.drain.fill.events,
            self.drain.fill.secs,
            Some(self.drain.fill.rate() / c2),
            "(for information)",
        );
        if (c1 - c2).abs() / c1.max(c2) > 0.2 {
            println!(
                "note: the two plain-producer runs differ by more than 20% ({c1:.0} vs {c2:.0}/s): a noisy machine or a slower store; rerun to confirm"
            );
        }
        println!();
        println!(
            "{:<48} {:>9} {:>9} {:>9} {:>10}  goal (phase peak)",
            "(4) bridge RSS, MiB", "VmRSS max", "at end", "VmHWM", "phase peak"
        );
        let rss_row = |name: &str, rss: &Rss| {
            println!(
                "{:<48} {:>9} {:>9} {:>9} {:>10}  <= 64 MiB {}",
                name,
                mib(rss.max_sampled),
                mib(rss.last),
                mib(rss.hwm),
                mib(rss.phase_peak()),
                verdict(rss.phase_peak() <= rss_goal)
            );
        };
        rss_row("    end to end (2)", &self.e2e.rss);
        rss_row("    at 2,000/s (5)", &self.latency.rss);
        rss_row("    filling the backlog, broker down", &self.drain.fill.rss);
        rss_row(
            &format!("    {} events waiting (10 s)", self.drain.events),
            &self.drain.waiting,
        );
        rss_row("    draining (3)", &self.drain.rss);
        let d = &self.drain;
        println!(
            "    backlog bridge, VmRSS now: {} after {WARM_UP} flowed (before the outage); {} with {} waiting; {} with {} waiting ({}: goal <= 1.10 {}); after the drain {} at once, {} 5 s later ({}: goal within 10 % of before {})",
            mib(d.rss_before),
            mib(d.rss_at_backlog),
            opts.backlog,
            mib(d.rss_at_max),
            d.events,
            format_args!("{:.2}", d.rss_at_max as f64 / d.rss_at_backlog.max(1) as f64),
            verdict(d.rss_at_max * 10 <= d.rss_at_backlog * 11),
            mib(d.rss_after),
            mib(d.rss_after_idle),
            format_args!("{:.2}", d.rss_after_idle as f64 / d.rss_before.max(1) as f64),
            verdict(d.rss_after_idle * 10 <= d.rss_before * 11),
        );
        println!("    (VmRSS sampled every 25-200 ms; VmHWM is the process's peak since it started; phase peak");
        println!("    is VmHWM if it rose during the phase, else the largest sample. The backlog bridge is a fresh process.)");
        println!();
        println!(
            "{:<48} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "CPU seconds (of 2 cores x phase secs)",
            "secs",
            cpu::NAMES[0],
            cpu::NAMES[1],
            cpu::NAMES[2],
            cpu::NAMES[3]
        );
        for (name, secs, usage) in &self.cpu {
            let cells: Vec<String> = usage
                .iter()
                .map(|u| u.map_or("-".to_owned(), |s| format!("{s:.1}")))
                .collect();
            println!(
                "    {:<44} {:>8.1} {:>9} {:>9} {:>9} {:>9}",
                name, secs, cells[0], cells[1], cells[2], cells[3]
            );
        }
        println!("    (bench = this process: the plain producer in (1), metric polling and the driver elsewhere)");
        println!();
        print!("{:<48}", "bridge CPU per event, µs");
        for stage in cpu::STAGES {
            print!(" {stage:>8}");
        }
        println!(" {:>8}", "total");
        for (name, st) in &self.stages {
            print!("    {name:<44}");
            let per = |secs: f64| secs * 1e6 / st.events.max(1) as f64;
            for secs in st.secs {
                print!(" {:>8.1}", per(secs));
            }
            println!(" {:>8.1}", per(st.secs.iter().sum()));
        }
        println!("    (receive: the thread reading the sockets; append: the buffer's writer thread, flushes included;");
        println!("    read, remove: the buffer's own CPU counters; produce: the rest of the forwarding thread and");
        println!("    librdkafka's threads; other: HTTP, the blocking pool, the watcher. Thread CPU from /proc.)");
        println!();
        println!(
            "(5) receive → Kafka-acknowledged latency at {:.0} events/s for {:.0} s (achieved {:.0}/s):",
            self.latency.rate, self.latency.secs, self.latency.achieved
        );
        match &self.latency.histogram {
            None => println!("    n/a: the bridge's /metrics has no {HISTOGRAM} histogram"),
            Some(h) => {
                let p50 = h.quantile(0.5);
                let p99 = h.quantile(0.99);
                let ok = matches!(p99, Quantile::Value(s) if s <= 0.020);
                println!(
                    "    p50 {p50}, p99 {p99} (goal p99 <= 20 ms: {}); mean {:.2} ms over {} samples",
                    verdict(ok),
                    if h.count > 0.0 { h.sum / h.count * 1000.0 } else { f64::NAN },
                    h.count
                );
                let bounds: Vec<String> = h
                    .buckets
                    .iter()
                    .filter(|(b, _)| b.is_finite())
                    .map(|(b, _)| format!("{}", b * 1000.0))
                    .collect();
                println!(
                    "    from the histogram's buckets (ms: {}), interpolated linearly within a bucket",
                    bounds.join(", ")
                );
            }
        }
        let (p50, p99) = self.latency.plain;
        println!(
            "    the plain producer alone, send → acknowledged at the same rate on the same broker: p50 {p50:.2} ms, p99 {p99:.2} ms"
        );
    }
}
