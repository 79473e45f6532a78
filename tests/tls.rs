//! Everything over TLS, end to end, as against Genesys Cloud itself: the
//! simulator serves https (login on its own listener, REST) and wss
//! (channel sockets) with a certificate from a throwaway CA, the bridge
//! trusts that CA only through `SSL_CERT_FILE`, and every emitted event
//! must reach the Tansu broker exactly once.

mod support;

use std::time::{Duration, Instant};

use genesys_simulator::TestCa;
use support::{http, ledger, Stack};

const EVENTS: usize = 3_000;

#[test]
fn every_event_arrives_exactly_once_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let files = TestCa::generate()
        .expect("a test CA")
        .write_to(dir.path())
        .unwrap();
    http::trust_ca(&files.ca_cert);
    let cert = files.server_cert.to_str().unwrap();
    let key = files.server_key.to_str().unwrap();
    let ca = files.ca_cert.to_str().unwrap();

    let stack = Stack::builder(dir.path())
        .queues(30)
        .simulator_args(&["--tls-cert", cert, "--tls-key", key])
        .env("SSL_CERT_FILE", ca)
        .start();
    let (broker, sim, bridge) = (&stack.broker, &stack.sim, &stack.bridge);
    assert!(sim.url.api.starts_with("https://"), "{:?}", sim.url);
    assert!(sim.url.login.starts_with("https://"), "{:?}", sim.url);
    assert_ne!(
        sim.url.api, sim.url.login,
        "login has a listener of its own"
    );

    // Plain http to the TLS listener gets no answer a client could use.
    let plain = sim.url.api.replacen("https://", "http://", 1);
    let refused = http::get(&format!("{plain}/sim/state"));
    assert!(
        refused.as_ref().map_or(true, |r| r.status != 200),
        "plain http was served on the TLS listener"
    );

    let state = sim.state();
    let channels = state["channels"].as_array().expect("channels");
    assert!(
        channels.iter().any(|c| c["connected"] == true),
        "no socket connected over wss: {state}"
    );
    let subscribed = sim.subscribed_topics().len();

    let started = Instant::now();
    sim.generate(EVENTS);
    bridge.wait_forwarded(EVENTS, Duration::from_secs(300));
    let elapsed = started.elapsed();
    println!(
        "tls e2e: {EVENTS} events on {subscribed} topics over https/wss in {:.2}s = {:.0} events/s",
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64(),
    );
    ledger::assert_exactly_once("tls e2e", sim, broker, EVENTS);
}
