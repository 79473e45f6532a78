//! Telemetry of the topic plan: listings of the org (at start-up, on an
//! interval, on SIGHUP), what they added and removed, removals held by the
//! shrink guard, and topics left out for want of channels.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::metrics::register;
use super::recent::Level;
use super::shared::{lock, Shared};

/// What the planner reports (`gkb_topic_*` metrics).
#[derive(Debug, Default)]
struct Counts {
    topics: AtomicU64,
    channels: AtomicU64,
    left_out: AtomicU64,
    refreshes: AtomicU64,
    refresh_failures: AtomicU64,
    added: AtomicU64,
    removed: AtomicU64,
    held_removals: AtomicU64,
}

/// The plan's figures, and why it leaves topics out, if it does.
pub struct PlanTelemetry {
    shared: Arc<Shared>,
    counts: Counts,
    /// Why the topic plan leaves topics out (over the channel limit).
    problem: Mutex<Option<String>>,
}

impl PlanTelemetry {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        PlanTelemetry {
            shared,
            counts: Counts::default(),
            problem: Mutex::default(),
        }
    }

    /// A listing planned (or re-planned) the topics.
    #[allow(clippy::too_many_arguments)]
    pub fn planned(
        &self,
        trigger: &str,
        queues: usize,
        users: usize,
        topics: usize,
        channels: usize,
        added: usize,
        removed: usize,
        took: Duration,
    ) {
        let took_ms = took.as_millis() as u64;
        let p = &self.counts;
        p.topics.store(topics as u64, Ordering::Relaxed);
        p.channels.store(channels as u64, Ordering::Relaxed);
        p.refreshes.fetch_add(1, Ordering::Relaxed);
        if trigger != "start-up" {
            p.added.fetch_add(added as u64, Ordering::Relaxed);
            p.removed.fetch_add(removed as u64, Ordering::Relaxed);
        }
        if added > 0 || removed > 0 || trigger == "start-up" {
            tracing::info!(
                trigger,
                queues,
                users,
                topics,
                channels,
                added,
                removed,
                took_ms,
                "topic plan updated"
            );
        } else {
            tracing::debug!(
                trigger,
                queues,
                users,
                topics,
                took_ms,
                "topic plan unchanged"
            );
        }
    }

    pub fn listing_failed(
        &self,
        error: &dyn std::fmt::Display,
        retry_in: Duration,
        plan_kept: bool,
    ) {
        self.counts.refresh_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            error = %error,
            retry_in_ms = retry_in.as_millis() as u64,
            plan_kept,
            "listing the org's queues and users failed; the current topics stay subscribed"
        );
        self.shared.problem(
            Level::Warn,
            "planner",
            "listing the org's queues and users failed",
            error,
        );
    }

    /// The shrink guard held a listing's removals.
    pub fn listing_held(
        &self,
        kind: &str,
        planned: usize,
        listed: usize,
        removed: usize,
        why: &str,
    ) {
        self.counts
            .held_removals
            .fetch_add(removed as u64, Ordering::Relaxed);
        tracing::warn!(
            kind,
            planned,
            listed,
            held_removals = removed,
            why,
            "listing shrank suddenly: additions applied, removals held"
        );
        self.shared.problem(
            Level::Warn,
            "planner",
            "listing shrank suddenly: additions applied, removals held",
            &format_args!("{kind}: {listed} listed, {planned} planned; {why}"),
        );
    }

    /// The start-up plan needs more channels than Genesys allows.
    pub fn refused(&self, error: &dyn std::fmt::Display) {
        tracing::error!(error = %error, "topic plan refused");
        self.shared
            .problem(Level::Error, "planner", "topic plan refused", error);
        *lock(&self.problem) = Some(format!("topics: {error}"));
    }

    /// A refresh wants more topics than the `allowed` channels hold: what
    /// fits is subscribed, the rest left out. Logged when it starts
    /// (`log`); `/readyz` names it until it fits again.
    pub fn over_channel_limit(
        &self,
        wanted: usize,
        channels_needed: usize,
        allowed: usize,
        left_out: usize,
        log: bool,
    ) {
        self.counts
            .left_out
            .store(left_out as u64, Ordering::Relaxed);
        let reason = format!(
            "topics: {wanted} topics need {channels_needed} channels, Genesys allows {allowed} per OAuth client: \
             {left_out} topics are not subscribed (fix [topics] or split them over bridges)"
        );
        if log {
            tracing::error!(
                wanted,
                channels_needed,
                left_out,
                "more topics than channels allow: subscribed what fits, the rest is left out"
            );
            self.shared.problem(
                Level::Error,
                "planner",
                "more topics than channels allow: subscribed what fits, the rest is left out",
                &format_args!(
                    "{wanted} topics need {channels_needed} channels; {left_out} left out"
                ),
            );
        }
        *lock(&self.problem) = Some(reason);
    }

    pub fn fit_again(&self, topics: usize, channels: usize) {
        self.counts.left_out.store(0, Ordering::Relaxed);
        tracing::info!(topics, channels, "every planned topic fits again");
        *lock(&self.problem) = None;
    }

    /// /readyz: the plan leaves topics out, or was refused.
    pub(super) fn not_ready(&self, reasons: &mut Vec<String>) {
        if let Some(e) = &*lock(&self.problem) {
            reasons.push(e.clone());
        }
    }

    pub(super) fn register(&self, r: &mut Registry) {
        let p = &self.counts;
        let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let gauges: [(&str, &str, u64); 3] = [
            (
                "topics_planned",
                "Topics the plan assigns to channels.",
                load(&p.topics),
            ),
            (
                "topic_channels",
                "Channels (connections) the plan uses.",
                load(&p.channels),
            ),
            (
                "topics_left_out",
                "Wanted topics not subscribed for want of channels (see /readyz).",
                load(&p.left_out),
            ),
        ];
        for (name, help, value) in gauges {
            register(r, name, help, ConstGauge::new(value as i64));
        }
        let counters: [(&str, &str, u64); 5] = [
            (
                "topic_refreshes",
                "Listings of the org's queues and users that succeeded.",
                load(&p.refreshes),
            ),
            (
                "topic_refresh_failures",
                "Listings that failed (the plan was kept).",
                load(&p.refresh_failures),
            ),
            (
                "topics_added",
                "Topics added to the plan by refreshes.",
                load(&p.added),
            ),
            (
                "topics_removed",
                "Topics removed from the plan by refreshes.",
                load(&p.removed),
            ),
            (
                "topic_removals_held",
                "Removals held back because a listing shrank suddenly.",
                load(&p.held_removals),
            ),
        ];
        for (name, help, value) in counters {
            register(r, name, help, ConstCounter::new(value));
        }
    }
}
