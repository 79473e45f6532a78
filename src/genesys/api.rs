//! The Genesys Cloud REST calls the bridge makes: login, channels,
//! subscriptions and the listings that expand topic templates.
//!
//! Calls take the bearer token as an argument: getting, caching and
//! refreshing it is the token actor's job, and "401 → new token, retry
//! once" is the caller's (see `token::rest`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use awc::http::StatusCode;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

use super::rate_limit::RateLimiter;
pub use super::rate_limit::MAX_RETRY_AFTER;

/// Largest REST reply we read (queue listings of big orgs are a few MB).
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Page size for listings: the API's maximum.
const PAGE_SIZE: u32 = 100;
/// Never follow more pages than this (100,000 entities): a bound on a loop
/// driven by the server's `pageCount`.
const MAX_PAGES: u32 = 1_000;
/// Tries of one call that keeps getting 429 before giving it back.
const MAX_RATE_LIMITED_ATTEMPTS: u32 = 3;

/// What went wrong with a REST call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: the token expired or was revoked.
    #[error("unauthorized (401): the token was refused")]
    Unauthorized,
    /// The login service refused the client id or secret.
    #[error("login refused ({status}): {error}: {description}")]
    LoginRefused {
        status: u16,
        error: String,
        description: String,
    },
    /// 429, with the delay the service asked for.
    #[error("rate limited (429), retry after {retry_after:?}")]
    RateLimited { retry_after: Option<Duration> },
    /// Any other non-success status, with Genesys' error code and message.
    #[error("{what} failed with HTTP {status}: {code} {message}")]
    Status {
        what: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{what}: request failed: {reason}")]
    Transport { what: &'static str, reason: String },
    #[error("{what}: unexpected reply: {reason}")]
    Decode { what: &'static str, reason: String },
}

impl ApiError {
    /// Whether trying again later may succeed (as opposed to a setup error
    /// such as a forbidden topic, which needs an operator).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unauthorized | ApiError::RateLimited { .. } | ApiError::Transport { .. } => {
                true
            }
            ApiError::Status { status, .. } => *status == 408 || *status >= 500,
            ApiError::LoginRefused { status, .. } => *status == 429 || *status >= 500,
            ApiError::Decode { .. } => false,
        }
    }

    /// The delay the service asked for, if any, at most
    /// [`MAX_RETRY_AFTER`]: the official SDKs give up beyond it; an
    /// unattended service waits that long and asks again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after } => retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
            _ => None,
        }
    }
}

/// A granted access token.
#[derive(Debug, Clone)]
pub struct Grant {
    pub access_token: Secret,
    pub expires_in: Duration,
}

/// A notification channel as created by the service.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Channel {
    pub id: String,
    #[serde(rename = "connectUri")]
    pub connect_uri: String,
    /// RFC 3339; absent or unparsable means "assume 24 h".
    #[serde(default)]
    pub expires: Option<String>,
}

impl Channel {
    /// When the service will drop this channel.
    pub fn expires_at(&self, created: SystemTime) -> SystemTime {
        self.expires
            .as_deref()
            .and_then(|e| {
                humantime::parse_rfc3339(e)
                    .or_else(|_| humantime::parse_rfc3339_weak(e))
                    .ok()
            })
            .unwrap_or(created + Duration::from_secs(24 * 3600))
    }
}

/// The service's verdict on one topic of a subscription request.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct TopicOutcome {
    pub id: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(rename = "rejectionReason", default)]
    pub rejection_reason: Option<String>,
}

impl TopicOutcome {
    pub fn is_rejected(&self) -> bool {
        self.state.as_deref() == Some("Rejected")
    }
}

#[derive(Deserialize)]
struct Entities<T> {
    entities: Vec<T>,
    #[serde(rename = "pageCount", default)]
    page_count: Option<u32>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize, Default)]
struct GenesysErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// REST access to one Genesys Cloud org.
#[derive(Clone)]
pub struct GenesysApi {
    http: awc::Client,
    api_base: String,
    login_base: String,
    /// Paces every REST call of all clones (see [`RateLimiter`]).
    limiter: Arc<RateLimiter>,
    /// Where every call's time goes (`gkb_genesys_request_seconds`).
    timings: crate::telemetry::RequestSeconds,
}

