//! Gossip membership (docs/protocol.md 9.2), tested the way chitchat tests its own: members
//! wired through an in-memory network that loses datagrams at random and cuts partitions on
//! a script, on a clock the test moves, so a 30-second run takes milliseconds and the same
//! seed replays the same run. Then one end-to-end run of real nodes on loopback UDP.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use aop::membership::seal::{GroupKey, OVERHEAD};
use aop::membership::{
    DropReason, Engine, Liveness, LocalState, MembershipConfig, Settings, ZoneState,
};
use aop::name::Name;
use aop::node::ServeOptions;

use crate::support::{bind, eventually, zone};

/// Latency of every datagram in the simulated network.
const LATENCY: Duration = Duration::from_millis(2);

fn key() -> GroupKey {
    GroupKey::from_bytes([42; 32])
}

fn addr(index: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (index / 250) as u8, (index % 250 + 1) as u8], 7400))
}

fn local(index: usize) -> LocalState {
    LocalState {
        node_id: format!("node-{index}"),
        grpc_url: format!("http://{}:7100", addr(index).ip()),
        zones: Vec::new(),
        load: 0,
    }
}

/// Members on an in-memory network, on a simulated clock.
struct Network {
    start: Instant,
    now: Instant,
    /// `None`: the member crashed (it sends and receives nothing).
    members: Vec<Option<Engine>>,
    index: HashMap<SocketAddr, usize>,
    /// Datagrams on the wire: (arrival, sequence) -> (destination, datagram).
    wire: BTreeMap<(Instant, u64), (usize, Vec<u8>)>,
    sequence: u64,
    rng: StdRng,
    /// Probability that a datagram is lost.
    loss: f64,
    /// Each member's side; datagrams cross sides only when `None`.
    sides: Option<Vec<usize>>,
    /// Datagrams delivered and lost.
    delivered: u64,
    lost: u64,
}

impl Network {
    /// `size` members, each given member 0 as its seed.
    fn new(size: usize, seed: u64) -> Network {
        let start = Instant::now();
        let members = (0..size)
            .map(|i| {
                Some(Engine::new(
                    addr(i),
                    1,
                    &key(),
                    Settings::default(),
                    vec![addr(0)],
                    local(i),
                    seed.wrapping_mul(1000).wrapping_add(i as u64),
                    start,
                ))
            })
            .collect();
        let mut network = Network {
            start,
            now: start,
            members,
            index: (0..size).map(|i| (addr(i), i)).collect(),
            wire: BTreeMap::new(),
            sequence: 0,
            rng: StdRng::seed_from_u64(seed),
            loss: 0.0,
            sides: None,
            delivered: 0,
            lost: 0,
        };
        network.route_all();
        network
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn route_all(&mut self) {
        for from in 0..self.members.len() {
            self.route(from);
        }
    }

    fn route(&mut self, from: usize) {
        let Some(member) = self.members[from].as_mut() else {
            return;
        };
        for (to, datagram) in member.drain_outbox() {
            let Some(&to) = self.index.get(&to) else {
                continue;
            };
            let crosses = self
                .sides
                .as_ref()
                .is_some_and(|sides| sides[from] != sides[to]);
            if crosses || self.rng.random_bool(self.loss) {
                self.lost += 1;
                continue;
            }
            self.sequence += 1;
            self.wire
                .insert((self.now + LATENCY, self.sequence), (to, datagram));
        }
    }

    /// Runs the network for `span` of simulated time, calling `check` after every event.
    fn run_checking(&mut self, span: Duration, mut check: impl FnMut(&Network) -> bool) -> bool {
        let until = self.now + span;
        loop {
            if check(self) {
                return true;
            }
            let next_member = self
                .members
                .iter()
                .flatten()
                .map(Engine::next_deadline)
                .min();
            let next_datagram = self.wire.first_key_value().map(|((at, _), _)| *at);
            let next = [next_member, next_datagram]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(until)
                .max(self.now);
            if next > until {
                self.now = until;
                return check(self);
            }
            self.now = next;
            while let Some(entry) = self.wire.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let (to, datagram) = entry.remove();
                if let Some(member) = self.members[to].as_mut() {
                    member.handle_datagram(self.now, &datagram);
                    self.delivered += 1;
                }
                self.route(to);
            }
            for i in 0..self.members.len() {
                let now = self.now;
                if let Some(member) = self.members[i].as_mut()
                    && member.next_deadline() <= now
                {
                    member.advance(now);
                }
                self.route(i);
            }
        }
    }

