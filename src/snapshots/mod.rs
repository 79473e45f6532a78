//! Observation snapshots: after a gap, and for a consumer that starts
//! reading anywhere, the state of each queue in Kafka, since observation
//! events are deltas (field reference §5).
//!
//! - `config.rs`: `[snapshots]`, whose doc comments are the user docs;
//! - `merge.rs`: one query's window (the deltas buffered while it was
//!   out) and the snapshot records it becomes, with why that order is
//!   safe.
//!
//! The connection that carries a queue's observation topic takes its
//! snapshots (`connection::snapshot`), so the records enter the buffer on
//! the thread that buffers the deltas, in one order. The Analytics call is
//! `genesys::analytics`. This module knows neither the connection nor
//! Kafka.

pub mod config;
pub mod merge;

pub use config::SnapshotConfig;
pub use merge::{observation_queue, Snapshot, Window};
