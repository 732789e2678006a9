//! What a node measures about its own traffic, in the shapes the admin endpoint reads: fixed-
//! bucket latency histograms, request ids, the ring of recent queries, and the gRPC door's
//! counters by method and status.
//!
//! Hand-rolled on atomics rather than built on `prometheus-client`: most series the node
//! exposes already live elsewhere (the DNS door's counters, the resolver's cache statistics,
//! the catalog's serials, the authority's update counts) and are read at scrape time, which
//! is a collector in that crate's terms and no less code; what is left is a handful of
//! counters and one histogram shape, which fit in this file. Prometheus histograms are
//! cumulative counts over fixed bounds, which `hdrhistogram` (the crate the benches use for
//! percentiles) is not: one `fetch_add` per bucket is all a concurrent door needs.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Upper bounds of the latency buckets, in microseconds (50 µs to 10 s).
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];

/// A latency histogram: a count per bucket (not cumulative; the exposition adds them up)
/// and the sum of every observation.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations at or below it), cumulative, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // The first bound at or above the value: Prometheus buckets are `le`.
        let index = LATENCY_BOUNDS_US.partition_point(|&bound| bound < us);
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BOUNDS_US.len());
        for (bound, count) in LATENCY_BOUNDS_US.iter().zip(&self.counts) {
            running += count.load(Ordering::Relaxed);
            buckets.push((*bound as f64 / 1e6, running));
        }
        running += self.counts[LATENCY_BOUNDS_US.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count: running,
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// The longest request id taken from a client.
pub const REQUEST_ID_MAX_LEN: usize = 64;

/// Names one request in logs, in the recent-queries ring and (gRPC) in the response's
/// `x-request-id` metadata. Generated ids are 64 random bits, printed as 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    Generated(u64),
    /// Sent by the client (`x-request-id`), checked by [`RequestId::from_client`].
    Given(Arc<str>),
}

tokio::task_local! {
    /// The id of the request the current task is handling (see [`RequestId::scope`]).
    static CURRENT_REQUEST: RequestId;
}

impl RequestId {
    /// Runs `future` as the handling of this request: every gRPC call it makes to another
    /// node carries the id in `x-request-id` (`grpc::client::TracedChannel`), so one id
    /// follows a query from the gateway through the resolver to each authority.
    pub async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        CURRENT_REQUEST.scope(self, future).await
    }

    /// The id of the request the current task is handling, if any.
    pub fn current() -> Option<RequestId> {
        CURRENT_REQUEST.try_with(Clone::clone).ok()
    }

    pub fn generate() -> RequestId {
        RequestId::Generated(rand::random())
    }

    /// A client's id, if it is 1 to 64 characters of letters, digits and `-_.:`; anything
    /// else is ignored (and a new id generated), so logs never carry arbitrary bytes.
    pub fn from_client(value: &[u8]) -> Option<RequestId> {
        let valid = !value.is_empty()
            && value.len() <= REQUEST_ID_MAX_LEN
            && value
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        let text = std::str::from_utf8(value).ok().filter(|_| valid)?;
        Some(RequestId::Given(Arc::from(text)))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Generated(id) => write!(f, "{id:016x}"),
            RequestId::Given(id) => f.write_str(id),
        }
    }
}

/// One query as the status page lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentQuery {
    pub at_unix_ms: u64,
    /// `dns` or `grpc`.
    pub door: &'static str,
    /// The name asked (DNS), or the name or zone a gRPC request is about.
    pub name: String,
    /// The DNS record type, or the gRPC method.
    pub kind: &'static str,
    pub outcome: &'static str,
    pub latency_us: u64,
    #[serde(serialize_with = "as_text")]
    pub request_id: RequestId,
}

fn as_text<S: serde::Serializer>(id: &RequestId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(id)
}

/// How many queries the ring keeps.
pub const RECENT_QUERIES: usize = 100;

/// The last [`RECENT_QUERIES`] queries of every door, newest last. Slots are overwritten in
/// place (their `name` buffers reused), so recording costs a lock and a copy, not an
/// allocation; a DNS door answering 100,000 queries a second pays that on each.
pub struct RecentQueries {
    // std Mutex: held to overwrite one slot or to copy the ring, never across an await.
    ring: Mutex<Ring>,
}

struct Ring {
    slots: Vec<RecentQuery>,
    next: usize,
}

impl Default for RecentQueries {
    fn default() -> Self {
        RecentQueries {
            ring: Mutex::new(Ring {
                slots: Vec::with_capacity(RECENT_QUERIES),
                next: 0,
            }),
        }
    }
}

