//! Notification topic names: parsing the families of the field reference
//! (§7) and the permission check a subscription goes through.
//!
//! Ids are required in every topic (there are no wildcards). Queue ids must
//! name queues of the directory, user ids users of the directory;
//! conversation ids may be any UUID.

use crate::directory::Directory;

/// Kinds of per-conversation detail events
/// (`v2.detail.events.conversation.{id}.<kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DetailKind {
    CustomerStart,
    CustomerEnd,
    UserStart,
    UserEnd,
    AcdStart,
    AcdEnd,
    Acw,
    Attributes,
}

impl DetailKind {
    /// The topic name's tail for this kind (`customer.start`, `acw`, …).
    pub fn suffix(self) -> &'static str {
        match self {
            DetailKind::CustomerStart => "customer.start",
            DetailKind::CustomerEnd => "customer.end",
            DetailKind::UserStart => "user.start",
            DetailKind::UserEnd => "user.end",
            DetailKind::AcdStart => "acd.start",
            DetailKind::AcdEnd => "acd.end",
            DetailKind::Acw => "acw",
            DetailKind::Attributes => "attributes",
        }
    }

    /// `v2.detail.events.conversation.{id}.<kind>`
    pub fn topic(self, conversation_id: &str) -> String {
        format!(
            "v2.detail.events.conversation.{conversation_id}.{}",
            self.suffix()
        )
    }
}

/// A parsed topic name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Topic {
    /// `v2.analytics.queues.{queueId}.observations`
    QueueObservations { queue_id: String },
    /// `v2.analytics.users.{userId}.aggregates`
    UserAggregates { user_id: String },
    /// `v2.routing.queues.{queueId}.conversations`
    QueueConversations { queue_id: String },
    /// `v2.users.{userId}.presence`
    UserPresence { user_id: String },
    /// `v2.users.{userId}.routingStatus`
    UserRoutingStatus { user_id: String },
    /// `v2.users.{userId}.conversations`
    UserConversations { user_id: String },
    /// `v2.detail.events.conversation.{conversationId}.<kind>`
    ConversationDetail {
        conversation_id: String,
        kind: DetailKind,
    },
    /// `v2.detail.events.agent.{userId}.state`
    AgentState { user_id: String },
}

/// Why a topic was refused, as reported in a `Rejected` subscription entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub reason: String,
    pub missing_permissions: Vec<String>,
}

impl Rejection {
    fn reason(reason: String) -> Self {
        Rejection {
            reason,
            missing_permissions: Vec::new(),
        }
    }
}

/// Genesys ids are lowercase hyphenated UUIDs; nothing else is accepted.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
        && uuid::Uuid::parse_str(s).is_ok()
}

/// Longest combined topic (`v2.users.<id>?presence&routingStatus`) accepted.
pub(crate) const MAX_COMBINED_TOPIC_LEN: usize = 200;

/// Expands a combined topic, `<prefix>.<id>?a&b`, into `<prefix>.<id>.a`
/// and `<prefix>.<id>.b` (the names its events arrive under). Other names,
/// and combined ones too long or malformed, come back unchanged (and then
/// fail [`Topic::parse`] with a reason).
pub(crate) fn expand_combined(name: &str) -> Vec<String> {
    let Some((base, subs)) = name.split_once('?') else {
        return vec![name.to_owned()];
    };
    if name.len() > MAX_COMBINED_TOPIC_LEN || subs.split('&').any(str::is_empty) {
        return vec![name.to_owned()];
    }
    let mut seen = std::collections::HashSet::new();
    subs.split('&')
        .filter(|s| seen.insert(*s))
        .map(|sub| format!("{base}.{sub}"))
        .collect()
}