/// An HTTP client for Genesys: TLS through the system's OpenSSL (plus the
/// CAs of `genesys.ca_file`), every connection through the proxy its
/// target calls for (a CONNECT tunnel, see [`crate::net::proxy`]), a
/// bound on every request.
pub fn http_client(settings: HttpClientSettings) -> awc::Client {
    let HttpClientSettings {
        timeout,
        proxies,
        extra_roots,
    } = settings;
    proxies.log();
    let connector = awc::Connector::new()
        .connector(crate::net::proxy::TunnelConnector::new(proxies, timeout))
        .timeout(timeout);
    let connector = match openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()) {
        Ok(mut builder) => {
            // WebSocket upgrades need HTTP/1.1; offering only it keeps ALPN honest.
            let _ = builder.set_alpn_protos(b"\x08http/1.1");
            for root in extra_roots {
                let subject = format!("{:?}", root.subject_name());
                // A CA the system already trusts is refused as a duplicate
                // by some OpenSSL versions: harmless.
                if let Err(e) = builder.cert_store_mut().add_cert(root) {
                    tracing::warn!(ca = %subject, error = %e, "extra CA not added");
                }
            }
            connector.openssl(builder.build())
        }
        Err(e) => {
            tracing::warn!(error = %e, "OpenSSL unavailable: only plain http:// endpoints will work");
            connector
        }
    };
    awc::Client::builder()
        .connector(connector)
        .timeout(timeout)
        .disable_redirects()
        .finish()
}

impl GenesysApi {
    pub fn new(http: awc::Client, api_base: &str, login_base: &str) -> Self {
        GenesysApi {
            http,
            api_base: api_base.trim_end_matches('/').to_owned(),
            login_base: login_base.trim_end_matches('/').to_owned(),
            limiter: Arc::new(RateLimiter::unlimited()),
            timings: crate::telemetry::request_seconds(),
        }
    }

    /// Records call times into `timings` (the telemetry's handle).
    pub fn with_request_timings(mut self, timings: crate::telemetry::RequestSeconds) -> Self {
        self.timings = timings;
        self
    }

    /// A call answered (any status): its time, from sending to the whole
    /// body read, goes into `gkb_genesys_request_seconds{call}`.
    fn timed(&self, what: &str, started: std::time::Instant) {
        crate::telemetry::observe_request(&self.timings, what, started.elapsed().as_secs_f64());
    }

    /// Paces REST calls with `limiter` (shared with every clone made after).
    pub fn with_rate_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    pub fn http(&self) -> &awc::Client {
        &self.http
    }