    fn run(&mut self, span: Duration) {
        self.run_checking(span, |_| false);
    }

    /// How member `viewer` sees member `seen`.
    fn view(&self, viewer: usize, seen: usize) -> Option<Liveness> {
        self.members[viewer]
            .as_ref()?
            .members()
            .iter()
            .find(|m| m.addr == addr(seen))
            .map(|m| m.liveness)
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(|i| self.members[*i].is_some())
    }

    /// Every live member sees every other live member alive.
    fn converged(&self) -> bool {
        self.live().all(|a| {
            self.live()
                .all(|b| a == b || self.view(a, b) == Some(Liveness::Alive))
        })
    }

    /// Forms the group: every member sees every other alive, within 30 s.
    fn form(&mut self) {
        let formed = self.run_checking(Duration::from_secs(30), Network::converged);
        assert!(
            formed,
            "{} members did not converge within 30 s",
            self.members.len()
        );
    }
}

/// Kills one member of a formed group of `size`: how long until every live member knows it
/// dead, or `None` when some member still did not after 10 s.
fn detection_time(size: usize, seed: u64) -> Option<Duration> {
    let mut network = Network::new(size, seed);
    network.form();
    let dead = size - 1;
    network.members[dead] = None;
    let killed = network.elapsed();
    let known = network.run_checking(Duration::from_secs(10), |n| {
        n.live().all(|i| n.view(i, dead) == Some(Liveness::Down))
    });
    // The rest stay alive to each other.
    assert!(network.converged(), "{size} members, seed {seed}");
    known.then(|| network.elapsed() - killed)
}

/// Runs a formed group of `size` for 30 s at 30% datagram loss: the first false death seen,
/// as (viewer, member, when), if any.
fn false_death_under_loss(size: usize, seed: u64) -> Option<(usize, usize, Duration)> {
    let mut network = Network::new(size, seed);
    network.form();
    network.loss = 0.3;
    let mut false_death = None;
    network.run_checking(Duration::from_secs(30), |n| {
        for a in n.live() {
            for b in n.live() {
                if a != b && n.view(a, b) == Some(Liveness::Down) {
                    false_death = Some((a, b, n.elapsed()));
                    return true;
                }
            }
        }
        false
    });
    let ratio = network.lost as f64 / (network.lost + network.delivered) as f64;
    assert!(
        ratio > 0.2,
        "the network lost {ratio:.2} of datagrams, not 30%"
    );
    false_death
}

#[test]
fn a_dead_member_is_known_to_every_live_member_within_10_s() {
    for (size, seed) in [(3, 1), (10, 2), (50, 3)] {
        let took = detection_time(size, seed)
            .unwrap_or_else(|| panic!("{size} members: not every member knew within 10 s"));
        println!("{size} members: a dead member known to all in {took:?}");
    }
}

#[test]
fn no_member_is_declared_dead_during_30_s_of_30_percent_loss() {
    // (3, 101): a suspicion refuted in time still made foca tell the member it was down
    // (`Engine::is_stale_suspicion`); it rejoined under a new generation and its old one was
    // declared dead at 16 s.
    for (size, seed) in [(3, 11), (3, 101), (10, 12), (50, 13)] {
        assert_eq!(
            false_death_under_loss(size, seed),
            None,
            "{size} members: (viewer, member, at) declared dead"
        );
    }
}

