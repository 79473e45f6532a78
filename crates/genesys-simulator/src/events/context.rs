//! What every body builder works from: the directory, the time of the
//! event and the caller's options, plus the small facts several families
//! share (a queue's media, a phone number).

use crate::directory::{Directory, Media, Queue};

/// What a body builder may look at besides the random generator.
pub(crate) struct BodyContext<'a> {
    pub directory: &'a Directory,
    pub now_ms: u64,
    /// Conversations listed under `oWaiting` / `oInteracting` in queue
    /// observations (random 0..=4 when `None`). Large values make the
    /// tens-of-KB frames the field reference warns about.
    pub observation_conversations: Option<usize>,
}

pub(crate) fn media_of(queue: Option<&Queue>) -> Media {
    queue.map_or(Media::Voice, |q| q.media)
}

pub(crate) fn phone(n: u64) -> String {
    format!("tel:+1317555{:04}", n % 10_000)
}

/// The context unit tests build bodies in: a fixed time, random listings.
#[cfg(test)]
pub(crate) fn test_context(dir: &Directory) -> BodyContext<'_> {
    BodyContext {
        directory: dir,
        now_ms: 1_795_340_814_839,
        observation_conversations: None,
    }
}
