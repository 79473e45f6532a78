//! The records of the coordination topic: JSON, one object per Kafka
//! record, keyed by the member that wrote it. Operators can read them with
//! any consumer; `at_ms` (the writer's wall clock) is for them only, the
//! members never compare clocks.
//!
//! ```text
//! {"type":"claim","member":"b","incarnation":"…","epoch":8,"after":1041,"at_ms":…}
//! {"type":"lead","member":"b","incarnation":"…","epoch":8,"nonce":3,"ids":["9f…"],"offsets":[["topic",0,1200]],"at_ms":…}
//! {"type":"release","member":"b",…same as lead…}
//! {"type":"member","member":"a","incarnation":"…","role":"standby","ready":true,"behind":12,"at_ms":…}
//! {"type":"handover","member":"ops","epoch":8,"at_ms":…}
//! ```

use serde::{Deserialize, Serialize};

/// Fields every record carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The member's configured name.
    pub member: String,
    /// This run of the member (random per process start): tells a
    /// restarted member's records from its previous run's.
    #[serde(default)]
    pub incarnation: String,
    /// The writer's wall clock, for people reading the topic.
    #[serde(default)]
    pub at_ms: u64,
}

/// The leader's progress: what Kafka acknowledged since its previous
/// record. Ids are [`crate::buffer::event_id`]s in hex.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Counts the leader's heartbeats in its epoch: the leader renews its
    /// lease when it reads its own record back.
    pub nonce: u64,
    #[serde(default)]
    pub ids: Vec<String>,
    /// `(Kafka topic, partition, highest offset written)`.
    #[serde(default)]
    pub offsets: Vec<(String, i32, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// "I lead `epoch`, if the last record of the epoch before is at
    /// offset `after`" (-1: there was none). The first valid claim in the
    /// log wins; the others are void.
    Claim {
        #[serde(flatten)]
        from: Envelope,
        epoch: u64,
        after: i64,
    },
    /// The leader's heartbeat and progress.
    Lead {
        #[serde(flatten)]
        from: Envelope,
        epoch: u64,
        #[serde(flatten)]
        progress: Progress,
    },
    /// The leader's last progress: it stopped forwarding here, and the
    /// epoch is over. The next claim may come at once.
    Release {
        #[serde(flatten)]
        from: Envelope,
        epoch: u64,
        #[serde(flatten)]
        progress: Progress,
    },
    /// A member says it is there (standbys, every few heartbeats).
    Member {
        #[serde(flatten)]
        from: Envelope,
        role: String,
        ready: bool,
        /// Events it holds that the leader's progress has not covered.
        behind: u64,
    },
    /// Asks the leader of `epoch` to hand over (`cluster handover`).
    Handover {
        #[serde(flatten)]
        from: Envelope,
        epoch: u64,
    },
}

impl Message {
    pub fn from(&self) -> &Envelope {
        match self {
            Message::Claim { from, .. }
            | Message::Lead { from, .. }
            | Message::Release { from, .. }
            | Message::Member { from, .. }
            | Message::Handover { from, .. } => from,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a coordination record serialises")
    }

    /// A record of the topic; `None` for one this build does not know (a
    /// newer member's, or not ours): skipped, never fatal.
    pub fn decode(bytes: &[u8]) -> Option<Message> {
        serde_json::from_slice(bytes).ok()
    }
}

/// An event id as written in progress records.
pub fn id_hex(id: u64) -> String {
    format!("{id:016x}")
}

/// An id read back; `None` if it is not one.
pub fn parse_id(hex: &str) -> Option<u64> {
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(member: &str) -> Envelope {
        Envelope {
            member: member.into(),
            incarnation: "i1".into(),
            at_ms: 5,
        }
    }

    #[test]
    fn records_round_trip_and_read_as_documented() {
        let lead = Message::Lead {
            from: from("b"),
            epoch: 8,
            progress: Progress {
                nonce: 3,
                ids: vec![id_hex(0x9f)],
                offsets: vec![("t".into(), 0, 1200)],
            },
        };
        let text = String::from_utf8(lead.encode()).unwrap();
        assert!(text.starts_with(r#"{"type":"lead","member":"b""#), "{text}");
        assert!(text.contains(r#""ids":["000000000000009f"]"#), "{text}");
        assert_eq!(Message::decode(text.as_bytes()), Some(lead));
        let claim = Message::Claim {
            from: from("a"),
            epoch: 1,
            after: -1,
        };
        assert_eq!(Message::decode(&claim.encode()), Some(claim));
    }

    #[test]
    fn unknown_records_are_skipped() {
        assert_eq!(Message::decode(b"not json"), None);
        assert_eq!(Message::decode(br#"{"type":"vote","member":"x"}"#), None);
    }

    #[test]
    fn ids_are_sixteen_hex_digits() {
        assert_eq!(parse_id(&id_hex(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_id("12"), None);
        assert_eq!(parse_id("zzzzzzzzzzzzzzzz"), None);
    }
}