/// The two guarantees of docs/protocol.md 9.2 over many seeds rather than one each: the
/// margin the defaults leave. Slow in a debug build (minutes), so run on demand:
/// `cargo test --release --test it membership::the_guarantees_hold_over_many_seeds -- --ignored --nocapture`
#[test]
#[ignore = "a sweep over many seeds: minutes; run on demand"]
fn the_guarantees_hold_over_many_seeds() {
    let seeds = 100..120;
    let mut broken = Vec::new();
    for size in [3, 10, 50] {
        let mut times = Vec::new();
        for seed in seeds.clone() {
            match detection_time(size, seed) {
                Some(took) => times.push(took),
                None => broken.push(format!("{size} members, seed {seed}: not known in 10 s")),
            }
        }
        times.sort();
        if let (Some(median), Some(max)) = (times.get(times.len() / 2), times.last()) {
            println!(
                "{size} members, {} seeds: a dead member known to all in {median:?} (median), \
                 {max:?} (max)",
                times.len()
            );
        }
        let mut deaths = 0;
        for seed in seeds.clone() {
            if let Some(death) = false_death_under_loss(size, seed) {
                deaths += 1;
                broken.push(format!(
                    "{size} members, seed {seed}: (viewer, member, at) {death:?} declared dead"
                ));
            }
        }
        println!(
            "{size} members, {} seeds: {deaths} with a false death in 30 s at 30% loss",
            seeds.end - seeds.start
        );
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn a_partition_heals() {
    let mut network = Network::new(10, 21);
    network.form();
    network.sides = Some((0..10).map(|i| usize::from(i >= 5)).collect());
    let split = network.run_checking(Duration::from_secs(30), |n| {
        n.view(0, 9) == Some(Liveness::Down) && n.view(9, 0) == Some(Liveness::Down)
    });
    assert!(split, "each side declares the other down");
    network.run(Duration::from_secs(5));
    network.sides = None;
    let healed_at = network.elapsed();
    let healed = network.run_checking(Duration::from_secs(30), Network::converged);
    assert!(healed, "the group is whole again within 30 s of the heal");
    println!("partition healed in {:?}", network.elapsed() - healed_at);
}

#[test]
fn state_spreads_and_a_newer_serial_reaches_every_member() {
    let mut network = Network::new(10, 31);
    network.form();
    let mut state = local(3);
    state.zones = vec![ZoneState {
        zone: "finance.acme".into(),
        primary: true,
        serial: 7,
    }];
    network.members[3].as_mut().unwrap().set_local(state);
    network.route(3);
    let changed = network.elapsed();
    let known = network.run_checking(Duration::from_secs(5), |n| {
        n.live().all(|i| {
            n.members[i].as_ref().unwrap().members().iter().any(|m| {
                m.addr == addr(3)
                    && m.state
                        .as_ref()
                        .is_some_and(|s| s.zones.first().is_some_and(|z| z.serial == 7))
            })
        })
    });
    assert!(known, "every member hears serial 7 within 5 s");
    println!(
        "a state change reached 10 members in {:?}",
        network.elapsed() - changed
    );
    // Each member's node id and gRPC URL too.
    let seen = network.members[0].as_ref().unwrap().members();
    for i in 1..10 {
        let member = seen.iter().find(|m| m.addr == addr(i)).unwrap();
        assert_eq!(member.state.as_ref().unwrap().node_id, format!("node-{i}"));
    }
}

#[test]
fn bad_datagrams_are_dropped_and_counted() {
    let start = Instant::now();
    let member = |i: usize, key: &GroupKey, seeds: Vec<SocketAddr>| {
        Engine::new(
            addr(i),
            1,
            key,
            Settings::default(),
            seeds,
            local(i),
            i as u64,
            start,
        )
    };
    let mut a = member(0, &key(), Vec::new());
    // b announces itself to a: capture the datagram.
    let mut b = member(1, &key(), vec![addr(0)]);
    let announce = b.drain_outbox().pop().expect("b announces to its seed").1;
    // A member of another group (another key) announces too.
    let mut stranger = member(2, &GroupKey::from_bytes([7; 32]), vec![addr(0)]);
    let foreign = stranger.drain_outbox().pop().expect("an announce").1;

    a.handle_datagram(start, &foreign);
    a.handle_datagram(start, &announce[..OVERHEAD - 1]);
    let mut altered = announce.clone();
    *altered.last_mut().unwrap() ^= 1;
    a.handle_datagram(start, &altered);
    a.handle_datagram(start, &announce);
    a.handle_datagram(start, &announce);
    let counters = a.counters();
    assert_eq!(counters.dropped(DropReason::UnknownGroup), 1);
    assert_eq!(counters.dropped(DropReason::Truncated), 1);
    assert_eq!(counters.dropped(DropReason::Authentication), 1);
    assert_eq!(counters.dropped(DropReason::Replay), 1);
    // Only b, through its one good datagram, became a member; the stranger never did.
    let members = a.members();
    assert!(members.iter().any(|m| m.addr == addr(1)));
    assert!(!members.iter().any(|m| m.addr == addr(2)));
}

/// Datagrams and octets per second each member sends in a steady group (no loss): the cost
/// of gossip, printed for docs/protocol.md and bounded here.
#[test]
fn what_gossip_costs_per_member() {
    for (size, seed) in [(10, 41), (50, 42)] {
        let mut network = Network::new(size, seed);
        network.form();
        let before: Vec<(u64, u64)> = counts(&network);
        let span = Duration::from_secs(60);
        network.run(span);
        let after = counts(&network);
        let datagrams: u64 = after.iter().zip(&before).map(|(a, b)| a.0 - b.0).sum();
        let bytes: u64 = after.iter().zip(&before).map(|(a, b)| a.1 - b.1).sum();
        let per_member = |total: u64| total as f64 / size as f64 / span.as_secs_f64();
        println!(
            "{size} members: {:.1} datagrams/s and {:.0} octets/s sent per member",
            per_member(datagrams),
            per_member(bytes)
        );
        assert!(per_member(datagrams) < 30.0);
        assert!(per_member(bytes) < 30_000.0);
    }
}

fn counts(network: &Network) -> Vec<(u64, u64)> {
    use std::sync::atomic::Ordering::Relaxed;
    network
        .members
        .iter()
        .flatten()
        .map(|m| {
            let c = m.counters();
            (c.datagrams_out.load(Relaxed), c.bytes_out.load(Relaxed))
        })
        .collect()
}

fn finance_zone(primary_url: &str, serial: u32) -> String {
    format!(
        "[zone]\norigin = \"finance.acme\"\nserial = {serial}\nttl = 60\nrefresh = 3600\n\
         servers = [{{ grpc = \"{primary_url}\" }}]\n\n\
         [[agent]]\nname = \"ledger\"\ndescription = \"serial {serial}\"\n\
         endpoints = [{{ url = \"http://127.0.0.1:9/mcp\" }}]\n"
    )
}

/// A primary that never NOTIFYs, and its secondary that polls only hourly: the secondary
/// still has a change within seconds, because the primary's new serial comes by gossip.
#[tokio::test]
async fn a_secondary_whose_notify_was_lost_catches_up_by_gossip() {
    let key_dir = tempfile::tempdir().expect("a temp dir");
    let key_path = key_dir.path().join("gossip.key");
    std::fs::write(&key_path, GroupKey::from_bytes([9; 32]).to_base64()).expect("key written");
    let key = GroupKey::load_file(&key_path).expect("key reads");
    let gossip = |seeds: Vec<SocketAddr>| MembershipConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        seeds,
        key: key.clone(),
        settings: Settings::default(),
    };
    let zone_name = Name::parse("finance.acme").unwrap();
    let listener = bind().await;
    let primary_url = listener.url();
    let primary = listener
        .serve_with(
            ServeOptions::new(vec![zone(&finance_zone(&primary_url, 1))])
                .node_id("finance-1")
                .notify(false)
                .membership(gossip(Vec::new())),
        )
        .expect("primary serves");
    let primary_gossip = primary.membership().unwrap().local_addr();
    let secondary = bind()
        .await
        .serve_with(
            ServeOptions::new(Vec::new())
                .node_id("finance-2")
                .secondary(zone_name.clone(), &primary_url)
                .membership(gossip(vec![primary_gossip])),
        )
        .expect("secondary serves");
    let serial_at =
        |node: &aop::node::NodeHandle| node.catalog().zone(&zone_name).ok().map(|z| z.serial());
    eventually(
        Duration::from_secs(10),
        "the secondary's first transfer",
        || async { serial_at(&secondary) == Some(1) },
    )
    .await;
    let membership = Arc::clone(secondary.membership().unwrap());
    eventually(
        Duration::from_secs(10),
        "each node sees the other alive",
        || async {
            membership.liveness_of(&primary_url) == Some(Liveness::Alive)
                && primary.membership().unwrap().members().len() == 2
        },
    )
    .await;

    // A new zone file at the primary: serial 2, and no NOTIFY goes out.
    primary
        .authority()
        .reload(vec![zone(&finance_zone(&primary_url, 2))])
        .await
        .expect("reload");
    // The reload is answered before its commit is published.
    eventually(
        Duration::from_secs(5),
        "the primary has serial 2",
        || async { serial_at(&primary) == Some(2) },
    )
    .await;
    let took = eventually(
        Duration::from_secs(10),
        "the secondary has serial 2",
        || async { serial_at(&secondary) == Some(2) },
    )
    .await;
    println!("secondary caught up by gossip in {took:?}");

    // A clean shutdown tells the group at once: the primary is down to the secondary, and
    // its resolver would try it last.
    primary.shutdown().await.expect("primary stops");
    eventually(
        Duration::from_secs(10),
        "the primary is down to the secondary",
        || async { membership.liveness_of(&primary_url) == Some(Liveness::Down) },
    )
    .await;
    secondary.shutdown().await.expect("secondary stops");
}
