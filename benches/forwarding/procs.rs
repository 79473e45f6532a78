//! The processes the benchmark started, so that a watchdog can stop them
//! when a phase hangs past the overall time limit (unwinding after a panic
//! stops them through `support::Proc`'s `Drop`; `process::exit` would not).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The run's temporary directory, removed by the watchdog too.
pub fn set_dir(dir: &Path) {
    *DIR.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir.to_owned());
}

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

/// After `limit`, stops every tracked process, removes the directory and
/// exits with status 3.
pub fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!(
            "forwarding benchmark: still running after {}s (BENCH_TIMEOUT_SECS): stopping its processes",
            limit.as_secs()
        );
        kill_all();
        if let Some(dir) = DIR.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        std::process::exit(3);
    });
}
