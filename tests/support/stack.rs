//! The stack a process test runs against, described by name rather than
//! by position: a Tansu broker with the topics of [`TOPICS`], the
//! simulator with an OAuth client whose secret the bridge is given, and
//! the bridge configured for both, started in that order.
//!
//! ```ignore
//! let stack = Stack::builder(dir.path())
//!     .queues(10)
//!     .simulator_args(&["--channel-ttl", "20"])
//!     .env("GKB_TOPICS__REFRESH_INTERVAL_SECS", "5")
//!     .start();
//! let (sim, bridge) = (&stack.sim, &stack.bridge);
//! ```
//!
//! The stack is kept whole and its parts borrowed: it stops all three
//! when it goes, at the end of the test (a `let Stack { sim, .. } =`
//! pattern would stop the parts it leaves out at once).

use std::path::{Path, PathBuf};

use super::config::{bridge_config_with_buffer, with_genesys_keys, TOPICS};
use super::{Bridge, Broker, Simulator};

/// Broker, simulator and bridge, started by a [`StackBuilder`].
pub struct Stack {
    pub broker: Broker,
    pub sim: Simulator,
    pub bridge: Bridge,
    /// The OAuth client secret the bridge was given.
    pub secret: String,
}

impl Stack {
    /// A stack in `dir` with the defaults of [`StackBuilder`], to be
    /// changed by its methods and started by [`StackBuilder::start`].
    pub fn builder(dir: &Path) -> StackBuilder {
        StackBuilder {
            dir: dir.to_owned(),
            queues: 10,
            secret: format!("test-secret-{}", std::process::id()),
            simulator_args: Vec::new(),
            bridge_env: Vec::new(),
            buffer: dir.join("buffer"),
            buffer_keys: String::new(),
            genesys_keys: String::new(),
            snapshot_keys: "enabled = false".to_owned(),
            backfill_keys: "enabled = false".to_owned(),
            missing_topic: None,
        }
    }
}

/// What a [`Stack`] is to be. By default: 10 queues in the simulator's
/// directory, every topic of [`TOPICS`] created with 3 partitions, the
/// buffer at `DIR/buffer`, the shared test configuration
/// ([`bridge_config`](super::bridge_config)) unchanged.
pub struct StackBuilder {
    dir: PathBuf,
    queues: usize,
    secret: String,
    simulator_args: Vec<String>,
    bridge_env: Vec<(String, String)>,
    buffer: PathBuf,
    buffer_keys: String,
    genesys_keys: String,
    snapshot_keys: String,
    backfill_keys: String,
    missing_topic: Option<String>,
}

impl StackBuilder {
    /// Queues in the simulator's directory (two topics each).
    pub fn queues(mut self, queues: usize) -> Self {
        self.queues = queues;
        self
    }

    /// More simulator flags (short token or channel lifetimes, TLS, …).
    pub fn simulator_args(mut self, args: &[&str]) -> Self {
        self.simulator_args
            .extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// A variable in the bridge's environment (a `GKB_*` override, …).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.bridge_env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The buffer at `path` instead of `DIR/buffer`.
    pub fn buffer(mut self, path: &Path) -> Self {
        self.buffer = path.to_owned();
        self
    }

    /// More `[buffer]` keys (TOML lines; see
    /// [`bridge_config_with_buffer`]).
    pub fn buffer_keys(mut self, keys: &str) -> Self {
        self.buffer_keys = keys.to_owned();
        self
    }

    /// More `[genesys]` keys (TOML lines; see [`with_genesys_keys`]).
    pub fn genesys_keys(mut self, keys: &str) -> Self {
        self.genesys_keys = keys.to_owned();
        self
    }

    /// The `[snapshots]` keys (TOML lines). The stack's default is
    /// `enabled = false`: most tests count the events in the buffer or in
    /// Kafka exactly, and snapshot records are neither received nor
    /// events. Tests of snapshots, and the end-to-end ledger (which counts
    /// the records the bridge made apart), turn them on.
    pub fn snapshot_keys(mut self, keys: &str) -> Self {
        self.snapshot_keys = keys.to_owned();
        self
    }

    /// The `[backfill]` keys (TOML lines); off by default for the same
    /// reason as snapshots.
    pub fn backfill_keys(mut self, keys: &str) -> Self {
        self.backfill_keys = keys.to_owned();
        self
    }

    /// One topic of [`TOPICS`] not created: the broker refuses its records.
    pub fn without_topic(mut self, topic: &str) -> Self {
        self.missing_topic = Some(topic.to_owned());
        self
    }

    /// The OAuth client secret the simulator accepts and the bridge gets.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// All three started, the bridge ready (`/readyz` 200).
    pub fn start(self) -> Stack {
        let stack = self.spawn();
        stack.bridge.wait_ready();
        stack
    }

    /// All three started, the bridge not waited for (for a bridge that
    /// cannot become ready, e.g. [`without_topic`](Self::without_topic)).
    pub fn spawn(self) -> Stack {
        let broker = self.start_broker();
        let sim = self.start_simulator();
        let bridge = self.start_bridge(&sim, &broker.bootstrap());
        Stack {
            broker,
            sim,
            bridge,
            secret: self.secret,
        }
    }

    /// The broker alone, with its topics.
    pub fn start_broker(&self) -> Broker {
        let broker = Broker::start(&self.dir);
        for topic in TOPICS {
            if self.missing_topic.as_deref() != Some(topic) {
                broker.create_topic(topic, 3);
            }
        }
        if self
            .bridge_env
            .iter()
            .any(|(name, _)| name.starts_with("GKB_CLUSTER__"))
        {
            // A one-member cluster (`.env("GKB_CLUSTER__MEMBER", …)`): its
            // coordination topic, one partition.
            broker.create_topic("genesys-bridge.cluster", 1);
        }
        broker
    }

    /// The simulator alone: its OAuth client, queues and flags.
    pub fn start_simulator(&self) -> Simulator {
        let queues = self.queues.to_string();
        let mut args = vec![
            "--client-id",
            "e2e-client",
            "--client-secret",
            &self.secret,
            "--queues",
            &queues,
        ];
        args.extend(self.simulator_args.iter().map(String::as_str));
        Simulator::start(&self.dir, &args)
    }

    /// The bridge alone, for `sim` and the Kafka at `bootstrap` (which
    /// need not exist), not waited for.
    pub fn start_bridge(&self, sim: &Simulator, bootstrap: &str) -> Bridge {
        let config = with_genesys_keys(
            bridge_config_with_buffer(&sim.url, bootstrap, &self.buffer, &self.buffer_keys),
            &self.genesys_keys,
        ) + "\n[snapshots]\n"
            + &self.snapshot_keys
            + "\n[backfill]\n"
            + &self.backfill_keys
            + "\n";
        let env: Vec<(&str, &str)> = [("E2E_CLIENT_SECRET", self.secret.as_str())]
            .into_iter()
            .chain(
                self.bridge_env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .collect();
        Bridge::start(&self.dir, &config, &env)
    }
}
