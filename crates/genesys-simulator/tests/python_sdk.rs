//! The official Genesys Cloud Python SDK (`purecloudplatformclientv2`)
//! against the simulator: `tests/sdk/sdk_client.py` logs in, creates a
//! channel, pages through queues and users, subscribes, reads the
//! subscriptions back and exchanges ping/pong and notifications on the
//! channel's WebSocket. The SDK's own models must deserialize every reply.
//!
//! Needs Python 3 with `python3 -m pip install -r crates/genesys-simulator/tests/sdk/requirements.txt`
//! (CI installs it). Missing Python or packages fail the test, with that
//! instruction: it never skips silently. `PYTHON` overrides the interpreter.

use std::io::Read as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use genesys_simulator::{self as simulator, SimulatorArgs};

const INSTALL: &str = "install the SDK with: python3 -m pip install -r crates/genesys-simulator/tests/sdk/requirements.txt";
const DEADLINE: Duration = Duration::from_secs(180);

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Fails the test, with install instructions, when Python or a package is missing.
fn require_python_packages(python: &str) {
    let probe = Command::new(python)
        .args(["-c", "import PureCloudPlatformClientV2, websocket"])
        .output();
    match probe {
        Err(e) => panic!("cannot run {python:?} ({e}): install Python 3, then {INSTALL}"),
        Ok(out) if !out.status.success() => panic!(
            "the Genesys Python SDK or websocket-client is missing for {python:?}: {INSTALL}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(_) => {}
    }
}

/// Waits for the child with a deadline (killing it when exceeded) and
/// collects its output. Blocking: run it off the actix thread.
fn wait_with_deadline(
    mut child: Child,
    deadline: Duration,
) -> (Option<ExitStatus>, String, String) {
    // Drain the pipes on their own threads so a chatty child cannot block.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    (
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

#[actix_rt::test]
async fn official_python_sdk_talks_to_the_simulator() {
    let python = python();
    require_python_packages(&python);

    // The SDK derives the login host from the API host ("//api." →
    // "//login."): a loopback address cannot be told apart, so login is
    // served on the API port.
    let sim = simulator::start(SimulatorArgs {
        listen: "127.0.0.1:0".into(),
        login_on_api_port: true,
        ..SimulatorArgs::default()
    })
    .await
    .expect("simulator starts");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/sdk_client.py");
    let child = Command::new(&python)
        .arg(script)
        .args([sim.base_url.as_str(), "demo-client", "demo-secret"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {python} {script}: {e}"));
    let (status, stdout, stderr) =
        actix_web::rt::task::spawn_blocking(move || wait_with_deadline(child, DEADLINE))
            .await
            .expect("waiting for the SDK script");
    let status =
        status.unwrap_or_else(|| panic!("sdk_client.py ran over {DEADLINE:?}\n{stdout}\n{stderr}"));
    assert!(
        status.success(),
        "sdk_client.py failed ({status})\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    for step in [
        "login",
        "create channel",
        "list queues",
        "PUT and GET subscriptions",
        "ping/pong",
        "queue observations query",
        "conversation details query: a page of 1000 is a 400",
    ] {
        assert!(
            stdout.contains(step),
            "step {step:?} not reported:\n{stdout}"
        );
    }
    sim.stop().await;
}
