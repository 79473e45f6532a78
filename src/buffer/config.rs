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
    /// Memory for the buffer's page cache, in MiB. The backlog itself lives
    /// on disk; this bounds how much of it is kept in memory.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
}

fn default_cache_mib() -> u64 {
    64
}

fn default_path() -> PathBuf {
    PathBuf::from("data/buffer")
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            path: default_path(),
            cache_mib: default_cache_mib(),
        }
    }
}

impl BufferConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::invalid("buffer.path", "must not be empty"));
        }
        if !(8..=65_536).contains(&self.cache_mib) {
            return Err(ConfigError::invalid(
                "buffer.cache_mib",
                "must be between 8 and 65536",
            ));
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
