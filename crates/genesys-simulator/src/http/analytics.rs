//! The Analytics API: `POST /api/v2/analytics/queues/observations/query`,
//! the current statistics of queues, read from the same per-queue state
//! the observation deltas are made from (`model::observations`), so a
//! snapshot and the deltas around it agree; and
//! `POST /api/v2/analytics/conversations/details/query`, the conversations
//! the simulated contact centre had (`model::conversations`' history), in
//! the SDK's `ConversationQuery` / `AnalyticsConversation` shapes:
//! matched by their *start* within the interval (as the real synchronous
//! query matches), filtered by `queueId`/`userId` segment predicates,
//! paged (`pageSize` at most [`MAX_PAGE_SIZE`], 400 beyond), an interval
//! of at most [`MAX_INTERVAL_DAYS`] days, and a conversation found only
//! `--analytics-lag` seconds after its start.
//!
//! Shapes are the SDK's `QueueObservationQuery` (a `filter` of `queueId`
//! and `mediaType` predicates, or clauses of them; `metrics`) and
//! `QueueObservationQueryResponse` (`results` of `{group, data}`, `data`
//! a flat list of `{metric, qualifier?, stats}`). Harsher than the real
//! service where it is uncertain: at most [`MAX_PREDICATES`] predicates,
//! unknown metrics and dimensions are a 400, queues not in the directory
//! are left out of the answer without a word. `analytics_delay_ms` (a
//! `/sim/faults` setting) holds the answer after the state was read;
//! `analytics_malformed` makes both answers partial (ids left out).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::oauth::authorize;
use super::request::parse_json;
use crate::clock::rfc3339_ms;
use crate::directory::{Directory, Media};
use crate::errors::ApiError;
use crate::events::facts::ConversationFacts;
use crate::model::conversations::{Conversation, Stage};
use crate::model::observations::metric_json;
use crate::state::SimState;

/// Most predicates in one query's filter, clauses included (the real limit
/// is not documented; 100 is the smallest a well-behaved client must
/// expect).
pub(crate) const MAX_PREDICATES: usize = 100;

