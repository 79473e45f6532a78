//! `[genesys]`: which org to reach and how to keep the connection healthy.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::config::error::ConfigError;
use crate::genesys::api::HttpClientSettings;
use crate::genesys::region;
use crate::net::ca::load_ca_bundle;
use crate::net::proxy;
use crate::net::proxy::ProxyUrlSetting;
use crate::secret::Secret;

/// How to reach Genesys Cloud.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GenesysConfig {
    /// Region of the org, e.g. `eu-west-1`; sets both base URLs. Give either
    /// this or `api_base_url` + `login_base_url` (for a gateway, a proxy or
    /// the simulator).
    #[serde(default)]
    pub region: Option<String>,
    /// REST base URL, e.g. `https://api.mypurecloud.ie`.
    #[serde(default)]
    pub api_base_url: Option<String>,
    /// Login base URL, e.g. `https://login.mypurecloud.ie`.
    #[serde(default)]
    pub login_base_url: Option<String>,
    /// OAuth client id of a client-credentials grant.
    pub client_id: String,
    /// Name of the environment variable holding the client secret. The
    /// secret itself is never written in this file. Default:
    /// `GENESYS_CLIENT_SECRET` (unless `client_secret_file` is set).
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// File whose content (trimmed) is the client secret, e.g. a mounted
    /// secret. Exclusive with `client_secret_env`.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Seconds between pings sent on the socket.
    #[serde(default = "defaults::ping_interval_secs")]
    pub ping_interval_secs: u64,
    /// Seconds of silence (no heartbeat, pong or event) after which the
    /// socket is taken for dead and replaced. Genesys sends a heartbeat
    /// about every 30 s.
    #[serde(default = "defaults::heartbeat_timeout_secs")]
    pub heartbeat_timeout_secs: u64,
    /// Seconds before a channel's `expires` at which it is replaced by a
    /// new one.
    #[serde(default = "defaults::channel_rollover_margin_secs")]
    pub channel_rollover_margin_secs: u64,
    /// Seconds before the token expires at which a new one is requested
    /// (at most a fifth of the token's lifetime is used).
    #[serde(default = "defaults::token_refresh_margin_secs")]
    pub token_refresh_margin_secs: u64,
    /// Timeout of each REST call and of the socket handshake, in seconds.
    #[serde(default = "defaults::request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Largest WebSocket message accepted, in bytes. Queue observations can
    /// be tens of KB; the default leaves a wide margin.
    #[serde(default = "defaults::max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// First delay before reconnecting or retrying a failed call, in ms.
    #[serde(default = "defaults::retry_min_delay_ms")]
    pub retry_min_delay_ms: u64,
    /// Largest delay between reconnects or retries, in ms.
    #[serde(default = "defaults::retry_max_delay_ms")]
    pub retry_max_delay_ms: u64,
    /// Most REST calls per minute this bridge makes (token requests not
    /// counted), over all its channels: listings, channel creation,
    /// subscription updates. Genesys allows about 300 per minute per token
    /// and answers 429 beyond; the default keeps a margin for bursts (a
    /// tenth of the rate may go at once) and for other users of the same
    /// OAuth client. 429s that still come pause every call and are counted
    /// (`gkb_api_rate_limited_total`).
    #[serde(default = "defaults::api_requests_per_minute")]
    pub api_requests_per_minute: u32,
    /// HTTP proxy for every connection to Genesys (login, REST and
    /// WebSocket, each through a `CONNECT` tunnel), e.g.
    /// `http://proxy.example.com:3128` or `http://user@proxy:3128`.
    /// Overrides the environment (`https_proxy`/`HTTPS_PROXY`,
    /// `http_proxy`/`HTTP_PROXY`, `all_proxy`/`ALL_PROXY`, read as curl
    /// reads them); `""` connects directly whatever the environment says. Only `http://` proxies; the
    /// port defaults to 1080 (curl's default). A password does not belong
    /// here: name its environment variable in `proxy_password_env`.
    #[serde(default)]
    pub proxy_url: Option<ProxyUrlSetting>,
    /// Environment variable holding the password of the user named in
    /// `proxy_url` (sent as `Proxy-Authorization: Basic`, never logged).
    #[serde(default)]
    pub proxy_password_env: Option<String>,
    /// Hosts reached without the proxy, as curl reads `NO_PROXY`: names
    /// (matching themselves and every host under them; a leading `.` is
    /// ignored), IP addresses or CIDR networks, each optionally with
    /// `:port`, separated by commas; `*` alone for every host. Overrides
    /// the environment's `no_proxy`/`NO_PROXY`; `""` for none.
    #[serde(default)]
    pub no_proxy: Option<String>,
    /// PEM file of one or more CA certificates trusted in addition to the
    /// system's, e.g. the CA of a TLS-inspecting proxy or a private
    /// gateway. Origins' certificates are still checked.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

