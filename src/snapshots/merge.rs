//! One snapshot query's window, and the snapshot records it becomes.
//!
//! **Why a window.** The buffer keeps receive order, and a snapshot record
//! is written when the query's answer arrives. The answer is the state at
//! some moment T0 while the query was out. A delta that Genesys made after
//! T0 but that reached us before the answer would sit *before* the
//! snapshot in the topic, and the snapshot (older) would set its metrics
//! back; on a quiet queue nothing would put them right for hours. So from
//! the moment the query is sent, the deltas of its queues that are
//! buffered are also kept here, and the snapshot written is the answer
//! with them applied on top, in receive order.
//!
//! **Why that is right.** Deltas carry the current value of each metric
//! they name, and one queue's deltas arrive in the order they were made.
//! For each metric, the snapshot ends up with the value of the last delta
//! received in the window, or the answer's value when there is none:
//! - a last delta made after T0 is newer than the answer;
//! - a last delta made before T0: every later change of that metric made
//!   a delta that arrives after it; none arrived in the window, so they
//!   arrive after the snapshot and are applied on top of it.
//!
//! The converse case, a delta made before T0 that arrives after the
//! snapshot, is the second bullet: applied on top, it can show an older
//! value only until the delta of the newer change, which follows it, is
//! applied. A consumer that reads "the latest snapshot, then every delta
//! after it" holds the service's state once the deltas in flight are in.
//!
//! Only observation metrics (`o…`) are state; the 30-minute aggregates
//! that share the topic are left alone.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use crate::genesys::analytics::{metric_key, QueueObservations};

/// Most metric entries one window keeps; beyond it the round fails and
/// is tried again (a window open that long means the query is stuck).
pub const MAX_WINDOW_ENTRIES: usize = 200_000;

/// The queue id of an observation topic,
/// `v2.analytics.queues.<id>.observations`.
pub fn observation_queue(topic: &str) -> Option<&str> {
    let id = topic
        .strip_prefix("v2.analytics.queues.")?
        .strip_suffix(".observations")?;
    (!id.is_empty() && !id.contains('.')).then_some(id)
}

/// One received delta of a windowed queue: its media type and the
/// observation metrics it carried.
struct Delta {
    media_type: Option<String>,
    metrics: Vec<Map<String, Value>>,
}

/// The deltas of a set of queues buffered since a query for them was sent.
pub struct Window {
    deltas: HashMap<String, Vec<Delta>>,
    entries: usize,
    overflowed: bool,
}

/// What a window's answer became.
pub struct Snapshot {
    /// `(topic name, record payload)`, one per queue and media type.
    pub records: Vec<(String, Vec<u8>)>,
    /// Deltas applied on top of the answer.
    pub merged: u64,
    /// Queues asked for that the answer did not mention.
    pub unanswered: Vec<String>,
}

impl Window {
    /// A window over `queue_ids`, opened as their query is sent.
    pub fn new<'a>(queue_ids: impl IntoIterator<Item = &'a str>) -> Window {
        Window {
            deltas: queue_ids
                .into_iter()
                .map(|q| (q.to_owned(), Vec::new()))
                .collect(),
            entries: 0,
            overflowed: false,
        }
    }

    /// Whether more deltas arrived than a window keeps.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// A notification on `topic` was buffered: kept when it is a delta of
    /// a queue of this window. A frame that does not parse as an
    /// observation event is left out (it is in the buffer as received).
    pub fn observe(&mut self, topic: &str, text: &str) {
        let Some(queue) = observation_queue(topic) else {
            return;
        };
        let Some(list) = self.deltas.get_mut(queue) else {
            return;
        };
        if self.overflowed {
            return;
        }
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let body = &frame["eventBody"];
        let media_type = body["group"]["mediaType"].as_str().map(str::to_owned);
        let metrics: Vec<Map<String, Value>> = body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|d| d["metrics"].as_array().into_iter().flatten())
            .filter_map(|m| m.as_object())
            .filter(|m| is_observation(m))
            .cloned()
            .collect();
        if metrics.is_empty() {
            return;
        }
        self.entries += metrics.len();
        if self.entries > MAX_WINDOW_ENTRIES {
            self.overflowed = true;
            self.deltas.values_mut().for_each(Vec::clear);
            return;
        }
        list.push(Delta {
            media_type,
            metrics,
        });
    }

    /// The snapshot records of `answer`, with this window's deltas applied
    /// on top; `topics` maps each queue id to its topic name, `now` is the
    /// records' interval (RFC 3339).
    pub fn finish(
        self,
        answer: Vec<QueueObservations>,
        topics: &HashMap<String, String>,
        now: &str,
    ) -> Snapshot {
        let mut records = Vec::new();
        let mut merged = 0;
        let mut answered = std::collections::HashSet::new();
        for result in answer {
            let Some(topic) = topics.get(&result.queue_id) else {
                continue;
            };
            answered.insert(result.queue_id.clone());
            let mut state: BTreeMap<(String, Option<String>), Value> = BTreeMap::new();
            for m in result.metrics {
                if let Some(key) = m.as_object().and_then(metric_key) {
                    state.insert(key, m);
                }
            }
            for delta in self.deltas.get(&result.queue_id).into_iter().flatten() {
                let same_media = match (&delta.media_type, &result.media_type) {
                    (Some(d), Some(r)) => d.eq_ignore_ascii_case(r),
                    _ => true,
                };
                if !same_media {
                    continue;
                }
                merged += 1;
                for m in &delta.metrics {
                    if let Some(key) = metric_key(m) {
                        state.insert(key, Value::Object(m.clone()));
                    }
                }
            }
            let mut group = json!({ "queueId": result.queue_id });
            if let Some(media) = &result.media_type {
                group["mediaType"] = json!(media);
            }
            let record = json!({
                "topicName": topic,
                "version": "2",
                "eventBody": {
                    "group": group,
                    "data": [{
                        "interval": format!("{now}/{now}"),
                        "metrics": state.into_values().collect::<Vec<Value>>(),
                    }],
                },
                "metadata": { "gkb-kind": "snapshot" },
            });
            records.push((
                topic.clone(),
                serde_json::to_vec(&record).expect("JSON serialises"),
            ));
        }
        let mut unanswered: Vec<String> = self
            .deltas
            .keys()
            .filter(|q| !answered.contains(*q))
            .cloned()
            .collect();
        unanswered.sort();
        Snapshot {
            records,
            merged,
            unanswered,
        }
    }
}

