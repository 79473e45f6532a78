//! One buffered event and its on-disk encoding (format version 1, see
//! `migrations/v1.md`).
//!
//! ```text
//! [u8 format=1][u64 received_at_ms LE][u16 topic_len LE][topic]
//! [u16 correlation_len LE, 0xFFFF = none][correlation id][payload…]
//! ```
//! The payload is the notification exactly as received; it runs to the end.

/// On-disk format this build writes. Older formats are migrated at open
/// (see `migrations/`); newer ones are refused, never rewritten.
pub const FORMAT_VERSION: u32 = 3;

/// Format version of records written by this build.
pub const RECORD_FORMAT: u8 = 1;
const NO_CORRELATION: u16 = u16::MAX;

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
}

/// Why stored bytes are not a record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record format {0} is not known to this build")]
    UnknownFormat(u8),
    #[error("record is truncated")]
    Truncated,
    #[error("record text is not UTF-8")]
    NotUtf8,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let topic = self.topic_name.as_bytes();
        let corr = self.correlation_id.as_deref().map(str::as_bytes);
        let mut out =
            Vec::with_capacity(13 + topic.len() + corr.map_or(0, <[u8]>::len) + self.payload.len());
        out.push(RECORD_FORMAT);
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
        let format = take(&mut rest, 1)?[0];
        if format != RECORD_FORMAT {
            return Err(DecodeError::UnknownFormat(format));
        }
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
        ) {
            let r = Record { seq, received_at_ms: at, topic_name: topic, correlation_id: corr, payload };
            prop_assert_eq!(Record::decode(seq, &r.encode()), Ok(r));
        }

        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Record::decode(0, &bytes);
        }
    }

    #[test]
    fn truncation_and_unknown_formats_are_errors() {
        let r = Record {
            seq: 1,
            received_at_ms: 2,
            topic_name: "t".into(),
            correlation_id: Some("c".into()),
            payload: b"{}".to_vec(),
        };
        let bytes = r.encode();
        assert_eq!(Record::decode(1, &bytes[..5]), Err(DecodeError::Truncated));
        let mut future = bytes.clone();
        future[0] = 9;
        assert_eq!(
            Record::decode(1, &future),
            Err(DecodeError::UnknownFormat(9))
        );
    }
}
