//! The sockets a connection holds: the live one (subscribed and watched)
//! and the ones it left, still read until the service closes them, with
//! how long each kind is read.

use std::time::{Duration, Instant, SystemTime};

use actix::io::SinkWrite;
use actix::prelude::SpawnHandle;
use awc::ws;
use bytes::BytesMut;
use futures_util::stream::SplitSink;

use super::channel::HeldChannel;
use super::silence::SilenceClock;
use super::slots;

pub(super) type WsSink = SplitSink<actix_codec::Framed<awc::BoxedSocket, ws::Codec>, ws::Message>;

/// One WebSocket and what belongs to it alone.
pub(super) struct Socket {
    pub(super) id: u64,
    /// The channel it is connected to (never logged whole: the id grants
    /// access to the channel's events).
    pub(super) channel_id: String,
    pub(super) sink: SinkWrite<ws::Message, WsSink>,
    pub(super) stream: SpawnHandle,
    /// A text message arriving in fragments on this socket.
    pub(super) partial: Option<BytesMut>,
    /// Its place among the connected channels, given back when it ends.
    pub(super) _slot: slots::Slot,
}

/// The live socket: the one whose channel is subscribed and watched.
pub(super) struct Current {
    pub(super) socket: Socket,
    pub(super) channel: HeldChannel,
    /// The service said the channel is gone: never reuse it.
    pub(super) channel_gone: bool,
    pub(super) silence: SilenceClock,
    /// Wall time of the last frame this socket delivered (or of its
    /// subscription): if it is lost, the gap starts here, since a socket
    /// can be dead for a while before we learn it (a silent drop, a
    /// heartbeat timeout).
    pub(super) last_frame_wall: SystemTime,
    /// Its pings, watchdog, stability and expiry timers.
    pub(super) timers: Vec<SpawnHandle>,
    /// The service announced `socket_closing`: it closes the socket by
    /// itself about then.
    pub(super) closing_by: Option<Instant>,
}

/// After `socket_closing` the service closes the socket "about a minute
/// later" (field reference §5): the move must be done within it.
pub(super) const SOCKET_CLOSING_WITHIN: Duration = Duration::from_secs(60);

/// A retired socket is read until the service closes it, it has been idle
/// this long (30 s for a socket left by a planned move), or
/// [`RETIRED_MAX`] has passed.
const RETIRED_IDLE: Duration = Duration::from_secs(5);
const RETIRED_IDLE_MOVED: Duration = Duration::from_secs(30);
pub(super) const RETIRED_MAX: Duration = Duration::from_secs(90);
/// How long a replaced socket stays subscribed beside its successor.
pub(super) const MOVE_SETTLE: Duration = Duration::from_secs(2);

/// A socket we left and still read: frames the service sent before it
/// saw our close (or before we judged the socket) are still ours to keep.
pub(super) struct Retired {
    pub(super) socket: Socket,
    pub(super) since: Instant,
    pub(super) last_frame: Instant,
    /// Idle this long (while the actor could read) ends it.
    pub(super) idle_limit: Duration,
    /// The last run of its check: a late one means the actor was stalled,
    /// and idleness restarts.
    pub(super) last_check: Instant,
    pub(super) check: SpawnHandle,
}

/// Why a socket is retired, which decides how long it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retirement {
    /// Replaced by a subscribed socket (make-before-break). It stays
    /// subscribed for [`MOVE_SETTLE`] more, as the new subscription may take
    /// effect on the service a little after the REST reply; then its
    /// channel is emptied and it is sent a close frame.
    Moved,
    /// Taken for dead (silence): whatever it still yields is read.
    Failed,
    /// Shutdown: closed at once, read until the service closes it.
    Shutdown,
}

impl Retirement {
    pub(super) fn idle_limit(self) -> Duration {
        match self {
            // A healthy socket we closed: the service answers the close;
            // idleness is only the fallback for one that never does.
            Retirement::Moved => RETIRED_IDLE_MOVED,
            Retirement::Failed | Retirement::Shutdown => RETIRED_IDLE,
        }
    }
}
