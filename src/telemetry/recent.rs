//! What `/status` (and the status page at `/`) shows besides the current
//! state: the recent warnings and errors, and how fast each Kafka topic is
//! being forwarded.
//!
//! Both are fed by [`super::Telemetry`] only: a warning or error is
//! recorded where it is logged (the one place that logs and counts), not
//! scraped from the log, so what is shown is exactly the operational
//! events, with texts that are already safe to log.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use crate::genesys::channel_id::mask_channel_ids;

/// Warnings and errors kept for `/status`, at most.
pub const RECENT_PROBLEMS: usize = 50;
/// Longest detail kept, in bytes: a log line's worth, so one long
/// service answer cannot make `/status` heavy.
const DETAIL_MAX: usize = 300;

/// How far back the forwarding rates look: long enough to smooth the
/// forwarder's batches, short enough to show a stall within seconds.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// The level of a recorded problem, spelled as the JSON log spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Warn,
    Error,
}

/// One warning or error, with how often it happened.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Problem {
    /// When it last happened (RFC 3339, ms, UTC, as the log).
    pub at: String,
    /// When it first happened (the same as `at` when `count` is 1).
    pub first_at: String,
    pub level: Level,
    /// What it is about: `token`, `connection 0`, `kafka`, `buffer`,
    /// `planner`, `genesys api`, `bridge`.
    pub component: String,
    /// The fixed text of the log line it goes with (grep the log for it).
    pub message: &'static str,
    /// The varying part (a reason, an error text), channel ids masked.
    pub detail: String,
    /// Times it happened while it stayed among the recent ones.
    pub count: u64,
}

/// The newest problems, newest first. The same problem again (same
/// level, component, message and detail) is counted in its entry and
/// moved to the front instead of taking another place: a reconnect loop
/// must not push everything else out.
#[derive(Debug, Default)]
pub struct RecentProblems(VecDeque<Problem>);

impl RecentProblems {
    pub fn record(
        &mut self,
        at: SystemTime,
        level: Level,
        component: String,
        message: &'static str,
        detail: &str,
    ) {
        let detail = cut(&mask_channel_ids(detail), DETAIL_MAX);
        let at = humantime::format_rfc3339_millis(at).to_string();
        let same = self.0.iter().position(|p| {
            p.level == level
                && p.message == message
                && p.component == component
                && p.detail == detail
        });
        let problem = match same.and_then(|i| self.0.remove(i)) {
            Some(mut seen) => {
                seen.count += 1;
                seen.at = at;
                seen
            }
            None => Problem {
                first_at: at.clone(),
                at,
                level,
                component,
                message,
                detail,
                count: 1,
            },
        };
        self.0.push_front(problem);
        self.0.truncate(RECENT_PROBLEMS);
    }

    pub fn newest_first(&self) -> Vec<Problem> {
        self.0.iter().cloned().collect()
    }
}

/// Events Kafka acknowledged, per topic and in all, since start, and the
/// rates over the last [`RATE_WINDOW`]. Computed here, not by the page
/// from two polls: every reader of `/status` (a script, `curl`) gets the
/// same figure, the first poll already has one, and the span is measured
/// on the bridge's monotonic clock at the forwarder's reports rather
/// than on a browser's timers, which a background tab slows down.
#[derive(Debug, Default)]
pub struct ForwardRates {
    totals: BTreeMap<String, u64>,
    /// Oldest first; the oldest is the base of the rates.
    samples: VecDeque<Sample>,
}

#[derive(Debug)]
struct Sample {
    at: Instant,
    topics: BTreeMap<String, u64>,
    all: u64,
}

/// Samples kept at most, whatever the report frequency (reports come
/// once a second; this only bounds memory if that ever changed).
const MAX_SAMPLES: usize = 64;