impl Topic {
    /// Parses a topic name by its family; `Err` says what is wrong with it.
    pub fn parse(name: &str) -> Result<Topic, String> {
        if name.contains('?') {
            return Err(format!(
                "Combined topic {name} is malformed or longer than {MAX_COMBINED_TOPIC_LEN} characters"
            ));
        }
        let parts: Vec<&str> = name.split('.').collect();
        let topic = match parts.as_slice() {
            ["v2", "analytics", "queues", id, "observations"] => Topic::QueueObservations {
                queue_id: id.to_string(),
            },
            ["v2", "analytics", "users", id, "aggregates"] => Topic::UserAggregates {
                user_id: id.to_string(),
            },
            ["v2", "routing", "queues", id, "conversations"] => Topic::QueueConversations {
                queue_id: id.to_string(),
            },
            ["v2", "users", id, "presence"] => Topic::UserPresence {
                user_id: id.to_string(),
            },
            ["v2", "users", id, "routingStatus"] => Topic::UserRoutingStatus {
                user_id: id.to_string(),
            },
            ["v2", "users", id, "conversations"] => Topic::UserConversations {
                user_id: id.to_string(),
            },
            ["v2", "detail", "events", "agent", id, "state"] => Topic::AgentState {
                user_id: id.to_string(),
            },
            ["v2", "detail", "events", "conversation", id, rest @ ..] => {
                let kind = match rest {
                    ["customer", "start"] => DetailKind::CustomerStart,
                    ["customer", "end"] => DetailKind::CustomerEnd,
                    ["user", "start"] => DetailKind::UserStart,
                    ["user", "end"] => DetailKind::UserEnd,
                    ["acd", "start"] => DetailKind::AcdStart,
                    ["acd", "end"] => DetailKind::AcdEnd,
                    ["acw"] => DetailKind::Acw,
                    ["attributes"] => DetailKind::Attributes,
                    _ => return Err(format!("Unknown conversation detail event in topic {name}")),
                };
                Topic::ConversationDetail {
                    conversation_id: id.to_string(),
                    kind,
                }
            }
            _ => return Err(format!("Topic {name} is not a valid notification topic")),
        };
        let id = topic.id();
        if !is_uuid(id) {
            return Err(format!(
                "Topic {name} does not contain a valid id ({id:?} is not a UUID)"
            ));
        }
        Ok(topic)
    }

    /// The id the topic is about (queue, user or conversation).
    pub fn id(&self) -> &str {
        match self {
            Topic::QueueObservations { queue_id } | Topic::QueueConversations { queue_id } => {
                queue_id
            }
            Topic::UserAggregates { user_id }
            | Topic::UserPresence { user_id }
            | Topic::UserRoutingStatus { user_id }
            | Topic::UserConversations { user_id }
            | Topic::AgentState { user_id } => user_id,
            Topic::ConversationDetail {
                conversation_id, ..
            } => conversation_id,
        }
    }

