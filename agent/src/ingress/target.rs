//! One upstream: the address of a release's container, how many requests are
//! on their way through it, and how many upgraded (WebSocket) tunnels it
//! holds. Draining waits for the requests to finish, up to a deadline, and
//! only then closes the tunnels — an old release keeps its open connections
//! until the very end of a cutover.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A release's container as the proxy reaches it.
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub release_id: String,
    requests: AtomicUsize,
    tunnels: AtomicUsize,
    changed: Notify,
    close_tunnels: CancellationToken,
}

/// What a drain found.
#[derive(Debug, PartialEq, Eq)]
pub struct Drained {
    /// Requests still running when the deadline passed (0: all finished).
    pub cut_requests: usize,
    /// Upgraded connections closed at the end.
    pub closed_tunnels: usize,
}

/// Counts one request or tunnel while it lives.
#[derive(Debug)]
pub struct InFlight {
    target: Arc<Target>,
    tunnel: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let counter = if self.tunnel {
            &self.target.tunnels
        } else {
            &self.target.requests
        };
        counter.fetch_sub(1, Ordering::AcqRel);
        self.target.changed.notify_waiters();
    }
}

impl Target {
    pub fn new(addr: SocketAddr, release_id: impl Into<String>) -> Arc<Target> {
        Arc::new(Target {
            addr,
            release_id: release_id.into(),
            requests: AtomicUsize::new(0),
            tunnels: AtomicUsize::new(0),
            changed: Notify::new(),
            close_tunnels: CancellationToken::new(),
        })
    }

    /// Counts a request until the guard (kept with its response body) drops.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::AcqRel);
        InFlight {
            target: self.clone(),
            tunnel: false,
        }
    }

    /// Counts an upgraded connection; it must end when `closing` fires.
    pub fn tunnel(self: &Arc<Self>) -> (InFlight, CancellationToken) {
        self.tunnels.fetch_add(1, Ordering::AcqRel);
        (
            InFlight {
                target: self.clone(),
                tunnel: true,
            },
            self.close_tunnels.clone(),
        )
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Acquire)
    }

    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::Acquire)
    }

    /// Waits until no request is in flight or `grace` has passed, then
    /// closes the upgraded connections and waits (briefly) for them to go.
    pub async fn drain(&self, grace: Duration) -> Drained {
        let deadline = Instant::now() + grace;
        self.wait_for(deadline, || self.requests() == 0).await;
        let cut_requests = self.requests();
        let closed_tunnels = self.tunnels();
        self.close_tunnels.cancel();
        self.wait_for(Instant::now() + Duration::from_secs(5), || {
            self.tunnels() == 0
        })
        .await;
        Drained {
            cut_requests,
            closed_tunnels,
        }
    }

    async fn wait_for(&self, deadline: Instant, done: impl Fn() -> bool) {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            if done() {
                return;
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}
