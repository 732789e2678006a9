//! Membership inside one operator's fleet (`docs/protocol.md` 9.2): SWIM-style gossip among
//! the nodes of one operator, so each knows which of the others are alive before it calls
//! them, and what they serve.
//!
//! Why it exists: failover after an error costs a timeout per dead server; a resolver that
//! knows a server is dead tries it last instead. A secondary whose NOTIFY was lost waits a
//! whole `refresh` for its next poll; one that hears a newer serial by gossip pulls at once.
//!
//! The group is one operator's nodes, sharing one key: gossip never crosses organisations
//! (zones of other operators are reached over gRPC only). Every datagram is sealed with the
//! group key (XChaCha20-Poly1305, [`seal`]); one that is truncated, sealed for another group,
//! altered or replayed is dropped and counted, never given to the protocol.
//!
//! The rooms:
//! - [`seal`]: the group key, the envelope, the replay windows;
//! - [`state`]: what a member says about itself (node id, gRPC URL, zones with role and
//!   serial, load), spread as foca custom broadcasts;
//! - [`engine`]: foca's SWIM state machine (failure detection by direct and indirect probes,
//!   suspicion, refutation by incarnation) without I/O: time and datagrams are inputs;
//! - `udp`: the socket and the task that drives the engine.
//!
//! This part imports only the vocabulary; the node wires it to the authority (a newer
//! serial wakes a secondary's follower) and to the resolver (liveness orders servers).

pub mod engine;
pub mod seal;
pub mod state;
mod udp;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use engine::{Engine, GossipCounters, Liveness, MAX_DATAGRAM, MemberView, Settings};
pub use seal::{DropReason, GroupKey, KeyFileError};
pub use state::{LocalState, ZoneState};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    #[error("cannot bind the gossip socket on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "gossip address {addr} is unspecified: members send to the address a member binds, so \
         bind a specific address the other members reach (for example 10.0.0.5:7400)"
    )]
    Unspecified { addr: SocketAddr },
}

/// What `[membership]` configures.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// The UDP address to gossip on; others send to it, so it must be a specific address.
    pub bind: SocketAddr,
    /// Members to announce to at start (any live member will do).
    pub seeds: Vec<SocketAddr>,
    pub key: GroupKey,
    pub settings: Settings,
}

/// A running member: the list of members as it stands, and where this node's state goes.
pub struct Membership {
    addr: SocketAddr,
    members: watch::Receiver<Arc<Vec<MemberView>>>,
    local: watch::Sender<LocalState>,
    counters: Arc<GossipCounters>,
}

impl Membership {
    /// Binds the socket and starts gossiping; the task ends (after telling the group this
    /// member leaves) when `shutdown` is cancelled. Call inside a tokio runtime.
    pub fn start(
        config: MembershipConfig,
        local: LocalState,
        shutdown: CancellationToken,
    ) -> Result<(Membership, JoinHandle<()>), MembershipError> {
        if config.bind.ip().is_unspecified() {
            return Err(MembershipError::Unspecified { addr: config.bind });
        }
        let (socket, addr) = udp::bind(config.bind).map_err(|source| MembershipError::Bind {
            addr: config.bind,
            source,
        })?;
        let generation = crate::clock::system_unix_ms();
        let engine = Engine::new(
            addr,
            generation,
            &config.key,
            config.settings,
            config.seeds,
            local.clone(),
            rand::random(),
            std::time::Instant::now(),
        );
        let counters = Arc::clone(engine.counters());
        let (members_tx, members) = watch::channel(Arc::new(engine.members()));
        let (local_tx, local_rx) = watch::channel(local);
        let task = tokio::spawn(udp::run(socket, engine, local_rx, members_tx, shutdown));
        tracing::info!(gossip = %addr, "membership started");
        Ok((
            Membership {
                addr,
                members,
                local: local_tx,
                counters,
            },
            task,
        ))
    }

    /// The gossip address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every member known, this one first.
    pub fn members(&self) -> Arc<Vec<MemberView>> {
        Arc::clone(&self.members.borrow())
    }

    /// Changes to the member list.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Vec<MemberView>>> {
        self.members.clone()
    }

    /// This node's state changed: the group hears of it at once.
    pub fn set_local(&self, local: LocalState) {
        self.local.send_if_modified(|current| {
            if *current == local {
                false
            } else {
                *current = local;
                true
            }
        });
    }

    pub fn counters(&self) -> &Arc<GossipCounters> {
        &self.counters
    }

    /// The liveness of the member serving gRPC at `url`, if one does.
    pub fn liveness_of(&self, url: &str) -> Option<Liveness> {
        liveness_of(&self.members.borrow(), url)
    }
}

/// The liveness of the member whose state names gRPC `url` (trailing slashes ignored).
pub fn liveness_of(members: &[MemberView], url: &str) -> Option<Liveness> {
    let url = url.trim_end_matches('/');
    members
        .iter()
        .filter(|member| {
            member
                .state
                .as_ref()
                .is_some_and(|state| state.grpc_url.trim_end_matches('/') == url)
        })
        // A restarted member may be listed under an old address as down and a new one as
        // alive: the best one counts.
        .map(|member| member.liveness)
        .min()
}
