//! The operator's buffer tools: `buffer stats`, `buffer check` and
//! `buffer export`, on a running bridge or a stopped one.
//!
//! sled locks its files, so a second process cannot open the buffer of a
//! running bridge. The bridge therefore serves these tools itself, on a
//! Unix socket in the buffer directory ([`server`], `control.sock`, mode
//! 0600: whoever may read the buffer's files may ask, nobody else). The
//! command line ([`client`]) opens the buffer when it is free and asks the
//! bridge when it is not; both paths run the same functions below on a
//! [`Buffer`] handle, so the output is the same either way.
//!
//! Everything here is read-only, except `check --repair`, which only a
//! stopped bridge's buffer allows (a running bridge already quarantines
//! what it cannot decode when its producer reaches it).
//!
//! Protocol on the socket: the client writes one JSON line (a
//! [`Request`]), the server answers with JSON lines and closes. `stats`
//! and `check` answer with one object; `export`, `gaps` and `kept_aside`
//! (the `dead-letters` listing) with one object per entry, then
//! `{"end": …}`. A failure is `{"error": "…"}`. No entry's line starts
//! with `{"end"` or `{"error"`: their first field is another.

pub mod client;
pub mod server;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;

use serde_json::value::RawValue;

use serde::{Deserialize, Serialize};

use crate::buffer::{Buffer, BufferError, SideAreas, Usage, Walked};
use crate::producer::routing::Router;

/// The control socket's file name in the buffer directory.
pub const SOCKET_NAME: &str = "control.sock";

/// Damaged entries listed one by one in a check, at most (all are counted).
const LISTED_DAMAGE: usize = 1000;

/// What the command line asks a running bridge for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Stats,
    Check,
    Export(ExportFilter),
    /// The recorded gaps (`gaps`).
    Gaps(GapFilter),
    /// The dead letters or the quarantine (`dead-letters`).
    KeptAside(KeptAsideFilter),
}

/// Which gaps `gaps` lists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GapFilter {
    /// Only gaps that end at or after this time, ms since the epoch.
    pub since_ms: Option<u64>,
    /// With the topic names.
    pub topics: bool,
    /// Backfill the gap that starts at this time (ms) again, from its
    /// first page (`gaps --backfill`), before listing.
    #[serde(default)]
    pub rerun_backfill: Option<u64>,
}

/// What `dead-letters` lists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptAsideFilter {
    /// The quarantine instead of the dead letters.
    pub quarantine: bool,
}

/// Which records `buffer export` writes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFilter {
    /// Only records routed to this Kafka topic.
    pub kafka_topic: Option<String>,
    /// At most this many records (oldest first).
    pub limit: Option<u64>,
}

/// How records are grouped by Kafka topic.
#[derive(Debug, Clone)]
pub enum Routing {
    /// By the configuration's routes (the running bridge's own, or
    /// `--config`'s).
    Routes(Router),
    /// No configuration given: by Genesys topic with ids replaced by `{id}`.
    GenesysPattern,
}

impl Routing {
    fn topic_of(&self, genesys_topic: &str) -> String {
        match self {
            Routing::Routes(router) => router.route(genesys_topic).to_owned(),
            Routing::GenesysPattern => genesys_pattern(genesys_topic),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Routing::Routes(_) => "kafka topic",
            Routing::GenesysPattern => "genesys topic pattern (no --config: routes unknown)",
        }
    }
}

/// `buffer stats`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stats {
    /// Where the figures come from: the running bridge or the files.
    pub source: String,
    /// When they were read, ms since the epoch.
    pub at_ms: u64,
    /// Events waiting for Kafka (`gkb_buffer_events`).
    pub events: u64,
    /// Bytes the buffer holds for them.
    pub event_bytes: u64,
    pub oldest_received_at_ms: Option<u64>,
    pub newest_received_at_ms: Option<u64>,
    /// What `topics` is keyed by.
    pub grouped_by: String,
    pub topics: Vec<TopicStats>,
    /// Entries that could not be read as records (see `buffer check`).
    pub damaged: u64,
    pub dead_letters: u64,
    pub quarantined: u64,
    pub gaps: u64,
    pub usage: Usage,
}