mod defaults {
    pub fn ping_interval_secs() -> u64 {
        30
    }
    pub fn heartbeat_timeout_secs() -> u64 {
        75
    }
    pub fn channel_rollover_margin_secs() -> u64 {
        3600
    }
    pub fn token_refresh_margin_secs() -> u64 {
        60
    }
    pub fn request_timeout_secs() -> u64 {
        30
    }
    pub fn max_frame_bytes() -> usize {
        16 * 1024 * 1024
    }
    pub fn retry_min_delay_ms() -> u64 {
        500
    }
    pub fn retry_max_delay_ms() -> u64 {
        60_000
    }
    pub fn api_requests_per_minute() -> u32 {
        240
    }
}

/// Where the client secret comes from, once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "environment variable {name}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

impl GenesysConfig {
    /// `(api, login)` base URLs, from the region or given explicitly.
    pub fn base_urls(&self) -> Result<(String, String), ConfigError> {
        match (&self.region, &self.api_base_url, &self.login_base_url) {
            (Some(r), None, None) => region::base_urls(r).ok_or_else(|| {
                ConfigError::invalid(
                    "genesys.region",
                    format!(
                        "unknown region {r:?}; known: {}",
                        region::names().collect::<Vec<_>>().join(", ")
                    ),
                )
            }),
            (None, Some(api), Some(login)) => Ok((api.clone(), login.clone())),
            (Some(_), _, _) => Err(ConfigError::invalid(
                "genesys.region",
                "give either region or api_base_url + login_base_url, not both",
            )),
            (None, None, _) => Err(ConfigError::invalid(
                "genesys.api_base_url",
                "required when genesys.region is not set",
            )),
            (None, Some(_), None) => Err(ConfigError::invalid(
                "genesys.login_base_url",
                "required when genesys.api_base_url is set",
            )),
        }
    }

    pub fn secret_source(&self) -> Result<SecretSource, ConfigError> {
        match (&self.client_secret_env, &self.client_secret_file) {
            (Some(_), Some(_)) => Err(ConfigError::invalid(
                "genesys.client_secret_file",
                "give either client_secret_env or client_secret_file, not both",
            )),
            (_, Some(path)) => Ok(SecretSource::File(path.clone())),
            (Some(name), None) => Ok(SecretSource::Env(name.clone())),
            (None, None) => Ok(SecretSource::Env("GENESYS_CLIENT_SECRET".into())),
        }
    }

