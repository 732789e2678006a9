//! The sans-I/O core of a member: foca's SWIM state machine, the envelope around every
//! datagram, and the timers foca asks for, driven by whoever owns the clock.
//!
//! Nothing here touches a socket or reads the time: [`Engine::handle_datagram`] takes a
//! datagram and the time it arrived, [`Engine::advance`] fires what is due at a given time,
//! and what to send accumulates in an outbox the caller drains. The UDP task (`udp`) drives
//! it with tokio's clock; the tests drive fifty of them through an in-memory network on a
//! clock they move by hand, with loss and partitions, deterministically.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use foca::{
    Config, Foca, Notification, OwnedNotification, PeriodicParams, PostcardCodec, Runtime, State,
    Timer,
};
use rand_foca::SeedableRng;
use rand_foca::rngs::StdRng;

use super::seal::{DropReason, GroupKey, OVERHEAD, Opener, Sealer};
use super::state::{self, LocalState, MemberId, StateBroadcast, StateBroadcasts, StateTable};

/// Largest datagram sent, envelope included: under a 1500-octet Ethernet MTU with room for
/// IPv6 and UDP headers, so gossip never relies on fragmentation.
pub const MAX_DATAGRAM: usize = 1400;

/// The group's timing. The defaults meet the contract for 3 to 50 members (measured by the
/// membership tests): a dead member is known to all within 10 s, and 30% datagram loss for
/// 30 s declares nobody dead.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Each member probes one other member this often.
    pub probe_period: Duration,
    /// How long a direct probe waits for its ack before asking others to probe indirectly.
    pub probe_rtt: Duration,
    /// Members asked to probe indirectly.
    pub indirect_probes: usize,
    /// How long a member stays suspect, so it can refute, before it is declared down.
    pub suspect_to_down_after: Duration,
    /// Times each member passes on one piece of news.
    pub max_transmissions: u8,
    /// How often each member gossips to `gossip_fanout` random members.
    pub gossip_period: Duration,
    pub gossip_fanout: usize,
    /// How often each member announces itself to members it believes down, so two sides of
    /// a healed partition find each other again.
    pub announce_to_down_period: Duration,
    /// How often a member broadcasts its state even when nothing changed.
    pub state_refresh: Duration,
    /// How often a member with no live peer announces itself to the seeds again.
    pub seed_retry: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            indirect_probes: 5,
            suspect_to_down_after: Duration::from_secs(5),
            max_transmissions: 20,
            gossip_period: Duration::from_millis(200),
            gossip_fanout: 3,
            announce_to_down_period: Duration::from_secs(5),
            state_refresh: Duration::from_secs(30),
            seed_retry: Duration::from_secs(2),
        }
    }
}

impl Settings {
    fn foca_config(&self) -> Config {
        let nonzero = |n: usize| NonZeroUsize::new(n.max(1)).unwrap_or(NonZeroUsize::MIN);
        let mut config = Config::simple();
        config.probe_period = self.probe_period;
        config.probe_rtt = self.probe_rtt;
        config.num_indirect_probes = nonzero(self.indirect_probes);
        config.max_transmissions = NonZeroU8::new(self.max_transmissions).unwrap_or(NonZeroU8::MIN);
        config.suspect_to_down_after = self.suspect_to_down_after;
        // Down members stay listed (as down) for a day, for the status page and metrics.
        config.remove_down_after = Some(Duration::from_secs(24 * 3600));
        config.max_packet_size = nonzero(MAX_DATAGRAM - OVERHEAD);
        config.notify_down_members = true;
        config.periodic_announce = Some(PeriodicParams {
            frequency: Duration::from_secs(30),
            num_members: nonzero(1),
        });
        config.periodic_announce_to_down_members = Some(PeriodicParams {
            frequency: self.announce_to_down_period,
            num_members: nonzero(2),
        });
        config.periodic_gossip = Some(PeriodicParams {
            frequency: self.gossip_period,
            num_members: nonzero(self.gossip_fanout),
        });
        config
    }
}

/// A member's liveness, as this member believes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Liveness {
    Alive,
    /// A probe failed; it has `suspect_to_down_after` to refute.
    Suspect,
    Down,
}

impl Liveness {
    pub const ALL: [Liveness; 3] = [Liveness::Alive, Liveness::Suspect, Liveness::Down];

    pub fn label(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Suspect => "suspect",
            Liveness::Down => "down",
        }
    }
}

/// One member as this member sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Its gossip address.
    pub addr: SocketAddr,
    pub liveness: Liveness,
    /// This member itself (always alive in its own view).
    pub is_self: bool,
    /// What it last said about itself, if anything was heard yet.
    pub state: Option<LocalState>,
}

/// What crossed the wire, and what was dropped and why.
#[derive(Debug, Default)]
pub struct GossipCounters {
    pub datagrams_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub bytes_out: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
}

