//! Outbound HTTP proxies and extra trusted CAs, for sites that reach the
//! internet only through an HTTP CONNECT proxy (often one that inspects
//! TLS with its own CA).
//!
//! Which proxy a connection takes follows curl, so that an operator who
//! checked a setting with `curl` gets the same behaviour here:
//! - the proxy for a target comes from `genesys.proxy_url` when set (`""`
//!   meaning "no proxy", whatever the environment says), else from the
//!   environment, lower case first: `https_proxy`, `HTTPS_PROXY` for
//!   `https://`; `http_proxy`, `HTTP_PROXY` for `http://` (curl ignores
//!   upper-case `HTTP_PROXY` because under CGI it is set from a request's
//!   `Proxy:` header; the bridge never runs under CGI, and operators set
//!   all four); `wss://` tries `wss_proxy`, `WSS_PROXY`, then the
//!   `https://` ones, `ws://` tries `ws_proxy`, `WS_PROXY`, then the
//!   `http://` ones; every scheme
//!   falls back to `all_proxy`, `ALL_PROXY`. An empty variable counts as
//!   unset (as curl's `curl_getenv` does);
//! - the hosts that skip the proxy come from `genesys.no_proxy` when set,
//!   else `no_proxy`, else `NO_PROXY`; see [`NoProxy`] for the matching;
//! - a proxy URL is `[http://][user[:password]@]host[:port]`: no scheme
//!   means `http://`, no port means 1080 (curl's default), user and
//!   password are percent-decoded. Only `http://` proxies are supported.
//!
//! Every connection, whatever its scheme, goes through the proxy as a
//! `CONNECT host:port` tunnel; TLS to the origin then runs inside the
//! tunnel exactly as it would on a direct connection, so the origin's
//! certificate is still checked (against the system roots plus
//! `genesys.ca_file`).

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, ConnectorService};
use awc::http::Uri;
use base64::Engine;
use futures_util::future::LocalBoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::secret::{Secret, MASK};

/// Port of a proxy URL without one: curl's default.
pub const DEFAULT_PROXY_PORT: u16 = 1080;
/// Longest CONNECT reply (status line and headers) read from a proxy: a
/// reply that does not end within it is not an HTTP proxy's.
const MAX_CONNECT_REPLY_BYTES: usize = 16 * 1024;
/// Longest part of a proxy's status line quoted in an error.
const MAX_QUOTED_STATUS_CHARS: usize = 120;

// ---------------------------------------------------------------------------
// Proxy URLs

/// Why a proxy URL was refused. The messages never quote the URL: it may
/// hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyUrlError {
    #[error("the proxy scheme {0:?} is not supported: only http:// proxies (HTTP CONNECT) are")]
    UnsupportedScheme(String),
    #[error("the proxy URL has no host")]
    MissingHost,
    #[error("the proxy host is not a host name or IP address")]
    InvalidHost,
    #[error("the proxy port is not a number between 1 and 65535")]
    InvalidPort,
    #[error("a proxy URL has no path, query or fragment (characters such as / ? # @ : in a user name or password must be percent-encoded)")]
    UnexpectedPath,
    #[error("the proxy user name or password is not valid UTF-8 once percent-decoded")]
    InvalidCredentials,
}

/// User and password sent to the proxy as `Proxy-Authorization: Basic`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyCredentials {
    pub user: String,
    pub password: Secret,
}

impl fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// An HTTP proxy to tunnel through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyEndpoint {
    /// As in an authority: an IPv6 address keeps its brackets.
    pub host: String,
    pub port: u16,
    pub credentials: Option<ProxyCredentials>,
}

/// A proxy URL taken apart; the password is kept apart from the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedProxyUrl {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

impl ParsedProxyUrl {
    /// `[http://][user[:password]@]host[:port][/]`, as curl reads it.
    pub fn parse(text: &str) -> Result<ParsedProxyUrl, ProxyUrlError> {
        let text = text.trim();
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (scheme, rest),
            None => ("http", text),
        };
        if !scheme.eq_ignore_ascii_case("http") {
            let shown = if scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
            {
                scheme.to_ascii_lowercase()
            } else {
                "?".to_owned()
            };
            return Err(ProxyUrlError::UnsupportedScheme(shown));
        }
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if !(tail.is_empty() || tail == "/") {
            return Err(ProxyUrlError::UnexpectedPath);
        }
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let (host, port) = split_host_port(host_port)?;
        let (user, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (userinfo, None),
                };
                (
                    Some(percent_decoded(user)?),
                    password.map(percent_decoded).transpose()?.map(Secret::new),
                )
            }
        };
        Ok(ParsedProxyUrl {
            host,
            port: port.unwrap_or(DEFAULT_PROXY_PORT),
            user,
            password,
        })
    }

    /// The endpoint, with `password` (from elsewhere) when the URL has none.
    pub fn into_endpoint(self, password: Option<Secret>) -> ProxyEndpoint {
        let password = self.password.or(password);
        let credentials = match (self.user, password) {
            (Some(user), password) => Some(ProxyCredentials {
                user,
                password: password.unwrap_or_else(|| Secret::new("")),
            }),
            (None, Some(password)) => Some(ProxyCredentials {
                user: String::new(),
                password,
            }),
            (None, None) => None,
        };
        ProxyEndpoint {
            host: self.host,
            port: self.port,
            credentials,
        }
    }
}

