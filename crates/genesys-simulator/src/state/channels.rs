//! The notification channels: who owns each (OAuth client and token), when
//! it expires, its subscriptions and its open socket; the per-client
//! channel limit (least recently used first out) and the ways a channel
//! ends (expiry, eviction, its token gone).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use super::counters::Counters;
use super::settings::Settings;
use super::sockets::{ClosingNotice, Progress, Shutdown, SocketRef};
use super::subscriptions::Subscriptions;
use super::tokens::{Auth, Tokens};
use crate::clock::rfc3339;
use crate::events::envelope;
use crate::ids;

#[derive(Debug)]
pub(crate) struct Channel {
    pub id: Arc<str>,
    pub client_id: String,
    /// Token that created the channel (for `includechannels=token`).
    token: String,
    created_serial: u64,
    pub expires: SystemTime,
    /// LRU clock value of the last use (creation, subscription call, socket).
    last_used: u64,
    pub topics: Subscriptions,
    pub socket: Option<SocketRef>,
    pub sockets_opened: u64,
}

impl Channel {
    pub fn alive(&self, now: SystemTime) -> bool {
        self.expires > now
    }
}

/// A channel as the REST API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChannelInfo {
    pub id: String,
    pub connect_uri: String,
    pub expires: String,
}

#[derive(Debug, Default)]
pub(crate) struct Channels {
    channels: HashMap<Arc<str>, Channel>,
    /// LRU clock (also orders channels by creation).
    serial: u64,
    next_socket_id: u64,
}

