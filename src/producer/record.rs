//! How one buffered event becomes one Kafka record: value = the
//! notification text exactly as received; key = the entity id from the
//! Genesys topic name, so one entity's events stay in order on one
//! partition; headers `genesys-topic`, `genesys-correlation-id` (when
//! present) and `genesys-received-at-ms`. The producer and the dead-letter
//! replay both build records here, so a replayed event is the same record.

use rdkafka::message::{Header, OwnedHeaders};

use crate::buffer::Record;
use crate::genesys::topic;

pub const HEADER_TOPIC: &str = "genesys-topic";
pub const HEADER_CORRELATION_ID: &str = "genesys-correlation-id";
pub const HEADER_RECEIVED_AT: &str = "genesys-received-at-ms";

/// The Kafka key of an event: the entity id in its topic name.
pub fn key(record: &Record) -> &str {
    topic::parse(&record.topic_name).entity_id
}

/// The Kafka headers of an event.
pub fn headers(record: &Record) -> OwnedHeaders {
    let received_at = record.received_at_ms.to_string();
    let mut headers = OwnedHeaders::new_with_capacity(3).insert(Header {
        key: HEADER_TOPIC,
        value: Some(record.topic_name.as_bytes()),
    });
    if let Some(corr) = &record.correlation_id {
        headers = headers.insert(Header {
            key: HEADER_CORRELATION_ID,
            value: Some(corr.as_bytes()),
        });
    }
    headers.insert(Header {
        key: HEADER_RECEIVED_AT,
        value: Some(received_at.as_bytes()),
    })
}