impl GossipCounters {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()].load(Ordering::Relaxed)
    }

    fn count_drop(&self, reason: DropReason) {
        self.dropped[reason.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// What foca asked for during one call, collected for the engine to act on afterwards.
#[derive(Default)]
struct Pending {
    now: Option<Instant>,
    sends: Vec<(SocketAddr, Vec<u8>)>,
    timers: BTreeMap<(Instant, u64), Timer<MemberId>>,
    timer_seq: u64,
    events: Vec<OwnedNotification<MemberId>>,
}

impl Runtime<MemberId> for &mut Pending {
    fn notify(&mut self, notification: Notification<'_, MemberId>) {
        self.events.push(notification.to_owned());
    }

    fn send_to(&mut self, to: MemberId, data: &[u8]) {
        self.sends.push((to.addr, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<MemberId>, after: Duration) {
        let now = self.now.unwrap_or_else(Instant::now);
        self.timer_seq += 1;
        self.timers.insert((now + after, self.timer_seq), event);
    }
}

type Swim = Foca<MemberId, PostcardCodec, StdRng, StateBroadcasts>;

/// One member of a gossip group, without I/O.
pub struct Engine {
    foca: Swim,
    settings: Settings,
    sealer: Sealer,
    opener: Opener,
    nonces: StdRng,
    pending: Pending,
    outbox: Vec<(SocketAddr, Vec<u8>)>,
    table: StateTable,
    local: LocalState,
    version: u64,
    next_refresh: Instant,
    seeds: Vec<SocketAddr>,
    next_seed_announce: Instant,
    counters: Arc<GossipCounters>,
    /// Set by [`Engine::leave`]: foca then reports this member defunct, which is the leave
    /// itself, not the group declaring it down.
    leaving: bool,
}

impl Engine {
    /// A member gossiping at `addr` (the address others send to), with `generation` telling
    /// this start from earlier ones (Unix ms at start does), its randomness from `seed`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        addr: SocketAddr,
        generation: u64,
        key: &GroupKey,
        settings: Settings,
        seeds: Vec<SocketAddr>,
        local: LocalState,
        seed: u64,
        now: Instant,
    ) -> Engine {
        let table = StateTable::default();
        let handler = StateBroadcasts {
            table: Arc::clone(&table),
            own: addr,
        };
        let id = MemberId { addr, generation };
        let mut rng = StdRng::seed_from_u64(seed);
        let sender = rand_foca::RngExt::random::<u64>(&mut rng);
        let foca = Foca::with_custom_broadcast(
            id,
            settings.foca_config(),
            StdRng::seed_from_u64(seed ^ 0x5157_494d),
            PostcardCodec,
            handler,
        );
        let mut engine = Engine {
            foca,
            sealer: Sealer::new(key, sender),
            opener: Opener::new(key),
            nonces: rng,
            pending: Pending::default(),
            outbox: Vec::new(),
            table,
            local,
            version: 0,
            next_refresh: now,
            seeds: seeds.into_iter().filter(|seed| *seed != addr).collect(),
            next_seed_announce: now,
            counters: Arc::new(GossipCounters::default()),
            leaving: false,
            settings,
        };
        engine.advance(now);
        engine
    }

    pub fn addr(&self) -> SocketAddr {
        self.foca.identity().addr
    }

    pub fn counters(&self) -> &Arc<GossipCounters> {
        &self.counters
    }

    /// A datagram that arrived at `now`.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.counters.datagrams_in.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_in
            .fetch_add(datagram.len() as u64, Ordering::Relaxed);
        let packet = match self.opener.open(datagram) {
            Ok(packet) => packet,
            Err(reason) => {
                self.counters.count_drop(reason);
                tracing::debug!(
                    reason = reason.label(),
                    len = datagram.len(),
                    "gossip datagram dropped"
                );
                return;
            }
        };
        self.pending.now = Some(now);
        if let Err(error) = self.foca.handle_data(&packet, &mut self.pending) {
            self.counters.count_drop(DropReason::Invalid);
            tracing::debug!(%error, "gossip packet refused");
        }
        self.flush();
        self.advance(now);
    }

    /// A suspicion's deadline that no longer applies: the member refuted it (a higher
    /// incarnation), or is known under another generation, or is gone.
    ///
    /// foca 2.0.0 checks this itself before declaring the member down, but then sends the
    /// member `TurnUndead` whatever the check found, so a member that refuted in time still
    /// hears it is down, takes a new generation and rejoins: under 30% datagram loss in a
    /// group of three, that was a false death in 5 of 20 seeded runs
    /// (`membership::the_guarantees_hold_over_many_seeds`). Such timers are dropped here.
    fn is_stale_suspicion(&self, timer: &Timer<MemberId>) -> bool {
        let Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = timer
        else {
            return false;
        };
        !self.foca.iter_membership_state().any(|member| {
            member.id() == member_id
                && member.incarnation() == *incarnation
                && member.state() == State::Suspect
        })
    }

    /// Fires every timer due by `now`, rebroadcasts this member's state when its refresh is
    /// due, and announces to the seeds while no peer is alive.
    pub fn advance(&mut self, now: Instant) {
        self.pending.now = Some(now);
        while let Some(entry) = self.pending.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            if self.is_stale_suspicion(&timer) {
                continue;
            }
            if let Err(error) = self.foca.handle_timer(timer, &mut self.pending) {
                tracing::debug!(%error, "gossip timer");
            }
        }
        if now >= self.next_refresh {
            self.broadcast_state();
            self.next_refresh = now + self.settings.state_refresh;
        }
        if self.foca.num_members() == 0 && now >= self.next_seed_announce {
            for seed in self.seeds.clone() {
                // The seed's generation is unknown; foca takes an announce addressed to any
                // generation of its address.
                let dst = MemberId {
                    addr: seed,
                    generation: 0,
                };
                if let Err(error) = self.foca.announce(dst, &mut self.pending) {
                    tracing::debug!(%error, %seed, "gossip announce");
                }
            }
            self.next_seed_announce = now + self.settings.seed_retry;
        }
        self.flush();
    }

    /// When [`Engine::advance`] next has something to do.
    pub fn next_deadline(&self) -> Instant {
        let mut next = self.next_refresh;
        if let Some(((at, _), _)) = self.pending.timers.first_key_value() {
            next = next.min(*at);
        }
        if self.foca.num_members() == 0 && !self.seeds.is_empty() {
            next = next.min(self.next_seed_announce);
        }
        next
    }

    /// This member's own state changed: broadcast it now when its zones or addresses
    /// changed; a new load figure alone waits for the next refresh, so a busy group does
    /// not gossip every load change.
    pub fn set_local(&mut self, local: LocalState) {
        let news = LocalState {
            load: 0,
            ..local.clone()
        } != LocalState {
            load: 0,
            ..self.local.clone()
        };
        self.local = local;
        if news {
            self.broadcast_state();
            self.flush();
        }
    }

    /// Tells the group this member leaves (a clean shutdown), so it is down at once rather
    /// than after a suspicion.
    pub fn leave(&mut self, now: Instant) {
        self.leaving = true;
        self.pending.now = Some(now);
        if let Err(error) = self.foca.leave_cluster(&mut self.pending) {
            tracing::debug!(%error, "gossip leave");
        }
        self.flush();
    }

    /// Datagrams to send, with their destinations.
    pub fn drain_outbox(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.outbox)
    }

    /// Every member known, this one first.
    pub fn members(&self) -> Vec<MemberView> {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut members = vec![MemberView {
            addr: self.addr(),
            liveness: Liveness::Alive,
            is_self: true,
            state: Some(self.local.clone()),
        }];
        for member in self.foca.iter_membership_state() {
            let addr = member.id().addr;
            members.push(MemberView {
                addr,
                liveness: match member.state() {
                    State::Alive => Liveness::Alive,
                    State::Suspect => Liveness::Suspect,
                    State::Down => Liveness::Down,
                },
                is_self: false,
                state: table.get(&addr).map(|broadcast| broadcast.state.clone()),
            });
        }
        members
    }

    fn broadcast_state(&mut self) {
        self.version += 1;
        let broadcast = StateBroadcast {
            member: *self.foca.identity(),
            version: self.version,
            state: self.local.clone(),
        };
        // Room for the SWIM header and a few membership updates beside it.
        let room = MAX_DATAGRAM - OVERHEAD - 256;
        match state::encode(&broadcast, room) {
            Ok((bytes, left_out)) => {
                if left_out > 0 {
                    tracing::warn!(
                        left_out,
                        "gossip state too large: some zones left out of it"
                    );
                }
                if let Err(error) = self.foca.add_broadcast(&bytes) {
                    tracing::warn!(%error, "gossip state not broadcast");
                }
            }
            Err(error) => tracing::warn!(%error, "gossip state not broadcast"),
        }
    }

    /// Seals what foca sent and acts on its notifications.
    fn flush(&mut self) {
        for (to, packet) in self.pending.sends.drain(..) {
            let nonce: [u8; 24] = rand_foca::RngExt::random(&mut self.nonces);
            let datagram = self.sealer.seal(&packet, nonce);
            if datagram.is_empty() {
                continue;
            }
            self.counters.datagrams_out.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes_out
                .fetch_add(datagram.len() as u64, Ordering::Relaxed);
            self.outbox.push((to, datagram));
        }
        for event in self.pending.events.drain(..) {
            match event {
                OwnedNotification::MemberUp(id) => {
                    tracing::info!(member = %id.addr, "gossip member up")
                }
                OwnedNotification::MemberDown(id) => {
                    tracing::warn!(member = %id.addr, "gossip member down")
                }
                OwnedNotification::Rejoin(id) => {
                    tracing::warn!(
                        generation = id.generation,
                        "this member was declared down by the group; rejoined as a new generation"
                    );
                    // Say who we are again, under the new identity, at the next advance.
                    if let Some(now) = self.pending.now {
                        self.next_refresh = now;
                    }
                }
                OwnedNotification::Idle => tracing::info!("gossip: no live peer"),
                OwnedNotification::Defunct if self.leaving => {
                    tracing::info!("gossip: left the group")
                }
                OwnedNotification::Defunct => {
                    tracing::warn!("gossip: this member is declared down")
                }
                _ => {}
            }
        }
    }
}
