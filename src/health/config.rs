//! `[health]`: the HTTP endpoint monitoring polls.

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;

/// The health, readiness and metrics endpoint.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `address:port` to serve the status page `/`, `/healthz`, `/readyz`,
    /// `/metrics` and `/status` on.
    #[serde(default = "default_listen")]
    pub listen: String,
}

fn default_listen() -> String {
    "127.0.0.1:9464".into()
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            listen: default_listen(),
        }
    }
}

impl HealthConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map(|_| ())
            .map_err(|e| {
                ConfigError::invalid(
                    "health.listen",
                    format!("{:?} is not an address:port ({e})", self.listen),
                )
            })
    }
}
