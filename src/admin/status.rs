//! `/status.json`, the data behind the status page, and `/readyz`'s verdict.
//!
//! The document is built on each request from the live state (catalog, authority, resolver,
//! the recent-queries ring); it is bounded however large the zones are: at most
//! [`AGENTS_SHOWN`] agents per zone (the listing limit of docs/protocol.md §7) and
//! [`CUTS_SHOWN`] cached zone cuts.

use serde::Serialize;

use crate::admin::NodeView;
use crate::authority::live::Role;
use crate::authority::{Authority, ZoneStatus};
use crate::clock::system_unix_ms as unix_ms;
use crate::record::{Agent, Delegation, ServerAddress};
use crate::resolver::LevelStats;
use crate::telemetry::RecentQuery;

/// Agents listed per zone.
pub const AGENTS_SHOWN: usize = 1000;
/// Cached zone cuts listed.
pub const CUTS_SHOWN: usize = 200;

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    /// `node` (the gateway's page says `gateway`).
    pub kind: &'static str,
    pub node_id: String,
    pub version: &'static str,
    pub started_unix_ms: u64,
    pub now_unix_ms: u64,
    pub uptime_secs: f64,
    pub grpc: String,
    pub dns: Option<String>,
    pub ready: bool,
    pub not_ready: Vec<String>,
    pub agents_limit: usize,
    pub zones: Vec<ZoneView>,
    pub cached_cuts: Vec<CutView>,
    pub cache: Vec<LevelStats>,
    /// Newest first.
    pub recent: Vec<RecentQuery>,
}

#[derive(Debug, Serialize)]
pub struct ZoneView {
    pub zone: String,
    pub role: &'static str,
    /// A secondary's primary.
    pub primary: Option<String>,
    pub serial: u32,
    pub served: bool,
    pub agent_count: usize,
    pub delegations: Vec<CutView>,
    /// The first [`AGENTS_SHOWN`] agents, in name order.
    pub agents: Vec<AgentView>,
}

#[derive(Debug, Serialize)]
pub struct CutView {
    pub zone: String,
    pub servers: Vec<String>,
    pub ttl: Option<u32>,
    /// A cached cut: still within its TTL.
    pub fresh: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct AgentView {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub capabilities: Vec<String>,
    pub endpoints: Vec<EndpointView>,
}

#[derive(Debug, Serialize)]
pub struct EndpointView {
    pub url: String,
    pub tool: String,
    pub priority: u16,
    pub weight: u16,
}

fn servers(list: &[ServerAddress]) -> Vec<String> {
    list.iter().map(|s| s.grpc.clone()).collect()
}

fn cut(delegation: &Delegation, fresh: Option<bool>) -> CutView {
    CutView {
        zone: delegation.zone.to_string(),
        servers: servers(&delegation.servers),
        ttl: delegation.ttl,
        fresh,
    }
}

pub fn agent_view(agent: &Agent) -> AgentView {
    AgentView {
        name: agent.name.to_string(),
        description: agent.description.clone(),
        tags: agent.tags.clone(),
        capabilities: agent.capabilities.clone(),
        endpoints: agent
            .endpoints
            .iter()
            .map(|e| EndpointView {
                url: e.url.clone(),
                tool: e.tool.clone(),
                priority: e.priority,
                weight: e.weight,
            })
            .collect(),
    }
}

/// Why the node is not ready: one line per configured zone it does not answer for yet.
/// A primary is ready once loaded (it always is, once the node serves); a secondary once it
/// has a transfer (this run or a stored one) that has not expired.
pub fn not_ready(authority: &Authority) -> Vec<String> {
    let statuses = authority.statuses();
    let mut lines: Vec<String> = statuses
        .iter()
        .filter(|(_, status)| !status.served)
        .map(|(zone, status)| match &status.role {
            Role::Secondary { primary } if status.serial == 0 => {
                format!("{zone}: secondary of {primary}, not transferred yet")
            }
            Role::Secondary { primary } => format!(
                "{zone}: secondary of {primary}, expired (no transfer within expire, {} s)",
                status.expire
            ),
            Role::Primary => format!("{zone}: primary, not loaded"),
        })
        .collect();
    lines.sort();
    if let Some(error) = authority.store().write_error() {
        lines.push(format!(
            "store: cannot write ({error}); updates fail until it can"
        ));
    }
    lines
}

fn role(status: Option<&ZoneStatus>) -> (&'static str, Option<String>) {
    match status.map(|s| &s.role) {
        Some(Role::Secondary { primary }) => ("secondary", Some(primary.clone())),
        _ => ("primary", None),
    }
}

pub async fn node_status(node: &NodeView) -> NodeStatus {
    let statuses = node.authority.statuses();
    let mut origins: Vec<_> = statuses.keys().cloned().collect();
    for origin in node.catalog.origins() {
        if !statuses.contains_key(&origin) {
            origins.push(origin);
        }
    }
    origins.sort();
    let zones = origins
        .iter()
        .map(|origin| {
            let status = statuses.get(origin);
            let (role, primary) = role(status);
            let snapshot = node.catalog.zone(origin).ok();
            let mut view = ZoneView {
                zone: origin.to_string(),
                role,
                primary,
                serial: status.map_or(0, |s| s.serial),
                served: status.is_none_or(|s| s.served),
                agent_count: 0,
                delegations: Vec::new(),
                agents: Vec::new(),
            };
            if let Some(zone) = snapshot {
                view.serial = zone.serial();
                view.agent_count = zone.agent_count();
                view.delegations = zone.delegations().map(|d| cut(d, None)).collect();
                view.delegations.sort_by(|a, b| a.zone.cmp(&b.zone));
                view.agents = zone
                    .agents_page(None, AGENTS_SHOWN)
                    .iter()
                    .filter_map(|name| zone.agent(name.as_str()))
                    .map(|agent| agent_view(agent))
                    .collect();
            }
            view
        })
        .collect();
    let mut cached_cuts: Vec<CutView> = node
        .resolver
        .cached_delegations(CUTS_SHOWN)
        .iter()
        .map(|(delegation, fresh)| cut(delegation, Some(*fresh)))
        .collect();
    cached_cuts.sort_by(|a, b| a.zone.cmp(&b.zone));
    let not_ready = not_ready(&node.authority);
    let mut recent = node.recent.snapshot();
    recent.reverse();
    NodeStatus {
        kind: "node",
        node_id: node.node_id.clone(),
        version: env!("CARGO_PKG_VERSION"),
        started_unix_ms: node.started_unix_ms,
        now_unix_ms: unix_ms(),
        uptime_secs: node.started.elapsed().as_secs_f64(),
        grpc: node.grpc_url.clone(),
        dns: node.dns_addr.map(|a| a.to_string()),
        ready: not_ready.is_empty(),
        not_ready,
        agents_limit: AGENTS_SHOWN,
        zones,
        cached_cuts,
        cache: node.resolver.cache_stats().await,
        recent,
    }
}
