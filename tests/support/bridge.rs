//! The bridge, run as `genesys-kafka-bridge run --config FILE`, and what a
//! test reads from it: readiness, `/metrics`, the dead-letter listing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::{eventually, free_port, http, Proc, BRIDGE};

/// The bridge, run as `genesys-kafka-bridge run --config FILE`.
pub struct Bridge {
    pub proc: Proc,
    pub health: String,
    pub config: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Bridge {
    pub fn start(dir: &Path, config_text: &str, env: &[(&str, &str)]) -> Bridge {
        let config = dir.join("bridge.toml");
        std::fs::write(&config, config_text).unwrap();
        let port = free_port();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .chain([("GKB_HEALTH__LISTEN".to_owned(), format!("127.0.0.1:{port}"))])
            .collect();
        let proc = Self::spawn(dir, &config, &env);
        Bridge {
            proc,
            health: format!("http://127.0.0.1:{port}"),
            config,
            dir: dir.to_owned(),
            env,
        }
    }

    fn spawn(dir: &Path, config: &Path, env: &[(String, String)]) -> Proc {
        let mut cmd = Command::new(BRIDGE);
        cmd.arg("run").arg("--config").arg(config);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        // A test that passes RUST_LOG itself gets exactly that level.
        if std::env::var_os("RUST_LOG").is_none() && !env.iter().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn");
        }
        Proc::spawn("bridge", cmd, dir)
    }

    /// Start again with the same configuration (after a kill).
    pub fn restart(&mut self) {
        self.proc = Self::spawn(&self.dir, &self.config, &self.env);
    }

    pub fn wait_ready(&self) {
        eventually("the bridge to be ready", Duration::from_secs(90), || {
            http::get(&format!("{}/readyz", self.health))
                .ok()
                .filter(|r| r.status == 200)
        });
    }

    /// Waits until /readyz is red (503) and names `what` (a Kafka topic
    /// the broker refuses, …); returns its body.
    pub fn wait_unready_naming(&self, what: &str) -> String {
        eventually(
            &format!("/readyz to name {what}"),
            Duration::from_secs(60),
            || {
                let r = http::get(&format!("{}/readyz", self.health)).ok()?;
                (r.status == 503 && r.body.contains(what)).then_some(r.body)
            },
        )
    }

    /// `/status`, when the bridge answers it.
    pub fn status(&self) -> Option<serde_json::Value> {
        let reply = http::get(&format!("{}/status", self.health)).ok()?;
        (reply.status == 200).then(|| serde_json::from_str(&reply.body).unwrap())
    }

    /// The /metrics text, when the bridge answers.
    pub fn metrics(&self) -> Option<String> {
        http::get(&format!("{}/metrics", self.health))
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| r.body)
    }

    /// Waits until a /metrics scrape satisfies `done`; returns that scrape.
    pub fn wait_for_metrics(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        eventually(what, limit, || {
            let scrape = Metrics(self.metrics()?);
            done(&scrape).then_some(scrape)
        })
    }

    /// Waits until the bridge received at least `events` and every event
    /// it holds is durable in the buffer (flushed to disk).
    pub fn wait_received_and_flushed(&self, events: usize, limit: Duration) -> Metrics {
        // Received counts an event once it is queued for the buffer's
        // writer: first every one written (the queue empty), then what
        // was written by then durable. (`last_seq` and `durable_seq` of
        // one scrape alone could both predate a write still queued.)
        self.wait_for_metrics(
            &format!("{events} events received and written"),
            limit,
            |m| {
                m.get("gkb_events_received_total") >= events as f64
                    && m.get("gkb_buffer_write_queue_bytes") == 0.0
            },
        );
        let written = self
            .metrics()
            .and_then(|text| metric(&text, "gkb_buffer_last_seq"))
            .unwrap_or(f64::INFINITY);
        self.wait_for_metrics(
            &format!("{events} events received and flushed"),
            limit,
            |m| m.get("gkb_buffer_durable_seq") >= written,
        )
    }

    /// Waits until Kafka acknowledged at least `events` and the buffer is empty.
    pub fn wait_forwarded(&self, events: usize, limit: Duration) -> Metrics {
        self.wait_for_metrics(
            &format!("{events} events forwarded and the buffer empty"),
            limit,
            |m| {
                m.get("gkb_events_forwarded_total") >= events as f64
                    && m.get("gkb_buffer_events") == 0.0
            },
        )
    }
}

/// One /metrics scrape.
pub struct Metrics(pub String);

impl Metrics {
    /// A metric's value; NaN when absent, so that every comparison fails.
    pub fn get(&self, name: &str) -> f64 {
        metric(&self.0, name).unwrap_or(f64::NAN)
    }
}

/// A Prometheus counter or gauge value from /metrics text.
///
/// A labelled metric (`gkb_reconnects_total{connection="0",reason="dropped"}`)
/// is the sum of its series; one declared (`# TYPE`) without any series
/// yet is 0.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    let mut declared = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            declared |= rest.split_whitespace().next() == Some(name);
            continue;
        }
        let (series, value) = match (line.find('{'), line.rfind('}')) {
            (Some(open), Some(close)) if open < close => {
                (&line[..open], line[close + 1..].split_whitespace().next())
            }
            // A malformed line is not this reader's to judge.
            (Some(_), _) => continue,
            (None, _) => {
                let mut words = line.split_whitespace();
                (words.next().unwrap_or(""), words.next())
            }
        };
        if series == name {
            if let Some(value) = value.and_then(|v| v.parse::<f64>().ok()) {
                *sum.get_or_insert(0.0) += value;
            }
        }
    }
    sum.or(declared.then_some(0.0))
}

/// `dead-letters --buffer DIR` (from the running bridge's control socket,
/// or from the files of a stopped one), which must succeed: its stdout,
/// one JSON line per dead letter.
pub fn list_dead_letters(buffer: &Path) -> String {
    let out = Command::new(BRIDGE)
        .arg("dead-letters")
        .arg("--buffer")
        .arg(buffer)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dead-letters failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("dead-letters prints UTF-8")
}

/// `dead-letters --buffer DIR --replay --config FILE`, given the client
/// secret and `env`: what it printed and how it ended (a refusal, a
/// locked buffer, …, are the caller's to check).
pub fn replay_dead_letters(
    buffer: &Path,
    config: &Path,
    secret: &str,
    env: &[(&str, &str)],
) -> Output {
    Command::new(BRIDGE)
        .arg("dead-letters")
        .arg("--buffer")
        .arg(buffer)
        .arg("--replay")
        .arg("--config")
        .arg(config)
        .env("E2E_CLIENT_SECRET", secret)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}