fn split_host_port(host_port: &str) -> Result<(String, Option<u16>), ProxyUrlError> {
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (address, after) = bracketed
            .split_once(']')
            .ok_or(ProxyUrlError::InvalidHost)?;
        address
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| ProxyUrlError::InvalidHost)?;
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':').ok_or(ProxyUrlError::InvalidHost)?),
        };
        (format!("[{address}]"), port)
    } else {
        if host_port.matches(':').count() > 1 {
            // An IPv6 address without its brackets.
            return Err(ProxyUrlError::InvalidHost);
        }
        match host_port.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (host_port.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(ProxyUrlError::MissingHost);
    }
    if !host.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(ProxyUrlError::InvalidHost);
    }
    let port = match port {
        None | Some("") => None,
        Some(port) => Some(
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or(ProxyUrlError::InvalidPort)?,
        ),
    };
    Ok((host.to_ascii_lowercase(), port))
}

fn percent_decoded(text: &str) -> Result<String, ProxyUrlError> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| ProxyUrlError::InvalidCredentials)
}

impl ProxyEndpoint {
    /// `host:port`, what the proxy is connected to.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The proxy as shown to people: credentials masked.
impl fmt::Display for ProxyEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.credentials {
            Some(_) => write!(f, "http://{MASK}@{}:{}", self.host, self.port),
            None => write!(f, "http://{}:{}", self.host, self.port),
        }
    }
}

/// A proxy URL shown to people: whatever is before the host's `@`
/// masked, the rest as written. Never fails: text that is not a URL is
/// masked whole.
pub fn redact_proxy_url(text: &str) -> String {
    if text.trim().is_empty() {
        return String::new();
    }
    match ParsedProxyUrl::parse(text) {
        Ok(parsed) => parsed.into_endpoint(None).to_string(),
        Err(_) => format!("{MASK} (not a proxy URL)"),
    }
}

/// `genesys.proxy_url` as written: printed (`Debug`, `Serialize`, so
/// `check-config` too) with its user information masked.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct ProxyUrlSetting(String);

impl ProxyUrlSetting {
    pub fn new(text: impl Into<String>) -> Self {
        ProxyUrlSetting(text.into())
    }

    /// The URL as written, credentials included.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProxyUrlSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_proxy_url(&self.0))
    }
}

impl serde::Serialize for ProxyUrlSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact_proxy_url(&self.0))
    }
}

// ---------------------------------------------------------------------------
// NO_PROXY

/// Why a `NO_PROXY` list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoProxyError {
    #[error("{entry:?}: the port is not a number between 1 and 65535")]
    InvalidPort { entry: String },
    #[error("{entry:?}: not an IP address with a prefix length (e.g. 10.0.0.0/8)")]
    InvalidNetwork { entry: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NoProxyEntry {
    /// A domain: the host itself and every name under it.
    Domain { name: String, port: Option<u16> },
    /// An address, or a network in CIDR notation.
    Network {
        address: IpAddr,
        prefix_len: u8,
        port: Option<u16>,
    },
}

/// Hosts reached without the proxy, as curl reads `NO_PROXY`:
/// - entries separated by commas and/or blanks;
/// - `*` as the whole value: every host;
/// - a name matches itself and every host under it, case-insensitively:
///   `example.com` (or `.example.com`) matches `example.com` and
///   `api.example.com`, not `notexample.com`; trailing dots are ignored;
/// - an IP address (IPv6 without brackets) matches that address, and
///   `10.0.0.0/8` the network; names never match IP hosts, nor addresses
///   names (no DNS lookups);
///
/// and, beyond curl: an entry may end with `:port` (`[v6]:port` for IPv6)
/// to match that port only (curl would never match such an entry), and
/// `*.example.com` reads as `.example.com` (curl would never match it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    everything: bool,
    entries: Vec<NoProxyEntry>,
    written: String,
}

impl NoProxy {
    pub fn parse(text: &str) -> Result<NoProxy, NoProxyError> {
        let written = text.trim().to_owned();
        if written == "*" {
            return Ok(NoProxy {
                everything: true,
                entries: Vec::new(),
                written,
            });
        }
        let entries = written
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|token| !token.is_empty())
            .map(parse_no_proxy_entry)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        Ok(NoProxy {
            everything: false,
            entries,
            written,
        })
    }

    /// Whether `host` (as in a URL: IPv6 in brackets) on `port` skips the
    /// proxy.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.everything {
            return true;
        }
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port_matches = |wanted: &Option<u16>| wanted.map_or(true, |p| p == port);
        if let Ok(address) = bare.parse::<IpAddr>() {
            return self.entries.iter().any(|entry| match entry {
                NoProxyEntry::Network {
                    address: network,
                    prefix_len,
                    port,
                } => port_matches(port) && in_network(address, *network, *prefix_len),
                NoProxyEntry::Domain { .. } => false,
            });
        }
        let name = bare.trim_end_matches('.').to_ascii_lowercase();
        self.entries.iter().any(|entry| match entry {
            NoProxyEntry::Domain { name: domain, port } => {
                port_matches(port)
                    && (name == *domain
                        || name
                            .strip_suffix(domain.as_str())
                            .is_some_and(|prefix| prefix.ends_with('.')))
            }
            NoProxyEntry::Network { .. } => false,
        })
    }

    pub fn is_empty(&self) -> bool {
        !self.everything && self.entries.is_empty()
    }
}

