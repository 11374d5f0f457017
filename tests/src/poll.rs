//! Waiting without sleeping blindly: poll a condition until a deadline, and on
//! timeout fail with how long we waited and the last state we saw.

use std::time::{Duration, Instant};

/// How often conditions are re-checked.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Calls `check` until it returns `Ok`, at most for `timeout`. `check` returns
/// `Err(last state)` while the condition does not hold; on timeout this panics
/// with `what`, the time waited and that last state.
pub fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) => {
                if start.elapsed() >= timeout {
                    panic!(
                        "timed out after {:.1}s waiting for {what}; last state: {last}",
                        start.elapsed().as_secs_f64()
                    );
                }
            }
        }
        std::thread::sleep(INTERVAL);
    }
}

/// Like [`eventually`] but returns the last state instead of panicking.
pub fn try_eventually<T>(
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(last) if start.elapsed() >= timeout => return Err(last),
            Err(_) => std::thread::sleep(INTERVAL),
        }
    }
}
