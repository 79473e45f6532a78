//! The Analytics API: `POST /api/v2/analytics/queues/observations/query`,
//! the current statistics of queues, read from the same per-queue state
//! the observation deltas are made from (`model::observations`), so a
//! snapshot and the deltas around it agree.
//!
//! Shapes are the SDK's `QueueObservationQuery` (a `filter` of `queueId`
//! and `mediaType` predicates, or clauses of them; `metrics`) and
//! `QueueObservationQueryResponse` (`results` of `{group, data}`, `data`
//! a flat list of `{metric, qualifier?, stats}`). Harsher than the real
//! service where it is uncertain: at most [`MAX_PREDICATES`] predicates,
//! unknown metrics and dimensions are a 400, queues not in the directory
//! are left out of the answer without a word. `analytics_delay_ms` (a
//! `/sim/faults` setting) holds the answer after the state was read.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::oauth::authorize;
use super::request::parse_json;
use crate::directory::Media;
use crate::errors::ApiError;
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
