//! `[topics]`: which notification topics to subscribe, and how they are
//! spread over channels.
//!
//! Genesys has no wildcards: every topic names one queue, user or
//! conversation. Templates with `{id}` are expanded over the org's queues
//! or users at start-up, and the resulting list is cut into groups of at
//! most [`MAX_TOPICS_PER_CHANNEL`], one channel (and one connection actor)
//! each.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// The service refuses more than this many topics on one channel (HTTP 400).
pub const MAX_TOPICS_PER_CHANNEL: usize = 1_000;
/// The service allows this many channels per OAuth client; the 21st evicts one.
pub const MAX_CHANNELS: usize = 20;

/// The topics to subscribe.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Topic names subscribed as written, e.g.
    /// `v2.detail.events.conversation.<id>.customer.start`.
    #[serde(default)]
    pub names: Vec<String>,
    /// Templates expanded once per routing queue of the org, `{id}` standing
    /// for the queue id, e.g. `v2.analytics.queues.{id}.observations`.
    #[serde(default)]
    pub per_queue: Vec<String>,
    /// Templates expanded once per user of the org, e.g.
    /// `v2.users.{id}.presence`.
    #[serde(default)]
    pub per_user: Vec<String>,
    /// Subscribe the permitted topics even when some are refused (refused
    /// ones are logged and shown on /readyz). Off: one refused topic stops
    /// the subscription, as the service itself does.
    #[serde(default)]
    pub ignore_errors: bool,
}

impl TopicsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.names.is_empty() && self.per_queue.is_empty() && self.per_user.is_empty() {
            return Err(ConfigError::invalid(
                "topics",
                "no topics: set at least one of topics.names, topics.per_queue, topics.per_user",
            ));
        }
        for (i, name) in self.names.iter().enumerate() {
            check_topic(&format!("topics.names[{i}]"), name)?;
        }
        for (key, templates) in [
            ("topics.per_queue", &self.per_queue),
            ("topics.per_user", &self.per_user),
        ] {
            for (i, template) in templates.iter().enumerate() {
                let key = format!("{key}[{i}]");
                if !template.contains("{id}") {
                    return Err(ConfigError::invalid(key, "a template must contain {id}"));
                }
                check_topic(&key, &template.replace("{id}", "x"))?;
            }
        }
        Ok(())
    }

    /// Whether the org's queues (or users) must be listed to expand templates.
    pub fn needs_queue_list(&self) -> bool {
        !self.per_queue.is_empty()
    }

    pub fn needs_user_list(&self) -> bool {
        !self.per_user.is_empty()
    }

    /// Every topic to subscribe, without duplicates, in a stable order.
    pub fn expand(&self, queue_ids: &[String], user_ids: &[String]) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let templated = |templates: &'_ [String], ids: &'_ [String]| {
            templates
                .iter()
                .flat_map(|t| ids.iter().map(move |id| t.replace("{id}", id)))
                .collect::<Vec<_>>()
        };
        self.names
            .iter()
            .cloned()
            .chain(templated(&self.per_queue, queue_ids))
            .chain(templated(&self.per_user, user_ids))
            .filter(|t| seen.insert(t.clone()))
            .collect()
    }
}

/// Cuts a topic list into per-channel groups.
pub fn per_channel(topics: &[String]) -> Vec<Vec<String>> {
    topics
        .chunks(MAX_TOPICS_PER_CHANNEL)
        .map(<[String]>::to_vec)
        .collect()
}

fn check_topic(key: &str, name: &str) -> Result<(), ConfigError> {
    if !name.starts_with("v2.") {
        return Err(ConfigError::invalid(
            key,
            format!("{name:?} is not a notification topic (they start with \"v2.\")"),
        ));
    }
    if name.contains(|c: char| c.is_whitespace() || c == '*') || name.split('.').any(str::is_empty)
    {
        return Err(ConfigError::invalid(
            key,
            format!("{name:?} is malformed (no spaces, wildcards or empty segments; the service has no wildcards)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("id{i}")).collect()
    }

    #[test]
    fn expands_templates_and_drops_duplicates() {
        let cfg = TopicsConfig {
            names: vec!["v2.users.id0.presence".into()],
            per_queue: vec!["v2.analytics.queues.{id}.observations".into()],
            per_user: vec!["v2.users.{id}.presence".into()],
            ignore_errors: false,
        };
        let topics = cfg.expand(&ids(3), &ids(2));
        assert_eq!(
            topics,
            [
                "v2.users.id0.presence",
                "v2.analytics.queues.id0.observations",
                "v2.analytics.queues.id1.observations",
                "v2.analytics.queues.id2.observations",
                "v2.users.id1.presence",
            ]
        );
    }

    #[test]
    fn groups_never_exceed_the_channel_limit() {
        let topics = ids(2_345);
        let groups = per_channel(&topics);
        assert_eq!(
            groups.iter().map(Vec::len).collect::<Vec<_>>(),
            [1000, 1000, 345]
        );
        assert!(per_channel(&[]).is_empty());
    }

    #[test]
    fn rejects_bad_topics_naming_the_key() {
        let mut cfg = TopicsConfig::default();
        assert_eq!(cfg.validate().unwrap_err().key(), Some("topics"));
        cfg.names = vec!["v2.users.ok.presence".into(), "v2.users.*.presence".into()];
        assert_eq!(cfg.validate().unwrap_err().key(), Some("topics.names[1]"));
        cfg.names.pop();
        cfg.per_queue = vec!["v2.analytics.queues.observations".into()];
        assert_eq!(
            cfg.validate().unwrap_err().key(),
            Some("topics.per_queue[0]")
        );
    }
}
