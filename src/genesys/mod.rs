//! Everything about Genesys Cloud itself: regions, topic names, the REST
//! API, the frames of the notification WebSocket, and the proxies and CAs
//! connections to it go through.

pub mod analytics;
pub mod api;
pub mod channel_id;
pub mod config;
pub mod protocol;
pub mod rate_limit;
pub mod region;
pub mod topic;
