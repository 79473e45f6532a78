//! The notification envelope: the text frame every event and system
//! message travels in on a channel socket.

use serde_json::Value;
use uuid::Uuid;

/// `{"topicName","version":"2","eventBody":{…},"metadata":{"CorrelationId"}}`
///
/// Written by hand around `Value`'s `Display`: that code is compiled (and
/// optimized) inside serde_json, whereas a generic `serde_json::to_string`
/// would be instantiated, unoptimized, in this crate's dev builds; and the
/// field order stays the real one (`topicName` first).
pub(crate) fn envelope(topic_name: &str, body: &Value, correlation_id: &Uuid) -> String {
    let topic = Value::from(topic_name);
    format!(
        r#"{{"topicName":{topic},"version":"2","eventBody":{body},"metadata":{{"CorrelationId":"{correlation_id}"}}}}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_has_the_real_shape() {
        let id = Uuid::new_v4();
        let frame = envelope("v2.users.x.presence", &json!({"a": 1}), &id);
        let v: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["topicName"], "v2.users.x.presence");
        assert_eq!(v["version"], "2");
        assert_eq!(v["eventBody"]["a"], 1);
        assert_eq!(v["metadata"]["CorrelationId"], id.to_string());
        assert!(frame.starts_with(r#"{"topicName":"#));
    }
}
