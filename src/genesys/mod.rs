//! Everything about Genesys Cloud itself: regions, topic names, the REST
//! API and the frames of the notification WebSocket.

pub mod api;
pub mod config;
pub mod protocol;
pub mod rate_limit;
pub mod region;
pub mod topic;
