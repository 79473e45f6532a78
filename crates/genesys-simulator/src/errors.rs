//! Error replies in the shapes Genesys Cloud uses.
//!
//! REST (`/api/v2`, and the simulator's own `/sim` API for uniformity):
//! `{"message","code","status","contextId","details":[],"errors":[]}`.
//! Login (`/oauth/token`): `{"error","description","error_description"}`.

use std::fmt;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use serde::Serialize;
use serde_json::Value;

/// A Genesys-shaped REST error.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// `Retry-After` header, in seconds (429 and 503).
    pub retry_after: Option<u64>,
    pub details: Vec<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    message: &'a str,
    code: &'a str,
    status: u16,
    context_id: String,
    details: &'a [Value],
    errors: [Value; 0],
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
            retry_after: None,
            details: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad.request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not.found", message)
    }

    pub fn missing_bearer() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication.required",
            "No authentication bearer token specified in authorization header.",
        )
    }

    pub fn bad_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "bad.credentials",
            "Invalid login credentials.",
        )
    }

    /// An expired access token (the service also answers `bad.credentials`
    /// for those: see `--expired-token-code`).
    pub fn credentials_expired() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "credentials.expired",
            "The supplied credentials have expired.",
        )
    }

    /// The per-token rate limit's 429: with `Retry-After` (code
    /// `too.many.requests.retry.after`) or without (`too.many.requests`).
    pub fn rate_limited(retry_after: Option<u64>, limit: u32) -> Self {
        match retry_after {
            Some(secs) => {
                let mut err = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too.many.requests.retry.after",
                    format!(
                        "Rate limit exceeded the maximum. Retry the request in [{secs}] seconds"
                    ),
                );
                err.retry_after = Some(secs);
                err
            }
            None => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too.many.requests",
                format!("Rate limit exceeded the maximum [{limit}] requests within [60] seconds"),
            ),
        }
    }

    /// The error an injected fault status produces, with the code Genesys
    /// uses for it. `retry_after` only matters for 429 and 503.
    pub fn injected(status: u16, retry_after: u64) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let (code, message) = match status.as_u16() {
            400 => ("bad.request", "The request could not be understood by the server due to malformed syntax."),
            401 => ("bad.credentials", "Invalid login credentials."),
            403 => ("missing.permissions", "Unable to perform the requested action. You are missing the following permission(s)."),
            404 => ("not.found", "The requested resource was not found."),
            408 => ("request.timeout", "The client did not produce a request within the server timeout limit."),
            429 => ("too.many.requests.retry.after", "Rate limit exceeded the maximum. Retry the request in [{retry_after}] seconds"),
            500 => ("internal.server.error", "The server encountered an unexpected condition which prevented it from fulfilling the request."),
            502 => ("bad.gateway", "The server did not receive a timely response from the upstream server."),
            503 => ("service.unavailable", "Service Unavailable - The server is currently unavailable (because it is overloaded or down for maintenance)."),
            504 => ("gateway.timeout", "The request timed out."),
            _ => ("injected.fault", "Injected fault."),
        };
        let mut err = Self::new(
            status,
            code,
            message.replace("{retry_after}", &retry_after.to_string()),
        );
        if matches!(status.as_u16(), 429 | 503) {
            err.retry_after = Some(retry_after);
        }
        err
    }

    pub fn with_details(mut self, details: Vec<Value>) -> Self {
        self.details = details;
        self
    }

    fn builder(&self) -> HttpResponseBuilder {
        let mut builder = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            builder.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        builder
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        self.builder().json(ErrorBody {
            message: &self.message,
            code: &self.code,
            status: self.status.as_u16(),
            context_id: uuid::Uuid::new_v4().to_string(),
            details: &self.details,
            errors: [],
        })
    }
}

/// Middleware hook: an error reply that is not JSON (actix's own, e.g. 413
/// for a body over the size limit, which it answers in plain text) gets the
/// Genesys shape, so that clients see one error format everywhere.
pub(crate) fn genesys_shape<B>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    use actix_web::middleware::ErrorHandlerResponse;

    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let reason = status.canonical_reason().unwrap_or("error");
    let message = res.response().error().map_or_else(
        || format!("HTTP {} {reason}", status.as_u16()),
        |e| e.to_string(),
    );
    let code = reason.to_ascii_lowercase().replace([' ', '-'], ".");
    let (req, _) = res.into_parts();
    let res = ApiError::new(status, &code, message).error_response();
    Ok(ErrorHandlerResponse::Response(
        actix_web::dev::ServiceResponse::new(req, res).map_into_right_body(),
    ))
}

/// An OAuth (login) error: `{"error","description","error_description"}`.
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.error,
            self.description
        )
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({
                "error": self.error,
                "description": self.description,
                "error_description": self.description,
            }))
    }
}
