//! What the connection actor is told: a new topic list (from the
//! planner) and shutdown (from the app).

use std::sync::Arc;

use actix::prelude::*;

/// The planner's topic list for this connection's channel. Applied to the
/// open channel with subscription calls (no reconnect); a channel set up
/// later uses it from the start.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetTopics(pub Arc<Vec<String>>);

/// Closes the sockets and stops reconnecting (shutdown); answered once
/// they are read out.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;
