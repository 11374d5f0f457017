//! The request and response bodies the authorization layer handles: the
//! request's first gRPC message read ahead (to learn its target) and
//! replayed to the handler, and a streamed response that ends when its
//! token is revoked or expires.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::Frame;
use http_body_util::BodyExt;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;

use super::EndFuture;

/// The largest first message the layer reads to find a target.
const MAX_FIRST_MESSAGE: usize = launch_proto::MAX_MESSAGE_BYTES;

/// Reads the body up to the end of its first gRPC message; returns that
/// message and a body that replays everything read, then the rest.
pub(super) async fn first_message(mut body: Body) -> Result<(Bytes, Body), Status> {
    let mut read = BytesMut::new();
    let mut length = None;
    loop {
        if length.is_none() && read.len() >= 5 {
            if read[0] != 0 {
                return Err(Status::unimplemented(
                    "compressed requests are not accepted: send them uncompressed",
                ));
            }
            let announced = u32::from_be_bytes([read[1], read[2], read[3], read[4]]) as usize;
            if announced > MAX_FIRST_MESSAGE {
                return Err(Status::resource_exhausted(format!(
                    "the first message is {announced} bytes, over the limit of {MAX_FIRST_MESSAGE}"
                )));
            }
            length = Some(announced);
        }
        if length.is_some_and(|length| read.len() >= 5 + length) {
            break;
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    read.extend_from_slice(&data);
                }
            }
            Some(Err(status)) => return Err(status),
            None => break,
        }
    }
    let read = read.freeze();
    let message = match length {
        Some(length) if read.len() >= 5 + length => read.slice(5..5 + length),
        _ => Bytes::new(),
    };
    Ok((
        message,
        Body::new(Replay {
            read: Some(read),
            rest: body,
        }),
    ))
}

/// What the layer read of a request body, then the rest of it.
struct Replay {
    read: Option<Bytes>,
    rest: Body,
}

impl http_body::Body for Replay {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(read) = self.read.take().filter(|read| !read.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(read))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
}

/// A response body that ends with the status `end` yields, if it yields
/// before the body is over.
pub(super) struct EndWhen {
    inner: Body,
    end: Option<EndFuture>,
}

impl EndWhen {
    pub(super) fn new(inner: Body, end: EndFuture) -> Self {
        EndWhen {
            inner,
            end: Some(end),
        }
    }
}

impl http_body::Body for EndWhen {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(end) = self.end.as_mut()
            && let Poll::Ready(status) = end.as_mut().poll(cx)
        {
            self.end = None;
            self.inner = Body::empty();
            let mut trailers = http::HeaderMap::new();
            return match status.add_header(&mut trailers) {
                Ok(()) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                Err(status) => Poll::Ready(Some(Err(status))),
            };
        }
        if self.end.is_none() && self.inner.is_end_stream() {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }
}