impl fmt::Display for NoProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// One entry; `None` for one that can match nothing (a lone `.`).
fn parse_no_proxy_entry(token: &str) -> Result<Option<NoProxyEntry>, NoProxyError> {
    let invalid_port = || NoProxyError::InvalidPort {
        entry: token.to_owned(),
    };
    let invalid_network = || NoProxyError::InvalidNetwork {
        entry: token.to_owned(),
    };
    let parse_port = |port: &str| {
        port.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(invalid_port)
    };
    // `[v6]` or `[v6]:port`
    if let Some(bracketed) = token.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']').ok_or_else(invalid_network)?;
        let address: IpAddr = address.parse().map_err(|_| invalid_network())?;
        let port = match after {
            "" => None,
            after => Some(parse_port(
                after.strip_prefix(':').ok_or_else(invalid_port)?,
            )?),
        };
        return Ok(Some(
            network_entry(address, None, port).ok_or_else(invalid_network)?,
        ));
    }
    // `address/prefix`
    if let Some((address, prefix)) = token.split_once('/') {
        let address: IpAddr = address.parse().map_err(|_| invalid_network())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid_network())?;
        return Ok(Some(
            network_entry(address, Some(prefix), None).ok_or_else(invalid_network)?,
        ));
    }
    // a bare address (IPv6 included: curl wants them without brackets)
    if let Ok(address) = token.parse::<IpAddr>() {
        return Ok(network_entry(address, None, None));
    }
    // `name:port` or `ipv4:port`
    let (host, port) = match token.rsplit_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (token, None),
    };
    if let Ok(address) = host.parse::<IpAddr>() {
        return Ok(network_entry(address, None, port));
    }
    let name = host
        .strip_prefix("*.")
        .map_or(host, |rest| rest)
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if name.is_empty() {
        return Ok(None);
    }
    Ok(Some(NoProxyEntry::Domain { name, port }))
}

fn network_entry(
    address: IpAddr,
    prefix_len: Option<u8>,
    port: Option<u16>,
) -> Option<NoProxyEntry> {
    let full = match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let prefix_len = prefix_len.unwrap_or(full);
    (prefix_len <= full).then_some(NoProxyEntry::Network {
        address,
        prefix_len,
        port,
    })
}

fn in_network(address: IpAddr, network: IpAddr, prefix_len: u8) -> bool {
    match (address, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Routes: which proxy each target takes

/// The URL schemes the bridge connects with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetScheme {
    Https,
    Wss,
    Http,
    Ws,
}

impl TargetScheme {
    pub const ALL: [TargetScheme; 4] = [
        TargetScheme::Https,
        TargetScheme::Wss,
        TargetScheme::Http,
        TargetScheme::Ws,
    ];

    pub fn from_scheme(scheme: &str) -> Option<TargetScheme> {
        match scheme.to_ascii_lowercase().as_str() {
            "https" => Some(TargetScheme::Https),
            "wss" => Some(TargetScheme::Wss),
            "http" => Some(TargetScheme::Http),
            "ws" => Some(TargetScheme::Ws),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TargetScheme::Https => "https",
            TargetScheme::Wss => "wss",
            TargetScheme::Http => "http",
            TargetScheme::Ws => "ws",
        }
    }

    /// The environment variables naming this scheme's proxy, first found
    /// wins: curl's order (see the module docs).
    pub fn proxy_variables(self) -> &'static [&'static str] {
        match self {
            TargetScheme::Https => &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"],
            TargetScheme::Http => &["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"],
            TargetScheme::Wss => &[
                "wss_proxy",
                "WSS_PROXY",
                "https_proxy",
                "HTTPS_PROXY",
                "all_proxy",
                "ALL_PROXY",
            ],
            TargetScheme::Ws => &[
                "ws_proxy",
                "WS_PROXY",
                "http_proxy",
                "HTTP_PROXY",
                "all_proxy",
                "ALL_PROXY",
            ],
        }
    }
}

/// The variables naming hosts that skip the proxy, first found wins.
pub const NO_PROXY_VARIABLES: [&str; 2] = ["no_proxy", "NO_PROXY"];

/// A proxy setting that was refused, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {reason}")]
pub struct ProxySettingError {
    /// `environment variable HTTPS_PROXY`, …
    pub origin: String,
    pub reason: String,
}

/// What the configuration file says; `None` leaves it to the environment.
#[derive(Debug, Clone, Default)]
pub struct ConfiguredProxy {
    /// `Some(None)`: `genesys.proxy_url = ""`, connect directly.
    pub proxy: Option<Option<ProxyEndpoint>>,
    pub no_proxy: Option<NoProxy>,
}

#[derive(Debug, Clone)]
struct Route {
    proxy: ProxyEndpoint,
    /// `genesys.proxy_url` or the variable's name.
    origin: String,
}

/// Which proxy each target scheme takes, and which hosts skip it.
#[derive(Debug, Clone, Default)]
pub struct ProxyRoutes {
    https: Option<Route>,
    wss: Option<Route>,
    http: Option<Route>,
    ws: Option<Route>,
    no_proxy: NoProxy,
    no_proxy_origin: Option<String>,
}

