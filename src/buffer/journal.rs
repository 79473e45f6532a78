//! The journal of changes no successful flush has covered yet: what a
//! reopen after a storage failure replays onto what the disk kept
//! (`recovery.rs`).

use std::collections::BTreeMap;

use sled::IVec;

use super::store::Area;

/// Copies of unflushed events kept for a reopen, at most.
const RETAIN_MAX_BYTES: usize = 8 << 20;

/// Changes not yet covered by a successful flush: writes (with a copy of
/// each value while the copies stay under [`RETAIN_MAX_BYTES`]) and
/// removals of events. A reopen replays them onto what the disk kept, so
/// the reopened buffer holds what the failed one held in memory.
#[derive(Default)]
pub(super) struct Unflushed {
    /// Bumped when a flush starts; a flush covers what was registered
    /// before (`epoch` at most the value it read).
    pub(super) epoch: u64,
    pub(super) writes: BTreeMap<(u64, u8), Pending>,
    /// Events removed (acknowledged or dead-lettered), with their epoch.
    pub(super) removals: BTreeMap<u64, u64>,
    pub(super) bytes: usize,
}

pub(super) struct Pending {
    pub(super) area: Area,
    pub(super) epoch: u64,
    pub(super) value: Option<IVec>,
}

impl Unflushed {
    pub(super) fn add(&mut self, seq: u64, area: Area, value: &IVec) {
        let value = (self.bytes + value.len() <= RETAIN_MAX_BYTES).then(|| {
            self.bytes += value.len();
            value.clone()
        });
        let pending = Pending {
            area,
            epoch: self.epoch,
            value,
        };
        if let Some(old) = self.writes.insert((seq, area as u8), pending) {
            self.bytes -= old.value.map_or(0, |v| v.len());
        }
    }

    /// An event left the events tree: its write need not be replayed, its
    /// removal must be.
    pub(super) fn removed(&mut self, seq: u64) {
        if let Some(p) = self.writes.remove(&(seq, Area::Events as u8)) {
            self.bytes -= p.value.map_or(0, |v| v.len());
        }
        self.removals.insert(seq, self.epoch);
    }

    /// A flush starts: returns the epoch it covers.
    pub(super) fn start_flush(&mut self) -> u64 {
        self.epoch += 1;
        self.epoch - 1
    }

    /// Drops what a successful flush covered.
    pub(super) fn flushed(&mut self, covered: u64) {
        let mut freed = 0;
        self.writes.retain(|_, p| {
            let keep = p.epoch > covered;
            if !keep {
                freed += p.value.as_ref().map_or(0, |v| v.len());
            }
            keep
        });
        self.bytes -= freed;
        self.removals.retain(|_, epoch| *epoch > covered);
    }
}
