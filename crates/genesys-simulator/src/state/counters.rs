//! The running totals `GET /sim/state` shows: every part of the state
//! adds to them under the state lock.

use serde::Serialize;

#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Counters {
    pub tokens_issued: u64,
    pub channels_created: u64,
    pub channels_expired: u64,
    pub channels_evicted: u64,
    pub sockets_opened: u64,
    pub events_generated: u64,
    /// Per receiving channel: an event for two channels counts twice.
    /// Frames handed to an open socket (see `SimState::count_delivered`).
    pub events_delivered: u64,
    /// Events for channels without an open socket (and black-holed ones),
    /// and frames still queued to a socket when it closed.
    pub events_dropped: u64,
    /// 429s of the per-token rate limit, with and without `Retry-After`.
    pub rate_limited_with_retry_after: u64,
    pub rate_limited_without_retry_after: u64,
    /// Channels that ended with the token that created them.
    pub channels_ended_with_token: u64,
    /// Analytics queries answered (their state read).
    pub analytics_queries: u64,
    /// Analytics queries whose state was read and whose answer is still
    /// held (`analytics_delay_ms`).
    pub analytics_held: u64,
}
