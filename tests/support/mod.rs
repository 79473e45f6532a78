//! Real processes for the end-to-end tests: a Tansu broker, the simulator
//! and the bridge, each its own OS process, stopped (or killed) on drop.
//! Their output goes to files in the test's temporary directory and is
//! printed when a test fails.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod consumer;
pub mod ledger;
pub mod tmpfs;

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

/// A child process whose output is logged to a file.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut command: Command, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let file = File::create(&log).unwrap();
        command
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .stdin(Stdio::null());
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.into(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), 15);
        self.child.wait().unwrap()
    }

    /// Resident memory now and at its peak, in KiB, from /proc.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn unsafe_kill(pid: u32, signal: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("---- last lines of {} ----", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The Tansu binary: `TANSU_BIN`, else `tansu` on PATH, else ~/.cargo/bin.
pub fn tansu_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return path.into();
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cargo_bin = home.join(".cargo/bin/tansu");
    if cargo_bin.exists() {
        return cargo_bin;
    }
    PathBuf::from("tansu")
}

/// A Tansu broker with a durable (sqlite) store.
pub struct Broker {
    pub proc: Proc,
    pub port: u16,
    dir: PathBuf,
}

impl Broker {
    pub fn start(dir: &Path) -> Broker {
        let port = free_port();
        let proc = Self::spawn(dir, port);
        Broker {
            proc,
            port,
            dir: dir.to_owned(),
        }
    }

    fn spawn(dir: &Path, port: u16) -> Proc {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(tansu_bin());
        cmd.arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // Tansu reads the sqlite path as relative: run it in its directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir);
        let mut proc = Proc::spawn("broker", cmd, dir);
        let addr = format!("127.0.0.1:{port}");
        eventually(
            "the broker to accept connections",
            Duration::from_secs(30),
            || {
                if let Ok(Some(status)) = proc.child.try_wait() {
                    panic!("the broker exited with {status}:\n{}", proc.log_text());
                }
                TcpStream::connect(&addr).ok()
            },
        );
        proc
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new(tansu_bin())
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
            ])
            .arg("--broker")
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .stdout(Stdio::null())
            .status()
            .expect("tansu topic create runs");
        assert!(status.success(), "creating topic {name} failed");
    }

    /// `kill -9` the broker (its store stays).
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Start again on the same port and store. After a long outage the
    /// port may be taken for a moment (a client's connect attempt can get
    /// it as its own ephemeral port): then the broker cannot listen, and
    /// it is started again.
    pub fn restart(&mut self) {
        for attempt in 1.. {
            self.proc = Self::spawn(&self.dir, self.port);
            std::thread::sleep(Duration::from_millis(500));
            let exited = matches!(self.proc.child.try_wait(), Ok(Some(_)));
            if !exited && !self.proc.log_text().contains("AddrInUse") {
                return;
            }
            assert!(
                attempt < 10,
                "the broker cannot listen again:\n{}",
                self.proc.log_text()
            );
            self.proc.kill9();
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

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
}

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
}

/// Minimal blocking HTTP/1.1 for the tests' control calls: keeps the test
/// side independent of the HTTP stack the bridge itself uses.
pub mod http {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub struct Response {
        pub status: u16,
        pub body: String,
        /// The status line and headers, as received.
        pub head: String,
    }

    impl Response {
        /// A header's value (the first, by case-insensitive name).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().skip(1).find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then_some(value.trim())
            })
        }
    }

    pub fn get(url: &str) -> std::io::Result<Response> {
        request("GET", url, None)
    }

    pub fn post_json(url: &str, body: &serde_json::Value) -> std::io::Result<Response> {
        request("POST", url, Some(body.to_string()))
    }

    pub fn delete(url: &str) -> std::io::Result<Response> {
        request("DELETE", url, None)
    }

    /// Any request with headers of the caller's (`Content-Type` included;
    /// JSON when not given).
    pub fn send(
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> std::io::Result<Response> {
        request_with(method, url, headers, body)
    }

    /// The CA that `https://` URLs must chain to (set once, by TLS tests).
    static TRUSTED_CA: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

    /// Trust `ca_file` (PEM) for `https://` calls from now on.
    pub fn trust_ca(ca_file: &std::path::Path) {
        let _ = TRUSTED_CA.set(ca_file.to_owned());
    }

    trait Stream: Read + Write {}
    impl<T: Read + Write> Stream for T {}

    fn connect(tls: bool, host: &str) -> std::io::Result<Box<dyn Stream>> {
        let tcp = TcpStream::connect(host)?;
        tcp.set_read_timeout(Some(Duration::from_secs(300)))?;
        if !tls {
            return Ok(Box::new(tcp));
        }
        let ca = TRUSTED_CA
            .get()
            .expect("https:// URL: call support::http::trust_ca first");
        let mut builder = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
            .map_err(std::io::Error::other)?;
        builder.set_ca_file(ca).map_err(std::io::Error::other)?;
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let stream = builder
            .build()
            .connect(name, tcp)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Box::new(stream))
    }

    fn request(method: &str, url: &str, body: Option<String>) -> std::io::Result<Response> {
        request_with(method, url, &[], &body.unwrap_or_default())
    }

    fn request_with(
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> std::io::Result<Response> {
        let (tls, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, url.strip_prefix("http://").expect("http(s):// URL")),
        };
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let mut stream = connect(tls, host)?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        write!(stream, "{head}\r\n{body}")?;
        let mut raw = Vec::new();
        if let Err(e) = stream.read_to_end(&mut raw) {
            // A TLS peer may close without close_notify after a full reply.
            if raw.is_empty() {
                return Err(e);
            }
        }
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Ok(Response {
            status,
            body,
            head: head.to_owned(),
        })
    }

    fn dechunk(mut body: &str) -> String {
        let mut out = String::new();
        while let Some((size, rest)) = body.split_once("\r\n") {
            let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
                break;
            };
            if n == 0 || rest.len() < n {
                break;
            }
            out.push_str(&rest[..n]);
            body = rest[n..].trim_start_matches("\r\n");
        }
        out
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

