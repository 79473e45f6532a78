//! Telemetry of the Kafka side: whether Kafka answers, the librdkafka
//! client's own complaints, each routed topic's state and rates,
//! deliveries, dead letters and the producer's fatal errors. What the log
//! says of an outage and the drain after it is `outage.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use super::metrics::{register, AtomicHistogram, TopicLabel, LATENCY_BUCKETS};
use super::recent::{ForwardRates, Level};
use super::shared::{lock, Shared};

mod outage;

use outage::Outages;
pub use outage::OUTAGE_SUMMARY_EVERY;

/// How one Kafka topic is doing, as the forwarding thread last saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TopicReport {
    pub topic: String,
    /// Events read from the buffer for this topic and not yet acknowledged
    /// (in flight or held back).
    pub backlog: u64,
    pub in_flight: u64,
    /// Age of the oldest of them.
    pub oldest_unacknowledged_age_ms: Option<u64>,
    /// Why the topic takes no events now, if it does not.
    pub blocked: Option<String>,
    /// Events of this topic Kafka acknowledged since the forwarding
    /// thread's previous report (the thread's count; a restarted thread
    /// starts again at 0, so the totals are kept by Telemetry).
    #[serde(skip)]
    pub acknowledged: u64,
    /// Events of this topic Kafka acknowledged since the bridge started
    /// (filled in by Telemetry).
    pub forwarded: u64,
    /// Of those, per second over the last [`RATE_WINDOW`](super::RATE_WINDOW) (filled in by
    /// Telemetry).
    pub forwarded_per_sec: f64,
}

/// Kafka as the bridge sees it.
pub struct KafkaTelemetry {
    shared: Arc<Shared>,
    reachable: Mutex<Result<(), String>>,
    /// librdkafka problems by kind: when last logged, and how many
    /// repeats were folded since.
    client_problems: Mutex<BTreeMap<String, (Instant, u64)>>,
    topics: Mutex<Vec<TopicReport>>,
    /// A Kafka outage in progress, and the drain after one: what the log
    /// says about it is one WARN, a summary a minute, one INFO.
    outages: Outages,
    /// Kafka topics whose trouble (blocked, delivery failures) was logged,
    /// and since when: their recovery is logged once, the rest is not.
    topic_trouble: Mutex<BTreeMap<String, Instant>>,
    receive_to_ack: AtomicHistogram,
    /// Acknowledged events per Kafka topic and their rates, for /status.
    forwarding: Mutex<ForwardRates>,
    /// Kafka refused the bridge's settings: no restart mends it.
    misconfigured: Mutex<Option<String>>,
    events_forwarded: Counter,
    made_forwarded: Counter,
    delivery_errors: Counter,
    client_errors: Counter,
    producer_restarts: Counter,
    /// Per Kafka topic.
    dead_lettered: Family<TopicLabel, Counter>,
}

