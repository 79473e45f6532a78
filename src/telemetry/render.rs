//! `/metrics` as text: the registry each scrape is built in, the series
//! about the bridge as a whole, and the encoding, components' collectors
//! included.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::metrics::register;

/// An empty registry whose series are all named `gkb_…`.
pub fn registry() -> Registry {
    Registry::with_prefix("gkb")
}

/// The series about the bridge as a whole.
pub fn overall(r: &mut Registry, ready: bool, uptime: Duration) {
    // The whole of /readyz in one series, so that one alert covers every
    // reason (a token never granted included), not a guess from the parts.
    register(
        r,
        "ready",
        "Whether /readyz answers 200 (1) or names reasons (0).",
        ConstGauge::new(i64::from(ready)),
    );
    register(
        r,
        "uptime_seconds",
        "Seconds since start.",
        ConstGauge::new(uptime.as_secs() as i64),
    );
}

/// Prometheus text exposition (format 0.0.4) of `r` and `collectors`.
pub fn encode(mut r: Registry, collectors: Vec<Arc<dyn Collector>>) -> String {
    for collector in collectors {
        r.register_collector(Box::new(Lent(collector)));
    }
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &r);
    out
}

/// A component's collector, lent to one scrape's registry.
#[derive(Debug)]
struct Lent(Arc<dyn Collector>);

impl Collector for Lent {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}
