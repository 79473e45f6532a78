//! Outbound proxies, with real processes: the bridge reaches the simulator
//! only through a real HTTP proxy (Debian's `tinyproxy`), by CONNECT
//! tunnels for the token, REST and WebSocket connections alike, and every
//! event still arrives in Kafka exactly once, across a proxy outage too.
//! Proxy credentials never show in the bridge's logs, metrics or status.
//!
//! `tinyproxy` is found through `TINYPROXY_BIN`, else `PATH`; without it
//! the tests fail (install: `apt-get install tinyproxy`, as scripts/test
//! and .ci/run do) unless `BRIDGE_TESTS_SKIP_PROXY=1` says to skip them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use support::{
    bridge_config, eventually, free_port, http, ledger, wait_for_port, with_genesys_keys, Bridge,
    Proc, SimUrls, Stack,
};

const PROXY_USER: &str = "alice";
/// Percent-encoded in the proxy URL as `s3cr3t%2Dpw`: the bridge must
/// decode it to be let through.
const PROXY_PASSWORD: &str = "s3cr3t-pw";

/// The tinyproxy binary, or `None` when the tests are to be skipped.
fn tinyproxy_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TINYPROXY_BIN") {
        return Some(path.into());
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|dir: PathBuf| dir.join("tinyproxy"))
        .find(|candidate| candidate.is_file());
    if on_path.is_some() {
        return on_path;
    }
    if std::env::var_os("BRIDGE_TESTS_SKIP_PROXY").is_some_and(|v| v == "1") {
        eprintln!("tinyproxy not found; skipped (BRIDGE_TESTS_SKIP_PROXY=1)");
        return None;
    }
    panic!(
        "tinyproxy not found (TINYPROXY_BIN, PATH): install it with `apt-get install tinyproxy` \
         (scripts/test and .ci/run do), or set BRIDGE_TESTS_SKIP_PROXY=1 to skip the proxy tests"
    );
}

/// A tinyproxy process on a port of its own, logging every CONNECT.
struct Tinyproxy {
    proc: Proc,
    bin: PathBuf,
    conf: PathBuf,
    dir: PathBuf,
    port: u16,
    log: PathBuf,
}

impl Tinyproxy {
    /// With `BasicAuth` when `credentials` are given.
    fn start(bin: PathBuf, dir: &Path, credentials: Option<(&str, &str)>) -> Tinyproxy {
        let port = free_port();
        let log = dir.join("tinyproxy-access.log");
        let conf = dir.join("tinyproxy.conf");
        let auth = credentials
            .map(|(user, password)| format!("BasicAuth {user} {password}\n"))
            .unwrap_or_default();
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 600\nLogFile \"{}\"\nLogLevel Connect\n\
                 MaxClients 200\nAllow 127.0.0.1\n{auth}",
                log.display()
            ),
        )
        .unwrap();
        let proc = Self::spawn(&bin, &conf, dir);
        wait_for_port(&format!("127.0.0.1:{port}"), Duration::from_secs(10));
        Tinyproxy {
            proc,
            bin,
            conf,
            dir: dir.to_owned(),
            port,
            log,
        }
    }

    fn spawn(bin: &Path, conf: &Path, dir: &Path) -> Proc {
        let mut cmd = Command::new(bin);
        cmd.arg("-d").arg("-c").arg(conf);
        Proc::spawn("tinyproxy", cmd, dir)
    }

    /// Start again on the same port, after [`Proc::kill9`].
    fn restart(&mut self) {
        self.proc = Self::spawn(&self.bin, &self.conf, &self.dir);
        wait_for_port(&format!("127.0.0.1:{}", self.port), Duration::from_secs(10));
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The CONNECT requests tinyproxy logged for `target` (`host:port`),
    /// and how many tunnels it then opened.
    fn connects_to(&self, target: &str) -> (usize, usize) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let requests = text
            .lines()
            .filter(|l| l.contains(&format!("CONNECT {target} HTTP/1.1")))
            .count();
        let established = text
            .lines()
            .filter(|l| l.contains("Established connection to host"))
            .count();
        (requests, established)
    }
}

/// `host:port` of the simulator's URL.
fn authority(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned()
}

/// The tests' bridge configuration for runs without a simulator or
/// broker (no event ever flows): `url` for login and API, Kafka nowhere.
fn standalone_config(url: &str, buffer: &Path) -> String {
    let urls = SimUrls {
        api: url.to_owned(),
        login: url.to_owned(),
    };
    bridge_config(&urls, "127.0.0.1:9", buffer)
}

/// Every rendering of the proxy password that must never be shown.
fn password_renderings(user: &str, password: &str) -> Vec<String> {
    vec![
        password.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
    ]
}

fn assert_nothing_shows(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what} shows the proxy credentials ({secret}):\n{text}"
        );
    }
}