    /// The client secret, read from where [`Self::secret_source`] says
    /// (an environment variable through `env`, or a file), and where it
    /// came from. An unset variable, an unreadable file or an empty secret
    /// is an error naming the key.
    pub fn client_secret(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Secret, SecretSource), ConfigError> {
        let source = self.secret_source()?;
        let key = match source {
            SecretSource::Env(_) => "genesys.client_secret_env",
            SecretSource::File(_) => "genesys.client_secret_file",
        };
        let secret = match &source {
            SecretSource::Env(name) => env(name).ok_or_else(|| {
                ConfigError::invalid(key, format!("environment variable {name} is not set"))
            })?,
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    ConfigError::invalid(key, format!("cannot read {}: {e}", path.display()))
                })?
                .trim()
                .to_owned(),
        };
        if secret.is_empty() {
            return Err(ConfigError::invalid(
                key,
                format!("the client secret from {source} is empty"),
            ));
        }
        Ok((Secret::new(secret), source))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let (api, login) = self.base_urls()?;
        for (key, value) in [
            ("genesys.api_base_url", &api),
            ("genesys.login_base_url", &login),
        ] {
            let url = url::Url::parse(value)
                .map_err(|e| ConfigError::invalid(key, format!("not a URL ({e})")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::invalid(
                    key,
                    "must be an http:// or https:// URL",
                ));
            }
        }
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::invalid(
                "genesys.client_id",
                "must not be empty",
            ));
        }
        self.secret_source()?;
        const DAY: u64 = 86_400;
        let timings = [
            ("genesys.ping_interval_secs", self.ping_interval_secs, 1),
            (
                "genesys.heartbeat_timeout_secs",
                self.heartbeat_timeout_secs,
                1,
            ),
            ("genesys.request_timeout_secs", self.request_timeout_secs, 1),
            (
                "genesys.channel_rollover_margin_secs",
                self.channel_rollover_margin_secs,
                0,
            ),
            (
                "genesys.token_refresh_margin_secs",
                self.token_refresh_margin_secs,
                0,
            ),
            (
                "genesys.retry_max_delay_ms",
                self.retry_max_delay_ms / 1000,
                0,
            ),
        ];
        for (key, value, min) in timings {
            if value < min || value > DAY {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be between {min} and {DAY} seconds"),
                ));
            }
        }
        if self.heartbeat_timeout_secs <= self.ping_interval_secs {
            return Err(ConfigError::invalid(
                "genesys.heartbeat_timeout_secs",
                "must be longer than genesys.ping_interval_secs, or every quiet socket is taken for dead",
            ));
        }
        if self.max_frame_bytes < 64 * 1024 {
            return Err(ConfigError::invalid(
                "genesys.max_frame_bytes",
                "must be at least 65536: queue observations can be tens of KB",
            ));
        }
        self.retry_backoff()
            .map_err(|e| ConfigError::invalid("genesys.retry_min_delay_ms", e.to_string()))?;
        self.validate_network()?;
        if !(1..=3_000).contains(&self.api_requests_per_minute) {
            return Err(ConfigError::invalid(
                "genesys.api_requests_per_minute",
                "must be between 1 and 3000 (Genesys allows about 300 per minute per token)",
            ));
        }
        Ok(())
    }

    pub fn retry_backoff(&self) -> Result<Backoff, crate::backoff::InvalidBackoff> {
        Backoff::new(
            Duration::from_millis(self.retry_min_delay_ms),
            Duration::from_millis(self.retry_max_delay_ms),
        )
    }
}

/// Proxies and CAs: the keys at the end of [`GenesysConfig`].
impl GenesysConfig {
    /// The proxy keys parse and the CA file holds certificates. The
    /// environment (proxy variables, the proxy password) is checked by
    /// [`GenesysConfig::http_client_settings`].
    fn validate_network(&self) -> Result<(), ConfigError> {
        self.configured_proxy(None)?;
        if let Some(path) = &self.ca_file {
            load_ca_bundle(path)
                .map_err(|e| ConfigError::invalid("genesys.ca_file", e.to_string()))?;
        }
        Ok(())
    }

    /// `proxy_url` and `no_proxy` as given; with `password` once known.
    fn configured_proxy(
        &self,
        password: Option<Secret>,
    ) -> Result<proxy::ConfiguredProxy, ConfigError> {
        const URL_KEY: &str = "genesys.proxy_url";
        const PASSWORD_KEY: &str = "genesys.proxy_password_env";
        let proxy = match self.proxy_url.as_ref().map(ProxyUrlSetting::expose) {
            None => None,
            Some(text) if text.trim().is_empty() => Some(None),
            Some(text) => {
                let parsed = proxy::ParsedProxyUrl::parse(text)
                    .map_err(|e| ConfigError::invalid(URL_KEY, e.to_string()))?;
                if parsed.password.is_some() {
                    return Err(ConfigError::invalid(
                        URL_KEY,
                        "a password does not belong in the configuration: give the user in the URL and name the environment variable holding the password in genesys.proxy_password_env (or set HTTPS_PROXY in the environment instead)",
                    ));
                }
                if parsed.user.is_none() && self.proxy_password_env.is_some() {
                    return Err(ConfigError::invalid(
                        PASSWORD_KEY,
                        "set, but genesys.proxy_url names no user (http://user@host:port)",
                    ));
                }
                Some(Some(parsed.into_endpoint(password)))
            }
        };
        if self.proxy_password_env.is_some() && !matches!(proxy, Some(Some(_))) {
            return Err(ConfigError::invalid(
                PASSWORD_KEY,
                "set, but genesys.proxy_url is not",
            ));
        }
        let no_proxy = self
            .no_proxy
            .as_deref()
            .map(proxy::NoProxy::parse)
            .transpose()
            .map_err(|e| ConfigError::invalid("genesys.no_proxy", e.to_string()))?;
        Ok(proxy::ConfiguredProxy { proxy, no_proxy })
    }

