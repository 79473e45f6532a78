//! The connection's observation snapshots (see `crate::snapshots`): a
//! round queries the Analytics API for every queue whose observation topic
//! the open channel carries, in chunks, one query out at a time; while a
//! query is out its window keeps the deltas of its queues that are
//! buffered ([`ConnectionActor::snapshot_observe`], called by `inbound`),
//! and its answer, with them applied on top, is buffered as snapshot
//! records on this thread, behind those deltas.
//!
//! Rounds start at start-up, once a gap ended, when an update added
//! observation topics, and every `snapshots.interval_secs`; one asked for
//! while another runs follows it. A failed round is logged, counted and
//! run again after a backoff delay with jitter.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use super::actor::ConnectionActor;
use crate::buffer::Kind;
use crate::genesys::analytics::MAX_QUEUES_PER_QUERY;
use crate::snapshots::{observation_queue, Window};
use crate::token::rest;

/// One round: the queues, their topics and how far it got.
struct Round {
    why: &'static str,
    topics: Arc<HashMap<String, String>>,
    chunks: Vec<Vec<String>>,
    next: usize,
    records: u64,
    merged: u64,
}

impl ConnectionActor {
    /// Asks for a snapshot round of the open channel's queues.
    pub(super) fn snapshot_soon(&mut self, ctx: &mut Context<Self>, why: &'static str) {
        let settings = &self.settings.snapshots;
        if !settings.enabled || self.closing() {
            return;
        }
        if !self.settings.leadership.is_leader() {
            self.snapshots.owed.get_or_insert(why);
            return;
        }
        self.snapshots.asked_once = true;
        if self.snapshots.running {
            self.snapshots.again.get_or_insert(why);
            return;
        }
        let Some(subscribed) = &self.subscription.subscribed else {
            // No open channel: the subscription that opens one asks again.
            return;
        };
        let topics: HashMap<String, String> = subscribed
            .iter()
            .filter_map(|t| observation_queue(t).map(|q| (q.to_owned(), t.clone())))
            .collect();
        if topics.is_empty() {
            return;
        }
        let mut ids: Vec<String> = topics.keys().cloned().collect();
        ids.sort();
        let chunks = ids
            .chunks(MAX_QUEUES_PER_QUERY)
            .map(<[String]>::to_vec)
            .collect();
        self.snapshots.running = true;
        self.snapshot_chunk(
            ctx,
            Round {
                why,
                topics: Arc::new(topics),
                chunks,
                next: 0,
                records: 0,
                merged: 0,
            },
        );
    }

    /// This member leads now (cluster mode): the round it was asked for
    /// while it did not (checked every liveness tick).
    pub(super) fn snapshot_owed(&mut self, ctx: &mut Context<Self>) {
        if self.settings.leadership.is_leader() {
            if let Some(why) = self.snapshots.owed.take() {
                self.snapshot_soon(ctx, why);
            }
        }
    }

    /// A notification was buffered: kept by the window of the query out,
    /// if it is a delta of one of its queues.
    pub(super) fn snapshot_observe(&mut self, topic_name: &str, text: &str) {
        if let Some(window) = &mut self.snapshots.window {
            window.observe(topic_name, text);
        }
    }

    fn snapshot_chunk(&mut self, ctx: &mut Context<Self>, mut round: Round) {
        let Some(ids) = round.chunks.get(round.next).cloned() else {
            self.snapshots.running = false;
            self.snapshots.backoff.reset();
            self.telemetry.repair.snapshot_taken(
                self.index,
                round.why,
                round.records,
                round.merged,
            );
            if let Some(why) = self.snapshots.again.take() {
                self.snapshot_soon(ctx, why);
            }
            return;
        };
        // Opened as the query leaves: every delta buffered from now on
        // is applied on top of the answer.
        self.snapshots.window = Some(Window::new(ids.iter().map(String::as_str)));
        let api = self.api.clone();
        let tokens = self.tokens.clone();
        let telemetry = self.telemetry.clone();
        let backoff = self.schedule.backoff.clone();
        let metrics = self.settings.snapshots.metrics.clone();
        let query = async move {
            rest::call("observations query", &tokens, &telemetry, &backoff, |t| {
                let api = api.clone();
                let ids = ids.clone();
                let metrics = metrics.clone();
                async move { api.query_queue_observations(&t, &ids, &metrics).await }
            })
            .await
        };
        ctx.spawn(query.into_actor(self).map(move |result, act, ctx| {
            let Some(window) = act.snapshots.window.take() else {
                // The actor restarted meanwhile: this round is void.
                return;
            };
            let answer = match result {
                Ok(answer) => answer,
                Err(e) => return act.snapshot_failed(ctx, &e),
            };
            if window.overflowed() {
                return act.snapshot_failed(
                    ctx,
                    &"more deltas arrived while the query was out than a window keeps",
                );
            }
            let now_ms = crate::now_ms();
            let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
            let snapshot = window.finish(answer, &round.topics, &now);
            if !snapshot.unanswered.is_empty() {
                tracing::debug!(
                    connection = act.index,
                    queues = snapshot.unanswered.len(),
                    "queues without observations in the answer (deleted since the listing?)"
                );
            }
            for (topic, payload) in snapshot.records {
                if let Err(e) = act
                    .buffer
                    .submit_made(Kind::Snapshot, now_ms, &topic, payload)
                {
                    act.telemetry.buffer.write_failed(&e);
                    return act.snapshot_failed(ctx, &format_args!("buffer refused it: {e}"));
                }
                round.records += 1;
            }
            round.merged += snapshot.merged;
            round.next += 1;
            act.snapshot_chunk(ctx, round);
        }));
    }

    fn snapshot_failed(&mut self, ctx: &mut Context<Self>, reason: &dyn std::fmt::Display) {
        let delay = self.snapshots.backoff.next_delay();
        self.telemetry
            .repair
            .snapshot_failed(self.index, reason, delay);
        // Still `running`: asks meanwhile wait for the retry.
        ctx.run_later(delay, |act, ctx| {
            act.snapshots.running = false;
            let why = act.snapshots.again.take().unwrap_or("retry");
            act.snapshot_soon(ctx, why);
        });
    }
}
