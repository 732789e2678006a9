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
                header: [0; FRAME_HEADER_BYTES],
                header_len: 0,
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
        header: [u8; FRAME_HEADER_BYTES],
        header_len: usize,
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
                    if *this.header_len < FRAME_HEADER_BYTES {
                        let at = *this.header_len;
                        let wanted = (FRAME_HEADER_BYTES - at).min(data.len());
                        this.header[at..at + wanted].copy_from_slice(&data[..wanted]);
                        *this.header_len += wanted;
                        if *this.header_len == FRAME_HEADER_BYTES {
                            let [_, a, b, c, d] = *this.header;
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
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = InFlight<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        match std::sync::Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => InFlight::Admitted {
                inner: self.inner.call(request),
                permit: Some(permit),
            },
            Err(_) => {
                let status = Status::resource_exhausted(format!(
                    "this node is at its limit of {} requests in flight (--max-concurrent); retry shortly or ask another server",
                    self.limit
                ));
                InFlight::Refused {
                    response: Some(status.into_http()),
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A request past [`InFlightLimit`]: the inner service's future holding its permit until
    /// the response starts, or the refusal. A type of its own, not a boxed future: this is on
    /// every request's path.
    #[project = InFlightProjection]
    pub enum InFlight<F> {
        Admitted {
            #[pin]
            inner: F,
            permit: Option<tokio::sync::OwnedSemaphorePermit>,
        },
        Refused {
            response: Option<http::Response<tonic::body::Body>>,
        },
    }
}

impl<F, E> Future for InFlight<F>
where
    F: Future<Output = Result<http::Response<tonic::body::Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            InFlightProjection::Admitted { inner, permit } => {
                let response = std::task::ready!(inner.poll(cx));
                // The place is given back as the response starts.
                permit.take();
                Poll::Ready(response)
            }
            InFlightProjection::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after it answered: a caller's bug, answered as tonic would.
                None => Poll::Ready(Ok(
                    Status::internal("a refused request was polled twice").into_http()
                )),
            },
        }
    }
}
