//! The control API under `/sim/` (no auth): generate events, inspect what
//! was emitted and the simulator's state, inject faults. Documented for users
//! in the `simulator` module header.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::config::{MAX_RATE, MAX_SECS};
use super::directory::{DirectoryError, MAX_ENTRIES};
use super::errors::ApiError;
use super::events;
use super::faults::FaultPatch;
use super::generator::{self, GenerateOptions, NoTopics};
use super::request::{parse_json, query_bool, query_number, query_params};
use super::socket::{ClosingNotice, Flush, Shutdown};
use super::state::SimState;
use super::topics::Topic;

/// How long `/sim/generate` waits for sockets to take their frames.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// About 250 bytes each: 10,000 make a 2.5 MB frame.
const MAX_OBSERVATION_CONVERSATIONS: usize = 10_000;

/// Background jobs running at once: each may run forever.
const MAX_JOBS: usize = 64;

/// Larger synchronous batches must use `rate_per_sec` (or several calls).
const MAX_BATCH: u64 = 5_000_000;

/// Parses an optional JSON body: empty means all defaults.
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(body)
    }
}

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
    let flushes = outcome.sockets.values().map(|(s, _)| s.addr.send(Flush));
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
        let start = inner.log.partition_point(|r| r.seq <= since);
        let records: Vec<_> = inner
            .log
            .range(start..)
            .filter(|r| channel.map_or(true, |c| r.channel_id.as_deref() == Some(c)))
            .take(limit)
            .cloned()
            .collect();
        (records, inner.next_seq - 1, inner.forgotten)
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

/// `GET /sim/faults`
pub(crate) async fn get_faults(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.faults.view())
}

/// `POST /sim/faults`
pub(crate) async fn set_faults(
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    let patch: FaultPatch = parse_json(&body)?;
    let view = state.faults.apply(patch)?;
    tracing::info!(faults = ?view, "faults changed");
    Ok(HttpResponse::Ok().json(view))
}

