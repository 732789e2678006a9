//! Endpoint health (docs/protocol.md §9.1): a zone's primary probes the endpoints of its
//! agents and writes what it concludes into the zone, so that every door leaves down
//! endpoints out of its answers before any caller fails on one.
//!
//! Why here, and why like this:
//! - Only the primary probes, and health is written as zone data through the authority's one
//!   writer ([`Authority::mark_health`]): it then replicates to secondaries, survives restarts
//!   and reaches DNS, gRPC and the gateway like any other change, with no second channel.
//! - Only changes of *state* are written. An endpoint goes down after `down_after` failed
//!   probes in a row and comes back after `up_after` answered ones, so one lost probe, or an
//!   endpoint that answers every other time, never changes the zone: that is the damping that
//!   keeps a flapping endpoint from bumping the serial on every probe. Changes found in the
//!   same round are written together, as one serial.
//! - Probes are spread over the interval (each endpoint at its own phase, from a hash of its
//!   URL), never all at once, and at most [`Prober::concurrency`] are in flight; a probe is
//!   bounded by the zone's `timeout`. The probe itself is behind the [`Probe`] trait: MCP over
//!   HTTP in a node (`mcp::probe`), a script in tests.
//! - Due probes come off a queue ordered by due time, so a round costs the node the probes
//!   themselves, not a look at every endpoint each time one is due: at 100,000 endpoints a
//!   scan per wake-up was most of the prober's CPU (bench/probes.py).
//! - The probe scheduler runs on tokio time (tests pause it); the times written with a state
//!   come from the node's [`Clock`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::authority::{Authority, HealthMark, Role};
use crate::catalog::Catalog;
use crate::name::Name;
use crate::record::{EndpointHealth, HealthSettings, HealthState};

/// Probes in flight at once, per node, unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 256;

/// How often the prober looks for zones and endpoints that came or went, at the latest.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// At most one health write per this: a change found while the last write is younger waits
/// for the rest of the window and goes with the others found meanwhile (one serial step
/// for a host whose thousand endpoints died together, not a thousand).
pub const WRITE_AT_MOST_EVERY: Duration = Duration::from_millis(200);

/// One look at an endpoint: `Ok` when it answered an MCP `initialize` within the timeout,
/// else why not, in words an operator reads on the status page.
pub trait Probe: Send + Sync + 'static {
    fn probe(&self, url: &str, timeout: Duration) -> BoxFuture<'static, Result<(), String>>;
}

/// What one more probe result makes of an endpoint's state: `Some(new state)` when it
/// changes. `failures` and `successes` count the results in a row that disagree with the
/// current state.
pub fn judge(track: &mut Streak, answered: bool, settings: &HealthSettings) -> Option<HealthState> {
    match (track.state, answered) {
        // The first answer settles an endpoint never probed; a silent one needs
        // `down_after` failures like any other.
        (HealthState::Unknown, true) => {
            track.failures = 0;
            Some(HealthState::Up)
        }
        (HealthState::Up, true) => {
            track.failures = 0;
            None
        }
        (HealthState::Unknown | HealthState::Up, false) => {
            track.failures += 1;
            (track.failures >= settings.down_after).then_some(HealthState::Down)
        }
        (HealthState::Down, false) => {
            track.successes = 0;
            None
        }
        (HealthState::Down, true) => {
            track.successes += 1;
            (track.successes >= settings.up_after).then_some(HealthState::Up)
        }
    }
    .inspect(|state| {
        track.state = *state;
        track.failures = 0;
        track.successes = 0;
    })
}

/// An endpoint's state and the results in a row that argue against it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streak {
    pub state: HealthState,
    pub failures: u32,
    pub successes: u32,
}

/// Which endpoint: its zone, agent and URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Target {
    zone: Name,
    agent: Name,
    url: String,
}

struct Tracked {
    streak: Streak,
    settings: HealthSettings,
    next_due: Instant,
    in_flight: bool,
    /// Which of the endpoint's entries in the [`DueQueue`] is current: an entry whose
    /// generation differs was replaced (new settings) and is skipped when it comes up.
    generation: u64,
}

/// Endpoints by the time their next probe is due, earliest first. An endpoint has one
/// current entry while it waits and none while its probe is in flight (it goes back in
/// when the answer comes); entries of endpoints that left, or were rescheduled, are
/// dropped when they reach the front.
#[derive(Default)]
struct DueQueue {
    heap: BinaryHeap<Reverse<(Instant, u64, Target)>>,
    next_generation: u64,
}

impl DueQueue {
    /// Schedules `entry` at its `next_due`, replacing any earlier entry of it.
    fn schedule(&mut self, target: &Target, entry: &mut Tracked) {
        self.next_generation += 1;
        entry.generation = self.next_generation;
        self.heap
            .push(Reverse((entry.next_due, entry.generation, target.clone())));
    }

