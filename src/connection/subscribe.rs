//! Keeps the open channel's subscriptions in step with the planner's topic
//! list ([`super::messages::SetTopics`]) without touching the socket: additions with
//! `POST`, removals (and re-applying after `subscription_changed`) with a
//! `PUT` of the whole list, one update at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::actor::ConnectionActor;
use crate::genesys::api::TopicOutcome;
use crate::token::rest;

/// `subscription_changed` notices re-apply the topic list at most this
/// often (our own updates may cause them).
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(60);

impl ConnectionActor {
    /// Replaces the open channel's whole topic list once more (at most every
    /// [`RESUBSCRIBE_EVERY`]).
    pub(super) fn resubscribe(&mut self, ctx: &mut Context<Self>) {
        if self
            .subscription
            .last_resubscribe
            .is_some_and(|at| at.elapsed() < RESUBSCRIBE_EVERY)
        {
            return;
        }
        self.subscription.last_resubscribe = Some(Instant::now());
        self.subscription.resubscribe = true;
        self.apply_topics(ctx);
    }

    /// Brings the open channel's subscriptions to `topics`: additions with
    /// `POST` (refusals are reported, the rest stay), removals with one
    /// `PUT` of the whole list. One update at a time; a failed one is tried
    /// again after a backoff delay, without touching the socket.
    pub(super) fn apply_topics(&mut self, ctx: &mut Context<Self>) {
        let (Some(subscribed), Some(current)) = (&self.subscription.subscribed, &self.current)
        else {
            return;
        };
        if self.subscription.updating
            || self.closing()
            || (Arc::ptr_eq(subscribed, &self.topics) && !self.subscription.resubscribe)
        {
            return;
        }
        let whole_list = std::mem::take(&mut self.subscription.resubscribe);
        let wanted = self.topics.clone();
        let had: std::collections::HashSet<&String> = subscribed.iter().collect();
        let keep: std::collections::HashSet<&String> = wanted.iter().collect();
        let added: Vec<String> = wanted
            .iter()
            .filter(|t| !had.contains(t))
            .cloned()
            .collect();
        let removed = subscribed.iter().filter(|t| !keep.contains(t)).count();
        let adds_observations = added
            .iter()
            .any(|t| crate::snapshots::observation_queue(t).is_some());
        if added.is_empty() && removed == 0 && !whole_list {
            self.subscription.subscribed = Some(wanted);
            return;
        }
        self.subscription.updating = true;
        let socket = current.socket.id;
        let channel_id = current.channel.channel.id.clone();
        let api = self.api.clone();
        let tokens = self.tokens.clone();
        let telemetry = self.telemetry.clone();
        let backoff = self.schedule.backoff.clone();
        let whole = wanted.clone();
        let update = async move {
            rest::call("update subscriptions", &tokens, &telemetry, &backoff, |t| {
                let api = api.clone();
                let channel_id = channel_id.clone();
                let added = added.clone();
                let whole = whole.clone();
                async move {
                    // ignoreErrors: a topic refused now (a queue deleted
                    // since the listing, a permission withdrawn) must not
                    // cost the channel its other topics.
                    if removed > 0 || whole_list {
                        api.put_subscriptions(&t, &channel_id, &whole, true).await
                    } else {
                        api.post_subscriptions(&t, &channel_id, &added, true).await
                    }
                }
            })
            .await
        };
        ctx.spawn(update.into_actor(self).map(move |result, act, ctx| {
            act.subscription.updating = false;
            if act.current.as_ref().map(|c| c.socket.id) != Some(socket) {
                // Another channel took over; it was subscribed with the
                // topics of its own time and is updated on its own.
                act.apply_topics(ctx);
                return;
            }
            match result {
                Ok(outcomes) => {
                    let refused: Vec<&TopicOutcome> =
                        outcomes.iter().filter(|o| o.is_rejected()).collect();
                    let example = refused.first().map(|o| {
                        format!(
                            "{} ({})",
                            o.id,
                            o.rejection_reason.as_deref().unwrap_or("no reason given")
                        )
                    });
                    act.telemetry.connections.subscriptions_updated(
                        act.index,
                        wanted.len(),
                        refused.len(),
                        example.as_deref(),
                    );
                    act.subscription.subscribed = Some(wanted);
                    if adds_observations {
                        act.snapshot_soon(ctx, "topics added");
                    }
                    act.apply_topics(ctx);
                }
                Err(e) => {
                    let delay = act.schedule.backoff.next_delay();
                    act.telemetry
                        .connections
                        .subscriptions_update_failed(act.index, &e, delay);
                    ctx.run_later(delay, |act, ctx| act.apply_topics(ctx));
                }
            }
        }));
    }
}
