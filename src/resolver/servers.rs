//! Which server of a zone to ask first, and how long to wait for it: smoothed RTT with a
//! failure penalty that decays over time (as BIND and hickory's resolver do), a short failure
//! cache so a server that just failed is not asked again at once (RFC 9520 in spirit), and a
//! per-server attempt timeout from the SRTT and its variation (RFC 6298's RTO, with a floor and
//! a ceiling), after which the resolver hedges to the next server instead of waiting out a
//! fixed timeout on a server whose link was cut.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::record::ServerAddress;

use super::liveness::{ServerLiveness, order_by_liveness};

/// Weight of the newest sample in the smoothed RTT.
const SMOOTHING: f64 = 0.3;
/// Penalty added to a server's SRTT when it fails.
const FAILURE_PENALTY_US: f64 = 250_000.0;
/// SRTT ceiling.
const MAX_SRTT_US: f64 = 10_000_000.0;
/// Time constant of the decay of old measurements (and penalties) towards zero, so a
/// penalised server is tried again eventually.
const DECAY: Duration = Duration::from_secs(60);
/// Weight of the newest deviation in the RTT variation (RFC 6298's beta).
const VARIATION_WEIGHT: f64 = 0.25;
/// Attempt timeout of a server never measured (RFC 6298 starts at 1 s; a zone server on
/// another host answers in milliseconds, and the attempt is hedged, not abandoned).
const INITIAL_ATTEMPT: Duration = Duration::from_millis(500);
/// Failure cache: first hold-off, doubled on consecutive failures up to the maximum.
const FAILURE_HOLD: Duration = Duration::from_secs(1);
const MAX_FAILURE_HOLD: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct ServerState {
    srtt_us: f64,
    /// Mean deviation of the samples from the SRTT (RFC 6298's RTTVAR).
    rttvar_us: f64,
    updated: Instant,
    consecutive_failures: u32,
    held_until: Option<Instant>,
}

/// RTT knowledge about every server this resolver has asked.
pub struct ServerSelector {
    clock: Arc<dyn Clock>,
    // std Mutex: held for a map lookup or update only, never across an await.
    servers: Mutex<HashMap<String, ServerState>>,
    /// Gossip's view of which servers are alive, when the node is in a membership group.
    liveness: OnceLock<Arc<dyn ServerLiveness>>,
}

impl ServerSelector {
    pub fn new(clock: Arc<dyn Clock>) -> ServerSelector {
        ServerSelector {
            clock,
            servers: Mutex::new(HashMap::new()),
            liveness: OnceLock::new(),
        }
    }

    /// Orders servers by what gossip knows of them before their RTT (set once, at start).
    pub fn set_liveness(&self, liveness: Arc<dyn ServerLiveness>) {
        let _ = self.liveness.set(liveness);
    }

    fn decayed(state: &ServerState, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(state.updated).as_secs_f64();
        state.srtt_us * (-elapsed / DECAY.as_secs_f64()).exp()
    }

    /// The servers in the order to try them: those not held off by a recent failure, fastest
    /// first; when every one is held off, only the one whose hold ends first (one probe per
    /// query rather than hammering a dead zone).
    pub fn order(&self, servers: &[ServerAddress]) -> Vec<ServerAddress> {
        let now = self.clock.now();
        let table = self
            .servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut ranked: Vec<(bool, f64, Option<Instant>, &ServerAddress)> = servers
            .iter()
            .map(|server| match table.get(&server.grpc) {
                Some(state) => {
                    let held = state.held_until.is_some_and(|until| now < until);
                    (held, Self::decayed(state, now), state.held_until, server)
                }
                // Unknown servers look fast, with a random tie-break, so each gets tried.
                None => (false, rand::random::<f64>() * 32.0, None, server),
            })
            .collect();
        ranked.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut available: Vec<ServerAddress> = ranked
            .iter()
            .filter(|(held, ..)| !held)
            .map(|(.., server)| (*server).clone())
            .collect();
        if let Some(liveness) = self.liveness.get() {
            order_by_liveness(&mut available, liveness.as_ref());
        }
        if !available.is_empty() {
            return available;
        }
        ranked
            .iter()
            .min_by_key(|(_, _, until, _)| *until)
            .map(|(.., server)| vec![(*server).clone()])
            .unwrap_or_default()
    }

    pub fn record_success(&self, server: &str, rtt: Duration) {
        let now = self.clock.now();
        let sample = rtt.as_secs_f64() * 1e6;
        let mut table = self
            .servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = table.entry(server.to_string()).or_insert(ServerState {
            srtt_us: sample,
            rttvar_us: sample / 2.0,
            updated: now,
            consecutive_failures: 0,
            held_until: None,
        });
        let previous = Self::decayed(state, now);
        state.rttvar_us = (1.0 - VARIATION_WEIGHT) * state.rttvar_us
            + VARIATION_WEIGHT * (previous - sample).abs();
        state.srtt_us = (1.0 - SMOOTHING) * previous + SMOOTHING * sample;
        state.updated = now;
        state.consecutive_failures = 0;
        state.held_until = None;
    }

    pub fn record_failure(&self, server: &str) {
        let now = self.clock.now();
        let mut table = self
            .servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = table.entry(server.to_string()).or_insert(ServerState {
            srtt_us: 0.0,
            rttvar_us: 0.0,
            updated: now,
            consecutive_failures: 0,
            held_until: None,
        });
        state.srtt_us = (Self::decayed(state, now) + FAILURE_PENALTY_US).min(MAX_SRTT_US);
        state.updated = now;
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let hold = FAILURE_HOLD
            .saturating_mul(1 << state.consecutive_failures.saturating_sub(1).min(5))
            .min(MAX_FAILURE_HOLD);
        state.held_until = Some(now + hold);
    }