/// The first of `names` set to a non-empty value.
fn first_set(
    names: &[&'static str],
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<(&'static str, String)> {
    names
        .iter()
        .find_map(|name| env(name).filter(|v| !v.is_empty()).map(|v| (*name, v)))
}

impl ProxyRoutes {
    /// No proxy for anything.
    pub fn direct() -> ProxyRoutes {
        ProxyRoutes::default()
    }

    /// The routes from the configuration and, where it says nothing, from
    /// `env` (the process environment in production; a map in tests).
    pub fn resolve(
        configured: &ConfiguredProxy,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ProxyRoutes, ProxySettingError> {
        let route_for = |scheme: TargetScheme| -> Result<Option<Route>, ProxySettingError> {
            if let Some(choice) = &configured.proxy {
                return Ok(choice.clone().map(|proxy| Route {
                    proxy,
                    origin: "genesys.proxy_url".into(),
                }));
            }
            let Some((name, value)) = first_set(scheme.proxy_variables(), env) else {
                return Ok(None);
            };
            let proxy = ParsedProxyUrl::parse(&value)
                .map_err(|e| ProxySettingError {
                    origin: format!("environment variable {name}"),
                    reason: e.to_string(),
                })?
                .into_endpoint(None);
            Ok(Some(Route {
                proxy,
                origin: name.into(),
            }))
        };
        let (no_proxy, no_proxy_origin) = match &configured.no_proxy {
            Some(list) => (list.clone(), Some("genesys.no_proxy".to_owned())),
            None => match first_set(&NO_PROXY_VARIABLES, env) {
                Some((name, value)) => (
                    NoProxy::parse(&value).map_err(|e| ProxySettingError {
                        origin: format!("environment variable {name}"),
                        reason: e.to_string(),
                    })?,
                    Some(name.to_owned()),
                ),
                None => (NoProxy::default(), None),
            },
        };
        Ok(ProxyRoutes {
            https: route_for(TargetScheme::Https)?,
            wss: route_for(TargetScheme::Wss)?,
            http: route_for(TargetScheme::Http)?,
            ws: route_for(TargetScheme::Ws)?,
            no_proxy,
            no_proxy_origin,
        })
    }

    fn route(&self, scheme: TargetScheme) -> Option<&Route> {
        match scheme {
            TargetScheme::Https => self.https.as_ref(),
            TargetScheme::Wss => self.wss.as_ref(),
            TargetScheme::Http => self.http.as_ref(),
            TargetScheme::Ws => self.ws.as_ref(),
        }
    }

    /// The proxy for a connection to `host:port` by `scheme`, if any.
    pub fn proxy_for(&self, scheme: &str, host: &str, port: u16) -> Option<&ProxyEndpoint> {
        let route = self.route(TargetScheme::from_scheme(scheme)?)?;
        (!self.no_proxy.matches(host, port)).then_some(&route.proxy)
    }

    /// Whether any scheme goes through a proxy.
    pub fn any(&self) -> bool {
        TargetScheme::ALL.iter().any(|s| self.route(*s).is_some())
    }

    /// One scheme's route as shown to people (credentials masked).
    pub fn describe(&self, scheme: TargetScheme) -> String {
        match self.route(scheme) {
            Some(route) => format!("{} (from {})", route.proxy, route.origin),
            None => "direct".into(),
        }
    }

    /// The hosts that skip the proxy, as shown to people.
    pub fn describe_no_proxy(&self) -> String {
        match &self.no_proxy_origin {
            Some(origin) => format!("{:?} (from {origin})", self.no_proxy.to_string()),
            None => "none".into(),
        }
    }

    /// Logs which proxy each scheme takes: once, at start-up.
    pub fn log(&self) {
        tracing::info!(
            https = %self.describe(TargetScheme::Https),
            wss = %self.describe(TargetScheme::Wss),
            http = %self.describe(TargetScheme::Http),
            ws = %self.describe(TargetScheme::Ws),
            no_proxy = %self.describe_no_proxy(),
            "outbound proxy for Genesys connections"
        );
    }
}

// ---------------------------------------------------------------------------
// The CONNECT tunnel

/// Why a tunnel through the proxy could not be opened. Shows the proxy
/// with its credentials masked and never the credentials themselves.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("cannot reach proxy {proxy}: {reason}")]
    Unreachable { proxy: String, reason: String },
    #[error("proxy {proxy} answered CONNECT {target} with {status}: proxy authentication required; give the user in the proxy URL (http://user@host:port) and its password in it or in genesys.proxy_password_env")]
    CredentialsRequired {
        proxy: String,
        target: String,
        status: String,
    },
    #[error("proxy {proxy} answered CONNECT {target} with {status}: proxy authentication failed, check the proxy user and password")]
    CredentialsRefused {
        proxy: String,
        target: String,
        status: String,
    },
    #[error("proxy {proxy} refused CONNECT {target}: {status}")]
    Refused {
        proxy: String,
        target: String,
        status: String,
    },
    #[error("proxy {proxy} gave no valid answer to CONNECT {target}: {reason}")]
    BadReply {
        proxy: String,
        target: String,
        reason: String,
    },
    #[error("proxy {proxy}: connection lost during CONNECT {target}: {source}")]
    Io {
        proxy: String,
        target: String,
        source: io::Error,
    },
    #[error("proxy {proxy} did not open a tunnel to {target} within {timeout:?}")]
    Timeout {
        proxy: String,
        target: String,
        timeout: Duration,
    },
}

impl From<TunnelError> for ConnectError {
    /// awc shows an I/O error's message as is: the message stays clear.
    fn from(e: TunnelError) -> ConnectError {
        ConnectError::Io(io::Error::other(e))
    }
}

/// A TCP connector for awc that opens each connection through the proxy
/// its target's scheme and host call for (a CONNECT tunnel), or directly.
/// awc runs TLS over what this returns, so `https`/`wss` stay end-to-end.
#[derive(Clone)]
pub struct TunnelConnector {
    routes: Rc<ProxyRoutes>,
    direct: ConnectorService,
    /// Bound on reaching the proxy and its answer to CONNECT.
    timeout: Duration,
}

impl TunnelConnector {
    pub fn new(routes: ProxyRoutes, timeout: Duration) -> TunnelConnector {
        TunnelConnector {
            routes: Rc::new(routes),
            direct: ConnectorService::default(),
            timeout,
        }
    }
}

impl Service<ConnectInfo<Uri>> for TunnelConnector {
    type Response = Connection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, info: ConnectInfo<Uri>) -> Self::Future {
        let scheme = info.request().scheme_str().unwrap_or_default();
        let Some(proxy) = self
            .routes
            .proxy_for(scheme, info.hostname(), info.port())
            .cloned()
        else {
            return Box::pin(self.direct.call(info));
        };
        let target = format!("{}:{}", info.hostname(), info.port());
        let uri = info.request().clone();
        let direct = self.direct.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let opened =
                actix_rt::time::timeout(timeout, open_tunnel(&direct, &proxy, &target)).await;
            match opened {
                Ok(Ok(stream)) => Ok(Connection::new(uri, stream)),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(TunnelError::Timeout {
                    proxy: proxy.to_string(),
                    target,
                    timeout,
                }
                .into()),
            }
        })
    }
}

