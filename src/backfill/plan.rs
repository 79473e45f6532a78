//! What a gap's backfill asks for: the conversation families its topics
//! carry, and the queries (steps) that find every conversation active in
//! the gap. Pure: the actor (`mod.rs`) runs the steps.
//!
//! The synchronous details query finds conversations by their *start*
//! (field reference §6), so a step's interval reaches back
//! `lookback_secs` before the gap, and the results are kept only when the
//! conversation was active within the gap and its margins. Long ranges are
//! cut into intervals of [`STEP_INTERVAL_MS`]: the asynchronous jobs API
//! would take a whole range at once, but it reads a data lake that lags
//! behind by hours, so it cannot serve the recent gaps a live bridge has
//! to repair; chunked synchronous queries can, page by page, each page's
//! progress kept.

use std::collections::HashSet;

use serde_json::Value;

use super::config::BackfillConfig;
use crate::gap::GapRecord;

/// Longest interval of one step.
pub const STEP_INTERVAL_MS: u64 = 3_600_000;
/// Most queue and user predicates in one step.
pub const MAX_PREDICATES: usize = 100;

/// One query: an interval of starts and the queues and users it names
/// (none: every conversation, kept only when its id was subscribed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub start_ms: u64,
    pub end_ms: u64,
    pub queue_ids: Vec<String>,
    pub user_ids: Vec<String>,
}

/// A gap's backfill.
#[derive(Debug, Clone)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Conversations active within these bounds (ms) are kept.
    pub keep_from_ms: u64,
    pub keep_to_ms: u64,
    /// Conversation ids of detail-event topics (kept from the unfiltered
    /// steps).
    pub conversation_ids: HashSet<String>,
}

/// The families of conversation topics in a gap's topic list.
#[derive(Debug, Default)]
struct Families {
    queues: Vec<String>,
    users: Vec<String>,
    conversations: HashSet<String>,
}

fn families(topics: &[String]) -> Families {
    let mut f = Families::default();
    for t in topics {
        if let Some(id) = t
            .strip_prefix("v2.routing.queues.")
            .and_then(|r| r.strip_suffix(".conversations"))
        {
            f.queues.push(id.to_owned());
        } else if let Some(rest) = t.strip_prefix("v2.users.") {
            // `v2.users.<id>.conversations`, or combined
            // `v2.users.<id>?presence&conversations`.
            if let Some(id) = rest.strip_suffix(".conversations") {
                f.users.push(id.to_owned());
            } else if let Some((id, subs)) = rest.split_once('?') {
                if subs.split('&').any(|s| s == "conversations") {
                    f.users.push(id.to_owned());
                }
            }
        } else if let Some(rest) = t.strip_prefix("v2.detail.events.conversation.") {
            if let Some((id, _)) = rest.split_once('.') {
                f.conversations.insert(id.to_owned());
            }
        }
    }
    f.queues.sort();
    f.queues.dedup();
    f.users.sort();
    f.users.dedup();
    f
}

impl Families {
    fn is_empty(&self) -> bool {
        self.queues.is_empty() && self.users.is_empty() && self.conversations.is_empty()
    }
}

/// Whether a gap with these topics has conversations to backfill.
pub fn carries_conversations(topics: &[String]) -> bool {
    !families(topics).is_empty()
}

/// The backfill of `gap`, whose topic list is `topics`, or `None` when
/// they carry no conversation family.
pub fn plan(gap: &GapRecord, topics: &[String], config: &BackfillConfig) -> Option<Plan> {
    let f = families(topics);
    if f.is_empty() {
        return None;
    }
    let margin = config.margin_secs * 1000;
    let keep_from_ms = gap.start_ms.saturating_sub(margin);
    let keep_to_ms = gap.end_ms + margin;
    let from = keep_from_ms.saturating_sub(config.lookback_secs * 1000);
    let mut filters: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    let ids: Vec<(bool, &String)> = f
        .queues
        .iter()
        .map(|q| (true, q))
        .chain(f.users.iter().map(|u| (false, u)))
        .collect();
    for chunk in ids.chunks(MAX_PREDICATES) {
        let queues = chunk
            .iter()
            .filter(|(q, _)| *q)
            .map(|(_, id)| (*id).clone());
        let users = chunk
            .iter()
            .filter(|(q, _)| !*q)
            .map(|(_, id)| (*id).clone());
        filters.push((queues.collect(), users.collect()));
    }
    if !f.conversations.is_empty() {
        filters.push((Vec::new(), Vec::new()));
    }
    let mut steps = Vec::new();
    let mut start = from;
    while start < keep_to_ms {
        let end = (start + STEP_INTERVAL_MS).min(keep_to_ms);
        for (queue_ids, user_ids) in &filters {
            steps.push(Step {
                start_ms: start,
                end_ms: end,
                queue_ids: queue_ids.clone(),
                user_ids: user_ids.clone(),
            });
        }
        start = end;
    }
    Some(Plan {
        steps,
        keep_from_ms,
        keep_to_ms,
        conversation_ids: f.conversations,
    })
}

