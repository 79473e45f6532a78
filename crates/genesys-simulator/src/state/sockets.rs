//! What the state knows of a channel's open WebSocket, and the messages it
//! can send it. The socket actor itself is `http::socket`; the state holds
//! only [`actix::Recipient`]s of these messages (in a [`SocketRef`]), so
//! it needs nothing from the actor's module.
//!
//! [`Progress`] is shared between the socket actor, the channel and the
//! event log: what the socket was given and what it actually wrote.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, Message, Recipient};
use actix_web_actors::ws::CloseCode;

/// A notification frame to write as is, with its event's `seq`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Deliver {
    pub frame: Arc<str>,
    pub seq: u64,
}

/// What one socket was given and what it actually wrote, shared between the
/// socket actor, the channel and the event log. A frame counts as delivered
/// once the actor has handed it to the connection, not when it is queued in
/// the actor's mailbox: a client that stops reading, then goes away, never
/// gets what was still queued.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Frames queued to the socket (under the state lock).
    queued: AtomicU64,
    /// Frames handed to the connection.
    written: AtomicU64,
    /// Bytes of the frames queued / handed to the connection.
    queued_bytes: AtomicU64,
    written_bytes: AtomicU64,
    /// Set when the generator gave up on a client that does not read.
    given_up: AtomicBool,
    /// `seq` of the last frame handed to the connection. Frames reach a
    /// socket in seq order, so every queued frame up to it was written.
    written_seq: AtomicU64,
}

impl Progress {
    /// Called under the state lock, right before queueing the frame.
    /// Returns the frame's position in the socket's queue (1 for the first).
    pub fn queue(&self, bytes: usize) -> u64 {
        self.queued_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.queued.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// How many of the `len` frames queued at positions `first..` have
    /// been written (frames are written in queue order).
    pub fn written_of(&self, first: u64, len: u64) -> u64 {
        let written = self.written.load(Ordering::Relaxed);
        written.saturating_sub(first - 1).min(len)
    }

    /// Bytes queued to the socket and not written yet.
    pub fn backlog_bytes(&self) -> u64 {
        self.queued_bytes
            .load(Ordering::Relaxed)
            .saturating_sub(self.written_bytes.load(Ordering::Relaxed))
    }

    pub fn give_up(&self) {
        self.given_up.store(true, Ordering::Relaxed);
    }

    pub fn given_up(&self) -> bool {
        self.given_up.load(Ordering::Relaxed)
    }

    /// Whether the frame of event `seq` queued to this socket was written.
    pub fn wrote(&self, seq: u64) -> bool {
        self.written_seq.load(Ordering::Acquire) >= seq
    }

    /// The socket handed the frame of event `seq` (`bytes` long) to its
    /// connection.
    pub fn record_written(&self, bytes: u64, seq: u64) {
        self.written.fetch_add(1, Ordering::Relaxed);
        self.written_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.written_seq.store(seq, Ordering::Release);
    }

    /// Frames queued but never written (final once the socket is detached).
    pub fn unwritten(&self) -> u64 {
        self.queued
            .load(Ordering::Relaxed)
            .saturating_sub(self.written.load(Ordering::Relaxed))
    }
}

/// Ends the connection: with a close frame, or (`code: None`) by dropping the
/// TCP connection without one, as a proxy killing an idle connection does.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub(crate) struct Shutdown {
    pub code: Option<CloseCode>,
    pub reason: &'static str,
}

impl Shutdown {
    pub fn idle_timeout() -> Self {
        Shutdown {
            code: Some(CloseCode::Away),
            reason: "idle timeout",
        }
    }

    pub fn abort() -> Self {
        Shutdown {
            code: None,
            reason: "",
        }
    }

    pub fn replaced() -> Self {
        Shutdown {
            code: Some(CloseCode::Normal),
            reason: "replaced by a new connection to the channel",
        }
    }

    pub fn channel_removed() -> Self {
        Shutdown {
            code: Some(CloseCode::Normal),
            reason: "channel removed: channel limit reached",
        }
    }

    pub fn channel_expired() -> Self {
        Shutdown {
            code: Some(CloseCode::Normal),
            reason: "channel expired",
        }
    }

    /// After the `token_revoked` notice: the channel is gone.
    pub fn token_revoked() -> Self {
        Shutdown {
            code: Some(CloseCode::Normal),
            reason: "token revoked: channel removed",
        }
    }

    /// After `v2.system.socket_closing`.
    pub fn maintenance() -> Self {
        Shutdown {
            code: Some(CloseCode::Away),
            reason: "socket closing for maintenance",
        }
    }

    /// The client stopped reading and its backlog reached the bound.
    pub fn too_slow() -> Self {
        Shutdown {
            code: Some(CloseCode::Policy),
            reason: "client is not reading: send backlog full",
        }
    }

    pub fn server_stopping() -> Self {
        Shutdown {
            code: Some(CloseCode::Away),
            reason: "server shutting down",
        }
    }
}

/// `v2.system.socket_closing`: writes the notice and, after `close_after`,
/// closes the socket (1001) if it still is its channel's socket.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ClosingNotice {
    pub frame: Arc<str>,
    pub close_after: Option<Duration>,
}

/// Resolves once the actor has processed every message queued before it:
/// frames queued earlier have been handed to the connection.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Flush;

/// The recipients of one socket actor, one per message it takes (all
/// share the actor's one mailbox, so their order is the order sent).
#[derive(Debug)]
struct Mailbox {
    deliver: Recipient<Deliver>,
    shutdown: Recipient<Shutdown>,
    notice: Recipient<ClosingNotice>,
    flush: Recipient<Flush>,
}

/// The open WebSocket of a channel. Cheap to clone (two `Arc`s): the
/// generator copies it for every subscribed topic.
#[derive(Debug, Clone)]
pub(crate) struct SocketRef {
    pub id: u64,
    mailbox: Arc<Mailbox>,
    /// What the socket was given and wrote.
    pub progress: Arc<Progress>,
}

impl SocketRef {
    /// The socket `id`, served by the actor at `addr`.
    pub fn new<A>(id: u64, addr: Addr<A>, progress: Arc<Progress>) -> Self
    where
        A: Actor + Handler<Deliver> + Handler<Shutdown> + Handler<ClosingNotice> + Handler<Flush>,
        A::Context: ToEnvelope<A, Deliver>
            + ToEnvelope<A, Shutdown>
            + ToEnvelope<A, ClosingNotice>
            + ToEnvelope<A, Flush>,
    {
        let mailbox = Mailbox {
            deliver: addr.clone().recipient(),
            shutdown: addr.clone().recipient(),
            notice: addr.clone().recipient(),
            flush: addr.recipient(),
        };
        SocketRef {
            id,
            mailbox: Arc::new(mailbox),
            progress,
        }
    }

    /// Queues a notification frame (callers count it in [`Progress`]).
    pub fn deliver(&self, frame: Arc<str>, seq: u64) {
        self.mailbox.deliver.do_send(Deliver { frame, seq });
    }

    /// Tells the socket to close (see [`Shutdown`]).
    pub fn shutdown(&self, how: Shutdown) {
        self.mailbox.shutdown.do_send(how);
    }

    /// Queues a system message, closing the socket after it if asked.
    pub fn notice(&self, notice: ClosingNotice) {
        self.mailbox.notice.do_send(notice);
    }

    /// Resolves once the socket has handled everything queued before.
    pub fn flush(&self) -> actix::dev::RecipientRequest<Flush> {
        self.mailbox.flush.send(Flush)
    }
}
