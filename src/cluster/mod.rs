//! Cluster mode (`[cluster]`): two or more bridges on one topic plan, one
//! *leader* forwarding to Kafka and hot standbys that receive and buffer
//! the same events, coordinated through a one-partition topic of the
//! Kafka they write to (no other service).
//!
//! - [`config`]: the `[cluster]` section.
//! - [`leadership`]: what components ask (may I forward? take snapshots?)
//!   and where the forwarder leaves what Kafka acknowledged. Imports
//!   nothing of the bridge.
//! - [`message`]: the coordination records; [`log`]: their fold, the
//!   rule that decides who leads (no clock).
//! - [`coordinator`]: the thread that follows the topic, claims, heartbeats
//!   with progress, releases, and keeps a standby's buffer trimmed
//!   ([`standby`]); [`takeover`]: what a new leader checks in Kafka
//!   before it forwards; [`client`]: the Kafka clients they use.
//! - [`tools`]: `cluster status` and `cluster handover`.
//!
//! ARCHITECTURE.md ("Cluster mode") argues why at most one member
//! forwards at a time and why a standby takes over.

pub mod client;
pub mod config;
pub mod coordinator;
pub mod leadership;
pub mod log;
pub mod message;
pub mod standby;
pub mod takeover;
pub mod tools;

pub use config::ClusterConfig;
pub use coordinator::{Cluster, Parts};
pub use leadership::{Acked, Leadership, Role};