impl Channels {
    fn tick(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// Marks the channel used now (for the channel limit's LRU choice).
    pub fn touch(&mut self, channel_id: &str) {
        let tick = self.tick();
        if let Some(channel) = self.channels.get_mut(channel_id) {
            channel.last_used = tick;
        }
    }

    /// Every channel, expired ones not swept yet included.
    pub fn iter(&self) -> impl Iterator<Item = &Channel> {
        self.channels.values()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.channels.contains_key(id)
    }

    /// Live channels, oldest first.
    pub fn live_by_age(&self, now: SystemTime) -> Vec<&Channel> {
        let mut channels: Vec<&Channel> = self.channels.values().filter(|c| c.alive(now)).collect();
        channels.sort_by_key(|c| c.created_serial);
        channels
    }

    /// A live channel, owned by `client` when given (REST calls); socket
    /// messages pass `None`: the connectUri itself grants access.
    pub fn live_mut(&mut self, id: &str, client: Option<&str>) -> Option<&mut Channel> {
        let now = SystemTime::now();
        self.channels
            .get_mut(id)
            .filter(|c| c.alive(now) && client.map_or(true, |client| c.client_id == client))
    }

    fn info(channel: &Channel, ws_base: &str) -> ChannelInfo {
        ChannelInfo {
            id: channel.id.to_string(),
            connect_uri: format!("{ws_base}/channels/{}", channel.id),
            expires: rfc3339(channel.expires),
        }
    }

    /// Creates a channel. At the per-client limit, the least recently used
    /// channel (unconnected ones first) is removed and its socket closed.
    pub fn create(
        &mut self,
        auth: &Auth,
        settings: &Settings,
        counters: &mut Counters,
    ) -> ChannelInfo {
        let now = SystemTime::now();
        loop {
            let owned: Vec<&Channel> = self
                .channels
                .values()
                .filter(|c| c.client_id == auth.client_id && c.alive(now))
                .collect();
            if owned.len() < settings.max_channels {
                break;
            }
            let victim = owned
                .iter()
                .min_by_key(|c| (c.socket.is_some(), c.last_used))
                .map(|c| c.id.clone());
            let Some(victim) = victim else { break };
            tracing::info!(channel = %victim, "channel limit reached: removing the least recently used channel");
            self.remove(&victim, Shutdown::channel_removed());
            counters.channels_evicted += 1;
        }
        let id: Arc<str> = ids::channel_id().into();
        let tick = self.tick();
        let channel = Channel {
            id: id.clone(),
            client_id: auth.client_id.clone(),
            token: auth.token.clone(),
            created_serial: tick,
            expires: now + settings.channel_ttl,
            last_used: tick,
            topics: Subscriptions::default(),
            socket: None,
            sockets_opened: 0,
        };
        let info = Self::info(&channel, &settings.ws_base);
        self.channels.insert(id, channel);
        counters.channels_created += 1;
        info
    }

    /// Channels of the caller: created with this token (`token`, the
    /// default) or by this OAuth client (`oauthclient`), oldest first.
    pub fn list(&self, auth: &Auth, whole_client: bool, ws_base: &str) -> Vec<ChannelInfo> {
        let now = SystemTime::now();
        self.live_by_age(now)
            .into_iter()
            .filter(|c| c.client_id == auth.client_id && (whole_client || c.token == auth.token))
            .map(|c| Self::info(c, ws_base))
            .collect()
    }

    /// Whether the caller's channel exists and has not expired.
    pub fn alive_for(&self, auth: &Auth, id: &str) -> bool {
        let now = SystemTime::now();
        self.channels
            .get(id)
            .is_some_and(|c| c.alive(now) && c.client_id == auth.client_id)
    }

    /// Removes a channel and closes its socket with `reason`.
    pub fn remove(&mut self, id: &str, reason: Shutdown) -> Option<Channel> {
        let channel = self.channels.remove(id)?;
        if let Some(socket) = &channel.socket {
            socket.shutdown(reason);
        }
        Some(channel)
    }

    /// Ends channels now (one or all), closing their sockets like expiry does.
    pub fn expire(&mut self, channel: Option<&str>, counters: &mut Counters) -> usize {
        let ids: Vec<Arc<str>> = self
            .channels
            .keys()
            .filter(|id| channel.map_or(true, |c| id.as_ref() == c))
            .cloned()
            .collect();
        for id in &ids {
            self.remove(id, Shutdown::channel_expired());
            counters.channels_expired += 1;
        }
        ids.len()
    }

    /// Drops the channels expired at `now`, closing their sockets.
    pub fn sweep(&mut self, now: SystemTime, counters: &mut Counters) {
        let expired: Vec<Arc<str>> = self
            .channels
            .values()
            .filter(|c| !c.alive(now))
            .map(|c| c.id.clone())
            .collect();
        for id in expired {
            tracing::info!(channel = %id, "channel expired");
            self.remove(&id, Shutdown::channel_expired());
            counters.channels_expired += 1;
        }
    }

    /// With `--channels-follow-token`: every channel whose token is no
    /// longer valid gets a `token_revoked` notice on its socket, then is
    /// removed (socket closed). Called after tokens were removed.
    pub fn end_with_gone_tokens(
        &mut self,
        tokens: &Tokens,
        settings: &Settings,
        organization_id: &str,
        counters: &mut Counters,
    ) {
        if !settings.channels_follow_token {
            return;
        }
        let orphans: Vec<Arc<str>> = self
            .channels
            .values()
            .filter(|c| !tokens.is_live(&c.token))
            .map(|c| c.id.clone())
            .collect();
        for id in orphans {
            let Some(channel) = self.channels.remove(&id) else {
                continue;
            };
            tracing::info!(channel = %id, "the channel's token expired or was revoked: channel removed");
            if let Some(socket) = &channel.socket {
                let body = serde_json::json!({
                    "channelId": id.as_ref(),
                    "systemTopicType": "token_revoked",
                    "message": "The token that created this channel expired or was revoked; the channel is closed",
                    "organizationId": organization_id,
                    "oauthClientId": channel.client_id,
                });
                let frame = envelope("v2.system.token_revoked", &body, &uuid::Uuid::new_v4());
                socket.notice(ClosingNotice {
                    frame: frame.into(),
                    close_after: None,
                });
                socket.shutdown(Shutdown::token_revoked());
            }
            counters.channels_ended_with_token += 1;
        }
    }

    // ---- sockets ------------------------------------------------------

    pub fn next_socket_id(&mut self) -> u64 {
        self.next_socket_id += 1;
        self.next_socket_id
    }

    /// Makes `socket` the channel's socket. The previous one, if any, is
    /// told to close: one connection per channel. `Err` when the channel
    /// vanished meanwhile (the caller then closes the new socket).
    pub fn attach_socket(
        &mut self,
        id: &str,
        socket: SocketRef,
        counters: &mut Counters,
    ) -> Result<(), ()> {
        let channel = self.live_mut(id, None).ok_or(())?;
        if let Some(previous) = channel.socket.replace(socket) {
            tracing::info!(
                channel = id,
                socket = previous.id,
                "second connection on the channel: closing the first"
            );
            previous.shutdown(Shutdown::replaced());
        }
        channel.sockets_opened += 1;
        counters.sockets_opened += 1;
        self.touch(id);
        Ok(())
    }

    /// The socket `socket_id` has stopped: forgets it if it still is the
    /// channel's socket, and counts the frames it never wrote as dropped.
    pub fn detach_socket(
        &mut self,
        id: &str,
        socket_id: u64,
        progress: &Progress,
        counters: &mut Counters,
    ) {
        if let Some(channel) = self.channels.get_mut(id) {
            if channel.socket.as_ref().is_some_and(|s| s.id == socket_id) {
                channel.socket = None;
            }
        }
        // Detached (now or before, under this lock): nothing more is queued.
        counters.events_dropped += progress.unwritten();
    }

    /// Detaches the channel's socket if it still is `socket_id`; says so.
    pub fn take_socket(&mut self, id: &str, socket_id: u64) -> bool {
        match self.channels.get_mut(id) {
            Some(channel) if channel.socket.as_ref().is_some_and(|s| s.id == socket_id) => {
                channel.socket = None;
                true
            }
            _ => false,
        }
    }

    /// Detaches and returns the sockets of one channel or of all channels,
    /// so that events generated from now on count as undelivered.
    pub fn take_sockets(&mut self, channel: Option<&str>) -> Vec<(Arc<str>, SocketRef)> {
        self.channels
            .values_mut()
            .filter(|c| channel.map_or(true, |id| c.id.as_ref() == id))
            .filter_map(|c| c.socket.take().map(|s| (c.id.clone(), s)))
            .collect()
    }

    /// The open sockets of one channel or of all channels (left attached).
    pub fn sockets(&self, channel: Option<&str>) -> Vec<(Arc<str>, SocketRef)> {
        self.channels
            .values()
            .filter(|c| channel.map_or(true, |id| c.id.as_ref() == id))
            .filter_map(|c| c.socket.clone().map(|s| (c.id.clone(), s)))
            .collect()
    }

    /// Gives up on a socket whose client does not read: detaches it from
    /// its channel and tells it to close after what is already queued.
    pub fn give_up_socket(&mut self, channel_id: &str, socket: &SocketRef) {
        socket.progress.give_up();
        if let Some(channel) = self.channels.get_mut(channel_id) {
            if channel.socket.as_ref().is_some_and(|s| s.id == socket.id) {
                channel.socket = None;
            }
        }
        tracing::warn!(
            channel = channel_id,
            socket = socket.id,
            backlog_bytes = socket.progress.backlog_bytes(),
            "client is not reading: closing its socket"
        );
        socket.shutdown(Shutdown::too_slow());
    }
}
