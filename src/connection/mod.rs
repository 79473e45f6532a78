//! The connection actor: one per notification channel's worth of topics.
//! It creates the channel, connects its WebSocket, subscribes the topics,
//! answers the protocol, watches for silence, and moves to a new channel
//! before the old one ends. Every notification it receives is appended to
//! the buffer before anything else, then the producer is woken.
//!
//! Genesys replays nothing: a frame the service wrote to our socket and we
//! did not keep is gone. So:
//! - **Planned moves are make-before-break.** A rollover (channel or token
//!   expiry near), `socket_closing` or a lost channel sets up a new channel,
//!   socket and subscription *beside* the live socket; only then is the old
//!   socket closed, and it is still read until the service closes it. The
//!   copies both sockets receive meanwhile are removed by [`overlap`].
//! - **A pause is not a death** ([`silence`]): silence counts only over
//!   time the actor could read, and a socket replaced for silence is still
//!   drained of what it holds.
//! - **Channels are reused, not piled up.** A failed attempt keeps its
//!   channel for the next one unless the service says it is gone (`HEAD`
//!   404, a lost-channel notice); a channel we moved away from is emptied
//!   of its topics and left to expire. So a connection holds at most two
//!   channels: the live one and the one being set up.
//! - **Every retry backs off**, planned moves included when they repeat
//!   (a service sending `socket_closing` in a loop).
//!
//! Life of a connection, file by file:
//! 1. [`establish`]: token → channel (reused while alive and not due, else
//!    created) → socket → `PUT subscriptions`, and the subscribed socket
//!    becoming the live one. Connecting before subscribing means no event
//!    is sent to a channel nobody listens on.
//! 2. open: pings every `ping_interval`, a watchdog every quarter of
//!    `heartbeat_timeout` (silence, stalls, channel and token expiry);
//!    [`inbound`] reads every frame, [`subscribe`] keeps the open
//!    channel's topics in step with [`SetTopics`].
//! 3. [`moves`]: a planned move runs `establish` beside the live socket; a
//!    failure (close, error, silence) loses the socket and runs it after a
//!    backoff delay. Every attempt's schedule is decided there. The time
//!    without any subscribed socket is a gap, counted, logged and recorded
//!    in the buffer ([`crate::buffer::GapRecord`]) with its bounds and
//!    topics; so is the time the bridge was not running (from the previous
//!    run's `last_alive` to the first subscribed socket) and a gap still
//!    open at shutdown.
//! 4. [`retired`]: a socket left behind is closed politely and read out;
//!    its channel is emptied of its topics.
//!
//! Beside them: [`channel`] (the held channel and when to leave it),
//! [`overlap`] (the duplicate window), [`silence`] (stall-aware silence),
//! [`slots`] (the 20-channel budget), [`snapshot`] (observation snapshots
//! at start-up, after gaps and on a timer).

mod actor;
pub mod channel;
mod establish;
mod gap;
mod inbound;
mod messages;
mod moves;
pub mod overlap;
mod retired;
mod schedule;
mod settings;
mod setup;
mod silence;
pub mod slots;
mod snapshot;
mod snapshot_state;
mod socket;
mod subscribe;
mod subscription;

pub use actor::ConnectionActor;
pub use messages::{Close, SetTopics};
pub use settings::{ConnectionSettings, CLOSE_WAIT, NOT_RUNNING};
