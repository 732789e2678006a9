//! What members tell each other about themselves, and the table of what was heard.
//!
//! A member's state (node id, gRPC URL, zones with role and serial, a load figure) travels
//! as a foca custom broadcast, piggybacked on the SWIM messages the group exchanges anyway:
//! no datagram of its own, and it spreads epidemically (each member that hears a newer
//! state passes it on `max_transmissions` times). A state is replaced by a newer one of the
//! same member: newer means a higher (generation, version), where the generation is the
//! member's identity (it changes on every start) and the version counts its broadcasts.
//! Each member broadcasts its state when it changes and again every
//! [`super::STATE_REFRESH`], so a member that joins later, or missed a broadcast, learns it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use foca::{BroadcastHandler, Identity, Invalidates};
use serde::{Deserialize, Serialize};

/// Most zones one member announces (the rest are left out, and said so in the log).
pub const MAX_ZONES: usize = 32;
/// Longest node id, gRPC URL or zone name carried, in octets.
pub const MAX_TEXT: usize = 255;

/// A member's identity in the SWIM protocol: the address it gossips on, and a generation
/// that changes on every start, so a restarted member is told from its former self (foca's
/// "renewable identity": a member declared down rejoins as the next generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberId {
    pub addr: SocketAddr,
    pub generation: u64,
}

impl Identity for MemberId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(MemberId {
            addr: self.addr,
            generation: self.generation.wrapping_add(1),
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// A zone as a member serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneState {
    pub zone: String,
    /// The zone's primary (true) or a secondary of it.
    pub primary: bool,
    pub serial: u32,
}

/// What a member says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    pub node_id: String,
    pub grpc_url: String,
    pub zones: Vec<ZoneState>,
    /// gRPC requests per second over the last few seconds.
    pub load: u32,
}

/// One broadcast: a member's state with its place in that member's sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateBroadcast {
    pub member: MemberId,
    pub version: u64,
    pub state: LocalState,
}

impl StateBroadcast {
    fn order(&self) -> (u64, u64) {
        (self.member.generation, self.version)
    }

    fn key(&self) -> StateKey {
        StateKey {
            addr: self.member.addr,
            order: self.order(),
        }
    }

    /// Refuses states past the limits rather than carrying them.
    fn check(&self) -> Result<(), StateError> {
        let state = &self.state;
        if state.zones.len() > MAX_ZONES {
            return Err(StateError::Limit("zones", MAX_ZONES));
        }
        let texts = [&state.node_id, &state.grpc_url]
            .into_iter()
            .chain(state.zones.iter().map(|zone| &zone.zone));
        for text in texts {
            if text.len() > MAX_TEXT {
                return Err(StateError::Limit("octets in a text field", MAX_TEXT));
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("member state does not decode: {0}")]
    Decode(#[from] postcard::Error),
    #[error("member state over the limit: more than {1} {0}")]
    Limit(&'static str, usize),
}

/// What foca keeps in its broadcast backlog: a newer state of a member replaces an older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateKey {
    addr: SocketAddr,
    order: (u64, u64),
}

impl Invalidates for StateKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.addr == other.addr && self.order >= other.order
    }
}

/// The latest state heard of each member, by gossip address.
pub type StateTable = Arc<Mutex<HashMap<SocketAddr, StateBroadcast>>>;

/// foca's handler of custom broadcasts: keeps the newest state of each member and tells foca
/// to pass on only what was news.
pub struct StateBroadcasts {
    pub(crate) table: StateTable,
    pub(crate) own: SocketAddr,
}

impl BroadcastHandler<MemberId> for StateBroadcasts {
    type Key = StateKey;
    type Error = StateError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&MemberId>,
    ) -> Result<Option<StateKey>, StateError> {
        let broadcast: StateBroadcast = postcard::from_bytes(data)?;
        broadcast.check()?;
        // Our own state comes back through others: ours is the one we hold.
        if sender.is_some() && broadcast.member.addr == self.own {
            return Ok(None);
        }
        // std Mutex: held for one map update, never across an await.
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        match table.get(&broadcast.member.addr) {
            Some(known) if known.order() >= broadcast.order() => Ok(None),
            _ => {
                let key = broadcast.key();
                table.insert(broadcast.member.addr, broadcast);
                Ok(Some(key))
            }
        }
    }
}

/// The broadcast form of a state, cut to fit `max_len` octets by leaving zones out.
pub fn encode(broadcast: &StateBroadcast, max_len: usize) -> Result<(Vec<u8>, usize), StateError> {
    let mut broadcast = broadcast.clone();
    let mut left_out = broadcast.state.zones.len().saturating_sub(MAX_ZONES);
    broadcast.state.zones.truncate(MAX_ZONES);
    broadcast.check()?;
    loop {
        let bytes = postcard::to_allocvec(&broadcast)?;
        if bytes.len() <= max_len || broadcast.state.zones.is_empty() {
            return Ok((bytes, left_out));
        }
        broadcast.state.zones.pop();
        left_out += 1;
    }
}
