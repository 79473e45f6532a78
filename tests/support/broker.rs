//! The Kafka broker of the tests: a Tansu process with a durable (sqlite)
//! store, which a test can `kill -9` and start again on the same port and
//! store.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{eventually, free_port, Proc};

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
