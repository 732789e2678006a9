//! `/status.json`, the data behind the status page, and `/readyz`'s verdict.
//!
//! The document is built on each request from the live state (catalog, authority, resolver,
//! the recent-queries ring); it is bounded however large the zones are: at most
//! [`AGENTS_SHOWN`] agents per zone (the listing limit of docs/protocol.md §7) and
//! [`CUTS_SHOWN`] cached zone cuts. Where each shown agent and endpoint came from (zone file
//! or live registration) and when live leases end are asked of the authority's writer, which
//! alone holds them, for the shown agents only, within [`DESCRIBE_WAIT`]; a primary's
//! secondaries come from its NOTIFY bookkeeping.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::admin::NodeView;
use crate::authority::live::Role;
use crate::authority::{AgentSource, Authority, KnownSecondary, ZoneStatus};
use crate::clock::system_unix_ms as unix_ms;
use crate::name::Name;
use crate::record::{Agent, Delegation, ServerAddress, serial_newer};
use crate::resolver::LevelStats;
use crate::telemetry::RecentQuery;

/// Agents listed per zone.
pub const AGENTS_SHOWN: usize = 1000;
/// Cached zone cuts listed.
pub const CUTS_SHOWN: usize = 200;
/// How long the status waits for the writer to say where agents came from; past it (a
/// writer busy with a large batch) the document goes without `source` and leases.
pub const DESCRIBE_WAIT: Duration = Duration::from_secs(1);

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
    /// The gossip group this node is in (docs/protocol.md 9.2), this node first; absent when
    /// the node gossips with nobody.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberStatus>>,
}

