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
