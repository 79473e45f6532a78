//! Telemetry of the buffer as its users meet it: appends that fail (one
//! line when failures start, every one counted), reads that fail (a line
//! a minute), entries moved to the quarantine. The buffer's own figures
//! are its collector's ([`super::Telemetry::register_collector`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::metrics::register;
use super::recent::Level;
use super::shared::{lock, Shared};

pub struct BufferTelemetry {
    shared: Arc<Shared>,
    /// Set while appends to the buffer fail; the fast path checks the flag.
    failing: AtomicBool,
    error: Mutex<Option<String>>,
    /// When a failing buffer read was last logged.
    read_logged: Mutex<Option<Instant>>,
    write_errors: Counter,
    quarantined: Counter,
}

impl BufferTelemetry {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        BufferTelemetry {
            shared,
            failing: AtomicBool::new(false),
            error: Mutex::default(),
            read_logged: Mutex::default(),
            write_errors: Counter::default(),
            quarantined: Counter::default(),
        }
    }

    /// A write to the buffer failed. Every one is counted; one line is
    /// logged when failures start (a full disk fails every event).
    pub fn write_failed(&self, error: &dyn std::fmt::Display) {
        self.write_errors.inc();
        *lock(&self.error) = Some(error.to_string());
        if !self.failing.swap(true, Ordering::SeqCst) {
            tracing::error!(error = %error, "cannot write to the buffer; failures are counted in gkb_buffer_write_errors_total until writes succeed again");
            self.shared
                .problem(Level::Error, "buffer", "cannot write to the buffer", error);
        }
    }

    /// An append succeeded: clears a write failure shown on /readyz.
    pub fn write_ok(&self) {
        if self.failing.swap(false, Ordering::SeqCst) {
            *lock(&self.error) = None;
            tracing::info!("buffer writes succeed again");
        }
    }

    /// Reading the buffer failed; logged at most once a minute.
    pub fn read_failed(&self, error: &dyn std::fmt::Display) {
        let mut logged = lock(&self.read_logged);
        if logged.map_or(true, |at| at.elapsed() >= Duration::from_secs(60)) {
            *logged = Some(Instant::now());
            tracing::error!(error = %error, "cannot read the buffer; retrying");
            self.shared
                .problem(Level::Error, "buffer", "cannot read the buffer", error);
        }
    }

    pub fn quarantined(&self, n: usize) {
        self.quarantined.inc_by(n as u64);
        tracing::error!(count = n, "undecodable buffer entries moved to quarantine");
        self.shared.problem(
            Level::Error,
            "buffer",
            "undecodable buffer entries moved to quarantine",
            &format_args!("{n} entries"),
        );
    }

    /// /readyz: appends failing, or the buffer's own problems.
    pub(super) fn not_ready(&self, reasons: &mut Vec<String>) {
        if let Some(e) = &*lock(&self.error) {
            reasons.push(format!("buffer: {e}; received events are being lost"));
        }
        if let Some(buffer) = self.shared.buffer() {
            reasons.extend(
                buffer
                    .problems()
                    .into_iter()
                    .map(|p| format!("buffer: {p}")),
            );
        }
    }

    pub(super) fn register(&self, r: &mut Registry) {
        register(
            r,
            "events_quarantined",
            "Buffer entries that could not be decoded.",
            self.quarantined.clone(),
        );
        register(
            r,
            "buffer_write_errors",
            "Received events the buffer could not store.",
            self.write_errors.clone(),
        );
    }
}
