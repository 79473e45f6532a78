//! `[topics]`: which notification topics to subscribe, and how they are
//! spread over channels.
//!
//! Genesys has no wildcards: every topic names one queue, user or
//! conversation. Templates with `{id}` are expanded over the org's queues
//! or users at start-up and again every `refresh_interval_secs` (and on
//! SIGHUP); the planner (`crate::planner`) spreads the resulting list over
//! channels of at most [`MAX_TOPICS_PER_CHANNEL`], one connection actor
//! each, and applies later differences without reconnecting.

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;

/// The service refuses more than this many topics on one channel (HTTP 400).
pub const MAX_TOPICS_PER_CHANNEL: usize = 1_000;
/// The service allows this many channels per OAuth client; the 21st evicts one.
pub const MAX_CHANNELS: usize = 20;
/// The most topics one OAuth client can subscribe.
pub const MAX_TOPICS: usize = MAX_TOPICS_PER_CHANNEL * MAX_CHANNELS;
/// The service takes combined topics (`v2.users.<id>?presence&routingStatus`)
/// up to about this many characters; longer combinations are split.
pub const MAX_COMBINED_TOPIC_LEN: usize = 200;
/// The prefix of the user topics the service can combine.
const USER_TOPIC_PREFIX: &str = "v2.users.{id}.";
/// Genesys ids are UUIDs: the length used to size combined topics offline.
const ID_LEN: usize = 36;

/// The topics to subscribe.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Seconds between listings of the org's queues and users: queues and
    /// users created since are subscribed, deleted ones unsubscribed, on
    /// the open channels (no reconnect). SIGHUP lists at once. 0: only on
    /// SIGHUP. Each listing costs one request per 100 queues or users out
    /// of the API budget (`genesys.api_requests_per_minute`).
    #[serde(default = "default_refresh_interval_secs")]
    pub refresh_interval_secs: u64,
    /// Subscribe the `per_user` templates of the form `v2.users.{id}.<x>`
    /// as one combined topic per user, e.g.
    /// `v2.users.<id>?presence&routingStatus&conversations` (split when
    /// longer than 200 characters). The service documents the combined
    /// form for user topics and delivers each event under its expanded
    /// name (`v2.users.<id>.presence`), so routes and keys are unchanged,
    /// while three user templates then cost one topic per user instead of
    /// three (a third of the channels and of the subscription calls). Off
    /// by default: a refused combined topic loses all its sub-topics for
    /// that user.
    #[serde(default = "default_combine_user_topics")]
    pub combine_user_topics: bool,
}

fn default_refresh_interval_secs() -> u64 {
    300
}

fn default_combine_user_topics() -> bool {
    false
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            names: Vec::new(),
            per_queue: Vec::new(),
            per_user: Vec::new(),
            ignore_errors: false,
            refresh_interval_secs: default_refresh_interval_secs(),
            combine_user_topics: default_combine_user_topics(),
        }
    }
}

/// The topic plan needs more channels than one OAuth client may hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "[topics] needs {channels} channels for {topics} topics ({detail}); Genesys allows {MAX_CHANNELS} channels of \
     {MAX_TOPICS_PER_CHANNEL} topics ({MAX_TOPICS} topics) per OAuth client: drop templates, turn on \
     topics.combine_user_topics, or split the topics over several bridges with their own OAuth clients"
)]
pub struct TooManyChannels {
    pub channels: usize,
    pub topics: usize,
    /// Where the topics come from, e.g. "12 names, 2 per-queue templates × 10,500 queues".
    pub detail: String,
}

impl From<TooManyChannels> for ConfigError {
    fn from(e: TooManyChannels) -> Self {
        ConfigError::invalid("topics", e.to_string())
    }
}

