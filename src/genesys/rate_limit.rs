//! The client-side limit on REST calls (`genesys.api_requests_per_minute`).
//!
//! Genesys allows about 300 requests per minute per client-credentials
//! token and answers 429 beyond. A 429 costs more than waiting: the caller
//! retries, the channel update or listing behind it is late, and a burst
//! of them (a start-up with 5,000 topics: listing pages, channels,
//! subscriptions) can starve the calls that keep sockets alive. So every
//! REST call first takes a slot here: one limiter per `GenesysApi` (all its
//! clones share it), which is every connection of the bridge, since they
//! all use the one token of the one OAuth client.
//!
//! It is a GCRA (a token bucket kept as one "theoretical arrival time"):
//! slots are reserved in call order, so waiters leave one by one at the
//! configured pace instead of waking together. A burst of a tenth of the
//! rate is allowed, so that any sliding minute holds at most 1.1 × the
//! rate: 264 for the default 240, under the service's 300.
//!
//! A 429 that still comes (another process on the same OAuth client, a
//! lower limit on the service) pauses every caller: for `Retry-After`
//! when given, else for a doubling delay with jitter. Each is counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

/// The longest `Retry-After` honoured: the official SDKs give up beyond
/// it; an answer asking for more waits this long and tries again.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(180);

/// First pause after a 429 without `Retry-After`.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// Longest pause after a 429 without `Retry-After`.
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Shared by every clone of one `GenesysApi`.
#[derive(Debug)]
pub struct RateLimiter {
    /// Time between two slots at the steady rate; `None`: no limit.
    interval: Option<Duration>,
    /// How far ahead of the steady pace a burst may run.
    tolerance: Duration,
    state: Mutex<State>,
    rate_limited: AtomicU64,
    waited_millis: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// When the next slot is due at the steady pace.
    next_due: Instant,
    /// No call before this (after a 429).
    paused_until: Option<Instant>,
    /// 429s in a row without `Retry-After`, for the doubling pause.
    pauses_in_a_row: u32,
}

impl RateLimiter {
    /// At most `per_minute` calls in a steady minute (plus a burst of a tenth).
    pub fn per_minute(per_minute: u32) -> Self {
        let per_minute = per_minute.max(1);
        let interval = Duration::from_secs(60) / per_minute;
        let burst = (per_minute / 10).max(1);
        RateLimiter {
            interval: Some(interval),
            tolerance: interval * (burst - 1),
            ..RateLimiter::unlimited()
        }
    }

    /// No limit; 429s are still paused on and counted.
    pub fn unlimited() -> Self {
        RateLimiter {
            interval: None,
            tolerance: Duration::ZERO,
            state: Mutex::new(State {
                next_due: Instant::now(),
                paused_until: None,
                pauses_in_a_row: 0,
            }),
            rate_limited: AtomicU64::new(0),
            waited_millis: AtomicU64::new(0),
        }
    }

    /// Waits for this call's slot.
    pub async fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            self.waited_millis
                .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
            actix_rt::time::sleep(wait).await;
        }
    }

    /// Reserves the next slot and says how long until it.
    fn reserve(&self, now: Instant) -> Duration {
        let mut state = lock(&self.state);
        let mut at = now;
        if let Some(until) = state.paused_until {
            if until > now {
                at = until;
            } else {
                state.paused_until = None;
            }
        }
        if let Some(interval) = self.interval {
            let due = state.next_due.max(now);
            // A slot may be taken up to `tolerance` ahead of its due time.
            let earliest = due.checked_sub(self.tolerance).unwrap_or(now);
            at = at.max(earliest);
            state.next_due = due.max(at) + interval;
        }
        at - now
    }

    /// A 429 came back: counts it, pauses every caller, and says for how long.
    pub fn rate_limited(&self, retry_after: Option<Duration>) -> Duration {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut state = lock(&self.state);
        let pause = match retry_after {
            Some(asked) => asked.min(MAX_RETRY_AFTER),
            None => {
                let step = FIRST_PAUSE
                    .saturating_mul(1u32 << state.pauses_in_a_row.min(10))
                    .min(MAX_PAUSE);
                state.pauses_in_a_row = state.pauses_in_a_row.saturating_add(1);
                let half = step / 2;
                half + rand::thread_rng().gen_range(Duration::ZERO..=step - half)
            }
        };
        let until = now + pause;
        if state.paused_until.map_or(true, |p| p < until) {
            state.paused_until = Some(until);
        }
        // No burst right after the pause: the bucket starts empty.
        if self.interval.is_some() {
            state.next_due = state.next_due.max(until + self.tolerance);
        }
        pause
    }

    /// A call went through: the next 429 starts the doubling again.
    pub fn succeeded(&self) {
        lock(&self.state).pauses_in_a_row = 0;
    }

    /// 429s received.
    pub fn rate_limited_total(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    /// Time calls waited for their slot, in total.
    pub fn waited(&self) -> Duration {
        Duration::from_millis(self.waited_millis.load(Ordering::Relaxed))
    }
}

