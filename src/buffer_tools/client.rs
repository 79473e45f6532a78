//! The command line's side of the buffer tools: ask the running bridge on
//! its control socket, or read the files when no bridge answers.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::{
    check, export, gaps, kept_aside, stats, CheckReport, ExportEnd, ExportFilter, GapFilter,
    Interrupt, KeptAsideFilter, ListEnd, Request, Routing, Stats, ToolError, SOCKET_NAME,
};
use crate::buffer::{Buffer, BufferConfig, BufferError};

/// What the figures say they come from when the files were read.
pub const FILES_SOURCE: &str = "buffer files (no bridge running)";

/// Which buffer, and how to read it.
pub struct Target {
    /// The buffer directory (`buffer.path`).
    pub dir: PathBuf,
    /// The configuration's `[buffer]` (bounds shown by `stats`), or the
    /// defaults.
    pub config: BufferConfig,
    pub routing: Routing,
}

/// Why a tool gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0} is not a buffer directory (no sled database in it)")]
    NotABuffer(PathBuf),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("cannot reach the running bridge on {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the running bridge answered: {0}")]
    Bridge(String),
    #[error("the running bridge's answer was not understood: {0}")]
    Protocol(String),
    #[error("--repair needs the bridge stopped: one is running on this buffer ({0} answers)")]
    RepairWhileRunning(PathBuf),
    #[error(
        "the buffer at {0} is in use by another process, and no bridge answers on its control \
         socket (a bridge older than this tool, or another `buffer check --repair`?)"
    )]
    LockedWithoutBridge(PathBuf),
}

impl From<BufferError> for ClientError {
    fn from(e: BufferError) -> Self {
        ClientError::Tool(ToolError::Buffer(e))
    }
}

/// Where the answer comes from.
enum Source {
    Bridge(UnixStream, PathBuf),
    Files(Buffer),
}

impl Target {
    /// The buffer at `dir` with the default bounds, grouped by Genesys
    /// topic pattern: what `--buffer DIR` alone gives.
    pub fn at(dir: &Path) -> Target {
        Target {
            dir: dir.to_owned(),
            config: BufferConfig::default(),
            routing: Routing::GenesysPattern,
        }
    }

