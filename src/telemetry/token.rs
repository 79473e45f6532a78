//! Telemetry of the Genesys REST side: OAuth tokens (granted, failed,
//! when the current one expires) and REST calls (their times, retries).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::metrics::{register, request_seconds, RequestSeconds};
use super::recent::Level;
use super::shared::{lock, rfc3339, Shared};

/// Tokens and REST calls.
pub struct TokenTelemetry {
    shared: Arc<Shared>,
    granted: Counter,
    failures: Counter,
    api_retries: Counter,
    /// Why no token is held, if none is.
    state: Mutex<Result<(), String>>,
    /// When the current token expires.
    expires: Mutex<Option<Instant>>,
    /// Genesys REST call times by kind, shared with the REST client.
    request_seconds: RequestSeconds,
}

impl TokenTelemetry {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        TokenTelemetry {
            shared,
            granted: Counter::default(),
            failures: Counter::default(),
            api_retries: Counter::default(),
            state: Mutex::new(Err("no token yet".into())),
            expires: Mutex::default(),
            request_seconds: request_seconds(),
        }
    }

    pub fn granted(&self, expires_in: Duration, refresh_in: Duration) {
        self.granted.inc();
        *lock(&self.state) = Ok(());
        *lock(&self.expires) = Some(Instant::now() + expires_in);
        tracing::info!(
            expires_in_secs = expires_in.as_secs(),
            refresh_in_secs = refresh_in.as_secs(),
            "access token granted"
        );
    }

    pub fn failed(&self, error: &dyn std::fmt::Display, retry_in: Duration) {
        self.failures.inc();
        *lock(&self.state) = Err(format!("login failed: {error}"));
        tracing::warn!(error = %error, retry_in_ms = retry_in.as_millis() as u64, "access token request failed");
        self.shared
            .problem(Level::Warn, "token", "access token request failed", error);
    }

    /// A REST call failed and is tried again after `delay`.
    pub fn api_retry(&self, what: &str, error: &dyn std::fmt::Display, delay: Duration) {
        self.api_retries.inc();
        tracing::warn!(call = what, error = %error, delay_ms = delay.as_millis() as u64, "Genesys API call failed; retrying");
        self.shared.problem(
            Level::Warn,
            "genesys api",
            "Genesys API call failed; retrying",
            &format_args!("{what}: {error}"),
        );
    }

    /// The handle the REST client records its call times into
    /// (`gkb_genesys_request_seconds{call}`).
    pub fn request_seconds(&self) -> RequestSeconds {
        self.request_seconds.clone()
    }

    /// /readyz: no token held.
    pub(super) fn not_ready(&self, reasons: &mut Vec<String>) {
        if let Err(e) = &*lock(&self.state) {
            reasons.push(format!("genesys token: {e}"));
        }
    }

    /// /status's `token`: why no token is held (`problem`, null when one
    /// is) and when the current one expires.
    pub fn report(&self) -> serde_json::Value {
        let problem = lock(&self.state).as_ref().err().cloned();
        let left = self.expires_in();
        let at = left.map(|left| {
            let now = SystemTime::now();
            let magnitude = Duration::from_secs_f64(left.abs());
            rfc3339(if left >= 0.0 {
                now + magnitude
            } else {
                now - magnitude
            })
        });
        serde_json::json!({
            "problem": problem,
            "expires_at": at,
            "expires_in_secs": left,
        })
    }

    /// Seconds until the current token expires (negative once past).
    fn expires_in(&self) -> Option<f64> {
        let at = (*lock(&self.expires))?;
        let now = Instant::now();
        Some(
            at.saturating_duration_since(now).as_secs_f64()
                - now.saturating_duration_since(at).as_secs_f64(),
        )
    }

    pub(super) fn register(&self, r: &mut Registry) {
        register(
            r,
            "tokens_granted",
            "OAuth tokens obtained.",
            self.granted.clone(),
        );
        register(
            r,
            "token_failures",
            "Failed OAuth token requests.",
            self.failures.clone(),
        );
        register(
            r,
            "api_retries",
            "Genesys REST calls retried.",
            self.api_retries.clone(),
        );
        register(
            r,
            "genesys_request_seconds",
            "Time of Genesys REST calls (login included), by call kind.",
            self.request_seconds.clone(),
        );
        if let Some(left) = self.expires_in() {
            register(
                r,
                "token_expiry_seconds",
                "Seconds until the current OAuth token expires.",
                ConstGauge::new(left),
            );
        }
    }
}