impl Plan {
    /// Whether a conversation a step found belongs to this backfill:
    /// active within the gap and its margins, and, from an unfiltered
    /// step, one of the subscribed conversations.
    pub fn keeps(&self, step: &Step, conversation: &Value) -> bool {
        let time = |field: &str| {
            conversation
                .get(field)
                .and_then(Value::as_str)
                .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
                .map(|t| {
                    t.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64)
                })
        };
        let Some(start) = time("conversationStart") else {
            return false;
        };
        let active = start <= self.keep_to_ms
            && time("conversationEnd").map_or(true, |end| end >= self.keep_from_ms);
        let wanted = !(step.queue_ids.is_empty() && step.user_ids.is_empty())
            || conversation
                .get("conversationId")
                .and_then(Value::as_str)
                .is_some_and(|id| self.conversation_ids.contains(id));
        active && wanted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gap(topics: &[&str], start_ms: u64, end_ms: u64) -> GapRecord {
        GapRecord {
            connection: 0,
            start: crate::rfc3339_ms(start_ms),
            end: crate::rfc3339_ms(end_ms),
            start_ms,
            end_ms,
            seconds: (end_ms - start_ms) as f64 / 1000.0,
            reason: "test".into(),
            open: false,
            topic_count: topics.len() as u32,
            topics_id: String::new(),
            topics: Some(topics.iter().map(|t| (*t).to_owned()).collect()),
            backfill: None,
        }
    }

    const H: u64 = 3_600_000;

    #[test]
    fn only_conversation_families_are_backfilled() {
        let cfg = BackfillConfig::default();
        let g = gap(
            &["v2.analytics.queues.q1.observations"],
            10 * H,
            10 * H + 5_000,
        );
        assert!(!carries_conversations(g.topics.as_deref().unwrap()));
        assert!(plan(&g, g.topics.as_deref().unwrap(), &cfg).is_none());
        let g = gap(
            &[
                "v2.routing.queues.q1.conversations",
                "v2.analytics.queues.q1.observations",
                "v2.users.u1?presence&conversations",
                "v2.users.u2.presence",
                "v2.detail.events.conversation.c1.customer.start",
            ],
            10 * H,
            10 * H + 5_000,
        );
        assert!(carries_conversations(g.topics.as_deref().unwrap()));
        let p = plan(&g, g.topics.as_deref().unwrap(), &cfg).unwrap();
        // One hour back plus the gap: two intervals, each filtered by
        // q1 and u1, and unfiltered for c1.
        assert_eq!(p.steps.len(), 4, "{:?}", p.steps);
        assert_eq!(p.steps[0].queue_ids, vec!["q1"]);
        assert_eq!(p.steps[0].user_ids, vec!["u1"]);
        assert!(p.steps[1].queue_ids.is_empty() && p.steps[1].user_ids.is_empty());
        assert_eq!(p.steps[0].start_ms, 10 * H - 60_000 - H);
        assert_eq!(p.steps.last().unwrap().end_ms, 10 * H + 5_000 + 60_000);
    }

    #[test]
    fn kept_are_the_conversations_active_in_the_gap() {
        let cfg = BackfillConfig::default();
        let g = gap(
            &["v2.routing.queues.q1.conversations"],
            10 * H,
            10 * H + 10_000,
        );
        let p = plan(&g, g.topics.as_deref().unwrap(), &cfg).unwrap();
        let step = &p.steps[0];
        let at = |ms: u64| {
            humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
            )
            .to_string()
        };
        let conv = |start: u64, end: Option<u64>| {
            let mut c = json!({"conversationId": "c", "conversationStart": at(start)});
            if let Some(e) = end {
                c["conversationEnd"] = json!(at(e));
            }
            c
        };
        assert!(
            p.keeps(step, &conv(10 * H - 30 * 60_000, None)),
            "live through the gap"
        );
        assert!(
            p.keeps(step, &conv(10 * H + 5_000, Some(10 * H + 6_000))),
            "inside"
        );
        assert!(
            !p.keeps(step, &conv(10 * H - 30 * 60_000, Some(10 * H - 2 * 60_000))),
            "ended before"
        );
        assert!(
            !p.keeps(step, &conv(10 * H + 2 * 60_000, None)),
            "started after"
        );
    }
}
