//! The command line: the binary's edge, where errors become messages and
//! exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{self, ConfigError, EXIT_CONFIG};

#[derive(Parser, Debug)]
#[command(
    name = "genesys-kafka-bridge",
    version,
    about = "Streams Genesys Cloud notifications into Kafka, losing nothing it received"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the bridge.
    Run {
        /// Configuration file (TOML); see config/example.toml.
        #[arg(long, short, env = "GKB_CONFIG")]
        config: PathBuf,
    },
    /// Check a configuration and print it as the bridge would use it
    /// (secrets masked). Exit 0 when valid, 78 when not.
    CheckConfig {
        #[arg(long, short, env = "GKB_CONFIG")]
        config: PathBuf,
    },
    /// Print what the buffer kept aside, one JSON object a line: events
    /// Kafka refused for good (dead letters), or with --quarantine the
    /// frames that were not notifications. With --replay --config FILE,
    /// send the dead letters to Kafka again (routed by FILE's routes) and
    /// remove those Kafka acknowledged; exit 0 when none is left, 1 when
    /// some were refused again (kept, with the new reason). Listing works on
    /// a running bridge (it answers on its control socket); --replay needs
    /// it stopped (the buffer is locked while it runs).
    DeadLetters {
        /// The buffer directory (`buffer.path` of the configuration).
        #[arg(long)]
        buffer: PathBuf,
        /// Print the quarantine instead of the dead letters.
        #[arg(long, conflicts_with = "replay")]
        quarantine: bool,
        /// Send the dead letters to Kafka again.
        #[arg(long, requires = "config")]
        replay: bool,
        /// The bridge's configuration: Kafka settings and routes for --replay.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Longest wait for Kafka to answer for every replayed record.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout_secs: u64,
    },
    /// List the recorded gaps: times a connection had no subscribed socket
    /// or the bridge was not running, so events Genesys sent then are
    /// missing (oldest first; the newest 10,000 are kept), each with its
    /// conversation backfill's progress. Text, or one JSON object a line
    /// with the topic names (--json). On a running bridge they are read
    /// through its control socket.
    Gaps {
        /// The buffer directory (`buffer.path` of the configuration).
        #[arg(long)]
        buffer: PathBuf,
        /// Only gaps that end at or after this time (RFC 3339).
        #[arg(long, value_parser = parse_rfc3339)]
        since: Option<std::time::SystemTime>,
        /// One JSON object a line, topic names included.
        #[arg(long)]
        json: bool,
        /// Backfill the gap that starts at this time (RFC 3339, as listed)
        /// again from its first page, then list.
        #[arg(long, value_parser = parse_rfc3339)]
        backfill: Option<std::time::SystemTime>,
    },
    /// Inspect the buffer, on a running bridge (read-only, answered by the
    /// bridge on `control.sock` in the buffer directory) or a stopped one.
    Buffer {
        #[command(subcommand)]
        tool: BufferTool,
    },
    /// Cluster mode (`[cluster]`): who leads, and planned handovers.
    Cluster {
        #[command(subcommand)]
        tool: ClusterTool,
    },
    /// Run the Genesys Cloud simulator: the notification API and
    /// WebSocket with a control API under /sim/, and OAuth login on a
    /// listener of its own (as the real service's separate login host).
    Simulate(Box<genesys_simulator::SimulatorArgs>),
    /// The one-command tour: a Kafka broker, the simulator and the bridge
    /// on embedded defaults, printing the events that land in Kafka.
    Demo(crate::demo::DemoArgs),
}