    /// The earliest current entry, dropping stale ones on the way: its due time.
    fn peek_due(&mut self, tracked: &HashMap<Target, Tracked>) -> Option<Instant> {
        while let Some(Reverse((due, generation, target))) = self.heap.peek() {
            match tracked.get(target) {
                Some(entry) if entry.generation == *generation && !entry.in_flight => {
                    return Some(*due);
                }
                _ => {
                    self.heap.pop();
                }
            }
        }
        None
    }
}

struct Outcome {
    target: Target,
    result: Result<(), String>,
}

/// Probes counted since start: answered and failed.
#[derive(Debug, Default)]
pub struct ProbeCounts {
    pub answered: AtomicU64,
    pub failed: AtomicU64,
}

/// The probe loop of one node: probes the endpoints of the zones it is primary for.
pub struct Prober {
    pub authority: Authority,
    pub catalog: Arc<Catalog>,
    pub probe: Arc<dyn Probe>,
    /// Probes in flight at most.
    pub concurrency: usize,
    pub counts: Arc<ProbeCounts>,
}

impl Prober {
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move { self.run(shutdown).await })
    }

    async fn run(self, shutdown: CancellationToken) {
        let mut tracked: HashMap<Target, Tracked> = HashMap::new();
        let mut queue = DueQueue::default();
        let mut seen_serials: HashMap<Name, u32> = HashMap::new();
        let slots = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let (done, mut outcomes) = mpsc::unbounded_channel::<Outcome>();
        let mut next_scan = Instant::now();
        let mut waiting: BTreeMap<Name, Vec<HealthMark>> = BTreeMap::new();
        let mut last_write: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let write_at = last_write.map_or(now, |at| at + WRITE_AT_MOST_EVERY);
            if !waiting.is_empty() && now >= write_at {
                self.write(
                    &mut tracked,
                    &mut seen_serials,
                    std::mem::take(&mut waiting),
                )
                .await;
                last_write = Some(Instant::now());
                continue;
            }
            if now >= next_scan {
                self.rescan(&mut tracked, &mut queue, &mut seen_serials, now);
                next_scan = now + RESCAN_EVERY;
            }
            self.launch_due(&mut tracked, &mut queue, &slots, &done, now);
            // A probe still due here waits for a slot: for an answer, not for the clock.
            let next_due = queue
                .peek_due(&tracked)
                .filter(|due| *due > now)
                .unwrap_or(next_scan)
                .min(next_scan);
            let wake = if waiting.is_empty() {
                next_due
            } else {
                next_due.min(write_at)
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                Some(first) = outcomes.recv() => {
                    let mut batch = vec![first];
                    while let Ok(more) = outcomes.try_recv() {
                        batch.push(more);
                    }
                    self.conclude(&mut tracked, &mut queue, batch, &mut waiting);
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Follows the catalog: endpoints of primary zones that probe, with the settings and
    /// state their zone holds now. Zones whose serial has not moved are left as they are.
    fn rescan(
        &self,
        tracked: &mut HashMap<Target, Tracked>,
        queue: &mut DueQueue,
        seen_serials: &mut HashMap<Name, u32>,
        now: Instant,
    ) {
        let statuses = self.authority.statuses();
        let primaries: HashSet<&Name> = statuses
            .iter()
            .filter(|(_, status)| status.role == Role::Primary)
            .map(|(zone, _)| zone)
            .collect();
        seen_serials.retain(|zone, _| primaries.contains(zone));
        tracked.retain(|target, _| primaries.contains(&target.zone));
        for zone in primaries {
            let Ok(snapshot) = self.catalog.zone(zone) else {
                continue;
            };
            if seen_serials.get(zone) == Some(&snapshot.serial()) {
                continue;
            }
            seen_serials.insert(zone.clone(), snapshot.serial());
            let settings = snapshot.header().health;
            let mut present: HashSet<Target> = HashSet::new();
            for name in snapshot.agent_names() {
                let Some(agent) = snapshot.agent(name.as_str()) else {
                    continue;
                };
                if !agent.health_checks {
                    continue;
                }
                for endpoint in &agent.endpoints {
                    let target = Target {
                        zone: zone.clone(),
                        agent: agent.name.clone(),
                        url: endpoint.url.clone(),
                    };
                    let recorded = endpoint.health.state;
                    let entry = match tracked.entry(target.clone()) {
                        std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                        std::collections::hash_map::Entry::Vacant(vacant) => {
                            let entry = vacant.insert(Tracked {
                                streak: Streak {
                                    state: recorded,
                                    ..Streak::default()
                                },
                                settings,
                                next_due: now + phase(&target.url, settings.interval),
                                in_flight: false,
                                generation: 0,
                            });
                            queue.schedule(&target, entry);
                            entry
                        }
                    };
                    if entry.settings != settings {
                        entry.settings = settings;
                        entry.next_due = entry.next_due.min(now + settings.interval);
                        if !entry.in_flight {
                            queue.schedule(&target, entry);
                        }
                    }
                    // The zone is the truth: a state written elsewhere (a reload, a restart)
                    // replaces what this loop believed.
                    if entry.streak.state != recorded {
                        entry.streak = Streak {
                            state: recorded,
                            ..Streak::default()
                        };
                    }
                    present.insert(target);
                }
            }
            tracked.retain(|target, _| target.zone != *zone || present.contains(target));
        }
    }

    /// Starts every probe that is due, while slots are free; the rest wait for a slot.
    fn launch_due(
        &self,
        tracked: &mut HashMap<Target, Tracked>,
        queue: &mut DueQueue,
        slots: &Arc<Semaphore>,
        done: &mpsc::UnboundedSender<Outcome>,
        now: Instant,
    ) {
        while queue.peek_due(tracked).is_some_and(|due| due <= now) {
            let Ok(slot) = Arc::clone(slots).try_acquire_owned() else {
                return;
            };
            let Some(Reverse((_, _, target))) = queue.heap.pop() else {
                return;
            };
            let Some(entry) = tracked.get_mut(&target) else {
                continue;
            };
            entry.in_flight = true;
            // The next probe keeps its phase; one that fell far behind starts afresh.
            let interval = entry.settings.interval;
            entry.next_due = if entry.next_due + interval > now {
                entry.next_due + interval
            } else {
                now + interval
            };
            let probe = self.probe.probe(&target.url, entry.settings.timeout);
            let timeout = entry.settings.timeout;
            let done = done.clone();
            tokio::spawn(async move {
                let result = match tokio::time::timeout(timeout, probe).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                drop(slot);
                let _ = done.send(Outcome { target, result });
            });
        }
    }

    /// Judges the results that came back; changes of state wait in `marks` for the next
    /// write.
    fn conclude(
        &self,
        tracked: &mut HashMap<Target, Tracked>,
        queue: &mut DueQueue,
        outcomes: Vec<Outcome>,
        marks: &mut BTreeMap<Name, Vec<HealthMark>>,
    ) {
        let now_s = self.authority.clock().unix_ms() / 1000;
        for Outcome { target, result } in outcomes {
            let counter = if result.is_ok() {
                &self.counts.answered
            } else {
                &self.counts.failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let Some(entry) = tracked.get_mut(&target) else {
                continue;
            };
            entry.in_flight = false;
            queue.schedule(&target, entry);
            if let Some(state) = judge(&mut entry.streak, result.is_ok(), &entry.settings) {
                let error = match (&result, state) {
                    (Err(why), HealthState::Down) => why.as_str(),
                    _ => "",
                };
                tracing::info!(zone = %target.zone, agent = %target.agent, url = %target.url, state = state.word(), error, "endpoint health changed");
                marks
                    .entry(target.zone.clone())
                    .or_default()
                    .push(HealthMark {
                        agent: target.agent.clone(),
                        url: target.url.clone(),
                        health: EndpointHealth::new(state, now_s, error),
                    });
            }
        }
    }

    /// Writes the changes of state found, one write per zone.
    async fn write(
        &self,
        tracked: &mut HashMap<Target, Tracked>,
        seen_serials: &mut HashMap<Name, u32>,
        marks: BTreeMap<Name, Vec<HealthMark>>,
    ) {
        for (zone, marks) in marks {
            let targets: Vec<Target> = marks
                .iter()
                .map(|mark| Target {
                    zone: zone.clone(),
                    agent: mark.agent.clone(),
                    url: mark.url.clone(),
                })
                .collect();
            if let Err(error) = self.authority.mark_health(zone.clone(), marks).await {
                // Not written: forget what this loop concluded, so the next scan starts
                // again from what the zone holds.
                tracing::warn!(%zone, %error, "endpoint health not written");
                for target in targets {
                    tracked.remove(&target);
                }
                // The zone's serial has not moved, yet the next scan must read it again.
                seen_serials.remove(&zone);
            }
        }
    }
}

/// Where in the interval an endpoint is probed: spread by a hash of its URL.
fn phase(url: &str, interval: Duration) -> Duration {
    let mut hasher = DefaultHasher::new();
    url.hash(&mut hasher);
    let nanos = u64::try_from(interval.as_nanos())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_nanos(hasher.finish() % nanos)
}

#[cfg(test)]
mod tests;