impl KafkaTelemetry {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        KafkaTelemetry {
            shared: shared.clone(),
            reachable: Mutex::new(Err("not connected yet".into())),
            client_problems: Mutex::default(),
            topics: Mutex::default(),
            outages: Outages::new(shared),
            topic_trouble: Mutex::default(),
            receive_to_ack: AtomicHistogram::new(&LATENCY_BUCKETS),
            forwarding: Mutex::default(),
            misconfigured: Mutex::default(),
            events_forwarded: Counter::default(),
            made_forwarded: Counter::default(),
            delivery_errors: Counter::default(),
            client_errors: Counter::default(),
            producer_restarts: Counter::default(),
            dead_lettered: Family::default(),
        }
    }

    /// What the probe (or a fatal error) says of Kafka. Going from
    /// reachable to not starts an outage (`outage.rs`);
    /// back again ends it.
    pub fn reachable(&self, reachable: Result<(), String>) {
        let was = std::mem::replace(&mut *lock(&self.reachable), reachable.clone());
        match reachable {
            Ok(()) => {
                if !self.outages.ended(self.events_forwarded.get()) && was.is_err() {
                    tracing::info!("Kafka reachable");
                }
            }
            Err(reason) => self
                .outages
                .started(&reason, self.oldest_unacknowledged_secs()),
        }
    }

    /// Age of the oldest event read and not yet acknowledged, any topic.
    fn oldest_unacknowledged_secs(&self) -> Option<u64> {
        lock(&self.topics)
            .iter()
            .filter_map(|t| t.oldest_unacknowledged_age_ms)
            .max()
            .map(|ms| ms / 1000)
    }

    /// An error or warning from the Kafka client itself (a broker down, a
    /// connection refused). Every one is counted. During an outage they
    /// are folded into its summaries; otherwise one line per kind a minute,
    /// with how many repeats were folded into it. librdkafka's "all
    /// brokers down" starts an outage (the probe may take a while to
    /// notice).
    pub fn client_problem(&self, kind: &str, message: &str) {
        self.client_errors.inc();
        if kind == "AllBrokersDown" {
            *lock(&self.reachable) = Err(format!("all brokers down: {message}"));
            self.outages.started(
                &format!("all brokers down: {message}"),
                self.oldest_unacknowledged_secs(),
            );
        }
        if self.outages.fold(Some(format!("{kind}: {message}"))) {
            return;
        }
        let mut problems = lock(&self.client_problems);
        // Bounded: kinds are librdkafka's error codes and log facilities.
        if problems.len() > 256 {
            problems.clear();
        }
        match problems.get_mut(kind) {
            Some((logged, folded)) if logged.elapsed() < Duration::from_secs(60) => *folded += 1,
            _ => {
                let folded = problems.get(kind).map_or(0, |(_, n)| *n);
                problems.insert(kind.to_owned(), (Instant::now(), 0));
                drop(problems);
                tracing::warn!(target: "librdkafka", kind, error = message, repeats_folded = folded, "Kafka client problem (repeats within a minute are counted in gkb_kafka_client_errors_total, not logged)");
                self.shared.problem(
                    Level::Warn,
                    "kafka",
                    "Kafka client problem",
                    &format_args!("{kind}: {message}"),
                );
            }
        }
    }

    /// Records were acknowledged by Kafka (one batch of delivery reports,
    /// by their receive times): each one's receive → acknowledged time
    /// goes into the latency histogram.
    pub fn acknowledged(&self, received_at_ms: &[u64]) {
        // Per acknowledged record: three relaxed atomic adds, no lock.
        let now_ms = crate::now_ms();
        for at in received_at_ms {
            let ms = now_ms.saturating_sub(*at);
            self.receive_to_ack.observe(ms as f64 / 1000.0);
        }
    }

    /// The forwarding thread's view of every routed Kafka topic (once a
    /// second; also the clock of the outage summaries).
    pub fn topics_report(&self, mut reports: Vec<TopicReport>) {
        {
            let mut rates = lock(&self.forwarding);
            rates.add(
                Instant::now(),
                reports.iter().map(|r| (r.topic.as_str(), r.acknowledged)),
                self.events_forwarded.get(),
            );
            for report in &mut reports {
                report.forwarded = rates.total(&report.topic);
                report.forwarded_per_sec = rates.per_sec(Some(&report.topic));
            }
        }
        *lock(&self.topics) = reports;
        self.outages.tick(
            self.oldest_unacknowledged_secs(),
            self.events_forwarded.get(),
        );
    }

    /// /status's `forwarded`: events Kafka acknowledged since start (all
    /// topics, `gkb_events_forwarded_total`) and per second over the
    /// last [`RATE_WINDOW`](super::RATE_WINDOW).
    pub fn forwarded_report(&self) -> serde_json::Value {
        serde_json::json!({
            "total": self.events_forwarded.get(),
            "per_sec": lock(&self.forwarding).per_sec(None),
        })
    }

    /// A topic takes nothing (missing, refused): one WARN until it takes
    /// events again, however often the retries find it still blocked.
    pub fn topic_blocked(&self, topic: &str, reason: &str, retry_in: Duration) {
        if lock(&self.topic_trouble)
            .insert(topic.to_owned(), Instant::now())
            .is_some()
        {
            return;
        }
        tracing::warn!(
            kafka_topic = topic,
            reason,
            retry_in_ms = retry_in.as_millis() as u64,
            "Kafka topic blocked; its events wait in the buffer while other topics flow"
        );
        self.shared.problem(
            Level::Warn,
            "kafka",
            "Kafka topic blocked",
            &format_args!("{topic}: {reason}"),
        );
    }

    /// A topic takes events again: one INFO if its trouble was logged.
    pub fn topic_recovered(&self, topic: &str) {
        if let Some(since) = lock(&self.topic_trouble).remove(topic) {
            tracing::info!(
                kafka_topic = topic,
                blocked_secs = since.elapsed().as_secs(),
                "Kafka topic takes events again"
            );
        }
    }

    /// librdkafka reported a fatal error; the producer is rebuilt.
    pub fn producer_fatal(&self, reason: &str, restart_in: Duration) {
        self.producer_restarts.inc();
        tracing::error!(
            reason,
            restart_in_ms = restart_in.as_millis() as u64,
            "fatal Kafka producer error: restarting the producer"
        );
        self.shared.problem(
            Level::Error,
            "kafka",
            "fatal Kafka producer error: restarting the producer",
            &reason,
        );
        self.reachable(Err(format!("fatal producer error: {reason}")));
    }

    /// Kafka refuses the bridge's settings: forwarding stops and /healthz
    /// says why.
    pub fn producer_misconfigured(&self, reason: &str) {
        tracing::error!(
            reason,
            "Kafka producer stopped: fix the [kafka] settings and restart"
        );
        self.shared.problem(
            Level::Error,
            "kafka",
            "Kafka producer stopped: fix the [kafka] settings and restart",
            &reason,
        );
        *lock(&self.misconfigured) = Some(format!("kafka producer stopped: {reason}"));
    }

    /// Records the bridge made (snapshots, backfill) acknowledged by Kafka
    /// and removed from the buffer.
    pub fn made_forwarded(&self, n: u64) {
        if n > 0 {
            self.made_forwarded.inc_by(n);
        }
    }

    pub fn events_forwarded(&self, n: u64) {
        self.events_forwarded.inc_by(n);
    }

    /// A failed delivery. Every one is counted; only the first of a burst
    /// (`first`) is logged, the rest go into the same rewind, and none
    /// during a Kafka outage (its summaries count them).
    pub fn delivery_failed(
        &self,
        seq: u64,
        kafka_topic: &str,
        error: &dyn std::fmt::Display,
        first: bool,
    ) {
        self.delivery_errors.inc();
        if self.outages.fold(None) {
            return;
        }
        // One line per topic until it recovers.
        if first
            && lock(&self.topic_trouble)
                .insert(kafka_topic.to_owned(), Instant::now())
                .is_none()
        {
            tracing::warn!(seq, kafka_topic, error = %error, "Kafka delivery failed; it stays in the buffer and is sent again after a backoff");
            self.shared.problem(
                Level::Warn,
                "kafka",
                "Kafka delivery failed; it stays in the buffer",
                &format_args!("{kafka_topic}: {error}"),
            );
        }
    }

    pub fn dead_lettered(&self, seq: u64, kafka_topic: &str, reason: &str) {
        self.dead_lettered
            .get_or_create(&TopicLabel {
                topic: kafka_topic.to_owned(),
            })
            .inc();
        tracing::error!(
            seq,
            kafka_topic,
            reason,
            "Kafka refused an event for good; moved to the dead-letter area"
        );
        self.shared.problem(
            Level::Error,
            "kafka",
            "Kafka refused an event for good; moved to the dead-letter area",
            &format_args!("{kafka_topic}: {reason}"),
        );
    }

    /// Failures no actor restart can mend (/healthz).
    pub fn misconfigured(&self) -> Option<String> {
        lock(&self.misconfigured).clone()
    }

    /// Events Kafka acknowledged since start.
    pub fn forwarded(&self) -> u64 {
        self.events_forwarded.get()
    }

    /// Events whose delivery failed since start (each retried).
    pub fn delivery_errors(&self) -> u64 {
        self.delivery_errors.get()
    }

    /// Fatal producer errors since start (each a rebuilt producer).
    pub fn producer_restarts(&self) -> u64 {
        self.producer_restarts.get()
    }

    pub fn topics(&self) -> Vec<TopicReport> {
        lock(&self.topics).clone()
    }

    /// /readyz: Kafka not answering.
    pub(super) fn not_ready(&self, reasons: &mut Vec<String>) {
        if let Err(e) = &*lock(&self.reachable) {
            reasons.push(format!("kafka: {e}"));
        }
        if let Some(e) = &*lock(&self.misconfigured) {
            reasons.push(e.clone());
        }
    }

    /// /readyz: topics that take nothing.
    pub(super) fn blocked_topics(&self, reasons: &mut Vec<String>) {
        for topic in lock(&self.topics).iter() {
            if let Some(reason) = &topic.blocked {
                reasons.push(format!("kafka topic {}: {reason}", topic.topic));
            }
        }
    }

    pub fn is_up(&self) -> bool {
        lock(&self.reachable).is_ok()
    }

    /// Per Kafka topic, as the forwarding thread last reported.
    fn register_topics(&self, r: &mut Registry) {
        let topics = lock(&self.topics).clone();
        type TopicGauge = fn(&TopicReport) -> f64;
        let per_topic: [(&str, &str, TopicGauge); 4] = [
            (
                "kafka_topic_backlog_events",
                "Events read for this Kafka topic and not yet acknowledged.",
                |t| t.backlog as f64,
            ),
            (
                "kafka_topic_in_flight_events",
                "Events handed to the Kafka client for this topic and not yet acknowledged.",
                |t| t.in_flight as f64,
            ),
            (
                "kafka_topic_oldest_unacknowledged_age_seconds",
                "Age of the oldest unacknowledged event of this Kafka topic (0 when none).",
                |t| t.oldest_unacknowledged_age_ms.unwrap_or(0) as f64 / 1000.0,
            ),
            (
                "kafka_topic_blocked",
                "1 while this Kafka topic takes no events (see /readyz for why).",
                |t| f64::from(u8::from(t.blocked.is_some())),
            ),
        ];
        for (name, help, value) in per_topic {
            let family = Family::<TopicLabel, Gauge<f64, AtomicU64>>::default();
            for topic in &topics {
                family
                    .get_or_create(&TopicLabel {
                        topic: topic.topic.clone(),
                    })
                    .set(value(topic));
            }
            register(r, name, help, family);
        }
    }

    pub(super) fn register(&self, r: &mut Registry) {
        let counters: [(&str, &str, &Counter); 5] = [
            ("events_forwarded", "Notifications acknowledged by Kafka.", &self.events_forwarded),
            ("made_records_forwarded", "Records the bridge made (observation snapshots, backfill) acknowledged by Kafka.", &self.made_forwarded),
            ("kafka_delivery_errors", "Failed Kafka deliveries (retried from the buffer).", &self.delivery_errors),
            ("producer_restarts", "Kafka producers rebuilt after a fatal error.", &self.producer_restarts),
            ("kafka_client_errors", "Errors and warnings the Kafka client reported (connection failures, brokers down).", &self.client_errors),
        ];
        for (name, help, counter) in counters {
            register(r, name, help, counter.clone());
        }
        // Every routed topic's series exists, at 0 until its first dead
        // letter: an absent series reads as "no data", not as none.
        for topic in lock(&self.topics).iter() {
            let _ = self.dead_lettered.get_or_create(&TopicLabel {
                topic: topic.topic.clone(),
            });
        }
        register(
            r,
            "events_dead_lettered",
            "Notifications Kafka refused for good, by Kafka topic.",
            self.dead_lettered.clone(),
        );
        register(
            r,
            "receive_to_ack_seconds",
            "Time from receiving an event to Kafka acknowledging it.",
            self.receive_to_ack.clone(),
        );
        register(
            r,
            "kafka_up",
            "Whether Kafka answered the last probe.",
            ConstGauge::new(i64::from(u8::from(self.is_up()))),
        );
        self.register_topics(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::init::LogFormat;
    use crate::telemetry::test_support::logged;

    #[test]
    fn a_blocked_topic_is_one_warn_and_one_info() {
        let t = KafkaTelemetry::new(Arc::default());
        let lines = logged(LogFormat::Json, || {
            for _ in 0..50 {
                t.topic_blocked("genesys.events", "TopicAuthorizationFailed", Duration::ZERO);
                t.delivery_failed(3, "genesys.events", &"TopicAuthorizationFailed", true);
            }
            t.topic_recovered("genesys.events");
            t.topic_recovered("genesys.events");
        });
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].contains("Kafka topic blocked") && lines[0].contains("\"WARN\""));
        assert!(lines[1].contains("takes events again") && lines[1].contains("blocked_secs"));
    }
}
