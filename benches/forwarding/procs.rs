//! The processes the benchmark started, so that a watchdog can stop them
//! when a phase hangs past the overall time limit (unwinding after a panic
//! stops them through `support::Proc`'s `Drop`; `process::exit` would not).

use std::sync::Mutex;
use std::time::Duration;

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

pub fn track(pid: u32) {
    PIDS.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

pub fn untrack(pid: u32) {
    PIDS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

fn kill_all() {
    let pids: Vec<u32> = std::mem::take(&mut *PIDS.lock().unwrap_or_else(|e| e.into_inner()));
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .arg("-9")
            .arg(pid.to_string())
            .status();
    }
}

/// After `limit`, stops every tracked process and exits with status 3.
pub fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!(
            "forwarding benchmark: still running after {}s (BENCH_TIMEOUT_SECS): stopping its processes",
            limit.as_secs()
        );
        kill_all();
        std::process::exit(3);
    });
}
