//! CPU time of the processes in a phase (/proc/PID/stat utime + stime):
//! on two shared cores, where the cycles went explains the ratios.

/// User + system CPU seconds of a process so far; None once it is gone.
pub fn secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: field 3 (state) is fields[0]; utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) as f64 / ticks)
}

pub const NAMES: [&str; 4] = ["bridge", "broker", "simulator", "bench"];

/// CPU seconds of the bridge, the broker, the simulator and this process
/// (which runs the plain producer) over one phase.
pub struct Meter {
    pids: [Option<u32>; 4],
    start: [Option<f64>; 4],
}

impl Meter {
    pub fn start(bridge: Option<u32>, broker: Option<u32>, simulator: Option<u32>) -> Meter {
        let pids = [bridge, broker, simulator, Some(std::process::id())];
        Meter {
            pids,
            start: pids.map(|p| p.and_then(secs)),
        }
    }

    pub fn stop(&self) -> [Option<f64>; 4] {
        let mut out = [None; 4];
        for (i, pid) in self.pids.iter().enumerate() {
            out[i] = match (pid.and_then(secs), self.start[i]) {
                (Some(end), Some(start)) => Some(end - start),
                _ => None,
            };
        }
        out
    }
}

/// Which role a thread of the bridge has, for CPU per event: `receive` (the main
/// thread, which runs the connection actors and reads the sockets),
/// `append` (the buffer's writer thread: appends and their flushes),
/// `forward` (the forwarding thread: reads, removals and the hand-off to
/// librdkafka), `librdkafka` (its `rdk:*` threads) and `other` (HTTP
/// workers, the blocking pool, the buffer's watcher): indexes 0..5 of
/// [`by_role`].
fn role(pid: u32, tid: u32, comm: &str) -> usize {
    if tid == pid {
        0
    } else if comm.starts_with("gkb-buffer-writ") {
        1
    } else if comm.starts_with("kafka-forwarder") {
        2
    } else if comm.starts_with("rdk:") {
        3
    } else {
        4
    }
}

/// CPU seconds of each thread of `pid` so far, summed by [`ROLES`]
/// (threads gone since are not counted: the bridge's threads live as long
/// as it does).
pub fn by_role(pid: u32) -> [f64; 5] {
    let mut out = [0.0; 5];
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let cpu = fields
            .get(11)
            .and_then(|u| u.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
        out[role(pid, tid, comm)] += cpu as f64 / ticks;
    }
    out
}

/// CPU per event of one phase, by stage: receive, append, read, produce
/// (the forwarding thread apart from reads and removals, plus
/// librdkafka's threads), remove, other.
#[derive(Debug, Clone, Copy)]
pub struct Stages {
    pub events: u64,
    /// Seconds: receive, append, read, produce, remove, other.
    pub secs: [f64; 6],
}

pub const STAGES: [&str; 6] = ["receive", "append", "read", "produce", "remove", "other"];

/// Measures [`Stages`] over a phase: thread CPU from /proc, the read and
/// removal CPU from the bridge's own counters
/// (`gkb_buffer_read_cpu_seconds_total`, `…remove…`).
pub struct StageMeter {
    pid: u32,
    threads: [f64; 5],
    read_remove: (f64, f64),
}

impl StageMeter {
    pub fn start(pid: u32, metrics: &str) -> StageMeter {
        StageMeter {
            pid,
            threads: by_role(pid),
            read_remove: read_remove(metrics),
        }
    }

    pub fn stop(&self, metrics: &str, events: u64) -> Stages {
        let now = by_role(self.pid);
        let d: Vec<f64> = (0..5).map(|i| now[i] - self.threads[i]).collect();
        let (read, remove) = read_remove(metrics);
        let read = read - self.read_remove.0;
        let remove = remove - self.read_remove.1;
        Stages {
            events,
            secs: [
                d[0],
                d[1],
                read,
                (d[2] - read - remove).max(0.0) + d[3],
                remove,
                d[4],
            ],
        }
    }
}

fn read_remove(metrics: &str) -> (f64, f64) {
    let get = |name: &str| crate::support::metric(metrics, name).unwrap_or(0.0);
    (
        get("gkb_buffer_read_cpu_seconds_total"),
        get("gkb_buffer_remove_cpu_seconds_total"),
    )
}
