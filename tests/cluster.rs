//! Cluster mode with real processes: one Tansu broker, one simulator, two
//! bridges `a` and `b` with the same plan (each its own buffer and health
//! port), and an independent consumer. Every test counts, from the
//! simulator's own log, each event delivered to a socket of *either*
//! member, and reads Kafka: lost, duplicated, reordered per key.
//!
//! - `kill_9_of_the_leader_twice`: 300 events/s; the leader is `kill -9`ed
//!   at a random moment, restarted, then the new leader is `kill -9`ed.
//! - `rolling_restart_loses_and_repeats_nothing`: `cluster handover`, then
//!   SIGTERM the leader, start it again, SIGTERM the other, start it
//!   again, under 300/s.
//! - `a_paused_leader_steps_down`: the leader `SIGSTOP`ped for 30 s.
//! - `kafka_gone_for_both_then_back`: the broker frozen (unreachable) for
//!   60 s, then back.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;
use support::{bridge_config_with_buffer, eventually, ledger, Bridge, Broker, Simulator, TOPICS};

const COORDINATION: &str = "genesys-bridge.cluster";

/// One pair at a time: two pairs (eight processes at 300 events/s each)
/// on the machine's two cores would starve each other into takeovers the
/// test did not ask for.
static ONE_PAIR: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_pair() -> std::sync::MutexGuard<'static, ()> {
    ONE_PAIR.lock().unwrap_or_else(|e| e.into_inner())
}
const RATE: f64 = 300.0;

/// The test's directory; kept (and printed) with `CLUSTER_TEST_KEEP=1`,
/// for the processes' logs.
struct TestDir {
    /// Removes the directory when the test ends (`None`: kept).
    _owned: Option<tempfile::TempDir>,
    path: std::path::PathBuf,
}

