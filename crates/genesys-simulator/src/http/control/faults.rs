//! Fault injection: `/sim/faults` (statuses, silenced heartbeats and
//! pongs, black-holed sockets, denied topics) and the one-off faults under
//! it: dropped sockets, `v2.system.socket_closing`, revoked or expired
//! tokens, expired channels.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::config::MAX_SECS;
use crate::errors::ApiError;
use crate::events;
use crate::faults::FaultPatch;
use crate::http::request::{optional_json, parse_json};
use crate::state::{ClosingNotice, Shutdown, SimState};

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
        socket.shutdown(shutdown.clone());
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
        socket.notice(ClosingNotice {
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
