//! The gRPC request size limit (1 MiB, docs/protocol.md §7), answered RESOURCE_EXHAUSTED with
//! the limit in the message.
//!
//! tonic's own decoder limit answers OUT_OF_RANGE, which is not what the contract (or
//! grpc-go) says, so requests pass through [`RequestSizeLimitLayer`], whose body fails with
//! the right status as soon as a message header declares more than the limit, or more bytes
//! than that arrive, before anything is buffered. tonic finds a [`Status`] in a body error
//! and sends it as is. Every `aop.v1` request is unary, so the limit is per request.

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
                header: Vec::with_capacity(FRAME_HEADER_BYTES),
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
        // The first message's frame header, gathered across data frames.
        header: Vec<u8>,
    }
}

fn too_large(limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "gRPC request is over the size limit of {limit} bytes ({} KiB)",
        limit / 1024
    ))
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
                    if this.header.len() < FRAME_HEADER_BYTES {
                        let wanted = FRAME_HEADER_BYTES - this.header.len();
                        this.header
                            .extend_from_slice(&data[..wanted.min(data.len())]);
                        if let [_, a, b, c, d] = this.header[..] {
                            let declared = u32::from_be_bytes([a, b, c, d]) as usize;
                            if declared > *this.limit {
                                return Poll::Ready(Some(Err(too_large(*this.limit))));
                            }
                        }
                    }
                    if data.len() > *this.remaining {
                        return Poll::Ready(Some(Err(too_large(*this.limit))));
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

/// Requests in flight on the whole node (`--max-concurrent`, docs/protocol.md §8.3): past the
/// bound a request is shed at once with RESOURCE_EXHAUSTED rather than queued without bound,
/// so an overloaded node answers "not now" quickly and a client tries another server. A
/// request holds its place until its response starts (a stream's set-up, not its life).
#[derive(Debug, Clone)]
pub struct InFlightLimitLayer {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    limit: usize,
}

impl InFlightLimitLayer {
    pub fn new(limit: usize) -> Self {
        InFlightLimitLayer {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
        }
    }
}

impl<S> tower::Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit {
            inner,
            permits: std::sync::Arc::clone(&self.permits),
            limit: self.limit,
        }
    }
}

#[derive(Debug, Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    limit: usize,
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for InFlightLimit<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        >,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        match std::sync::Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => {
                let future = self.inner.call(request);
                Box::pin(async move {
                    let response = future.await;
                    drop(permit);
                    response
                })
            }
            Err(_) => {
                let status = Status::resource_exhausted(format!(
                    "this node is at its limit of {} requests in flight (--max-concurrent); retry shortly or ask another server",
                    self.limit
                ));
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}