    /// `POST {login}/oauth/token` with client credentials.
    pub async fn request_token(
        &self,
        client_id: &str,
        client_secret: &Secret,
    ) -> Result<Grant, ApiError> {
        const WHAT: &str = "login";
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{client_id}:{}", client_secret.expose()));
        let started = std::time::Instant::now();
        let mut resp = self
            .http
            .post(format!("{}/oauth/token", self.login_base))
            .insert_header(("Authorization", format!("Basic {basic}")))
            .send_form(&[("grant_type", "client_credentials")])
            .await
            .map_err(|e| transport(WHAT, e))?;
        let status = resp.status();
        let body = resp
            .body()
            .limit(MAX_BODY_BYTES)
            .await
            .map_err(|e| transport(WHAT, e))?;
        self.timed(WHAT, started);
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ApiError::RateLimited {
                retry_after: retry_after(resp.headers()),
            });
        }
        if !status.is_success() {
            let err: GenesysErrorBody = serde_json::from_slice(&body).unwrap_or_default();
            return Err(ApiError::LoginRefused {
                status: status.as_u16(),
                error: err.error.or(err.code).unwrap_or_else(|| "unknown".into()),
                description: err
                    .error_description
                    .or(err.description)
                    .or(err.message)
                    .unwrap_or_default(),
            });
        }
        #[derive(Deserialize)]
        struct TokenReply {
            access_token: String,
            expires_in: Option<u64>,
        }
        let reply: TokenReply = decode(WHAT, &body)?;
        Ok(Grant {
            access_token: Secret::new(reply.access_token),
            // 300 s is the shortest lifetime an OAuth client can have.
            expires_in: Duration::from_secs(reply.expires_in.unwrap_or(300)),
        })
    }

    /// `POST /api/v2/notifications/channels`.
    pub async fn create_channel(&self, token: &Secret) -> Result<Channel, ApiError> {
        let body = self
            .call(
                "create channel",
                awc::http::Method::POST,
                "/api/v2/notifications/channels",
                token,
                None,
            )
            .await?;
        decode("create channel", &body)
    }

    /// `HEAD /api/v2/notifications/channels/{id}`: whether the channel is alive.
    pub async fn channel_alive(&self, token: &Secret, id: &str) -> Result<bool, ApiError> {
        let path = format!("/api/v2/notifications/channels/{id}");
        match self
            .call("check channel", awc::http::Method::HEAD, &path, token, None)
            .await
        {
            Ok(_) => Ok(true),
            Err(ApiError::Status { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `PUT /api/v2/notifications/channels/{id}/subscriptions`: replaces the
    /// channel's topics. A 403 means at least one topic was refused and none
    /// was subscribed; with `ignore_errors` the refused ones are reported and
    /// the rest subscribed.
    pub async fn put_subscriptions(
        &self,
        token: &Secret,
        channel_id: &str,
        topics: &[String],
        ignore_errors: bool,
    ) -> Result<Vec<TopicOutcome>, ApiError> {
        self.change_subscriptions(
            awc::http::Method::PUT,
            token,
            channel_id,
            topics,
            ignore_errors,
        )
        .await
    }

    async fn change_subscriptions(
        &self,
        method: awc::http::Method,
        token: &Secret,
        channel_id: &str,
        topics: &[String],
        ignore_errors: bool,
    ) -> Result<Vec<TopicOutcome>, ApiError> {
        let path = format!(
            "/api/v2/notifications/channels/{channel_id}/subscriptions{}",
            if ignore_errors {
                "?ignoreErrors=true"
            } else {
                ""
            }
        );
        let request: Vec<serde_json::Value> = topics
            .iter()
            .map(|t| serde_json::json!({ "id": t }))
            .collect();
        let body = self
            .call(
                "subscribe",
                method,
                &path,
                token,
                Some(serde_json::to_vec(&request).expect("a list of strings serialises")),
            )
            .await?;
        let reply: Entities<TopicOutcome> = decode("subscribe", &body)?;
        Ok(reply.entities)
    }

    /// `POST /api/v2/notifications/channels/{id}/subscriptions`: adds
    /// topics to the channel's list. The reply lists the channel's whole
    /// resulting list, refused topics included (with `ignore_errors`).
    pub async fn post_subscriptions(
        &self,
        token: &Secret,
        channel_id: &str,
        topics: &[String],
        ignore_errors: bool,
    ) -> Result<Vec<TopicOutcome>, ApiError> {
        self.change_subscriptions(
            awc::http::Method::POST,
            token,
            channel_id,
            topics,
            ignore_errors,
        )
        .await
    }

    /// `DELETE /api/v2/notifications/channels/{id}/subscriptions`: the
    /// channel keeps living until it expires but carries no topic, so a
    /// channel we moved away from stops receiving (and costing) events.
    pub async fn delete_subscriptions(
        &self,
        token: &Secret,
        channel_id: &str,
    ) -> Result<(), ApiError> {
        let path = format!("/api/v2/notifications/channels/{channel_id}/subscriptions");
        self.call("unsubscribe", awc::http::Method::DELETE, &path, token, None)
            .await
            .map(drop)
    }

    /// The ids of every routing queue (`GET /api/v2/routing/queues`, all pages).
    pub async fn list_queue_ids(&self, token: &Secret) -> Result<Vec<String>, ApiError> {
        self.list_ids("list queues", "/api/v2/routing/queues", token)
            .await
    }

    /// The ids of every user (`GET /api/v2/users`, all pages).
    pub async fn list_user_ids(&self, token: &Secret) -> Result<Vec<String>, ApiError> {
        self.list_ids("list users", "/api/v2/users", token).await
    }

    async fn list_ids(
        &self,
        what: &'static str,
        path: &str,
        token: &Secret,
    ) -> Result<Vec<String>, ApiError> {
        let mut ids = Vec::new();
        for page in 1..=MAX_PAGES {
            let url = format!("{path}?pageSize={PAGE_SIZE}&pageNumber={page}");
            let body = self
                .call(what, awc::http::Method::GET, &url, token, None)
                .await?;
            let reply: Entities<IdOnly> = decode(what, &body)?;
            let last = reply.entities.is_empty() || reply.page_count.map_or(true, |n| page >= n);
            ids.extend(reply.entities.into_iter().map(|e| e.id));
            if last {
                break;
            }
        }
        Ok(ids)
    }

    /// One REST call, paced by the rate limiter. A 429 pauses every
    /// caller (Retry-After, or a doubling delay with jitter) and is tried
    /// again here up to [`MAX_RATE_LIMITED_ATTEMPTS`] times; after that
    /// the caller's own retry (`token::rest`) takes over.
    pub(super) async fn call(
        &self,
        what: &'static str,
        method: awc::http::Method,
        path: &str,
        token: &Secret,
        json_body: Option<Vec<u8>>,
    ) -> Result<bytes::Bytes, ApiError> {
        let mut attempt = 1;
        loop {
            self.limiter.acquire().await;
            match self
                .call_once(what, method.clone(), path, token, json_body.clone())
                .await
            {
                Err(ApiError::RateLimited { retry_after }) => {
                    let pause = self.limiter.rate_limited(retry_after);
                    tracing::warn!(
                        call = what,
                        attempt,
                        pause_ms = pause.as_millis() as u64,
                        retry_after_given = retry_after.is_some(),
                        "Genesys answered 429: every REST call pauses"
                    );
                    if attempt >= MAX_RATE_LIMITED_ATTEMPTS {
                        return Err(ApiError::RateLimited { retry_after });
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e),
                Ok(body) => {
                    self.limiter.succeeded();
                    return Ok(body);
                }
            }
        }
    }

    async fn call_once(
        &self,
        what: &'static str,
        method: awc::http::Method,
        path: &str,
        token: &Secret,
        json_body: Option<Vec<u8>>,
    ) -> Result<bytes::Bytes, ApiError> {
        let started = std::time::Instant::now();
        let request = self
            .http
            .request(method, format!("{}{path}", self.api_base))
            .insert_header(("Authorization", format!("Bearer {}", token.expose())));
        let sent = match json_body {
            Some(body) => {
                request
                    .insert_header(("Content-Type", "application/json"))
                    .send_body(body)
                    .await
            }
            None => request.send().await,
        };
        let mut resp = sent.map_err(|e| transport(what, e))?;
        let status = resp.status();
        let body = resp
            .body()
            .limit(MAX_BODY_BYTES)
            .await
            .map_err(|e| transport(what, e))?;
        self.timed(what, started);
        match status {
            s if s.is_success() => Ok(body),
            StatusCode::UNAUTHORIZED => Err(ApiError::Unauthorized),
            StatusCode::TOO_MANY_REQUESTS => Err(ApiError::RateLimited {
                retry_after: retry_after(resp.headers()),
            }),
            s => {
                let err: GenesysErrorBody = serde_json::from_slice(&body).unwrap_or_default();
                Err(ApiError::Status {
                    what,
                    status: s.as_u16(),
                    code: err.code.unwrap_or_default(),
                    // Genesys echoes channel ids, which are credentials.
                    message: super::channel_id::mask_channel_ids(&err.message.unwrap_or_default()),
                })
            }
        }
    }
}

fn transport(what: &'static str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Transport {
        what,
        reason: super::channel_id::mask_channel_ids(&e.to_string()),
    }
}

pub(super) fn decode<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    body: &[u8],
) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Decode {
        what,
        reason: e.to_string(),
    })
}

