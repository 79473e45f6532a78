//! Per-queue live statistics behind `v2.analytics.queues.{id}.observations`.
//!
//! The real service sends deltas: an event carries only the metrics that
//! changed since the previous event for that queue. The simulator keeps
//! each queue's statistics here, changes a few of them per event and sends
//! just those; the first event of a queue carries every metric. A consumer
//! that applies the events of a queue in order (replacing each
//! `(metric, qualifier)`'s stats) holds exactly [`QueueObservations::view`].
//!
//! Counts are integers; `oServiceLevel` is a ratio stat
//! `{"ratio","numerator","denominator","target"}`.

use std::collections::{BTreeMap, HashMap};

use rand::Rng;
use serde_json::{json, Value};

/// The service level target every simulated queue has (80 % answered in
/// time).
const SERVICE_LEVEL_TARGET: f64 = 0.8;

/// One metric's stats: integer counts or the service level ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stat {
    Count(u64),
    Ratio { numerator: u64, denominator: u64 },
}

impl Stat {
    pub fn json(self) -> Value {
        match self {
            Stat::Count(n) => json!({"count": n}),
            Stat::Ratio {
                numerator,
                denominator,
            } => {
                let ratio = if denominator == 0 {
                    0.0
                } else {
                    numerator as f64 / denominator as f64
                };
                json!({
                    "ratio": ratio,
                    "numerator": numerator,
                    "denominator": denominator,
                    "target": SERVICE_LEVEL_TARGET,
                })
            }
        }
    }
}

