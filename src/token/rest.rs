//! REST calls with a token from the token actor (the connections' and the
//! planner's): one retry after a 401, and retries with backoff for the
//! failures that pass (429 honouring `Retry-After`, 5xx, transport errors).

use std::future::Future;
use std::sync::Arc;

use actix::Addr;

use super::{GetToken, TokenActor, TokenRejected, TokenUnavailable};
use crate::backoff::Backoff;
use crate::genesys::api::ApiError;
use crate::secret::Secret;
use crate::telemetry::Telemetry;

/// Most attempts at one call before the caller gets the error.
const MAX_ATTEMPTS: u32 = 5;

/// Why a call gave up.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Token(#[from] TokenUnavailable),
    #[error("the token actor is gone")]
    TokenActorGone,
}

/// Runs `call` with a token, retrying as the module docs say.
pub async fn call<T, F, Fut>(
    what: &'static str,
    tokens: &Addr<TokenActor>,
    telemetry: &Arc<Telemetry>,
    backoff: &Backoff,
    call: F,
) -> Result<T, CallError>
where
    F: Fn(Secret) -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut backoff = backoff.clone();
    backoff.reset();
    let mut refused_once = false;
    for attempt in 1..=MAX_ATTEMPTS {
        let token = tokens
            .send(GetToken)
            .await
            .map_err(|_| CallError::TokenActorGone)??;
        match call(token.clone()).await {
            Ok(value) => return Ok(value),
            Err(ApiError::Unauthorized) if !refused_once => {
                refused_once = true;
                tokens.do_send(TokenRejected(token));
            }
            // A fresh token refused too: no point in retrying now.
            Err(ApiError::Unauthorized) => return Err(ApiError::Unauthorized.into()),
            Err(e) if e.is_transient() && attempt < MAX_ATTEMPTS => {
                let delay = e.retry_after().unwrap_or_else(|| backoff.next_delay());
                telemetry.token.api_retry(what, &e, delay);
                actix_rt::time::sleep(delay).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Transport {
        what,
        reason: format!("gave up after {MAX_ATTEMPTS} attempts"),
    }
    .into())
}