#[test]
fn events_flow_through_the_proxy_exactly_once_across_a_proxy_outage() {
    let Some(tinyproxy) = tinyproxy_bin() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    events_through_the_proxy(tinyproxy, dir.path(), &[], "");
}

/// Over TLS, as the real service is: https and wss inside the tunnels,
/// the simulator's certificate signed by a private CA that the bridge
/// trusts only through `genesys.ca_file`.
#[test]
fn events_flow_through_the_proxy_exactly_once_over_tls() {
    let Some(tinyproxy) = tinyproxy_bin() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files = genesys_simulator::TestCa::generate()
        .unwrap()
        .write_to(dir.path())
        .unwrap();
    http::trust_ca(&files.ca_cert);
    let (cert, key) = (
        files.server_cert.to_str().unwrap(),
        files.server_key.to_str().unwrap(),
    );
    let ca_key = format!("ca_file = \"{}\"", files.ca_cert.display());
    events_through_the_proxy(
        tinyproxy,
        dir.path(),
        &["--tls-cert", cert, "--tls-key", key],
        &ca_key,
    );
}

/// The simulator (started with `simulator_flags`) reached only through
/// tinyproxy, the proxy given in the environment (`HTTPS_PROXY` or
/// `HTTP_PROXY`, as the simulator's scheme calls for) with credentials,
/// the bridge's configuration extended by `genesys_keys`: 1,000 events,
/// the proxy killed and restarted, 1,000 more, each in Kafka exactly once.
fn events_through_the_proxy(
    tinyproxy: PathBuf,
    dir: &Path,
    simulator_flags: &[&str],
    genesys_keys: &str,
) {
    const BATCH: usize = 1_000;
    let mut proxy = Tinyproxy::start(tinyproxy, dir, Some((PROXY_USER, PROXY_PASSWORD)));
    let tls = simulator_flags.contains(&"--tls-cert");
    let proxy_variable = if tls { "HTTPS_PROXY" } else { "HTTP_PROXY" };
    // The proxy from the environment, as an operator sets it; `no_proxy =
    // ""` so that a `NO_PROXY` inherited from the test's environment (CI
    // machines often list 127.0.0.1) cannot send the bridge around it.
    let proxy_url = format!("http://{PROXY_USER}:s3cr3t%2Dpw@{}", proxy.address());
    let stack = Stack::builder(dir)
        .queues(20)
        .simulator_args(simulator_flags)
        .genesys_keys(&format!("no_proxy = \"\"\n{genesys_keys}"))
        .env(proxy_variable, &proxy_url)
        .env("https_proxy", "")
        .env("http_proxy", "")
        .env("wss_proxy", "")
        .env("ws_proxy", "")
        .env("all_proxy", "")
        .start();
    let (broker, sim, bridge) = (&stack.broker, &stack.sim, &stack.bridge);
    assert_eq!(
        sim.url.starts_with("https://"),
        tls,
        "{proxy_variable} is the variable for {}",
        sim.url
    );
    sim.generate(BATCH);
    bridge.wait_forwarded(BATCH, Duration::from_secs(120));

    let target = authority(&sim.url);
    let (requests, established) = proxy.connects_to(&target);
    println!("proxy: {requests} CONNECT {target} requests, {established} tunnels opened");
    // At least the login and REST connection and the WebSocket's.
    assert!(
        requests >= 2 && established >= 2,
        "the bridge did not go through the proxy: {requests} CONNECTs, {established} tunnels"
    );

    // The proxy goes away: the tunnels die with it, which a direct
    // connection would not notice, and reconnecting fails clearly.
    let open_before = bridge
        .wait_for_metrics("the socket open", Duration::from_secs(30), |m| {
            m.get("gkb_connections_open") == 1.0
        })
        .get("gkb_connections_open");
    proxy.proc.kill9();
    // Only a WebSocket that runs through the proxy falls with it.
    bridge.wait_for_metrics(
        "the WebSocket to fall with the proxy",
        Duration::from_secs(60),
        |m| m.get("gkb_connections_open") < open_before,
    );
    let shown_proxy = format!("http://********@{}", proxy.address());
    eventually(
        "the bridge to report the proxy unreachable",
        Duration::from_secs(60),
        || {
            let log = bridge.proc.log_text();
            (log.contains("cannot reach proxy") && log.contains(&shown_proxy)).then_some(())
        },
    );
    proxy.restart();
    bridge.wait_ready();
    sim.generate(BATCH);
    bridge.wait_forwarded(2 * BATCH, Duration::from_secs(120));
    let (requests_after, _) = proxy.connects_to(&target);
    assert!(
        requests_after > requests,
        "no new CONNECT after the proxy came back"
    );

    ledger::assert_exactly_once(
        &format!(
            "proxy e2e: {} events through {requests_after} CONNECTs",
            2 * BATCH
        ),
        sim,
        broker,
        2 * BATCH,
    );

    let log = bridge.proc.log_text();
    let routes = log
        .lines()
        .find(|l| l.contains("outbound proxy for Genesys connections"))
        .expect("the routes are logged at start-up");
    assert!(
        routes.contains(&format!("{shown_proxy} (from {proxy_variable})")),
        "{routes}"
    );
    let secrets = password_renderings(PROXY_USER, PROXY_PASSWORD);
    assert_nothing_shows("the bridge's log", &log, &secrets);
    assert_nothing_shows("/metrics", &bridge.metrics().unwrap(), &secrets);
    for endpoint in ["/readyz", "/status"] {
        let reply = http::get(&format!("{}{endpoint}", bridge.health)).unwrap();
        assert_eq!(reply.status, 200, "{endpoint}: {}", reply.body);
        assert_nothing_shows(endpoint, &reply.body, &secrets);
    }
}

