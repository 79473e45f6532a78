//! The `[log]` section and setting up `tracing` output from it: text for
//! people, JSON for collectors. Both write the same events with the same
//! fields (`subscriber`).

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;

/// `[log]`: how the bridge logs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people, `json` (one object a line) for log collectors.
    #[serde(default)]
    pub format: LogFormat,
    /// Default level filter, e.g. `info` or `genesys_kafka_bridge=debug`.
    /// `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn default_log_level() -> String {
    "info".into()
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map(drop)
            .map_err(|e| {
                ConfigError::invalid(
                    "log.level",
                    format!("{:?} is not a level filter ({e})", self.level),
                )
            })?;
        // A bare word that is not a level parses as a target name and turns
        // logging off: refuse it.
        let known = ["trace", "debug", "info", "warn", "error", "off"];
        for directive in self.level.split(',') {
            let level = directive.rsplit('=').next().unwrap_or_default().trim();
            if !directive.contains('=') && !known.contains(&level.to_ascii_lowercase().as_str()) {
                return Err(ConfigError::invalid(
                    "log.level",
                    format!("{level:?} is not a level (trace, debug, info, warn, error, off)"),
                ));
            }
        }
        Ok(())
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: default_log_level(),
        }
    }
}

pub fn init(config: &LogConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    // Colours only for a person at a terminal: journald and log files get
    // plain `key=value`.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = subscriber(config.format, filter, ansi, std::io::stderr).try_init();
}

/// The subscriber `init` installs, writing to `writer`: JSON puts the
/// fields at the top level of each object, text writes them `key=value`
/// (with colours if `ansi`).
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
        LogFormat::Text => Box::new(builder.finish()),
    }
}

pub fn init_plain(level: &str) {
    init(&LogConfig {
        format: LogFormat::Text,
        level: level.to_owned(),
    });
}