impl RecentQueries {
    /// Records a query: `fill` writes the name into the (cleared) buffer it is given.
    pub fn record(
        &self,
        door: &'static str,
        kind: &'static str,
        outcome: &'static str,
        latency: Duration,
        request_id: &RequestId,
        fill: impl FnOnce(&mut String),
    ) {
        let at_unix_ms = unix_ms();
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let slot = if ring.slots.len() < RECENT_QUERIES {
            ring.slots.push(RecentQuery {
                at_unix_ms,
                door,
                name: String::new(),
                kind,
                outcome,
                latency_us,
                request_id: request_id.clone(),
            });
            ring.slots.len() - 1
        } else {
            let at = ring.next;
            ring.next = (at + 1) % RECENT_QUERIES;
            at
        };
        let query = &mut ring.slots[slot];
        query.at_unix_ms = at_unix_ms;
        query.door = door;
        query.kind = kind;
        query.outcome = outcome;
        query.latency_us = latency_us;
        query.request_id.clone_from(request_id);
        query.name.clear();
        fill(&mut query.name);
    }

    /// The queries, oldest first.
    pub fn snapshot(&self) -> Vec<RecentQuery> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let (newer, older) = ring.slots.split_at(ring.next.min(ring.slots.len()));
        older.iter().chain(newer).cloned().collect()
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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

impl GrpcMetrics {
    /// Counts one finished request. `method` is the last segment of the request path; a
    /// method is only learnt from a request the server implemented, and at most
    /// 64 of them, so clients cannot grow the label set with made-up paths.
    /// Returns the method's label.
    pub fn record(&self, method: &str, code: u16, latency: Duration) -> &'static str {
        let known = self
            .methods
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get_key_value(method)
            .map(|(name, metrics)| (*name, Arc::clone(metrics)));
        let (label, metrics) = match known {
            Some(known) => known,
            None => self.learn(method, code),
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

/// Everything a node measures beyond what its parts already count.
pub struct NodeMetrics {
    pub started: Instant,
    pub started_unix_ms: u64,
    pub recent: Arc<RecentQueries>,
    pub grpc: GrpcMetrics,
}

impl NodeMetrics {
    pub fn new() -> NodeMetrics {
        NodeMetrics {
            started: Instant::now(),
            started_unix_ms: unix_ms(),
            recent: Arc::new(RecentQueries::default()),
            grpc: GrpcMetrics::default(),
        }
    }
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(50));
        histogram.observe(Duration::from_micros(51));
        histogram.observe(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets[0], (0.00005, 1));
        assert_eq!(snapshot.buckets[1], (0.0001, 2));
        assert_eq!(snapshot.buckets.last().map(|b| b.1), Some(2));
        assert_eq!(snapshot.count, 3);
        assert!((snapshot.sum_seconds - 60.000101).abs() < 1e-9);
    }

    #[test]
    fn request_ids_from_clients_are_checked() {
        assert_eq!(
            RequestId::from_client(b"abc-123_x.y:z").map(|id| id.to_string()),
            Some("abc-123_x.y:z".to_string())
        );
        assert!(RequestId::from_client(b"").is_none());
        assert!(RequestId::from_client(b"has space").is_none());
        assert!(RequestId::from_client(b"new\nline").is_none());
        assert!(RequestId::from_client(&[b'a'; 65]).is_none());
        assert_eq!(RequestId::Generated(0xab).to_string(), "00000000000000ab");
    }

    #[test]
    fn the_ring_keeps_the_last_hundred_oldest_first() {
        let recent = RecentQueries::default();
        for index in 0..250u64 {
            recent.record(
                "dns",
                "SRV",
                "answer",
                Duration::from_micros(index),
                &RequestId::Generated(index),
                |name| name.push_str(&format!("q{index}")),
            );
        }
        let queries = recent.snapshot();
        assert_eq!(queries.len(), RECENT_QUERIES);
        assert_eq!(queries[0].name, "q150");
        assert_eq!(queries[99].name, "q249");
        assert_eq!(queries[99].request_id, RequestId::Generated(249));
    }

    #[test]
    fn made_up_methods_do_not_grow_the_label_set() {
        let grpc = GrpcMetrics::default();
        assert_eq!(grpc.record("Resolve", 0, Duration::ZERO), "Resolve");
        assert_eq!(grpc.record("Nonsense", 12, Duration::ZERO), "other");
        assert_eq!(grpc.record("bad/path", 5, Duration::ZERO), "other");
        assert_eq!(grpc.record("Resolve", 5, Duration::ZERO), "Resolve");
        let methods = grpc.snapshot();
        let names: Vec<_> = methods.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["Resolve", "other"]);
        assert_eq!(methods[0].1.codes[0].load(Ordering::Relaxed), 1);
        assert_eq!(methods[0].1.codes[5].load(Ordering::Relaxed), 1);
    }
}
