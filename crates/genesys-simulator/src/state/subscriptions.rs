//! A channel's topic subscriptions and the rules of changing them: the
//! check every requested topic goes through (family, directory, denied
//! prefixes), the per-channel topic limit, and the replies of PUT / POST
//! subscriptions and of the socket's subscribe messages.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;

use crate::directory::Directory;
use crate::errors::ApiError;
use crate::topics::{expand_combined, Rejection, Topic};

/// One entry of a subscription reply.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TopicStatus {
    pub id: String,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_permissions: Option<Vec<String>>,
}

impl TopicStatus {
    fn permitted(id: &str) -> Self {
        TopicStatus {
            id: id.to_owned(),
            state: "Permitted",
            rejection_reason: None,
            missing_permissions: None,
        }
    }

    fn rejected(id: &str, rejection: &Rejection) -> Self {
        TopicStatus {
            id: id.to_owned(),
            state: "Rejected",
            rejection_reason: Some(rejection.reason.clone()),
            missing_permissions: (!rejection.missing_permissions.is_empty())
                .then(|| rejection.missing_permissions.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubscribeMode {
    /// PUT: the request becomes the channel's list.
    Replace,
    /// POST and the socket `subscribe` message: added to the list.
    Add,
    /// The socket `unsubscribe` message: removed from the list.
    Remove,
}

#[derive(Debug)]
pub(crate) enum SubscribeError {
    ChannelNotFound,
    TooManyTopics {
        requested: usize,
        max: usize,
    },
    /// Without `ignoreErrors` any rejection fails the whole request.
    Rejected(Vec<TopicStatus>),
}

impl SubscribeError {
    /// The REST reply for this failure.
    pub fn into_api_error(self, channel_id: &str) -> ApiError {
        match self {
            SubscribeError::ChannelNotFound => channel_not_found(channel_id),
            SubscribeError::TooManyTopics { requested, max } => ApiError::bad_request(format!(
                "A channel may have at most {max} topic subscriptions; this request would result in {requested}."
            )),
            SubscribeError::Rejected(statuses) => {
                let names: Vec<&str> = statuses.iter().map(|s| s.id.as_str()).collect();
                let details = statuses
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "errorCode": "notification.topic.rejected",
                            "fieldName": "id",
                            "entityId": s.id,
                            "entityName": s.rejection_reason,
                        })
                    })
                    .collect();
                ApiError::new(
                    actix_web::http::StatusCode::FORBIDDEN,
                    "missing.permissions",
                    format!("Subscription rejected for topic(s): {}", names.join(", ")),
                )
                .with_details(details)
            }
        }
    }
}

pub(crate) fn channel_not_found(channel_id: &str) -> ApiError {
    ApiError::not_found(format!("Channel {channel_id} not found"))
}

/// A requested topic with its verdict.
pub(crate) type Checked = (String, Result<Topic, Rejection>);

/// Checks the requested topics, each once, a combined topic standing for
/// its expanded names: against the families, the `directory` and the
/// `denied` prefixes to subscribe; by family alone to unsubscribe.
pub(crate) fn check(
    requested: &[String],
    mode: SubscribeMode,
    directory: &Directory,
    denied: &[String],
) -> Vec<Checked> {
    let mut seen = HashSet::new();
    // A combined topic stands for its expanded names.
    let requested: Vec<String> = requested.iter().flat_map(|t| expand_combined(t)).collect();
    requested
        .into_iter()
        .filter(|t| seen.insert(t.clone()))
        .map(|t| {
            let verdict = match mode {
                SubscribeMode::Remove => Topic::parse(&t).map_err(|reason| Rejection {
                    reason,
                    missing_permissions: Vec::new(),
                }),
                _ => Topic::check(&t, directory, denied),
            };
            (t, verdict)
        })
        .collect()
}

/// A channel's subscribed topics in subscription order, plus a set for
/// lookups.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    topics: Vec<Arc<str>>,
    topic_set: HashSet<Arc<str>>,
}

impl Subscriptions {
    pub fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        self.topics.iter()
    }

    pub fn len(&self) -> usize {
        self.topics.len()
    }

    pub fn clear(&mut self) {
        self.topics.clear();
        self.topic_set.clear();
    }

    /// The list as `GET …/subscriptions` shows it.
    pub fn statuses(&self) -> Vec<TopicStatus> {
        self.topics
            .iter()
            .map(|t| TopicStatus::permitted(t))
            .collect()
    }

    /// Applies checked topics (see [`check`]) with at most `max_topics`
    /// resulting. Without `ignore_errors` one rejection changes nothing.
    ///
    /// Replies list, for Replace, every requested topic with its state; for
    /// Add and Remove, the resulting subscriptions followed by any
    /// rejected topics.
    pub fn apply(
        &mut self,
        checked: &[Checked],
        mode: SubscribeMode,
        ignore_errors: bool,
        max_topics: usize,
    ) -> Result<Vec<TopicStatus>, SubscribeError> {
        let resulting = match mode {
            SubscribeMode::Replace => checked.len(),
            SubscribeMode::Add => {
                self.topics.len()
                    + checked
                        .iter()
                        .filter(|(t, _)| !self.topic_set.contains(t.as_str()))
                        .count()
            }
            SubscribeMode::Remove => 0,
        };
        if resulting > max_topics {
            return Err(SubscribeError::TooManyTopics {
                requested: resulting,
                max: max_topics,
            });
        }
        let rejected: Vec<TopicStatus> = checked
            .iter()
            .filter_map(|(t, verdict)| verdict.as_ref().err().map(|r| TopicStatus::rejected(t, r)))
            .collect();
        if !rejected.is_empty() && !ignore_errors {
            return Err(SubscribeError::Rejected(rejected));
        }
        let permitted = checked
            .iter()
            .filter(|(_, v)| v.is_ok())
            .map(|(t, _)| t.as_str());
        match mode {
            SubscribeMode::Replace => {
                self.topics = permitted.map(Arc::from).collect();
                self.topic_set = self.topics.iter().cloned().collect();
            }
            SubscribeMode::Add => {
                for t in permitted {
                    if !self.topic_set.contains(t) {
                        let t: Arc<str> = t.into();
                        self.topic_set.insert(t.clone());
                        self.topics.push(t);
                    }
                }
            }
            SubscribeMode::Remove => {
                let gone: HashSet<&str> = permitted.collect();
                self.topics.retain(|t| !gone.contains(t.as_ref()));
                self.topic_set = self.topics.iter().cloned().collect();
            }
        }
        let reply = match mode {
            SubscribeMode::Replace => checked
                .iter()
                .map(|(t, v)| match v {
                    Ok(_) => TopicStatus::permitted(t),
                    Err(r) => TopicStatus::rejected(t, r),
                })
                .collect(),
            _ => self.statuses().into_iter().chain(rejected).collect(),
        };
        Ok(reply)
    }
}
