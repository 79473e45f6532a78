//! The Analytics API calls that repair gaps: the current observations of
//! queues (`POST /api/v2/analytics/queues/observations/query`), the
//! snapshot a consumer of observation deltas starts from after a gap; and
//! the conversations of an interval
//! (`POST /api/v2/analytics/conversations/details/query`), the backfill of
//! the conversations a gap missed.
//!
//! Replies are checked before anything is made of them: a result without
//! a queue id, a metric without a name or stats, is a decode error (the
//! caller counts it and tries again later), never a record in Kafka.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::api::{decode, ApiError, GenesysApi};
use crate::secret::Secret;

/// Most queue ids in one observations query. The API's limit is not
/// documented; the simulator refuses more than this, so a bigger plan is
/// queried in chunks of it.
pub const MAX_QUEUES_PER_QUERY: usize = 100;

/// One queue's current observations for one media type, as answered.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueObservations {
    pub queue_id: String,
    /// `voice`, `chat`…; absent when the service did not say.
    pub media_type: Option<String>,
    /// `{metric, qualifier?, stats}` entries, as given.
    pub metrics: Vec<Value>,
}

#[derive(Deserialize)]
struct Reply {
    results: Vec<ReplyResult>,
}

#[derive(Deserialize)]
struct ReplyResult {
    group: Group,
    #[serde(default)]
    data: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Group {
    queue_id: String,
    #[serde(default)]
    media_type: Option<String>,
}

impl GenesysApi {
    /// The current observations of `queue_ids` (at most
    /// [`MAX_QUEUES_PER_QUERY`]) for `metrics`.
    pub async fn query_queue_observations(
        &self,
        token: &Secret,
        queue_ids: &[String],
        metrics: &[String],
    ) -> Result<Vec<QueueObservations>, ApiError> {
        const WHAT: &str = "observations query";
        let predicates: Vec<Value> = queue_ids
            .iter()
            .map(|id| json!({"type": "dimension", "dimension": "queueId", "operator": "matches", "value": id}))
            .collect();
        let body = json!({
            "filter": {"type": "or", "predicates": predicates},
            "metrics": metrics,
        });
        let reply = self
            .call(
                WHAT,
                awc::http::Method::POST,
                "/api/v2/analytics/queues/observations/query",
                token,
                Some(serde_json::to_vec(&body).expect("JSON serialises")),
            )
            .await?;
        parse_observations(&reply)
    }
}

/// Checks and reads an observations reply.
pub fn parse_observations(body: &[u8]) -> Result<Vec<QueueObservations>, ApiError> {
    const WHAT: &str = "observations query";
    let reply: Reply = decode(WHAT, body)?;
    let bad = |reason: String| ApiError::Decode { what: WHAT, reason };
    reply
        .results
        .into_iter()
        .map(|r| {
            if r.group.queue_id.is_empty() {
                return Err(bad("a result with an empty queueId".into()));
            }
            for m in &r.data {
                let ok = m.get("metric").and_then(Value::as_str).is_some()
                    && m.get("stats").is_some_and(Value::is_object)
                    && m.get("qualifier")
                        .map_or(true, |q| q.is_string() || q.is_null());
                if !ok {
                    return Err(bad(format!(
                        "queue {}: a metric entry without a metric name or stats: {}",
                        r.group.queue_id,
                        truncate(&m.to_string())
                    )));
                }
            }
            Ok(QueueObservations {
                queue_id: r.group.queue_id,
                media_type: r.group.media_type,
                metrics: r.data,
            })
        })
        .collect()
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// A metric entry's identity: `(metric, qualifier)`.
pub fn metric_key(entry: &Map<String, Value>) -> Option<(String, Option<String>)> {
    let metric = entry.get("metric")?.as_str()?.to_owned();
    let qualifier = entry
        .get("qualifier")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Some((metric, qualifier))
}

/// Most conversations per page of a details query (sources quote 100 or
/// 200; the simulator refuses more than 100).
pub const DETAILS_PAGE_SIZE: u64 = 100;

/// One page of a details query: the conversations (as given, each checked
/// for its id and start) and the total the query matches.
#[derive(Debug, Clone)]
pub struct DetailsPage {
    pub conversations: Vec<Value>,
    pub total_hits: u64,
}

/// What a details query asks for.
#[derive(Debug, Clone)]
pub struct DetailsQuery {
    /// `<start>/<end>`, RFC 3339: conversations that *started* in it.
    pub interval: String,
    /// Segment predicates on `queueId` and `userId`, or'ed; none: every
    /// conversation.
    pub queue_ids: Vec<String>,
    pub user_ids: Vec<String>,
    pub page_number: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DetailsReply {
    #[serde(default)]
    conversations: Vec<Value>,
    total_hits: u64,
}

impl GenesysApi {
    /// One page of the conversations that started in the query's interval.
    pub async fn query_conversation_details(
        &self,
        token: &Secret,
        query: &DetailsQuery,
    ) -> Result<DetailsPage, ApiError> {
        const WHAT: &str = "conversation details query";
        let predicates: Vec<Value> = query
            .queue_ids
            .iter()
            .map(|id| ("queueId", id))
            .chain(query.user_ids.iter().map(|id| ("userId", id)))
            .map(|(dimension, value)| {
                json!({"type": "dimension", "dimension": dimension, "operator": "matches", "value": value})
            })
            .collect();
        let mut body = json!({
            "interval": query.interval,
            "order": "asc",
            "orderBy": "conversationStart",
            "paging": {"pageSize": DETAILS_PAGE_SIZE, "pageNumber": query.page_number},
        });
        if !predicates.is_empty() {
            body["segmentFilters"] = json!([{"type": "or", "predicates": predicates}]);
        }
        let reply = self
            .call(
                WHAT,
                awc::http::Method::POST,
                "/api/v2/analytics/conversations/details/query",
                token,
                Some(serde_json::to_vec(&body).expect("JSON serialises")),
            )
            .await?;
        parse_details(&reply)
    }
}

/// Checks and reads a details reply: every conversation has a
/// `conversationId` and a `conversationStart`.
pub fn parse_details(body: &[u8]) -> Result<DetailsPage, ApiError> {
    const WHAT: &str = "conversation details query";
    let reply: DetailsReply = decode(WHAT, body)?;
    for (index, c) in reply.conversations.iter().enumerate() {
        let ok = c
            .get("conversationId")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
            && c.get("conversationStart").and_then(Value::as_str).is_some();
        if !ok {
            // Which one, not its content: conversations carry phone
            // numbers and addresses, which have no place in a log.
            return Err(ApiError::Decode {
                what: WHAT,
                reason: format!(
                    "conversation {} of {} on the page has no conversationId or conversationStart",
                    index + 1,
                    reply.conversations.len()
                ),
            });
        }
    }
    Ok(DetailsPage {
        conversations: reply.conversations,
        total_hits: reply.total_hits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_read_and_a_malformed_one_refused() {
        let ok = br#"{"results":[{"group":{"queueId":"q1","mediaType":"voice"},
            "data":[{"metric":"oWaiting","stats":{"count":2}},
                    {"metric":"oOnQueueUsers","qualifier":"IDLE","stats":{"count":1}}]}]}"#;
        let r = parse_observations(ok).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].queue_id, "q1");
        assert_eq!(r[0].media_type.as_deref(), Some("voice"));
        assert_eq!(r[0].metrics.len(), 2);
        for bad in [
            &br#"{"results":[{"group":{"queueId":"q1"},"data":[{"stats":{"count":2}}]}]}"#[..],
            br#"{"results":[{"group":{"queueId":"q1"},"data":[{"metric":"oWaiting"}]}]}"#,
            br#"{"results":[{"group":{},"data":[]}]}"#,
            br#"{"results":[{"group":{"queueId":""},"data":[]}]}"#,
            br#"{"result":[]}"#,
            b"not json",
        ] {
            assert!(
                matches!(parse_observations(bad), Err(ApiError::Decode { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_details_page_is_read_and_a_malformed_one_refused() {
        let ok = br#"{"totalHits":2,"conversations":[
            {"conversationId":"c1","conversationStart":"2026-12-04T00:00:00.000Z","participants":[]}]}"#;
        let page = parse_details(ok).unwrap();
        assert_eq!((page.total_hits, page.conversations.len()), (2, 1));
        assert_eq!(
            parse_details(br#"{"totalHits":0}"#)
                .unwrap()
                .conversations
                .len(),
            0
        );
        for bad in [
            &br#"{"totalHits":1,"conversations":[{"conversationStart":"x"}]}"#[..],
            br#"{"totalHits":1,"conversations":[{"conversationId":"c1"}]}"#,
            br#"{"conversations":[]}"#,
            b"<html>",
        ] {
            assert!(matches!(parse_details(bad), Err(ApiError::Decode { .. })));
        }
    }
}