/// One Kafka topic's share of the backlog.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TopicStats {
    pub topic: String,
    pub events: u64,
    pub bytes: u64,
    pub oldest_received_at_ms: u64,
}

/// `buffer check`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CheckReport {
    pub source: String,
    pub events_checked: u64,
    pub damaged_events: u64,
    /// The first damaged events, `(seq, why)`.
    pub damaged: Vec<(u64, String)>,
    /// Key ranges sled cannot read: `(from, to, error)`.
    pub unreadable: Vec<(u64, Option<u64>, String)>,
    pub dead_letters: u64,
    pub quarantined: u64,
    pub gaps: u64,
    /// Dead letters, quarantine entries and gaps that do not decode.
    pub damaged_side_entries: Vec<(String, String, String)>,
    /// With `--repair`: the sequences moved to the quarantine before this
    /// (second) check.
    pub repaired: Option<Vec<u64>>,
}

impl CheckReport {
    /// Whether anything is (still) wrong.
    pub fn problems(&self) -> bool {
        self.damaged_events > 0
            || !self.unreadable.is_empty()
            || !self.damaged_side_entries.is_empty()
    }
}

/// One exported record.
#[derive(Debug, Serialize)]
pub struct ExportedRecord<'a> {
    pub seq: u64,
    pub received_at: String,
    pub received_at_ms: u64,
    pub genesys_topic: &'a str,
    pub kafka_topic: &'a str,
    pub correlation_id: Option<&'a str>,
    /// `snapshot` or `backfill` for a record the bridge made (its Kafka
    /// header `gkb-kind`); absent for a notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'a str>,
    /// The notification as received, when it is JSON (it always is for
    /// frames the bridge buffered); otherwise `payload` holds the text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<Cow<'a, RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

/// The last line of an export.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ExportEnd {
    pub exported: u64,
    /// Entries skipped because they could not be read as records.
    pub damaged: u64,
}