#[test]
fn proxy_authentication_failures_are_named_and_leak_nothing() {
    let Some(tinyproxy) = tinyproxy_bin() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let proxy = Tinyproxy::start(tinyproxy, dir.path(), Some((PROXY_USER, PROXY_PASSWORD)));
    let sim = Stack::builder(dir.path()).start_simulator();
    let wrong_password = "wr0ng-pw-value";
    for (case, keys, expected, shown_proxy) in [
        (
            "no credentials",
            format!("proxy_url = \"http://{}\"", proxy.address()),
            "proxy authentication required",
            format!("http://{}", proxy.address()),
        ),
        (
            "a wrong password",
            format!(
                "proxy_url = \"http://{PROXY_USER}@{}\"\nproxy_password_env = \"E2E_PROXY_PASSWORD\"",
                proxy.address()
            ),
            "proxy authentication failed",
            format!("http://********@{}", proxy.address()),
        ),
    ] {
        let case_dir = dir.path().join(case.replace(' ', "-"));
        std::fs::create_dir_all(&case_dir).unwrap();
        // Kafka plays no part: the bridge never gets a token.
        let mut bridge = Stack::builder(&case_dir)
            .genesys_keys(&keys)
            .env("E2E_PROXY_PASSWORD", wrong_password)
            .start_bridge(&sim, "127.0.0.1:9");
        let line = bridge.proc.wait_log_line(
            &format!("the bridge to report the proxy's refusal ({case})"),
            expected,
            Duration::from_secs(60),
        );
        println!("{case}: {line}");
        assert!(line.contains(&shown_proxy), "{case}: {line}");
        let ready = http::get(&format!("{}/readyz", bridge.health)).unwrap();
        assert_ne!(ready.status, 200, "{case}: ready without a token");
        bridge.proc.terminate();
        let secrets = password_renderings(PROXY_USER, wrong_password);
        assert_nothing_shows("the bridge's log", &bridge.proc.log_text(), &secrets);
        assert_nothing_shows("/readyz", &ready.body, &secrets);
    }
}

/// `check-config` with the bridge's test configuration plus `keys` under
/// `[genesys]`: exit code and stderr.
fn check_config(dir: &Path, keys: &str, env: &[(&str, &str)]) -> (i32, String) {
    let path = dir.join("check.toml");
    let config = with_genesys_keys(
        standalone_config("http://127.0.0.1:9", &dir.join("buffer")),
        keys,
    );
    std::fs::write(&path, config).unwrap();
    let out = Command::new(support::BRIDGE)
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .env("E2E_CLIENT_SECRET", "x")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

type EnvVar = (&'static str, &'static str);

#[test]
fn bad_proxy_and_ca_settings_exit_78_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_a_pem, "hello\n").unwrap();
    let cases: Vec<(String, Vec<EnvVar>, &str)> = vec![
        (
            "proxy_url = \"socks5://u@proxy:1080\"".into(),
            vec![],
            "genesys.proxy_url",
        ),
        (
            "proxy_url = \"http://alice:hunter2-pw@proxy:3128\"".into(),
            vec![],
            "genesys.proxy_url",
        ),
        (
            "proxy_url = \"http://proxy:99999\"".into(),
            vec![],
            "genesys.proxy_url",
        ),
        (
            "no_proxy = \"10.0.0.0/99\"".into(),
            vec![],
            "genesys.no_proxy",
        ),
        (
            "ca_file = \"/nonexistent/ca.pem\"".into(),
            vec![],
            "genesys.ca_file",
        ),
        (
            format!("ca_file = \"{}\"", not_a_pem.display()),
            vec![],
            "genesys.ca_file",
        ),
        (
            String::new(),
            vec![("HTTPS_PROXY", "ftp://bob:hunter2-pw@proxy")],
            "genesys.proxy_url",
        ),
        (
            "proxy_url = \"http://alice@proxy:3128\"\nproxy_password_env = \"UNSET_PROXY_PW\""
                .into(),
            vec![],
            "genesys.proxy_password_env",
        ),
    ];
    for (keys, env, key) in cases {
        let (code, output) = check_config(dir.path(), &keys, &env);
        assert_eq!(code, 78, "{keys} {env:?}: {output}");
        assert!(output.contains(key), "{keys} {env:?}: {output}");
        assert!(
            !output.contains("hunter2-pw"),
            "{keys} {env:?}: the password shows: {output}"
        );
    }
    // And a good setting passes, printed with its credentials masked.
    let (code, output) = check_config(
        dir.path(),
        "proxy_url = \"http://alice@proxy:3128\"\nproxy_password_env = \"PROXY_PW\"",
        &[("PROXY_PW", "hunter2-pw")],
    );
    assert_eq!(code, 0, "{output}");
    assert!(!output.contains("hunter2-pw"), "{output}");
}