/// One member of the node's gossip group, as this node sees it.
#[derive(Debug, Serialize)]
pub struct MemberStatus {
    /// Its gossip address.
    pub gossip: String,
    /// `alive`, `suspect` or `down`.
    pub state: &'static str,
    pub is_self: bool,
    /// What it last said about itself (absent until heard).
    pub node_id: Option<String>,
    pub grpc: Option<String>,
    pub zones: Vec<MemberZone>,
    /// gRPC requests per second.
    pub load: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct MemberZone {
    pub zone: String,
    pub role: &'static str,
    pub serial: u32,
}

fn members(membership: &crate::membership::Membership) -> Vec<MemberStatus> {
    membership
        .members()
        .iter()
        .map(|member| MemberStatus {
            gossip: member.addr.to_string(),
            state: member.liveness.label(),
            is_self: member.is_self,
            node_id: member.state.as_ref().map(|s| s.node_id.clone()),
            grpc: member.state.as_ref().map(|s| s.grpc_url.clone()),
            zones: member
                .state
                .iter()
                .flat_map(|s| &s.zones)
                .map(|zone| MemberZone {
                    zone: zone.zone.clone(),
                    role: if zone.primary { "primary" } else { "secondary" },
                    serial: zone.serial,
                })
                .collect(),
            load: member.state.as_ref().map(|s| s.load),
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub struct ZoneView {
    pub zone: String,
    pub role: &'static str,
    /// A secondary's primary.
    pub primary: Option<String>,
    pub serial: u32,
    pub served: bool,
    /// A secondary: when it last heard from its primary (Unix ms).
    pub last_refresh_unix_ms: Option<u64>,
    /// A primary: the secondaries it knows (listed servers and nodes that transferred).
    pub secondaries: Vec<SecondaryView>,
    /// Watch streams following the zone here now.
    pub watchers: usize,
    pub agent_count: usize,
    pub delegations: Vec<CutView>,
    /// The first [`AGENTS_SHOWN`] agents, in name order.
    pub agents: Vec<AgentView>,
}

/// A primary's secondary.
#[derive(Debug, Serialize)]
pub struct SecondaryView {
    pub url: String,
    /// The zone lists it among its servers.
    pub listed: bool,
    /// The serial its last transfer from this node brought it to (none since start: null).
    pub serial: Option<u32>,
    /// Serials it is behind this node's.
    pub lag: Option<u32>,
    pub last_transfer_unix_ms: Option<u64>,
    pub last_transfer_full: Option<bool>,
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
    /// `file` (defined in the zone file) or `live` (registered); absent when unknown (the
    /// gateway's page, or a writer that did not answer in time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    pub endpoints: Vec<EndpointView>,
}

#[derive(Debug, Serialize)]
pub struct EndpointView {
    pub url: String,
    pub tool: String,
    pub priority: u16,
    pub weight: u16,
    /// `file` or `live`, as for agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    /// A live endpoint's lease end (Unix ms), on its primary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_unix_ms: Option<u64>,
    /// `up`, `down` or `unknown` (docs/protocol.md §9.1).
    pub health: &'static str,
    /// When the health last changed (Unix seconds), once probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_since_unix: Option<u64>,
    /// Why a down endpoint is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_error: Option<String>,
}

fn source_label(from_file: bool) -> &'static str {
    if from_file { "file" } else { "live" }
}

/// Adds where an agent and its endpoints came from, and live leases.
fn with_source(mut view: AgentView, source: &AgentSource) -> AgentView {
    view.source = Some(source_label(source.from_file));
    for endpoint in &mut view.endpoints {
        if let Some(known) = source.endpoints.iter().find(|e| e.url == endpoint.url) {
            endpoint.source = Some(source_label(!known.live));
            endpoint.lease_expires_unix_ms = known.lease.map(|lease| lease.expires_unix_ms);
        }
    }
    view
}

fn secondary_view(secondary: KnownSecondary, serial: u32) -> SecondaryView {
    let fetch = secondary.last_fetch;
    SecondaryView {
        url: secondary.url,
        listed: secondary.listed,
        serial: fetch.map(|f| f.serial),
        lag: fetch.map(|f| serial_lag(serial, f.serial)),
        last_transfer_unix_ms: fetch.map(|f| f.at_unix_ms),
        last_transfer_full: fetch.map(|f| f.full),
    }
}

/// How many serials `theirs` is behind `ours` (RFC 1982 arithmetic; 0 when not behind).
pub fn serial_lag(ours: u32, theirs: u32) -> u32 {
    if serial_newer(ours, theirs) {
        ours.wrapping_sub(theirs)
    } else {
        0
    }
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
        tags: agent.tags.iter().map(|t| t.to_string()).collect(),
        capabilities: agent.capabilities.iter().map(|c| c.to_string()).collect(),
        source: None,
        endpoints: agent
            .endpoints
            .iter()
            .map(|e| EndpointView {
                url: e.url.clone(),
                tool: e.tool.clone(),
                priority: e.priority,
                weight: e.weight,
                source: None,
                lease_expires_unix_ms: None,
                health: e.health.state.word(),
                health_since_unix: (e.health.since_unix > 0).then_some(e.health.since_unix),
                health_error: (!e.health.error.is_empty()).then(|| e.health.error.clone()),
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
    let mut shown: Vec<(Name, Vec<Name>)> = Vec::new();
    let mut zones: Vec<ZoneView> = origins
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
                last_refresh_unix_ms: status.and_then(|s| s.refreshed_unix_ms),
                secondaries: Vec::new(),
                watchers: node.authority.watchers(origin),
                agent_count: 0,
                delegations: Vec::new(),
                agents: Vec::new(),
            };
            if let Some(zone) = snapshot {
                view.serial = zone.serial();
                view.agent_count = zone.agent_count();
                view.delegations = zone.delegations().map(|d| cut(d, None)).collect();
                view.delegations.sort_by(|a, b| a.zone.cmp(&b.zone));
                let names = zone.agents_page(None, AGENTS_SHOWN);
                view.agents = names
                    .iter()
                    .filter_map(|name| zone.agent(name.as_str()))
                    .map(|agent| agent_view(agent))
                    .collect();
                shown.push((origin.clone(), names.to_vec()));
            }
            let serial = view.serial;
            view.secondaries = node
                .authority
                .secondaries(origin)
                .into_iter()
                .map(|secondary| secondary_view(secondary, serial))
                .collect();
            view
        })
        .collect();
    let sources = tokio::time::timeout(DESCRIBE_WAIT, node.authority.describe(shown))
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    for (view, origin) in zones.iter_mut().zip(&origins) {
        let Some(zone_sources) = sources.get(origin) else {
            continue;
        };
        let by_name: HashMap<String, &AgentSource> = zone_sources
            .iter()
            .map(|source| (source.name.to_string(), source))
            .collect();
        view.agents = std::mem::take(&mut view.agents)
            .into_iter()
            .map(|agent| match by_name.get(&agent.name) {
                Some(source) => with_source(agent, source),
                None => agent,
            })
            .collect();
    }
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
        members: node.membership.as_deref().map(members),
    }
}
