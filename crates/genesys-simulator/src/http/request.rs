//! Reading client input (JSON bodies, query strings) without ever panicking:
//! every malformed input becomes a Genesys-shaped 400 that says what was wrong.

use std::collections::HashMap;

use crate::errors::ApiError;

/// Parses a JSON request body, turning every failure (including an empty
/// body) into a Genesys-shaped 400 that says what was wrong.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty; a JSON body is required.",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Malformed JSON body: {e}")))
}

/// Query string parameters, last one wins. Never fails: malformed
/// percent-encoding is decoded lossily, as most servers do.
pub(crate) fn query_params(query: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// Parses an optional numeric query parameter into a clear 400 on garbage.
pub(crate) fn query_number<T: std::str::FromStr>(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(raw) => raw.trim().parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "Query parameter {name}={raw:?} is not a valid number."
            ))
        }),
    }
}

/// Parses an optional boolean query parameter (`true`/`false`, any case).
pub(crate) fn query_bool(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<bool>, ApiError> {
    match params.get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if v == "true" => Ok(Some(true)),
        Some(v) if v == "false" => Ok(Some(false)),
        Some(v) => Err(ApiError::bad_request(format!(
            "Query parameter {name}={v:?} must be true or false."
        ))),
    }
}

/// Parses an optional JSON body: empty means all defaults.
pub(crate) fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(body)
    }
}
