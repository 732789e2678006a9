//! The prober against a real authority (in-memory store and peers) on paused tokio time and
//! a manual clock moved together, with a scripted probe: what answers show, and when.

use std::path::Path;
use std::sync::Mutex;

use super::*;
use crate::answer::Outcome;
use crate::authority::{AuthorityConfig, Peers, PreparedAuthority};
use crate::clock::{Clock, ManualClock};
use crate::store::Store;
use crate::twins::{Links, MemoryPeers};
use crate::zone::ZoneSnapshot;

const PRIMARY: &str = "http://10.0.1.1:7102";
const SECONDARY: &str = "http://10.0.1.2:7102";
const A: &str = "http://10.0.2.1:9000/mcp";
const B: &str = "http://10.0.2.2:9000/mcp";
const QUIET: &str = "http://10.0.2.3:9000/mcp";

const SETTINGS: HealthSettings = HealthSettings {
    interval: Duration::from_secs(1),
    timeout: Duration::from_millis(500),
    down_after: 3,
    up_after: 2,
};

fn zone_file() -> ZoneSnapshot {
    let text = format!(
        r#"
        [zone]
        origin = "finance.acme"
        serial = 1
        servers = [{{ grpc = "{PRIMARY}" }}, {{ grpc = "{SECONDARY}" }}]
        health = {{ interval = "1s", timeout = "500ms", down_after = 3, up_after = 2 }}
        [[agent]]
        name = "analyst"
        endpoints = [{{ url = "{A}" }}, {{ url = "{B}" }}]
        [[agent]]
        name = "quiet"
        health = {{ enabled = false }}
        endpoints = [{{ url = "{QUIET}" }}]
        "#
    );
    crate::zone::file::parse(Path::new("finance.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
}

#[derive(Clone, Copy)]
enum Mode {
    Answers,
    Refuses,
    Hangs,
}

/// Endpoints that answer, refuse or hang as the test says; counts the probes of each.
#[derive(Default)]
struct Script {
    modes: Mutex<HashMap<String, Mode>>,
    probes: Mutex<HashMap<String, u32>>,
}

impl Script {
    fn set(&self, url: &str, mode: Mode) {
        self.modes.lock().unwrap().insert(url.to_string(), mode);
    }

    fn probes(&self, url: &str) -> u32 {
        self.probes.lock().unwrap().get(url).copied().unwrap_or(0)
    }
}

impl Probe for Script {
    fn probe(&self, url: &str, _timeout: Duration) -> BoxFuture<'static, Result<(), String>> {
        *self
            .probes
            .lock()
            .unwrap()
            .entry(url.to_string())
            .or_default() += 1;
        let mode = self
            .modes
            .lock()
            .unwrap()
            .get(url)
            .copied()
            .unwrap_or(Mode::Answers);
        Box::pin(async move {
            match mode {
                Mode::Answers => Ok(()),
                Mode::Refuses => Err("connection refused".to_string()),
                Mode::Hangs => futures::future::pending().await,
            }
        })
    }
}

struct Node {
    authority: Authority,
    catalog: Arc<Catalog>,
}

struct Fleet {
    primary: Node,
    secondary: Node,
    script: Arc<Script>,
    clock: Arc<ManualClock>,
    counts: Arc<ProbeCounts>,
    shutdown: CancellationToken,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn origin() -> Name {
    Name::parse("finance.acme").unwrap()
}

fn analyst() -> Name {
    Name::parse("analyst.finance.acme").unwrap()
}

/// A primary that probes, its secondary, the secondary's first transfer done.
async fn fleet() -> Fleet {
    fleet_with(zone_file(), Arc::new(Store::in_memory().unwrap())).await
}

/// [`fleet`] with this zone, and this store under the primary.
async fn fleet_with(zone: ZoneSnapshot, primary_store: Arc<Store>) -> Fleet {
    let peers = MemoryPeers::new(Links::new());
    let clock = ManualClock::new();
    let shutdown = CancellationToken::new();
    let start = |url: &str, store, primaries, secondaries| {
        let prepared = PreparedAuthority::prepare(AuthorityConfig {
            store,
            primaries,
            secondaries,
            keys: Vec::new(),
            notify: true,
            clock: Arc::clone(&clock) as Arc<dyn Clock>,
            peers: Arc::clone(&peers) as Arc<dyn Peers>,
        })
        .unwrap();
        let catalog = Arc::new(Catalog::new(url, prepared.snapshots().unwrap()));
        let authority = prepared
            .start(
                Arc::clone(&catalog),
                Arc::new(()),
                url.to_string(),
                shutdown.clone(),
            )
            .unwrap();
        peers.add(url, authority.clone());
        Node { authority, catalog }
    };
    let primary = start(PRIMARY, primary_store, vec![zone], Vec::new());
    let secondary = start(
        SECONDARY,
        Arc::new(Store::in_memory().unwrap()),
        Vec::new(),
        vec![(origin(), PRIMARY.to_string())],
    );
    let script = Arc::new(Script::default());
    let counts = Arc::new(ProbeCounts::default());
    Prober {
        authority: primary.authority.clone(),
        catalog: Arc::clone(&primary.catalog),
        probe: Arc::clone(&script) as Arc<dyn Probe>,
        concurrency: 4,
        counts: Arc::clone(&counts),
    }
    .spawn(shutdown.clone());
    let fleet = Fleet {
        primary,
        secondary,
        script,
        clock,
        counts,
        shutdown,
    };
    fleet
        .eventually("the first transfer", |f| {
            f.secondary.catalog.zone(&origin()).is_ok()
        })
        .await;
    fleet
}

impl Fleet {
    /// Moves both clocks (the manual one the authority reads, tokio's the timers use).
    async fn pass(&self, time: Duration) {
        self.clock.advance(time);
        tokio::time::sleep(time).await;
    }

    /// Waits for `condition` in steps of 10 ms of virtual time; returns how long it took.
    async fn eventually(&self, what: &str, condition: impl Fn(&Fleet) -> bool) -> Duration {
        let start = Instant::now();
        for _ in 0..6_000 {
            if condition(self) {
                return start.elapsed();
            }
            self.pass(Duration::from_millis(10)).await;
        }
        panic!("{what}: not within a minute");
    }
}

/// The endpoints an answer for analyst gives, from `node`, with their states.
fn answered(node: &Node) -> Vec<(String, HealthState)> {
    match node.catalog.lookup(&analyst()).map(|answer| answer.outcome) {
        Ok(Outcome::Answer(agent)) => agent
            .endpoints
            .iter()
            .map(|e| (e.url.clone(), e.health.state))
            .collect(),
        other => panic!("no answer for analyst: {other:?}"),
    }
}

fn urls(node: &Node) -> Vec<String> {
    answered(node).into_iter().map(|(url, _)| url).collect()
}

#[tokio::test(start_paused = true)]
async fn a_down_endpoint_leaves_answers_within_the_bound_and_returns_after_recovery() {
    let fleet = fleet().await;
    fleet
        .eventually("both endpoints up", |f| {
            answered(&f.primary) == [(A.into(), HealthState::Up), (B.into(), HealthState::Up)]
        })
        .await;
    let serial_up = fleet.primary.catalog.zone(&origin()).unwrap().serial();

    fleet.script.set(B, Mode::Refuses);
    let gone = fleet
        .eventually("B leaves the primary's answers", |f| {
            urls(&f.primary) == [A]
        })
        .await;
    assert!(
        gone <= SETTINGS.down_within(),
        "B left after {gone:?}, over the bound {:?}",
        SETTINGS.down_within()
    );
    // The change is zone data: one new serial, copied by the secondary, with the reason.
    let zone = fleet.primary.catalog.zone(&origin()).unwrap();
    assert_eq!(zone.serial(), serial_up.wrapping_add(1));
    let record = zone.agent(analyst().as_str()).unwrap();
    let b = record.endpoints.iter().find(|e| e.url == B).unwrap();
    assert_eq!(b.health.state, HealthState::Down);
    assert_eq!(b.health.error, "connection refused");
    assert_eq!(b.health.since_unix, fleet.clock.unix_ms() / 1000);
    fleet
        .eventually("the secondary leaves B out too", |f| {
            urls(&f.secondary) == [A]
        })
        .await;

    fleet.script.set(B, Mode::Answers);
    let back = fleet
        .eventually("B answers again", |f| urls(&f.primary) == [A, B])
        .await;
    let bound = SETTINGS.interval * SETTINGS.up_after + SETTINGS.timeout;
    assert!(back <= bound, "B came back after {back:?}, over {bound:?}");
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_that_answers_every_other_probe_never_changes_the_zone() {
    let fleet = fleet().await;
    fleet
        .eventually("both endpoints up", |f| {
            answered(&f.primary) == [(A.into(), HealthState::Up), (B.into(), HealthState::Up)]
        })
        .await;
    let serial = fleet.primary.catalog.zone(&origin()).unwrap().serial();
    for round in 0..20 {
        let mode = if round % 2 == 0 {
            Mode::Refuses
        } else {
            Mode::Answers
        };
        fleet.script.set(B, mode);
        let before = fleet.script.probes(B);
        fleet
            .eventually("B probed once more", |f| f.script.probes(B) > before)
            .await;
    }
    fleet.pass(SETTINGS.interval).await;
    assert_eq!(
        fleet.primary.catalog.zone(&origin()).unwrap().serial(),
        serial,
        "a flapping endpoint moved the serial"
    );
    assert_eq!(urls(&fleet.primary), [A, B]);
    assert!(fleet.counts.failed.load(Ordering::Relaxed) >= 10);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_probe_is_bounded_and_when_all_are_down_all_are_kept() {
    let fleet = fleet().await;
    fleet.script.set(A, Mode::Hangs);
    fleet.script.set(B, Mode::Refuses);
    fleet
        .eventually("both endpoints down", |f| {
            answered(&f.primary) == [(A.into(), HealthState::Down), (B.into(), HealthState::Down)]
        })
        .await;
    let zone = fleet.primary.catalog.zone(&origin()).unwrap();
    let record = zone.agent(analyst().as_str()).unwrap();
    assert_eq!(record.endpoints[0].health.error, "no answer within 500ms");
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_turned_probing_off_is_never_probed() {
    let fleet = fleet().await;
    fleet
        .eventually("A probed three times", |f| f.script.probes(A) >= 3)
        .await;
    assert_eq!(fleet.script.probes(QUIET), 0);
    let zone = fleet.primary.catalog.zone(&origin()).unwrap();
    let quiet = zone.agent("quiet.finance.acme").unwrap();
    assert_eq!(quiet.endpoints[0].health, EndpointHealth::default());
}

#[tokio::test(start_paused = true)]
async fn a_health_write_that_fails_is_made_again_once_the_store_takes_writes() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store =
        crate::twins::FaultyDisk::store(&dir.path().join("aop.redb"), Arc::clone(&full)).unwrap();
    let fleet = fleet_with(zone_file(), Arc::new(store)).await;
    fleet
        .eventually("both endpoints up", |f| {
            answered(&f.primary) == [(A.into(), HealthState::Up), (B.into(), HealthState::Up)]
        })
        .await;
    full.store(true, Ordering::SeqCst);
    fleet.script.set(B, Mode::Refuses);
    let probes = fleet.script.probes(B);
    fleet
        .eventually("B probed down_after times", |f| {
            f.script.probes(B) > probes + SETTINGS.down_after
        })
        .await;
    assert_eq!(
        urls(&fleet.primary),
        [A, B],
        "the disk is full: nothing written"
    );
    // The disk has room again: the prober judges B afresh from the zone and writes it.
    full.store(false, Ordering::SeqCst);
    fleet
        .eventually("B leaves the answers once the write goes through", |f| {
            urls(&f.primary) == [A]
        })
        .await;
}

#[tokio::test(start_paused = true)]
async fn many_endpoints_are_each_probed_once_an_interval() {
    const AGENTS: usize = 2_000;
    let mut text = format!(
        r#"
        [zone]
        origin = "finance.acme"
        serial = 1
        servers = [{{ grpc = "{PRIMARY}" }}, {{ grpc = "{SECONDARY}" }}]
        health = {{ interval = "1s", timeout = "500ms", down_after = 3, up_after = 2 }}
        [[agent]]
        name = "analyst"
        endpoints = [{{ url = "{A}" }}, {{ url = "{B}" }}]
        "#
    );
    for i in 0..AGENTS {
        text.push_str(&format!(
            "[[agent]]\nname = \"a{i}\"\nendpoints = [{{ url = \"http://10.0.3.1:9000/mcp?e={i}\" }}]\n"
        ));
    }
    let zone = crate::zone::file::parse(Path::new("finance.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}"));
    let fleet = fleet_with(zone, Arc::new(Store::in_memory().unwrap())).await;
    fleet
        .eventually("every endpoint probed once", |f| {
            f.counts.answered.load(Ordering::Relaxed) >= (AGENTS + 2) as u64
        })
        .await;
    let first = fleet.counts.answered.load(Ordering::Relaxed);
    fleet.pass(Duration::from_secs(5)).await;
    let probes = fleet.counts.answered.load(Ordering::Relaxed) - first;
    // Five intervals: five probes per endpoint, give or take the one at either edge.
    let endpoints = (AGENTS + 2) as u64;
    assert!(
        (4 * endpoints..=6 * endpoints).contains(&probes),
        "{probes} probes of {endpoints} endpoints in five intervals"
    );
    for i in [0, AGENTS / 2, AGENTS - 1] {
        let url = format!("http://10.0.3.1:9000/mcp?e={i}");
        let n = fleet.script.probes(&url);
        assert!((5..=7).contains(&n), "{url} probed {n} times");
    }
}

#[test]
fn judge_needs_down_after_failures_in_a_row_and_up_after_answers() {
    let mut streak = Streak::default();
    assert_eq!(judge(&mut streak, false, &SETTINGS), None);
    assert_eq!(judge(&mut streak, false, &SETTINGS), None);
    assert_eq!(judge(&mut streak, true, &SETTINGS), Some(HealthState::Up));
    assert_eq!(judge(&mut streak, false, &SETTINGS), None);
    assert_eq!(judge(&mut streak, false, &SETTINGS), None);
    assert_eq!(
        judge(&mut streak, true, &SETTINGS),
        None,
        "the run is broken"
    );
    for _ in 0..2 {
        assert_eq!(judge(&mut streak, false, &SETTINGS), None);
    }
    assert_eq!(
        judge(&mut streak, false, &SETTINGS),
        Some(HealthState::Down)
    );
    assert_eq!(judge(&mut streak, true, &SETTINGS), None);
    assert_eq!(judge(&mut streak, false, &SETTINGS), None);
    assert_eq!(judge(&mut streak, true, &SETTINGS), None);
    assert_eq!(judge(&mut streak, true, &SETTINGS), Some(HealthState::Up));
}
