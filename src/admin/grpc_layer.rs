//! The gRPC door's observer: a tower layer around the tonic server that gives every request
//! a request id and a span, counts it by method and status, times it, logs it, and records
//! it in the recent-queries ring, without the service knowing.
//!
//! - The id is the client's `x-request-id` metadata when it is valid
//!   ([`RequestId::from_client`]), else a new one; it goes back in the response's
//!   `x-request-id` and into the request's extensions (the service may read it). The
//!   request is handled inside an `info`-level span `grpc{request_id, method}`, so every
//!   log line of the request, warnings from deep inside included, carries the id.
//! - The status is read where gRPC puts it: in the headers of a trailers-only response
//!   (every error a unary handler returns), else in the trailers at the end of the body. A
//!   body dropped before its trailers (the client went away) counts as `cancelled`.
//! - The latency is the time to the response headers: for a unary call that is the whole
//!   handler, the body being an encoded message already; for a stream, its set-up.
//! - What the request is about is peeked from its first bytes, not decoded: every `aop.v1`
//!   request has the name or zone it concerns as field 1, a string, which protobuf writes
//!   first (tag `0x0a`). Only the first 263 bytes are kept, and only for the
//!   status page.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;
use tracing::Instrument as _;

use crate::admin::metrics::{NodeMetrics, RequestId, grpc_code_label};

/// The metadata key of request ids.
pub use crate::grpc::client::REQUEST_ID_HEADER;
/// Bytes of a request kept to find what it is about: frame header, tag, length, a name.
const PEEK_BYTES: usize = 5 + 1 + 2 + 255;
const CODE_CANCELLED: u16 = 1;
const CODE_UNKNOWN: u16 = 2;

/// Wraps the gRPC server (see the module doc).
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Arc<NodeMetrics>,
}

impl ObserveLayer {
    pub fn new(metrics: Arc<NodeMetrics>) -> ObserveLayer {
        ObserveLayer { metrics }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<NodeMetrics>,
}

impl<S> tower::Service<http::Request<Body>> for Observe<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let started = Instant::now();
        let request_id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|value| RequestId::from_client(value.as_bytes()))
            .unwrap_or_else(RequestId::generate);
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let span = tracing::info_span!("grpc", request_id = %request_id, method = %method);
        let peeked = Arc::new(Mutex::new(Vec::new()));
        let mut request = request.map(|body| {
            Body::new(PeekBody {
                inner: body,
                peeked: Arc::clone(&peeked),
            })
        });
        request.extensions_mut().insert(request_id.clone());
        let future = span.in_scope(|| self.inner.call(request));
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            let mut response = request_id
                .clone()
                .scope(future.instrument(span.clone()))
                .await?;
            if let Ok(value) = http::HeaderValue::from_str(&request_id.to_string()) {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            let mut observation = Observation {
                metrics,
                method,
                request_id,
                latency: started.elapsed(),
                peeked,
                span,
                done: false,
            };
            if let Some(code) = grpc_status(response.headers()) {
                // Trailers-only: the status is all there is.
                observation.finish(code);
                return Ok(response);
            }
            Ok(response.map(|body| {
                Body::new(ObservedBody {
                    inner: body,
                    span: observation.span.clone(),
                    observation,
                })
            }))
        })
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<u16> {
    let value = headers.get("grpc-status")?;
    Some(
        std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(CODE_UNKNOWN),
    )
}

/// One request on its way out: counted, logged and recorded once, when its status is
/// known or its body dropped.
struct Observation {
    metrics: Arc<NodeMetrics>,
    method: String,
    request_id: RequestId,
    latency: Duration,
    peeked: Arc<Mutex<Vec<u8>>>,
    span: tracing::Span,
    done: bool,
}

impl Observation {
    fn finish(&mut self, code: u16) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let kind = self.metrics.grpc.record(&self.method, code, self.latency);
        let outcome = grpc_code_label(code);
        let subject = {
            let peeked = self.peeked.lock().unwrap_or_else(|p| p.into_inner());
            request_subject(&peeked)
        };
        let latency_us = u64::try_from(self.latency.as_micros()).unwrap_or(u64::MAX);
        self.span.in_scope(|| {
            if is_server_failure(code) {
                tracing::warn!(outcome, subject = %subject, latency_us, "gRPC request failed");
            } else {
                tracing::debug!(outcome, subject = %subject, latency_us, "gRPC request");
            }
        });
        self.metrics.recent.record(
            "grpc",
            kind,
            outcome,
            self.latency,
            &self.request_id,
            |name| name.push_str(&subject),
        );
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        self.finish(CODE_CANCELLED);
    }
}

/// Statuses that say the server could not serve, not that the request was wrong.
fn is_server_failure(code: u16) -> bool {
    // UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE, DATA_LOSS.
    matches!(code, 2 | 4 | 13 | 14 | 15)
}

/// Field 1 of the request's first message when it is a string, or `""`.
fn request_subject(peeked: &[u8]) -> String {
    // Uncompressed flag, then the message length.
    let Some((&[0, ..], message)) = peeked.split_first_chunk::<5>() else {
        return String::new();
    };
    let Some((&0x0a, rest)) = message.split_first() else {
        return String::new();
    };
    let (len, rest) = match rest {
        [low, rest @ ..] if low & 0x80 == 0 => (usize::from(*low), rest),
        [low, high, rest @ ..] if high & 0x80 == 0 => {
            (usize::from(low & 0x7f) | usize::from(*high) << 7, rest)
        }
        _ => return String::new(),
    };
    let text = &rest[..len.min(rest.len())];
    String::from_utf8_lossy(text).into_owned()
}

pin_project_lite::pin_project! {
    /// A request body that keeps a copy of its first bytes.
    struct PeekBody {
        #[pin]
        inner: Body,
        peeked: Arc<Mutex<Vec<u8>>>,
    }
}

impl http_body::Body for PeekBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let mut peeked = this.peeked.lock().unwrap_or_else(|p| p.into_inner());
            let wanted = PEEK_BYTES.saturating_sub(peeked.len()).min(data.len());
            peeked.extend_from_slice(&data[..wanted]);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A response body that reports its status when the trailers pass.
    struct ObservedBody {
        #[pin]
        inner: Body,
        span: tracing::Span,
        observation: Observation,
    }
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        // Streams are polled by the connection, outside the handler's span.
        let _entered = this.span.enter();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    this.observation.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => this.observation.finish(status.code() as u16),
            Poll::Ready(None) => this.observation.finish(CODE_UNKNOWN),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&(message.len() as u32).to_be_bytes());
        bytes.extend_from_slice(message);
        bytes
    }

    #[test]
    fn the_subject_is_field_one() {
        let mut message = vec![0x0a, 20];
        message.extend_from_slice(b"analyst.finance.acme");
        message.extend_from_slice(&[0x10, 1]);
        assert_eq!(request_subject(&frame(&message)), "analyst.finance.acme");
        let long = "a".repeat(200);
        let mut message = vec![0x0a, 200, 1];
        message.extend_from_slice(long.as_bytes());
        assert_eq!(request_subject(&frame(&message)), long);
        assert_eq!(request_subject(&frame(&[])), "");
        assert_eq!(request_subject(&frame(&[0x10, 1])), "");
        assert_eq!(request_subject(&[1, 0, 0, 0, 2, 0x0a, 0]), "");
        assert_eq!(request_subject(&[0, 0]), "");
    }
}
