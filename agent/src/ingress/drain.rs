//! How one client connection of the front door ends when the agent stops or
//! hands its sockets to the next process of a self-upgrade, without
//! resetting a request its client has already sent.
//!
//! hyper's own graceful shutdown closes an HTTP/1 connection at once when it
//! looks idle, and that loses requests: a connection accepted just before
//! the drain whose request has not been read yet (hyper-util's version
//! sniffing is cancelled and the socket dropped with the request unread,
//! which the kernel answers with a reset), and a keep-alive connection whose
//! client sends its next request as the server closes it. So [`drive`]
//! waits until ending the connection loses nothing: a new connection serves
//! its first request (unless it stays silent for [`FIRST_BYTE`]); an HTTP/1
//! connection with a request in flight or bytes waiting finishes that
//! request; only then is hyper's graceful shutdown
//! asked for (keep-alive off, or GOAWAY on HTTP/2), and every response
//! written while draining says `Connection: close`. A connection closed
//! while draining is closed the way RFC 9112 §9.6 asks: [`Io`] sends FIN
//! and reads (and drops) what the client still sends until it closes too or
//! [`LINGER`] passes, so a request that crossed the FIN meets an end of
//! stream, which clients retry, instead of a reset.

use std::io;
use std::os::fd::RawFd;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::header::{CONNECTION, HeaderValue};
use hyper::{Response, StatusCode, Version};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::body::{BoxError, Counted};
use super::proxy::ProxyBody;

/// How long open connections get to finish their requests once a drain
/// starts.
pub const GRACE: Duration = Duration::from_secs(5);

/// How long a closed connection keeps reading what its client still sends.
pub const LINGER: Duration = Duration::from_secs(1);

/// How long a new connection that has sent nothing yet (a browser's
/// preconnect) may hold the drain up.
pub const FIRST_BYTE: Duration = Duration::from_secs(1);

/// What the front door knows about one client connection.
#[derive(Debug)]
pub struct Tracker {
    fd: RawFd,
    drain: CancellationToken,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    h2: AtomicBool,
    /// Bytes were read while no request was in flight and no request has
    /// started since: hyper holds part of the next request head.
    unparsed: AtomicBool,
    changed: Notify,
}

