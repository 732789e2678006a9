//! The gRPC request size limit (1 MiB, CONTRACT section 7), answered RESOURCE_EXHAUSTED with
//! the limit in the message.
//!
//! tonic's own decoder limit answers OUT_OF_RANGE, which is not what the contract (or
//! grpc-go) says, so requests pass through [`RequestSizeLimitLayer`], whose body fails with
//! the right status once more bytes than the limit (plus the 5-byte gRPC frame header)
//! arrive. tonic finds a [`Status`] in a body error and sends it as is.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tonic::Status;

/// gRPC length-prefixed message header: 1 flag byte and 4 length bytes.
const FRAME_HEADER_BYTES: usize = 5;

#[derive(Debug, Clone, Copy)]
pub struct RequestSizeLimitLayer {
    limit: usize,
}

impl RequestSizeLimitLayer {
    pub fn new(limit: usize) -> Self {
        RequestSizeLimitLayer { limit }
    }
}

impl<S> tower::Layer<S> for RequestSizeLimitLayer {
    type Service = RequestSizeLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestSizeLimit {
            inner,
            limit: self.limit,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RequestSizeLimit<S> {
    inner: S,
    limit: usize,
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for RequestSizeLimit<S>
where
    S: tower::Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let limit = self.limit;
        let request = request.map(|body| {
            tonic::body::Body::new(LimitedBody {
                inner: body,
                remaining: limit + FRAME_HEADER_BYTES,
                limit,
            })
        });
        self.inner.call(request)
    }
}

pin_project_lite::pin_project! {
    struct LimitedBody {
        #[pin]
        inner: tonic::body::Body,
        remaining: usize,
        limit: usize,
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if data.len() > *this.remaining {
                        return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                            "gRPC request is over the size limit of {} bytes (1 MiB)",
                            this.limit
                        )))));
                    }
                    *this.remaining -= data.len();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
