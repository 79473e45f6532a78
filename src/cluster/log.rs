//! What the coordination topic says, folded record by record in offset
//! order: the epoch, its leader, whether it was released, the members
//! seen. Every member folds the same log the same way, so they agree on
//! who leads without talking to each other: the one partition's total
//! order is the only arbiter. No clock is read here; the coordinator
//! (`coordinator.rs`) adds time (leases) on top.
//!
//! The rule: a claim of epoch `e + 1` is valid only if the current epoch
//! is `e` and the last record of epoch `e` in the log is at the offset
//! the claim names (`after`). So a claim made while the leader was still
//! writing is void (its heartbeat came between), and of two members
//! claiming at once only the first in the log leads.

use std::collections::BTreeMap;

use super::message::{Envelope, Message};

/// The leader of the current epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub member: String,
    pub incarnation: String,
    /// Offset of its claim; its wall clock then, for operators.
    pub since_offset: i64,
    pub since_ms: u64,
}

/// A member as last seen in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub incarnation: String,
    pub offset: i64,
    pub at_ms: u64,
    pub role: String,
    pub ready: bool,
    pub behind: u64,
}

/// What one record changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A claim won: a new epoch and leader.
    NewLeader,
    /// The current leader's heartbeat (with its progress).
    Heartbeat,
    /// The current leader released its epoch (with its last progress).
    Released,
    /// The current leader is asked to hand over.
    HandoverAsked,
    /// Nothing that matters to leadership (a void claim, a stale
    /// heartbeat, a member's presence, an unknown record).
    Nothing,
}

/// The folded log.
#[derive(Debug, Clone, Default)]
pub struct Fold {
    /// The current epoch (0: nobody ever led).
    pub epoch: u64,
    pub leader: Option<Leader>,
    /// The current epoch was released: nobody leads until the next claim.
    pub released: bool,
    /// Offset of the last record of the current epoch (-1: none).
    pub last_epoch_offset: i64,
    /// Offset of the last record read.
    pub position: i64,
    pub members: BTreeMap<String, Seen>,
    /// Leaders that took over from a leader that had not released.
    pub takeovers: u64,
    /// Highest offset each output partition was known to hold, from every
    /// progress record read: where a takeover's check of Kafka starts.
    pub written: BTreeMap<(String, i32), i64>,
}

impl Fold {
    pub fn new() -> Fold {
        Fold {
            last_epoch_offset: -1,
            position: -1,
            ..Fold::default()
        }
    }

    /// Somebody leads now (claimed and not released).
    pub fn led(&self) -> bool {
        self.leader.is_some() && !self.released
    }

    /// Is this record from the current leader (same member and run)?
    pub fn is_leader(&self, from: &Envelope) -> bool {
        self.leader
            .as_ref()
            .is_some_and(|l| l.member == from.member && l.incarnation == from.incarnation)
    }

    /// Applies the record at `offset` (offsets only grow).
    pub fn apply(&mut self, offset: i64, message: &Message) -> Change {
        self.position = self.position.max(offset);
        let from = message.from();
        match message {
            Message::Claim { epoch, after, .. } => {
                if *epoch == self.epoch + 1 && *after == self.last_epoch_offset {
                    if self.leader.is_some() && !self.released {
                        self.takeovers += 1;
                    }
                    self.epoch = *epoch;
                    self.leader = Some(Leader {
                        member: from.member.clone(),
                        incarnation: from.incarnation.clone(),
                        since_offset: offset,
                        since_ms: from.at_ms,
                    });
                    self.released = false;
                    self.last_epoch_offset = offset;
                    self.seen(offset, from, "leader", true, 0);
                    Change::NewLeader
                } else {
                    Change::Nothing
                }
            }
            Message::Lead {
                epoch, progress, ..
            }
            | Message::Release {
                epoch, progress, ..
            } => {
                self.note_written(&progress.offsets);
                if *epoch != self.epoch || self.released || !self.is_leader(from) {
                    return Change::Nothing;
                }
                self.last_epoch_offset = offset;
                self.seen(offset, from, "leader", true, 0);
                if matches!(message, Message::Release { .. }) {
                    self.released = true;
                    Change::Released
                } else {
                    Change::Heartbeat
                }
            }
            Message::Member {
                role,
                ready,
                behind,
                ..
            } => {
                self.seen(offset, from, role, *ready, *behind);
                Change::Nothing
            }
            Message::Handover { epoch, .. } => {
                if *epoch == self.epoch && self.led() {
                    Change::HandoverAsked
                } else {
                    Change::Nothing
                }
            }
        }
    }

