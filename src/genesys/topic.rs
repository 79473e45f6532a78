//! Genesys notification topic names: which entity an event is about.
//!
//! Kafka keys are the entity id (queue, user or conversation) so that all
//! events of one entity land on one partition, in order. Topic names carry
//! that id as one of their dot-separated segments, e.g.
//! `v2.analytics.queues.<queueId>.observations` or
//! `v2.detail.events.conversation.<conversationId>.customer.start`.

/// The collection words that precede an entity id in a topic name.
const COLLECTIONS: &[&str] = &[
    "queues",
    "users",
    "conversation",
    "conversations",
    "agent",
    "groups",
    "flows",
    "campaigns",
    "externalcontacts",
    "workforcemanagement",
];

/// What a notification topic name tells about its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicName<'a> {
    /// The whole topic name as received.
    pub name: &'a str,
    /// The id of the entity the event is about; the whole name if none is found.
    pub entity_id: &'a str,
}

/// Parses a notification topic name.
///
/// The entity id is the first segment shaped like a UUID (every Genesys id
/// is one); failing that, the segment after a known collection word; failing
/// that, the whole name, so that events of unknown families still share a
/// key and stay in order.
pub fn parse(name: &str) -> TopicName<'_> {
    let segments: Vec<&str> = name.split('.').collect();
    let entity_id = segments
        .iter()
        .copied()
        .find(|s| is_uuid(s))
        .or_else(|| {
            segments
                .windows(2)
                .find(|w| COLLECTIONS.contains(&w[0]) && !w[1].is_empty())
                .map(|w| w[1])
        })
        .unwrap_or(name);
    TopicName { name, entity_id }
}

/// Whether the topic belongs to the protocol (heartbeats, pongs) rather than data.
pub fn is_channel_metadata(name: &str) -> bool {
    name == "channel.metadata"
}

/// Whether the topic is one the service sends unasked (`v2.system.*`).
pub fn is_system(name: &str) -> bool {
    name.starts_with("v2.system.")
}

/// `8-4-4-4-12` hex digits, the shape of every Genesys id.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "3b9f1c52-6a3e-4c1d-9a51-0e3c5d7a2b11";

    #[test]
    fn entity_id_of_every_documented_family() {
        let cases = [
            format!("v2.analytics.queues.{Q}.observations"),
            format!("v2.analytics.users.{Q}.aggregates"),
            format!("v2.routing.queues.{Q}.conversations"),
            format!("v2.users.{Q}.presence"),
            format!("v2.users.{Q}.routingStatus"),
            format!("v2.users.{Q}.conversations"),
            format!("v2.detail.events.conversation.{Q}.customer.start"),
            format!("v2.detail.events.conversation.{Q}.acd.end"),
            format!("v2.detail.events.conversation.{Q}.acw"),
            format!("v2.detail.events.agent.{Q}.state"),
        ];
        for name in &cases {
            assert_eq!(parse(name).entity_id, Q, "{name}");
        }
    }

    #[test]
    fn non_uuid_ids_fall_back_to_the_collection_word() {
        assert_eq!(parse("v2.users.agent-7.presence").entity_id, "agent-7");
        assert_eq!(
            parse("v2.routing.queues.sales.conversations").entity_id,
            "sales"
        );
    }

    #[test]
    fn unknown_shapes_key_by_the_whole_name() {
        assert_eq!(parse("v2.something.else").entity_id, "v2.something.else");
        assert_eq!(parse("").entity_id, "");
    }

    #[test]
    fn uuid_shape_is_strict() {
        assert!(is_uuid(Q));
        assert!(!is_uuid("3b9f1c52-6a3e-4c1d-9a51-0e3c5d7a2b1"));
        assert!(!is_uuid("3b9f1c52-6a3e-4c1d-9a51-0e3c5d7a2b1z"));
        assert!(!is_uuid("3b9f1c526a3e4c1d9a510e3c5d7a2b11"));
    }

    #[test]
    fn protocol_topics_are_recognised() {
        assert!(is_channel_metadata("channel.metadata"));
        assert!(is_system("v2.system.socket_closing"));
        assert!(!is_system(&format!("v2.users.{Q}.presence")));
    }
}