/// Connects to `proxy` and asks it for a tunnel to `target` (`host:port`).
async fn open_tunnel(
    direct: &ConnectorService,
    proxy: &ProxyEndpoint,
    target: &str,
) -> Result<TcpStream, TunnelError> {
    let shown = proxy.to_string();
    let proxy_uri: Uri = format!("http://{}/", proxy.authority())
        .parse()
        .map_err(|e| TunnelError::Unreachable {
            proxy: shown.clone(),
            reason: format!("not a valid address ({e})"),
        })?;
    let connection = direct
        .call(ConnectInfo::new(proxy_uri))
        .await
        .map_err(|e| TunnelError::Unreachable {
            proxy: shown.clone(),
            reason: describe_connect_error(&e),
        })?;
    let (mut stream, _) = connection.into_parts();
    let io_error = |source| TunnelError::Io {
        proxy: shown.clone(),
        target: target.to_owned(),
        source,
    };
    stream
        .write_all(connect_request(target, proxy.credentials.as_ref()).as_bytes())
        .await
        .map_err(io_error)?;
    let reply = read_connect_reply(&mut stream).await.map_err(|e| match e {
        ReplyError::Io(source) => io_error(source),
        other => TunnelError::BadReply {
            proxy: shown.clone(),
            target: target.to_owned(),
            reason: other.to_string(),
        },
    })?;
    judge_connect_reply(&reply, proxy, target)?;
    Ok(stream)
}

/// The CONNECT request for `target`, with Basic credentials if given.
fn connect_request(target: &str, credentials: Option<&ProxyCredentials>) -> String {
    let mut request = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: genesys-kafka-bridge/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(credentials) = credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            credentials.user,
            credentials.password.expose()
        ));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    request
}

#[derive(Debug, thiserror::Error)]
enum ReplyError {
    #[error("{0}")]
    Io(io::Error),
    #[error("the proxy closed the connection before answering")]
    Closed,
    #[error("no end of the reply's headers within {MAX_CONNECT_REPLY_BYTES} bytes")]
    TooLong,
}

/// The proxy's reply head (status line and headers), without reading a
/// byte past it: after a 2xx the stream belongs to the tunnel.
async fn read_connect_reply<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Vec<u8>, ReplyError> {
    let mut reply = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    // One byte at a time: a proxy may send its reply and the origin's
    // first bytes in one segment, and those belong to the tunnel. The
    // reply is a few hundred bytes, once per connection.
    while !reply.ends_with(b"\r\n\r\n") {
        if reply.len() >= MAX_CONNECT_REPLY_BYTES {
            return Err(ReplyError::TooLong);
        }
        match stream.read(&mut byte).await.map_err(ReplyError::Io)? {
            0 => return Err(ReplyError::Closed),
            _ => reply.push(byte[0]),
        }
    }
    Ok(reply)
}

/// Success for a 2xx, else the error the status calls for.
fn judge_connect_reply(
    reply: &[u8],
    proxy: &ProxyEndpoint,
    target: &str,
) -> Result<(), TunnelError> {
    let head = String::from_utf8_lossy(reply);
    let status_line: String = head
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_QUOTED_STATUS_CHARS)
        .collect();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().and_then(|c| c.parse::<u16>().ok());
    let (proxy_shown, target) = (proxy.to_string(), target.to_owned());
    let Some(code) = code.filter(|_| version.starts_with("HTTP/")) else {
        return Err(TunnelError::BadReply {
            proxy: proxy_shown,
            target,
            reason: format!("not an HTTP status line: {status_line:?}"),
        });
    };
    let status = status_line.clone();
    match (code, proxy.credentials.is_some()) {
        (200..=299, _) => Ok(()),
        (407, false) => Err(TunnelError::CredentialsRequired {
            proxy: proxy_shown,
            target,
            status,
        }),
        // tinyproxy answers wrong credentials with 401, others with 407.
        (401 | 407, true) => Err(TunnelError::CredentialsRefused {
            proxy: proxy_shown,
            target,
            status,
        }),
        _ => Err(TunnelError::Refused {
            proxy: proxy_shown,
            target,
            status,
        }),
    }
}

