//! The network layer under every outbound connection, knowing nothing of
//! Genesys: outbound HTTP proxies ([`proxy`]) and extra trusted CAs
//! ([`ca`]).

pub mod ca;
pub mod proxy;
