//! The one thing every component of a member asks about the cluster: may
//! I act as the leader now? The coordinator (`coordinator.rs`) writes it;
//! the forwarding thread, the connections' snapshot rounds and the
//! backfill actor read it; the forwarder hands back what Kafka
//! acknowledged, for the coordinator's progress records.
//!
//! A bridge without `[cluster]` holds [`Leadership::single`]: always the
//! leader, a lease that never ends, acknowledgements not kept. It imports
//! nothing of the bridge, so any component may depend on it.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A member's part, as the coordinator last decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives and buffers, forwards nothing, drops what the leader's
    /// progress covers.
    Standby,
    /// Its claim won; it is removing what Kafka already holds before it
    /// forwards.
    TakingOver,
    /// Forwards, while its lease lasts.
    Leader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standby => "standby",
            Role::TakingOver => "taking_over",
            Role::Leader => "leader",
        }
    }

    fn code(self) -> u8 {
        match self {
            Role::Standby => 0,
            Role::TakingOver => 1,
            Role::Leader => 2,
        }
    }

    fn from_code(code: u8) -> Role {
        match code {
            2 => Role::Leader,
            1 => Role::TakingOver,
            _ => Role::Standby,
        }
    }
}

/// What Kafka acknowledged since the coordinator last took it: the ids of
/// the events, and the highest offset written per partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Acked {
    pub ids: Vec<u64>,
    pub offsets: BTreeMap<(String, i32), i64>,
}

impl Acked {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.offsets.is_empty()
    }

    /// Adds `other` (newer) to this.
    pub fn extend(&mut self, other: Acked) {
        self.ids.extend(other.ids);
        for (partition, offset) in other.offsets {
            let kept = self.offsets.entry(partition).or_insert(offset);
            *kept = (*kept).max(offset);
        }
    }
}

/// Shared by the coordinator and the components that act only as leader.
#[derive(Debug)]
pub struct Leadership {
    clustered: bool,
    role: AtomicU8,
    epoch: AtomicU64,
    /// The lease's end, in nanoseconds after `base` (monotonic: a clock
    /// set back or forward on the host moves nothing).
    lease_until: AtomicU64,
    base: Instant,
    acked: Mutex<Acked>,
    /// The forwarding thread runs (set by the thread itself).
    forwarder: AtomicBool,
    /// Ids a new leader does not send: the old leader reported them, and
    /// this member's socket may deliver them after the takeover. Applies
    /// until `skip_until` (nanoseconds after `base`).
    skipping: AtomicBool,
    skip_until: AtomicU64,
    skip: Mutex<HashSet<u64>>,
}

impl Leadership {
    /// A bridge without `[cluster]`: always the leader.
    pub fn single() -> Arc<Leadership> {
        Self::new(false, Role::Leader, u64::MAX)
    }

    /// A cluster member: a standby until the coordinator says otherwise.
    pub fn clustered() -> Arc<Leadership> {
        Self::new(true, Role::Standby, 0)
    }

    fn new(clustered: bool, role: Role, lease_until: u64) -> Arc<Leadership> {
        Arc::new(Leadership {
            clustered,
            role: AtomicU8::new(role.code()),
            epoch: AtomicU64::new(0),
            lease_until: AtomicU64::new(lease_until),
            base: Instant::now(),
            acked: Mutex::default(),
            forwarder: AtomicBool::new(false),
            skipping: AtomicBool::new(false),
            skip_until: AtomicU64::new(0),
            skip: Mutex::default(),
        })
    }

    pub fn is_clustered(&self) -> bool {
        self.clustered
    }

    pub fn role(&self) -> Role {
        Role::from_code(self.role.load(Ordering::Acquire))
    }

    /// The leader: forwards (while [`may_send`](Self::may_send)), takes
    /// snapshots, runs backfills.
    pub fn is_leader(&self) -> bool {
        self.role() == Role::Leader
    }

    /// The epoch this member leads or last saw led.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The leader within its lease: may hand records to Kafka now. A
    /// leader whose lease ran out (Kafka did not take its heartbeat, or
    /// the process was paused) holds until the coordinator renews or
    /// ends it.
    pub fn may_send(&self) -> bool {
        self.is_leader() && self.nanos(Instant::now()) < self.lease_until.load(Ordering::Acquire)
    }

