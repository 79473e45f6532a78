//! `POST /sim/generate` (a batch now, or a background job at a rate) and
//! `POST /sim/stop-generator`.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::config::MAX_RATE;
use crate::errors::ApiError;
use crate::generator::{self, GenerateOptions, NoTopics};
use crate::http::request::parse_json;
use crate::state::SimState;
use crate::topics::Topic;

/// How long `/sim/generate` waits for sockets to take their frames.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// About 250 bytes each: 10,000 make a 2.5 MB frame.
const MAX_OBSERVATION_CONVERSATIONS: usize = 10_000;

/// Background jobs running at once: each may run forever.
const MAX_JOBS: usize = 64;

/// Larger synchronous batches must use `rate_per_sec` (or several calls).
const MAX_BATCH: u64 = 5_000_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateRequest {
    count: Option<u64>,
    rate_per_sec: Option<f64>,
    topics: Option<Vec<String>>,
    observation_conversations: Option<usize>,
}

/// `POST /sim/generate`
pub(crate) async fn generate(
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    let request: GenerateRequest = parse_json(&body)?;
    if let Some(topics) = &request.topics {
        if topics.is_empty() {
            return Err(ApiError::bad_request(
                "topics, when given, must not be empty",
            ));
        }
        for t in topics {
            Topic::parse(t).map_err(ApiError::bad_request)?;
        }
    }
    let opts = GenerateOptions {
        topics: request.topics,
        observation_conversations: request.observation_conversations,
    };

    if request
        .observation_conversations
        .is_some_and(|n| n > MAX_OBSERVATION_CONVERSATIONS)
    {
        return Err(ApiError::bad_request(format!(
            "observation_conversations must be at most {MAX_OBSERVATION_CONVERSATIONS}"
        )));
    }

    if let Some(rate) = request.rate_per_sec {
        if !(rate > 0.0 && rate <= MAX_RATE) {
            return Err(ApiError::bad_request(format!(
                "rate_per_sec must be a number above 0 and at most {MAX_RATE}"
            )));
        }
        if state.lock().jobs.len() >= MAX_JOBS {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("At most {MAX_JOBS} background jobs run at once: stop some with /sim/stop-generator"),
            ));
        }
        let job = generator::start_job(state.clone(), rate, request.count, opts);
        return Ok(HttpResponse::Accepted().json(json!({"started": true, "job_id": job})));
    }

    let count = request.count.ok_or_else(|| {
        ApiError::bad_request("count is required (or give rate_per_sec for a background job)")
    })?;
    if count > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "count must be at most {MAX_BATCH}; use rate_per_sec for more"
        )));
    }
    // Generation is CPU work: keep it off the worker that drives sockets.
    let worker_state = state.clone();
    let outcome = web::block(move || generator::emit(&worker_state, count, &opts))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal.server.error",
                e.to_string(),
            )
        })?
        .map_err(|NoTopics| {
            ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "No channel is subscribed to any topic: subscribe first, or pass topics",
            )
        })?;
    // Reply once every socket has taken the frames queued to it. A socket
    // actor only runs while its connection accepts writes, so a client that
    // stops reading would hold the reply forever: bounded by FLUSH_WAIT,
    // and `flushed` says whether it was reached.
    let flushes = outcome.sockets.values().map(|(s, _)| s.flush());
    let flushed = actix_web::rt::time::timeout(FLUSH_WAIT, futures_util::future::join_all(flushes))
        .await
        .is_ok();
    Ok(HttpResponse::Ok().json(json!({
        "emitted": outcome.emitted,
        // Written by now: not the frames still queued for a slow client,
        // nor those a socket that closed meanwhile never wrote.
        "delivered": outcome.delivered(),
        "first_seq": outcome.first_seq,
        "last_seq": outcome.last_seq,
        "flushed": flushed,
    })))
}

/// `POST /sim/stop-generator`
pub(crate) async fn stop_generator(state: web::Data<SimState>) -> HttpResponse {
    let n = generator::stop_jobs(&state);
    HttpResponse::Ok().json(json!({"stopped": n}))
}