    /// The running bridge when one answers on the control socket;
    /// otherwise the files (which a stopped bridge has unlocked).
    fn source(&self) -> Result<Source, ClientError> {
        if !self.dir.join("db").is_file() {
            return Err(ClientError::NotABuffer(self.dir.clone()));
        }
        let socket = self.dir.join(SOCKET_NAME);
        match UnixStream::connect(&socket) {
            Ok(stream) => return Ok(Source::Bridge(stream, socket)),
            // No bridge, a file left by one that was killed, or a path
            // too long for a socket address (the bridge then has none).
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::InvalidInput
                ) => {}
            Err(source) => {
                return Err(ClientError::Socket {
                    path: socket,
                    source,
                })
            }
        }
        match Buffer::open_with_config(&self.dir, &self.config) {
            Ok(buffer) => Ok(Source::Files(buffer)),
            Err(BufferError::Locked { path }) => Err(ClientError::LockedWithoutBridge(path)),
            Err(e) => Err(e.into()),
        }
    }

    /// `buffer stats`.
    pub fn stats(&self) -> Result<Stats, ClientError> {
        match self.source()? {
            Source::Bridge(stream, path) => one_answer(stream, &path, &Request::Stats),
            Source::Files(buffer) => Ok(stats(
                &buffer,
                &self.routing,
                FILES_SOURCE,
                &Interrupt::default(),
            )?),
        }
    }

    /// `buffer check`, and with `repair` (stopped bridge only) moves what
    /// does not decode to the quarantine, then checks again: the report is
    /// the second check's.
    pub fn check(&self, repair: bool) -> Result<CheckReport, ClientError> {
        match self.source()? {
            Source::Bridge(_, path) if repair => Err(ClientError::RepairWhileRunning(path)),
            Source::Bridge(stream, path) => one_answer(stream, &path, &Request::Check),
            Source::Files(buffer) => {
                let report = check(&buffer, FILES_SOURCE, &Interrupt::default())?;
                if !repair || !report.problems() {
                    return Ok(report);
                }
                let moved = buffer.salvage()?;
                let mut again = check(&buffer, FILES_SOURCE, &Interrupt::default())?;
                again.repaired = Some(moved);
                Ok(again)
            }
        }
    }

    /// `buffer export`: JSON lines to `out`.
    pub fn export(
        &self,
        filter: ExportFilter,
        out: &mut dyn Write,
    ) -> Result<ExportEnd, ClientError> {
        match self.source()? {
            Source::Files(buffer) => Ok(export(
                &buffer,
                &self.routing,
                &filter,
                out,
                &Interrupt::default(),
            )?),
            Source::Bridge(stream, path) => streamed(&stream, &path, &Request::Export(filter), out),
        }
    }

    /// `gaps`: the recorded gaps as JSON lines to `out`.
    pub fn gaps(&self, filter: GapFilter, out: &mut dyn Write) -> Result<ListEnd, ClientError> {
        match self.source()? {
            Source::Files(buffer) => Ok(gaps(&buffer, &filter, out, &Interrupt::default())?),
            Source::Bridge(stream, path) => streamed(&stream, &path, &Request::Gaps(filter), out),
        }
    }

    /// `dead-letters` (without `--replay`): JSON lines to `out`.
    pub fn kept_aside(
        &self,
        filter: KeptAsideFilter,
        out: &mut dyn Write,
    ) -> Result<ListEnd, ClientError> {
        match self.source()? {
            Source::Files(buffer) => Ok(kept_aside(&buffer, &filter, out, &Interrupt::default())?),
            Source::Bridge(stream, path) => {
                streamed(&stream, &path, &Request::KeptAside(filter), out)
            }
        }
    }
}

/// Sends `request`, copies the entries' lines to `out` and returns the
/// closing `{"end": …}`.
fn streamed<T: serde::de::DeserializeOwned>(
    stream: &UnixStream,
    path: &Path,
    request: &Request,
    out: &mut dyn Write,
) -> Result<T, ClientError> {
    for line in ask(stream, path, request)? {
        let line = line.map_err(|source| socket_error(path, source))?;
        if !line.starts_with("{\"end\"") && !line.starts_with("{\"error\"") {
            out.write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(ToolError::Output)?;
            continue;
        }
        let mut last: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&line).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if let Some(end) = last.remove("end") {
            return serde_json::from_value(end).map_err(|e| ClientError::Protocol(e.to_string()));
        }
        return Err(bridge_error(last));
    }
    Err(ClientError::Protocol(
        "the bridge closed the connection before the listing ended (was it stopped?)".into(),
    ))
}

/// Sends `request` and returns the answer's lines.
fn ask<'a>(
    stream: &'a UnixStream,
    path: &Path,
    request: &Request,
) -> Result<std::io::Lines<BufReader<&'a UnixStream>>, ClientError> {
    let mut line = serde_json::to_vec(request).expect("requests serialise");
    line.push(b'\n');
    (&*stream)
        .write_all(&line)
        .map_err(|source| socket_error(path, source))?;
    Ok(BufReader::new(stream).lines())
}

fn one_answer<T: serde::de::DeserializeOwned>(
    stream: UnixStream,
    path: &Path,
    request: &Request,
) -> Result<T, ClientError> {
    let line = ask(&stream, path, request)?
        .next()
        .ok_or_else(|| ClientError::Protocol("the bridge closed the connection".into()))?
        .map_err(|source| socket_error(path, source))?;
    let value: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| ClientError::Protocol(e.to_string()))?;
    if let serde_json::Value::Object(map) = &value {
        if map.contains_key("error") {
            return Err(bridge_error(map.clone()));
        }
    }
    serde_json::from_value(value).map_err(|e| ClientError::Protocol(e.to_string()))
}

