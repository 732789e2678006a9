//! A zone's records as its authority keeps them (each with where it came from) and the
//! changes that take a zone from one serial to the next.
//!
//! These are the units of everything that moves zone data around: the store keeps records
//! and a change log of [`ZoneChange`]s, a secondary receives records (a full transfer) or
//! changes (an incremental one), and a Watch stream carries changes to gateways. The one
//! encoding of all of them is in `wire`; inside the node they are these typed values.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Agent, Alias, Delegation, ZoneHeader};
use crate::name::Name;

/// Whether `a` is newer than `b` in serial number arithmetic (RFC 1982).
pub fn serial_newer(a: u32, b: u32) -> bool {
    a != b && (a.wrapping_sub(b) as i32) > 0
}

/// What kind of record a name holds in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    Agent,
    Alias,
    Delegation,
}

impl RecordKind {
    /// The word used in store keys and messages.
    pub fn word(self) -> &'static str {
        match self {
            RecordKind::Agent => "agent",
            RecordKind::Alias => "alias",
            RecordKind::Delegation => "delegation",
        }
    }
}

/// An agent and where its parts came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveAgent {
    pub agent: Arc<Agent>,
    /// The agent is defined in the zone file (its fields belong to the file).
    pub from_file: bool,
    /// URLs of endpoints registered live; the others came from the file.
    pub live: BTreeSet<String>,
}

/// One record of a zone, with its provenance.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveRecord {
    Agent(LiveAgent),
    Alias(Arc<Alias>),
    Delegation(Arc<Delegation>),
}

impl LiveRecord {
    pub fn name(&self) -> &Name {
        match self {
            LiveRecord::Agent(agent) => &agent.agent.name,
            LiveRecord::Alias(alias) => &alias.name,
            LiveRecord::Delegation(delegation) => &delegation.zone,
        }
    }

    pub fn kind(&self) -> RecordKind {
        match self {
            LiveRecord::Agent(_) => RecordKind::Agent,
            LiveRecord::Alias(_) => RecordKind::Alias,
            LiveRecord::Delegation(_) => RecordKind::Delegation,
        }
    }
}

/// One record put or deleted.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordChange {
    Put(LiveRecord),
    Delete { kind: RecordKind, name: Name },
}

impl RecordChange {
    /// The name the change is about.
    pub fn name(&self) -> &Name {
        match self {
            RecordChange::Put(record) => record.name(),
            RecordChange::Delete { name, .. } => name,
        }
    }
}

/// The changes that took a zone from `from_serial` to `serial`, and its header after them.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneChange {
    pub from_serial: u32,
    pub serial: u32,
    pub changes: Vec<RecordChange>,
    /// The header after the change (its serial is `serial`).
    pub header: ZoneHeader,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_in_rfc_1982_arithmetic() {
        assert!(serial_newer(2, 1));
        assert!(!serial_newer(1, 2));
        assert!(!serial_newer(5, 5));
        assert!(serial_newer(0, u32::MAX), "wraps around");
        assert!(serial_newer(10, u32::MAX - 10));
        assert!(!serial_newer(u32::MAX - 10, 10));
    }
}
