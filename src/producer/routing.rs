//! Which Kafka topic an event goes to, chosen by its Genesys topic name.

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;

/// One routing rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Pattern on the Genesys topic name; `*` matches any run of characters.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Kafka topic for the events that match.
    pub topic: String,
}

/// Routes compiled for matching, with the default topic.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<(Vec<String>, String)>,
    default_topic: String,
}

impl Router {
    pub fn new(routes: &[Route], default_topic: &str) -> Result<Self, ConfigError> {
        check_kafka_topic("kafka.default_topic", default_topic)?;
        let mut compiled = Vec::with_capacity(routes.len());
        for (i, route) in routes.iter().enumerate() {
            if route.pattern.is_empty() {
                return Err(ConfigError::invalid(
                    format!("kafka.routes[{i}].match"),
                    "must not be empty",
                ));
            }
            check_kafka_topic(&format!("kafka.routes[{i}].topic"), &route.topic)?;
            let parts = route.pattern.split('*').map(str::to_owned).collect();
            compiled.push((parts, route.topic.clone()));
        }
        Ok(Router {
            routes: compiled,
            default_topic: default_topic.to_owned(),
        })
    }

    /// The Kafka topic for a Genesys topic name.
    pub fn route(&self, genesys_topic: &str) -> &str {
        self.routes
            .iter()
            .find(|(parts, _)| glob_match(parts, genesys_topic))
            .map_or(&self.default_topic, |(_, topic)| topic)
    }

    /// Every Kafka topic a route (or the default) names.
    pub fn topics(&self) -> Vec<String> {
        let mut all: Vec<String> = std::iter::once(self.default_topic.clone())
            .chain(self.routes.iter().map(|(_, t)| t.clone()))
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// Matches `text` against a pattern already split at its `*`s.
fn glob_match(parts: &[String], text: &str) -> bool {
    let (first, rest) = match parts.split_first() {
        Some(split) => split,
        None => return text.is_empty(),
    };
    let Some(mut remaining) = text.strip_prefix(first.as_str()) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part.as_str()) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.ends_with(last.as_str())
}

/// Kafka's own rule: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_kafka_topic(key: &str, topic: &str) -> Result<(), ConfigError> {
    let valid = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{topic:?} is not a valid Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(rules: &[(&str, &str)]) -> Router {
        let routes: Vec<Route> = rules
            .iter()
            .map(|(p, t)| Route {
                pattern: (*p).into(),
                topic: (*t).into(),
            })
            .collect();
        Router::new(&routes, "genesys.other").unwrap()
    }

    #[test]
    fn first_matching_rule_wins_and_default_catches_the_rest() {
        let r = router(&[
            ("v2.analytics.queues.*.observations", "obs"),
            ("v2.detail.events.conversation.*", "detail"),
            ("v2.*", "everything-v2"),
        ]);
        assert_eq!(r.route("v2.analytics.queues.q1.observations"), "obs");
        assert_eq!(
            r.route("v2.detail.events.conversation.c.customer.end"),
            "detail"
        );
        assert_eq!(r.route("v2.users.u.presence"), "everything-v2");
        assert_eq!(r.route("v3.x"), "genesys.other");
        assert_eq!(
            r.topics(),
            ["detail", "everything-v2", "genesys.other", "obs"]
        );
    }

    #[test]
    fn glob_edge_cases() {
        let m =
            |p: &str, t: &str| glob_match(&p.split('*').map(str::to_owned).collect::<Vec<_>>(), t);
        assert!(m("abc", "abc"));
        assert!(!m("abc", "abcd"));
        assert!(m("*", ""));
        assert!(m("a*", "a"));
        assert!(m("*c", "abc"));
        assert!(m("a*b*c", "a_b_b_c"));
        assert!(!m("a*b*c", "a_c"));
        assert!(!m("ab*ba", "aba"), "prefix and suffix must not overlap");
        assert!(m("v2.*.x", "v2.a.b.x"));
    }

    #[test]
    fn invalid_topic_names_name_their_key() {
        let bad = [Route {
            pattern: "v2.*".into(),
            topic: "has space".into(),
        }];
        let err = Router::new(&bad, "ok").unwrap_err();
        assert_eq!(err.key(), Some("kafka.routes[0].topic"));
        let err = Router::new(&[], "").unwrap_err();
        assert_eq!(err.key(), Some("kafka.default_topic"));
    }
}
