//! The front door's listening sockets handed across a self-upgrade's
//! re-exec, so a routed service keeps answering while its agent restarts:
//! connections that arrive meanwhile wait in the sockets' backlog instead of
//! being refused. [`hand_over`] stops the accept loops (their open
//! connections are drained, within a grace period: `ingress::drain`), keeps the sockets open
//! without close-on-exec and names them in [`ENV`] (`ADDR=FD,…`, by the
//! configured listen address); the new process [`adopt`]s them instead of
//! binding. Under systemd the agent's restart closes them (a short gap).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The variable naming the inherited sockets.
pub const ENV: &str = "LAUNCH_AGENT_INHERITED_LISTENERS";

struct State {
    /// Sockets this process listens on, by configured address.
    bound: Mutex<Vec<(SocketAddr, RawFd)>>,
    /// Sockets inherited from the previous process, not yet adopted.
    inherited: Mutex<HashMap<SocketAddr, RawFd>>,
    /// Cancelled when the accept loops must stop for a hand-over.
    stop: CancellationToken,
    running: AtomicUsize,
    drained: Notify,
}

/// What [`ENV`] said at start ([`take_env`]).
static INHERITED: std::sync::OnceLock<HashMap<SocketAddr, RawFd>> = std::sync::OnceLock::new();

/// Reads [`ENV`] and removes it from the environment, so no child (compose,
/// the watchdog, a restarted agent) sees descriptor numbers that mean
/// nothing to it.
///
/// # Safety
/// Call before any other thread runs (`main`, before the runtime starts).
pub unsafe fn take_env() {
    let inherited = std::env::var(ENV)
        .ok()
        .map(|value| parse(&value))
        .unwrap_or_default();
    let _ = INHERITED.set(inherited);
    // SAFETY: the caller promises no other thread runs yet.
    unsafe { std::env::remove_var(ENV) };
}

static STATE: LazyLock<Arc<State>> = LazyLock::new(|| {
    let inherited = INHERITED.get().cloned().unwrap_or_default();
    Arc::new(State {
        bound: Mutex::default(),
        inherited: Mutex::new(inherited),
        stop: CancellationToken::new(),
        running: AtomicUsize::new(0),
        drained: Notify::new(),
    })
});

fn parse(value: &str) -> HashMap<SocketAddr, RawFd> {
    value
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .filter_map(|(addr, fd)| Some((addr.parse().ok()?, fd.parse().ok()?)))
        .collect()
}

/// The socket the previous process listened on at `addr`, if it handed one
/// over (close-on-exec set again, so compose children do not get it).
pub fn adopt(addr: SocketAddr) -> Option<std::net::TcpListener> {
    let fd = STATE
        .inherited
        .lock()
        .expect("handover lock")
        .remove(&addr)?;
    // Only a socket is taken over (never some other descriptor by mistake).
    // SAFETY: fstat writes into the zeroed struct we pass.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut stat) } != 0 || stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return None;
    }
    // SAFETY: a socket our own previous process named for this address; it
    // is taken once (removed above) and owned by the listener from here.
    let listener = unsafe { <std::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    listener.local_addr().ok()?;
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(listener)
}

/// Remembers a socket this process listens on at (configured) `addr`.
pub fn register(addr: SocketAddr, fd: RawFd) {
    let mut bound = STATE.bound.lock().expect("handover lock");
    bound.retain(|(known, _)| *known != addr);
    bound.push((addr, fd));
}

/// An accept loop runs until this is cancelled (or the agent stops).
pub fn stopping() -> CancellationToken {
    STATE.stop.clone()
}

/// Counts a running accept loop until it is dropped.
pub struct Running(());

impl Running {
    pub fn start() -> Running {
        STATE.running.fetch_add(1, Ordering::SeqCst);
        Running(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        STATE.running.fetch_sub(1, Ordering::SeqCst);
        STATE.drained.notify_waiters();
    }
}

/// Stops the accept loops, waits (at most `grace`) for their connections to
/// finish, and returns the value of [`ENV`] for the next process; `None`
/// when the front door does not listen here.
pub async fn hand_over(grace: Duration) -> Option<String> {
    let bound = STATE.bound.lock().expect("handover lock").clone();
    if bound.is_empty() {
        return None;
    }
    STATE.stop.cancel();
    let deadline = tokio::time::Instant::now() + grace;
    while STATE.running.load(Ordering::SeqCst) > 0 {
        let drained = STATE.drained.notified();
        if STATE.running.load(Ordering::SeqCst) == 0 {
            break;
        }
        if tokio::time::timeout_at(deadline, drained).await.is_err() {
            break;
        }
    }
    let pairs: Vec<String> = bound
        .iter()
        .map(|(addr, fd)| {
            // SAFETY: fcntl on descriptors the (stopped, leaked) listeners own.
            unsafe { libc::fcntl(*fd, libc::F_SETFD, 0) };
            format!("{addr}={fd}")
        })
        .collect();
    Some(pairs.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_names_sockets_by_address() {
        let parsed = parse("127.0.0.1:80=7,[::1]:443=8,garbage,1.2.3.4:5=x");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[&"127.0.0.1:80".parse().unwrap()], 7);
        assert_eq!(parsed[&"[::1]:443".parse().unwrap()], 8);
    }
}
