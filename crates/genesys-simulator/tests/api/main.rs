//! Integration tests of the Genesys Cloud simulator: each test starts it
//! in-process on port 0 and drives it over HTTP and WebSocket with awc.
//! One test binary, one module per API area; `support` holds what they
//! share.
//!
//! Nothing here sleeps to "let things happen": tests await the frame or
//! state they expect, with a deadline.

mod support;

mod bodies;
mod channels;
mod directory;
mod faults;
mod generate;
mod oauth;
mod socket;
mod tls;
