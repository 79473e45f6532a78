//! Setting up `tracing` output: text for people, JSON for collectors.
//! Both write the same events with the same fields (`subscriber`).

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

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
