//! How one buffered event becomes one Kafka record: value = the
//! notification text exactly as received; key = the entity id from the
//! Genesys topic name, so one entity's events stay in order on one
//! partition; headers `genesys-topic`, `genesys-correlation-id` (when
//! present), `genesys-received-at-ms`, and `gkb-kind` on the records the
//! bridge made (snapshots, backfill). The producer and the dead-letter
//! replay both build records here, so a replayed event is the same record;
//! and a refused record's delivery report is read back into the buffered
//! event here, so it is dead-lettered without reading the buffer again.

use rdkafka::message::{Header, Headers, Message, OwnedHeaders};

use crate::buffer::{Kind, Record};
use crate::genesys::topic;

pub const HEADER_TOPIC: &str = "genesys-topic";
pub const HEADER_CORRELATION_ID: &str = "genesys-correlation-id";
pub const HEADER_RECEIVED_AT: &str = "genesys-received-at-ms";
/// On records the bridge made: `snapshot` or `backfill` (absent on
/// notifications, whose records are as they always were).
pub const HEADER_KIND: &str = "gkb-kind";

/// On every record: the event's id ([`Record::event_id`], 16 hex digits),
/// by which the members of a cluster recognise an event in Kafka.
pub const HEADER_EVENT_ID: &str = "gkb-id";

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
    headers = headers.insert(Header {
        key: HEADER_RECEIVED_AT,
        value: Some(received_at.as_bytes()),
    });
    let id = format!("{:016x}", record.event_id());
    headers = headers.insert(Header {
        key: HEADER_EVENT_ID,
        value: Some(id.as_bytes()),
    });
    if record.kind != Kind::Notification {
        headers = headers.insert(Header {
            key: HEADER_KIND,
            value: Some(record.kind.as_str().as_bytes()),
        });
    }
    headers
}

/// The buffered event a Kafka record was built from (by [`headers`]),
/// read back from a delivery report: its payload and headers, with the
/// sequence and receive time the sender kept. `None` if the record lacks
/// the `genesys-topic` header, which every record the bridge sends has.
pub fn from_message(seq: u64, received_at_ms: u64, message: &impl Message) -> Option<Record> {
    let headers = message.headers()?;
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    Some(Record {
        seq,
        received_at_ms,
        topic_name: header(HEADER_TOPIC)?,
        correlation_id: header(HEADER_CORRELATION_ID),
        payload: message.payload().unwrap_or_default().to_vec(),
        kind: header(HEADER_KIND)
            .and_then(|k| Kind::parse(&k))
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use rdkafka::message::OwnedMessage;
    use rdkafka::Timestamp;

    use super::*;

    fn sent(record: &Record, headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            Some(record.payload.clone()),
            Some(key(record).as_bytes().to_vec()),
            "kafka-topic".into(),
            Timestamp::NotAvailable,
            0,
            -1,
            headers,
        )
    }

    #[test]
    fn a_sent_record_reads_back_as_the_buffered_event() {
        for (correlation_id, kind) in [
            (Some("c-1".to_owned()), Kind::Notification),
            (None, Kind::Notification),
            (None, Kind::Snapshot),
            (None, Kind::Backfill),
        ] {
            let record = Record {
                seq: 42,
                received_at_ms: 1_700_000_000_123,
                topic_name: "v2.users.00000000-0000-4000-8000-000000000001.presence".into(),
                correlation_id,
                payload: br#"{"eventBody":{"x":"\u00e9"}}"#.to_vec(),
                kind,
            };
            let message = sent(&record, Some(headers(&record)));
            assert_eq!(
                from_message(record.seq, record.received_at_ms, &message),
                Some(record)
            );
        }
    }

    #[test]
    fn a_record_without_the_bridges_headers_is_not_an_event() {
        let record = Record {
            seq: 1,
            received_at_ms: 1,
            topic_name: "v2.users.x.presence".into(),
            correlation_id: None,
            payload: b"{}".to_vec(),
            kind: Kind::Notification,
        };
        assert_eq!(from_message(1, 1, &sent(&record, None)), None);
        let foreign = OwnedHeaders::new().insert(Header {
            key: "other",
            value: Some("v"),
        });
        assert_eq!(from_message(1, 1, &sent(&record, Some(foreign))), None);
    }
}
