//! REST API of the Notification Service: channels and their subscriptions.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::oauth::authorize;
use super::request::{parse_json, query_bool, query_params};
use crate::errors::ApiError;
use crate::state::{channel_not_found, SimState, SubscribeMode};

/// `POST /api/v2/notifications/channels` (the body, if any, is ignored: the
/// Python SDK sends `null`).
pub(crate) async fn create(
    req: HttpRequest,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    let auth = authorize(&req, &state)?;
    let channel = state.create_channel(&auth);
    tracing::info!(channel = %channel.id, "channel created");
    Ok(HttpResponse::Ok().json(channel))
}

/// `GET /api/v2/notifications/channels?includechannels=token|oauthclient`
pub(crate) async fn list(
    req: HttpRequest,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    let auth = authorize(&req, &state)?;
    let params = query_params(req.query_string());
    let whole_client = match params
        .get("includechannels")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("token") => false,
        Some("oauthclient") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "includechannels must be token or oauthclient, got {other:?}"
            )))
        }
    };
    Ok(HttpResponse::Ok().json(json!({"entities": state.list_channels(&auth, whole_client)})))
}

/// `HEAD /api/v2/notifications/channels/{channelId}`: 200 alive, 404 not.
pub(crate) async fn head(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    let auth = authorize(&req, &state)?;
    if state.channel_alive(&auth, &path) {
        Ok(HttpResponse::Ok().finish())
    } else {
        Err(channel_not_found(&path))
    }
}

/// `GET /api/v2/notifications/channels/{channelId}/subscriptions`
pub(crate) async fn get_subscriptions(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    let auth = authorize(&req, &state)?;
    let topics = state
        .subscriptions(&auth, &path)
        .map_err(|e| e.into_api_error(&path))?;
    Ok(HttpResponse::Ok().json(json!({"entities": topics})))
}

/// A request topic: `{"id":"v2.…"}` (other fields, like `selfUri`, ignored).
#[derive(Deserialize)]
struct TopicRef {
    id: String,
}

async fn change_subscriptions(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<SimState>,
    mode: SubscribeMode,
) -> Result<HttpResponse, ApiError> {
    let auth = authorize(&req, &state)?;
    let topics: Vec<TopicRef> = parse_json(&body)?;
    let ignore_errors =
        query_bool(&query_params(req.query_string()), "ignoreErrors")?.unwrap_or(false);
    let names: Vec<String> = topics.into_iter().map(|t| t.id).collect();
    let reply = state
        .subscribe(Some(&auth.client_id), &path, &names, mode, ignore_errors)
        .map_err(|e| e.into_api_error(&path))?;
    tracing::info!(channel = %path, mode = ?mode, requested = names.len(), "subscriptions changed");
    Ok(HttpResponse::Ok().json(json!({"entities": reply})))
}

/// `PUT …/subscriptions[?ignoreErrors=true]`: replaces the list.
pub(crate) async fn put_subscriptions(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    change_subscriptions(req, path, body, state, SubscribeMode::Replace).await
}

/// `POST …/subscriptions[?ignoreErrors=true]`: adds to the list.
pub(crate) async fn post_subscriptions(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    change_subscriptions(req, path, body, state, SubscribeMode::Add).await
}

/// `DELETE …/subscriptions`: removes all topics (200, empty body).
pub(crate) async fn delete_subscriptions(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    let auth = authorize(&req, &state)?;
    state
        .clear_subscriptions(&auth, &path)
        .map_err(|e| e.into_api_error(&path))?;
    Ok(HttpResponse::Ok().finish())
}
