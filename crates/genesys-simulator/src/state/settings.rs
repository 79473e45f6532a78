//! The simulator's settings: validated once from [`SimulatorArgs`] at
//! start, immutable afterwards.

use std::time::Duration;

use crate::config::{public_ws_base, SimulatorArgs};

/// Validated, immutable settings derived from [`SimulatorArgs`]. Not
/// `Debug`: it holds the client secret, which must never reach a log.
pub(crate) struct Settings {
    pub client_id: String,
    pub client_secret: String,
    pub heartbeat: Duration,
    pub token_ttl: Duration,
    pub channel_ttl: Duration,
    pub max_channels: usize,
    pub max_topics: usize,
    /// `ws://host:port` (or the `--public-url` equivalent), no trailing slash.
    pub ws_base: String,
    pub bad_credentials_status: u16,
    pub subscribe_extends_channel: bool,
    pub channels_follow_token: bool,
    /// REST requests per sliding minute per token; 0: no limit.
    pub rate_limit_per_minute: u32,
    pub rate_limit_form: RateLimitForm,
    pub expired_token_code: ExpiredTokenCode,
    /// Between `v2.system.socket_closing` and the socket's close.
    pub socket_closing_grace: Duration,
    pub event_log_limit: usize,
    pub max_frame_size: usize,
    /// Unwritten frame bytes beyond which a socket's client is given up
    /// on as a slow consumer.
    pub slow_consumer_bytes: u64,
    /// Time after its start before a conversation is queryable.
    pub analytics_lag: Duration,
}

impl Settings {
    pub fn new(args: &SimulatorArgs, bound_ws_base: String) -> std::io::Result<Self> {
        let ws_base = match &args.public_url {
            Some(url) => public_ws_base(url)?,
            None => bound_ws_base,
        };
        Ok(Settings {
            client_id: args.client_id.clone(),
            client_secret: args.client_secret.clone(),
            heartbeat: args.heartbeat(),
            token_ttl: Duration::from_secs(args.token_ttl),
            channel_ttl: Duration::from_secs(args.channel_ttl),
            max_channels: args.max_channels,
            max_topics: args.max_topics_per_channel,
            ws_base,
            bad_credentials_status: args.bad_credentials_status,
            subscribe_extends_channel: args.subscribe_extends_channel,
            channels_follow_token: args.channels_follow_token,
            rate_limit_per_minute: args.rate_limit_per_minute,
            rate_limit_form: match args.rate_limit_429.as_str() {
                "retry-after" => RateLimitForm::RetryAfter,
                "no-retry-after" => RateLimitForm::NoRetryAfter,
                _ => RateLimitForm::Alternate,
            },
            expired_token_code: match args.expired_token_code.as_str() {
                "bad-credentials" => ExpiredTokenCode::BadCredentials,
                "alternate" => ExpiredTokenCode::Alternate,
                _ => ExpiredTokenCode::CredentialsExpired,
            },
            socket_closing_grace: Duration::from_secs_f64(args.socket_closing_grace),
            event_log_limit: args.event_log_limit,
            max_frame_size: args.max_frame_size,
            slow_consumer_bytes: args.slow_consumer_bytes,
            analytics_lag: Duration::from_secs_f64(args.analytics_lag),
        })
    }
}

/// Which 401 code an expired token gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExpiredTokenCode {
    CredentialsExpired,
    BadCredentials,
    /// The two in turn, `credentials.expired` first.
    Alternate,
}

/// Which 429 the per-token rate limit answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateLimitForm {
    /// `too.many.requests.retry.after` with `Retry-After`.
    RetryAfter,
    /// `too.many.requests`, no `Retry-After`: the client must pick a delay.
    NoRetryAfter,
    /// The two in turn, the one without `Retry-After` first.
    Alternate,
}
