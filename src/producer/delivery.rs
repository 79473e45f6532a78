//! Delivery reports: the librdkafka client context, whose callbacks run on
//! librdkafka's polling thread and only collect `(record, result)` for the
//! forwarding thread (waking it once per batch), and pass librdkafka's own
//! errors and logs to telemetry.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};

use super::failure::refused_alone;
use super::inbox::{Event, Waker};
use super::record;
use crate::buffer::Record;
use crate::telemetry::Telemetry;

/// What a librdkafka client built for the bridge looks like.
/// librdkafka's polling thread runs the delivery callback, which only
/// collects reports and wakes the forwarding thread once per batch.
pub type KafkaProducer = ThreadedProducer<DeliveryContext>;

/// What the delivery callback needs back: never a copy of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub seq: u64,
    pub received_at_ms: u64,
    /// Index of its Kafka topic among the routed ones.
    pub topic: u32,
    pub partition: i32,
    /// What it counts against the byte budget.
    pub bytes: u32,
    /// Sent while its lane was in single-record mode: a size refusal is
    /// then about this record alone.
    pub alone: bool,
    /// A record the bridge made (a snapshot, backfill), not a received
    /// notification: counted apart, and not in the latency histogram.
    pub made: bool,
    /// [`Record::event_id`]: reported to a cluster's coordinator once
    /// Kafka acknowledged it.
    pub id: u64,
}

/// A delivery report: which record, and Kafka's answer.
#[derive(Debug)]
pub struct Report {
    pub sent: Box<InFlight>,
    pub result: Result<(), KafkaError>,
    /// Where Kafka wrote it (acknowledged records).
    pub offset: i64,
    /// The record itself, read back from the report, when Kafka refused it
    /// for good ([`refused_alone`]): what is dead-lettered.
    pub refused: Option<Record>,
}

/// The librdkafka context: collects delivery reports for the forwarding
/// thread, waking it once per batch of reports rather than once per record
/// (a message and a wake-up per report cost a context switch each, a tenth
/// of the bridge's CPU at full speed), and passes librdkafka's own errors
/// and logs to telemetry, which folds their repeats (a broker outage
/// otherwise prints several lines a second).
pub struct DeliveryContext {
    reports: Mutex<Vec<Report>>,
    waker: Waker,
    telemetry: Arc<Telemetry>,
}

impl DeliveryContext {
    pub fn new(events: Sender<Event>, telemetry: Arc<Telemetry>) -> Self {
        DeliveryContext {
            reports: Default::default(),
            waker: Waker::for_reports(events),
            telemetry,
        }
    }

    /// The reports collected since the last take, oldest first.
    pub fn take_reports(&self) -> Vec<Report> {
        // Cleared before taking: a report pushed after the take wakes again.
        self.waker.woken();
        std::mem::take(&mut *self.reports.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel::*;
        match level {
            Emerg | Alert | Critical | Error | Warning => {
                self.telemetry.kafka.client_problem(facility, message)
            }
            Notice | Info | Debug => {
                tracing::debug!(target: "librdkafka", facility, detail = message)
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let kind = match &error {
            KafkaError::Global(code) => format!("{code:?}"),
            other => other.to_string(),
        };
        self.telemetry.kafka.client_problem(&kind, reason);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<InFlight>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<InFlight>) {
        let report = match result {
            Ok(message) => Report {
                sent,
                result: Ok(()),
                offset: message.offset(),
                refused: None,
            },
            Err((error, message)) => {
                // The report carries the record (payload and headers): a
                // record refused for good is copied here, so it is
                // dead-lettered without reading the buffer again. Rare,
                // so the copy costs nothing at full speed.
                let refused = refused_alone(error, sent.alone)
                    .then(|| record::from_message(sent.seq, sent.received_at_ms, message))
                    .flatten();
                Report {
                    sent,
                    result: Err(error.clone()),
                    offset: -1,
                    refused,
                }
            }
        };
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(report);
        self.waker.wake();
    }
}
