//! One buffered event and its on-disk encoding (see `migrations/v1.md`
//! and `migrations/v3.md`).
//!
//! ```text
//! format 1, a notification:
//! [u8 1][u64 received_at_ms LE][u16 topic_len LE][topic]
//! [u16 correlation_len LE, 0xFFFF = none][correlation id][payload…]
//! format 2, a record the bridge made (a snapshot, a backfill):
//! [u8 2][u8 kind][the rest as format 1]
//! ```
//! The payload is the notification exactly as received (or the record the
//! bridge made); it runs to the end. Notifications keep format 1, so a
//! buffer of notifications reads the same in builds before format 2.

/// On-disk format this build writes. Older formats are migrated at open
/// (see `migrations/`); newer ones are refused, never rewritten.
pub const FORMAT_VERSION: u32 = 3;

/// Format version of notification records.
pub const RECORD_FORMAT: u8 = 1;
/// Format version of records the bridge made (a kind byte follows).
pub const RECORD_FORMAT_KIND: u8 = 2;
const NO_CORRELATION: u16 = u16::MAX;

/// What a buffered record is: a notification as received, or a record
/// the bridge made to repair a gap (Kafka header `gkb-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// A frame received on a socket, byte for byte.
    #[default]
    Notification,
    /// A queue's current observations from the Analytics API, in the
    /// shape of an observation event carrying every metric.
    Snapshot,
    /// A conversation as the Analytics API gave it after a gap.
    Backfill,
}

impl Kind {
    /// The `gkb-kind` header's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Notification => "notification",
            Kind::Snapshot => "snapshot",
            Kind::Backfill => "backfill",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::Notification, Kind::Snapshot, Kind::Backfill]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    fn code(self) -> u8 {
        match self {
            Kind::Notification => 0,
            Kind::Snapshot => 1,
            Kind::Backfill => 2,
        }
    }

    fn from_code(code: u8) -> Option<Kind> {
        [Kind::Notification, Kind::Snapshot, Kind::Backfill]
            .into_iter()
            .find(|k| k.code() == code)
    }
}

/// A received notification, as buffered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the buffer: the order of receipt.
    pub seq: u64,
    /// Wall clock when the frame arrived, ms since the epoch.
    pub received_at_ms: u64,
    /// The Genesys topic name.
    pub topic_name: String,
    /// `metadata.CorrelationId`, when the event had one.
    pub correlation_id: Option<String>,
    /// The frame's text, byte for byte.
    pub payload: Vec<u8>,
    /// A notification, or a record the bridge made.
    pub kind: Kind,
}

/// [`Record::event_id`] of these bytes.
pub fn event_id(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Why stored bytes are not a record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record format {0} is not known to this build")]
    UnknownFormat(u8),
    #[error("record kind {0} is not known to this build")]
    UnknownKind(u8),
    #[error("record is truncated")]
    Truncated,
    #[error("record text is not UTF-8")]
    NotUtf8,
}

impl Record {
    /// The event's identity across processes and hosts: a 64-bit FNV-1a
    /// hash of the frame's bytes (for a record the bridge made, of the
    /// record). Two members of a cluster that received one notification
    /// on their own channels hold byte-identical frames, so they agree on
    /// it; a notification serialised differently gets two ids (a
    /// duplicate at a takeover, never a loss). Stable across builds and
    /// Rust versions, unlike `DefaultHasher`: members of a rolling
    /// upgrade compare ids made by different builds. Kafka header `gkb-id`.
    pub fn event_id(&self) -> u64 {
        event_id(&self.payload)
    }

    pub fn encode(&self) -> Vec<u8> {
        let topic = self.topic_name.as_bytes();
        let corr = self.correlation_id.as_deref().map(str::as_bytes);
        let mut out =
            Vec::with_capacity(14 + topic.len() + corr.map_or(0, <[u8]>::len) + self.payload.len());
        if self.kind == Kind::Notification {
            out.push(RECORD_FORMAT);
        } else {
            out.push(RECORD_FORMAT_KIND);
            out.push(self.kind.code());
        }
        out.extend_from_slice(&self.received_at_ms.to_le_bytes());
        // Topic names and correlation ids are short; the connection refuses
        // frames whose fields would not fit before they reach the buffer.
        out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        out.extend_from_slice(topic);
        match corr {
            Some(c) => {
                out.extend_from_slice(&(c.len() as u16).to_le_bytes());
                out.extend_from_slice(c);
            }
            None => out.extend_from_slice(&NO_CORRELATION.to_le_bytes()),
        }
        out.extend_from_slice(&self.payload);
        out
    }

