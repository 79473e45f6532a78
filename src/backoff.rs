//! Exponential backoff with jitter, validated when built.

use std::time::Duration;

use rand::Rng;

/// Why a backoff could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidBackoff {
    #[error("the minimum delay must be above zero")]
    ZeroMinimum,
    #[error("the minimum delay ({min:?}) is above the maximum ({max:?})")]
    MinAboveMax { min: Duration, max: Duration },
}

/// Delays between retries: doubling from `min` up to `max`, each drawn at
/// random from the upper half of the current step so that many bridges
/// (or many channels of one bridge) that failed together do not retry
/// together.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Result<Self, InvalidBackoff> {
        if min.is_zero() {
            return Err(InvalidBackoff::ZeroMinimum);
        }
        if min > max {
            return Err(InvalidBackoff::MinAboveMax { min, max });
        }
        Ok(Backoff {
            min,
            max,
            attempt: 0,
        })
    }

    /// The delay before the next attempt; each call moves one step up.
    pub fn next_delay(&mut self) -> Duration {
        let step = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=step - half)
    }

    /// The next delay, but never more than `room` (the time left before a
    /// hard deadline, such as the end of a channel): a retry that must
    /// not run past the deadline. The step still moves up, so that the
    /// retries after the deadline back off as before.
    pub fn next_delay_within(&mut self, room: Duration) -> Duration {
        self.next_delay().min(room)
    }

    /// Back to the first step, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_within_room_never_exceeds_it_and_the_step_still_grows() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).unwrap();
        for _ in 0..5 {
            assert!(b.next_delay_within(Duration::from_millis(300)) <= Duration::from_millis(300));
        }
        assert_eq!(b.next_delay_within(Duration::ZERO), Duration::ZERO);
        // Six steps taken: the next is drawn from 32..64 s, the room is larger.
        let d = b.next_delay_within(Duration::from_secs(3600));
        assert!(d >= Duration::from_secs(30), "{d:?}");
    }

    #[test]
    fn rejects_nonsense_bounds() {
        let s = Duration::from_secs(1);
        assert_eq!(
            Backoff::new(Duration::ZERO, s).unwrap_err(),
            InvalidBackoff::ZeroMinimum
        );
        assert!(matches!(
            Backoff::new(s * 2, s),
            Err(InvalidBackoff::MinAboveMax { .. })
        ));
    }

    #[test]
    fn grows_within_bounds_and_resets() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let mut b = Backoff::new(min, max).unwrap();
        let mut last_step = Duration::ZERO;
        for attempt in 0..40u32 {
            let d = b.next_delay();
            let step = (min * 2u32.pow(attempt.min(10))).min(max);
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
            assert!(step >= last_step);
            last_step = step;
        }
        b.reset();
        assert!(b.next_delay() <= min);
    }
}