/// The observation metrics a query may ask for.
pub(crate) const OBSERVATION_METRICS: &[&str] = &[
    "oActiveUsers",
    "oAlerting",
    "oInteracting",
    "oLongestInteracting",
    "oLongestWaiting",
    "oMemberUsers",
    "oOffQueueUsers",
    "oOnQueueUsers",
    "oServiceLevel",
    "oUserPresences",
    "oUserRoutingStatuses",
    "oWaiting",
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObservationQuery {
    filter: Filter,
    metrics: Vec<String>,
    #[serde(default)]
    detail_metrics: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Filter {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    clauses: Vec<Clause>,
    #[serde(default)]
    predicates: Vec<Predicate>,
}

#[derive(Debug, Deserialize)]
struct Clause {
    #[serde(rename = "type")]
    kind: String,
    predicates: Vec<Predicate>,
}

#[derive(Debug, Deserialize)]
struct Predicate {
    dimension: String,
    value: String,
    #[serde(default)]
    operator: Option<String>,
}

/// What a filter selects: queue ids and, when given, media types.
#[derive(Debug, Default)]
struct Selection {
    queues: Vec<String>,
    media: Vec<String>,
}

fn selection(filter: &Filter) -> Result<Selection, ApiError> {
    for kind in std::iter::once(&filter.kind).chain(filter.clauses.iter().map(|c| &c.kind)) {
        if kind != "and" && kind != "or" {
            return Err(ApiError::bad_request(format!(
                "filter type {kind:?} is not one of and, or"
            )));
        }
    }
    let predicates: Vec<&Predicate> = filter
        .predicates
        .iter()
        .chain(filter.clauses.iter().flat_map(|c| &c.predicates))
        .collect();
    if predicates.len() > MAX_PREDICATES {
        return Err(ApiError::bad_request(format!(
            "The filter has {} predicates; at most {MAX_PREDICATES} are allowed.",
            predicates.len()
        )));
    }
    let mut out = Selection::default();
    for p in predicates {
        if p.operator.as_deref().is_some_and(|o| o != "matches") {
            return Err(ApiError::bad_request(format!(
                "predicate operator {:?} is not supported for {}",
                p.operator, p.dimension
            )));
        }
        match p.dimension.as_str() {
            "queueId" => out.queues.push(p.value.clone()),
            "mediaType" => out.media.push(p.value.to_ascii_lowercase()),
            other => {
                return Err(ApiError::bad_request(format!(
                    "{other} is not a valid dimension for queue observations"
                )))
            }
        }
    }
    if out.queues.is_empty() {
        return Err(ApiError::bad_request(
            "The filter must name at least one queueId.",
        ));
    }
    Ok(out)
}

/// `POST /api/v2/analytics/queues/observations/query`
pub(crate) async fn queue_observations(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let query: ObservationQuery = parse_json(&body)?;
    if query.metrics.is_empty() {
        return Err(ApiError::bad_request("metrics must not be empty."));
    }
    for m in query.metrics.iter().chain(&query.detail_metrics) {
        if !OBSERVATION_METRICS.contains(&m.as_str()) {
            return Err(ApiError::bad_request(format!(
                "{m} is not a valid observation metric"
            )));
        }
    }
    let selection = selection(&query.filter)?;
    let results = {
        let dir = state.directory();
        let on_queue = dir
            .presences
            .iter()
            .find(|p| p.system_presence == "On Queue")
            .map_or("", |p| p.id.as_str())
            .to_owned();
        let mut inner = state.lock();
        inner.counters.analytics_queries += 1;
        inner.counters.analytics_held += 1;
        let mut results = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for id in &selection.queues {
            let Some(queue) = dir.queue(id).filter(|_| seen.insert(id.as_str())) else {
                continue;
            };
            if dir.is_removed(id) {
                continue;
            }
            let media: Media = queue.media;
            if !selection.media.is_empty() && !selection.media.iter().any(|m| m == media.lower()) {
                continue;
            }
            let members = dir.members(queue).count() as u64;
            let metrics = inner.model.observations.get(id).current(members, &on_queue);
            let data: Vec<Value> = metrics
                .iter()
                .filter(|((metric, _), _)| query.metrics.iter().any(|m| m == metric))
                .map(|((metric, qualifier), stat)| metric_json(metric, qualifier.as_deref(), *stat))
                .collect();
            results.push(json!({
                "group": {"queueId": id, "mediaType": media.lower()},
                "data": data,
            }));
        }
        results
    };
    // Counted as held until answered, or until the client gave up.
    let held = Held(state.clone());
    let delay = state.faults.analytics_delay();
    if !delay.is_zero() {
        actix_web::rt::time::sleep(delay).await;
    }
    drop(held);
    if state.faults.analytics_malformed() {
        // Partial: the groups lost their queue ids.
        let broken: Vec<Value> = results
            .into_iter()
            .map(|mut r| {
                r["group"] = json!({});
                r
            })
            .collect();
        return Ok(HttpResponse::Ok().json(json!({ "results": broken })));
    }
    Ok(HttpResponse::Ok().json(json!({ "results": results })))
}

/// A query whose state was read and whose answer is not sent yet.
struct Held(web::Data<SimState>);

impl Drop for Held {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.counters.analytics_held = inner.counters.analytics_held.saturating_sub(1);
    }
}

/// Largest `paging.pageSize` of a conversation details query (sources
/// quote 100 or 200; the smaller is the harsher).
pub(crate) const MAX_PAGE_SIZE: u64 = 100;
/// Longest interval of one synchronous details query.
pub(crate) const MAX_INTERVAL_DAYS: u64 = 7;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DetailsQuery {
    interval: String,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    order_by: Option<String>,
    #[serde(default)]
    paging: Option<Paging>,
    #[serde(default)]
    segment_filters: Vec<Filter>,
    #[serde(default)]
    conversation_filters: Vec<Filter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Paging {
    page_size: u64,
    page_number: u64,
}

/// `<start>/<end>` in RFC 3339 → ms.
fn interval_ms(interval: &str) -> Result<(u64, u64), ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "interval {interval:?} is not <ISO-8601 start>/<ISO-8601 end>"
        ))
    };
    let (a, b) = interval.split_once('/').ok_or_else(bad)?;
    let parse = |t: &str| {
        humantime::parse_rfc3339_weak(t.trim_end_matches('Z'))
            .or_else(|_| humantime::parse_rfc3339(t))
            .map_err(|_| bad())
            .map(crate::clock::epoch_ms)
    };
    let (start, end) = (parse(a)?, parse(b)?);
    if end <= start {
        return Err(ApiError::bad_request(format!(
            "interval {interval:?} ends before it starts"
        )));
    }
    if end - start > MAX_INTERVAL_DAYS * 86_400_000 {
        return Err(ApiError::bad_request(format!(
            "interval {interval:?} is longer than {MAX_INTERVAL_DAYS} days"
        )));
    }
    Ok((start, end))
}

