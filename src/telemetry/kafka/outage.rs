//! The log's story of a Kafka outage: one WARN when Kafka goes away, a
//! summary a minute while it stays away (the client and delivery errors
//! folded into it), one INFO when it answers again and one when the
//! backlog it left has drained. However long the outage, a few lines.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::super::recent::Level;
use super::super::shared::{lock, Shared};

/// How often a Kafka outage in progress is summed up in the log.
pub const OUTAGE_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// The outage in progress and the drain after it, as the log tells them.
/// Its owner says when Kafka went away or came back, folds errors in and
/// ticks it once a second; the figures it needs come as arguments.
pub(super) struct Outages {
    shared: Arc<Shared>,
    log: Mutex<OutageLog>,
}

#[derive(Default)]
struct OutageLog {
    current: Option<Outage>,
    /// After an outage: until the backlog is back to where it was.
    draining: Option<Drain>,
}

struct Outage {
    started: Instant,
    reason: String,
    last_summary: Instant,
    /// Buffer events when it started: the drain is over when back to it.
    backlog_at_start: u64,
    peak_backlog: u64,
    /// Folded since the last summary.
    client_errors: u64,
    delivery_errors: u64,
    /// Folded in all.
    client_errors_total: u64,
    delivery_errors_total: u64,
    /// The newest librdkafka complaint folded (its kind and text).
    last_client_error: Option<String>,
}

struct Drain {
    since: Instant,
    held: u64,
    forwarded_at_start: u64,
    backlog_target: u64,
}