/// Whether a metric entry is an observation (state), not an aggregate.
fn is_observation(m: &Map<String, Value>) -> bool {
    m.get("metric")
        .and_then(Value::as_str)
        .is_some_and(|name| name.starts_with('o'))
        && m.get("stats").is_some_and(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "11111111-0000-4000-8000-000000000001";

    fn topic() -> String {
        format!("v2.analytics.queues.{Q}.observations")
    }

    fn delta(metrics: Value) -> String {
        json!({"topicName": topic(), "eventBody": {
            "group": {"queueId": Q, "mediaType": "voice"},
            "data": [{"interval": "x/x", "metrics": metrics}]}})
        .to_string()
    }

    fn count(metric: &str, n: u64) -> Value {
        json!({"metric": metric, "stats": {"count": n}})
    }

    fn answer(metrics: Vec<Value>) -> Vec<QueueObservations> {
        vec![QueueObservations {
            queue_id: Q.into(),
            media_type: Some("voice".into()),
            metrics,
        }]
    }

    fn metrics_of(record: &[u8]) -> Vec<Value> {
        let v: Value = serde_json::from_slice(record).unwrap();
        v["eventBody"]["data"][0]["metrics"]
            .as_array()
            .unwrap()
            .clone()
    }

    #[test]
    fn topics_name_their_queue() {
        assert_eq!(observation_queue(&topic()), Some(Q));
        assert_eq!(observation_queue("v2.routing.queues.x.conversations"), None);
        assert_eq!(observation_queue("v2.analytics.queues..observations"), None);
    }

    #[test]
    fn deltas_received_while_the_query_was_out_are_applied_on_top() {
        let mut w = Window::new([Q]);
        // Made after the answer's moment: oWaiting 5 is newer than its 3.
        w.observe(&topic(), &delta(json!([count("oWaiting", 5)])));
        // An aggregate on the same topic is not state.
        w.observe(&topic(), &delta(json!([count("nOffered", 9)])));
        // Another queue's delta is not this window's.
        w.observe(
            "v2.analytics.queues.other.observations",
            &delta(json!([count("oAlerting", 7)])),
        );
        let topics = HashMap::from([(Q.to_owned(), topic())]);
        let s = w.finish(
            answer(vec![count("oWaiting", 3), count("oAlerting", 1)]),
            &topics,
            "2026-12-04T00:00:00.000Z",
        );
        assert_eq!(s.merged, 1);
        assert_eq!(s.records.len(), 1);
        let metrics = metrics_of(&s.records[0].1);
        assert_eq!(metrics, vec![count("oAlerting", 1), count("oWaiting", 5)]);
        let v: Value = serde_json::from_slice(&s.records[0].1).unwrap();
        assert_eq!(v["topicName"], topic());
        assert_eq!(v["eventBody"]["group"]["mediaType"], "voice");
    }

    #[test]
    fn queues_left_out_of_the_answer_are_reported() {
        let w = Window::new([Q, "22222222-0000-4000-8000-000000000002"]);
        let topics = HashMap::from([(Q.to_owned(), topic())]);
        let s = w.finish(answer(vec![count("oWaiting", 3)]), &topics, "t");
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.unanswered, vec!["22222222-0000-4000-8000-000000000002"]);
    }

    #[test]
    fn a_flood_overflows_the_window() {
        let mut w = Window::new([Q]);
        let many: Vec<Value> = (0..1000).map(|i| count("oWaiting", i)).collect();
        let frame = delta(json!(many));
        for _ in 0..=MAX_WINDOW_ENTRIES / 1000 {
            w.observe(&topic(), &frame);
        }
        assert!(w.overflowed());
    }
}