    /// Everything the HTTP client is built from: the configuration with
    /// the environment (`env`: the process's in production) where it says
    /// nothing. Errors name the key that would override a bad variable.
    pub fn http_client_settings(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<HttpClientSettings, ConfigError> {
        let password = match &self.proxy_password_env {
            None => None,
            Some(name) => Some(Secret::new(env(name).ok_or_else(|| {
                ConfigError::invalid(
                    "genesys.proxy_password_env",
                    format!("environment variable {name} is not set"),
                )
            })?)),
        };
        let configured = self.configured_proxy(password)?;
        let proxies = proxy::ProxyRoutes::resolve(&configured, env).map_err(|e| {
            let key = if e.origin.contains("no_proxy") || e.origin.contains("NO_PROXY") {
                "genesys.no_proxy"
            } else {
                "genesys.proxy_url"
            };
            ConfigError::invalid(key, format!("{e} (unset, or overridden by {key})"))
        })?;
        let extra_roots = match &self.ca_file {
            Some(path) => load_ca_bundle(path)
                .map_err(|e| ConfigError::invalid("genesys.ca_file", e.to_string()))?,
            None => Vec::new(),
        };
        Ok(HttpClientSettings {
            timeout: Duration::from_secs(self.request_timeout_secs),
            proxies,
            extra_roots,
        })
    }
}

#[cfg(test)]
mod network_tests {
    use super::*;

    fn config(extra: &str) -> GenesysConfig {
        toml::from_str(&format!(
            "region = \"eu-west-1\"\nclient_id = \"abc\"\n{extra}"
        ))
        .unwrap()
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn proxy_keys_are_checked_and_named() {
        config("proxy_url = \"http://proxy:3128\"\nno_proxy = \"localhost,10.0.0.0/8\"")
            .validate()
            .unwrap();
        let err = config("proxy_url = \"socks5://proxy:1080\"")
            .validate()
            .unwrap_err();
        assert_eq!(err.key(), Some("genesys.proxy_url"), "{err}");
        let err = config("no_proxy = \"10.0.0.0/40\"").validate().unwrap_err();
        assert_eq!(err.key(), Some("genesys.no_proxy"), "{err}");
        let err = config("proxy_url = \"http://u:hunter2@proxy:3128\"")
            .validate()
            .unwrap_err();
        assert_eq!(err.key(), Some("genesys.proxy_url"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = config("proxy_password_env = \"PW\"")
            .validate()
            .unwrap_err();
        assert_eq!(err.key(), Some("genesys.proxy_password_env"), "{err}");
        let err = config("proxy_url = \"http://proxy:3128\"\nproxy_password_env = \"PW\"")
            .validate()
            .unwrap_err();
        assert_eq!(err.key(), Some("genesys.proxy_password_env"), "{err}");
    }

    #[test]
    fn the_proxy_password_comes_from_its_variable() {
        let cfg = config("proxy_url = \"http://alice@proxy:3128\"\nproxy_password_env = \"PW\"");
        cfg.validate().unwrap();
        let err = cfg.http_client_settings(&env(&[])).err().unwrap();
        assert_eq!(err.key(), Some("genesys.proxy_password_env"), "{err}");
        let settings = cfg
            .http_client_settings(&env(&[("PW", "hunter2")]))
            .unwrap();
        let proxy = settings
            .proxies
            .proxy_for("https", "api.mypurecloud.ie", 443)
            .unwrap();
        let credentials = proxy.credentials.as_ref().unwrap();
        assert_eq!(
            (credentials.user.as_str(), credentials.password.expose()),
            ("alice", "hunter2")
        );
        let shown = format!("{:?}", cfg);
        assert!(
            !shown.contains("alice") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn bad_environment_proxies_name_the_overriding_key() {
        let cfg = config("");
        let err = cfg
            .http_client_settings(&env(&[("HTTPS_PROXY", "https://proxy:443")]))
            .err()
            .unwrap();
        assert_eq!(err.key(), Some("genesys.proxy_url"), "{err}");
        assert!(err.to_string().contains("HTTPS_PROXY"), "{err}");
        let err = cfg
            .http_client_settings(&env(&[("NO_PROXY", "x:y")]))
            .err()
            .unwrap();
        assert_eq!(err.key(), Some("genesys.no_proxy"), "{err}");
        // The configuration overrides a bad variable.
        config("proxy_url = \"\"")
            .http_client_settings(&env(&[("HTTPS_PROXY", "https://proxy:443")]))
            .unwrap();
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let err = config("ca_file = \"/nonexistent/ca.pem\"")
            .validate()
            .unwrap_err();
        assert_eq!(err.key(), Some("genesys.ca_file"), "{err}");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
