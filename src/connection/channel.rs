//! A notification channel the connection holds, and when to leave it.
//!
//! A channel ends at its `expires` (by the service's clock) and, on a
//! service that ties channels to tokens, when the token that created it
//! expires. Both ends are watched on two clocks: the wall clock (the
//! service's `expires` is a wall-clock time; a suspended VM's monotonic
//! clock stands still) and the monotonic clock (a wall clock set back must
//! not postpone a rollover past the real end).

use std::time::{Duration, Instant, SystemTime};

use crate::genesys::api::Channel;
use crate::secret::Secret;

/// Why a held channel should be left now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Its own expiry is near.
    ChannelExpiry,
    /// The token that created it expires soon.
    TokenExpiry,
}

impl Due {
    pub fn reason(self) -> &'static str {
        match self {
            Due::ChannelExpiry => "channel expires soon: moving to a new channel",
            Due::TokenExpiry => {
                "the token that created the channel expires soon: moving to a channel made with the next token"
            }
        }
    }
}

pub struct HeldChannel {
    pub channel: Channel,
    /// When the channel should be left because of its own expiry.
    rollover_wall: SystemTime,
    rollover_mono: Instant,
    /// When the channel should be left because of its token's expiry
    /// (None: unknown, e.g. the token was already replaced).
    token_rollover: Option<Instant>,
    /// When the token that created the channel expires.
    pub token_expires: Option<Instant>,
    /// When the service ends the channel, by our monotonic clock (its
    /// `expires`, at most a day after it was made).
    ends_mono: Instant,
    /// The token that created it: a `token_revoked` notice on its socket
    /// is about this token, not necessarily about the newest one.
    pub created_with: Option<Secret>,
}

/// Shortest time a channel is used before rolling over: a channel that
/// expires (by our clock) as soon as it is made must not cause a loop.
const MIN_CHANNEL_LIFE: Duration = Duration::from_secs(1);
/// The documented longest life of a channel. `expires` is the service's
/// wall clock read against ours: with our clock behind, it would seem to
/// live longer than it does and the rollover would come after its end.
const MAX_CHANNEL_LIFE: Duration = Duration::from_secs(24 * 3600);

impl HeldChannel {
    /// `margin` before expiry, but never earlier than three quarters into
    /// the channel's life, so a short-lived channel (or a large margin)
    /// cannot cause a rollover loop. The token rollover comes a tenth of
    /// the token's remaining life (at most 30 s) before it expires: after
    /// the token actor has renewed it (a fifth of the life, at most its
    /// margin, before), so the next channel is made with the next token.
    pub fn new(channel: Channel, margin: Duration, token_expires: Option<Instant>) -> HeldChannel {
        let created_wall = SystemTime::now();
        let created_mono = Instant::now();
        let expires_wall = channel.expires_at(created_wall);
        let lifetime = expires_wall
            .duration_since(created_wall)
            .unwrap_or(Duration::ZERO)
            .min(MAX_CHANNEL_LIFE);
        let lead = margin.min(lifetime / 4);
        let use_for = lifetime.saturating_sub(lead).max(MIN_CHANNEL_LIFE);
        let token_rollover = token_expires.map(|expires| {
            let left = expires.saturating_duration_since(created_mono);
            let lead = (left / 10).min(Duration::from_secs(30));
            (expires - lead).max(created_mono + MIN_CHANNEL_LIFE)
        });
        HeldChannel {
            channel,
            rollover_wall: created_wall + use_for,
            rollover_mono: created_mono + use_for,
            token_rollover,
            token_expires,
            ends_mono: created_mono + lifetime,
            created_with: None,
        }
    }

    /// Whether (and why) the channel should be left at `now`.
    pub fn due(&self, wall: SystemTime, mono: Instant) -> Option<Due> {
        if wall >= self.rollover_wall || mono >= self.rollover_mono {
            Some(Due::ChannelExpiry)
        } else if self.token_rollover.is_some_and(|at| mono >= at) {
            Some(Due::TokenExpiry)
        } else {
            None
        }
    }

    /// How long until [`due`](Self::due) turns true by the monotonic
    /// clock (the periodic check covers the wall clock).
    pub fn until_due(&self, mono: Instant) -> Duration {
        let next = self
            .token_rollover
            .map_or(self.rollover_mono, |t| t.min(self.rollover_mono));
        next.saturating_duration_since(mono)
    }

