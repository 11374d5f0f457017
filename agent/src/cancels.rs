//! Missions the control plane asked to stop. The session records a request
//! ([`Cancels::request`]); the executor runs each mission under a token from
//! [`Cancels::start`], a child of the agent's shutdown, which is cancelled
//! at once when the request came first (the mission was still queued here)
//! or as soon as it comes. Telling a requested cancel from a shutdown is
//! what lets the executor end a mission `cancelled` instead of leaving it to
//! resume after a restart.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub struct Cancels {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    running: Option<(String, CancellationToken)>,
    requested: HashSet<String>,
}

impl Cancels {
    /// The control plane asked to stop `mission_id` (running or not yet).
    pub fn request(&self, mission_id: &str) {
        let mut inner = self.inner.lock().expect("cancels lock");
        inner.requested.insert(mission_id.to_owned());
        if let Some((id, token)) = &inner.running
            && id == mission_id
        {
            token.cancel();
        }
    }

    /// The token `mission_id` runs under.
    pub fn start(&self, mission_id: &str, shutdown: &CancellationToken) -> CancellationToken {
        let token = shutdown.child_token();
        let mut inner = self.inner.lock().expect("cancels lock");
        if inner.requested.contains(mission_id) {
            token.cancel();
        }
        inner.running = Some((mission_id.to_owned(), token.clone()));
        token
    }

    /// True when a cancel of `mission_id` was asked for.
    pub fn requested(&self, mission_id: &str) -> bool {
        self.inner
            .lock()
            .expect("cancels lock")
            .requested
            .contains(mission_id)
    }

    /// `mission_id` ended: forget it.
    pub fn finish(&self, mission_id: &str) {
        let mut inner = self.inner.lock().expect("cancels lock");
        inner.requested.remove(mission_id);
        if inner
            .running
            .as_ref()
            .is_some_and(|(id, _)| id == mission_id)
        {
            inner.running = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_reaches_the_running_mission_or_waits_for_it() {
        let cancels = Cancels::default();
        let shutdown = CancellationToken::new();
        let running = cancels.start("m-1", &shutdown);
        cancels.request("m-2");
        assert!(!running.is_cancelled(), "another mission's cancel");
        cancels.request("m-1");
        assert!(running.is_cancelled());
        assert!(cancels.requested("m-1"));
        cancels.finish("m-1");
        assert!(!cancels.requested("m-1"));
        let queued = cancels.start("m-2", &shutdown);
        assert!(queued.is_cancelled(), "requested before it started");
        cancels.finish("m-2");
        let next = cancels.start("m-3", &shutdown);
        assert!(!next.is_cancelled());
        shutdown.cancel();
        assert!(next.is_cancelled(), "shutdown still stops it");
        assert!(!cancels.requested("m-3"), "but is not a requested cancel");
    }
}
