//! What arrives on a notification WebSocket, sorted into protocol and data.
//!
//! Every text frame holds one JSON object. Heartbeats, pongs and replies to
//! socket subscribe requests are protocol and never leave the bridge;
//! `v2.system.*` events steer the channel's life; everything else with a
//! `topicName` is a notification to forward, byte for byte.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::topic;

/// The text a client sends to ask for a pong.
pub const PING: &str = r#"{"message":"ping"}"#;

/// One received frame, classified.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// `channel.metadata` "WebSocket Heartbeat".
    Heartbeat,
    /// `channel.metadata` "pong", the answer to [`PING`].
    Pong,
    /// Any other `channel.metadata` message: protocol we do not act on.
    OtherMetadata,
    /// The reply to a subscribe request sent over the socket.
    SubscribeReply {
        result: String,
        message: Option<String>,
    },
    /// A `v2.system.*` event: the service telling us about the channel.
    System(SystemEvent),
    /// A notification to forward.
    Notification {
        topic_name: String,
        correlation_id: Option<String>,
    },
}

/// The `v2.system.*` events that change what the connection must do.
#[derive(Debug, PartialEq, Eq)]
pub enum SystemEvent {
    /// About a minute before a deliberate close: connect anew now.
    SocketClosing,
    /// The channel lost or changed its subscriptions
    /// (`no_longer_subscribed`, `subscription_changed`): replace it.
    ChannelLost {
        kind: String,
        reason: Option<String>,
    },
    /// `token_revoked`: the tokens behind the channel were revoked.
    TokenRevoked { reason: Option<String> },
    /// Any other system topic, kept for the log.
    Other {
        topic_name: String,
        kind: Option<String>,
    },
}

