//! Endpoint health as zone data (docs/protocol.md §9.1): what the zone's primary last concluded
//! about each endpoint, the zone's probe settings, and the one rule every door follows when it
//! answers with an agent's endpoints.
//!
//! Health lives in the records, not beside them, so that it replicates, survives restarts and
//! reaches every door (gRPC, DNS, the gateway) exactly as other zone data does: a change of
//! state is a change of the agent record and bumps the zone's serial. Only changes of *state*
//! are written (a probe that fails again, or an endpoint that stays up, writes nothing), which
//! is what keeps a zone of many endpoints from changing its serial on every probe.

use std::sync::Arc;
use std::time::Duration;

use super::{Agent, Endpoint};

/// The longest error text kept with a down endpoint.
pub const HEALTH_ERROR_MAX_CHARS: usize = 200;

/// What the zone's primary last concluded about an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HealthState {
    /// Not probed yet (or probing is off for its agent or zone).
    #[default]
    Unknown,
    Up,
    Down,
}

impl HealthState {
    /// The word doors show: `up`, `down`, `unknown`.
    pub fn word(self) -> &'static str {
        match self {
            HealthState::Unknown => "unknown",
            HealthState::Up => "up",
            HealthState::Down => "down",
        }
    }

    /// Order of preference in answers: up first, then not yet known, then down.
    pub fn rank(self) -> u8 {
        match self {
            HealthState::Up => 0,
            HealthState::Unknown => 1,
            HealthState::Down => 2,
        }
    }
}

/// An endpoint's health: its state, when it last changed, and the error that took it down.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointHealth {
    pub state: HealthState,
    /// Unix seconds of the last change of state (0: never probed).
    pub since_unix: u64,
    /// Why the last probe that counted failed (empty unless down), at most
    /// [`HEALTH_ERROR_MAX_CHARS`] characters.
    pub error: String,
}

impl EndpointHealth {
    pub fn new(state: HealthState, since_unix: u64, error: &str) -> EndpointHealth {
        EndpointHealth {
            state,
            since_unix,
            error: error.chars().take(HEALTH_ERROR_MAX_CHARS).collect(),
        }
    }
}

/// How a zone's primary probes its agents' endpoints: zone file `[zone] health = { interval,
/// timeout, down_after, up_after }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// Each endpoint is probed once per interval.
    pub interval: Duration,
    /// A probe that has not answered within this fails.
    pub timeout: Duration,
    /// Consecutive failed probes that take an endpoint down.
    pub down_after: u32,
    /// Consecutive answered probes that bring a down endpoint back up.
    pub up_after: u32,
}

impl HealthSettings {
    pub const DEFAULT: HealthSettings = HealthSettings {
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(2),
        down_after: 3,
        up_after: 2,
    };
    /// Bounds of the zone-file fields.
    pub const INTERVAL_MIN: Duration = Duration::from_millis(100);
    pub const INTERVAL_MAX: Duration = Duration::from_secs(86_400);
    pub const THRESHOLD_MAX: u32 = 100;

    /// The longest a down endpoint stays in answers after it stopped answering:
    /// `interval × down_after + timeout`.
    pub fn down_within(&self) -> Duration {
        self.interval * self.down_after + self.timeout
    }
}

impl Default for HealthSettings {
    fn default() -> HealthSettings {
        HealthSettings::DEFAULT
    }
}

/// Endpoints in the order answers give them: healthy first, then unknown; down endpoints
/// left out unless every endpoint is down (then all of them, marked down). Stable within a
/// state, so priority and weight order is kept.
pub fn answer_endpoints(endpoints: &[Endpoint]) -> Vec<&Endpoint> {
    let mut ordered: Vec<&Endpoint> = endpoints
        .iter()
        .filter(|e| e.health.state != HealthState::Down)
        .collect();
    if ordered.is_empty() {
        return endpoints.iter().collect();
    }
    ordered.sort_by_key(|e| e.health.state.rank());
    ordered
}

/// The agent as answers show it ([`answer_endpoints`]): the same `Arc` when nothing needs
/// leaving out or moving, which is every agent whose endpoints are all up or all unknown.
pub fn as_answered(agent: &Arc<Agent>) -> Arc<Agent> {
    let in_order = agent
        .endpoints
        .windows(2)
        .all(|pair| pair[0].health.state.rank() <= pair[1].health.state.rank());
    let any_down = agent
        .endpoints
        .iter()
        .any(|e| e.health.state == HealthState::Down);
    let all_down = agent
        .endpoints
        .iter()
        .all(|e| e.health.state == HealthState::Down);
    if in_order && (!any_down || all_down) {
        return Arc::clone(agent);
    }
    let mut shown = Agent::clone(agent);
    shown.endpoints = answer_endpoints(&agent.endpoints)
        .into_iter()
        .cloned()
        .collect();
    Arc::new(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str, state: HealthState) -> Endpoint {
        let mut endpoint = Endpoint::new(url, "tool", 1, 0).unwrap();
        endpoint.health = EndpointHealth::new(state, 1, "");
        endpoint
    }

    fn urls(endpoints: &[&Endpoint]) -> Vec<String> {
        endpoints.iter().map(|e| e.url.clone()).collect()
    }

    #[test]
    fn down_endpoints_leave_answers_and_healthy_ones_come_first() {
        let endpoints = [
            endpoint("http://a/mcp", HealthState::Unknown),
            endpoint("http://b/mcp", HealthState::Down),
            endpoint("http://c/mcp", HealthState::Up),
            endpoint("http://d/mcp", HealthState::Unknown),
        ];
        assert_eq!(
            urls(&answer_endpoints(&endpoints)),
            ["http://c/mcp", "http://a/mcp", "http://d/mcp"]
        );
    }

    #[test]
    fn when_every_endpoint_is_down_all_are_kept() {
        let endpoints = [
            endpoint("http://a/mcp", HealthState::Down),
            endpoint("http://b/mcp", HealthState::Down),
        ];
        assert_eq!(
            urls(&answer_endpoints(&endpoints)),
            ["http://a/mcp", "http://b/mcp"]
        );
    }

    #[test]
    fn the_down_bound_is_interval_times_down_after_plus_timeout() {
        assert_eq!(
            HealthSettings::DEFAULT.down_within(),
            Duration::from_secs(32)
        );
    }
}
