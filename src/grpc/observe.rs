//! The gRPC door's observer: a tower layer around the tonic server that gives every request
//! a request id and a span, counts it by method and status ([`GrpcMetrics`]), times it, logs
//! it, and records it in the recent-queries ring, without the service knowing.
//!
//! - The id is the client's `x-request-id` metadata when it is valid
//!   ([`RequestId::from_client`]), else a new one; it goes back in the response's
//!   `x-request-id`, and the handler runs in its task-local scope ([`RequestId::current`]),
//!   which is how calls to other nodes carry it on. The request is handled inside a
//!   `debug`-level span `grpc{request_id, method}`: with `RUST_LOG=aop=debug` every log line
//!   of the request carries the id; at the default filter the span is not made (it cost a
//!   tenth of a Resolve), and the one line a request logs at that level, the warning of a
//!   server failure, names the id and method itself.
//! - The status is read where gRPC puts it: in the headers of a trailers-only response
//!   (every error a unary handler returns), else in the trailers at the end of the body. A
//!   body dropped before its trailers (the client went away) counts as `cancelled`.
//! - The latency is the time to the response headers: for a unary call that is the whole
//!   handler, the body being an encoded message already; for a stream, its set-up.
//! - What the request is about is peeked from its first bytes, not decoded: every `aop.v1`
//!   request has the name or zone it concerns as field 1, a string, which protobuf writes
//!   first (tag `0x0a`). Only the first 263 bytes are kept, and only for the
//!   status page.
//!
//! This runs on every request, so it is kept to what the door's floor (tonic, HTTP/2,
//! protobuf) can absorb: the method's counters are found once, when the request arrives
//! (one read lock; nothing is looked up or allocated when it finishes), the peeked bytes
//! live in one fixed buffer, the response's `x-request-id` is written without the
//! formatting machinery, and the per-request log line is only built when its level is on.
//! `bench/instructions.sh` counts what a Resolve costs here next to a bare tonic server.

use std::borrow::Cow;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;
use tracing::Instrument as _;

use crate::telemetry::{Histogram, RecentQueries, RequestId, hex_digits};

/// The metadata key of request ids.
pub use crate::grpc::client::REQUEST_ID_HEADER;
/// Bytes of a request kept to find what it is about: frame header, tag, length, a name.
const PEEK_BYTES: usize = 5 + 1 + 2 + 255;
const CODE_CANCELLED: u16 = 1;
const CODE_UNKNOWN: u16 = 2;

/// Where the observer records: the door's counters and the node's recent-queries ring.
#[derive(Clone)]
struct Sinks {
    metrics: Arc<GrpcMetrics>,
    recent: Arc<RecentQueries>,
}

/// Wraps the gRPC server (see the module doc).
#[derive(Clone)]
pub struct ObserveLayer {
    sinks: Sinks,
}

