//! The connector every outbound connection goes through: direct, or a
//! `CONNECT host:port` tunnel through the routed proxy, with the proxy's
//! reply judged and explained.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, ConnectorService};
use awc::http::Uri;
use base64::Engine;
use futures_util::future::LocalBoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::routes::ProxyRoutes;
use super::url::{ProxyCredentials, ProxyEndpoint};

/// Longest CONNECT reply (status line and headers) read from a proxy: a
/// reply that does not end within it is not an HTTP proxy's.
const MAX_CONNECT_REPLY_BYTES: usize = 16 * 1024;
/// Longest part of a proxy's status line quoted in an error.
const MAX_QUOTED_STATUS_CHARS: usize = 120;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::proxy::url::ParsedProxyUrl;
    use crate::secret::Secret;

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
}