/// `(metric, qualifier)`: `oOnQueueUsers` comes once per routing status.
pub(crate) type MetricKey = (&'static str, Option<String>);

/// The statistics of one queue as the simulator holds them.
#[derive(Debug, Clone, Default)]
pub(crate) struct QueueStats {
    metrics: BTreeMap<MetricKey, Stat>,
    /// Whether an event was sent for this queue yet (the first is full).
    sent: bool,
}

/// What one observation event carries: the changed metrics.
pub(crate) struct Delta {
    pub changed: Vec<(MetricKey, Stat)>,
}

impl QueueStats {
    fn count(&self, metric: &'static str, qualifier: Option<&str>) -> u64 {
        match self.metrics.get(&(metric, qualifier.map(str::to_owned))) {
            Some(Stat::Count(n)) => *n,
            _ => 0,
        }
    }

    /// Applies the next random change given `members` (current member
    /// count) and the On Queue presence id; returns what changed (every
    /// metric on the first call). Never empty.
    pub fn step(&mut self, members: u64, on_queue_presence: &str, rng: &mut impl Rng) -> Delta {
        let before = self.metrics.clone();
        let mut waiting = self.count("oWaiting", None);
        let mut interacting = self.count("oInteracting", None).min(members);
        let mut alerting = self.count("oAlerting", None);
        let (mut num, mut den) = match self.metrics.get(&("oServiceLevel", None)) {
            Some(Stat::Ratio {
                numerator,
                denominator,
            }) => (*numerator, *denominator),
            _ => (0, 0),
        };
        if self.sent {
            // One to three changes, each of which moves at least one count.
            let changes = rng.gen_range(1..=3);
            for _ in 0..changes {
                match rng.gen_range(0..5) {
                    0 => waiting += 1,
                    1 if waiting > 0 => waiting -= 1,
                    1 => waiting += 1,
                    2 => alerting = u64::from(alerting == 0),
                    3 if interacting < members && waiting > 0 => {
                        // A waiting conversation is answered: service level.
                        waiting -= 1;
                        interacting += 1;
                        den += 1;
                        if rng.gen_ratio(17, 20) {
                            num += 1;
                        }
                    }
                    3 if interacting > 0 => interacting -= 1,
                    3 => waiting += 1,
                    _ if interacting > 0 => interacting -= 1,
                    _ => {
                        den += 1;
                        if rng.gen_ratio(17, 20) {
                            num += 1;
                        }
                    }
                }
            }
        }
        self.set_all(
            members,
            on_queue_presence,
            [waiting, interacting, alerting],
            (num, den),
        );
        let first = !self.sent;
        self.sent = true;
        let mut changed: Vec<(MetricKey, Stat)> = self
            .metrics
            .iter()
            .filter(|(k, v)| first || before.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if changed.is_empty() {
            // Every random change cancelled out (e.g. +1 then -1): the
            // service would send nothing; the generator owes an event, so
            // one more waiting conversation arrives.
            let waiting = Stat::Count(waiting + 1);
            self.metrics.insert(("oWaiting", None), waiting);
            changed.push((("oWaiting", None), waiting));
        }
        Delta { changed }
    }

    /// Sets every metric from the counts `[waiting, interacting, alerting]`
    /// and the service level `(numerator, denominator)`.
    fn set_all(
        &mut self,
        members: u64,
        on_queue_presence: &str,
        [waiting, interacting, alerting]: [u64; 3],
        (num, den): (u64, u64),
    ) {
        let idle = members.saturating_sub(interacting);
        let set = |m: &mut BTreeMap<MetricKey, Stat>, k: &'static str, q: Option<&str>, s| {
            m.insert((k, q.map(str::to_owned)), s);
        };
        let m = &mut self.metrics;
        set(m, "oWaiting", None, Stat::Count(waiting));
        set(m, "oInteracting", None, Stat::Count(interacting));
        set(m, "oAlerting", None, Stat::Count(alerting));
        set(m, "oMemberUsers", None, Stat::Count(members));
        set(m, "oActiveUsers", None, Stat::Count(members));
        set(m, "oOnQueueUsers", Some("IDLE"), Stat::Count(idle));
        set(
            m,
            "oOnQueueUsers",
            Some("INTERACTING"),
            Stat::Count(interacting),
        );
        set(m, "oOnQueueUsers", Some("NOT_RESPONDING"), Stat::Count(0));
        set(m, "oUserRoutingStatuses", Some("IDLE"), Stat::Count(idle));
        set(
            m,
            "oUserRoutingStatuses",
            Some("INTERACTING"),
            Stat::Count(interacting),
        );
        set(
            m,
            "oUserPresences",
            Some(on_queue_presence),
            Stat::Count(members),
        );
        set(
            m,
            "oServiceLevel",
            None,
            Stat::Ratio {
                numerator: num,
                denominator: den,
            },
        );
    }

    /// The queue's current statistics as the observations query answers
    /// them: a queue that had no event yet is idle (every count 0 but its
    /// members), and from now on that is its state, so that the query and
    /// the deltas that follow agree. Its first event is still full.
    pub fn current(&mut self, members: u64, on_queue_presence: &str) -> &BTreeMap<MetricKey, Stat> {
        if self.metrics.is_empty() {
            self.set_all(members, on_queue_presence, [0, 0, 0], (0, 0));
        }
        &self.metrics
    }

    /// Sets the waiting count (the generator's `observation_conversations`);
    /// returns the stat to send.
    pub fn force_waiting(&mut self, n: u64) -> Stat {
        self.metrics.insert(("oWaiting", None), Stat::Count(n));
        Stat::Count(n)
    }

    /// The queue's current statistics, in the shape of an event's metrics.
    pub fn view(&self) -> Vec<Value> {
        self.metrics
            .iter()
            .map(|((metric, qualifier), stat)| metric_json(metric, qualifier.as_deref(), *stat))
            .collect()
    }
}

pub(crate) fn metric_json(metric: &str, qualifier: Option<&str>, stat: Stat) -> Value {
    let mut v = json!({"metric": metric, "stats": stat.json()});
    if let Some(q) = qualifier {
        v["qualifier"] = json!(q);
    }
    v
}

/// Statistics of every queue that had an observation event. Bounded by the
/// directory (at most `directory::MAX_ENTRIES` queues ever exist) plus the
/// ids given to `/sim/generate` `topics`, which [`QueueObservations::get`]
/// caps.
#[derive(Debug, Default)]
pub(crate) struct QueueObservations {
    queues: HashMap<String, QueueStats>,
}

/// Most queues tracked; beyond it the statistics of an arbitrary queue are
/// forgotten (its next event is full again, which a consumer applies the
/// same way).
const MAX_QUEUES: usize = 200_000;

impl QueueObservations {
    pub fn get(&mut self, queue_id: &str) -> &mut QueueStats {
        if !self.queues.contains_key(queue_id) && self.queues.len() >= MAX_QUEUES {
            if let Some(k) = self.queues.keys().next().cloned() {
                self.queues.remove(&k);
            }
        }
        self.queues.entry(queue_id.to_owned()).or_default()
    }

    /// `{queueId: [metric…]}` for the queues asked for (all when `None`).
    pub fn view(&self, queue_id: Option<&str>) -> serde_json::Map<String, Value> {
        self.queues
            .iter()
            .filter(|(id, _)| queue_id.map_or(true, |q| q == id.as_str()))
            .map(|(id, s)| (id.clone(), Value::from(s.view())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn deltas_rebuild_the_state_and_are_never_empty() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut stats = QueueStats::default();
        let mut rebuilt: BTreeMap<MetricKey, Stat> = BTreeMap::new();
        let first = stats.step(5, "p", &mut rng);
        assert_eq!(first.changed.len(), 12, "the first event is full");
        rebuilt.extend(first.changed);
        for _ in 0..500 {
            let delta = stats.step(5, "p", &mut rng);
            assert!(!delta.changed.is_empty());
            assert!(delta.changed.len() < 12);
            rebuilt.extend(delta.changed);
            assert_eq!(rebuilt, stats.metrics);
        }
    }
}