impl ForwardRates {
    /// A forwarder report: `acknowledged` per topic since the previous
    /// report, and the all-topics counter (`gkb_events_forwarded_total`).
    pub fn add<'a>(
        &mut self,
        at: Instant,
        acknowledged: impl IntoIterator<Item = (&'a str, u64)>,
        all: u64,
    ) {
        for (topic, n) in acknowledged {
            *self.totals.entry(topic.to_owned()).or_default() += n;
        }
        self.samples.push_back(Sample {
            at,
            topics: self.totals.clone(),
            all,
        });
        // The base is the newest sample at least RATE_WINDOW old.
        while self.samples.len() > MAX_SAMPLES
            || (self.samples.len() > 2
                && at.saturating_duration_since(self.samples[1].at) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Acknowledged for `topic` since start.
    pub fn total(&self, topic: &str) -> u64 {
        self.totals.get(topic).copied().unwrap_or(0)
    }

    /// Per second over the samples' span, for `topic` or (`None`) all
    /// topics; 0 until there are two samples.
    pub fn per_sec(&self, topic: Option<&str>) -> f64 {
        let (Some(old), Some(new)) = (self.samples.front(), self.samples.back()) else {
            return 0.0;
        };
        let span = new.at.saturating_duration_since(old.at).as_secs_f64();
        if span <= 0.0 {
            return 0.0;
        }
        let count = |s: &Sample| match topic {
            Some(topic) => s.topics.get(topic).copied().unwrap_or(0),
            None => s.all,
        };
        let rate = count(new).saturating_sub(count(old)) as f64 / span;
        // One decimal: more would be noise of the forwarder's batching.
        (rate * 10.0).round() / 10.0
    }
}

fn cut(text: &str, max: usize) -> String {
    let kept = crate::cut_at_char_boundary(text, max);
    if kept.len() == text.len() {
        kept.to_owned()
    } else {
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_problem_is_counted_not_repeated_and_the_ring_is_bounded() {
        let mut recent = RecentProblems::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        recent.record(
            t0,
            Level::Warn,
            "connection 0".into(),
            "reconnecting",
            "1006",
        );
        recent.record(
            t0,
            Level::Error,
            "kafka".into(),
            "dead-lettered",
            "too large",
        );
        recent.record(
            t0 + Duration::from_secs(5),
            Level::Warn,
            "connection 0".into(),
            "reconnecting",
            "1006",
        );
        let shown = recent.newest_first();
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert_eq!(shown[0].message, "reconnecting");
        assert_eq!(shown[0].count, 2);
        assert_eq!(shown[0].first_at, "2027-01-15T08:00:00.000Z");
        assert_eq!(shown[0].at, "2027-01-15T08:00:05.000Z");
        assert_eq!(shown[1].message, "dead-lettered");
        let json = serde_json::to_value(&shown[1]).unwrap();
        assert_eq!(json["level"], "ERROR");

        for i in 0..200 {
            recent.record(t0, Level::Warn, "kafka".into(), "x", &i.to_string());
        }
        let shown = recent.newest_first();
        assert_eq!(shown.len(), RECENT_PROBLEMS);
        assert_eq!(shown[0].detail, "199");
    }

    #[test]
    fn details_are_masked_and_cut() {
        let mut recent = RecentProblems::default();
        let long = format!(
            "channel streaming-0-fmtdmf8cdis7jh14udg5p89t6z gone {}",
            "é".repeat(400)
        );
        recent.record(SystemTime::now(), Level::Warn, "c".into(), "m", &long);
        let detail = &recent.newest_first()[0].detail;
        assert!(
            detail.starts_with("channel streaming-0-fmtd… gone"),
            "{detail}"
        );
        assert!(!detail.contains("fmtdmf8cdis7"), "{detail}");
        assert!(detail.len() <= DETAIL_MAX + "…".len(), "{}", detail.len());
        assert!(detail.ends_with('…'));
    }

    #[test]
    fn rates_are_over_the_window_per_topic_and_in_all() {
        let mut rates = ForwardRates::default();
        let t0 = Instant::now();
        assert_eq!(rates.per_sec(None), 0.0);
        rates.add(t0, [("a", 0), ("b", 0)], 0);
        assert_eq!(rates.per_sec(Some("a")), 0.0);
        // 20 s at 30/s on a and 10/s on b, reported once a second.
        for s in 1..=20u64 {
            rates.add(t0 + Duration::from_secs(s), [("a", 30), ("b", 10)], s * 40);
        }
        assert_eq!(rates.total("a"), 600);
        assert_eq!(rates.total("b"), 200);
        assert_eq!(rates.total("c"), 0);
        assert_eq!(rates.per_sec(Some("a")), 30.0);
        assert_eq!(rates.per_sec(Some("b")), 10.0);
        assert_eq!(rates.per_sec(None), 40.0);
        assert!(rates.samples.len() <= 12, "{}", rates.samples.len());
        // The flow stops: the rate falls to 0 within the window.
        for s in 21..=31u64 {
            rates.add(t0 + Duration::from_secs(s), [("a", 0), ("b", 0)], 800);
        }
        assert_eq!(rates.per_sec(Some("a")), 0.0);
        assert_eq!(rates.per_sec(None), 0.0);
        assert_eq!(rates.total("a"), 600);
    }
}