/// Asks long requests to end early: raised when the bridge stops, so a
/// walk over a large backlog or a slow reader never holds up its exit.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Interrupt {
    pub fn raise(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn raised(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `Err(Interrupted)` once raised.
    fn check(&self) -> Result<(), ToolError> {
        if self.raised() {
            Err(ToolError::Interrupted)
        } else {
            Ok(())
        }
    }
}

/// Why a tool could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("the bridge is stopping; once it has, the tools read the files")]
    Interrupted,
    #[error(transparent)]
    Buffer(#[from] BufferError),
    #[error("writing the output failed: {0}")]
    Output(#[from] std::io::Error),
    #[error("no recorded gap starts at {0} (`gaps` lists their starts)")]
    NoSuchGap(String),
}

/// Reads the whole buffer once and sums it up by topic.
pub fn stats(
    buffer: &Buffer,
    routing: &Routing,
    source: &str,
    interrupt: &Interrupt,
) -> Result<Stats, ToolError> {
    let mut topics: BTreeMap<String, TopicStats> = BTreeMap::new();
    let (mut events, mut event_bytes, mut damaged) = (0u64, 0u64, 0u64);
    let (mut oldest, mut newest) = (None::<u64>, None::<u64>);
    buffer.walk_events(|step| {
        match step {
            Walked::Record { record, held_bytes } => {
                events += 1;
                event_bytes += held_bytes;
                let at = record.received_at_ms;
                oldest = Some(oldest.map_or(at, |o| o.min(at)));
                newest = Some(newest.map_or(at, |n| n.max(at)));
                let topic = routing.topic_of(&record.topic_name);
                let entry = topics.entry(topic.clone()).or_insert(TopicStats {
                    topic,
                    events: 0,
                    bytes: 0,
                    oldest_received_at_ms: at,
                });
                entry.events += 1;
                entry.bytes += held_bytes;
                entry.oldest_received_at_ms = entry.oldest_received_at_ms.min(at);
            }
            Walked::Damaged { .. } => damaged += 1,
            Walked::Unreadable { .. } => {}
        }
        !interrupt.raised()
    })?;
    interrupt.check()?;
    Ok(Stats {
        source: source.to_owned(),
        at_ms: crate::now_ms(),
        events,
        event_bytes,
        oldest_received_at_ms: oldest,
        newest_received_at_ms: newest,
        grouped_by: routing.describe().to_owned(),
        topics: topics.into_values().collect(),
        damaged,
        dead_letters: buffer.dead_letter_len() as u64,
        quarantined: buffer.quarantine_len() as u64,
        gaps: buffer.gaps_len(),
        usage: buffer.usage(),
    })
}

/// Verifies every entry, read-only.
pub fn check(
    buffer: &Buffer,
    source: &str,
    interrupt: &Interrupt,
) -> Result<CheckReport, ToolError> {
    let mut report = CheckReport {
        source: source.to_owned(),
        ..CheckReport::default()
    };
    buffer.walk_events(|step| {
        match step {
            Walked::Record { .. } => report.events_checked += 1,
            Walked::Damaged { seq, reason } => {
                report.events_checked += 1;
                report.damaged_events += 1;
                if report.damaged.len() < LISTED_DAMAGE {
                    report.damaged.push((seq, reason));
                }
            }
            Walked::Unreadable { from, to, error } => report.unreadable.push((from, to, error)),
        }
        !interrupt.raised()
    })?;
    interrupt.check()?;
    let SideAreas {
        dead_letters,
        quarantined,
        gaps,
        damaged,
    } = buffer.check_side_areas()?;
    report.dead_letters = dead_letters;
    report.quarantined = quarantined;
    report.gaps = gaps;
    report.damaged_side_entries = damaged;
    Ok(report)
}

/// Writes the records `filter` selects as JSON lines, oldest first.
pub fn export(
    buffer: &Buffer,
    routing: &Routing,
    filter: &ExportFilter,
    out: &mut dyn Write,
    interrupt: &Interrupt,
) -> Result<ExportEnd, ToolError> {
    let limit = filter.limit.unwrap_or(u64::MAX);
    let mut lines = Lines::new(out, interrupt);
    let mut damaged = 0;
    buffer.walk_events(|step| {
        if interrupt.raised() {
            return false;
        }
        let record = match step {
            Walked::Record { .. } if lines.listed >= limit => return false,
            Walked::Record { record, .. } => record,
            Walked::Damaged { .. } => {
                damaged += 1;
                return true;
            }
            Walked::Unreadable { .. } => return true,
        };
        let kafka_topic = routing.topic_of(&record.topic_name);
        if filter
            .kafka_topic
            .as_deref()
            .is_some_and(|wanted| wanted != kafka_topic)
        {
            return true;
        }
        let event = json_on_one_line(&record.payload);
        lines.write(&ExportedRecord {
            seq: record.seq,
            received_at: crate::rfc3339_ms(record.received_at_ms),
            received_at_ms: record.received_at_ms,
            genesys_topic: &record.topic_name,
            kafka_topic: &kafka_topic,
            correlation_id: record.correlation_id.as_deref(),
            kind: (record.kind != crate::buffer::Kind::Notification).then(|| record.kind.as_str()),
            payload: event
                .is_none()
                .then(|| String::from_utf8_lossy(&record.payload).into_owned()),
            event,
        })
    })?;
    Ok(ExportEnd {
        exported: lines.finish()?,
        damaged,
    })
}

/// The payload as JSON that fits on one line: as received when it has no
/// line breaks (Genesys sends compact JSON), re-serialised when it has;
/// `None` when it is not JSON.
fn json_on_one_line(payload: &[u8]) -> Option<Cow<'_, RawValue>> {
    let raw = serde_json::from_slice::<&RawValue>(payload).ok()?;
    if !raw.get().contains(['\n', '\r']) {
        return Some(Cow::Borrowed(raw));
    }
    let value: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    serde_json::value::to_raw_value(&value).ok().map(Cow::Owned)
}

/// The end of a `gaps` or `dead-letters` listing.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ListEnd {
    pub listed: u64,
}