    pub fn decode(seq: u64, bytes: &[u8]) -> Result<Record, DecodeError> {
        let mut rest = bytes;
        let kind = match take(&mut rest, 1)?[0] {
            RECORD_FORMAT => Kind::Notification,
            RECORD_FORMAT_KIND => {
                let code = take(&mut rest, 1)?[0];
                Kind::from_code(code).ok_or(DecodeError::UnknownKind(code))?
            }
            format => return Err(DecodeError::UnknownFormat(format)),
        };
        let received_at_ms = u64::from_le_bytes(take(&mut rest, 8)?.try_into().expect("8 bytes"));
        let topic_len = u16::from_le_bytes(take(&mut rest, 2)?.try_into().expect("2 bytes"));
        let topic_name = utf8(take(&mut rest, topic_len.into())?)?;
        let corr_len = u16::from_le_bytes(take(&mut rest, 2)?.try_into().expect("2 bytes"));
        let correlation_id = if corr_len == NO_CORRELATION {
            None
        } else {
            Some(utf8(take(&mut rest, corr_len.into())?)?)
        };
        Ok(Record {
            seq,
            received_at_ms,
            topic_name,
            correlation_id,
            payload: rest.to_vec(),
            kind,
        })
    }
}

/// Whether a field fits the u16 length of the encoding.
pub fn field_fits(field: &str) -> bool {
    field.len() < usize::from(NO_CORRELATION)
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if rest.len() < n {
        return Err(DecodeError::Truncated);
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn utf8(bytes: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(
            seq in any::<u64>(),
            at in any::<u64>(),
            topic in ".{0,200}",
            corr in proptest::option::of(".{0,80}"),
            payload in proptest::collection::vec(any::<u8>(), 0..2000),
            kind in 0u8..3,
        ) {
            let kind = Kind::from_code(kind).unwrap();
            let r = Record { seq, received_at_ms: at, topic_name: topic, correlation_id: corr, payload, kind };
            prop_assert_eq!(Record::decode(seq, &r.encode()), Ok(r));
        }

        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Record::decode(0, &bytes);
        }
    }

    #[test]
    fn event_ids_are_fnv1a_of_the_frame() {
        // FNV-1a's published test vectors: the id must not change between
        // builds, since members of a rolling upgrade compare them.
        assert_eq!(event_id(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(event_id(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(event_id(b"foobar"), 0x8594_4171_f739_67e8);
        assert_ne!(event_id(br#"{"a":1}"#), event_id(br#"{"a": 1}"#));
    }

    #[test]
    fn truncation_and_unknown_formats_are_errors() {
        let r = Record {
            seq: 1,
            received_at_ms: 2,
            topic_name: "t".into(),
            correlation_id: Some("c".into()),
            payload: b"{}".to_vec(),
            kind: Kind::Notification,
        };
        let bytes = r.encode();
        assert_eq!(bytes[0], RECORD_FORMAT, "notifications keep format 1");
        assert_eq!(Record::decode(1, &bytes[..5]), Err(DecodeError::Truncated));
        let mut future = bytes.clone();
        future[0] = 9;
        assert_eq!(
            Record::decode(1, &future),
            Err(DecodeError::UnknownFormat(9))
        );
        let snapshot = Record {
            kind: Kind::Snapshot,
            ..r
        };
        let bytes = snapshot.encode();
        assert_eq!(&bytes[..2], &[RECORD_FORMAT_KIND, 1]);
        assert_eq!(Record::decode(1, &bytes), Ok(snapshot));
        let mut unknown = bytes.clone();
        unknown[1] = 7;
        assert_eq!(
            Record::decode(1, &unknown),
            Err(DecodeError::UnknownKind(7))
        );
    }
}