    fn note_written(&mut self, offsets: &[(String, i32, i64)]) {
        for (topic, partition, offset) in offsets {
            let kept = self
                .written
                .entry((topic.clone(), *partition))
                .or_insert(*offset);
            *kept = (*kept).max(*offset);
        }
    }

    fn seen(&mut self, offset: i64, from: &Envelope, role: &str, ready: bool, behind: u64) {
        self.members.insert(
            from.member.clone(),
            Seen {
                incarnation: from.incarnation.clone(),
                offset,
                at_ms: from.at_ms,
                role: role.to_owned(),
                ready,
                behind,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::message::Progress;
    use proptest::prelude::*;

    fn env(member: &str) -> Envelope {
        Envelope {
            member: member.into(),
            incarnation: format!("{member}-1"),
            at_ms: 0,
        }
    }

    fn claim(member: &str, epoch: u64, after: i64) -> Message {
        Message::Claim {
            from: env(member),
            epoch,
            after,
        }
    }

    fn lead(member: &str, epoch: u64) -> Message {
        Message::Lead {
            from: env(member),
            epoch,
            progress: Progress::default(),
        }
    }

    #[test]
    fn the_first_claim_leads_and_a_simultaneous_one_is_void() {
        let mut f = Fold::new();
        assert_eq!(f.apply(0, &claim("a", 1, -1)), Change::NewLeader);
        assert_eq!(f.apply(1, &claim("b", 1, -1)), Change::Nothing);
        assert_eq!(f.leader.as_ref().unwrap().member, "a");
        assert_eq!(f.apply(2, &lead("a", 1)), Change::Heartbeat);
        assert_eq!(f.apply(3, &lead("b", 1)), Change::Nothing, "not the leader");
        assert_eq!(f.last_epoch_offset, 2);
    }

    #[test]
    fn a_claim_overtaken_by_a_heartbeat_is_void() {
        let mut f = Fold::new();
        f.apply(0, &claim("a", 1, -1));
        f.apply(1, &lead("a", 1));
        // b saw offset 1 and claimed, but a's heartbeat at 2 came first.
        f.apply(2, &lead("a", 1));
        assert_eq!(f.apply(3, &claim("b", 2, 1)), Change::Nothing);
        assert_eq!(f.apply(4, &claim("b", 2, 2)), Change::NewLeader);
        assert_eq!(f.takeovers, 1);
        assert_eq!(f.apply(5, &lead("a", 1)), Change::Nothing, "stale epoch");
    }

    #[test]
    fn a_release_ends_the_epoch() {
        let mut f = Fold::new();
        f.apply(0, &claim("a", 1, -1));
        let release = Message::Release {
            from: env("a"),
            epoch: 1,
            progress: Progress {
                nonce: 1,
                ids: vec![],
                offsets: vec![("t".into(), 2, 40)],
            },
        };
        assert_eq!(f.apply(1, &release), Change::Released);
        assert!(!f.led());
        assert_eq!(f.written[&("t".to_owned(), 2)], 40);
        assert_eq!(f.apply(2, &claim("b", 2, 1)), Change::NewLeader);
        assert_eq!(f.takeovers, 0, "a planned handover is not a takeover");
    }

    proptest! {
        /// Any interleaving of claims, heartbeats and releases by three
        /// members: epochs only grow by one, each has one leader, and a
        /// fold of the same log always agrees (every member decides alike).
        #[test]
        fn one_leader_per_epoch(ops in proptest::collection::vec((0usize..3, 0u8..3, 0u64..4, -1i64..30), 1..60)) {
            let names = ["a", "b", "c"];
            let mut log = Vec::new();
            let mut f = Fold::new();
            let mut leaders: BTreeMap<u64, String> = BTreeMap::new();
            for (offset, (who, what, de, after)) in ops.into_iter().enumerate() {
                let member = names[who];
                let message = match what {
                    0 => claim(member, f.epoch + de.min(1), if de == 0 { after } else { f.last_epoch_offset }),
                    1 => lead(member, f.epoch),
                    _ => Message::Release { from: env(member), epoch: f.epoch, progress: Progress::default() },
                };
                let before = f.epoch;
                if f.apply(offset as i64, &message) == Change::NewLeader {
                    prop_assert_eq!(f.epoch, before + 1);
                    prop_assert!(leaders.insert(f.epoch, member.to_owned()).is_none());
                }
                log.push(message);
            }
            let mut again = Fold::new();
            for (offset, m) in log.iter().enumerate() {
                again.apply(offset as i64, m);
            }
            prop_assert_eq!(again.epoch, f.epoch);
            prop_assert_eq!(again.leader, f.leader);
        }
    }
}