/// The queue ids and user ids segment filters name.
type Segments = (Vec<String>, Vec<String>);

/// The queue and user ids the segment filters name (`None`: no filter).
fn segment_selection(filters: &[Filter]) -> Result<Option<Segments>, ApiError> {
    if filters.is_empty() {
        return Ok(None);
    }
    let (mut queues, mut users) = (Vec::new(), Vec::new());
    let mut count = 0;
    for filter in filters {
        for p in filter
            .predicates
            .iter()
            .chain(filter.clauses.iter().flat_map(|c| &c.predicates))
        {
            count += 1;
            match p.dimension.as_str() {
                "queueId" => queues.push(p.value.clone()),
                "userId" => users.push(p.value.clone()),
                "mediaType" | "direction" | "purpose" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "{other} is not a supported segment dimension"
                    )))
                }
            }
        }
    }
    if count > MAX_PREDICATES {
        return Err(ApiError::bad_request(format!(
            "The segment filters have {count} predicates; at most {MAX_PREDICATES} are allowed."
        )));
    }
    Ok(Some((queues, users)))
}

/// `POST /api/v2/analytics/conversations/details/query`
pub(crate) async fn conversation_details(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let query: DetailsQuery = parse_json(&body)?;
    let (start, end) = interval_ms(&query.interval)?;
    if !query.conversation_filters.is_empty() {
        return Err(ApiError::bad_request(
            "conversationFilters are not supported by this simulator; use segmentFilters",
        ));
    }
    let (size, number) = match &query.paging {
        None => (25, 1),
        Some(p) => (p.page_size, p.page_number),
    };
    if !(1..=MAX_PAGE_SIZE).contains(&size) || number == 0 {
        return Err(ApiError::bad_request(format!(
            "paging: pageSize must be 1 to {MAX_PAGE_SIZE} and pageNumber at least 1 (got {size}, {number})"
        )));
    }
    if query
        .order_by
        .as_deref()
        .is_some_and(|o| o != "conversationStart")
    {
        return Err(ApiError::bad_request("orderBy must be conversationStart"));
    }
    let descending = match query.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "order {o:?} is not asc or desc"
            )))
        }
    };
    let selection = segment_selection(&query.segment_filters)?;
    let visible_before = crate::clock::epoch_ms(std::time::SystemTime::now())
        .saturating_sub(state.settings.analytics_lag.as_millis() as u64);
    let (total, page) = {
        let dir = state.directory();
        let inner = state.lock();
        let mut found: Vec<&Conversation> = inner
            .model
            .conversations
            .history()
            .filter(|c| c.started_ms >= start && c.started_ms < end)
            .filter(|c| c.started_ms <= visible_before)
            .filter(|c| match &selection {
                None => true,
                Some((queues, users)) => {
                    c.queue_id.as_ref().is_some_and(|q| queues.contains(q))
                        || c.agent_id.as_ref().is_some_and(|u| users.contains(u))
                }
            })
            .collect();
        found.sort_by(|a, b| (a.started_ms, &a.id).cmp(&(b.started_ms, &b.id)));
        if descending {
            found.reverse();
        }
        let total = found.len();
        let page: Vec<Value> = found
            .iter()
            .skip(((number - 1) * size) as usize)
            .take(size as usize)
            .map(|c| analytics_conversation(c, &dir))
            .collect();
        (total, page)
    };
    let mut reply = json!({ "totalHits": total });
    if !page.is_empty() {
        reply["conversations"] = json!(page);
    }
    if state.faults.analytics_malformed() {
        // Partial: conversations without their ids.
        if let Some(list) = reply["conversations"].as_array_mut() {
            for c in list {
                if let Some(obj) = c.as_object_mut() {
                    obj.remove("conversationId");
                }
            }
        }
    }
    Ok(HttpResponse::Ok().json(reply))
}