/// A TLS origin for the `ca_file` test: answers `POST /oauth/token` with
/// a token and everything else with 404, and logs each request's line.
const TLS_ORIGIN: &str = r#"
import http.server, json, ssl, sys
cert, key, log = sys.argv[1], sys.argv[2], sys.argv[3]
class Handler(http.server.BaseHTTPRequestHandler):
    def record(self):
        with open(log, "a") as f:
            f.write(self.command + " " + self.path + "\n")
    def do_POST(self):
        self.record()
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.startswith("/oauth/token"):
            body = json.dumps({"access_token": "tls-token", "token_type": "bearer", "expires_in": 86400}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            body = b"{}"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.record()
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("listening on https://127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A CA and a certificate it signed for 127.0.0.1, made with the
/// `openssl` command: `(ca.pem, server.pem, server.key)`.
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command runs");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=gkb test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "server.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[test]
fn tls_inside_the_tunnel_trusts_the_ca_file_and_only_it() {
    let Some(tinyproxy) = tinyproxy_bin() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(dir.path());
    let proxy = Tinyproxy::start(tinyproxy, dir.path(), None);
    let script = dir.path().join("origin.py");
    std::fs::write(&script, TLS_ORIGIN).unwrap();
    let requests = dir.path().join("origin-requests.log");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(&cert).arg(&key).arg(&requests);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut origin = KillOnDrop(cmd.spawn().expect("python3 runs"));
    let origin_url = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(origin.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the TLS origin: {line:?}"))
            .to_owned()
    };
    let base = standalone_config(&origin_url, &dir.path().join("buffer"));
    let proxy_key = format!("proxy_url = \"http://{}\"", proxy.address());

    // Without the CA, the origin's certificate is refused inside the tunnel.
    let untrusted_dir = dir.path().join("untrusted");
    std::fs::create_dir_all(&untrusted_dir).unwrap();
    let mut bridge = Bridge::start(
        &untrusted_dir,
        &with_genesys_keys(base.clone(), &proxy_key),
        &[("E2E_CLIENT_SECRET", "x")],
    );
    let refusal = bridge.proc.wait_log_line(
        "the bridge to refuse the origin's certificate",
        "certificate verify failed",
        Duration::from_secs(60),
    );
    println!("without ca_file: {refusal}");
    bridge.proc.terminate();
    assert!(
        std::fs::read_to_string(&requests)
            .unwrap_or_default()
            .is_empty(),
        "a request reached the origin over an unverified connection"
    );

    // With it, the login goes through: the origin sees the token request.
    let trusted_dir = dir.path().join("trusted");
    std::fs::create_dir_all(&trusted_dir).unwrap();
    let mut bridge = Bridge::start(
        &trusted_dir,
        &with_genesys_keys(
            base,
            &format!("{proxy_key}\nca_file = \"{}\"", ca.display()),
        ),
        &[("E2E_CLIENT_SECRET", "x")],
    );
    let seen = eventually(
        "the token request to reach the TLS origin",
        Duration::from_secs(60),
        || {
            let text = std::fs::read_to_string(&requests).unwrap_or_default();
            text.contains("POST /oauth/token").then_some(text)
        },
    );
    bridge.proc.terminate();
    drop(origin);
    let target = authority(&origin_url);
    let (connects, _) = proxy.connects_to(&target);
    println!(
        "with ca_file: origin saw {:?}; proxy logged {connects} CONNECT {target}",
        seen.lines().collect::<Vec<_>>()
    );
    assert!(
        connects >= 2,
        "both attempts should have tunnelled through the proxy: {connects} CONNECTs"
    );
    assert!(
        !bridge.proc.log_text().contains("certificate verify failed"),
        "{}",
        bridge.proc.log_text()
    );
}
