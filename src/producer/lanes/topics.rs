//! The lanes' topics as a whole: what the metadata probe says about each
//! (partitions, or why it cannot be used), and the per-topic figures the
//! forwarding loop reports to telemetry.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Lane, Lanes};
use crate::telemetry::TopicReport;

impl Lanes {
    /// Takes the metadata probe's view of the routed topics.
    pub fn metadata(&mut self, view: BTreeMap<String, Result<i32, String>>) {
        for topic in &mut self.topics {
            match view.get(&topic.name) {
                Some(Ok(partitions)) if *partitions > 0 => {
                    let partitions = *partitions;
                    if topic.lanes.len() < partitions as usize {
                        topic.lanes.resize_with(partitions as usize, Lane::default);
                    }
                    topic.partitions = Some(partitions);
                    if topic.missing.take().is_some() {
                        // It exists now: what waited for it goes at once,
                        // and /readyz turns green even if no event of it
                        // comes (the missing reason was its last error).
                        topic.blocked = None;
                        topic.last_error = None;
                        self.telemetry.kafka.topic_recovered(&topic.name);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(reason)) => {
                    if topic.missing.is_none() {
                        self.telemetry
                            .kafka
                            .topic_blocked(&topic.name, reason, Duration::ZERO);
                    }
                    topic.missing = Some(reason.clone());
                    if topic.partitions.is_none() {
                        topic.last_error = Some(reason.clone());
                    }
                }
                // Not in this probe (it failed as a whole): keep what we knew.
                None => {}
            }
        }
    }

    /// Each topic's figures since the last report, for telemetry.
    pub fn report(&mut self) -> Vec<TopicReport> {
        let now_ms = crate::now_ms();
        self.topics
            .iter_mut()
            .map(|topic| {
                let oldest_in_flight = topic.in_flight.values().min().copied();
                let oldest_held = std::iter::once(topic.hold)
                    .chain(topic.lanes.iter().map(|l| l.hold))
                    .flatten()
                    .map(|h| h.received_at_ms)
                    .min();
                let oldest = [oldest_in_flight, oldest_held].into_iter().flatten().min();
                TopicReport {
                    topic: topic.name.clone(),
                    backlog: topic.outstanding,
                    in_flight: topic.in_flight.len() as u64,
                    oldest_unacknowledged_age_ms: oldest.map(|at| now_ms.saturating_sub(at)),
                    blocked: topic
                        .blocked
                        .as_ref()
                        .map(|b| b.reason.clone())
                        .or_else(|| topic.missing.clone())
                        .or_else(|| topic.last_error.clone()),
                    acknowledged: std::mem::take(&mut topic.acknowledged),
                    forwarded: 0,
                    forwarded_per_sec: 0.0,
                }
            })
            .collect()
    }
}
