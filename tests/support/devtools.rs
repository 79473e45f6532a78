//! Headless chromium driven over the Chrome DevTools protocol, for tests
//! of what a browser shows: the browser started on one URL in a process
//! group of its own, and a client on a minimal WebSocket that attaches to
//! the page and evaluates JavaScript in it.
//!
//! chromium is found through `CHROMIUM_BIN`, else `PATH`; without it a
//! test fails, unless `BRIDGE_TESTS_SKIP_BROWSER=1` says to skip it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::eventually;

/// chromium, or `None` when the run says to skip browser tests.
pub fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("CHROMIUM_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            let paths = std::env::var_os("PATH")?;
            std::env::split_paths(&paths).find_map(|dir| {
                ["chromium", "chromium-browser", "google-chrome"]
                    .iter()
                    .map(|name| dir.join(name))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() && std::env::var("BRIDGE_TESTS_SKIP_BROWSER").as_deref() == Ok("1") {
        println!("SKIPPED: chromium is missing and BRIDGE_TESTS_SKIP_BROWSER=1");
        return None;
    }
    Some(found.expect(
        "chromium is missing: 'apt-get install chromium' (Debian), or set CHROMIUM_BIN, \
         or BRIDGE_TESTS_SKIP_BROWSER=1 to skip the browser test",
    ))
}

/// Headless chromium showing one URL, in a process group of its own so
/// that its helper processes end with it.
pub struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Browser {
    pub fn open(chromium: &Path, profile: &Path, url: &str) -> Browser {
        std::fs::create_dir_all(profile).unwrap();
        let log = std::fs::File::create(profile.with_extension("log")).unwrap();
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--disable-gpu",
                // The test runs as root in CI containers, where the
                // sandbox cannot start.
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
        Browser {
            child,
            profile: profile.to_owned(),
        }
    }

    /// The DevTools connection to the page showing `url`.
    pub fn page(&mut self, url: &str) -> Cdp {
        // chromium writes the port it took (asked for 0) and the browser's
        // DevTools path into the profile.
        let port_file = self.profile.join("DevToolsActivePort");
        let browser = eventually("chromium's DevTools port", Duration::from_secs(60), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chromium exited with {status}:\n{}", self.log());
            }
            let text = std::fs::read_to_string(&port_file).ok()?;
            let mut lines = text.lines();
            let port: u16 = lines.next()?.trim().parse().ok()?;
            let path = lines.next()?.trim();
            Some(format!("ws://127.0.0.1:{port}{path}"))
        });
        let mut cdp = Cdp::connect(&browser);
        let target = eventually(
            "the page's DevTools target",
            Duration::from_secs(30),
            || {
                let targets = cdp.call("Target.getTargets", json!({}));
                targets["targetInfos"]
                    .as_array()?
                    .iter()
                    .find(|t| t["type"] == "page" && t["url"].as_str() == Some(url))
                    .map(|t| t["targetId"].clone())
            },
        );
        let attached = cdp.call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        cdp.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
        cdp
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.profile.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group is chromium and its helpers, all started here.
        let group = -(self.child.id() as i32);
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- chromium ----\n{}", self.log());
        }
    }
}

/// A DevTools protocol client on a minimal WebSocket (RFC 6455: masked
/// text frames out, unmasked frames in), enough for `Runtime.evaluate`.
pub struct Cdp {
    stream: BufReader<TcpStream>,
    next_id: u64,
    /// The page's session on the browser's connection, once attached.
    pub session: Option<String>,
}

impl Cdp {
    pub fn connect(url: &str) -> Cdp {
        let rest = url.strip_prefix("ws://").expect("a ws:// URL");
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut tcp = TcpStream::connect(host).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            tcp,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut stream = BufReader::new(tcp);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).unwrap();
            head.push_str(&line);
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        assert!(head.starts_with("HTTP/1.1 101"), "DevTools said: {head}");
        Cdp {
            stream,
            next_id: 1,
            session: None,
        }
    }

    fn send(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mask = [0x5a, 0x3c, 0x96, 0xe1];
        let mut frame = vec![0x81];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.get_mut().write_all(&frame).unwrap();
    }

    fn receive(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).unwrap();
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
            let len = match head[1] & 0x7f {
                126 => {
                    let mut n = [0u8; 2];
                    self.stream.read_exact(&mut n).unwrap();
                    u16::from_be_bytes(n) as usize
                }
                127 => {
                    let mut n = [0u8; 8];
                    self.stream.read_exact(&mut n).unwrap();
                    u64::from_be_bytes(n) as usize
                }
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload).unwrap();
            match opcode {
                0x8 => panic!("DevTools closed the connection"),
                0x9 | 0xa => continue,
                _ => message.extend_from_slice(&payload),
            }
            if fin {
                return String::from_utf8(message).unwrap();
            }
        }
    }

    /// A DevTools command (to the page once attached); its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            command["sessionId"] = session.clone().into();
        }
        self.send(&command.to_string());
        loop {
            let reply: Value = serde_json::from_str(&self.receive()).unwrap();
            // Events (no id) and answers to others are not this call's.
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page, or `None` if it
    /// threw (the page not loaded yet).
    pub fn evaluate(&mut self, expression: &str) -> Option<Value> {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        if result.get("exceptionDetails").is_some() {
            return None;
        }
        Some(result["result"]["value"].clone())
    }
}