/// `Retry-After` in seconds (the form Genesys uses); dates are ignored.
fn retry_after(headers: &awc::http::header::HeaderMap) -> Option<Duration> {
    headers
        .get("Retry-After")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// What [`http_client`] is built from (see `GenesysConfig::http_client_settings`).
pub struct HttpClientSettings {
    /// Bound on each request, the proxy's CONNECT included.
    pub timeout: Duration,
    /// Which connections go through which proxy.
    pub proxies: crate::net::proxy::ProxyRoutes,
    /// CAs trusted in addition to the system's (`genesys.ca_file`).
    pub extra_roots: Vec<openssl::x509::X509>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_expiry_parses_or_defaults_to_a_day() {
        let created = SystemTime::UNIX_EPOCH;
        let ch = Channel {
            id: "streaming-0-x".into(),
            connect_uri: "wss://x".into(),
            expires: Some("2026-11-23T12:41:54.707Z".into()),
        };
        let at = ch.expires_at(created);
        assert_eq!(
            humantime::format_rfc3339_millis(at).to_string(),
            "2026-11-23T12:41:54.707Z"
        );
        let none = Channel {
            expires: None,
            ..ch
        };
        assert_eq!(
            none.expires_at(created),
            created + Duration::from_secs(86400)
        );
    }

    #[test]
    fn transient_errors() {
        assert!(ApiError::RateLimited { retry_after: None }.is_transient());
        assert!(ApiError::Status {
            what: "x",
            status: 503,
            code: String::new(),
            message: String::new()
        }
        .is_transient());
        assert!(!ApiError::Status {
            what: "x",
            status: 403,
            code: String::new(),
            message: String::new()
        }
        .is_transient());
        assert!(!ApiError::LoginRefused {
            status: 401,
            error: "invalid_client".into(),
            description: String::new()
        }
        .is_transient());
    }
}