fn bridge_error(answer: serde_json::Map<String, serde_json::Value>) -> ClientError {
    match answer.get("error") {
        Some(serde_json::Value::String(error)) => ClientError::Bridge(error.clone()),
        _ => ClientError::Protocol(serde_json::Value::Object(answer).to_string()),
    }
}

fn socket_error(path: &Path, source: std::io::Error) -> ClientError {
    ClientError::Socket {
        path: path.to_owned(),
        source,
    }
}

/// `buffer stats` for people.
pub fn write_stats_text(stats: &Stats, out: &mut dyn Write) -> std::io::Result<()> {
    let now = stats.at_ms;
    writeln!(out, "source         {}", stats.source)?;
    writeln!(
        out,
        "events         {} ({})",
        stats.events,
        bytes(stats.event_bytes)
    )?;
    if let (Some(oldest), Some(newest)) = (stats.oldest_received_at_ms, stats.newest_received_at_ms)
    {
        writeln!(
            out,
            "oldest         {} ({} ago)",
            crate::rfc3339_ms(oldest),
            age(now, oldest)
        )?;
        writeln!(
            out,
            "newest         {} ({} ago)",
            crate::rfc3339_ms(newest),
            age(now, newest)
        )?;
    }
    let usage = &stats.usage;
    writeln!(
        out,
        "disk           {} in the buffer's files, max {}; {} free on the filesystem (floor {})",
        bytes(usage.disk_bytes),
        bytes(usage.max_bytes),
        bytes(usage.fs_free_bytes),
        bytes(usage.min_free_bytes)
    )?;
    writeln!(
        out,
        "kept aside     {} dead letters, {} quarantined, {} damaged; {} gaps recorded",
        stats.dead_letters, stats.quarantined, stats.damaged, stats.gaps
    )?;
    if stats.topics.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nby {}:", stats.grouped_by)?;
    let width = stats
        .topics
        .iter()
        .map(|t| t.topic.len())
        .max()
        .unwrap_or(0)
        .max(5);
    writeln!(
        out,
        "  {:<width$}  {:>10}  {:>10}  oldest",
        "topic", "events", "bytes"
    )?;
    for topic in &stats.topics {
        writeln!(
            out,
            "  {:<width$}  {:>10}  {:>10}  {} ago",
            topic.topic,
            topic.events,
            bytes(topic.bytes),
            age(now, topic.oldest_received_at_ms)
        )?;
    }
    Ok(())
}

/// `buffer check` for people.
pub fn write_check_text(report: &CheckReport, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "source         {}", report.source)?;
    writeln!(
        out,
        "events         {} checked, {} damaged",
        report.events_checked, report.damaged_events
    )?;
    for (seq, why) in &report.damaged {
        writeln!(out, "  damaged event {seq}: {why}")?;
    }
    for (from, to, error) in &report.unreadable {
        match to {
            Some(to) => writeln!(out, "  unreadable events {from}..={to}: {error}")?,
            None => writeln!(out, "  unreadable events from {from} on: {error}")?,
        }
    }
    writeln!(
        out,
        "kept aside     {} dead letters, {} quarantined, {} gaps",
        report.dead_letters, report.quarantined, report.gaps
    )?;
    for (area, key, why) in &report.damaged_side_entries {
        writeln!(out, "  damaged {area} entry {key}: {why}")?;
    }
    if let Some(moved) = &report.repaired {
        writeln!(
            out,
            "repaired       {} events moved to the quarantine (see `dead-letters --quarantine`)",
            moved.len()
        )?;
    }
    let verdict = if report.problems() {
        "PROBLEMS FOUND"
    } else {
        "ok"
    };
    writeln!(out, "result         {verdict}")
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn age(now_ms: u64, then_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}
