//! Command-line options of the `simulate` subcommand and their validation.

use std::io;
use std::time::Duration;

use clap::ArgAction;

/// Longest accepted duration (ten years): keeps `now + ttl` far from overflow.
pub(crate) const MAX_SECS: u64 = 10 * 365 * 86_400;
/// Highest accepted event rate, per second.
pub(crate) const MAX_RATE: f64 = 1_000_000.0;

/// Options of the Genesys Cloud simulator (`simulate` subcommand).
///
/// Every option has a demo default, so `simulate` alone serves a small
/// contact centre on 127.0.0.1:8089 with the client `demo-client` /
/// `demo-secret`. `SimulatorArgs::default()` yields exactly those defaults.
#[derive(clap::Args, Clone)]
pub struct SimulatorArgs {
    /// Address of the API host: REST (/api/v2), WebSocket (/channels) and
    /// the control API (/sim). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8089")]
    pub listen: String,

    /// Address of the login host (POST /oauth/token), a listener of its own
    /// as `login.<region>` is a host of its own: a token request sent to the
    /// API host gets 404. Default: the --listen host on the next port
    /// (any free port when --listen has port 0).
    #[arg(long, value_name = "ADDR")]
    pub login_listen: Option<String>,

    /// Serve login on the API host too (one port for everything), for
    /// clients that cannot be given a separate login URL.
    #[arg(long, conflicts_with = "login_listen")]
    pub login_on_api_port: bool,

    /// PEM certificate (chain) to serve https:// and wss:// on every
    /// listener; needs --tls-key. Without it everything is plain http/ws.
    #[arg(long, value_name = "PEM_FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM_FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// OAuth client id accepted by POST /oauth/token.
    #[arg(long, value_name = "ID", default_value = "demo-client")]
    pub client_id: String,

    /// OAuth client secret accepted by POST /oauth/token.
    #[arg(long, value_name = "SECRET", default_value = "demo-secret")]
    pub client_secret: String,

    /// Seconds between "WebSocket Heartbeat" messages on every open socket.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_interval: u64,

    /// Lifetime of issued access tokens, reported as `expires_in`.
    /// Real OAuth clients are configured anywhere between 300 and 172800.
    #[arg(long, value_name = "SECS", default_value_t = 86399,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub token_ttl: u64,

    /// Lifetime of a notification channel; its socket is closed when it expires.
    #[arg(long, value_name = "SECS", default_value_t = 86400,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub channel_ttl: u64,

    /// Number of routing queues in the directory (stable ids, realistic names).
    #[arg(long, value_name = "N", default_value_t = 60)]
    pub queues: usize,

    /// Number of users (agents) in the directory (stable ids, realistic names).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub users: usize,

    /// Background event rate over all subscribed topics, forever.
    /// 0 generates events only on demand (POST /sim/generate).
    #[arg(long, value_name = "EVENTS_PER_SEC", default_value_t = 0.0)]
    pub rate: f64,

    /// Channels per OAuth client. Creating one more removes the least
    /// recently used channel (unconnected ones first) and closes its socket.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub max_channels: usize,

    /// Topics per channel; a subscription request above it gets HTTP 400.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_topics_per_channel: usize,

    /// Base URL advertised in channel `connectUri`s (http(s):// or ws(s)://),
    /// e.g. when the simulator sits behind a proxy or a container port
    /// mapping. Default: derived from the bound address.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,

    /// HTTP status of /oauth/token for wrong credentials: 401 or 400
    /// (Genesys is not confirmed to use one or the other).
    #[arg(long, value_name = "STATUS", default_value_t = 401)]
    pub bad_credentials_status: u16,

    /// Whether subscribing (PUT/POST subscriptions, socket "subscribe") moves
    /// the channel's `expires` to now + channel TTL. Unconfirmed for the real
    /// service, so off: channels die at their original expiry.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = ArgAction::Set)]
    pub subscribe_extends_channel: bool,

    /// Whether a channel belongs to the token that created it: when that
    /// token expires or is revoked, the channel's socket gets a
    /// `v2.system.socket_closing` notice of type `token_revoked`, then the
    /// channel is gone (socket closed, HEAD 404, subscribe 404).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub channels_follow_token: bool,

    /// REST requests per minute allowed per access token (a sliding
    /// minute); beyond, 429 with `inin-ratelimit-*` headers. 0 turns the
    /// limit off.
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub rate_limit_per_minute: u32,

    /// Form of the rate limit's 429: `retry-after` (code
    /// `too.many.requests.retry.after` with a Retry-After header),
    /// `no-retry-after` (code `too.many.requests`, no header), or
    /// `alternate` (the two in turn, starting with the one without).
    #[arg(long, value_name = "FORM", default_value = "alternate", value_parser = ["alternate", "retry-after", "no-retry-after"])]
    pub rate_limit_429: String,

