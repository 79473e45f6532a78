//! A backfilled conversation as the record the bridge writes: the
//! conversation exactly as the Analytics API gave it (participants →
//! sessions → segments, not the shape of the notifications: a
//! reconstruction, and marked as one), under the Genesys topic name
//! `v2.analytics.conversations.{id}.details` so that the routes place it
//! and its key is the conversation id.

use serde_json::{json, Value};

use crate::gap::GapRecord;

/// The topic name backfill records carry (for the routes and the key).
pub fn topic_name(conversation_id: &str) -> String {
    format!("v2.analytics.conversations.{conversation_id}.details")
}

/// `(topic name, payload)` of a conversation's backfill record; `None`
/// for a conversation without an id (the reply was checked for it).
pub fn backfill_record(conversation: &Value, gap: &GapRecord) -> Option<(String, Vec<u8>)> {
    let id = conversation.get("conversationId")?.as_str()?;
    let topic = topic_name(id);
    if !crate::buffer::field_fits(&topic) {
        return None;
    }
    let record = json!({
        "topicName": topic,
        "version": "2",
        "eventBody": conversation,
        "metadata": {
            "gkb-kind": "backfill",
            "reconstructed": true,
            "gap": {"start": gap.start, "end": gap.end, "connection": gap.connection},
        },
    });
    Some((topic, serde_json::to_vec(&record).expect("JSON serialises")))
}
