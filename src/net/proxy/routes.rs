//! Which proxy a connection takes: `genesys.proxy_url`/`no_proxy` when
//! set, else the environment's variables in curl's order of precedence.

use super::no_proxy::NoProxy;
use super::url::{ParsedProxyUrl, ProxyEndpoint};

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

#[cfg(test)]
mod tests {
    use super::*;

    fn no_proxy(list: &str) -> NoProxy {
        NoProxy::parse(list).unwrap()
    }
    use awc::http::Uri;
    use std::collections::HashMap;
    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
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
}
