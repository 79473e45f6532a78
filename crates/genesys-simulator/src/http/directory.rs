//! REST listings of the directory: `GET /api/v2/routing/queues[/{id}]`
//! and `GET /api/v2/users[/{id}]`, paged as Genesys pages entity
//! listings, with entities in the shapes of the SDK's `Queue` and `User`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::oauth::authorize;
use super::request::{query_number, query_params};
use crate::clock::rfc3339_ms;
use crate::directory::{Directory, Queue, User};
use crate::errors::ApiError;
use crate::state::SimState;

/// Genesys' maximum `pageSize` for these listings.
const MAX_PAGE_SIZE: usize = 500;
const DEFAULT_PAGE_SIZE: usize = 25;

fn division_ref(dir: &Directory) -> Value {
    json!({
        "id": dir.division_id,
        "name": "Home",
        "selfUri": format!("/api/v2/authorization/divisions/{}", dir.division_id),
    })
}

/// A queue as `GET /api/v2/routing/queues` returns it (the fields the
/// SDK's `Queue` model knows; enum values from its allowed lists).
fn queue_json(dir: &Directory, q: &Queue) -> Value {
    let created = rfc3339_ms(q.created_ms);
    let members = dir.members(q).count();
    json!({
        "id": q.id,
        "name": q.name,
        "division": division_ref(dir),
        "description": format!("{} queue", q.name),
        "dateCreated": created,
        "dateModified": created,
        "modifiedBy": dir.users.first().map_or("", |u| u.id.as_str()),
        "createdBy": dir.users.first().map_or("", |u| u.id.as_str()),
        "memberCount": members,
        "userMemberCount": members,
        "joinedMemberCount": members,
        "acwSettings": {"wrapupPrompt": "MANDATORY_TIMEOUT", "timeoutMs": 30000},
        "skillEvaluationMethod": "BEST",
        "scoringMethod": "TimestampAndPriority",
        "lastAgentRoutingMode": "Disabled",
        "autoAnswerOnly": false,
        "enableTranscription": false,
        "enableAudioMonitoring": false,
        "enableManualAssignment": false,
        "suppressInQueueCallRecording": true,
        "defaultMediaLanguage": "en-US",
        "selfUri": format!("/api/v2/routing/queues/{}", q.id),
    })
}

fn user_json(dir: &Directory, u: &User) -> Value {
    json!({
        "id": u.id,
        "name": u.name,
        "division": division_ref(dir),
        "chat": {"jabberId": format!("{}@simulated.orgspan.com", u.id)},
        "department": u.department,
        "email": u.email,
        "primaryContactInfo": [{"address": u.email, "mediaType": "EMAIL", "type": "PRIMARY"}],
        "addresses": [],
        "state": "active",
        "title": u.title,
        "username": u.email,
        "version": 1,
        "acdAutoAnswer": false,
        "selfUri": format!("/api/v2/users/{}", u.id),
    })
}

/// Builds a Genesys entity listing page: entities, pageSize, pageNumber,
/// total, pageCount and the first/self/next/previous/last URIs.
fn page(req: &HttpRequest, path: &str, items: Vec<Value>) -> Result<Value, ApiError> {
    let params = query_params(req.query_string());
    let page_size = query_number::<usize>(&params, "pageSize")?.unwrap_or(DEFAULT_PAGE_SIZE);
    let page_number = query_number::<usize>(&params, "pageNumber")?.unwrap_or(1);
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(ApiError::bad_request(format!(
            "pageSize must be between 1 and {MAX_PAGE_SIZE}, got {page_size}."
        )));
    }
    if page_number == 0 {
        return Err(ApiError::bad_request("pageNumber must be at least 1."));
    }
    let total = items.len();
    let page_count = total.div_ceil(page_size);
    let uri = |n: usize| format!("{path}?pageSize={page_size}&pageNumber={n}");
    let entities: Vec<Value> = items
        .into_iter()
        .skip((page_number - 1).saturating_mul(page_size))
        .take(page_size)
        .collect();
    let mut body = json!({
        "entities": entities,
        "pageSize": page_size,
        "pageNumber": page_number,
        "total": total,
        "pageCount": page_count,
        "firstUri": uri(1),
        "selfUri": uri(page_number),
        "lastUri": uri(page_count.max(1)),
    });
    if page_number < page_count {
        body["nextUri"] = json!(uri(page_number + 1));
    }
    if page_number > 1 {
        body["previousUri"] = json!(uri(page_number - 1));
    }
    Ok(body)
}

/// `name` filter of the queue listing: exact (case-insensitive), or a prefix
/// when it ends with `*`, as Genesys does.
fn name_matches(filter: Option<&String>, name: &str) -> bool {
    match filter {
        None => true,
        Some(f) => match f.strip_suffix('*') {
            Some(prefix) => name.to_lowercase().starts_with(&prefix.to_lowercase()),
            None => name.eq_ignore_ascii_case(f),
        },
    }
}

/// `GET /api/v2/routing/queues?pageSize=&pageNumber=&name=`
pub(crate) async fn list_queues(
    req: HttpRequest,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let dir = state.directory();
    let params = query_params(req.query_string());
    let items = dir
        .live_queues()
        .filter(|q| name_matches(params.get("name"), &q.name))
        .map(|q| queue_json(&dir, q))
        .collect();
    Ok(HttpResponse::Ok().json(page(&req, "/api/v2/routing/queues", items)?))
}

/// `GET /api/v2/routing/queues/{queueId}`
pub(crate) async fn get_queue(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let dir = state.directory();
    let q = dir
        .queue(&path)
        .ok_or_else(|| ApiError::not_found(format!("Queue {} not found", path.as_str())))?;
    Ok(HttpResponse::Ok().json(queue_json(&dir, q)))
}

/// `GET /api/v2/users?pageSize=&pageNumber=`
pub(crate) async fn list_users(
    req: HttpRequest,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let dir = state.directory();
    let items = dir.live_users().map(|u| user_json(&dir, u)).collect();
    Ok(HttpResponse::Ok().json(page(&req, "/api/v2/users", items)?))
}

/// `GET /api/v2/users/{userId}`
pub(crate) async fn get_user(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<SimState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let dir = state.directory();
    let u = dir
        .user(&path)
        .ok_or_else(|| ApiError::not_found(format!("User {} not found", path.as_str())))?;
    Ok(HttpResponse::Ok().json(user_json(&dir, u)))
}
