//! The two body wrappers of the proxy: `Patient` fails a request body whose
//! client pauses longer than the body timeout (a slow-loris upload cannot
//! hold an upstream connection forever), and `Counted` keeps a response's
//! in-flight guard alive until its last byte has gone, so a drain waits for
//! streamed responses too (and a client connection's drain, for its own).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::target::InFlight;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[error("the client sent no request body data for {0:?}")]
pub struct BodyTimedOut(Duration);

/// A body that fails when its next frame takes longer than `timeout`,
/// counted from when the reader asked for it.
pub struct Patient<B> {
    inner: Pin<Box<B>>,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    waiting: bool,
}

impl<B> Patient<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        Patient {
            inner: Box::pin(inner),
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            waiting: false,
        }
    }
}

impl<B> Body for Patient<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if !this.waiting {
            this.sleep.as_mut().reset(Instant::now() + this.timeout);
            this.waiting = true;
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut(this.timeout).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body that holds an in-flight guard (a target's [`InFlight`], a client
/// connection's `drain::Exchange`) until it is finished or dropped.
pub struct Counted<B, G = InFlight> {
    inner: Pin<Box<B>>,
    guard: Option<G>,
}

impl<B, G> Counted<B, G> {
    pub fn new(inner: B, guard: G) -> Self {
        Counted {
            inner: Box::pin(inner),
            guard: Some(guard),
        }
    }
}

impl<B, G: Unpin> Body for Counted<B, G>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.guard = None;
        }
        polled.map(|frame| frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
