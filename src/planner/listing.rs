//! Listing the org for the topic planner: the ids of its queues and
//! users, as far as `[topics]` needs them.

use std::sync::Arc;

use actix::Addr;

use crate::backoff::Backoff;
use crate::genesys::api::GenesysApi;
use crate::subscriptions::TopicsConfig;
use crate::telemetry::Telemetry;
use crate::token::{rest, TokenActor};

/// The org's entities that templates expand over; `None` where no
/// template needs the listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgListing {
    pub queues: Option<Vec<String>>,
    pub users: Option<Vec<String>>,
}

/// Lists what `config`'s templates need. Each listing goes through
/// [`rest::call`] (token, 401 retry, bounded retries with backoff); the
/// caller decides when to try again after an error.
pub async fn list_org(
    config: &TopicsConfig,
    api: &GenesysApi,
    tokens: &Addr<TokenActor>,
    telemetry: &Arc<Telemetry>,
    backoff: &Backoff,
) -> Result<OrgListing, rest::CallError> {
    let queues = if config.needs_queue_list() {
        Some(
            rest::call("list queues", tokens, telemetry, backoff, |t| async move {
                api.list_queue_ids(&t).await
            })
            .await?,
        )
    } else {
        None
    };
    let users = if config.needs_user_list() {
        Some(
            rest::call("list users", tokens, telemetry, backoff, |t| async move {
                api.list_user_ids(&t).await
            })
            .await?,
        )
    } else {
        None
    };
    Ok(OrgListing { queues, users })
}