    /// The 401 code of a REST call with an expired token:
    /// `credentials-expired` (code `credentials.expired`), `bad-credentials`
    /// (code `bad.credentials`), or `alternate` (the two in turn, starting
    /// with `credentials.expired`). Unknown and revoked tokens always get
    /// `bad.credentials`.
    #[arg(long, value_name = "CODE", default_value = "credentials-expired", value_parser = ["credentials-expired", "bad-credentials", "alternate"])]
    pub expired_token_code: String,

    /// Seconds between a `v2.system.socket_closing` notice and the service
    /// closing the socket itself (when the control API does not say).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub socket_closing_grace: f64,

    /// Live conversations per queue (and per agent for the agent's own
    /// calls) at once: a conversation event on a queue starts a new one
    /// while fewer are live, else moves the oldest on (alerting, connected,
    /// wrap-up, disconnected). Ended ones make room for new ones.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub conversations_per_entity: usize,

    /// Seed of the random generator behind event bodies (ids stay unique).
    #[arg(long, value_name = "N", default_value_t = 42)]
    pub seed: u64,

    /// How many emitted events /sim/emitted remembers (oldest forgotten first).
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub event_log_limit: usize,

    /// Largest WebSocket frame accepted from clients, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_frame_size: usize,

    /// Frame bytes queued to one socket and not written yet (the client is
    /// not reading) beyond which the simulator gives up on it as a slow
    /// consumer: detached from its channel and closed with 1008. Genesys
    /// does not document its own threshold; lower it to be harsher.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024)]
    pub slow_consumer_bytes: u64,

    /// Seconds after its start before a conversation can be found by the
    /// Analytics conversation details query (the real service's lag is
    /// not documented; raise it to be harsher).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub analytics_lag: f64,
}

/// Everything but the client secret, which must never reach a log (the
/// `simulate` command line is part of `Debug`-printed CLI structures).
impl std::fmt::Debug for SimulatorArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let SimulatorArgs {
            listen,
            login_listen,
            login_on_api_port,
            tls_cert,
            tls_key,
            client_id,
            client_secret: _,
            heartbeat_interval,
            token_ttl,
            channel_ttl,
            queues,
            users,
            rate,
            max_channels,
            max_topics_per_channel,
            public_url,
            bad_credentials_status,
            subscribe_extends_channel,
            channels_follow_token,
            rate_limit_per_minute,
            rate_limit_429,
            expired_token_code,
            socket_closing_grace,
            conversations_per_entity,
            seed,
            event_log_limit,
            max_frame_size,
            slow_consumer_bytes,
            analytics_lag,
        } = self;
        f.debug_struct("SimulatorArgs")
            .field("listen", listen)
            .field("login_listen", login_listen)
            .field("login_on_api_port", login_on_api_port)
            .field("tls_cert", tls_cert)
            .field("tls_key", tls_key)
            .field("client_id", client_id)
            .field("client_secret", &"<redacted>")
            .field("heartbeat_interval", heartbeat_interval)
            .field("token_ttl", token_ttl)
            .field("channel_ttl", channel_ttl)
            .field("queues", queues)
            .field("users", users)
            .field("rate", rate)
            .field("max_channels", max_channels)
            .field("max_topics_per_channel", max_topics_per_channel)
            .field("public_url", public_url)
            .field("bad_credentials_status", bad_credentials_status)
            .field("subscribe_extends_channel", subscribe_extends_channel)
            .field("channels_follow_token", channels_follow_token)
            .field("rate_limit_per_minute", rate_limit_per_minute)
            .field("rate_limit_429", rate_limit_429)
            .field("expired_token_code", expired_token_code)
            .field("socket_closing_grace", socket_closing_grace)
            .field("conversations_per_entity", conversations_per_entity)
            .field("seed", seed)
            .field("event_log_limit", event_log_limit)
            .field("max_frame_size", max_frame_size)
            .field("slow_consumer_bytes", slow_consumer_bytes)
            .field("analytics_lag", analytics_lag)
            .finish()
    }
}

impl Default for SimulatorArgs {
    /// The same values `simulate` gets with no flags: clap is the single
    /// source of truth for defaults.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: SimulatorArgs,
        }
        <Wrapper as clap::Parser>::parse_from(["simulate"]).args
    }
}

