//! Telling a dead socket from a bridge that was not running.
//!
//! A socket is taken for dead after `heartbeat_timeout` of silence. But a
//! process that was paused (SIGSTOP, a VM pause, a starved CPU) has not
//! been able to read: the frames the service sent meanwhile are queued in
//! the socket, and judging it before reading them would throw them away.
//! So silence is measured only over time the actor could have read: when
//! the watchdog's own tick comes much later than scheduled, the actor was
//! stalled, and the silence clock restarts at the moment it resumed.

use std::time::{Duration, Instant};

pub struct SilenceClock {
    tick: Duration,
    last_frame: Instant,
    last_tick: Instant,
    /// When the actor last came back from a stall.
    resumed_at: Option<Instant>,
}

/// What the watchdog decides at one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Alive,
    /// The tick came this much later than scheduled: the actor was not
    /// running. Read what is queued before judging the socket.
    Resumed {
        stalled_for: Duration,
    },
    /// Silent this long while the actor could read.
    Silent(Duration),
}

impl SilenceClock {
    pub fn new(tick: Duration, now: Instant) -> SilenceClock {
        SilenceClock {
            tick,
            last_frame: now,
            last_tick: now,
            resumed_at: None,
        }
    }

    pub fn frame(&mut self, now: Instant) {
        self.last_frame = now;
    }

    /// Called every `tick`.
    pub fn check(&mut self, now: Instant, timeout: Duration) -> Verdict {
        let since_tick = now.saturating_duration_since(self.last_tick);
        self.last_tick = now;
        // A tick more than half a period late: the actor was stalled. A
        // lower bar than "a whole period" so that a pause shorter than a
        // tick, added to the silence before it, cannot reach the timeout
        // unnoticed; later ticks than this are not timer jitter.
        if since_tick > self.tick + self.tick / 2 {
            self.resumed_at = Some(now);
            return Verdict::Resumed {
                stalled_for: since_tick - self.tick,
            };
        }
        let from = self
            .resumed_at
            .map_or(self.last_frame, |r| r.max(self.last_frame));
        let silent = now.saturating_duration_since(from);
        if silent > timeout {
            Verdict::Silent(silent)
        } else {
            Verdict::Alive
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_secs(5);
    const TIMEOUT: Duration = Duration::from_secs(20);

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn silence_while_running_is_death() {
        let t0 = Instant::now();
        let mut clock = SilenceClock::new(TICK, t0);
        for n in 1..=4 {
            assert_eq!(clock.check(t0 + s(5 * n), TIMEOUT), Verdict::Alive);
        }
        assert_eq!(clock.check(t0 + s(25), TIMEOUT), Verdict::Silent(s(25)));
    }

    #[test]
    fn a_pause_is_not_silence() {
        let t0 = Instant::now();
        let mut clock = SilenceClock::new(TICK, t0);
        assert_eq!(clock.check(t0 + s(5), TIMEOUT), Verdict::Alive);
        // Paused for 30 s: the next tick comes at 40 s instead of 10 s.
        assert_eq!(
            clock.check(t0 + s(40), TIMEOUT),
            Verdict::Resumed { stalled_for: s(30) }
        );
        // Queued frames are read after the resume.
        clock.frame(t0 + s(41));
        assert_eq!(clock.check(t0 + s(45), TIMEOUT), Verdict::Alive);
    }

    #[test]
    fn a_pause_shorter_than_a_tick_is_noticed() {
        let t0 = Instant::now();
        let mut clock = SilenceClock::new(TICK, t0);
        for n in 1..=3 {
            assert_eq!(clock.check(t0 + s(5 * n), TIMEOUT), Verdict::Alive);
        }
        // 15 s of silence, then a 4 s pause: the tick comes at 24 s.
        assert_eq!(
            clock.check(t0 + s(24), TIMEOUT),
            Verdict::Resumed { stalled_for: s(4) }
        );
        assert_eq!(clock.check(t0 + s(29), TIMEOUT), Verdict::Alive);
    }

    #[test]
    fn a_dead_socket_found_after_a_pause_is_still_judged_once_the_actor_runs() {
        let t0 = Instant::now();
        let mut clock = SilenceClock::new(TICK, t0);
        assert!(matches!(
            clock.check(t0 + s(40), TIMEOUT),
            Verdict::Resumed { .. }
        ));
        for n in 1..=4 {
            assert_eq!(clock.check(t0 + s(40 + 5 * n), TIMEOUT), Verdict::Alive);
        }
        assert_eq!(clock.check(t0 + s(65), TIMEOUT), Verdict::Silent(s(25)));
    }
}
