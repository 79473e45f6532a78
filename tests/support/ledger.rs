//! Reconciles what the simulator emitted with what Kafka holds: every
//! event counted as arrived once, lost, duplicated or out of order, and
//! every record checked for key, headers and byte-identical value.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::consumer::{self, Consumed};
use super::{Broker, Simulator, TOPICS};

#[derive(Debug, Clone, Deserialize)]
pub struct Emitted {
    pub seq: u64,
    pub correlation_id: String,
    pub topic: String,
    pub delivered: bool,
    /// When the simulator emitted it (its clock: the tests' machine).
    #[serde(default)]
    pub emitted_at_ms: u64,
    #[serde(default)]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub frame: Option<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Records read from Kafka.
    pub records: usize,
    /// Events delivered to a socket: those that must arrive.
    pub expected: usize,
    pub arrived_once: usize,
    pub lost: usize,
    pub duplicates: usize,
    pub reordered: usize,
    /// Records the bridge made (header `gkb-kind`: observation snapshots,
    /// backfill): not events, counted apart.
    pub made: usize,
    pub unknown: usize,
    pub mismatches: Vec<String>,
}

impl Report {
    pub fn is_perfect(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.reordered == 0
            && self.unknown == 0
            && self.mismatches.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} delivered to a socket; records in Kafka {}; arrived once {}; lost {}; \
             duplicates {}; reordered {}; unknown {}; mismatches {}; made by the bridge {}",
            self.expected,
            self.records,
            self.arrived_once,
            self.lost,
            self.duplicates,
            self.reordered,
            self.unknown,
            self.mismatches.len(),
            self.made
        )
    }
}

/// Reads every record of [`TOPICS`] from `broker` and reconciles them with
/// what `sim` emitted; prints the counts after `label`.
pub fn check(label: &str, sim: &Simulator, broker: &Broker) -> Report {
    let reading = Instant::now();
    let consumed = consumer::read_all(&broker.bootstrap(), &TOPICS, Duration::from_secs(120));
    let read_in = reading.elapsed();
    let report = reconcile(&emitted(&sim.url), &consumed);
    println!(
        "{label}: {report} (Kafka read in {:.2}s)",
        read_in.as_secs_f64()
    );
    report
}

/// [`check`], asserting that each of the `events` the simulator delivered
/// to a socket is in Kafka exactly once, in emit order per key, with its
/// key, headers and value, and that Kafka holds nothing else but the
/// records the bridge made (`gkb-kind`, counted apart).
pub fn assert_exactly_once(label: &str, sim: &Simulator, broker: &Broker, events: usize) -> Report {
    let report = check(label, sim, broker);
    assert_eq!(report.expected, events, "{report:#?}");
    assert!(report.is_perfect(), "{report:#?}");
    assert_eq!(report.records - report.made, events, "{report:#?}");
    report
}

/// Distinct events emitted, and how many of them reached an open socket
/// (the log has an entry per receiving channel: an event sent to an old
/// channel without a socket and a new one with it is one event,
/// delivered).
pub fn distinct_and_delivered(emitted: &[Emitted]) -> (usize, usize) {
    let distinct: HashSet<&str> = emitted.iter().map(|e| e.correlation_id.as_str()).collect();
    let delivered: HashSet<&str> = emitted
        .iter()
        .filter(|e| e.delivered)
        .map(|e| e.correlation_id.as_str())
        .collect();
    (distinct.len(), delivered.len())
}

/// The events the simulator says it emitted (and delivered to a socket).
pub fn emitted(sim_url: &str) -> Vec<Emitted> {
    #[derive(Deserialize)]
    struct Reply {
        events: Vec<Emitted>,
    }
    let resp = super::http::get(&format!("{sim_url}/sim/emitted?frames=true")).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let reply: Reply = serde_json::from_str(&resp.body).unwrap();
    reply.events
}

/// The entity id a topic name carries: the segment after the collection
/// word. Written independently of the bridge's own parser on purpose.
pub fn expected_key(topic: &str) -> &str {
    let parts: Vec<&str> = topic.split('.').collect();
    parts
        .windows(2)
        .find(|w| matches!(w[0], "queues" | "users" | "conversation" | "agent"))
        .map_or(topic, |w| w[1])
}

pub fn reconcile(emitted: &[Emitted], consumed: &[Consumed]) -> Report {
    let delivered: HashMap<&str, &Emitted> = emitted
        .iter()
        .filter(|e| e.delivered)
        .map(|e| (e.correlation_id.as_str(), e))
        .collect();
    let mut report = Report {
        records: consumed.len(),
        expected: delivered.len(),
        ..Report::default()
    };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    // Per Kafka topic and key, the highest emit sequence seen so far, in
    // offset order (one key of one topic lives on one partition).
    let mut last_seq_per_key: HashMap<(String, Vec<u8>), u64> = HashMap::new();
    let mut ordered: Vec<&Consumed> = consumed.iter().collect();
    ordered
        .sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    for record in ordered {
        if let Some(kind) = record.header("gkb-kind") {
            if !matches!(kind, "snapshot" | "backfill") {
                report
                    .mismatches
                    .push(format!("a record of unknown gkb-kind {kind:?}"));
            }
            report.made += 1;
            continue;
        }
        let Some(corr) = record.header("genesys-correlation-id") else {
            report.unknown += 1;
            continue;
        };
        let Some(event) = delivered.get(corr) else {
            report.unknown += 1;
            continue;
        };
        let count = seen.entry(event.correlation_id.as_str()).or_default();
        *count += 1;
        if *count > 1 {
            report.duplicates += 1;
            continue;
        }
        let key = record.key.clone().unwrap_or_default();
        if key != expected_key(&event.topic).as_bytes() {
            report.mismatches.push(format!(
                "seq {}: key {:?}",
                event.seq,
                String::from_utf8_lossy(&key)
            ));
        }
        if record.header("genesys-topic") != Some(event.topic.as_str()) {
            report.mismatches.push(format!(
                "seq {}: genesys-topic header {:?}",
                event.seq,
                record.header("genesys-topic")
            ));
        }
        if record
            .header("genesys-received-at-ms")
            .and_then(|v| v.parse::<u64>().ok())
            .is_none()
        {
            report.mismatches.push(format!(
                "seq {}: no genesys-received-at-ms header",
                event.seq
            ));
        }
        match &event.frame {
            Some(frame) if frame.as_bytes() == record.value.as_slice() => {}
            Some(_) => report.mismatches.push(format!(
                "seq {}: value differs from the frame sent",
                event.seq
            )),
            None => report.mismatches.push(format!(
                "seq {}: simulator did not report the frame",
                event.seq
            )),
        }
        let last = last_seq_per_key
            .entry((record.topic.clone(), key))
            .or_insert(0);
        if event.seq < *last {
            report.reordered += 1;
        }
        *last = (*last).max(event.seq);
    }
    let arrived: HashSet<&str> = seen.keys().copied().collect();
    report.arrived_once = seen.values().filter(|&&n| n >= 1).count();
    report.lost = delivered.keys().filter(|k| !arrived.contains(*k)).count();
    report.mismatches.truncate(20);
    report
}