impl TestDir {
    fn new() -> TestDir {
        let dir = tempfile::tempdir().unwrap();
        if std::env::var("CLUSTER_TEST_KEEP").as_deref() == Ok("1") {
            let path = dir.keep();
            println!("test directory kept: {}", path.display());
            TestDir { _owned: None, path }
        } else {
            let path = dir.path().to_owned();
            TestDir {
                _owned: Some(dir),
                path,
            }
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

/// One member: its directory (config, log, buffer) and process.
struct Member {
    name: &'static str,
    bridge: Bridge,
}

struct Pair {
    broker: Broker,
    sim: Simulator,
    a: Member,
    b: Member,
}

fn member_config(sim: &Simulator, bootstrap: &str, dir: &Path, name: &str) -> String {
    bridge_config_with_buffer(&sim.url, bootstrap, &dir.join("buffer"), "")
        + &format!(
            "\n[snapshots]\nenabled = false\n[backfill]\nenabled = false\n\
             [cluster]\nmember = \"{name}\"\ntopic = \"{COORDINATION}\"\nlease_ms = 5000\nheartbeat_ms = 1000\n"
        )
}

fn start_member(
    root: &Path,
    name: &'static str,
    sim: &Simulator,
    bootstrap: &str,
    secret: &str,
) -> Member {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let bridge = Bridge::start(
        &dir,
        &member_config(sim, bootstrap, &dir, name),
        &[("E2E_CLIENT_SECRET", secret)],
    );
    Member { name, bridge }
}

impl Pair {
    /// Broker, simulator, then `a` (which leads: it finds nobody) and `b`.
    fn start(root: &Path) -> Pair {
        let broker = Broker::start(root);
        for topic in TOPICS {
            broker.create_topic(topic, 3);
        }
        broker.create_topic(COORDINATION, 1);
        let secret = format!("cluster-secret-{}", std::process::id());
        let sim = Simulator::start(
            root,
            &[
                "--client-id",
                "e2e-client",
                "--client-secret",
                &secret,
                "--queues",
                "10",
            ],
        );
        let a = start_member(root, "a", &sim, &broker.bootstrap(), &secret);
        a.bridge.wait_ready();
        wait_role(&a, "leader");
        let b = start_member(root, "b", &sim, &broker.bootstrap(), &secret);
        b.bridge.wait_ready();
        wait_role(&b, "standby");
        Pair { broker, sim, a, b }
    }

    fn members(&mut self) -> [&mut Member; 2] {
        [&mut self.a, &mut self.b]
    }

    /// The member that leads now.
    fn leader(&mut self) -> &mut Member {
        eventually("a leader", Duration::from_secs(60), || {
            [&self.a, &self.b]
                .iter()
                .position(|m| role(m).as_deref() == Some("leader") && forwarding(m))
        });
        if role(&self.a).as_deref() == Some("leader") {
            &mut self.a
        } else {
            &mut self.b
        }
    }

    /// Generation finished, the leader's buffer empty and the standby
    /// holding nothing the leader has not reported.
    fn wait_settled(&mut self) {
        self.sim.wait_generated(Duration::from_secs(600));
        eventually("both members settled", Duration::from_secs(180), || {
            let buffers: Vec<f64> = [&self.a, &self.b]
                .iter()
                .map(|m| {
                    m.bridge
                        .metrics()
                        .and_then(|t| support::metric(&t, "gkb_buffer_events"))
                        .unwrap_or(f64::NAN)
                })
                .collect();
            (buffers.iter().all(|n| *n == 0.0)).then_some(())
        });
    }
}

fn status(m: &Member) -> Option<Value> {
    m.bridge.status().map(|s| s["cluster"].clone())
}

fn role(m: &Member) -> Option<String> {
    status(m).and_then(|c| c["role"].as_str().map(str::to_owned))
}

fn forwarding(m: &Member) -> bool {
    status(m).is_some_and(|c| c["forwarding"] == true)
}

fn wait_role(m: &Member, want: &str) {
    eventually(
        &format!("member {} to be {want}", m.name),
        Duration::from_secs(90),
        || (role(m).as_deref() == Some(want)).then_some(()),
    );
}

/// Every event delivered to a socket of either member is in Kafka, in
/// order per key; returns the report (duplicates are the caller's to
/// judge).
fn check_nothing_lost(label: &str, pair: &Pair) -> ledger::Report {
    let report = ledger::check(label, &pair.sim, &pair.broker);
    assert_eq!(report.lost, 0, "{label}: {report:#?}");
    assert_eq!(report.reordered, 0, "{label}: {report:#?}");
    assert_eq!(report.unknown, 0, "{label}: {report:#?}");
    assert!(report.mismatches.is_empty(), "{label}: {report:#?}");
    assert!(report.expected > 0, "{label}: nothing was delivered");
    report
}

/// Events the simulator emitted to no socket of either member.
fn emitted_to_no_socket(sim: &Simulator) -> usize {
    let (distinct, delivered) = ledger::distinct_and_delivered(&ledger::emitted(&sim.url));
    distinct - delivered
}

#[test]
fn kill_9_of_the_leader_twice() {
    let _one = one_pair();
    let root = TestDir::new();
    let mut pair = Pair::start(root.path());
    let mut rng = rand::thread_rng();
    // 50 s in CI (Tansu serves a ledger's read at ~230 records/s);
    // CLUSTER_KILL_SECS=180 is the three minutes.
    let secs: f64 = std::env::var("CLUSTER_KILL_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50.0);
    pair.sim.generate_in_background((RATE * secs) as u64, RATE);
    let spread = ((secs * 1000.0) as u64 / 5).max(10_000);

    std::thread::sleep(Duration::from_millis(rng.gen_range(5_000..spread)));
    let first = pair.leader().name;
    let killed_at = Instant::now();
    pair.leader().bridge.proc.kill9();
    let survivor = if first == "a" { &pair.b } else { &pair.a };
    wait_role(survivor, "leader");
    eventually("the survivor to forward", Duration::from_secs(60), || {
        forwarding(survivor).then_some(())
    });
    let takeover = killed_at.elapsed();
    let taken = status(survivor).unwrap()["last_takeover"].clone();
    println!(
        "cluster kill -9: {first} killed; the other forwards {:.1} s later; takeover {taken}",
        takeover.as_secs_f64()
    );

    // The dead leader comes back as a standby.
    {
        let dead = if first == "a" {
            &mut pair.a
        } else {
            &mut pair.b
        };
        dead.bridge.restart();
        dead.bridge.wait_ready();
        wait_role(dead, "standby");
    }
    std::thread::sleep(Duration::from_millis(rng.gen_range(3_000..spread)));
    let second = pair.leader().name;
    assert_ne!(first, second);
    pair.leader().bridge.proc.kill9();
    {
        let back = if second == "a" { &pair.b } else { &pair.a };
        wait_role(back, "leader");
    }
    {
        let dead = if second == "a" {
            &mut pair.a
        } else {
            &mut pair.b
        };
        dead.bridge.restart();
        dead.bridge.wait_ready();
    }
    pair.wait_settled();
    let report = check_nothing_lost("cluster kill -9 twice", &pair);
    println!(
        "cluster kill -9 twice: {} events delivered to a socket of either member, 0 lost, {} duplicates, 0 reordered; {} emitted to no socket",
        report.expected,
        report.duplicates,
        emitted_to_no_socket(&pair.sim)
    );
    // What a dead leader may leave twice: what it had handed to Kafka
    // and not reported (the takeover check finds those it can see).
    assert!(report.duplicates <= 2 * 10_000, "{report:#?}");
}

#[test]
fn rolling_restart_loses_and_repeats_nothing() {
    let _one = one_pair();
    let root = TestDir::new();
    let mut pair = Pair::start(root.path());
    pair.sim.generate_in_background((RATE * 45.0) as u64, RATE);
    std::thread::sleep(Duration::from_secs(5));

    // An operator's planned move first: `cluster handover`, nobody stopped.
    let before = pair.leader().name;
    let config = pair.a.bridge.config.clone();
    let out = cli(&["cluster", "handover", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "cluster handover: {out:?}");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let after = pair.leader().name;
    assert_ne!(before, after);
    assert!(said.contains(&format!("{after} leads now")), "{said}");
    let out = cli(&[
        "cluster",
        "status",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "cluster status: {out:?}");
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["leader"], after, "{view}");
    assert_eq!(view["members"].as_array().map(Vec::len), Some(2), "{view}");
    println!("cluster handover: {said}cluster status: {view}");

    for _ in 0..2 {
        let leader = pair.leader();
        let name = leader.name;
        let status = leader.bridge.proc.terminate();
        assert!(status.success(), "{name} exited with {status}");
        leader.bridge.restart();
        leader.bridge.wait_ready();
        // The other member claims the released epoch at once; the
        // restarted one may win it if it is quicker: either way one leads.
        pair.leader();
        std::thread::sleep(Duration::from_secs(3));
    }
    pair.wait_settled();
    let report = check_nothing_lost("cluster rolling restart", &pair);
    let unheard = emitted_to_no_socket(&pair.sim);
    println!(
        "cluster rolling restart: {} events, 0 lost, {} duplicates, 0 reordered; {unheard} emitted to no socket",
        report.expected, report.duplicates
    );
    assert_eq!(report.duplicates, 0, "{report:#?}");
    assert_eq!(unheard, 0, "some events reached no member's socket");
    let takeovers: u64 = pair
        .members()
        .iter()
        .map(|m| status(m).unwrap()["takeovers"].as_u64().unwrap_or(0))
        .sum();
    assert!(takeovers >= 1, "nobody took over");
}

#[test]
fn a_paused_leader_steps_down() {
    let _one = one_pair();
    let root = TestDir::new();
    let mut pair = Pair::start(root.path());
    pair.sim.generate_in_background((RATE * 45.0) as u64, RATE);
    std::thread::sleep(Duration::from_secs(5));
    let paused = pair.leader().name;
    pair.leader().bridge.proc.signal(libc::SIGSTOP);
    {
        let other = if paused == "a" { &pair.b } else { &pair.a };
        wait_role(other, "leader");
    }
    std::thread::sleep(Duration::from_secs(25));
    let resumed = if paused == "a" { &pair.a } else { &pair.b };
    resumed.bridge.proc.signal(libc::SIGCONT);
    wait_role(resumed, "standby");
    pair.wait_settled();
    let report = check_nothing_lost("cluster SIGSTOP 30 s", &pair);
    println!(
        "cluster SIGSTOP 30 s: {} events, 0 lost, {} duplicates, 0 reordered",
        report.expected, report.duplicates
    );
    let leaders = pair
        .members()
        .iter()
        .filter(|m| role(m).as_deref() == Some("leader"))
        .count();
    assert_eq!(leaders, 1);
}

#[test]
fn kafka_gone_for_both_then_back() {
    let _one = one_pair();
    let root = TestDir::new();
    let mut pair = Pair::start(root.path());
    // Half the rate: 80 s of it must be read back from Tansu.
    pair.sim
        .generate_in_background((RATE / 2.0 * 80.0) as u64, RATE / 2.0);
    std::thread::sleep(Duration::from_secs(5));
    // Unreachable for both: the broker frozen (its connections stay open
    // and answer nothing), not restarted. (A `kill -9` and restart of
    // Tansu passed once and once left the broker refusing connections
    // after its restart; that is the broker's recovery, not this test's
    // subject: tests/crash_recovery.rs covers a broker restart.)
    pair.broker.proc.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(60));
    pair.broker.proc.signal(libc::SIGCONT);
    pair.wait_settled();
    let report = check_nothing_lost("cluster Kafka gone 60 s", &pair);
    let leaders = pair
        .members()
        .iter()
        .filter(|m| role(m).as_deref() == Some("leader"))
        .count();
    println!(
        "cluster Kafka gone 60 s: {} events, 0 lost, {} duplicates, 0 reordered; {leaders} leader after",
        report.expected, report.duplicates
    );
    assert_eq!(leaders, 1);
}

/// The bridge's command line, run to its end.
fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(support::BRIDGE)
        .args(args)
        .output()
        .unwrap()
}

/// CPU seconds (user + system) a process used so far, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// The benchmark of issue 14 (not a timed test: it reports, it does not
/// judge): takeover time after `kill -9` of the leader, median and worst
/// of 10, and what a standby costs next to the leader at 300 events/s.
///
/// `cargo test --release --test cluster -- --ignored takeover_benchmark --nocapture`
#[test]
#[ignore]
fn takeover_benchmark() {
    let _one = one_pair();
    let root = TestDir::new();
    let mut pair = Pair::start(root.path());
    pair.sim.generate_in_background((RATE * 900.0) as u64, RATE);

    // What each costs over 60 s of 300 events/s.
    std::thread::sleep(Duration::from_secs(10));
    let leader_name = pair.leader().name;
    let (leader, standby) = if leader_name == "a" {
        (&pair.a, &pair.b)
    } else {
        (&pair.b, &pair.a)
    };
    let (l0, s0) = (
        cpu_seconds(leader.bridge.proc.pid()),
        cpu_seconds(standby.bridge.proc.pid()),
    );
    std::thread::sleep(Duration::from_secs(60));
    let (l1, s1) = (
        cpu_seconds(leader.bridge.proc.pid()),
        cpu_seconds(standby.bridge.proc.pid()),
    );
    let (lr, sr) = (leader.bridge.proc.rss_kib(), standby.bridge.proc.rss_kib());
    println!(
        "cluster bench: over 60 s at {RATE} events/s: leader {:.1} % of a core, RSS {} MiB (peak {}); \
         standby {:.1} % of a core, RSS {} MiB (peak {}); standby behind {}",
        (l1 - l0) / 60.0 * 100.0,
        lr.0 / 1024,
        lr.1 / 1024,
        (s1 - s0) / 60.0 * 100.0,
        sr.0 / 1024,
        sr.1 / 1024,
        status(standby).unwrap()["behind"]
    );

    let mut times = Vec::new();
    for round in 0..10 {
        let name = pair.leader().name;
        let killed = Instant::now();
        pair.leader().bridge.proc.kill9();
        let other = if name == "a" { &pair.b } else { &pair.a };
        eventually(
            "the other member to forward",
            Duration::from_secs(120),
            || forwarding(other).then_some(()),
        );
        let took = killed.elapsed();
        times.push(took.as_secs_f64());
        println!(
            "cluster bench: takeover {round}: {:.2} s ({})",
            took.as_secs_f64(),
            status(other).unwrap()["last_takeover"]
        );
        let dead = if name == "a" {
            &mut pair.a
        } else {
            &mut pair.b
        };
        dead.bridge.restart();
        dead.bridge.wait_ready();
        wait_role(dead, "standby");
        // Let the new standby catch up before the next kill.
        std::thread::sleep(Duration::from_secs(3));
    }
    times.sort_by(f64::total_cmp);
    println!(
        "cluster bench: takeover after kill -9 (lease 5 s, heartbeat 1 s): median {:.2} s, worst {:.2} s, best {:.2} s of {}",
        (times[4] + times[5]) / 2.0,
        times[9],
        times[0],
        times.len()
    );
}

/// Debug aid: reads every record of the test topics at `$DEBUG_BOOTSTRAP`.
#[test]
#[ignore]
fn debug_read_all() {
    let Ok(bootstrap) = std::env::var("DEBUG_BOOTSTRAP") else {
        return;
    };
    let records = support::consumer::read_all(&bootstrap, &TOPICS, Duration::from_secs(60));
    println!("read {}", records.len());
}
