//! Why a request to another party failed (a node over gRPC, an agent over MCP), in the one
//! classification every caller shares: who failed, and whether the request reached them.
//!
//! Whether a failed request may be sent again, to the same peer or to a sibling (another
//! server of the zone, another endpoint of the agent), depends on one question: could the
//! peer have acted on it? A connection refused, or a request the peer shed before reading
//! (overload), never arrived: sending it elsewhere is always safe. A timeout or a connection
//! lost after sending may have arrived: only a request that is harmless to repeat
//! (`idempotent`) may go again. A peer that answered, even with an error, has decided: its
//! siblings hold the same data and would decide the same, unless the answer itself was
//! unusable (a lame or broken server), which is a reason to ask a sibling.
//!
//! The doors translate their transport's errors into a [`PeerFailure`] in one place each
//! (`grpc::client` for gRPC status codes and transport errors, the gateway's sessions for
//! MCP); the resolver, request forwarding and the gateway's call path all decide from it.

use std::fmt;
use std::time::Duration;

/// Whether a failed request reached the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// It never did: always safe to send again.
    NotDelivered,
    /// It may have: send again only what is harmless to repeat.
    MaybeDelivered,
    /// The peer got it and answered.
    Answered,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// No connection (refused, no route, TLS handshake, a bad address).
    Unreachable,
    /// The peer shed the request before acting on it (HTTP 429/503, RESOURCE_EXHAUSTED).
    Overloaded,
    /// The peer refused the caller at its door, before acting (HTTP 401/403).
    Unauthorized,
    /// The caller did not send it (a circuit breaker open for the peer).
    NotSent,
    /// No answer within the time given.
    Timeout(Duration),
    /// The connection broke after the request was sent.
    Lost,
    /// The peer answered with an error (its decision, not a transport failure).
    Refused,
    /// The peer answered with data that breaks the rules (a lame or broken server).
    BadAnswer,
}

impl FailureKind {
    /// Metric labels, one per kind, in declaration order.
    pub const LABELS: [&'static str; 8] = [
        "unreachable",
        "overloaded",
        "unauthorized",
        "not_sent",
        "timeout",
        "lost",
        "refused",
        "bad_answer",
    ];

    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    pub fn index(&self) -> usize {
        match self {
            FailureKind::Unreachable => 0,
            FailureKind::Overloaded => 1,
            FailureKind::Unauthorized => 2,
            FailureKind::NotSent => 3,
            FailureKind::Timeout(_) => 4,
            FailureKind::Lost => 5,
            FailureKind::Refused => 6,
            FailureKind::BadAnswer => 7,
        }
    }
}

/// A failed request to `peer` (a URL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PeerFailure {
    pub peer: String,
    pub kind: FailureKind,
    /// What the transport or the peer said.
    pub reason: String,
}

impl PeerFailure {
    pub fn new(peer: impl Into<String>, kind: FailureKind, reason: impl Into<String>) -> Self {
        PeerFailure {
            peer: peer.into(),
            kind,
            reason: reason.into(),
        }
    }

    pub fn delivery(&self) -> Delivery {
        match self.kind {
            FailureKind::Unreachable
            | FailureKind::Overloaded
            | FailureKind::Unauthorized
            | FailureKind::NotSent => Delivery::NotDelivered,
            FailureKind::Timeout(_) | FailureKind::Lost => Delivery::MaybeDelivered,
            FailureKind::Refused | FailureKind::BadAnswer => Delivery::Answered,
        }
    }

    /// May the same request go to a sibling of the peer (another server of the zone,
    /// another endpoint of the agent)? `idempotent`: repeating the request is harmless.
    pub fn retry_elsewhere(&self, idempotent: bool) -> bool {
        match self.delivery() {
            Delivery::NotDelivered => true,
            Delivery::MaybeDelivered => idempotent,
            // A refusal is the zone's (or the agent's) answer; an unusable answer is one
            // server's fault.
            Delivery::Answered => self.kind == FailureKind::BadAnswer,
        }
    }
}

impl fmt::Display for PeerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peer = &self.peer;
        let reason = &self.reason;
        match &self.kind {
            FailureKind::Unreachable => write!(f, "{peer}: unreachable: {reason}"),
            FailureKind::Overloaded => write!(f, "{peer}: overloaded: {reason}"),
            FailureKind::Unauthorized => write!(f, "{peer}: not authorized: {reason}"),
            FailureKind::NotSent => write!(f, "{peer}: not sent: {reason}"),
            FailureKind::Timeout(timeout) => {
                write!(f, "{peer}: no answer within {} ms", timeout.as_millis())
            }
            FailureKind::Lost => write!(f, "{peer}: connection lost: {reason}"),
            FailureKind::Refused => write!(f, "{peer}: refused: {reason}"),
            FailureKind::BadAnswer => write!(f, "{peer}: unusable answer: {reason}"),
        }
    }
}

/// An error and its sources, joined: a transport's top-level error ("transport error",
/// "send message error") says little alone.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: FailureKind) -> PeerFailure {
        PeerFailure::new("http://127.0.0.1:7102", kind, "why")
    }

    #[test]
    fn only_what_never_arrived_is_retried_whatever_the_request() {
        for kind in [
            FailureKind::Unreachable,
            FailureKind::Overloaded,
            FailureKind::Unauthorized,
            FailureKind::NotSent,
        ] {
            assert!(failure(kind.clone()).retry_elsewhere(false), "{kind:?}");
        }
        for kind in [
            FailureKind::Timeout(Duration::from_secs(1)),
            FailureKind::Lost,
        ] {
            assert!(!failure(kind.clone()).retry_elsewhere(false), "{kind:?}");
            assert!(failure(kind.clone()).retry_elsewhere(true), "{kind:?}");
        }
        assert!(!failure(FailureKind::Refused).retry_elsewhere(true));
        assert!(failure(FailureKind::BadAnswer).retry_elsewhere(true));
    }

    #[test]
    fn messages_name_the_peer() {
        assert_eq!(
            failure(FailureKind::Timeout(Duration::from_millis(1500))).to_string(),
            "http://127.0.0.1:7102: no answer within 1500 ms"
        );
        assert_eq!(
            failure(FailureKind::Refused).to_string(),
            "http://127.0.0.1:7102: refused: why"
        );
    }
}
