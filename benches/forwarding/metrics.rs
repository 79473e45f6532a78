//! Reading the bridge's /metrics: counters, and quantiles from the
//! `gkb_receive_to_ack_seconds` histogram.

use crate::support::metric;

/// The counters the benchmark follows, from one scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub received: f64,
    pub forwarded: f64,
    pub buffered: f64,
    pub dead_lettered: f64,
    /// Events the buffer refused (its bound): a benchmark that meets one
    /// measures nothing.
    pub refused: f64,
}

impl Counters {
    pub fn parse(text: &str) -> Option<Counters> {
        Some(Counters {
            received: metric(text, "gkb_events_received_total")?,
            forwarded: metric(text, "gkb_events_forwarded_total")?,
            buffered: metric(text, "gkb_buffer_events")?,
            dead_lettered: metric(text, "gkb_events_dead_lettered_total").unwrap_or(0.0),
            refused: metric(text, "gkb_buffer_refused_events_total").unwrap_or(0.0)
                + metric(text, "gkb_buffer_write_queue_refused_total").unwrap_or(0.0),
        })
    }
}

pub const HISTOGRAM: &str = "gkb_receive_to_ack_seconds";

/// A cumulative Prometheus histogram: (upper bound, count) sorted by
/// bound, the last bound +Inf; plus `_sum` and `_count`.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Histogram {
    /// The histogram in a scrape; None when the bridge does not export it.
    /// Series with other labels besides `le` are added up.
    pub fn parse(text: &str, name: &str) -> Option<Histogram> {
        let bucket_prefix = format!("{name}_bucket{{");
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        let mut sum = 0.0;
        let mut count = 0.0;
        let mut seen = false;
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            if let Some(labels) = series.strip_prefix(&bucket_prefix) {
                let Some(le) = labels
                    .split(',')
                    .find_map(|l| l.trim().strip_prefix("le=\""))
                    .map(|l| l.trim_end_matches('}').trim_end_matches('"'))
                else {
                    continue;
                };
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    match le.parse::<f64>() {
                        Ok(b) => b,
                        Err(_) => continue,
                    }
                };
                seen = true;
                match buckets.iter_mut().find(|(b, _)| *b == bound) {
                    Some((_, c)) => *c += value,
                    None => buckets.push((bound, value)),
                }
            } else if series == format!("{name}_sum")
                || series.starts_with(&format!("{name}_sum{{"))
            {
                sum += value;
            } else if series == format!("{name}_count")
                || series.starts_with(&format!("{name}_count{{"))
            {
                count += value;
            }
        }
        if !seen {
            return None;
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(Histogram {
            buckets,
            sum,
            count,
        })
    }

    /// What was observed between `earlier` and `self` (same buckets).
    pub fn since(&self, earlier: Option<&Histogram>) -> Histogram {
        let Some(earlier) = earlier else {
            return self.clone();
        };
        let buckets = self
            .buckets
            .iter()
            .map(|&(bound, c)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(b, _)| *b == bound)
                    .map_or(0.0, |(_, c)| *c);
                (bound, c - before)
            })
            .collect();
        Histogram {
            buckets,
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// The q-quantile, interpolated linearly within its bucket (from the
    /// previous bucket's bound, or 0, to this bucket's bound). A quantile
    /// in the +Inf bucket is reported as `Beyond(last finite bound)`.
    pub fn quantile(&self, q: f64) -> Quantile {
        let total = self.buckets.last().map_or(0.0, |(_, c)| *c);
        if total <= 0.0 {
            return Quantile::NoData;
        }
        let target = q * total;
        let mut lower = 0.0;
        let mut below = 0.0;
        for &(bound, cumulative) in &self.buckets {
            if cumulative >= target && cumulative > below {
                if bound.is_infinite() {
                    return Quantile::Beyond(lower);
                }
                let fraction = (target - below) / (cumulative - below);
                return Quantile::Value(lower + (bound - lower) * fraction);
            }
            lower = bound;
            below = cumulative;
        }
        Quantile::Beyond(lower)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quantile {
    NoData,
    /// Seconds.
    Value(f64),
    /// Above this many seconds (in the +Inf bucket).
    Beyond(f64),
}

impl Quantile {
    pub fn seconds(self) -> Option<f64> {
        match self {
            Quantile::Value(s) => Some(s),
            _ => None,
        }
    }
}

impl std::fmt::Display for Quantile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quantile::NoData => write!(f, "no samples"),
            Quantile::Value(s) => write!(f, "{:.2} ms", s * 1000.0),
            Quantile::Beyond(s) => write!(f, "> {:.0} ms (+Inf bucket)", s * 1000.0),
        }
    }
}

/// Self-checks of the quantile arithmetic, run at the start of every
/// benchmark (cheap, and a harness=false target has no #[test]s).
pub fn self_check() {
    let text = "\
# TYPE gkb_receive_to_ack_seconds histogram
gkb_receive_to_ack_seconds_bucket{le=\"0.005\"} 50
gkb_receive_to_ack_seconds_bucket{le=\"0.01\"} 90
gkb_receive_to_ack_seconds_bucket{le=\"0.02\"} 100
gkb_receive_to_ack_seconds_bucket{le=\"+Inf\"} 100
gkb_receive_to_ack_seconds_sum 0.6
gkb_receive_to_ack_seconds_count 100
";
    let h = Histogram::parse(text, HISTOGRAM).expect("parses");
    assert_eq!(h.count, 100.0);
    assert_eq!(h.quantile(0.5), Quantile::Value(0.005));
    let p70 = h.quantile(0.7).seconds().unwrap();
    assert!((p70 - 0.0075).abs() < 1e-9, "{p70}");
    let p99 = h.quantile(0.99).seconds().unwrap();
    assert!((p99 - 0.019).abs() < 1e-9, "{p99}");
    let earlier = Histogram::parse(&text.replace("} 100", "} 90"), HISTOGRAM).unwrap();
    let d = h.since(Some(&earlier));
    assert_eq!(d.buckets.last().unwrap().1, 10.0);
    assert!(Histogram::parse("gkb_events_received_total 3\n", HISTOGRAM).is_none());
    let inf = "gkb_receive_to_ack_seconds_bucket{le=\"0.1\"} 1\ngkb_receive_to_ack_seconds_bucket{le=\"+Inf\"} 10\n";
    assert_eq!(
        Histogram::parse(inf, HISTOGRAM).unwrap().quantile(0.99),
        Quantile::Beyond(0.1)
    );
}
