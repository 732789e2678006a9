//! Wires a node's membership (`membership`) to the rest of it: what the node tells the group
//! about itself, what a secondary does when it hears of a newer serial, and the liveness the
//! resolver ranks servers by. It lives in the assembly because it joins parts that never
//! import each other.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::authority::{Authority, Role};
use crate::grpc::observe::GrpcMetrics;
use crate::membership::{Liveness, LocalState, MemberView, Membership, ZoneState};
use crate::name::Name;
use crate::record::serial_newer;
use crate::resolver::liveness::{ServerHealth, ServerLiveness};

/// How often the node's own state (zone serials, load) is compared with what it last told
/// the group; a change is broadcast at once.
const LOCAL_CHECK: Duration = Duration::from_millis(250);
/// The load figure is the gRPC request rate over this window.
const LOAD_WINDOW: Duration = Duration::from_secs(5);

/// The resolver's view of gossip: a member known down is tried last.
pub struct MemberLiveness(pub Arc<Membership>);

impl ServerLiveness for MemberLiveness {
    fn health(&self, grpc_url: &str) -> ServerHealth {
        match self.0.liveness_of(grpc_url) {
            Some(Liveness::Down) => ServerHealth::Down,
            Some(Liveness::Suspect) => ServerHealth::Suspect,
            Some(Liveness::Alive) | None => ServerHealth::AliveOrUnknown,
        }
    }
}

/// What this node says about itself: its served zones with role and serial.
pub fn local_state(node_id: &str, grpc_url: &str, authority: &Authority, load: u32) -> LocalState {
    let statuses = authority.statuses();
    let mut zones: Vec<ZoneState> = statuses
        .iter()
        .filter(|(_, status)| status.served)
        .map(|(zone, status)| ZoneState {
            zone: zone.to_string(),
            primary: matches!(status.role, Role::Primary),
            serial: status.serial,
        })
        .collect();
    zones.sort_by(|a, b| a.zone.cmp(&b.zone));
    LocalState {
        node_id: node_id.to_string(),
        grpc_url: grpc_url.to_string(),
        zones,
        load,
    }
}

/// Zones this node serves as a secondary whose serial some live member has newer: each with
/// the newest serial heard and who has it.
pub fn behind(authority: &Authority, members: &[MemberView]) -> Vec<(Name, u32, String)> {
    let statuses = authority.statuses();
    let mut newest: HashMap<Name, (u32, String)> = HashMap::new();
    for member in members {
        if member.is_self || member.liveness == Liveness::Down {
            continue;
        }
        let Some(state) = &member.state else {
            continue;
        };
        for zone in &state.zones {
            let Ok(name) = Name::parse(&zone.zone) else {
                continue;
            };
            let Some(status) = statuses.get(&name) else {
                continue;
            };
            if !matches!(status.role, Role::Secondary { .. }) {
                continue;
            }
            if status.served && !serial_newer(zone.serial, status.serial) {
                continue;
            }
            let better = newest
                .get(&name)
                .is_none_or(|(serial, _)| serial_newer(zone.serial, *serial));
            if better {
                newest.insert(name, (zone.serial, state.node_id.clone()));
            }
        }
    }
    let mut behind: Vec<(Name, u32, String)> = newest
        .into_iter()
        .map(|(zone, (serial, node))| (zone, serial, node))
        .collect();
    behind.sort_by(|a, b| a.0.cmp(&b.0));
    behind
}

/// Runs until shutdown: keeps the group told of this node's state, and wakes a secondary
/// zone's follower when a member has a newer serial of it (a NOTIFY that was lost, or
/// never sent, costs no more than a gossip round).
pub async fn run(
    membership: Arc<Membership>,
    authority: Authority,
    node_id: String,
    grpc_url: String,
    grpc: Arc<GrpcMetrics>,
    shutdown: CancellationToken,
) {
    let mut members = membership.subscribe();
    let mut check = tokio::time::interval(LOCAL_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The serial each zone's follower was last woken for, so one serial wakes it once.
    let mut woken: HashMap<Name, u32> = HashMap::new();
    let mut load = LoadRate::new(&grpc);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = check.tick() => {
                let figure = load.update(&grpc);
                membership.set_local(local_state(&node_id, &grpc_url, &authority, figure));
            }
            changed = members.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let list = Arc::clone(&members.borrow_and_update());
        for (zone, serial, node) in behind(&authority, &list) {
            if woken.get(&zone) == Some(&serial) {
                continue;
            }
            let ours = authority.status(&zone).map(|status| status.serial);
            tracing::info!(%zone, serial, ours, member = %node, "gossip: a member has a newer serial; pulling a transfer");
            if authority.notified(&zone).is_ok() {
                woken.insert(zone, serial);
            }
        }
    }
}

/// gRPC requests per second over [`LOAD_WINDOW`].
struct LoadRate {
    total: u64,
    since: tokio::time::Instant,
    rate: u32,
}

impl LoadRate {
    fn new(grpc: &GrpcMetrics) -> LoadRate {
        LoadRate {
            total: total_requests(grpc),
            since: tokio::time::Instant::now(),
            rate: 0,
        }
    }

    fn update(&mut self, grpc: &GrpcMetrics) -> u32 {
        let elapsed = self.since.elapsed();
        if elapsed >= LOAD_WINDOW {
            let total = total_requests(grpc);
            let per_second = total.saturating_sub(self.total) as f64 / elapsed.as_secs_f64();
            self.rate = per_second.round().min(f64::from(u32::MAX)) as u32;
            self.total = total;
            self.since = tokio::time::Instant::now();
        }
        self.rate
    }
}

fn total_requests(grpc: &GrpcMetrics) -> u64 {
    grpc.snapshot()
        .iter()
        .flat_map(|(_, metrics)| metrics.codes.iter())
        .map(|count| count.load(Ordering::Relaxed))
        .sum()
}
