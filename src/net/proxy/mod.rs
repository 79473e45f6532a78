//! Outbound HTTP proxies, for sites that reach the internet only through
//! an HTTP CONNECT proxy (often one that inspects TLS with its own CA:
//! see [`super::ca`]).
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
//!
//! Files: [`url`] (proxy URLs and credentials), [`no_proxy`] (the
//! `NO_PROXY` rules), [`routes`] (which proxy for which target),
//! [`tunnel`] (the CONNECT connector).

pub mod no_proxy;
pub mod routes;
pub mod tunnel;
pub mod url;

pub use no_proxy::*;
pub use routes::*;
pub use tunnel::*;
pub use url::*;
