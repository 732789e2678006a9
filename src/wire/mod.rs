//! The project's one encoding: the protobuf messages of `proto/aop/v1/registry.proto` and the
//! codec between them and the domain types.
//!
//! Protobuf is the encoding of everything that leaves a node's memory, not only of the gRPC
//! door: the store keeps records, zone headers and the change log in it, secondaries receive
//! transfers in it, and a Watch stream carries changes in it. So the messages live here, apart
//! from the service (which `grpc` generates on top of them, naming these types), and every
//! conversion is written once:
//!
//! - encoding (domain -> message) cannot fail: `From<&T>` impls;
//! - decoding (message -> domain) checks every field with the same record rules as zone files
//!   (`TryFrom` impls failing with [`PeerDataError`]), because bytes from a peer or from disk
//!   are input like any other.
//!
//! Knows nothing of tonic, sockets or the store's layout.

mod answer;
mod records;

pub use records::referral;

use crate::name::NameError;
use crate::record::RecordError;

/// Generated protobuf messages for `proto/aop/v1/registry.proto` (no service code).
pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/wire/aop.v1.rs"));
}

/// Data from a peer (or read back from disk) that breaks the record rules.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PeerDataError {
    #[error("invalid {field} from peer: {source}")]
    Name {
        field: &'static str,
        source: NameError,
    },
    #[error("invalid agent record from peer: {0}")]
    Record(#[from] RecordError),
    #[error("invalid {field} JSON from peer: {reason}")]
    Json { field: &'static str, reason: String },
    #[error("peer answer is missing {field}")]
    Missing { field: &'static str },
    #[error("peer answer has unknown outcome {0}")]
    UnknownOutcome(i32),
    #[error("peer answer has unknown record kind {0}")]
    UnknownKind(i32),
    #[error("peer answer has unknown endpoint health state {0}")]
    UnknownHealth(i32),
    #[error("invalid health settings from peer: {0}")]
    HealthSettings(String),
}
