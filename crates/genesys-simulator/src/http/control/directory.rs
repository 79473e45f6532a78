//! Run-time changes to the directory: `POST /sim/directory/queues|users`
//! adds entries, `DELETE /sim/directory/queues|users/{id}` removes one.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::directory::{DirectoryError, MAX_ENTRIES};
use crate::errors::ApiError;
use crate::http::request::parse_json;
use crate::state::SimState;

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