/// Channels needed for `topics` topics.
pub fn channels_needed(topics: usize) -> usize {
    topics.div_ceil(MAX_TOPICS_PER_CHANNEL)
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
        if self.refresh_interval_secs > 86_400 {
            return Err(ConfigError::invalid(
                "topics.refresh_interval_secs",
                "must be at most 86400 seconds (a day); 0 lists only on SIGHUP",
            ));
        }
        self.check_offline()?;
        Ok(())
    }

    /// Whether the org's queues (or users) must be listed to expand templates.
    pub fn needs_queue_list(&self) -> bool {
        !self.per_queue.is_empty()
    }

    pub fn needs_user_list(&self) -> bool {
        !self.per_user.is_empty()
    }

    /// Every topic to subscribe, without duplicates, in a stable order:
    /// names, then per-queue templates (template by template), then each
    /// user's topics.
    pub fn expand(&self, queue_ids: &[String], user_ids: &[String]) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let per_queue = self
            .per_queue
            .iter()
            .flat_map(|t| queue_ids.iter().map(move |id| t.replace("{id}", id)));
        let per_user = user_ids.iter().flat_map(|id| self.user_topics(id));
        self.names
            .iter()
            .cloned()
            .chain(per_queue)
            .chain(per_user)
            .filter(|t| seen.insert(t.clone()))
            .collect()
    }

    /// One user's topics: the `per_user` templates, those of the form
    /// `v2.users.{id}.<x>` combined when `combine_user_topics` is on and
    /// there are at least two of them.
    pub fn user_topics(&self, id: &str) -> Vec<String> {
        let (combinable, separate): (Vec<&String>, Vec<&String>) = self
            .per_user
            .iter()
            .partition(|t| self.combine_user_topics && combinable_suffix(t).is_some());
        let mut topics = Vec::new();
        if combinable.len() >= 2 {
            let head = format!("v2.users.{id}?");
            let mut current = String::new();
            for suffix in combinable.iter().filter_map(|t| combinable_suffix(t)) {
                let grown = head.len() + current.len() + 1 + suffix.len();
                if !current.is_empty() && grown > MAX_COMBINED_TOPIC_LEN {
                    topics.push(format!("{head}{current}"));
                    current.clear();
                }
                if !current.is_empty() {
                    current.push('&');
                }
                current.push_str(suffix);
            }
            topics.push(format!("{head}{current}"));
        } else {
            topics.extend(combinable.iter().map(|t| t.replace("{id}", id)));
        }
        topics.extend(separate.iter().map(|t| t.replace("{id}", id)));
        topics
    }

    /// Topics each listed user costs (computed with a UUID-long id).
    pub fn topics_per_user(&self) -> usize {
        self.user_topics(&"0".repeat(ID_LEN)).len()
    }

    /// Refuses an expanded plan of `topics` distinct topics (from `queues`
    /// queues and `users` users, named in the message) that needs more
    /// than [`MAX_CHANNELS`] channels.
    pub fn check_fits(
        &self,
        topics: usize,
        queues: usize,
        users: usize,
    ) -> Result<(), TooManyChannels> {
        let channels = channels_needed(topics);
        if channels <= MAX_CHANNELS {
            return Ok(());
        }
        Err(TooManyChannels {
            channels,
            topics,
            detail: self.describe(Some((queues, users))),
        })
    }

    /// What can be known offline (`check-config`): the fixed names alone
    /// must fit; the templates' share depends on the org.
    pub fn check_offline(&self) -> Result<OfflinePlan, TooManyChannels> {
        let names = self
            .names
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len();
        if channels_needed(names) > MAX_CHANNELS {
            return Err(TooManyChannels {
                channels: channels_needed(names),
                topics: names,
                detail: self.describe(None),
            });
        }
        Ok(OfflinePlan {
            names,
            per_queue: self.per_queue.len(),
            per_user: self.topics_per_user(),
            room: MAX_TOPICS - names,
        })
    }

    fn describe(&self, counts: Option<(usize, usize)>) -> String {
        let mut parts = vec![format!("{} in topics.names", self.names.len())];
        if !self.per_queue.is_empty() {
            parts.push(match counts {
                Some((queues, _)) => format!(
                    "{} topics.per_queue templates × {queues} queues",
                    self.per_queue.len()
                ),
                None => format!("{} topics.per_queue templates", self.per_queue.len()),
            });
        }
        if !self.per_user.is_empty() {
            parts.push(match counts {
                Some((_, users)) => format!(
                    "{} topics per user from topics.per_user × {users} users",
                    self.topics_per_user()
                ),
                None => format!(
                    "{} topics per user from topics.per_user",
                    self.topics_per_user()
                ),
            });
        }
        parts.join(", ")
    }
}

/// What `check-config` can say about a topic plan without the org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflinePlan {
    /// Distinct fixed names.
    pub names: usize,
    /// Topics each queue costs.
    pub per_queue: usize,
    /// Topics each user costs (after combining).
    pub per_user: usize,
    /// Topics left for the templates within [`MAX_TOPICS`].
    pub room: usize,
}

impl std::fmt::Display for OfflinePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} fixed topic names need {} of {MAX_CHANNELS} channels",
            self.names,
            channels_needed(self.names)
        )?;
        if self.per_queue == 0 && self.per_user == 0 {
            return Ok(());
        }
        write!(
            f,
            "; the templates ({} topics per queue, {} per user) are expanded over the org's queues and users \
             when the bridge starts, which check-config cannot list offline: {} topics are left for them",
            self.per_queue, self.per_user, self.room
        )?;
        match (self.per_queue, self.per_user) {
            (q, 0) => write!(f, " (up to {} queues)", self.room / q),
            (0, u) => write!(f, " (up to {} users)", self.room / u),
            (q, u) => write!(
                f,
                " (e.g. up to {} queues and {} users)",
                self.room / 2 / q,
                self.room / 2 / u
            ),
        }
    }
}

