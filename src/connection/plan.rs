//! Turning `[topics]` into the concrete topic list, once at start-up:
//! templates are expanded over the org's queues and users.

use std::sync::Arc;

use actix::Addr;

use super::rest;
use crate::backoff::Backoff;
use crate::genesys::api::GenesysApi;
use crate::subscriptions::TopicsConfig;
use crate::telemetry::Telemetry;
use crate::token::TokenActor;

/// The full topic list. Retries until the listings succeed: without them
/// there is nothing to subscribe. The caller bounds it by shutting down.
pub async fn topics(
    config: &TopicsConfig,
    api: &GenesysApi,
    tokens: &Addr<TokenActor>,
    telemetry: &Arc<Telemetry>,
    backoff: &Backoff,
) -> Vec<String> {
    let mut outer = backoff.clone();
    loop {
        match listings(config, api, tokens, telemetry, backoff).await {
            Ok((queues, users)) => {
                let topics = config.expand(&queues, &users);
                tracing::info!(
                    queues = queues.len(),
                    users = users.len(),
                    topics = topics.len(),
                    "topic list ready"
                );
                return topics;
            }
            Err(e) => {
                let delay = outer.next_delay();
                telemetry.api_retry("expand topic templates", &e, delay);
                actix_rt::time::sleep(delay).await;
            }
        }
    }
}

async fn listings(
    config: &TopicsConfig,
    api: &GenesysApi,
    tokens: &Addr<TokenActor>,
    telemetry: &Arc<Telemetry>,
    backoff: &Backoff,
) -> Result<(Vec<String>, Vec<String>), rest::CallError> {
    let queues = if config.needs_queue_list() {
        rest::call("list queues", tokens, telemetry, backoff, |t| async move {
            api.list_queue_ids(&t).await
        })
        .await?
    } else {
        Vec::new()
    };
    let users = if config.needs_user_list() {
        rest::call("list users", tokens, telemetry, backoff, |t| async move {
            api.list_user_ids(&t).await
        })
        .await?
    } else {
        Vec::new()
    };
    Ok((queues, users))
}
