//! The simulated contact centre's memory between events: each queue's live
//! statistics (observation events are deltas against them) and the live
//! conversations with their lifecycle. Event bodies (`events`) read and
//! move it; the state holds one behind its lock.

pub(crate) mod conversations;
pub(crate) mod observations;

use conversations::ConversationPool;
use observations::QueueObservations;

/// What the simulated contact centre remembers between events: queue
/// statistics (observations are deltas against them) and the live
/// conversations.
#[derive(Debug)]
pub(crate) struct Model {
    pub observations: QueueObservations,
    pub conversations: ConversationPool,
}

impl Model {
    pub fn new(conversations_per_entity: usize) -> Self {
        Model {
            observations: QueueObservations::default(),
            conversations: ConversationPool::new(conversations_per_entity),
        }
    }
}