impl SimulatorArgs {
    /// Checks what clap cannot (or what a caller building the struct in code
    /// may have got wrong), so that `start` fails early with a clear message.
    pub(crate) fn validate(&self) -> io::Result<()> {
        let invalid = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        if self.client_id.is_empty() || self.client_id.contains(':') {
            return invalid("--client-id must be non-empty and must not contain ':'".into());
        }
        if self.client_secret.is_empty() {
            return invalid("--client-secret must be non-empty".into());
        }
        for (name, v) in [
            ("--heartbeat-interval", self.heartbeat_interval),
            ("--token-ttl", self.token_ttl),
            ("--channel-ttl", self.channel_ttl),
        ] {
            if v == 0 || v > MAX_SECS {
                return invalid(format!("{name} must be between 1 and {MAX_SECS} seconds"));
            }
        }
        if self.max_channels == 0 || self.max_topics_per_channel == 0 {
            return invalid(
                "--max-channels and --max-topics-per-channel must be at least 1".into(),
            );
        }
        if !(0.0..=MAX_RATE).contains(&self.rate) {
            return invalid(format!(
                "--rate must be between 0 and {MAX_RATE}, got {}",
                self.rate
            ));
        }
        if !matches!(self.bad_credentials_status, 400 | 401) {
            return invalid("--bad-credentials-status must be 400 or 401".into());
        }
        if !(1..=1000).contains(&self.conversations_per_entity) {
            return invalid("--conversations-per-entity must be between 1 and 1000".into());
        }
        if self.event_log_limit == 0 {
            return invalid("--event-log-limit must be at least 1".into());
        }
        if self.slow_consumer_bytes < 64 * 1024 {
            return invalid("--slow-consumer-bytes must be at least 65536".into());
        }
        if !(0.0..=86_400.0).contains(&self.analytics_lag) {
            return invalid("--analytics-lag must be between 0 and 86400 seconds".into());
        }
        if let Some(url) = &self.public_url {
            public_ws_base(url)?;
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return invalid("--tls-cert and --tls-key go together".into());
        }
        if self.login_on_api_port && self.login_listen.is_some() {
            return invalid("--login-listen and --login-on-api-port exclude each other".into());
        }
        if !matches!(
            self.rate_limit_429.as_str(),
            "alternate" | "retry-after" | "no-retry-after"
        ) {
            return invalid(
                "--rate-limit-429 must be alternate, retry-after or no-retry-after".into(),
            );
        }
        if !(0.0..=MAX_SECS as f64).contains(&self.socket_closing_grace) {
            return invalid(format!(
                "--socket-closing-grace must be between 0 and {MAX_SECS} seconds"
            ));
        }
        Ok(())
    }

    /// Where login listens, `None` with --login-on-api-port.
    pub(crate) fn login_address(&self) -> Option<String> {
        if self.login_on_api_port {
            return None;
        }
        if let Some(addr) = &self.login_listen {
            return Some(addr.clone());
        }
        // `host:port`, `[v6]:port`: the port follows the last colon.
        let (host, port) = self.listen.rsplit_once(':')?;
        let port = match port.parse::<u16>() {
            Ok(0) | Err(_) => 0,
            Ok(p) => p.checked_add(1).unwrap_or(0),
        };
        Some(format!("{host}:{port}"))
    }

    pub(crate) fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_interval)
    }
}

/// Turns `--public-url` into the `ws(s)://host[:port][/prefix]` base of
/// connectUris: http → ws, https → wss, ws/wss kept, trailing slash dropped.
pub(crate) fn public_ws_base(public_url: &str) -> io::Result<String> {
    let url = url::Url::parse(public_url).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--public-url {public_url:?} is not a URL: {e}"),
        )
    })?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--public-url must be http(s):// or ws(s)://, not {other}://"),
            ))
        }
    };
    let rest = &url.as_str()[url.scheme().len()..];
    Ok(format!("{scheme}{}", rest.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_demo() {
        let args = SimulatorArgs::default();
        assert_eq!(args.listen, "127.0.0.1:8089");
        assert_eq!(args.client_id, "demo-client");
        assert_eq!(args.heartbeat_interval, 30);
        assert_eq!(args.token_ttl, 86399);
        assert_eq!(args.channel_ttl, 86400);
        assert_eq!((args.queues, args.users), (60, 20));
        assert_eq!((args.max_channels, args.max_topics_per_channel), (20, 1000));
        assert!(!args.subscribe_extends_channel);
        assert!(args.channels_follow_token);
        assert_eq!(args.rate_limit_per_minute, 300);
        assert_eq!(args.socket_closing_grace, 60.0);
        assert!(!args.login_on_api_port && args.tls_cert.is_none());
        args.validate().unwrap();
    }

    #[test]
    fn debug_output_hides_the_client_secret() {
        let args = SimulatorArgs {
            client_secret: "s3cr3t-value".into(),
            ..SimulatorArgs::default()
        };
        let printed = format!("{args:?}");
        assert!(!printed.contains("s3cr3t-value"), "{printed}");
        assert!(printed.contains("demo-client"), "{printed}");
    }

    #[test]
    fn public_url_becomes_a_websocket_base() {
        assert_eq!(public_ws_base("http://sim:8089/").unwrap(), "ws://sim:8089");
        assert_eq!(
            public_ws_base("https://gw.example.com/genesys").unwrap(),
            "wss://gw.example.com/genesys"
        );
        assert_eq!(
            public_ws_base("wss://streaming.mypurecloud.ie").unwrap(),
            "wss://streaming.mypurecloud.ie"
        );
        assert!(public_ws_base("ftp://x").is_err());
        assert!(public_ws_base("not a url").is_err());
    }
}
