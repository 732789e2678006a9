//! What every part measures about its own traffic: request ids that follow a request across
//! nodes, latency histograms, and the ring of recent queries (secrets in URLs redacted).
//!
//! Vocabulary, not a door: the DNS door, the gRPC observer and the gateway record into these
//! types, and the admin endpoint only reads them. Counters that already live elsewhere (the
//! DNS door's, the resolver's cache statistics, the authority's update counts) stay where
//! they are and are read at scrape time.

mod histogram;
mod recent;
mod request_id;

pub use histogram::{Histogram, HistogramSnapshot, LATENCY_BOUNDS_US};
pub use recent::{
    RECENT_QUERIES, REDACTED, RecentQueries, RecentQuery, SECRET_PARAMETERS, redact_secrets,
};
pub use request_id::{REQUEST_ID_MAX_LEN, RequestId, hex_digits};