/// Kafka topics the process tests route to.
pub const TOPICS: [&str; 3] = [
    "genesys.queue-observations",
    "genesys.queue-conversations",
    "genesys.events",
];

/// The bridge configuration the process tests share: the simulator's API
/// and login base URLs, queue templates routed to [`TOPICS`], fast retries.
pub fn bridge_config(sim: &SimUrls, bootstrap: &str, buffer: &std::path::Path) -> String {
    bridge_config_with_buffer(sim, bootstrap, buffer, "")
}

/// The free-space floor of the tests' buffers: the lowest `check-config`
/// accepts, not the 256 MiB default, because CI machines may have little
/// disk free. tests/disk_full.rs sets its own floor to test it.
const TEST_MIN_FREE_BYTES: &str = "min_free_bytes = 4194304";

/// [`bridge_config`] with more `[buffer]` keys (TOML lines, e.g.
/// `max_bytes = 25165824`): its `[buffer]` section comes last.
pub fn bridge_config_with_buffer(
    sim: &SimUrls,
    bootstrap: &str,
    buffer: &std::path::Path,
    buffer_keys: &str,
) -> String {
    let floor = if buffer_keys.contains("min_free_bytes") {
        ""
    } else {
        TEST_MIN_FREE_BYTES
    };
    format!(
        r#"
[genesys]
api_base_url = "{api}"
login_base_url = "{login}"
client_id = "e2e-client"
client_secret_env = "E2E_CLIENT_SECRET"
ping_interval_secs = 5
heartbeat_timeout_secs = 20
retry_min_delay_ms = 100
retry_max_delay_ms = 2000

[topics]
per_queue = ["v2.analytics.queues.{{id}}.observations", "v2.routing.queues.{{id}}.conversations"]

[kafka]
bootstrap_servers = "{bootstrap}"
default_topic = "genesys.events"
routes = [
  {{ match = "v2.analytics.queues.*.observations", topic = "genesys.queue-observations" }},
  {{ match = "v2.routing.queues.*", topic = "genesys.queue-conversations" }},
]

[buffer]
path = "{buffer}"
{floor}
{buffer_keys}
"#,
        api = sim.api,
        login = sim.login,
        buffer = buffer.display()
    )
}

/// Broker (with [`TOPICS`] created), simulator and bridge, started in that
/// order, the bridge ready.
pub struct Stack {
    pub broker: Broker,
    pub sim: Simulator,
    pub bridge: Bridge,
    /// The OAuth client secret the bridge was given.
    pub secret: String,
}

impl Stack {
    pub fn start(dir: &Path, queues: usize) -> Stack {
        Self::start_with(dir, queues, &[], &[])
    }

    /// With extra simulator flags (e.g. short token or channel lifetimes)
    /// and extra bridge environment (e.g. `GKB_*` overrides).
    pub fn start_with(
        dir: &Path,
        queues: usize,
        simulator_flags: &[&str],
        bridge_env: &[(&str, &str)],
    ) -> Stack {
        Self::start_with_buffer(
            dir,
            queues,
            simulator_flags,
            bridge_env,
            &dir.join("buffer"),
            "",
        )
    }

    /// With the buffer at `buffer` and extra `[buffer]` keys (see
    /// [`bridge_config_with_buffer`]).
    pub fn start_with_buffer(
        dir: &Path,
        queues: usize,
        simulator_flags: &[&str],
        bridge_env: &[(&str, &str)],
        buffer: &Path,
        buffer_keys: &str,
    ) -> Stack {
        let broker = Broker::start(dir);
        for topic in TOPICS {
            broker.create_topic(topic, 3);
        }
        let secret = format!("test-secret-{}", std::process::id());
        let queues = queues.to_string();
        let mut flags = vec![
            "--client-id",
            "e2e-client",
            "--client-secret",
            &secret,
            "--queues",
            &queues,
        ];
        flags.extend_from_slice(simulator_flags);
        let sim = Simulator::start(dir, &flags);
        let bridge = Bridge::start(
            dir,
            &bridge_config_with_buffer(&sim.url, &broker.bootstrap(), buffer, buffer_keys),
            &[&[("E2E_CLIENT_SECRET", secret.as_str())], bridge_env].concat(),
        );
        bridge.wait_ready();
        Stack {
            broker,
            sim,
            bridge,
            secret,
        }
    }
}

impl Simulator {
    /// Emits `count` events now; asserts every one reached a socket.
    pub fn generate(&self, count: usize) {
        let reply = http::post_json(
            &format!("{}/sim/generate", self.url),
            &serde_json::json!({ "count": count }),
        )
        .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        let reply: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(reply["delivered"].as_u64(), Some(count as u64), "{reply}");
    }
}

impl Bridge {
    pub fn wait_ready(&self) {
        eventually("the bridge to be ready", Duration::from_secs(90), || {
            http::get(&format!("{}/readyz", self.health))
                .ok()
                .filter(|r| r.status == 200)
        });
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