    /// When the channel ends for good: its own end or, on a service that
    /// ties channels to tokens, its token's, whichever comes first. A
    /// move away from it must be done by then.
    pub fn hard_end(&self) -> Instant {
        self.token_expires
            .map_or(self.ends_mono, |t| t.min(self.ends_mono))
    }

    /// Whether the channel is still usable for a new socket: not due.
    pub fn reusable(&self) -> bool {
        self.due(SystemTime::now(), Instant::now()).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(expires_in: Duration) -> Channel {
        let at = SystemTime::now() + expires_in;
        Channel {
            id: "streaming-0-x".into(),
            connect_uri: "wss://x".into(),
            expires: Some(humantime::format_rfc3339_millis(at).to_string()),
        }
    }

    #[test]
    fn rolls_over_a_margin_before_expiry_but_not_before_three_quarters_of_life() {
        let held = HeldChannel::new(
            channel(Duration::from_secs(86_400)),
            Duration::from_secs(3_600),
            None,
        );
        let now = Instant::now();
        let left = held.until_due(now).as_secs();
        assert!((82_790..=82_800).contains(&left), "{left}");

        let short = HeldChannel::new(
            channel(Duration::from_secs(20)),
            Duration::from_secs(3_600),
            None,
        );
        let left = short.until_due(Instant::now()).as_millis();
        assert!((14_000..=15_100).contains(&left), "{left}");
    }

    #[test]
    fn the_hard_end_is_the_channel_or_its_token_whichever_first() {
        let now = Instant::now();
        let held = HeldChannel::new(
            channel(Duration::from_secs(600)),
            Duration::from_secs(60),
            None,
        );
        let end = held.hard_end().saturating_duration_since(now).as_secs();
        assert!((598..=600).contains(&end), "{end}");
        let tied = HeldChannel::new(
            channel(Duration::from_secs(600)),
            Duration::from_secs(60),
            Some(now + Duration::from_secs(30)),
        );
        assert_eq!(tied.hard_end(), now + Duration::from_secs(30));
    }

    #[test]
    fn a_channel_tied_to_a_short_token_rolls_before_the_token_ends() {
        let now = Instant::now();
        let held = HeldChannel::new(
            channel(Duration::from_secs(86_400)),
            Duration::from_secs(3_600),
            Some(now + Duration::from_secs(300)),
        );
        assert_eq!(held.due(SystemTime::now(), now), None);
        assert_eq!(
            held.due(SystemTime::now(), now + Duration::from_secs(271)),
            Some(Due::TokenExpiry)
        );
        let left = held.until_due(now).as_secs();
        assert!((269..=270).contains(&left), "{left}");
    }

    #[test]
    fn a_wall_clock_jump_forward_is_due_and_a_jump_back_does_not_postpone() {
        let held = HeldChannel::new(
            channel(Duration::from_secs(100)),
            Duration::from_secs(10),
            None,
        );
        let now = Instant::now();
        assert_eq!(
            held.due(SystemTime::now() + Duration::from_secs(95), now),
            Some(Due::ChannelExpiry)
        );
        assert_eq!(
            held.due(
                SystemTime::now() - Duration::from_secs(3_600),
                now + Duration::from_secs(95)
            ),
            Some(Due::ChannelExpiry)
        );
    }

    #[test]
    fn a_channel_already_expired_by_our_clock_is_still_used_for_a_moment() {
        let held = HeldChannel::new(channel(Duration::ZERO), Duration::from_secs(3_600), None);
        assert!(held.until_due(Instant::now()) > Duration::from_millis(900));
    }

    #[test]
    fn an_expiry_beyond_a_day_is_read_as_a_day() {
        // Our clock is two days behind the service's.
        let held = HeldChannel::new(
            channel(Duration::from_secs(72 * 3600)),
            Duration::from_secs(3600),
            None,
        );
        let now = Instant::now();
        assert_eq!(held.due(SystemTime::now(), now), None);
        let rollover = now + Duration::from_secs(23 * 3600);
        assert_eq!(
            held.due(SystemTime::now(), rollover + Duration::from_secs(1)),
            Some(Due::ChannelExpiry)
        );
    }
}
