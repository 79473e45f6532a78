//! What every area of telemetry shares: the recorder of recent warnings
//! and errors, and what the components lend telemetry to read (the
//! buffer's view, the collectors of their own metrics), behind traits
//! defined here so that telemetry imports no component.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use prometheus_client::collector::Collector;

use super::recent::{Level, Problem, RecentProblems};

/// What telemetry reads of the buffer when it reports: the buffer
/// implements it (`buffer/`), telemetry holds it as a trait object.
pub trait BufferView: Send + Sync {
    /// Events waiting for Kafka.
    fn waiting(&self) -> u64;
    /// Gap records the buffer keeps.
    fn gaps_recorded(&self) -> u64;
    /// Why the buffer refuses or loses events now, if it does (`/readyz`).
    fn problems(&self) -> Vec<String>;
}

/// Shared by the areas of [`super::Telemetry`].
#[derive(Default)]
pub struct Shared {
    recent_problems: Mutex<RecentProblems>,
    buffer: Mutex<Option<Arc<dyn BufferView>>>,
    collectors: Mutex<Vec<Arc<dyn Collector>>>,
}

impl Shared {
    /// Keeps a warning or error for /status beside its log line: called
    /// at telemetry's `warn!` and `error!` sites with the line's fixed
    /// message and its varying part, texts already fit for the log
    /// (channel ids are masked once more on the way in).
    pub fn problem(
        &self,
        level: Level,
        component: impl Into<String>,
        message: &'static str,
        detail: &dyn std::fmt::Display,
    ) {
        lock(&self.recent_problems).record(
            SystemTime::now(),
            level,
            component.into(),
            message,
            &detail.to_string(),
        );
    }

    /// The newest warnings and errors, newest first.
    pub fn recent_problems(&self) -> Vec<Problem> {
        lock(&self.recent_problems).newest_first()
    }

    pub fn attach_buffer(&self, buffer: Arc<dyn BufferView>) {
        *lock(&self.buffer) = Some(buffer);
    }

    /// The buffer's view, once attached.
    pub fn buffer(&self) -> Option<Arc<dyn BufferView>> {
        lock(&self.buffer).clone()
    }

    /// Events in the buffer waiting for Kafka (0 before it is attached).
    pub fn backlog(&self) -> u64 {
        self.buffer().map_or(0, |b| b.waiting())
    }

    pub fn add_collector(&self, collector: Arc<dyn Collector>) {
        lock(&self.collectors).push(collector);
    }

    pub fn collectors(&self) -> Vec<Arc<dyn Collector>> {
        lock(&self.collectors).clone()
    }
}

/// A poisoned lock only means another thread panicked mid-update of a
/// report; the data is still the best we have.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// RFC 3339 with milliseconds, UTC: as the log and the gap records.
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}
