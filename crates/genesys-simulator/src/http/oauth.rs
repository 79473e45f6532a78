//! Login: `POST /oauth/token` (client credentials grant), and the bearer
//! check every `/api/v2` call goes through.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpMessage as _, HttpRequest, HttpResponse};
use base64::Engine as _;

use crate::errors::{ApiError, OAuthError};
use crate::faults::Target;
use crate::ids::token_prefix;
use crate::state::{Auth, RateLimitInfo, SimState};

/// Client id and secret from `Authorization: Basic …`, or failing that from
/// the form (`client_id` / `client_secret`, which RFC 6749 also allows).
fn client_credentials(req: &HttpRequest, form: &[(String, String)]) -> Option<(String, String)> {
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, value) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(value.trim())
        })
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
        });
    from_header.or_else(|| {
        let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        Some((field("client_id")?, field("client_secret")?))
    })
}

/// `POST /oauth/token`
pub(crate) async fn token(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> HttpResponse {
    use actix_web::ResponseError as _;

    if let Some(err) = state.faults.take(Target::Token) {
        tracing::info!(
            status = err.status.as_u16(),
            "injected fault on /oauth/token"
        );
        return err.error_response();
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let bad_status = state
        .faults
        .bad_credentials_status()
        .unwrap_or(state.settings.bad_credentials_status);
    let bad_status = StatusCode::from_u16(bad_status).unwrap_or(StatusCode::UNAUTHORIZED);

    let Some((client_id, secret)) = client_credentials(&req, &form) else {
        return OAuthError::new(
            bad_status,
            "invalid_client",
            "client credentials are required (HTTP Basic authentication)",
        )
        .error_response();
    };
    if client_id != state.settings.client_id {
        tracing::info!(client_id, "login refused: unknown client");
        return OAuthError::new(bad_status, "invalid_client", "client not found").error_response();
    }
    if secret != state.settings.client_secret {
        tracing::info!(client_id, "login refused: wrong client secret");
        return OAuthError::new(bad_status, "invalid_client", "authentication failed")
            .error_response();
    }
    match form
        .iter()
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.as_str())
    {
        Some("client_credentials") => {}
        Some(other) => {
            return OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant type {other:?} is not supported"),
            )
            .error_response()
        }
        None => {
            return OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            )
            .error_response()
        }
    }

    let (token, expires_in) = state.issue_token(&client_id);
    tracing::info!(
        client_id,
        token_prefix = token_prefix(&token),
        expires_in,
        "issued access token"
    );
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": expires_in,
        }))
}

/// The guard of every `/api/v2` call: an armed API fault first (as a
/// gateway in front of the service would answer), then the bearer token.
pub(crate) fn authorize(req: &HttpRequest, state: &SimState) -> Result<Auth, ApiError> {
    if let Some(err) = state.faults.take(Target::Api) {
        tracing::info!(
            path = req.path(),
            status = err.status.as_u16(),
            "injected fault on REST call"
        );
        return Err(err);
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, value) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(value.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(ApiError::missing_bearer)?;
    let (auth, rate) = state.authenticate(token).inspect_err(|e| {
        tracing::info!(
            path = req.path(),
            token_prefix = token_prefix(token),
            status = e.status.as_u16(),
            code = %e.code,
            "REST call refused"
        );
    })?;
    if let Some(rate) = rate {
        req.extensions_mut().insert(rate);
    }
    Ok(auth)
}

/// Adds the `inin-ratelimit-*` headers to the response of a REST call that
/// was counted against its token's rate limit (see [`authorize`]).
pub(crate) fn add_rate_limit_headers(
    res: &mut actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
) {
    let Some(rate) = res.request().extensions().get::<RateLimitInfo>().copied() else {
        return;
    };
    let headers = res.headers_mut();
    for (name, value) in [
        ("inin-ratelimit-allowed", rate.allowed.to_string()),
        ("inin-ratelimit-count", rate.count.to_string()),
        ("inin-ratelimit-reset", rate.reset_secs.to_string()),
    ] {
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            headers.insert(header::HeaderName::from_static(name), value);
        }
    }
}