/// Why a frame could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MalformedFrame {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("a JSON object with neither topicName nor result")]
    Unrecognised,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "topicName", borrow)]
    topic_name: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "eventBody", borrow)]
    event_body: Option<&'a RawValue>,
    metadata: Option<Metadata>,
    result: Option<serde_json::Value>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    /// A string in every known event; anything else is kept as its JSON
    /// text rather than refusing the event.
    #[serde(rename = "CorrelationId")]
    correlation_id: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct MetadataBody {
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct SystemBody {
    #[serde(rename = "systemTopicType")]
    system_topic_type: Option<String>,
    reason: Option<String>,
}

/// Classifies one text frame.
pub fn classify(text: &str) -> Result<Inbound, MalformedFrame> {
    let envelope: Envelope<'_> =
        serde_json::from_str(text).map_err(|e| MalformedFrame::NotJson(e.to_string()))?;
    let Some(topic_name) = envelope.topic_name else {
        return match envelope.result {
            Some(result) => Ok(Inbound::SubscribeReply {
                result: match result {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                },
                message: envelope.message,
            }),
            None => Err(MalformedFrame::Unrecognised),
        };
    };
    if topic::is_channel_metadata(&topic_name) {
        let body: MetadataBody = body_as(envelope.event_body);
        return Ok(match body.message.as_deref() {
            Some("WebSocket Heartbeat") => Inbound::Heartbeat,
            Some("pong") => Inbound::Pong,
            _ => Inbound::OtherMetadata,
        });
    }
    if topic::is_system(&topic_name) {
        let body: SystemBody = body_as(envelope.event_body);
        let event = if topic_name == "v2.system.socket_closing" {
            SystemEvent::SocketClosing
        } else if let Some(kind @ ("no_longer_subscribed" | "subscription_changed")) =
            body.system_topic_type.as_deref()
        {
            SystemEvent::ChannelLost {
                kind: kind.to_owned(),
                reason: body.reason,
            }
        } else if body.system_topic_type.as_deref() == Some("token_revoked") {
            SystemEvent::TokenRevoked {
                reason: body.reason,
            }
        } else {
            SystemEvent::Other {
                topic_name: topic_name.into_owned(),
                kind: body.system_topic_type,
            }
        };
        return Ok(Inbound::System(event));
    }
    Ok(Inbound::Notification {
        topic_name: topic_name.into_owned(),
        correlation_id: envelope
            .metadata
            .and_then(|m| m.correlation_id)
            .and_then(|id| match id {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }),
    })
}

/// A body we only peek into: anything unexpected reads as empty.
fn body_as<T: for<'de> Deserialize<'de> + Default>(body: Option<&RawValue>) -> T {
    body.and_then(|b| serde_json::from_str(b.get()).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_and_pong_are_protocol() {
        assert_eq!(
            classify(
                r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#
            ),
            Ok(Inbound::Heartbeat)
        );
        assert_eq!(
            classify(r#"{"topicName":"channel.metadata","eventBody":{"message":"pong"}}"#),
            Ok(Inbound::Pong)
        );
        assert_eq!(
            classify(r#"{"topicName":"channel.metadata","eventBody":{"message":"hello"}}"#),
            Ok(Inbound::OtherMetadata)
        );
    }

    #[test]
    fn subscribe_replies_with_string_or_number_results() {
        assert_eq!(
            classify(r#"{"result":"200","status":"subscribed"}"#),
            Ok(Inbound::SubscribeReply {
                result: "200".into(),
                message: None
            })
        );
        assert_eq!(
            classify(r#"{"result":404,"message":"channel expired"}"#),
            Ok(Inbound::SubscribeReply {
                result: "404".into(),
                message: Some("channel expired".into())
            })
        );
    }

    #[test]
    fn notifications_carry_topic_and_correlation_id() {
        let frame = r#"{"topicName":"v2.users.x.presence","version":"2","eventBody":{"a":1},"metadata":{"CorrelationId":"c-1"}}"#;
        assert_eq!(
            classify(frame),
            Ok(Inbound::Notification {
                topic_name: "v2.users.x.presence".into(),
                correlation_id: Some("c-1".into())
            })
        );
        let escaped = r#"{"topicName":"v2.users.\u0078.presence","eventBody":{}}"#;
        assert_eq!(
            classify(escaped),
            Ok(Inbound::Notification {
                topic_name: "v2.users.x.presence".into(),
                correlation_id: None
            })
        );
    }

    #[test]
    fn odd_metadata_does_not_cost_the_event() {
        let frame =
            r#"{"topicName":"v2.users.x.presence","eventBody":{},"metadata":{"CorrelationId":42}}"#;
        assert_eq!(
            classify(frame),
            Ok(Inbound::Notification {
                topic_name: "v2.users.x.presence".into(),
                correlation_id: Some("42".into())
            })
        );
    }

    #[test]
    fn system_events() {
        assert_eq!(
            classify(
                r#"{"topicName":"v2.system.x","eventBody":{"systemTopicType":"token_revoked"}}"#
            ),
            Ok(Inbound::System(SystemEvent::TokenRevoked { reason: None }))
        );
        assert_eq!(
            classify(r#"{"topicName":"v2.system.socket_closing","eventBody":{"message":"bye"}}"#),
            Ok(Inbound::System(SystemEvent::SocketClosing))
        );
        assert_eq!(
            classify(
                r#"{"topicName":"v2.system.x","eventBody":{"systemTopicType":"no_longer_subscribed","reason":"another_channel_subscribed"}}"#
            ),
            Ok(Inbound::System(SystemEvent::ChannelLost {
                kind: "no_longer_subscribed".into(),
                reason: Some("another_channel_subscribed".into())
            }))
        );
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert!(matches!(
            classify("not json"),
            Err(MalformedFrame::NotJson(_))
        ));
        assert!(matches!(classify("[1,2]"), Err(MalformedFrame::NotJson(_))));
        assert_eq!(classify("{}"), Err(MalformedFrame::Unrecognised));
    }
}