impl Tracker {
    /// Tracks the connection on socket `fd`, drained when `drain` is cancelled.
    pub fn new(fd: RawFd, drain: CancellationToken) -> Arc<Tracker> {
        Arc::new(Tracker {
            fd,
            drain,
            requests: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            h2: AtomicBool::new(false),
            unparsed: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    /// A request of `version` starts on this connection.
    pub fn begin(self: &Arc<Tracker>, version: Version) -> Exchange {
        if version == Version::HTTP_2 {
            self.h2.store(true, Ordering::SeqCst);
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.unparsed.store(false, Ordering::SeqCst);
        self.changed.notify_waiters();
        Exchange {
            tracker: self.clone(),
            http1: version < Version::HTTP_2,
        }
    }

    /// True once hyper's graceful shutdown can end the connection without
    /// dropping a request the client sent; `silent` once a new connection
    /// that sent nothing may be closed ([`FIRST_BYTE`]).
    fn may_close(&self, silent: bool) -> bool {
        if self.h2.load(Ordering::SeqCst) || self.in_flight.load(Ordering::SeqCst) > 0 {
            // GOAWAY, or keep-alive off after the response in flight.
            return true;
        }
        // Unless the next request has begun: hyper would close the
        // connection with it unread (a new one even with its bytes read,
        // while it sniffs the HTTP version or before its first parse).
        let begun = self.unparsed.load(Ordering::SeqCst) || bytes_waiting(self.fd);
        if self.requests.load(Ordering::SeqCst) == 0 {
            // Its client connected to send a request: serve it first.
            return silent && !begun;
        }
        // An idle keep-alive connection.
        !begun
    }
}

/// True when the socket holds bytes not read yet.
fn bytes_waiting(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: a peek of at most one byte into a local, on the connection's
    // socket, which lives as long as the connection being driven.
    let peeked = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    peeked > 0
}

/// One request on its way: counted until its response's last byte is sent.
#[derive(Debug)]
pub struct Exchange {
    tracker: Arc<Tracker>,
    http1: bool,
}

impl Exchange {
    /// The response to send: it keeps the request counted until its body
    /// ends, and says `Connection: close` when the front door is draining.
    pub fn respond(self, mut response: Response<ProxyBody>) -> Response<ProxyBody> {
        if self.http1
            && self.tracker.drain.is_cancelled()
            && response.status() != StatusCode::SWITCHING_PROTOCOLS
        {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response.map(|body| Counted::new(body, self).boxed_unsync())
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.tracker.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.tracker.changed.notify_waiters();
    }
}

/// A served client connection, as hyper-util's graceful shutdown knows it;
/// boxed, so the connection task names no type rustc cannot prove `Send`
/// for.
pub trait Connection: Future<Output = Result<(), BoxError>> + Send {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<C> Connection for C
where
    C: GracefulConnection<Error = BoxError> + Send,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        GracefulConnection::graceful_shutdown(self);
    }
}

/// Drives `conn` until it ends; once the drain starts, asks for its
/// graceful shutdown when that loses no request (see the module doc), and
/// gives up at the end of [`GRACE`] (`None`).
pub async fn drive(
    mut conn: Pin<Box<dyn Connection>>,
    tracker: &Tracker,
) -> Option<Result<(), BoxError>> {
    tokio::select! {
        biased;
        output = conn.as_mut() => return Some(output),
        () = tracker.drain.cancelled() => {}
    }
    let started = Instant::now();
    let deadline = started + GRACE;
    loop {
        let mut changed = pin!(tracker.changed.notified());
        changed.as_mut().enable();
        let silent_from = started + FIRST_BYTE;
        if tracker.may_close(Instant::now() >= silent_from) {
            break;
        }
        let wake = if Instant::now() < silent_from {
            silent_from
        } else {
            deadline
        };
        tokio::select! {
            biased;
            output = conn.as_mut() => return Some(output),
            () = changed => {}
            () = tokio::time::sleep_until(wake) => {
                if wake == deadline {
                    break;
                }
            }
        }
    }
    conn.as_mut().graceful_shutdown();
    tokio::time::timeout_at(deadline + LINGER, conn).await.ok()
}

/// A client connection's socket; while draining, its shutdown lingers (see
/// the module doc). Reads that start a request head are noted in the
/// [`Tracker`].
pub struct Io {
    stream: TcpStream,
    tracker: Arc<Tracker>,
    write_closed: bool,
    linger: Option<Pin<Box<Sleep>>>,
}

impl Io {
    pub fn new(stream: TcpStream, tracker: Arc<Tracker>) -> Io {
        Io {
            stream,
            tracker,
            write_closed: false,
            linger: None,
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before && this.tracker.in_flight.load(Ordering::SeqCst) == 0 {
            this.tracker.unparsed.store(true, Ordering::SeqCst);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
            this.write_closed = true;
        }
        if !this.tracker.drain.is_cancelled() {
            return Poll::Ready(Ok(()));
        }
        let linger = this
            .linger
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
        let mut scratch = [0u8; 2048];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                // The client closed too (or the socket failed): done.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    ready!(linger.as_mut().poll(cx));
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

/// How many client connections a listener holds open.
#[derive(Clone, Debug, Default)]
pub struct Open(Arc<AtomicUsize>);

/// Counts one connection while it lives.
pub struct Counting(Arc<AtomicUsize>);

impl Open {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    pub fn one(&self) -> Counting {
        self.0.fetch_add(1, Ordering::SeqCst);
        Counting(self.0.clone())
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