/// `DELETE /sim/faults`
pub(crate) async fn clear_faults(state: web::Data<SimState>) -> HttpResponse {
    state.faults.clear();
    tracing::info!("faults cleared");
    HttpResponse::Ok().json(state.faults.view())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DropMode {
    #[default]
    Close,
    Abort,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DropRequest {
    channel_id: Option<String>,
    #[serde(default)]
    mode: DropMode,
}

fn check_channel(state: &SimState, channel: Option<&str>) -> Result<(), ApiError> {
    match channel {
        Some(id) if !state.channel_exists(id) => {
            Err(ApiError::not_found(format!("Channel {id} not found")))
        }
        _ => Ok(()),
    }
}

/// `POST /sim/faults/drop-sockets` `{"channel_id"?, "mode":"close"|"abort"}`
pub(crate) async fn drop_sockets(
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    let request: DropRequest = optional_json(&body)?;
    check_channel(&state, request.channel_id.as_deref())?;
    // Detached first: events generated from now on count as undelivered.
    let sockets = state.take_sockets(request.channel_id.as_deref());
    let shutdown = match request.mode {
        DropMode::Close => Shutdown::idle_timeout(),
        DropMode::Abort => Shutdown::abort(),
    };
    for (_, socket) in &sockets {
        socket.addr.do_send(shutdown.clone());
    }
    let channels: Vec<&str> = sockets.iter().map(|(id, _)| id.as_ref()).collect();
    tracing::info!(mode = ?request.mode, dropped = sockets.len(), "dropping sockets");
    Ok(HttpResponse::Ok().json(json!({"dropped": sockets.len(), "channels": channels})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SocketClosingRequest {
    channel_id: Option<String>,
    /// Close the sockets (1001) this many seconds later, like the real
    /// service does about a minute after the notice. Default: never.
    close_after_secs: Option<f64>,
    system_topic_type: Option<String>,
    reason: Option<String>,
    message: Option<String>,
}

/// `systemTopicType` values of system messages (field reference §5).
const SYSTEM_TOPIC_TYPES: [&str; 3] = [
    "no_longer_subscribed",
    "subscription_changed",
    "token_revoked",
];
/// `reason` values of system messages (field reference §5).
const SYSTEM_REASONS: [&str; 2] = ["another_channel_subscribed", "user_tokens_revoked"];

/// `POST /sim/faults/socket-closing`: sends `v2.system.socket_closing`.
pub(crate) async fn socket_closing(
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    let request: SocketClosingRequest = optional_json(&body)?;
    check_channel(&state, request.channel_id.as_deref())?;
    for (name, value, allowed) in [
        (
            "system_topic_type",
            &request.system_topic_type,
            &SYSTEM_TOPIC_TYPES[..],
        ),
        ("reason", &request.reason, &SYSTEM_REASONS[..]),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !allowed.contains(v)) {
            return Err(ApiError::bad_request(format!(
                "{name} must be one of {}, got {v:?}",
                allowed.join(", ")
            )));
        }
    }
    let close_after = match request.close_after_secs {
        Some(s) if !(0.0..=MAX_SECS as f64).contains(&s) => {
            return Err(ApiError::bad_request(format!(
                "close_after_secs must be a number between 0 and {MAX_SECS}"
            )))
        }
        Some(s) => Some(Duration::from_secs_f64(s)),
        // The service closes the socket itself about a minute later.
        None => Some(state.settings.socket_closing_grace),
    };
    let sockets = state.sockets(request.channel_id.as_deref());
    for (channel_id, socket) in &sockets {
        let mut body = json!({
            "channelId": channel_id.as_ref(),
            "message": request.message.as_deref().unwrap_or("WebSocket is closing for maintenance; connect a new socket"),
            "organizationId": state.directory().organization_id,
            "oauthClientId": state.settings.client_id,
        });
        if let Some(t) = &request.system_topic_type {
            body["systemTopicType"] = json!(t);
        }
        if let Some(r) = &request.reason {
            body["reason"] = json!(r);
        }
        let frame = events::envelope("v2.system.socket_closing", &body, &uuid::Uuid::new_v4());
        socket.addr.do_send(ClosingNotice {
            frame: frame.into(),
            close_after,
        });
    }
    Ok(HttpResponse::Ok().json(json!({"notified": sockets.len()})))
}

/// `POST /sim/faults/expire-tokens`: every issued token becomes invalid.
pub(crate) async fn expire_tokens(state: web::Data<SimState>) -> HttpResponse {
    let n = state.revoke_tokens();
    tracing::info!(revoked = n, "tokens revoked");
    HttpResponse::Ok().json(json!({"revoked": n}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeTokenRequest {
    token: Option<String>,
    token_prefix: Option<String>,
}

/// `POST /sim/faults/revoke-token` `{"token"}` or `{"token_prefix"}`: one
/// live token is revoked (its next REST call: 401 `bad.credentials`), and
/// its channels end → `{"revoked":1,"channels_ended":n}`.
pub(crate) async fn revoke_token(
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    let request: RevokeTokenRequest = parse_json(&body)?;
    let ended = state.revoke_token(request.token.as_deref(), request.token_prefix.as_deref())?;
    tracing::info!(channels_ended = ended, "one token revoked");
    Ok(HttpResponse::Ok().json(json!({"revoked": 1, "channels_ended": ended})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelRequest {
    channel_id: Option<String>,
}

/// `POST /sim/faults/expire-channels` `{"channel_id"?}`: channels end now.
pub(crate) async fn expire_channels(
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    let request: ChannelRequest = optional_json(&body)?;
    check_channel(&state, request.channel_id.as_deref())?;
    let n = state.expire_channels(request.channel_id.as_deref());
    Ok(HttpResponse::Ok().json(json!({"expired": n})))
}

/// `POST /sim/stop-generator`
pub(crate) async fn stop_generator(state: web::Data<SimState>) -> HttpResponse {
    let n = generator::stop_jobs(&state);
    HttpResponse::Ok().json(json!({"stopped": n}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddEntriesRequest {
    count: usize,
}

/// Most entries one `POST /sim/directory/…` call adds.
const MAX_ADD: usize = 10_000;

fn directory_error(kind: &str, id: &str, e: DirectoryError) -> ApiError {
    match e {
        DirectoryError::Full => ApiError::bad_request(format!(
            "At most {MAX_ENTRIES} {kind} can ever be created in one run"
        )),
        DirectoryError::NotFound => ApiError::not_found(format!("No {kind} with id {id}")),
    }
}

/// `POST /sim/directory/queues|users` `{"count":N}` → `{"ids":[…]}`.
pub(crate) async fn add_entries(
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    let request: AddEntriesRequest = parse_json(&body)?;
    if !(1..=MAX_ADD).contains(&request.count) {
        return Err(ApiError::bad_request(format!(
            "count must be between 1 and {MAX_ADD}"
        )));
    }
    let mut directory = state.directory_mut();
    let ids = match path.as_str() {
        "queues" => directory.add_queues(request.count),
        "users" => directory.add_users(request.count),
        other => return Err(ApiError::not_found(format!("No directory of {other}"))),
    }
    .map_err(|e| directory_error(&path, "", e))?;
    tracing::info!(kind = %path, added = ids.len(), "directory entries added");
    Ok(HttpResponse::Ok().json(json!({ "ids": ids })))
}

/// `DELETE /sim/directory/queues|users/{id}` → `{"removed":id}`. The
/// entry's topics get no more events; subscriptions to them stay.
pub(crate) async fn remove_entry(
    path: web::Path<(String, String)>,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    let (kind, id) = path.into_inner();
    let mut directory = state.directory_mut();
    match kind.as_str() {
        "queues" => directory.remove_queue(&id),
        "users" => directory.remove_user(&id),
        other => return Err(ApiError::not_found(format!("No directory of {other}"))),
    }
    .map_err(|e| directory_error(&kind, &id, e))?;
    tracing::info!(kind, id, "directory entry removed");
    Ok(HttpResponse::Ok().json(json!({ "removed": id })))
}
