//! What the simulator did, for tests to check: `GET /sim/emitted` (the
//! event log), `GET /sim/state`, `GET /sim/conversations` and
//! `GET /sim/observations`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::http::request::{query_bool, query_number, query_params};
use crate::state::SimState;

/// `GET /sim/emitted?since_seq=K&frames=true|false&limit=N&channel_id=ID`
pub(crate) async fn emitted(
    req: HttpRequest,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    let params = query_params(req.query_string());
    let since = query_number::<u64>(&params, "since_seq")?.unwrap_or(0);
    let frames = query_bool(&params, "frames")?.unwrap_or(false);
    let limit = query_number::<usize>(&params, "limit")?.unwrap_or(usize::MAX);
    let channel = params.get("channel_id").map(String::as_str);

    // Copy out (cheap Arc clones) and serialize after releasing the lock.
    let (records, last_seq, forgotten) = {
        let inner = state.lock();
        let records = inner.log.since(since, channel, limit);
        (records, inner.log.last_seq(), inner.log.forgotten)
    };
    let events: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut event = json!({
                "seq": r.seq,
                "correlation_id": r.correlation_id.to_string(),
                "topic": &*r.topic,
                "channel_id": r.channel_id.as_deref(),
                "emitted_at_ms": r.emitted_at_ms,
                "delivered": r.delivered(),
            });
            if frames {
                event["frame"] = Value::from(&*r.frame);
            }
            event
        })
        .collect();
    // `Value`'s Display is serde_json's own (optimized) code: tens of MB of
    // frames serialize several times faster than through a generic
    // `to_string` instantiated in this crate's dev build.
    let body = json!({"events": events, "last_seq": last_seq, "forgotten": forgotten}).to_string();
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// `GET /sim/state`
pub(crate) async fn sim_state(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.view())
}

/// `GET /sim/conversations` → `{"conversations":[{"id","queue_id","user_id","stage"}]}`:
/// the live conversations, oldest first.
pub(crate) async fn conversations(state: web::Data<SimState>) -> HttpResponse {
    let list = state.lock().model.conversations.view();
    HttpResponse::Ok().json(json!({ "conversations": list }))
}

/// `GET /sim/observations?queue_id=ID` → `{"queues":{"<id>":[metric…]}}`:
/// the statistics the observation deltas of each queue add up to.
pub(crate) async fn observations(req: HttpRequest, state: web::Data<SimState>) -> HttpResponse {
    let params = query_params(req.query_string());
    let queue = params.get("queue_id").map(String::as_str);
    let queues = state.lock().model.observations.view(queue);
    HttpResponse::Ok().json(json!({ "queues": queues }))
}
