//! One circuit breaker per agent endpoint.
//!
//! Closed: calls flow; `failures_to_open` consecutive failures open it. Open: no calls for
//! `open_for`, so a dead replica costs nothing while it is dead. Then half-open: one probe
//! call is let through; its success closes the breaker, its failure opens it again for
//! twice as long (up to `open_max`). The clock is an input so tests move time by hand.
//!
//! When every endpoint of an agent is open, waiting out the breakers would fail calls to an
//! agent one of whose replicas may be back already (docs/protocol.md §9.3): the caller
//! asks for [`Breakers::acquire_longest_open`], an early probe of the endpoint whose breaker
//! last opened longest ago. Ranking by the latest opening, not the first, means a probe that
//! fails moves that endpoint to the back, so the replicas take turns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub failures_to_open: u32,
    pub open_for: Duration,
    pub open_max: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures_to_open: 3,
            open_for: Duration::from_secs(5),
            open_max: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::HalfOpen,
        BreakerState::Open,
    ];

    /// The metric label (as serialised).
    pub fn label(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Endpoint {
    consecutive_failures: u32,
    /// When open: until when.
    open_until: Option<std::time::Instant>,
    /// When open: when it last opened (a first opening or a failed probe).
    opened_at: Option<std::time::Instant>,
    open_for: Duration,
    /// A half-open probe is in flight.
    probing: bool,
}

impl Endpoint {
    fn state(&self, now: std::time::Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }
}

/// Breakers of every endpoint the gateway has called, by URL.
pub struct Breakers {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    // std Mutex: held for a map lookup and a few assignments, never across an await.
    endpoints: Mutex<HashMap<String, Endpoint>>,
}

/// Permission to call an endpoint; report the outcome with [`Breakers::record`].
#[derive(Debug)]
pub struct Permit {
    pub url: String,
    probe: bool,
}

impl Breakers {
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>) -> Breakers {
        Breakers {
            config,
            clock,
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Endpoint>> {
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state of `url`'s breaker now.
    pub fn state(&self, url: &str) -> BreakerState {
        let now = self.clock.now();
        self.lock()
            .get(url)
            .map_or(BreakerState::Closed, |endpoint| endpoint.state(now))
    }

    /// Every endpoint called so far, in URL order: its breaker's state and its consecutive
    /// failures now (metrics).
    pub fn endpoints(&self) -> Vec<(String, BreakerState, u32)> {
        let now = self.clock.now();
        let mut out: Vec<_> = self
            .lock()
            .iter()
            .map(|(url, endpoint)| {
                (
                    url.clone(),
                    endpoint.state(now),
                    endpoint.consecutive_failures,
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// How much longer `url`'s breaker stays open (`None` when it is not open).
    pub fn open_for(&self, url: &str) -> Option<std::time::Duration> {
        let now = self.clock.now();
        let until = self.lock().get(url)?.open_until?;
        (now < until).then(|| until - now)
    }

    /// Whether a call to `url` may go now; a half-open breaker lets one probe through.
    pub fn try_acquire(&self, url: &str) -> Option<Permit> {
        let now = self.clock.now();
        let mut endpoints = self.lock();
        let Some(endpoint) = endpoints.get_mut(url) else {
            return Some(Permit {
                url: url.to_string(),
                probe: false,
            });
        };
        match endpoint.open_until {
            None => Some(Permit {
                url: url.to_string(),
                probe: false,
            }),
            Some(until) if now < until => None,
            Some(_) if endpoint.probing => None,
            Some(_) => {
                endpoint.probing = true;
                Some(Permit {
                    url: url.to_string(),
                    probe: true,
                })
            }
        }
    }

    /// An early probe for a call that has no endpoint left but open ones (every endpoint
    /// open, or the others already failed in this call): of `urls`, the open
    /// endpoint whose breaker last opened longest ago and has no probe in flight. Its outcome
    /// is recorded like a half-open probe's (success closes, failure reopens for longer).
    /// `None` when none of `urls` is open without a probe in flight.
    pub fn acquire_longest_open<'a>(
        &self,
        urls: impl IntoIterator<Item = &'a str>,
    ) -> Option<Permit> {
        let now = self.clock.now();
        let mut endpoints = self.lock();
        let url = urls
            .into_iter()
            .filter_map(|url| {
                let endpoint = endpoints.get(url)?;
                let open = endpoint.state(now) != BreakerState::Closed && !endpoint.probing;
                open.then_some((endpoint.opened_at, url))
            })
            .min()
            .map(|(_, url)| url.to_string())?;
        let endpoint = endpoints.get_mut(&url)?;
        endpoint.probing = true;
        tracing::debug!(endpoint = %url, "no endpoint left but open ones: early probe of the one open longest");
        Some(Permit { url, probe: true })
    }

    /// Records how a permitted call went.
    pub fn record(&self, permit: Permit, success: bool) {
        let now = self.clock.now();
        let mut endpoints = self.lock();
        let endpoint = endpoints.entry(permit.url.clone()).or_insert(Endpoint {
            consecutive_failures: 0,
            open_until: None,
            opened_at: None,
            open_for: self.config.open_for,
            probing: false,
        });
        if permit.probe {
            endpoint.probing = false;
        }
        if success {
            if endpoint.open_until.is_some() {
                tracing::info!(endpoint = %permit.url, "circuit breaker closed");
            }
            endpoint.consecutive_failures = 0;
            endpoint.open_until = None;
            endpoint.opened_at = None;
            endpoint.open_for = self.config.open_for;
            return;
        }
        endpoint.consecutive_failures = endpoint.consecutive_failures.saturating_add(1);
        if permit.probe {
            endpoint.open_for = (endpoint.open_for * 2).min(self.config.open_max);
            endpoint.open_until = Some(now + endpoint.open_for);
            endpoint.opened_at = Some(now);
        } else if endpoint.consecutive_failures >= self.config.failures_to_open
            && endpoint.open_until.is_none()
        {
            endpoint.open_until = Some(now + endpoint.open_for);
            endpoint.opened_at = Some(now);
            tracing::warn!(
                endpoint = %permit.url,
                failures = endpoint.consecutive_failures,
                open_ms = endpoint.open_for.as_millis() as u64,
                "circuit breaker opened"
            );
        }
    }

    /// Drops the permit of a call that never ran (the caller gave up first).
    pub fn release(&self, permit: Permit) {
        if permit.probe
            && let Some(endpoint) = self.lock().get_mut(&permit.url)
        {
            endpoint.probing = false;
        }
    }

    /// Every endpoint whose breaker is not closed, with its state.
    pub fn open_endpoints(&self) -> Vec<(String, BreakerState)> {
        let urls: Vec<String> = self.lock().keys().cloned().collect();
        urls.into_iter()
            .map(|url| {
                let state = self.state(&url);
                (url, state)
            })
            .filter(|(_, state)| *state != BreakerState::Closed)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn breakers() -> (Breakers, Arc<ManualClock>) {
        let clock = ManualClock::new();
        let config = BreakerConfig {
            failures_to_open: 3,
            open_for: Duration::from_secs(5),
            open_max: Duration::from_secs(20),
        };
        (Breakers::new(config, clock.clone()), clock)
    }

    fn fail(breakers: &Breakers, url: &str) {
        let permit = breakers.try_acquire(url).expect("permitted");
        breakers.record(permit, false);
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_once_later() {
        let (breakers, clock) = breakers();
        let url = "http://127.0.0.1:1/mcp";
        fail(&breakers, url);
        fail(&breakers, url);
        assert_eq!(breakers.state(url), BreakerState::Closed);
        fail(&breakers, url);
        assert_eq!(breakers.state(url), BreakerState::Open);
        assert_eq!(
            breakers.endpoints(),
            vec![(url.to_string(), BreakerState::Open, 3)]
        );
        assert!(breakers.try_acquire(url).is_none(), "open: no calls");
        clock.advance(Duration::from_secs(5));
        assert_eq!(breakers.state(url), BreakerState::HalfOpen);
        let probe = breakers.try_acquire(url).expect("one probe");
        assert!(
            breakers.try_acquire(url).is_none(),
            "only one probe at a time"
        );
        breakers.record(probe, true);
        assert_eq!(breakers.state(url), BreakerState::Closed);
        assert!(breakers.try_acquire(url).is_some());
    }

    #[test]
    fn a_failed_probe_opens_for_longer() {
        let (breakers, clock) = breakers();
        let url = "http://127.0.0.1:2/mcp";
        for _ in 0..3 {
            fail(&breakers, url);
        }
        clock.advance(Duration::from_secs(5));
        fail(&breakers, url);
        clock.advance(Duration::from_secs(9));
        assert_eq!(
            breakers.state(url),
            BreakerState::Open,
            "10 s after a failed probe"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(breakers.state(url), BreakerState::HalfOpen);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let (breakers, _clock) = breakers();
        let url = "http://127.0.0.1:3/mcp";
        fail(&breakers, url);
        fail(&breakers, url);
        let permit = breakers.try_acquire(url).unwrap();
        breakers.record(permit, true);
        fail(&breakers, url);
        fail(&breakers, url);
        assert_eq!(breakers.state(url), BreakerState::Closed);
    }

    #[test]
    fn with_every_endpoint_open_the_one_open_longest_is_probed_early_and_they_take_turns() {
        let (breakers, clock) = breakers();
        let (a, b) = ("http://127.0.0.1:5/mcp", "http://127.0.0.1:6/mcp");
        for _ in 0..3 {
            fail(&breakers, a);
        }
        clock.advance(Duration::from_secs(2));
        for _ in 0..3 {
            fail(&breakers, b);
        }
        assert_eq!(breakers.state(a), BreakerState::Open);
        assert!(breakers.try_acquire(a).is_none(), "no regular call yet");
        // a opened first: it is probed, before its 5 s are up.
        let probe = breakers
            .acquire_longest_open([a, b])
            .expect("an early probe");
        assert_eq!(probe.url, a);
        // Its probe is in flight: the next early probe goes to b.
        let other = breakers.acquire_longest_open([a, b]).expect("b next");
        assert_eq!(other.url, b);
        assert!(
            breakers.acquire_longest_open([a, b]).is_none(),
            "both in flight"
        );
        // a's probe fails: it reopened last, so b is now the one open longest.
        clock.advance(Duration::from_millis(10));
        breakers.record(probe, false);
        breakers.release(other);
        let next = breakers.acquire_longest_open([a, b]).expect("a probe");
        assert_eq!(next.url, b);
        // b has recovered: its probe closes it.
        breakers.record(next, true);
        assert_eq!(breakers.state(b), BreakerState::Closed);
        // A closed endpoint is not an early-probe candidate: a alone is.
        assert_eq!(
            breakers.acquire_longest_open([a, b]).map(|p| p.url),
            Some(a.to_string())
        );
        // Endpoints never called have no breaker to probe.
        assert!(
            breakers
                .acquire_longest_open(["http://127.0.0.1:7/mcp"])
                .is_none()
        );
    }

    #[test]
    fn a_released_probe_lets_another_through() {
        let (breakers, clock) = breakers();
        let url = "http://127.0.0.1:4/mcp";
        for _ in 0..3 {
            fail(&breakers, url);
        }
        clock.advance(Duration::from_secs(5));
        let probe = breakers.try_acquire(url).unwrap();
        breakers.release(probe);
        assert!(breakers.try_acquire(url).is_some());
    }
}