impl ObserveLayer {
    pub fn new(metrics: Arc<GrpcMetrics>, recent: Arc<RecentQueries>) -> ObserveLayer {
        ObserveLayer {
            sinks: Sinks { metrics, recent },
        }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            sinks: self.sinks.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    sinks: Sinks,
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
        // A client's valid id goes back as it came (its header value is shared, not copied).
        let (request_id, id_value) = match request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|value| Some((RequestId::from_client(value.as_bytes())?, value.clone())))
        {
            Some((id, value)) => (id, Some(value)),
            None => {
                let id = RequestId::generate();
                let value = match &id {
                    RequestId::Generated(n) => http::HeaderValue::from_bytes(&hex_digits(*n)).ok(),
                    RequestId::Given(text) => http::HeaderValue::from_str(text).ok(),
                };
                (id, value)
            }
        };
        let path = request.uri().path();
        let method = self
            .sinks
            .metrics
            .method(path.rsplit('/').next().unwrap_or_default());
        // Debug level: at the default `info` filter the span costs nothing (a JSON log's span
        // is formatted when it is made, a few thousand instructions), and a failure's warning
        // names the id itself. The handlers log nothing at `info` or above of their own.
        let span = tracing::debug_span!("grpc", request_id = %request_id, method = method.label());
        let peeked = Arc::new(Mutex::new(Peeked::default()));
        let request = request.map(|body| {
            Body::new(PeekBody {
                inner: body,
                peeked: Arc::clone(&peeked),
            })
        });
        let future = span.in_scope(|| self.inner.call(request));
        let sinks = self.sinks.clone();
        Box::pin(async move {
            let mut response = request_id
                .clone()
                .scope(future.instrument(span.clone()))
                .await?;
            if let Some(mut value) = id_value {
                // Never indexed by HPACK: every response's id is new, and indexing it would
                // fill the connection's header table with ids that never come again (and
                // cost each response a walk of the ids already there).
                value.set_sensitive(true);
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            let mut observation = Observation {
                sinks,
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
    sinks: Sinks,
    method: Method,
    request_id: RequestId,
    latency: Duration,
    peeked: Arc<Mutex<Peeked>>,
    span: tracing::Span,
    done: bool,
}

impl Observation {
    fn finish(&mut self, code: u16) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let kind = self.sinks.metrics.record(&self.method, code, self.latency);
        let outcome = grpc_code_label(code);
        let peeked = self.peeked.lock().unwrap_or_else(|p| p.into_inner());
        let subject = request_subject(peeked.bytes());
        let failed = is_server_failure(code);
        // The log line is built only when it will be written: a request at the default
        // `info` filter costs no string for it.
        if failed || tracing::enabled!(tracing::Level::DEBUG) {
            let mut shown = subject.to_string();
            // A search for a URL may carry its credentials.
            crate::telemetry::redact_secrets(&mut shown);
            let latency_us = u64::try_from(self.latency.as_micros()).unwrap_or(u64::MAX);
            self.span.in_scope(|| {
                if failed {
                    tracing::warn!(request_id = %self.request_id, method = kind, outcome, subject = %shown, latency_us, "gRPC request failed");
                } else {
                    tracing::debug!(outcome, subject = %shown, latency_us, "gRPC request");
                }
            });
        }
        // The ring redacts what it records.
        self.sinks.recent.record(
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

/// Field 1 of the request's first message when it is a string, or `""`; borrowed unless it
/// is not UTF-8.
fn request_subject(peeked: &[u8]) -> Cow<'_, str> {
    // Uncompressed flag, then the message length.
    let Some((&[0, ..], message)) = peeked.split_first_chunk::<5>() else {
        return Cow::Borrowed("");
    };
    let Some((&0x0a, rest)) = message.split_first() else {
        return Cow::Borrowed("");
    };
    let (len, rest) = match rest {
        [low, rest @ ..] if low & 0x80 == 0 => (usize::from(*low), rest),
        [low, high, rest @ ..] if high & 0x80 == 0 => {
            (usize::from(low & 0x7f) | usize::from(*high) << 7, rest)
        }
        _ => return Cow::Borrowed(""),
    };
    let text = &rest[..len.min(rest.len())];
    String::from_utf8_lossy(text)
}

/// The first [`PEEK_BYTES`] of a request, in place (no allocation of their own).
struct Peeked {
    bytes: [u8; PEEK_BYTES],
    len: usize,
}

impl Default for Peeked {
    fn default() -> Self {
        Peeked {
            bytes: [0; PEEK_BYTES],
            len: 0,
        }
    }
}

impl Peeked {
    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn extend(&mut self, data: &[u8]) {
        let wanted = (PEEK_BYTES - self.len).min(data.len());
        self.bytes[self.len..self.len + wanted].copy_from_slice(&data[..wanted]);
        self.len += wanted;
    }
}

pin_project_lite::pin_project! {
    /// A request body that keeps a copy of its first bytes.
    struct PeekBody {
        #[pin]
        inner: Body,
        peeked: Arc<Mutex<Peeked>>,
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
            if peeked.len < PEEK_BYTES {
                peeked.extend(data);
            }
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

/// gRPC status codes as metric labels, indexed by their number.
pub const GRPC_CODES: [&str; 17] = [
    "ok",
    "cancelled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
];

/// The label of a gRPC status code; codes outside the table are `unknown`, as gRPC says.
pub fn grpc_code_label(code: u16) -> &'static str {
    GRPC_CODES
        .get(usize::from(code))
        .copied()
        .unwrap_or("unknown")
}

/// The most distinct gRPC methods counted; requests for others count as `other`.
const METHODS_MAX: usize = 64;

/// One gRPC method's requests.
#[derive(Debug, Default)]
pub struct MethodMetrics {
    pub codes: [AtomicU64; GRPC_CODES.len()],
    pub latency: Histogram,
}

/// The gRPC door's requests by method and status.
#[derive(Default)]
pub struct GrpcMetrics {
    // std RwLock: read on every request (a hash lookup), written once per new method.
    methods: RwLock<HashMap<&'static str, Arc<MethodMetrics>>>,
}

/// The method a request is for, found when it arrives: a method counted before is its label
/// and counters (so finishing the request takes no lock and no lookup); another keeps its
/// path segment until its status says whether it may be learnt.
pub enum Method {
    Known(&'static str, Arc<MethodMetrics>),
    New(Box<str>),
}

impl Method {
    /// The label so far: a new method's is only settled by [`GrpcMetrics::record`].
    pub fn label(&self) -> &str {
        match self {
            Method::Known(label, _) => label,
            Method::New(name) => name,
        }
    }
}

impl GrpcMetrics {
    /// The method named by `segment`, the last segment of the request path.
    pub fn method(&self, segment: &str) -> Method {
        let methods = self.methods.read().unwrap_or_else(|p| p.into_inner());
        match methods.get_key_value(segment) {
            Some((&label, metrics)) => Method::Known(label, Arc::clone(metrics)),
            None => Method::New(segment.into()),
        }
    }

    /// Counts one finished request. A method is only learnt from a request the server
    /// implemented, and at most 64 of them, so clients cannot grow the label set with
    /// made-up paths. Returns the method's label.
    pub fn record(&self, method: &Method, code: u16, latency: Duration) -> &'static str {
        let (label, learnt);
        let metrics = match method {
            Method::Known(known, metrics) => {
                label = *known;
                metrics
            }
            Method::New(name) => {
                (label, learnt) = self.learn(name, code);
                &learnt
            }
        };
        // Codes outside the table count as UNKNOWN (2), as grpc_code_label says.
        let index = Some(usize::from(code))
            .filter(|&code| code < GRPC_CODES.len())
            .unwrap_or(2);
        metrics.codes[index].fetch_add(1, Ordering::Relaxed);
        metrics.latency.observe(latency);
        label
    }

    fn learn(&self, method: &str, code: u16) -> (&'static str, Arc<MethodMetrics>) {
        const UNIMPLEMENTED: u16 = 12;
        let mut methods = self.methods.write().unwrap_or_else(|p| p.into_inner());
        let name: &'static str = match methods.get_key_value(method) {
            Some((name, _)) => name,
            None if code != UNIMPLEMENTED && methods.len() < METHODS_MAX && is_method(method) => {
                // Leaked once per method, bounded by METHODS_MAX: labels are then free to
                // copy into the recent-queries ring.
                Box::leak(method.to_string().into_boxed_str())
            }
            None => "other",
        };
        let metrics = Arc::clone(methods.entry(name).or_default());
        (name, metrics)
    }

    /// Every method's metrics, in name order.
    pub fn snapshot(&self) -> Vec<(&'static str, Arc<MethodMetrics>)> {
        let methods = self.methods.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = methods
            .iter()
            .map(|(name, metrics)| (*name, Arc::clone(metrics)))
            .collect();
        all.sort_by_key(|(name, _)| *name);
        all
    }
}

fn is_method(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_do_not_grow_the_label_set() {
        let grpc = GrpcMetrics::default();
        let record = |segment: &str, code| grpc.record(&grpc.method(segment), code, Duration::ZERO);
        assert_eq!(record("Resolve", 0), "Resolve");
        assert!(matches!(
            grpc.method("Resolve"),
            Method::Known("Resolve", _)
        ));
        assert_eq!(record("Nonsense", 12), "other");
        assert_eq!(record("bad/path", 5), "other");
        assert_eq!(record("Resolve", 5), "Resolve");
        let methods = grpc.snapshot();
        let names: Vec<_> = methods.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["Resolve", "other"]);
        assert_eq!(methods[0].1.codes[0].load(Ordering::Relaxed), 1);
        assert_eq!(methods[0].1.codes[5].load(Ordering::Relaxed), 1);
    }

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