/// The limiter's own series on `/metrics` (`gkb_api_rate_limited_total`,
/// `gkb_api_rate_limit_wait_seconds_total`), read at each scrape.
impl Collector for RateLimiter {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let limited = ConstCounter::new(self.rate_limited_total());
        limited.encode(encoder.encode_descriptor(
            "api_rate_limited",
            "REST calls Genesys answered with 429",
            None,
            limited.metric_type(),
        )?)?;
        let waited = ConstCounter::new(self.waited().as_secs_f64());
        waited.encode(encoder.encode_descriptor(
            "api_rate_limit_wait_seconds",
            "Time REST calls waited before being sent: the client-side pace and the pauses after a 429",
            None,
            waited.metric_type(),
        )?)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots granted within `window` when callers ask as fast as they can.
    fn slots_within(limiter: &RateLimiter, start: Instant, window: Duration) -> usize {
        let mut granted = 0;
        loop {
            let wait = limiter.reserve(start);
            if wait >= window {
                return granted;
            }
            granted += 1;
        }
    }

    #[test]
    fn any_minute_holds_at_most_the_rate_and_its_burst() {
        let limiter = RateLimiter::per_minute(240);
        let start = Instant::now();
        // 24 at once, then one every 250 ms: 24 + 239 slots start within
        // the first minute.
        assert_eq!(slots_within(&limiter, start, Duration::from_nanos(1)), 24);
        let limiter = RateLimiter::per_minute(240);
        let in_a_minute = slots_within(&limiter, start, Duration::from_secs(60));
        assert!((250..=264).contains(&in_a_minute), "{in_a_minute}");
    }

    #[test]
    fn waiters_leave_one_by_one_at_the_pace() {
        let limiter = RateLimiter::per_minute(60);
        let start = Instant::now();
        let waits: Vec<Duration> = (0..10).map(|_| limiter.reserve(start)).collect();
        // Burst of 6 (a tenth of 60), then one a second.
        assert_eq!(waits[..6], [Duration::ZERO; 6]);
        assert_eq!(waits[6], Duration::from_secs(1));
        assert_eq!(waits[9], Duration::from_secs(4));
    }

    #[test]
    fn a_429_pauses_every_caller_and_is_counted() {
        let limiter = RateLimiter::per_minute(240);
        let pause = limiter.rate_limited(Some(Duration::from_secs(3)));
        assert_eq!(pause, Duration::from_secs(3));
        let wait = limiter.reserve(Instant::now());
        assert!(wait > Duration::from_millis(2_900), "{wait:?}");
        // Without Retry-After: a doubling pause with jitter.
        let unlimited = RateLimiter::unlimited();
        let first = unlimited.rate_limited(None);
        let second = unlimited.rate_limited(None);
        let third = unlimited.rate_limited(None);
        assert!(
            (Duration::from_millis(500)..=FIRST_PAUSE).contains(&first),
            "{first:?}"
        );
        assert!((Duration::from_secs(1)..=Duration::from_secs(2)).contains(&second));
        assert!((Duration::from_secs(2)..=Duration::from_secs(4)).contains(&third));
        unlimited.succeeded();
        assert!(unlimited.rate_limited(None) <= FIRST_PAUSE);
        assert_eq!(unlimited.rate_limited_total(), 4);
        assert_eq!(limiter.rate_limited_total(), 1);
        // A huge Retry-After is capped.
        assert_eq!(
            unlimited.rate_limited(Some(Duration::from_secs(3_600))),
            MAX_RETRY_AFTER
        );
    }
}
