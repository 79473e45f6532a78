//! Which topic goes on which channel, kept stable across refreshes.
//!
//! A refresh never reshuffles: topics still wanted stay on their channel,
//! topics no longer wanted leave it, new topics fill the channels that have
//! room (lowest index first) and only then open a new channel. Moving a
//! topic between channels would cost a window in which neither channel
//! carries it; filling costs nothing.

use std::collections::{HashMap, HashSet};

use crate::subscriptions::MAX_TOPICS_PER_CHANNEL;

/// The topics of each channel, by channel index.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Assignment {
    channels: Vec<Vec<String>>,
    /// Topic → channel index, for every assigned topic.
    channel_of: HashMap<String, usize>,
}

/// What one [`Assignment::apply`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Change {
    /// Channels that existed before and whose topic list changed.
    pub changed: Vec<usize>,
    /// Channels opened by this change (indices at the end).
    pub opened: Vec<usize>,
    pub added: usize,
    pub removed: usize,
    /// Wanted topics that found no room: every channel allowed is full.
    /// They are not assigned; the next refresh tries them again.
    pub left_out: usize,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.removed == 0
    }
}

impl Assignment {
    /// The topic lists, by channel index.
    pub fn channels(&self) -> &[Vec<String>] {
        &self.channels
    }

    /// Topics assigned over all channels.
    pub fn topics(&self) -> usize {
        self.channel_of.len()
    }

    /// Makes the assignment carry exactly `wanted` (as far as
    /// `max_channels` channels of [`MAX_TOPICS_PER_CHANNEL`] allow),
    /// moving no topic that stays.
    pub fn apply(&mut self, wanted: &[String], max_channels: usize) -> Change {
        let wanted_set: HashSet<&String> = wanted.iter().collect();
        let mut change = Change::default();
        let mut changed = vec![false; self.channels.len()];
        for (index, topics) in self.channels.iter_mut().enumerate() {
            let before = topics.len();
            topics.retain(|t| wanted_set.contains(t));
            if topics.len() != before {
                changed[index] = true;
                change.removed += before - topics.len();
            }
        }
        self.channel_of.retain(|t, _| wanted_set.contains(t));

        let existing = self.channels.len();
        // Channels below `first_with_room` are full: additions only ever
        // fill, so the search never goes back.
        let mut first_with_room = 0;
        for topic in wanted {
            if self.channel_of.contains_key(topic) {
                continue;
            }
            while first_with_room < self.channels.len()
                && self.channels[first_with_room].len() >= MAX_TOPICS_PER_CHANNEL
            {
                first_with_room += 1;
            }
            if first_with_room == self.channels.len() {
                if self.channels.len() >= max_channels {
                    change.left_out += 1;
                    continue;
                }
                self.channels.push(Vec::new());
                changed.push(false);
            }
            self.channels[first_with_room].push(topic.clone());
            self.channel_of.insert(topic.clone(), first_with_room);
            changed[first_with_room] = true;
            change.added += 1;
        }
        change.changed = (0..existing).filter(|i| changed[*i]).collect();
        change.opened = (existing..self.channels.len()).collect();
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscriptions::MAX_CHANNELS;

    fn topics(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("t{i}")).collect()
    }

    fn sizes(a: &Assignment) -> Vec<usize> {
        a.channels().iter().map(Vec::len).collect()
    }

    #[test]
    fn first_plan_cuts_groups_of_a_thousand() {
        let mut a = Assignment::default();
        let change = a.apply(&topics(0..2_345), MAX_CHANNELS);
        assert_eq!(sizes(&a), [1000, 1000, 345]);
        assert_eq!(change.opened, [0, 1, 2]);
        assert!(change.changed.is_empty());
        assert_eq!(
            (change.added, change.removed, change.left_out),
            (2_345, 0, 0)
        );
        assert_eq!(a.channels()[1][0], "t1000");
    }

    #[test]
    fn topics_that_stay_never_move() {
        let mut a = Assignment::default();
        a.apply(&topics(0..2_500), MAX_CHANNELS);
        let before = a.clone();
        // Remove 10 topics from channel 0, add 10 new ones: they fill the
        // holes of channel 0; channels 1 and 2 are untouched.
        let mut wanted: Vec<String> = topics(10..2_500);
        wanted.extend(topics(5_000..5_010));
        let change = a.apply(&wanted, MAX_CHANNELS);
        assert_eq!(change.changed, [0]);
        assert!(change.opened.is_empty());
        assert_eq!((change.added, change.removed), (10, 10));
        assert_eq!(a.channels()[1], before.channels()[1]);
        assert_eq!(a.channels()[2], before.channels()[2]);
        assert_eq!(a.channels()[0][..990], before.channels()[0][10..]);
        assert_eq!(a.channels()[0][990], "t5000");
        // The same list again changes nothing.
        assert!(a.apply(&wanted, MAX_CHANNELS).is_empty());
    }

    #[test]
    fn additions_fill_channels_with_room_before_opening_one() {
        let mut a = Assignment::default();
        a.apply(&topics(0..1_500), MAX_CHANNELS);
        let mut wanted = topics(0..1_500);
        wanted.extend(topics(10_000..10_700));
        let change = a.apply(&wanted, MAX_CHANNELS);
        assert_eq!(sizes(&a), [1000, 1000, 200]);
        assert_eq!(change.changed, [1]);
        assert_eq!(change.opened, [2]);
        assert_eq!(a.channels()[1][500], "t10000");
        assert_eq!(a.channels()[2][0], "t10500");
    }

    #[test]
    fn emptied_channels_stay_and_are_filled_first() {
        let mut a = Assignment::default();
        a.apply(&topics(0..2_000), MAX_CHANNELS);
        let change = a.apply(&topics(1_000..2_000), MAX_CHANNELS);
        assert_eq!(change.changed, [0]);
        assert_eq!(sizes(&a), [0, 1000]);
        a.apply(&topics(1_000..2_100), MAX_CHANNELS);
        assert_eq!(sizes(&a), [100, 1000]);
    }

    #[test]
    fn beyond_the_channel_limit_what_fits_is_assigned() {
        let mut a = Assignment::default();
        a.apply(&topics(0..19_500), MAX_CHANNELS);
        let change = a.apply(&topics(0..20_700), MAX_CHANNELS);
        assert_eq!(a.channels().len(), MAX_CHANNELS);
        assert_eq!(a.topics(), 20_000);
        assert_eq!((change.added, change.left_out), (500, 700));
        // Room made later is taken by the topics left out before.
        let change = a.apply(&topics(600..20_700), MAX_CHANNELS);
        assert_eq!(
            (change.removed, change.added, change.left_out),
            (600, 600, 100)
        );
        assert_eq!(a.topics(), 20_000);
        assert_eq!(a.channels()[0].last().unwrap(), "t20599");
    }
}