/// A conversation as the details query returns it (the SDK's
/// `AnalyticsConversation`): participants → sessions → segments.
fn analytics_conversation(c: &Conversation, dir: &Directory) -> Value {
    let facts = ConversationFacts::of_pool(c, dir);
    let media = facts.media.lower();
    let segment = |kind: &str, from: u64, to: Option<u64>, extra: Value| {
        let mut s = json!({"segmentStart": rfc3339_ms(from), "segmentType": kind});
        if let Some(t) = to {
            s["segmentEnd"] = json!(rfc3339_ms(t));
        }
        if let (Some(obj), Some(more)) = (s.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        s
    };
    let session = |id: &str, direction: &str, segments: Vec<Value>| json!({"sessionId": id, "mediaType": media, "direction": direction.to_lowercase(), "segments": segments});
    let answered = c.connected_ms;
    let call_end = c.call_ended_ms;
    let mut participants = Vec::new();
    let (cust_p, cust_s) = facts.customer();
    participants.push(json!({
        "participantId": cust_p,
        "purpose": "customer",
        "sessions": [session(cust_s, facts.direction, vec![segment("interact", c.started_ms, call_end, json!({}))])],
    }));
    if let Some(queue) = &c.queue_id {
        let (acd_p, acd_s) = facts.acd();
        let left = answered.or(c.ended_ms);
        participants.push(json!({
            "participantId": acd_p,
            "participantName": facts.queue.map(|q| q.name.clone()),
            "purpose": "acd",
            "sessions": [session(acd_s, facts.direction, vec![segment("interact", c.started_ms, left, json!({"queueId": queue}))])],
        }));
    }
    if let Some(user) = &c.agent_id {
        let (agent_p, agent_s) = facts.agent();
        let mut segments = vec![segment(
            "alert",
            c.started_ms,
            answered.or(c.ended_ms),
            json!({}),
        )];
        if let Some(at) = answered {
            segments.push(segment("interact", at, call_end, json!({})));
        }
        if let Some(at) = call_end {
            if c.stage >= Stage::Acw {
                segments.push(segment("wrapup", at, c.ended_ms, json!({})));
            }
        }
        participants.push(json!({
            "participantId": agent_p,
            "userId": user,
            "purpose": "agent",
            "sessions": [session(agent_s, facts.direction, segments)],
        }));
    }
    let mut v = json!({
        "conversationId": c.id,
        "conversationStart": rfc3339_ms(c.started_ms),
        "originatingDirection": facts.direction.to_lowercase(),
        "divisionIds": [dir.division_id],
        "participants": participants,
    });
    if let Some(end) = c.ended_ms {
        v["conversationEnd"] = json!(rfc3339_ms(end));
    }
    v
}
