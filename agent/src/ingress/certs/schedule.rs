//! When certificates are renewed and failed orders retried: renewal at
//! two-thirds of a certificate's lifetime, moved earlier by a random jitter
//! (up to a twentieth of the lifetime) so hosts that got certificates together
//! do not all renew in the same minute; retries after a failure double from
//! `first` up to `max`. Time comes from a [`Clock`], so tests can run the
//! schedule on tokio's paused clock, or run a host's clock ahead.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The wall clock certificates are judged by (validity is wall-clock time).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock(Arc::new(SystemTime::now))
    }

    /// Any other clock, e.g. one running ahead of the system's.
    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// The wall time now, moved on by tokio's clock since this call, so a
    /// paused (and auto-advanced) tokio runtime moves it too.
    pub fn following_tokio() -> Clock {
        let wall = SystemTime::now();
        let start = tokio::time::Instant::now();
        Clock(Arc::new(move || wall + start.elapsed()))
    }

    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// When a certificate valid from `not_before` to `not_after` is renewed:
/// two-thirds into its lifetime, earlier by `jitter` (0..1) twentieths of it.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let early = lifetime.mul_f64(jitter.clamp(0.0, 1.0) / 20.0);
    not_before + lifetime * 2 / 3 - early
}

/// How long to wait before the next order after failures.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after `failures` consecutive failures (1 = the first one).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn renewal_is_at_two_thirds_of_the_lifetime_moved_earlier_by_the_jitter() {
        let issued = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let expires = issued + 90 * DAY;
        assert_eq!(renew_at(issued, expires, 0.0), issued + 60 * DAY);
        // The most jitter moves it a twentieth of 90 days (4.5 days) earlier.
        assert_eq!(
            renew_at(issued, expires, 1.0),
            issued + 60 * DAY - DAY * 9 / 2
        );
        let jittered = renew_at(issued, expires, 0.5);
        assert!(jittered < issued + 60 * DAY && jittered > issued + 55 * DAY);
        // A certificate that is already expired is due at once, not never.
        assert!(renew_at(expires, issued, 0.3) <= expires);
    }

    #[test]
    fn backoff_doubles_from_the_first_wait_up_to_the_cap() {
        let backoff = Backoff {
            first: Duration::from_secs(60),
            max: Duration::from_secs(3600),
        };
        let waits: Vec<u64> = (1..=8).map(|n| backoff.delay(n).as_secs()).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff.delay(u32::MAX).as_secs(), 3600);
    }
}