    /// How long to wait for `server` before hedging to another server of the zone: SRTT plus
    /// four times the RTT variation (RFC 6298), between `floor` and `ceiling`. A failure's
    /// penalty raises it (as RFC 6298 backs off), and it decays with the penalty. A server
    /// never measured gets [`INITIAL_ATTEMPT`], within the same bounds.
    pub fn attempt_timeout(&self, server: &str, floor: Duration, ceiling: Duration) -> Duration {
        let now = self.clock.now();
        let table = self
            .servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let estimate = match table.get(server) {
            Some(state) => {
                let us = Self::decayed(state, now) + 4.0 * state.rttvar_us;
                Duration::from_secs_f64((us / 1e6).clamp(0.0, MAX_SRTT_US / 1e6))
            }
            None => INITIAL_ATTEMPT,
        };
        estimate.clamp(floor, ceiling.max(floor))
    }

    /// The smoothed RTT of a server, in microseconds, if it has been asked.
    pub fn srtt_us(&self, server: &str) -> Option<f64> {
        let now = self.clock.now();
        let table = self
            .servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        table.get(server).map(|state| Self::decayed(state, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn server(port: u16) -> ServerAddress {
        ServerAddress::new(&format!("http://127.0.0.1:{port}"), None).unwrap()
    }

    #[test]
    fn faster_server_first_and_failed_server_held_off_then_retried() {
        let clock = ManualClock::new();
        let selector = ServerSelector::new(clock.clone());
        let (a, b) = (server(1), server(2));
        selector.record_success(&a.grpc, Duration::from_micros(300));
        selector.record_success(&b.grpc, Duration::from_micros(100));
        assert_eq!(
            selector.order(&[a.clone(), b.clone()]),
            vec![b.clone(), a.clone()]
        );

        selector.record_failure(&b.grpc);
        assert_eq!(selector.order(&[a.clone(), b.clone()]), vec![a.clone()]);
        // After the hold, b is back, behind a because of its penalty...
        clock.advance(Duration::from_secs(2));
        assert_eq!(
            selector.order(&[a.clone(), b.clone()]),
            vec![a.clone(), b.clone()]
        );
        // ...which decays away with time (so does every old measurement)...
        assert!(selector.srtt_us(&b.grpc).unwrap() > 200_000.0);
        clock.advance(Duration::from_secs(600));
        assert!(selector.srtt_us(&b.grpc).unwrap() < 1_000.0);
        // ...and fresh measurements decide the order again.
        selector.record_success(&a.grpc, Duration::from_micros(300));
        selector.record_success(&b.grpc, Duration::from_micros(100));
        assert_eq!(selector.order(&[a.clone(), b.clone()])[0], b);
    }

    #[test]
    fn when_all_are_held_off_one_probe_is_allowed() {
        let clock = ManualClock::new();
        let selector = ServerSelector::new(clock.clone());
        let (a, b) = (server(1), server(2));
        selector.record_failure(&a.grpc);
        clock.advance(Duration::from_millis(10));
        selector.record_failure(&b.grpc);
        assert_eq!(selector.order(&[a.clone(), b.clone()]), vec![a.clone()]);
        // Consecutive failures hold longer.
        clock.advance(Duration::from_secs(2));
        selector.record_failure(&a.grpc);
        assert_eq!(selector.order(&[a.clone(), b.clone()]), vec![b]);
    }

    #[test]
    fn attempt_timeout_follows_the_rtt_within_floor_and_ceiling() {
        let clock = ManualClock::new();
        let selector = ServerSelector::new(clock.clone());
        let (floor, ceiling) = (Duration::from_millis(150), Duration::from_millis(1500));
        let (fast, slow, jittery, new) = (server(1), server(2), server(3), server(4));
        // Never measured: the initial timeout.
        assert_eq!(
            selector.attempt_timeout(&new.grpc, floor, ceiling),
            INITIAL_ATTEMPT
        );
        for _ in 0..30 {
            selector.record_success(&fast.grpc, Duration::from_micros(500));
            selector.record_success(&slow.grpc, Duration::from_millis(400));
        }
        // A LAN server: the floor. A steady 400 ms server: a little over 400 ms.
        assert_eq!(selector.attempt_timeout(&fast.grpc, floor, ceiling), floor);
        let steady = selector.attempt_timeout(&slow.grpc, floor, ceiling);
        assert!(
            steady > Duration::from_millis(400) && steady < Duration::from_millis(450),
            "{steady:?}"
        );
        // The same mean with jitter waits longer (RFC 6298: SRTT + 4 RTTVAR)...
        for i in 0..30 {
            let sample = if i % 2 == 0 { 100 } else { 700 };
            selector.record_success(&jittery.grpc, Duration::from_millis(sample));
        }
        let varied = selector.attempt_timeout(&jittery.grpc, floor, ceiling);
        assert!(varied > steady, "{varied:?} against {steady:?}");
        // ...a failure backs it off, never past the ceiling...
        for _ in 0..10 {
            selector.record_failure(&slow.grpc);
        }
        assert_eq!(
            selector.attempt_timeout(&slow.grpc, floor, ceiling),
            ceiling
        );
        // ...and the penalty decays away with time.
        clock.advance(Duration::from_secs(600));
        assert!(selector.attempt_timeout(&slow.grpc, floor, ceiling) < ceiling);
    }
}