/// Which buffer the buffer tools read; `--config` also gives the routes
/// that group `stats` by Kafka topic (without it: by Genesys topic
/// pattern). The client secret is not needed.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = true)]
pub struct BufferLocation {
    /// The bridge's configuration: its `buffer.path`, bounds and routes.
    #[arg(long, short, env = "GKB_CONFIG")]
    config: Option<PathBuf>,
    /// The buffer directory, when not the configuration's `buffer.path`.
    #[arg(long)]
    buffer: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum BufferTool {
    /// Events waiting for Kafka: count, bytes, oldest and newest, per
    /// Kafka topic; dead letters, quarantine, gaps; disk use and bounds.
    Stats {
        #[command(flatten)]
        location: BufferLocation,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Read and decode every entry. Exit 0 when all are sound, 1 when not.
    /// With --repair (bridge stopped), move events that cannot be read to
    /// the quarantine (`dead-letters --quarantine` lists them), then check
    /// again.
    Check {
        #[command(flatten)]
        location: BufferLocation,
        #[arg(long)]
        repair: bool,
        #[arg(long)]
        json: bool,
    },
    /// The waiting events as JSON lines, oldest first: seq, received_at,
    /// genesys_topic, kafka_topic, correlation_id and the event itself.
    Export {
        #[command(flatten)]
        location: BufferLocation,
        /// Only events routed to this Kafka topic.
        #[arg(long)]
        kafka_topic: Option<String>,
        /// At most this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterTool {
    /// The coordination topic as the members see it: epoch, leader and
    /// since when, each member's role, readiness and distance behind.
    Status {
        #[arg(long, short, env = "GKB_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Ask the leader to hand over: it stops forwarding at a point it
    /// records in Kafka and a standby forwards exactly what follows.
    /// Exit 0 once another member leads, 1 if none did in time.
    Handover {
        #[arg(long, short, env = "GKB_CONFIG")]
        config: PathBuf,
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout_secs: u64,
    },
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Run { config } => run(&config),
        Command::DeadLetters {
            buffer,
            config: Some(config),
            replay: true,
            timeout_secs,
            ..
        } => replay(&buffer, &config, Duration::from_secs(timeout_secs)),
        Command::DeadLetters {
            buffer, quarantine, ..
        } => exit(dead_letters(&buffer, quarantine)),
        Command::Gaps {
            buffer,
            since,
            json,
            backfill,
        } => exit(gaps(&buffer, since, json, backfill)),
        Command::Buffer { tool } => buffer_tool(tool),
        Command::Cluster { tool } => cluster_tool(tool),
        Command::Simulate(args) => {
            crate::telemetry::init::init_plain("info");
            match actix_rt::System::new().block_on(genesys_simulator::run(*args)) {
                // The simulator names the flag (`--tls-cert` and the like).
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_CONFIG as u8)
                }
                result => exit(result.map_err(anyhow::Error::from)),
            }
        }
        Command::Demo(args) => {
            // The system (and the bridge's Kafka clients) ends with this
            // statement; the broker it returns is stopped after that.
            let broker = actix_rt::System::new().block_on(crate::demo::run(args));
            exit(broker.map(drop))
        }
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match config::load(path).and_then(|s| crate::app::preflight(&s).map(|()| s)) {
        Ok(settings) => {
            println!("# {}: valid", path.display());
            if let Some(warning) = settings.config.buffer.disk_warning() {
                eprintln!("warning: {warning}");
                println!("# warning: {warning}");
            }
            // validate() already refused a plan whose fixed names overflow.
            if let Ok(plan) = settings.config.topics.check_offline() {
                println!("# topic plan: {plan}");
            }
            if let Some(cluster) = &settings.config.cluster {
                // Each member opens the whole plan's channels on its own
                // client id; members sharing one share its 20 channels.
                let note = format!(
                    "cluster member {}: each member opens the whole plan's channels with its genesys.client_id; \
                     members sharing one OAuth client share its 20 channels, so their plan must fit in 10 \
                     (10,000 topics): give each member its own client",
                    cluster.member
                );
                let fixed = settings
                    .config
                    .topics
                    .check_offline()
                    .map_or(usize::MAX, |plan| plan.names);
                if fixed > 10 * crate::subscriptions::MAX_TOPICS_PER_CHANNEL {
                    eprintln!("warning: {note}");
                    println!("# warning: {note}");
                } else {
                    println!("# note: {note}");
                }
            }
            println!("{}", settings.display_toml());
            ExitCode::SUCCESS
        }
        Err(e) => config_failure(&e),
    }
}

fn cluster_tool(tool: ClusterTool) -> ExitCode {
    use crate::cluster::tools;
    let (ClusterTool::Status { config, .. } | ClusterTool::Handover { config, .. }) = &tool;
    let loaded = config::read(config).and_then(|c| {
        let cluster = c.cluster.clone().ok_or_else(|| {
            ConfigError::invalid("cluster", "this configuration has no [cluster] section")
        })?;
        cluster.validate()?;
        let properties = c
            .kafka
            .client_properties(&|name| std::env::var(name).ok())?;
        Ok((cluster, properties))
    });
    let (cluster, properties) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return config_failure(&e),
    };
    match tool {
        ClusterTool::Status { json, .. } => exit(
            tools::read(&properties, &cluster.topic)
                .map_err(anyhow::Error::msg)
                .map(|fold| {
                    if json {
                        println!("{}", tools::status_json(&fold, &cluster.topic));
                    } else {
                        print!("{}", tools::status_text(&fold, &cluster.topic));
                    }
                }),
        ),
        ClusterTool::Handover { timeout_secs, .. } => {
            match tools::handover(
                &properties,
                &cluster.topic,
                Duration::from_secs(timeout_secs),
            ) {
                Ok(leader) => {
                    println!("handed over: {leader} leads now");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let settings = match config::load(path) {
        Ok(settings) => settings,
        Err(e) => return config_failure(&e),
    };
    crate::telemetry::init::init(&settings.config.log);
    let result = actix_rt::System::new().block_on(crate::app::run(settings));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(crate::app::StartError::Config(e)) => config_failure(&e),
        Err(e) => exit(Err(
            anyhow::Error::from(e).context("cannot start the bridge")
        )),
    }
}

fn buffer_tool(tool: BufferTool) -> ExitCode {
    use crate::buffer_tools::client;
    use std::io::Write as _;
    let location = match &tool {
        BufferTool::Stats { location, .. }
        | BufferTool::Check { location, .. }
        | BufferTool::Export { location, .. } => location,
    };
    let target = match buffer_target(location) {
        Ok(target) => target,
        Err(e) => return config_failure(&e),
    };
    let mut out = std::io::stdout().lock();
    let result: anyhow::Result<bool> = match tool {
        BufferTool::Stats { json, .. } => target.stats().map_err(Into::into).and_then(|stats| {
            write_report(&mut out, json, &stats, client::write_stats_text)?;
            Ok(true)
        }),
        BufferTool::Check { repair, json, .. } => {
            target.check(repair).map_err(Into::into).and_then(|report| {
                write_report(&mut out, json, &report, client::write_check_text)?;
                Ok(!report.problems())
            })
        }
        BufferTool::Export {
            kafka_topic, limit, ..
        } => {
            let filter = crate::buffer_tools::ExportFilter { kafka_topic, limit };
            let mut buffered = std::io::BufWriter::new(&mut out);
            let ended = target.export(filter, &mut buffered);
            let flushed = buffered.flush();
            match (ended, flushed) {
                (Ok(end), Ok(())) => {
                    eprintln!(
                        "exported {} events ({} damaged skipped)",
                        end.exported, end.damaged
                    );
                    Ok(true)
                }
                // `… | head`: the reader has what it wanted.
                (Err(client::ClientError::Tool(crate::buffer_tools::ToolError::Output(e))), _)
                | (Ok(_), Err(e))
                    if e.kind() == std::io::ErrorKind::BrokenPipe =>
                {
                    Ok(true)
                }
                (Err(e), _) => Err(e.into()),
                (Ok(_), Err(e)) => Err(e.into()),
            }
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        // Told apart from "check found problems" (1).
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A report as pretty JSON (`--json`) or as text for people.
fn write_report<T: serde::Serialize>(
    out: &mut dyn std::io::Write,
    json: bool,
    report: &T,
    text: fn(&T, &mut dyn std::io::Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, report)?;
        writeln!(out)?;
    } else {
        text(report, out)?;
    }
    Ok(())
}

/// The buffer and routing of `--config` and `--buffer`.
fn buffer_target(
    location: &BufferLocation,
) -> Result<crate::buffer_tools::client::Target, ConfigError> {
    use crate::buffer_tools::{client::Target, Routing};
    let Some(path) = &location.config else {
        let dir = location
            .buffer
            .as_deref()
            .expect("clap requires one of them");
        return Ok(Target::at(dir));
    };
    let config = config::read(path)?;
    config.buffer.validate()?;
    let routing = Routing::Routes(config.kafka.router()?);
    Ok(Target {
        dir: location
            .buffer
            .clone()
            .unwrap_or(config.buffer.path.clone()),
        config: config.buffer,
        routing,
    })
}

fn dead_letters(path: &std::path::Path, quarantine: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    crate::buffer_tools::client::Target::at(path).kept_aside(
        crate::buffer_tools::KeptAsideFilter { quarantine },
        &mut out,
    )?;
    out.flush()?;
    Ok(())
}

fn parse_rfc3339(text: &str) -> Result<std::time::SystemTime, String> {
    humantime::parse_rfc3339_weak(text).map_err(|e| format!("not an RFC 3339 time: {e}"))
}

fn gaps(
    path: &std::path::Path,
    since: Option<std::time::SystemTime>,
    json: bool,
    backfill: Option<std::time::SystemTime>,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let filter = crate::buffer_tools::GapFilter {
        since_ms: since.map(ms),
        topics: json,
        rerun_backfill: backfill.map(ms),
    };
    let mut out = std::io::stdout().lock();
    if json {
        crate::buffer_tools::client::Target::at(path).gaps(filter, &mut out)?;
        return Ok(());
    }
    let mut lines = Vec::new();
    crate::buffer_tools::client::Target::at(path).gaps(filter, &mut lines)?;
    let gaps = lines
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(serde_json::from_slice::<crate::buffer::GapRecord>)
        .collect::<Result<Vec<_>, _>>()?;
    let total: f64 = gaps.iter().map(|g| g.seconds).sum();
    for g in &gaps {
        writeln!(
            out,
            "{} → {}  {:>10.3} s  connection {}  {} topics  {}{}{}",
            g.start,
            g.end,
            g.seconds,
            g.connection,
            g.topic_count,
            g.reason,
            if g.open { "  (open at shutdown)" } else { "" },
            g.backfill
                .as_ref()
                .and_then(|p| serde_json::from_value::<crate::backfill::Progress>(p.clone()).ok())
                .map(|p| format!("  [{}]", p.summary()))
                .unwrap_or_default()
        )?;
    }
    writeln!(out, "{} gaps, {total:.3} s in all", gaps.len())?;
    Ok(())
}

fn replay(buffer: &std::path::Path, config: &std::path::Path, timeout: Duration) -> ExitCode {
    let settings = match config::load(config) {
        Ok(settings) => settings,
        Err(e) => return config_failure(&e),
    };
    if !buffer.is_dir() {
        return exit(Err(anyhow::anyhow!(
            "{} is not a buffer directory",
            buffer.display()
        )));
    }
    crate::telemetry::init::init_plain("warn");
    match crate::replay::replay(buffer, &settings, timeout) {
        Ok(outcome) => {
            for kept in &outcome.kept {
                println!(
                    "still refused: seq {} to {}: {}",
                    kept.seq, kept.kafka_topic, kept.reason
                );
            }
            println!("{}", outcome.summary());
            if outcome.all_sent() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(crate::replay::ReplayError::Config(e)) => config_failure(&e),
        Err(e) => exit(Err(anyhow::Error::from(e).context("dead-letter replay"))),
    }
}

fn config_failure(error: &ConfigError) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(EXIT_CONFIG as u8)
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