    /// Records that Kafka acknowledged these events (the forwarder, once
    /// per batch of delivery reports). Kept only in a cluster.
    pub fn acknowledged(&self, acked: Acked) {
        if self.clustered && !acked.is_empty() {
            self.acked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(acked);
        }
    }

    /// What was acknowledged since the last call.
    pub fn take_acked(&self) -> Acked {
        std::mem::take(&mut *self.acked.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The forwarding thread started (`true`) or ended.
    pub fn forwarder_running_is(&self, running: bool) {
        self.forwarder.store(running, Ordering::Release);
    }

    pub fn forwarder_running(&self) -> bool {
        self.forwarder.load(Ordering::Acquire)
    }

    /// Should the forwarder drop this event unsent (see `skip`)? One
    /// atomic read when no takeover is recent.
    pub fn already_forwarded(&self, id: u64) -> bool {
        if !self.skipping.load(Ordering::Acquire) {
            return false;
        }
        if self.nanos(Instant::now()) >= self.skip_until.load(Ordering::Acquire) {
            self.skipping.store(false, Ordering::Release);
            self.skip.lock().unwrap_or_else(|e| e.into_inner()).clear();
            return false;
        }
        self.skip
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    pub(crate) fn skip_for(&self, ids: HashSet<u64>, window: Duration) {
        if ids.is_empty() {
            return;
        }
        *self.skip.lock().unwrap_or_else(|e| e.into_inner()) = ids;
        self.skip_until
            .store(self.nanos(Instant::now() + window), Ordering::Release);
        self.skipping.store(true, Ordering::Release);
    }

    pub(crate) fn set_standby(&self, epoch: u64) {
        self.lease_until.store(0, Ordering::Release);
        self.role.store(Role::Standby.code(), Ordering::Release);
        self.epoch.store(epoch, Ordering::Release);
    }

    pub(crate) fn set_taking_over(&self, epoch: u64) {
        self.lease_until.store(0, Ordering::Release);
        self.epoch.store(epoch, Ordering::Release);
        self.role.store(Role::TakingOver.code(), Ordering::Release);
    }

    /// Leader of `epoch` until `until` at least (heartbeats confirmed
    /// while taking over may have moved the lease further).
    pub(crate) fn set_leader(&self, epoch: u64, until: Instant) {
        self.epoch.store(epoch, Ordering::Release);
        self.lease_until
            .fetch_max(self.nanos(until), Ordering::AcqRel);
        self.role.store(Role::Leader.code(), Ordering::Release);
    }

    /// Moves the lease's end to `until` (never back).
    pub(crate) fn extend_lease(&self, until: Instant) {
        self.lease_until
            .fetch_max(self.nanos(until), Ordering::AcqRel);
    }

    /// How long the lease still runs (zero when over).
    pub fn lease_left(&self) -> Duration {
        let until = self.lease_until.load(Ordering::Acquire);
        Duration::from_nanos(until.saturating_sub(self.nanos(Instant::now())))
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_bridge_always_leads() {
        let l = Leadership::single();
        assert!(l.is_leader() && l.may_send());
        l.acknowledged(Acked {
            ids: vec![1],
            ..Acked::default()
        });
        assert!(l.take_acked().is_empty(), "nothing kept outside a cluster");
    }

    #[test]
    fn a_member_sends_only_within_its_lease() {
        let l = Leadership::clustered();
        assert!(!l.may_send());
        let now = Instant::now();
        l.set_taking_over(3);
        assert!(!l.may_send());
        l.set_leader(3, now + Duration::from_secs(60));
        assert!(l.may_send());
        l.extend_lease(now);
        assert!(l.may_send(), "a lease is never shortened");
        l.set_standby(4);
        assert!(!l.may_send());
        assert_eq!(l.epoch(), 4);
        l.set_leader(5, now);
        assert!(!l.may_send(), "an ended lease holds the leader");
    }

    #[test]
    fn acknowledgements_merge_keeping_the_highest_offset() {
        let l = Leadership::clustered();
        let p = ("t".to_owned(), 0);
        l.acknowledged(Acked {
            ids: vec![1, 2],
            offsets: [(p.clone(), 7)].into(),
        });
        l.acknowledged(Acked {
            ids: vec![3],
            offsets: [(p.clone(), 5)].into(),
        });
        let taken = l.take_acked();
        assert_eq!(taken.ids, vec![1, 2, 3]);
        assert_eq!(taken.offsets[&p], 7);
        assert!(l.take_acked().is_empty());
    }
}
