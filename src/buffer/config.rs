//! `[buffer]`: where received events wait until Kafka has them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// The on-disk write-ahead buffer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Directory of the buffer (created if missing). Keep it on a local,
    /// persistent disk: it is what survives a crash or a Kafka outage.
    #[serde(default = "default_path")]
    pub path: PathBuf,
}

fn default_path() -> PathBuf {
    PathBuf::from("data/buffer")
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            path: default_path(),
        }
    }
}

impl BufferConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::invalid("buffer.path", "must not be empty"));
        }
        if self.path.is_file() {
            return Err(ConfigError::invalid(
                "buffer.path",
                format!("{} is a file; it must be a directory", self.path.display()),
            ));
        }
        Ok(())
    }
}
