//! Proxy URLs as curl reads them (`[http://][user[:password]@]host[:port]`),
//! their credentials, and the setting that prints masked.

use std::fmt;

use crate::secret::{Secret, MASK};

/// Port of a proxy URL without one: curl's default.
pub const DEFAULT_PROXY_PORT: u16 = 1080;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
}