    /// The permission a client needs for this topic (reported in
    /// `missingPermissions` when the simulator is told to deny it).
    pub fn permission(&self) -> &'static str {
        match self {
            Topic::QueueObservations { .. } => "analytics:queueObservation:view",
            Topic::UserAggregates { .. } => "analytics:userAggregate:view",
            Topic::QueueConversations { .. } => "routing:queue:view",
            Topic::UserPresence { .. } | Topic::UserRoutingStatus { .. } => "directory:user:view",
            Topic::UserConversations { .. } => "conversation:communication:view",
            Topic::ConversationDetail { .. } => "analytics:conversationDetail:view",
            Topic::AgentState { .. } => "analytics:agentState:view",
        }
    }

    /// Full subscription check: family and id syntax, existence of queues and
    /// users, and the permissions denied by fault injection (`denied`: topic
    /// name prefixes).
    pub fn check(name: &str, directory: &Directory, denied: &[String]) -> Result<Topic, Rejection> {
        let topic = Topic::parse(name).map_err(Rejection::reason)?;
        match &topic {
            Topic::QueueObservations { queue_id } | Topic::QueueConversations { queue_id } => {
                if directory.queue(queue_id).is_none() {
                    return Err(Rejection::reason(format!("Queue {queue_id} not found")));
                }
            }
            Topic::ConversationDetail { .. } => {}
            other => {
                let user_id = other.id();
                if directory.user(user_id).is_none() {
                    return Err(Rejection::reason(format!("User {user_id} not found")));
                }
            }
        }
        if denied
            .iter()
            .any(|prefix| name.starts_with(prefix.as_str()))
        {
            return Err(Rejection {
                reason: format!("Missing permission {} for topic {name}", topic.permission()),
                missing_permissions: vec![topic.permission().to_owned()],
            });
        }
        Ok(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3b2f6a52-8c3e-4d0e-9a55-2b7c1e0d4f11";

    #[test]
    fn parses_every_family() {
        let cases = [
            (
                format!("v2.analytics.queues.{ID}.observations"),
                Topic::QueueObservations {
                    queue_id: ID.into(),
                },
            ),
            (
                format!("v2.analytics.users.{ID}.aggregates"),
                Topic::UserAggregates { user_id: ID.into() },
            ),
            (
                format!("v2.routing.queues.{ID}.conversations"),
                Topic::QueueConversations {
                    queue_id: ID.into(),
                },
            ),
            (
                format!("v2.users.{ID}.presence"),
                Topic::UserPresence { user_id: ID.into() },
            ),
            (
                format!("v2.users.{ID}.routingStatus"),
                Topic::UserRoutingStatus { user_id: ID.into() },
            ),
            (
                format!("v2.users.{ID}.conversations"),
                Topic::UserConversations { user_id: ID.into() },
            ),
            (
                format!("v2.detail.events.agent.{ID}.state"),
                Topic::AgentState { user_id: ID.into() },
            ),
            (
                format!("v2.detail.events.conversation.{ID}.acd.end"),
                Topic::ConversationDetail {
                    conversation_id: ID.into(),
                    kind: DetailKind::AcdEnd,
                },
            ),
            (
                format!("v2.detail.events.conversation.{ID}.attributes"),
                Topic::ConversationDetail {
                    conversation_id: ID.into(),
                    kind: DetailKind::Attributes,
                },
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(Topic::parse(&name).unwrap(), expected, "{name}");
        }
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in [
            "".to_string(),
            "v2.analytics.queues.*.observations".to_string(),
            "v2.analytics.queues.observations".to_string(),
            "v2.analytics.queues.not-a-uuid.observations".to_string(),
            format!("v2.analytics.queues.{}.observations", ID.replace('-', "")),
            format!("v2.analytics.queues.{ID}.observations.extra"),
            format!("v2.users.{ID}.routingstatus"),
            format!("v2.detail.events.conversation.{ID}.user.middle"),
            "v2.system.socket_closing".to_string(),
            "/api/v2/analytics/realtime/events".to_string(),
        ] {
            assert!(Topic::parse(&bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn check_requires_existing_queues_and_users() {
        let dir = Directory::new(2, 2);
        let q = &dir.queues[0].id;
        let u = &dir.users[1].id;
        assert!(Topic::check(&format!("v2.analytics.queues.{q}.observations"), &dir, &[]).is_ok());
        assert!(Topic::check(&format!("v2.users.{u}.presence"), &dir, &[]).is_ok());
        assert!(Topic::check(
            &format!("v2.detail.events.conversation.{ID}.acw"),
            &dir,
            &[]
        )
        .is_ok());
        let missing =
            Topic::check(&format!("v2.analytics.queues.{ID}.observations"), &dir, &[]).unwrap_err();
        assert!(missing.reason.contains("not found"));
        assert!(Topic::check(&format!("v2.detail.events.agent.{ID}.state"), &dir, &[]).is_err());

        let denied = Topic::check(
            &format!("v2.analytics.queues.{q}.observations"),
            &dir,
            &["v2.analytics.queues".to_string()],
        )
        .unwrap_err();
        assert_eq!(
            denied.missing_permissions,
            vec!["analytics:queueObservation:view"]
        );
    }
}
