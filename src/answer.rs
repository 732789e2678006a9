//! What a lookup produces, whichever part of the system produced it: the authoritative data
//! of this node's zones now, the recursive resolver and its caches next.
//!
//! Doors (gRPC, CLI output, later DNS and MCP) encode an [`Answer`]; they never look inside
//! zones themselves.

use std::sync::Arc;

use crate::name::Name;
use crate::record::{Agent, Alias, Delegation};

/// The five outcomes of docs/protocol.md §4.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The agent record, reached directly or through the answer's aliases.
    Answer(Arc<Agent>),
    /// The last alias points outside the answering zone.
    Alias { target: Name },
    /// The name is at or below a delegated child zone.
    Referral(Arc<Delegation>),
    /// No such name.
    NxDomain,
    /// The name exists only because names below it exist (RFC 8020).
    NoData,
}

impl Outcome {
    /// The lowercase word the CLI and JSON output use.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Answer(_) => "answer",
            Outcome::Alias { .. } => "alias",
            Outcome::Referral(_) => "referral",
            Outcome::NxDomain => "nxdomain",
            Outcome::NoData => "nodata",
        }
    }

    pub fn is_negative(&self) -> bool {
        matches!(self, Outcome::NxDomain | Outcome::NoData)
    }
}

/// One step of a resolution, for `--trace`.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceStep {
    /// The node id that answered, or the URL asked when it did not.
    pub server: String,
    pub zone: Name,
    /// `None` when the server failed (see `error`).
    pub outcome: Option<&'static str>,
    pub latency_us: u32,
    pub cached: bool,
    pub authoritative: bool,
    pub error: Option<String>,
}

/// A complete answer to "what is NAME?".
#[derive(Debug, Clone)]
pub struct Answer {
    pub name: Name,
    pub outcome: Outcome,
    /// Aliases followed, in order.
    pub aliases: Vec<Arc<Alias>>,
    /// The zone whose data gave the outcome, and its serial.
    pub zone: Name,
    pub zone_serial: u32,
    /// Seconds the answer may be cached.
    pub ttl: u32,
    pub authoritative: bool,
    /// Node id of the answering node.
    pub served_by: Arc<str>,
    pub stale: bool,
    pub recursion_available: bool,
    pub trace: Vec<TraceStep>,
}
