//! `GET /sim/state`: a snapshot of the channels, counters, generator jobs
//! and faults.

use serde::Serialize;

use super::channels::Channel;
use super::counters::Counters;
use crate::clock::{epoch_ms, rfc3339};
use crate::faults::FaultsView;

#[derive(Debug, Serialize)]
pub(crate) struct ChannelView {
    pub id: String,
    pub client_id: String,
    pub expires: String,
    pub expires_ms: u64,
    pub topics_count: usize,
    pub topics: Vec<String>,
    pub connected: bool,
    pub sockets_opened: u64,
}

impl ChannelView {
    pub fn of(c: &Channel) -> Self {
        ChannelView {
            id: c.id.to_string(),
            client_id: c.client_id.clone(),
            expires: rfc3339(c.expires),
            expires_ms: epoch_ms(c.expires),
            topics_count: c.topics.len(),
            topics: c.topics.iter().map(|t| t.to_string()).collect(),
            connected: c.socket.is_some(),
            sockets_opened: c.sockets_opened,
        }
    }
}

/// `GET /sim/state`.
#[derive(Debug, Serialize)]
pub(crate) struct StateView {
    pub channels: Vec<ChannelView>,
    pub tokens_active: usize,
    #[serde(flatten)]
    pub counters: Counters,
    pub last_seq: u64,
    pub generator_running: bool,
    pub generator_jobs: usize,
    pub faults: FaultsView,
}