/// `<x>` of a template `v2.users.{id}.<x>` (one segment, not itself combined).
fn combinable_suffix(template: &str) -> Option<&str> {
    template
        .strip_prefix(USER_TOPIC_PREFIX)
        .filter(|x| !x.is_empty() && !x.contains(['.', '?', '&', '{']))
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
            ..TopicsConfig::default()
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

    fn user_templates(templates: &[&str]) -> TopicsConfig {
        TopicsConfig {
            per_user: templates.iter().map(|t| (*t).to_owned()).collect(),
            combine_user_topics: true,
            ..TopicsConfig::default()
        }
    }

    #[test]
    fn user_templates_are_combined_into_one_topic_per_user() {
        let cfg = user_templates(&[
            "v2.users.{id}.presence",
            "v2.users.{id}.routingStatus",
            "v2.analytics.users.{id}.aggregates",
            "v2.users.{id}.conversations",
        ]);
        assert_eq!(
            cfg.expand(&[], &ids(2)),
            [
                "v2.users.id0?presence&routingStatus&conversations",
                "v2.analytics.users.id0.aggregates",
                "v2.users.id1?presence&routingStatus&conversations",
                "v2.analytics.users.id1.aggregates",
            ]
        );
        assert_eq!(cfg.topics_per_user(), 2);
        let off = TopicsConfig {
            combine_user_topics: false,
            ..cfg.clone()
        };
        assert_eq!(off.expand(&[], &ids(1)).len(), 4);
        assert_eq!(off.topics_per_user(), 4);
        // One combinable template has nothing to combine with.
        let single = user_templates(&["v2.users.{id}.presence"]);
        assert_eq!(single.expand(&[], &ids(1)), ["v2.users.id0.presence"]);
    }

    #[test]
    fn combined_topics_stay_under_the_length_limit_and_cover_every_template() {
        let suffixes: Vec<String> = (0..20).map(|i| format!("subTopic{i:02}")).collect();
        let templates: Vec<String> = suffixes
            .iter()
            .map(|s| format!("v2.users.{{id}}.{s}"))
            .collect();
        let cfg = user_templates(&templates.iter().map(String::as_str).collect::<Vec<_>>());
        let id = "0b8a1c7e-6f2d-4a4e-9d1b-3c2b1a0f9e8d";
        let topics = cfg.user_topics(id);
        assert!(topics.len() >= 2, "{topics:?}");
        // Events arrive under the expanded names: exactly one per template,
        // which is what routes and keys see.
        let mut expanded = Vec::new();
        for topic in &topics {
            assert!(topic.len() <= MAX_COMBINED_TOPIC_LEN, "{topic}");
            let (head, subs) = topic.split_once('?').unwrap();
            assert_eq!(head, format!("v2.users.{id}"));
            expanded.extend(subs.split('&').map(|s| format!("{head}.{s}")));
        }
        let wanted: Vec<String> = templates.iter().map(|t| t.replace("{id}", id)).collect();
        assert_eq!(expanded, wanted);
    }

    #[test]
    fn routing_sees_the_expanded_names_of_combined_topics() {
        use crate::producer::routing::{Route, Router};
        let router = Router::new(
            &[Route {
                pattern: "v2.users.*.presence".into(),
                topic: "presence".into(),
            }],
            "other",
        )
        .unwrap();
        let cfg = user_templates(&["v2.users.{id}.presence", "v2.users.{id}.routingStatus"]);
        let combined = &cfg.user_topics("u1")[0];
        let (head, subs) = combined.split_once('?').unwrap();
        let routed: Vec<&str> = subs
            .split('&')
            .map(|s| router.route(&format!("{head}.{s}")))
            .collect();
        assert_eq!(routed, ["presence", "other"]);
        let expanded = format!("{head}.presence");
        let parsed = crate::genesys::topic::parse(&expanded);
        assert_eq!(parsed.entity_id, "u1");
    }

    #[test]
    fn names_alone_over_twenty_channels_are_refused_offline() {
        let mut cfg = TopicsConfig {
            names: (0..MAX_TOPICS + 1)
                .map(|i| format!("v2.detail.events.conversation.c{i}.acw"))
                .collect(),
            ..TopicsConfig::default()
        };
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.key(), Some("topics"));
        assert!(
            err.to_string()
                .contains("needs 21 channels for 20001 topics"),
            "{err}"
        );
        cfg.names.truncate(2_500);
        cfg.per_queue = vec!["v2.analytics.queues.{id}.observations".into()];
        let plan = cfg.check_offline().unwrap();
        assert_eq!(plan.room, 17_500);
        assert!(plan.to_string().contains("up to 17500 queues"), "{plan}");
        assert!(plan.to_string().contains("cannot list offline"), "{plan}");
    }

    #[test]
    fn expanded_plans_over_twenty_channels_name_the_counts() {
        let cfg = TopicsConfig {
            per_queue: vec![
                "v2.analytics.queues.{id}.observations".into(),
                "v2.routing.queues.{id}.conversations".into(),
            ],
            ..TopicsConfig::default()
        };
        cfg.check_fits(20_000, 10_000, 0).unwrap();
        let err = cfg.check_fits(20_002, 10_001, 0).unwrap_err();
        assert_eq!(err.channels, 21);
        let text = ConfigError::from(err).to_string();
        assert!(text.contains("config key `topics`"), "{text}");
        assert!(
            text.contains("2 topics.per_queue templates × 10001 queues"),
            "{text}"
        );
    }
}