/// actix-tls' own messages for I/O errors say only "I/O error".
fn describe_connect_error(e: &ConnectError) -> String {
    match e {
        ConnectError::Io(e) => e.to_string(),
        ConnectError::Resolver(e) => format!("cannot resolve its host: {e}"),
        ConnectError::NoRecords => "its host name resolves to no address".into(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Extra trusted CAs

/// Why `genesys.ca_file` was refused.
#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path} is not a PEM certificate bundle: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    Empty { path: String },
}

/// The certificates of a PEM bundle (one or more), trusted in addition to
/// the system's roots.
pub fn load_ca_bundle(path: &Path) -> Result<Vec<openssl::x509::X509>, CaBundleError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| CaBundleError::Read {
        path: shown.clone(),
        source,
    })?;
    let certificates =
        openssl::x509::X509::stack_from_pem(&pem).map_err(|e| CaBundleError::Invalid {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(CaBundleError::Empty { path: shown });
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn no_proxy(list: &str) -> NoProxy {
        NoProxy::parse(list).unwrap()
    }

    #[test]
    fn no_proxy_names_match_themselves_and_their_subdomains() {
        let list = no_proxy("example.com, .corp.local,Internal.");
        assert!(list.matches("example.com", 443));
        assert!(list.matches("api.example.com", 443));
        assert!(list.matches("API.Example.COM.", 443));
        assert!(!list.matches("notexample.com", 443));
        assert!(!list.matches("example.com.evil", 443));
        assert!(
            list.matches("corp.local", 80),
            "a leading dot is ignored, as in curl"
        );
        assert!(list.matches("login.corp.local", 80));
        assert!(list.matches("internal", 80), "a trailing dot is ignored");
        assert!(!list.matches("xinternal", 80));
    }

    #[test]
    fn no_proxy_star_alone_matches_everything() {
        assert!(no_proxy("*").matches("api.mypurecloud.ie", 443));
        assert!(no_proxy(" * ").matches("10.1.2.3", 443));
        // Like curl, `*` among other entries is a name that matches nothing.
        assert!(!no_proxy("localhost,*").matches("api.mypurecloud.ie", 443));
        assert!(no_proxy("").is_empty());
        assert!(!no_proxy("").matches("localhost", 80));
    }

    #[test]
    fn no_proxy_addresses_and_networks() {
        let list = no_proxy("127.0.0.1 10.0.0.0/8 ::1 fd00::/8 192.168.1.0/24");
        assert!(list.matches("127.0.0.1", 80));
        assert!(!list.matches("127.0.0.2", 80));
        assert!(list.matches("10.200.3.4", 443));
        assert!(!list.matches("11.0.0.1", 443));
        assert!(list.matches("[::1]", 443));
        assert!(list.matches("[fd12:3456::1]", 443));
        assert!(!list.matches("[fe80::1]", 443));
        assert!(list.matches("192.168.1.77", 443));
        assert!(!list.matches("192.168.2.1", 443));
        // Names never match addresses, nor addresses names: no DNS.
        assert!(!no_proxy("localhost").matches("127.0.0.1", 80));
        assert!(!no_proxy("127.0.0.1").matches("localhost", 80));
        assert!(no_proxy("0.0.0.0/0").matches("203.0.113.9", 443));
    }

    #[test]
    fn no_proxy_entries_may_name_a_port() {
        let list = no_proxy("example.com:8443,127.0.0.1:9000,[::1]:9001");
        assert!(list.matches("api.example.com", 8443));
        assert!(!list.matches("api.example.com", 443));
        assert!(list.matches("127.0.0.1", 9000));
        assert!(!list.matches("127.0.0.1", 9002));
        assert!(list.matches("[::1]", 9001));
        assert!(!list.matches("[::1]", 443));
    }

    #[test]
    fn no_proxy_star_dot_reads_as_a_leading_dot() {
        let list = no_proxy("*.example.com");
        assert!(list.matches("api.example.com", 443));
        assert!(list.matches("example.com", 443));
    }

    #[test]
    fn malformed_no_proxy_entries_are_refused() {
        assert!(matches!(
            NoProxy::parse("example.com:http"),
            Err(NoProxyError::InvalidPort { .. })
        ));
        assert!(matches!(
            NoProxy::parse("10.0.0.0/33"),
            Err(NoProxyError::InvalidNetwork { .. })
        ));
        assert!(matches!(
            NoProxy::parse("intranet/8"),
            Err(NoProxyError::InvalidNetwork { .. })
        ));
        NoProxy::parse(" , ,. ").unwrap();
    }

    #[test]
    fn proxy_urls_read_as_curl_reads_them() {
        let parsed = ParsedProxyUrl::parse("proxy.corp:3128").unwrap();
        assert_eq!((parsed.host.as_str(), parsed.port), ("proxy.corp", 3128));
        let parsed = ParsedProxyUrl::parse("http://Proxy.Corp").unwrap();
        assert_eq!(
            (parsed.host.as_str(), parsed.port),
            ("proxy.corp", DEFAULT_PROXY_PORT)
        );
        let parsed = ParsedProxyUrl::parse("HTTP://[::1]:8080/").unwrap();
        assert_eq!((parsed.host.as_str(), parsed.port), ("[::1]", 8080));
        let parsed = ParsedProxyUrl::parse("http://al%40ice:p%3Ass%2Fw@10.0.0.1:3128").unwrap();
        assert_eq!(parsed.user.as_deref(), Some("al@ice"));
        assert_eq!(parsed.password.as_ref().map(Secret::expose), Some("p:ss/w"));
        let endpoint = parsed.into_endpoint(None);
        assert_eq!(endpoint.to_string(), "http://********@10.0.0.1:3128");
        assert!(!format!("{endpoint:?}").contains("p:ss/w"));
    }

    #[test]
    fn unsupported_proxy_urls_are_refused_without_echoing_them() {
        for (text, expected) in [
            (
                "https://proxy:3128",
                ProxyUrlError::UnsupportedScheme("https".into()),
            ),
            (
                "socks5://proxy:1080",
                ProxyUrlError::UnsupportedScheme("socks5".into()),
            ),
            ("http://", ProxyUrlError::MissingHost),
            ("http://proxy:notaport", ProxyUrlError::InvalidPort),
            ("http://proxy:0", ProxyUrlError::InvalidPort),
            ("http://proxy:3128/path", ProxyUrlError::UnexpectedPath),
            ("http://::1:3128", ProxyUrlError::InvalidHost),
            (
                "http://user:pa/ss@proxy:3128",
                ProxyUrlError::UnexpectedPath,
            ),
        ] {
            let err = ParsedProxyUrl::parse(text).unwrap_err();
            assert_eq!(err, expected, "{text}");
            assert!(!err.to_string().contains("pa/ss"));
        }
        assert_eq!(
            redact_proxy_url("http://u:hunter2@p:1"),
            "http://********@p:1"
        );
        assert!(!redact_proxy_url("http://u:hun ter2@p:x").contains("hun"));
    }

    #[test]
    fn the_setting_prints_masked() {
        let setting = ProxyUrlSetting::new("http://alice:hunter2@proxy:3128");
        assert_eq!(format!("{setting:?}"), "\"http://********@proxy:3128\"");
        let toml = toml::to_string(&HashMap::from([("proxy_url", setting)])).unwrap();
        assert!(
            !toml.contains("hunter2") && !toml.contains("alice"),
            "{toml}"
        );
    }

    fn routes(configured: &ConfiguredProxy, pairs: &[(&str, &str)]) -> ProxyRoutes {
        ProxyRoutes::resolve(configured, &env(pairs)).unwrap()
    }

    fn via(routes: &ProxyRoutes, url: &str) -> Option<String> {
        let uri: Uri = url.parse().unwrap();
        let port = uri
            .port_u16()
            .unwrap_or(if matches!(uri.scheme_str(), Some("https" | "wss")) {
                443
            } else {
                80
            });
        routes
            .proxy_for(uri.scheme_str().unwrap(), uri.host().unwrap(), port)
            .map(|p| p.authority())
    }

    #[test]
    fn environment_precedence_follows_curl() {
        let none = ConfiguredProxy::default();
        // Lower case first; upper-case HTTPS_PROXY when it is missing.
        let r = routes(&none, &[("https_proxy", "low:1"), ("HTTPS_PROXY", "up:2")]);
        assert_eq!(via(&r, "https://api.x").as_deref(), Some("low:1"));
        let r = routes(&none, &[("HTTPS_PROXY", "up:2")]);
        assert_eq!(via(&r, "https://api.x").as_deref(), Some("up:2"));
        // An empty variable counts as unset.
        let r = routes(&none, &[("https_proxy", ""), ("HTTPS_PROXY", "up:2")]);
        assert_eq!(via(&r, "https://api.x").as_deref(), Some("up:2"));
        // Unlike curl, upper-case HTTP_PROXY counts too, after http_proxy.
        let r = routes(&none, &[("HTTP_PROXY", "up:2")]);
        assert_eq!(via(&r, "http://api.x").as_deref(), Some("up:2"));
        assert_eq!(via(&r, "ws://api.x").as_deref(), Some("up:2"));
        assert_eq!(via(&r, "https://api.x"), None, "http's proxy is not https'");
        let r = routes(&none, &[("http_proxy", "low:1"), ("HTTP_PROXY", "up:2")]);
        assert_eq!(via(&r, "http://api.x").as_deref(), Some("low:1"));
        // WebSockets: their own variables, then their HTTP counterpart's.
        let r = routes(&none, &[("https_proxy", "s:1"), ("http_proxy", "p:2")]);
        assert_eq!(via(&r, "wss://streaming.x/c").as_deref(), Some("s:1"));
        assert_eq!(via(&r, "ws://streaming.x/c").as_deref(), Some("p:2"));
        let r = routes(&none, &[("https_proxy", "s:1"), ("WSS_PROXY", "w:3")]);
        assert_eq!(via(&r, "wss://streaming.x/c").as_deref(), Some("w:3"));
        // ALL_PROXY is the fallback for every scheme.
        let r = routes(&none, &[("ALL_PROXY", "all:4"), ("https_proxy", "s:1")]);
        assert_eq!(via(&r, "https://api.x").as_deref(), Some("s:1"));
        assert_eq!(via(&r, "http://api.x").as_deref(), Some("all:4"));
        assert_eq!(via(&r, "ws://api.x").as_deref(), Some("all:4"));
        let r = routes(&none, &[]);
        assert!(!r.any());
    }

    #[test]
    fn no_proxy_from_the_environment_lower_case_first() {
        let none = ConfiguredProxy::default();
        let r = routes(
            &none,
            &[
                ("https_proxy", "p:1"),
                ("no_proxy", "api.x"),
                ("NO_PROXY", "login.x"),
            ],
        );
        assert_eq!(via(&r, "https://api.x"), None);
        assert_eq!(via(&r, "https://login.x").as_deref(), Some("p:1"));
        let r = routes(&none, &[("https_proxy", "p:1"), ("NO_PROXY", "login.x")]);
        assert_eq!(via(&r, "https://login.x"), None);
        assert!(r.describe_no_proxy().contains("NO_PROXY"));
    }

    #[test]
    fn configuration_overrides_the_environment() {
        let endpoint = ParsedProxyUrl::parse("cfg:9").unwrap().into_endpoint(None);
        let configured = ConfiguredProxy {
            proxy: Some(Some(endpoint)),
            no_proxy: Some(no_proxy("")),
        };
        let r = routes(
            &configured,
            &[
                ("https_proxy", "env:1"),
                ("http_proxy", "env:1"),
                ("NO_PROXY", "*"),
            ],
        );
        for url in ["https://api.x", "wss://s.x", "http://api.x", "ws://s.x"] {
            assert_eq!(via(&r, url).as_deref(), Some("cfg:9"), "{url}");
        }
        assert!(r.describe(TargetScheme::Ws).contains("genesys.proxy_url"));
        // `proxy_url = ""`: direct whatever the environment says.
        let direct = ConfiguredProxy {
            proxy: Some(None),
            no_proxy: None,
        };
        let r = routes(&direct, &[("https_proxy", "env:1"), ("ALL_PROXY", "env:2")]);
        assert!(!r.any());
        // The environment's NO_PROXY still applies to a configured proxy, as
        // curl's NO_PROXY applies to --proxy.
        let configured = ConfiguredProxy {
            proxy: Some(Some(
                ParsedProxyUrl::parse("cfg:9").unwrap().into_endpoint(None),
            )),
            no_proxy: None,
        };
        let r = routes(&configured, &[("NO_PROXY", "api.x")]);
        assert_eq!(via(&r, "https://api.x"), None);
        assert_eq!(via(&r, "https://login.x").as_deref(), Some("cfg:9"));
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let err = ProxyRoutes::resolve(
            &ConfiguredProxy::default(),
            &env(&[("ALL_PROXY", "socks5://u:pw@s:1080")]),
        )
        .unwrap_err();
        assert_eq!(err.origin, "environment variable ALL_PROXY");
        assert!(err.reason.contains("socks5"), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
        let err = ProxyRoutes::resolve(
            &ConfiguredProxy::default(),
            &env(&[("no_proxy", "10.0.0.0/99")]),
        )
        .unwrap_err();
        assert_eq!(err.origin, "environment variable no_proxy");
    }

    #[test]
    fn credentials_go_into_the_connect_request_only() {
        let endpoint = ParsedProxyUrl::parse("http://alice:s%20cret@p:3128")
            .unwrap()
            .into_endpoint(None);
        let request = connect_request("api.x:443", endpoint.credentials.as_ref());
        let expected = base64::engine::general_purpose::STANDARD.encode("alice:s cret");
        assert!(request.starts_with("CONNECT api.x:443 HTTP/1.1\r\nHost: api.x:443\r\n"));
        assert!(request.contains(&format!("Proxy-Authorization: Basic {expected}\r\n")));
        assert!(request.ends_with("\r\n\r\n"));
        // A user without a password in the URL takes the one given apart.
        let endpoint = ParsedProxyUrl::parse("http://bob@p:3128")
            .unwrap()
            .into_endpoint(Some(Secret::new("pw")));
        assert_eq!(
            endpoint.credentials.as_ref().map(|c| c.password.expose()),
            Some("pw")
        );
    }

    fn judged(reply: &str, with_credentials: bool) -> Result<(), TunnelError> {
        let url = if with_credentials {
            "http://u:secretpw@p:1"
        } else {
            "http://p:1"
        };
        let proxy = ParsedProxyUrl::parse(url).unwrap().into_endpoint(None);
        judge_connect_reply(reply.as_bytes(), &proxy, "api.x:443")
    }

    #[test]
    fn connect_replies_are_judged_by_status() {
        judged("HTTP/1.0 200 Connection established\r\n\r\n", false).unwrap();
        judged("HTTP/1.1 204 No Content\r\n\r\n", true).unwrap();
        let err = judged("HTTP/1.0 407 Proxy Authentication Required\r\n\r\n", false).unwrap_err();
        assert!(
            matches!(err, TunnelError::CredentialsRequired { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("proxy authentication required"),
            "{err}"
        );
        assert!(err.to_string().contains("http://p:1"), "{err}");
        let err = judged("HTTP/1.0 401 Unauthorized\r\n\r\n", true).unwrap_err();
        assert!(
            matches!(err, TunnelError::CredentialsRefused { .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("secretpw"), "{err}");
        assert!(err.to_string().contains("http://********@p:1"), "{err}");
        let err = judged("HTTP/1.1 403 Forbidden\r\n\r\n", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "proxy http://p:1 refused CONNECT api.x:443: HTTP/1.1 403 Forbidden"
        );
        let err = judged("SSH-2.0-OpenSSH\r\n\r\n", false).unwrap_err();
        assert!(matches!(err, TunnelError::BadReply { .. }), "{err}");
    }

    #[actix_rt::test]
    async fn the_reply_is_read_to_its_end_and_no_further() {
        let mut input: &[u8] = b"HTTP/1.1 200 OK\r\nVia: x\r\n\r\n\x16\x03\x01";
        let head = read_connect_reply(&mut input).await.unwrap();
        assert_eq!(head, b"HTTP/1.1 200 OK\r\nVia: x\r\n\r\n");
        assert_eq!(input, b"\x16\x03\x01", "the tunnel's bytes are left unread");
        let endless = vec![b'x'; MAX_CONNECT_REPLY_BYTES * 2];
        let mut input: &[u8] = &endless;
        assert!(matches!(
            read_connect_reply(&mut input).await,
            Err(ReplyError::TooLong)
        ));
        let mut input: &[u8] = b"HTTP/1.1 200";
        assert!(matches!(
            read_connect_reply(&mut input).await,
            Err(ReplyError::Closed)
        ));
    }

    #[test]
    fn ca_bundles_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            load_ca_bundle(&missing),
            Err(CaBundleError::Read { .. })
        ));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(matches!(
            load_ca_bundle(&empty),
            Err(CaBundleError::Empty { .. })
        ));
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(load_ca_bundle(&broken).is_err());
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, self_signed_pem()).unwrap();
        assert_eq!(load_ca_bundle(&good).unwrap().len(), 1);
    }

    /// A throwaway self-signed certificate, made with the OpenSSL the
    /// bridge links anyway.
    fn self_signed_pem() -> Vec<u8> {
        use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509};
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "test CA").unwrap();
        let name = name.build();
        let mut builder = x509::X509::builder().unwrap();
        builder.set_version(2).unwrap();
        builder.set_subject_name(&name).unwrap();
        builder.set_issuer_name(&name).unwrap();
        builder.set_pubkey(&key).unwrap();
        builder
            .set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        builder
            .set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        builder.sign(&key, MessageDigest::sha256()).unwrap();
        builder.build().to_pem().unwrap()
    }
}
