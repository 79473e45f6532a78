//! The buffer's own metrics (`gkb_buffer_*`): a `prometheus-client`
//! [`Collector`] that reads the ledger at scrape time, so that whoever
//! serves `/metrics` registers it and knows nothing of what it holds. It
//! holds the ledger only, never the database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::handle::Buffer;
use super::ledger::Shared;

/// Help of `gkb_buffer_flush_seconds`.
const FLUSH_HELP: &str = "Time of the buffer's flushes to disk (sled flush and fsync).";

/// The collector of the buffer's metrics ([`Buffer::metrics`]): gauges,
/// counters (exposed with `_total`) and the flush-time histogram, named
/// under the registry's prefix (`gkb`).
#[derive(Clone)]
pub struct BufferMetrics {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BufferMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferMetrics").finish_non_exhaustive()
    }
}

impl Collector for BufferMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &*self.shared;
        let a = &s.admission;
        let load = |v: &AtomicU64| v.load(Ordering::SeqCst);
        let gauges: [(&str, &str, u64); 17] = [
            (
                "buffer_events",
                "Events in the buffer waiting for Kafka.",
                load(&s.events_len),
            ),
            (
                "buffer_dead_letters",
                "Events in the dead-letter area.",
                load(&s.dead_letter_len),
            ),
            (
                "buffer_quarantined",
                "Entries in the quarantine.",
                load(&s.quarantine_len),
            ),
            (
                "buffer_last_seq",
                "Sequence of the last event appended.",
                s.last_seq(),
            ),
            (
                "buffer_durable_seq",
                "Sequence up to which the buffer is flushed to disk.",
                load(&s.durable_seq),
            ),
            (
                "buffer_held_bytes",
                "Bytes of keys and values the buffer holds.",
                load(&a.held_bytes),
            ),
            (
                "buffer_disk_bytes",
                "Bytes of the buffer's files, last measured.",
                load(&a.disk_bytes),
            ),
            ("buffer_max_bytes", "buffer.max_bytes.", a.max_bytes),
            (
                "buffer_fs_free_bytes",
                "Free bytes on the buffer's filesystem, last measured.",
                load(&a.free_bytes).min(i64::MAX as u64),
            ),
            (
                "buffer_admitting",
                "1 while the buffer takes new events.",
                u64::from(s.refusal().is_none()),
            ),
            (
                "buffer_failing",
                "1 while a storage failure is being recovered.",
                u64::from(s.failing.load(Ordering::SeqCst)),
            ),
            (
                "buffer_reserve_owed",
                "1 while the buffer's reserve file is not in place (released to reopen a full buffer, or no room for it yet).",
                u64::from(a.reserve_owed.load(Ordering::Relaxed)),
            ),
            (
                "buffer_generation",
                "Reopens since start; readers rewind when it changes.",
                load(&s.generation),
            ),
            (
                "buffer_segments",
                "Segments of the buffer on disk (each a sled database; a drained one is deleted).",
                load(&s.segments.segments),
            ),
            (
                "buffer_segments_open",
                "Segments of the buffer open now (the newest and those being read).",
                load(&s.segments.open),
            ),
            (
                "buffer_write_queue_bytes",
                "Bytes of received events waiting for the buffer's writer thread.",
                load(&s.queue.bytes),
            ),
            (
                "buffer_write_queue_peak_bytes",
                "The most bytes that ever waited for the writer thread (a stalled disk shows here).",
                load(&s.queue.peak),
            ),
        ];
        for (name, help, value) in gauges {
            // Floats, as /metrics has always shown these gauges.
            let gauge = ConstGauge::new(value as f64);
            gauge.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        ConstGauge::new(s.queue.oldest_wait().as_secs_f64()).encode(encoder.encode_descriptor(
            "buffer_write_queue_oldest_seconds",
            "How long the oldest received event not yet written has waited for the writer thread (a slow or stalled disk).",
            None,
            MetricType::Gauge,
        )?)?;
        // Named without `_total`: the encoder adds it to counters.
        let counters: [(&str, &str, u64); 8] = [
            (
                "buffer_refused_events",
                "Events refused because the buffer was at its bound or failing.",
                load(&s.refused),
            ),
            (
                "buffer_lost_events",
                "Events accepted, then lost by a storage failure.",
                load(&s.lost),
            ),
            (
                "buffer_restored_events",
                "Unflushed events written back after a reopen.",
                load(&s.restored),
            ),
            (
                "buffer_reopens",
                "Reopens after storage failures.",
                load(&s.reopens),
            ),
            (
                "buffer_unreadable_ranges",
                "Ranges sled could not read, skipped.",
                load(&s.unreadable_ranges),
            ),
            (
                "buffer_samples",
                "Measurements of disk use and free space taken.",
                load(&a.samples),
            ),
            (
                "buffer_write_queue_refused",
                "Events refused because the write queue was at buffer.write_queue_bytes (the disk did not keep up).",
                load(&s.queue.refused),
            ),
            (
                "buffer_segments_deleted",
                "Drained segments deleted, their disk space given back.",
                load(&s.segments.deleted),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        for (name, help, ns) in [
            (
                "buffer_read_cpu_seconds",
                "CPU time spent reading events for Kafka (the forwarding thread's).",
                load(&s.read_cpu_ns),
            ),
            (
                "buffer_remove_cpu_seconds",
                "CPU time spent removing what Kafka acknowledged.",
                load(&s.remove_cpu_ns),
            ),
        ] {
            let counter = ConstCounter::new(ns as f64 / 1e9);
            counter.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        s.flush_seconds.encode(encoder.encode_descriptor(
            "buffer_flush_seconds",
            FLUSH_HELP,
            None,
            MetricType::Histogram,
        )?)
    }
}

impl Buffer {
    /// The buffer's metrics, for a `prometheus-client` registry
    /// (`registry.register_collector(Box::new(buffer.metrics()))`). It
    /// reads the buffer's counters at each scrape and does not keep the
    /// database open.
    pub fn metrics(&self) -> BufferMetrics {
        BufferMetrics {
            shared: self.inner.shared.clone(),
        }
    }
}

/// The collector's exposition alone, as `/metrics` would encode it.
#[cfg(test)]
pub(super) fn render(buffer: &Buffer) -> String {
    let mut registry = prometheus_client::registry::Registry::with_prefix("gkb");
    registry.register_collector(Box::new(buffer.metrics()));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("a String takes it");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of telemetry's rendering that come from the buffer: its
    /// `gkb_buffer_*` series except telemetry's own write-error counter.
    fn buffer_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| {
                let name = l
                    .strip_prefix("# HELP ")
                    .or_else(|| l.strip_prefix("# TYPE "))
                    .unwrap_or(l);
                name.starts_with("gkb_buffer_") && !name.starts_with("gkb_buffer_write_errors")
            })
            .collect()
    }

    #[test]
    fn the_collector_reaches_metrics_through_telemetry_with_its_names_and_types() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = Buffer::open_for_tests(dir.path()).unwrap();
        buffer
            .inner
            .shared
            .auto_reopen
            .store(false, Ordering::SeqCst);
        // Something other than zero wherever a test can make it so.
        for _ in 0..3 {
            buffer.append(1, "v2.a", None, b"{}").unwrap();
        }
        buffer.flush_blocking().unwrap();
        let (records, _) = buffer.read_after(0, 1).unwrap();
        buffer.dead_letter(&records[0], "k", "too large").unwrap();
        buffer.quarantine_frame("not JSON", b"x").unwrap();
        buffer.fail("a test", &"injected");
        assert!(buffer.append(1, "v2.a", None, b"{}").is_err());
        buffer.reopen().unwrap();
        buffer.fail("a test", &"injected again");
        assert!(buffer.append(1, "v2.a", None, b"{}").is_err());

        let telemetry = crate::telemetry::Telemetry::default();
        telemetry.register_collector(Arc::new(buffer.metrics()));
        // The watcher samples the disk every 2 s: compare a rendering
        // that no sample fell into (the collector's, before and after).
        let (ours, theirs) = (0..10)
            .find_map(|_| {
                let before = render(&buffer);
                let theirs = telemetry.render_metrics();
                (render(&buffer) == before).then_some((before, theirs))
            })
            .expect("ten scrapes in a row raced a sample");
        assert_eq!(ours.lines().collect::<Vec<_>>(), buffer_lines(&theirs));

        // The names and types, pinned.
        let types: Vec<&str> = ours
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE gkb_buffer_"))
            .collect();
        assert_eq!(
            types,
            [
                "events gauge",
                "dead_letters gauge",
                "quarantined gauge",
                "last_seq gauge",
                "durable_seq gauge",
                "held_bytes gauge",
                "disk_bytes gauge",
                "max_bytes gauge",
                "fs_free_bytes gauge",
                "admitting gauge",
                "failing gauge",
                "reserve_owed gauge",
                "generation gauge",
                "segments gauge",
                "segments_open gauge",
                "write_queue_bytes gauge",
                "write_queue_peak_bytes gauge",
                "write_queue_oldest_seconds gauge",
                "refused_events_total counter",
                "lost_events_total counter",
                "restored_events_total counter",
                "reopens_total counter",
                "unreadable_ranges_total counter",
                "samples_total counter",
                "write_queue_refused_total counter",
                "segments_deleted_total counter",
                "read_cpu_seconds_total counter",
                "remove_cpu_seconds_total counter",
                "flush_seconds histogram",
            ]
        );
        for line in [
            "gkb_buffer_events 2.0",
            "gkb_buffer_dead_letters 1.0",
            "gkb_buffer_quarantined 1.0",
            "gkb_buffer_admitting 0.0",
            "gkb_buffer_failing 1.0",
            "gkb_buffer_generation 1.0",
            "gkb_buffer_refused_events_total 2",
            "gkb_buffer_reopens_total 1",
            "gkb_buffer_flush_seconds_count 1",
        ] {
            assert!(
                ours.lines().any(|l| l == line),
                "{line} missing from\n{ours}"
            );
        }
    }
}
