//! When a connected agent's `last_seen` is written. Every heartbeat (5 s)
//! used to write it: at 10,000 sessions that was 2,000 `UPDATE`s a second,
//! about a quarter of the server's idle CPU (BENCHMARKS, "10,000 agents"),
//! for a column that only says when an agent was last heard of. A session
//! now writes it on open (with the Hello), then at most every
//! [`WRITE_EVERY`], and on close. Each write also renews the session's
//! lease (`store/agent_sessions`, [`super::store::LEASE_MS`], three of these
//! intervals), which is how a replica that does not hold the session knows
//! the agent is connected.

use std::time::{Duration, Instant};

/// The longest a connected agent's stored `last_seen` (and its session's
/// lease renewal) lags its heartbeats.
pub const WRITE_EVERY: Duration = Duration::from_secs(30);

// A session's lease outlasts a late renewal or two.
const _: () = assert!(super::store::LEASE_MS >= 3 * WRITE_EVERY.as_millis() as i64);

/// One session's last write of `last_seen`, by this process's monotonic clock.
#[derive(Debug)]
pub struct LastSeen {
    written: Instant,
}

impl LastSeen {
    /// A session whose `last_seen` was written at `now` (its Hello).
    pub fn written_at(now: Instant) -> LastSeen {
        LastSeen { written: now }
    }

    /// Whether a heartbeat at `now` writes `last_seen`; if so, it counts as written.
    pub fn due(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.written) < WRITE_EVERY {
            return false;
        }
        self.written = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_writes_last_seen_once_per_interval_not_every_time() {
        let opened = Instant::now();
        let mut seen = LastSeen::written_at(opened);
        let beats: Vec<bool> = (1..=13)
            .map(|i| seen.due(opened + Duration::from_secs(5 * i)))
            .collect();
        // Beats at 5 … 65 s: written at 30 s and 60 s only.
        let written: Vec<u64> = beats
            .iter()
            .zip(1..)
            .filter(|(due, _)| **due)
            .map(|(_, i)| 5 * i)
            .collect();
        assert_eq!(written, vec![30, 60]);
    }
}
