//! The guard against listings that shrink suddenly.
//!
//! An API glitch (an empty page, a truncated listing, a role that lost a
//! division for a moment) must not unsubscribe the org: Genesys replays
//! nothing, so every event of a topic dropped by mistake is gone. The rule:
//!
//! - A listing that returns **no** ids while some are planned removes
//!   nothing, however often it repeats (a contact centre whose every queue
//!   was deleted is restarted, not refreshed). Its additions — none — apply.
//! - A listing that would remove **more than a quarter** of the planned ids
//!   (and more than [`SMALL_CHANGE`]) is *held*: its additions apply, its
//!   removals wait. When the next listing (the next interval, or a SIGHUP)
//!   still removes more than that, the removals apply: two listings in a
//!   row, at least one refresh apart, agreeing on a large deletion are
//!   taken as a real one.
//! - Anything smaller applies at once.

use std::collections::HashSet;

/// Removals up to this many always apply at once.
pub const SMALL_CHANGE: usize = 10;

/// What to do with one listing of one kind of entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Use the listing as it is.
    Apply,
    /// Keep the planned ids and add the listing's new ones; `removed` ids
    /// (the listing's missing ones) stay subscribed for now.
    Hold { removed: usize, why: &'static str },
}

/// Remembers, for one kind of entity (queues or users), whether the
/// previous listing was held.
#[derive(Debug, Default, Clone)]
pub struct ShrinkGuard {
    held_last_time: bool,
}

impl ShrinkGuard {
    /// Judges `listed` against the `planned` ids.
    pub fn judge(&mut self, planned: &[String], listed: &[String]) -> Verdict {
        let listed_set: HashSet<&String> = listed.iter().collect();
        let removed = planned.iter().filter(|id| !listed_set.contains(id)).count();
        let verdict = if removed > 0 && listed.is_empty() {
            Verdict::Hold {
                removed,
                why: "the listing came back empty",
            }
        } else if removed > SMALL_CHANGE && removed * 4 > planned.len() {
            if self.held_last_time {
                Verdict::Apply
            } else {
                Verdict::Hold {
                    removed,
                    why: "the listing lost more than a quarter of the planned ids; \
                          the next listing must confirm it",
                }
            }
        } else {
            Verdict::Apply
        };
        self.held_last_time = matches!(verdict, Verdict::Hold { .. });
        verdict
    }
}

/// The ids to plan with under `verdict`: the listing, or the planned ids
/// followed by the listing's new ones.
pub fn effective(planned: &[String], listed: Vec<String>, verdict: &Verdict) -> Vec<String> {
    match verdict {
        Verdict::Apply => listed,
        Verdict::Hold { .. } => {
            let known: HashSet<&String> = planned.iter().collect();
            let added: Vec<String> = listed
                .into_iter()
                .filter(|id| !known.contains(id))
                .collect();
            planned.iter().cloned().chain(added).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("q{i}")).collect()
    }

    #[test]
    fn small_changes_apply_at_once() {
        let mut guard = ShrinkGuard::default();
        assert_eq!(guard.judge(&ids(0..100), &ids(10..105)), Verdict::Apply);
        // A small org may lose most of its few queues.
        assert_eq!(guard.judge(&ids(0..8), &ids(0..1)), Verdict::Apply);
        assert_eq!(guard.judge(&[], &[]), Verdict::Apply);
    }

    #[test]
    fn an_empty_listing_never_removes() {
        let mut guard = ShrinkGuard::default();
        for _ in 0..3 {
            assert!(matches!(
                guard.judge(&ids(0..3), &[]),
                Verdict::Hold { removed: 3, .. }
            ));
        }
        let verdict = guard.judge(&ids(0..3), &[]);
        assert_eq!(effective(&ids(0..3), Vec::new(), &verdict), ids(0..3));
    }

    #[test]
    fn a_large_drop_waits_for_a_second_listing() {
        let mut guard = ShrinkGuard::default();
        let planned = ids(0..100);
        let listed: Vec<String> = ids(60..110);
        let verdict = guard.judge(&planned, &listed);
        assert!(matches!(verdict, Verdict::Hold { removed: 60, .. }));
        // Held: nothing leaves, the ten new ids join.
        let kept = effective(&planned, listed.clone(), &verdict);
        assert_eq!(kept.len(), 110);
        assert_eq!(kept[100], "q100");
        // Confirmed by the next listing.
        assert_eq!(guard.judge(&kept, &listed), Verdict::Apply);
        // A glitch that recovers resets the guard.
        let mut guard = ShrinkGuard::default();
        assert!(matches!(
            guard.judge(&planned, &ids(0..10)),
            Verdict::Hold { .. }
        ));
        assert_eq!(guard.judge(&planned, &planned), Verdict::Apply);
        assert!(matches!(
            guard.judge(&planned, &ids(0..10)),
            Verdict::Hold { .. }
        ));
    }
}
