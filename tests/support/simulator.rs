//! The Genesys Cloud simulator, run as `genesys-kafka-bridge simulate`,
//! and the tests' calls on its control API (`/sim/…`): generating events,
//! setting faults, reading its state.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{eventually, http, Proc, BRIDGE};

/// The simulator's base URLs. Derefs to (and prints as) the API base URL,
/// which REST, WebSocket and the control API (`/sim/…`) share; login is a
/// host of its own, as on Genesys Cloud.
#[derive(Debug, Clone)]
pub struct SimUrls {
    pub api: String,
    pub login: String,
}

impl std::ops::Deref for SimUrls {
    type Target = str;
    fn deref(&self) -> &str {
        &self.api
    }
}

impl std::fmt::Display for SimUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.api)
    }
}

/// The simulator, run as `genesys-kafka-bridge simulate`.
pub struct Simulator {
    pub proc: Proc,
    pub url: SimUrls,
}

impl Simulator {
    pub fn start(dir: &Path, args: &[&str]) -> Simulator {
        let mut cmd = Command::new(BRIDGE);
        cmd.arg("simulate")
            .args(["--listen", "127.0.0.1:0"])
            .args(args);
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        let log = dir.join("simulator.log");
        cmd.stderr(Stdio::from(File::create(&log).unwrap()));
        let mut child = cmd.spawn().expect("the simulator starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut line = |prefix: &str| {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("the simulator prints {prefix:?}"))
                .expect("readable stdout");
            line.strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected {prefix:?} from the simulator, got {line:?}"))
                .trim()
                .to_owned()
        };
        let api = line("listening on ");
        let login = line("login on ");
        let url = SimUrls { api, login };
        // Keep draining stdout so the simulator never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Simulator {
            proc: Proc {
                name: "simulator".into(),
                child,
                log,
            },
            url,
        }
    }

    /// `POST` to a control endpoint (`/sim/faults`, …), which must answer
    /// 200; its JSON reply.
    pub fn control(&self, path: &str, body: Value) -> Value {
        let reply = http::post_json(&format!("{}{path}", self.url), &body).unwrap();
        assert_eq!(reply.status, 200, "POST {path}: {}", reply.body);
        serde_json::from_str(&reply.body).unwrap()
    }

    /// `POST /sim/generate` with `body` (`count`, `topics`, …): the
    /// events emitted now; the reply (`delivered`, `last_seq`, …).
    pub fn generate_with(&self, body: Value) -> Value {
        self.control("/sim/generate", body)
    }

    /// Emits `count` events now; asserts every one reached a socket.
    pub fn generate(&self, count: usize) {
        let reply = self.generate_with(serde_json::json!({ "count": count }));
        assert_eq!(reply["delivered"].as_u64(), Some(count as u64), "{reply}");
    }

    /// Starts a background job of `count` events at `rate` a second.
    pub fn generate_in_background(&self, count: u64, rate: f64) {
        let body = serde_json::json!({ "count": count, "rate_per_sec": rate });
        let reply = http::post_json(&format!("{}/sim/generate", self.url), &body).unwrap();
        assert_eq!(reply.status, 202, "{}", reply.body);
    }

    /// Waits until no background generation job runs any more.
    pub fn wait_generated(&self, limit: Duration) {
        eventually("the generator to finish", limit, || {
            (self.state()["generator_running"] == false).then_some(())
        });
    }

    /// `GET /sim/state`: channels with their topics, tokens, counts of
    /// what was emitted and refused, faults set.
    pub fn state(&self) -> Value {
        let reply = http::get(&format!("{}/sim/state", self.url)).unwrap();
        assert_eq!(reply.status, 200, "GET /sim/state: {}", reply.body);
        serde_json::from_str(&reply.body).unwrap()
    }

    /// Every topic subscribed on the live channels, channel by channel.
    pub fn subscribed_topics(&self) -> Vec<String> {
        let state = self.state();
        state["channels"]
            .as_array()
            .unwrap_or_else(|| panic!("no channels in /sim/state: {state}"))
            .iter()
            .flat_map(|c| c["topics"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect()
    }
}
