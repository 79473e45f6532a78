//! Driving the simulator: as-fast-as-possible emission in synchronous
//! batches (paced by the bridge reading its socket), a steady-rate job,
//! and the simulator's own view of what it emitted.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::metrics::Counters;
use crate::support::http;

/// Events per `/sim/generate` call. A call returns once its frames were
/// written to the socket, so at most one batch (a few tens of MB) waits in
/// the simulator: well under the 64 MiB after which it gives up on a
/// client that does not keep up (and drops events).
pub const BATCH: u64 = 10_000;

#[derive(Debug, Clone, Copy)]
pub struct Emitted {
    pub first_seq: u64,
    pub last_seq: u64,
    pub emitted: u64,
}

/// Emits `total` events as fast as the simulator and the bridge's socket
/// reading allow. When a batch was not flushed within the simulator's 5 s
/// (the bridge stopped reading for a while), waits until the bridge has
/// received all but one batch before sending more, so the simulator never
/// gives up on the socket.
pub fn emit(sim_url: &str, health: &str, received_base: f64, total: u64) -> Emitted {
    let mut out = Emitted {
        first_seq: 0,
        last_seq: 0,
        emitted: 0,
    };
    while out.emitted < total {
        let count = BATCH.min(total - out.emitted);
        let reply = http::post_json(
            &format!("{sim_url}/sim/generate"),
            &json!({ "count": count }),
        )
        .expect("the simulator answers /sim/generate");
        assert_eq!(reply.status, 200, "/sim/generate: {}", reply.body);
        let reply: Value = serde_json::from_str(&reply.body).expect("JSON from /sim/generate");
        let emitted = reply["emitted"].as_u64().expect("emitted in the reply");
        assert_eq!(emitted, count, "/sim/generate emitted fewer: {reply}");
        if out.emitted == 0 {
            out.first_seq = reply["first_seq"].as_u64().expect("first_seq");
        }
        out.last_seq = reply["last_seq"].as_u64().expect("last_seq");
        out.emitted += emitted;
        if reply["flushed"].as_bool() != Some(true) {
            let want = received_base + out.emitted.saturating_sub(BATCH) as f64;
            wait_received(health, want, Duration::from_secs(300));
        }
    }
    out
}

fn wait_received(health: &str, want: f64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(c) = scrape(health) {
            if c.received >= want {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the bridge did not receive {want} events within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One scrape of the bridge's counters (None while it does not answer).
pub fn scrape(health: &str) -> Option<Counters> {
    let r = http::get(&format!("{health}/metrics")).ok()?;
    (r.status == 200).then_some(())?;
    Counters::parse(&r.body)
}

/// The /metrics text.
pub fn metrics_text(health: &str) -> Option<String> {
    let r = http::get(&format!("{health}/metrics")).ok()?;
    (r.status == 200).then_some(r.body)
}

/// Starts a background job of `count` events at `rate` per second.
pub fn start_rate(sim_url: &str, count: u64, rate: f64) {
    let reply = http::post_json(
        &format!("{sim_url}/sim/generate"),
        &json!({ "count": count, "rate_per_sec": rate }),
    )
    .expect("the simulator answers /sim/generate");
    assert_eq!(reply.status, 202, "/sim/generate (rate): {}", reply.body);
}

#[derive(Debug, Deserialize)]
pub struct SimState {
    pub channels: Vec<SimChannel>,
    pub events_dropped: u64,
}

#[derive(Debug, Deserialize)]
pub struct SimChannel {
    pub topics_count: usize,
    pub connected: bool,
}

pub fn sim_state(sim_url: &str) -> SimState {
    let reply = http::get(&format!("{sim_url}/sim/state")).expect("/sim/state answers");
    assert_eq!(reply.status, 200, "/sim/state: {}", reply.body);
    serde_json::from_str(&reply.body).expect("/sim/state parses")
}

/// Subscribed topics on channels with an open socket.
pub fn connected_topics(sim_url: &str) -> usize {
    sim_state(sim_url)
        .channels
        .iter()
        .filter(|c| c.connected)
        .map(|c| c.topics_count)
        .sum()
}