/// Writes the recorded gaps as JSON lines, oldest first, one at a time.
pub fn gaps(
    buffer: &Buffer,
    filter: &GapFilter,
    out: &mut dyn Write,
    interrupt: &Interrupt,
) -> Result<ListEnd, ToolError> {
    if let Some(start_ms) = filter.rerun_backfill {
        let mut found = 0;
        for gap in buffer.gaps(None, false)? {
            if gap.start_ms == start_ms {
                let pending = crate::backfill::Progress {
                    updated_ms: crate::now_ms(),
                    ..Default::default()
                };
                buffer.set_backfill_progress(&gap.key(), &pending.encode())?;
                found += 1;
            }
        }
        if found == 0 {
            return Err(ToolError::NoSuchGap(crate::rfc3339_ms(start_ms)));
        }
    }
    let mut lines = Lines::new(out, interrupt);
    let mut unreadable = None;
    buffer.each_gap(filter.since_ms, filter.topics, |mut gap| {
        match buffer.backfill_progress(&gap.key()) {
            Ok(progress) => {
                gap.backfill = progress.and_then(|p| serde_json::from_slice(&p).ok());
            }
            Err(e) => {
                unreadable = Some(e);
                return false;
            }
        }
        lines.write(&gap)
    })?;
    if let Some(e) = unreadable {
        return Err(e.into());
    }
    Ok(ListEnd {
        listed: lines.finish()?,
    })
}

/// Writes the dead letters (or the quarantine) as JSON lines, one at a
/// time.
pub fn kept_aside(
    buffer: &Buffer,
    filter: &KeptAsideFilter,
    out: &mut dyn Write,
    interrupt: &Interrupt,
) -> Result<ListEnd, ToolError> {
    let mut lines = Lines::new(out, interrupt);
    if filter.quarantine {
        buffer.each_quarantined(|entry| lines.write(&entry))?;
    } else {
        buffer.each_dead_letter(|entry| lines.write(&entry))?;
    }
    Ok(ListEnd {
        listed: lines.finish()?,
    })
}

/// A listing being written: counts lines, keeps the first write error.
struct Lines<'a> {
    out: &'a mut dyn Write,
    interrupt: &'a Interrupt,
    listed: u64,
    failure: Option<std::io::Error>,
}

impl<'a> Lines<'a> {
    fn new(out: &'a mut dyn Write, interrupt: &'a Interrupt) -> Self {
        Lines {
            out,
            interrupt,
            listed: 0,
            failure: None,
        }
    }

    /// Writes one entry; `false` to stop the visit.
    fn write(&mut self, entry: &impl Serialize) -> bool {
        match write_json_line(self.out, entry) {
            Ok(()) => {
                self.listed += 1;
                !self.interrupt.raised()
            }
            Err(e) => {
                self.failure = Some(e);
                false
            }
        }
    }

    /// The number of lines written, or why the listing ended early.
    fn finish(self) -> Result<u64, ToolError> {
        self.interrupt.check()?;
        match self.failure {
            Some(e) => Err(ToolError::Output(e)),
            None => Ok(self.listed),
        }
    }
}

/// One JSON value and a line break: a line of the tools' output.
pub(crate) fn write_json_line(out: &mut dyn Write, value: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}

/// `v2.routing.queues.<uuid>.conversations` → `v2.routing.queues.{id}.conversations`.
fn genesys_pattern(topic: &str) -> String {
    topic
        .split('.')
        .map(|part| {
            let id = part.split('?').next().unwrap_or(part);
            if looks_like_id(id) {
                format!("{{id}}{}", &part[id.len()..])
            } else {
                part.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn looks_like_id(part: &str) -> bool {
    part.len() >= 16
        && part.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        && part.chars().any(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests;
