//! Real processes for the end-to-end tests: a Tansu broker, the simulator
//! and the bridge, each its own OS process, stopped (or killed) on drop.
//! Their output goes to files in the test's temporary directory and is
//! printed when a test fails.
//!
//! One file a job:
//! - `stack`: the three started together, described by a builder;
//! - `process`: a child process with its log file;
//! - `broker`, `simulator`, `bridge`: each process and the calls a test
//!   makes on it;
//! - `config`: the bridge configuration the tests share;
//! - `http`: the tests' own HTTP client;
//! - `consumer`: an independent Kafka consumer;
//! - `ledger`: what the simulator emitted against what Kafka holds;
//! - `devtools`: headless chromium driven over the DevTools protocol;
//! - `tmpfs`: a small filesystem to fill; `loopfs`: a real one to freeze.
//!
//! Here: waiting, for what can only be asked for.

// Each test binary uses some of it: what one leaves unused is not dead.
#![allow(dead_code, unused_imports)]

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

pub mod bridge;
pub mod broker;
pub mod config;
pub mod consumer;
pub mod devtools;
pub mod http;
pub mod ledger;
pub mod loopfs;
pub mod process;
pub mod simulator;
pub mod stack;
pub mod tmpfs;

pub use bridge::{list_dead_letters, metric, replay_dead_letters, Bridge, Metrics};
pub use broker::{tansu_bin, Broker};
pub use config::{bridge_config, bridge_config_with_buffer, with_genesys_keys, TOPICS};
pub use process::Proc;
pub use simulator::{SimUrls, Simulator};
pub use stack::{Stack, StackBuilder};

pub const BRIDGE: &str = env!("CARGO_BIN_EXE_genesys-kafka-bridge");

/// A port free at the time of asking (for processes that take a port
/// number rather than reporting the one they bound).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts on `addr`, or panics after `limit`.
pub fn wait_for_port(addr: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{addr} did not start accepting within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` until it returns `Some`, or panics after `limit`: for
/// conditions only observable by asking (a port, a metric).
pub fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The live socket dropped (no close frame) and its reconnection refused
/// for `refused` (503 on every upgrade), then allowed again; returns once
/// the bridge recorded the gap (`this_run.gaps` above `gaps_before`).
pub fn gap_with_refused_reconnection(
    sim: &Simulator,
    bridge: &Bridge,
    refused: Duration,
    gaps_before: u64,
) {
    sim.control("/sim/faults", serde_json::json!({ "ws_status": 503 }));
    sim.control(
        "/sim/faults/drop-sockets",
        serde_json::json!({ "mode": "abort" }),
    );
    // The fault's length, not a wait for an event.
    std::thread::sleep(refused);
    sim.control("/sim/faults", serde_json::json!({ "ws_status": null }));
    eventually("the gap to end", Duration::from_secs(60), || {
        let gaps = bridge.status()?["gaps"]["this_run"]["gaps"].as_u64()?;
        (gaps > gaps_before).then_some(())
    });
}