impl Outages {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Outages {
            shared,
            log: Mutex::default(),
        }
    }

    /// Kafka went away: one WARN now, then a summary a minute
    /// ([`Self::tick`]) until [`Self::ended`]. Nothing if one is already
    /// in progress. `oldest` is the age of the oldest event read and not
    /// yet acknowledged.
    pub(super) fn started(&self, reason: &str, oldest: Option<u64>) {
        let backlog = self.shared.backlog();
        let mut log = lock(&self.log);
        if log.current.is_some() {
            return;
        }
        // A drain cut short by a new outage: the new one holds it all.
        let backlog_at_start = log.draining.take().map_or(backlog, |d| d.backlog_target);
        let now = Instant::now();
        log.current = Some(Outage {
            started: now,
            reason: reason.to_owned(),
            last_summary: now,
            backlog_at_start,
            peak_backlog: backlog,
            client_errors: 0,
            delivery_errors: 0,
            client_errors_total: 0,
            delivery_errors_total: 0,
            last_client_error: None,
        });
        drop(log);
        tracing::warn!(
            reason,
            backlog,
            oldest_unacked_secs = oldest,
            "Kafka outage: events wait in the buffer; Kafka client and delivery errors are counted and summed up every minute until it ends"
        );
        self.shared
            .problem(Level::Warn, "kafka", "Kafka outage", &reason);
    }

    /// Once a second (the forwarder's report): the minute's summary of an
    /// outage in progress, or the end of the drain after one. `forwarded`
    /// counts the events Kafka acknowledged since start.
    pub(super) fn tick(&self, oldest: Option<u64>, forwarded: u64) {
        let backlog = self.shared.backlog();
        let mut log = lock(&self.log);
        if let Some(outage) = &mut log.current {
            outage.peak_backlog = outage.peak_backlog.max(backlog);
            if outage.last_summary.elapsed() >= OUTAGE_SUMMARY_EVERY {
                outage.last_summary = Instant::now();
                let client_errors = std::mem::take(&mut outage.client_errors);
                let delivery_errors = std::mem::take(&mut outage.delivery_errors);
                let outage_secs = outage.started.elapsed().as_secs();
                let reason = outage.reason.clone();
                let last_error = outage.last_client_error.clone();
                drop(log);
                tracing::warn!(
                    outage_secs,
                    backlog,
                    oldest_unacked_secs = oldest,
                    client_errors_folded = client_errors,
                    delivery_errors_folded = delivery_errors,
                    reason,
                    last_client_error = last_error.as_deref(),
                    "Kafka outage continues"
                );
                self.shared
                    .problem(Level::Warn, "kafka", "Kafka outage continues", &reason);
            }
            return;
        }
        let Some(drain) = &log.draining else {
            return;
        };
        if backlog > drain.backlog_target {
            return;
        }
        let drain_secs = drain.since.elapsed().as_secs_f64();
        let drained = forwarded.saturating_sub(drain.forwarded_at_start);
        let held = drain.held;
        log.draining = None;
        drop(log);
        tracing::info!(
            held,
            drained,
            drain_secs = (drain_secs * 10.0).round() / 10.0,
            events_per_sec = (drained as f64 / drain_secs.max(0.001)).round() as u64,
            "backlog of the Kafka outage drained"
        );
    }

    /// Kafka answers again: one INFO with how long it was away and what
    /// waited. False if no outage was in progress.
    pub(super) fn ended(&self, forwarded: u64) -> bool {
        let backlog = self.shared.backlog();
        let mut log = lock(&self.log);
        let Some(outage) = log.current.take() else {
            return false;
        };
        log.draining = Some(Drain {
            since: Instant::now(),
            held: backlog,
            forwarded_at_start: forwarded,
            backlog_target: outage.backlog_at_start,
        });
        drop(log);
        tracing::info!(
            outage_secs = outage.started.elapsed().as_secs(),
            backlog,
            peak_backlog = outage.peak_backlog.max(backlog),
            client_errors_folded = outage.client_errors_total,
            delivery_errors_folded = outage.delivery_errors_total,
            reason = outage.reason,
            "Kafka outage over: Kafka reachable again; the backlog drains"
        );
        true
    }

    /// Folds a Kafka error into the outage in progress, if there is one:
    /// a client complaint with its text, or (None) a failed delivery.
    pub(super) fn fold(&self, client_error: Option<String>) -> bool {
        let mut log = lock(&self.log);
        let Some(outage) = &mut log.current else {
            return false;
        };
        match client_error {
            Some(error) => {
                outage.client_errors += 1;
                outage.client_errors_total += 1;
                outage.last_client_error = Some(error);
            }
            None => {
                outage.delivery_errors += 1;
                outage.delivery_errors_total += 1;
            }
        }
        true
    }

    /// Makes the outage in progress due for its minute's summary.
    #[cfg(test)]
    fn summary_due(&self) {
        let mut log = lock(&self.log);
        let outage = log.current.as_mut().expect("an outage in progress");
        outage.last_summary = outage
            .last_summary
            .checked_sub(OUTAGE_SUMMARY_EVERY)
            .expect("a clock past a minute");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::KafkaTelemetry;
    use crate::telemetry::init::LogFormat;
    use crate::telemetry::test_support::logged;

    /// Start, a thousand rounds of errors, a summary, the end, the drain.
    fn an_outage(t: &KafkaTelemetry) {
        t.reachable(Ok(()));
        // Outside an outage: logged, once a minute per kind.
        t.client_problem("FAIL", "Connect to ipv4#127.0.0.1:9092 failed");
        t.client_problem("FAIL", "Connect to ipv4#127.0.0.1:9092 failed");
        t.reachable(Err("metadata request failed: BrokerTransportFailure".into()));
        for _ in 0..1000 {
            t.client_problem("BrokerTransportFailure", "Connection refused");
            t.client_problem("AllBrokersDown", "1/1 brokers are down");
            t.delivery_failed(
                7,
                "genesys.events",
                &"Local: Broker transport failure",
                true,
            );
            t.reachable(Err("metadata request failed".into()));
            t.topics_report(Vec::new());
        }
        t.outages.summary_due();
        t.topics_report(Vec::new());
        t.topics_report(Vec::new());
        t.reachable(Ok(()));
        t.reachable(Ok(()));
        t.topics_report(Vec::new());
        t.topics_report(Vec::new());
    }

    #[test]
    fn an_outage_is_a_few_lines_with_the_same_fields_in_json_and_text() {
        let t = KafkaTelemetry::new(Arc::default());
        let json = logged(LogFormat::Json, || an_outage(&t));
        assert_eq!(t.client_errors.get(), 2002);
        assert_eq!(t.delivery_errors.get(), 1000);
        let text = logged(LogFormat::Text, || {
            an_outage(&KafkaTelemetry::new(Arc::default()))
        });
        let messages: Vec<serde_json::Value> = json
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let said: Vec<&str> = messages
            .iter()
            .map(|m| m["message"].as_str().unwrap())
            .collect();
        assert_eq!(said.len(), 6, "{json:#?}");
        assert_eq!(said[0], "Kafka reachable");
        assert!(said[1].starts_with("Kafka client problem"), "{said:?}");
        assert_eq!(
            messages[1]["error"],
            "Connect to ipv4#127.0.0.1:9092 failed"
        );
        // A field named `message` would be a second "message" key in JSON.
        for line in &json {
            assert_eq!(line.matches("\"message\":").count(), 1, "{line}");
        }
        let said = &said[1..];
        let messages = &messages[1..];
        let text = &text[1..];
        assert!(said[1].starts_with("Kafka outage:"), "{said:?}");
        assert_eq!(said[2], "Kafka outage continues");
        assert!(said[3].starts_with("Kafka outage over"), "{said:?}");
        assert_eq!(said[4], "backlog of the Kafka outage drained");
        let summary = &messages[2];
        assert_eq!(summary["level"], "WARN");
        assert_eq!(summary["client_errors_folded"], 2000);
        assert_eq!(summary["delivery_errors_folded"], 1000);
        assert!(summary["outage_secs"].is_u64() && summary["backlog"].is_u64());
        assert_eq!(messages[3]["level"], "INFO");
        assert_eq!(messages[3]["client_errors_folded"], 2000);
        // Text: the same lines, each with the same fields as `key=value`.
        assert_eq!(text.len(), messages.len(), "{text:#?}");
        for (json, text) in messages.iter().zip(text) {
            assert!(text.contains(json["message"].as_str().unwrap()), "{text}");
            for key in json.as_object().unwrap().keys() {
                if !["timestamp", "level", "target", "message"].contains(&key.as_str()) {
                    assert!(text.contains(&format!("{key}=")), "{key} missing in {text}");
                }
            }
        }
    }
}
