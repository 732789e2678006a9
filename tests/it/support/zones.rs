//! Zones for tests: [`zone`] parses a zone file's text; [`ZoneSpec`] and [`AgentSpec`] describe
//! one as data, and [`FederationBuilder`](super::FederationBuilder) writes the zone file once it
//! knows the addresses of the zone's servers (and of the servers of the zones it delegates).

use std::fmt::Write as _;
use std::path::Path;

use aop::zone::{ZoneSnapshot, file};

/// Parses a zone file's text; a test zone that does not load fails the test with the errors
/// and the text.
pub fn zone(text: &str) -> ZoneSnapshot {
    file::parse(Path::new("test.toml"), text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The endpoint of the agents of zone specs: the discard port, never called.
pub const NOWHERE: &str = "http://127.0.0.1:9/mcp";

/// An agent of a zone spec.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    name: String,
    description: Option<String>,
    tags: Vec<String>,
    capabilities: Vec<String>,
    ttl: Option<u32>,
}

impl AgentSpec {
    /// An agent named `name` (relative to its zone), its one endpoint [`NOWHERE`].
    pub fn new(name: &str) -> AgentSpec {
        AgentSpec {
            name: name.to_string(),
            description: None,
            tags: Vec::new(),
            capabilities: Vec::new(),
            ttl: None,
        }
    }

    pub fn description(mut self, text: &str) -> AgentSpec {
        self.description = Some(text.to_string());
        self
    }

    pub fn tags(mut self, tags: &[&str]) -> AgentSpec {
        self.tags = tags.iter().map(ToString::to_string).collect();
        self
    }

    pub fn capabilities(mut self, capabilities: &[&str]) -> AgentSpec {
        self.capabilities = capabilities.iter().map(ToString::to_string).collect();
        self
    }

    pub fn ttl(mut self, seconds: u32) -> AgentSpec {
        self.ttl = Some(seconds);
        self
    }
}

/// Where a delegation points.
#[derive(Debug, Clone)]
pub(super) enum Target {
    /// The servers of a zone of the federation.
    ServersOf(String),
    /// The federation's [`BlackHole`](super::BlackHole).
    BlackHole,
}

/// A delegation a zone spec makes besides those to its child zones in the federation (which
/// the builder writes itself).
#[derive(Debug, Clone)]
pub struct DelegationSpec {
    /// The delegated zone, relative to the delegating one.
    pub(super) zone: String,
    pub(super) target: Target,
}

impl DelegationSpec {
    /// `zone` (relative to the delegating zone) served by the servers of `origin`, a zone of
    /// the federation: the delegating zone's own servers make a lame delegation.
    pub fn to_servers_of(zone: &str, origin: &str) -> DelegationSpec {
        DelegationSpec {
            zone: zone.to_string(),
            target: Target::ServersOf(origin.to_string()),
        }
    }

    /// `zone` (relative to the delegating zone) served by a server that accepts connections
    /// and never answers.
    pub fn to_black_hole(zone: &str) -> DelegationSpec {
        DelegationSpec {
            zone: zone.to_string(),
            target: Target::BlackHole,
        }
    }
}

/// A zone as data: its header, agents, aliases and extra delegations, and how many nodes
/// serve it. Its `servers` are filled in by the federation builder.
#[derive(Debug, Clone)]
pub struct ZoneSpec {
    pub(super) origin: String,
    pub(super) servers: usize,
    pub(super) through_links: bool,
    /// The TTL of the delegation to this zone in its parent.
    pub(super) delegation_ttl: Option<u32>,
    pub(super) delegations: Vec<DelegationSpec>,
    ttl: Option<u32>,
    negative_ttl: Option<u32>,
    agents: Vec<AgentSpec>,
    aliases: Vec<(String, String)>,
    /// Keys every server of the zone accepts updates signed with.
    pub(super) update_keys: Vec<aop::keys::UpdateKey>,
}

/// A delegation with its servers' URLs known.
pub(super) struct Delegation {
    pub zone: String,
    pub servers: Vec<String>,
    pub ttl: Option<u32>,
}

impl ZoneSpec {
    /// The zone `origin` (serial 1), served by one node.
    pub fn new(origin: &str) -> ZoneSpec {
        ZoneSpec {
            origin: origin.to_string(),
            servers: 1,
            through_links: false,
            delegation_ttl: None,
            delegations: Vec::new(),
            ttl: None,
            negative_ttl: None,
            agents: Vec::new(),
            aliases: Vec::new(),
            update_keys: Vec::new(),
        }
    }

    /// The root zone, `.`.
    pub fn root() -> ZoneSpec {
        ZoneSpec::new(".")
    }

    /// Served by `count` nodes holding the same data.
    pub fn servers(mut self, count: usize) -> ZoneSpec {
        assert!(count >= 1, "a zone needs a server");
        self.servers = count;
        self
    }

    /// Reached through a [`Link`](super::Link) per server: the zone's `servers`, and the
    /// delegations to it, name the links, which forward to the nodes.
    pub fn through_links(mut self) -> ZoneSpec {
        self.through_links = true;
        self
    }

    pub fn ttl(mut self, seconds: u32) -> ZoneSpec {
        self.ttl = Some(seconds);
        self
    }

    pub fn negative_ttl(mut self, seconds: u32) -> ZoneSpec {
        self.negative_ttl = Some(seconds);
        self
    }

    /// The TTL of the delegation to this zone that its parent zone carries.
    pub fn delegation_ttl(mut self, seconds: u32) -> ZoneSpec {
        self.delegation_ttl = Some(seconds);
        self
    }

    pub fn agent(mut self, agent: AgentSpec) -> ZoneSpec {
        self.agents.push(agent);
        self
    }

    /// An alias `name` (relative) for `target` (relative, or absolute with a final dot).
    pub fn alias(mut self, name: &str, target: &str) -> ZoneSpec {
        self.aliases.push((name.to_string(), target.to_string()));
        self
    }

    /// Every server of the zone accepts updates signed with `key` (with several servers, each
    /// is a primary of its own copy).
    pub fn update_key(mut self, key: aop::keys::UpdateKey) -> ZoneSpec {
        self.update_keys.push(key);
        self
    }

    pub fn delegation(mut self, delegation: DelegationSpec) -> ZoneSpec {
        self.delegations.push(delegation);
        self
    }

    /// The zone file: this spec with `servers` as its servers and `delegations`.
    pub(super) fn text(&self, servers: &[String], delegations: &[Delegation]) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "[zone]");
        let _ = writeln!(text, "origin = {}", quoted(&self.origin));
        let _ = writeln!(text, "serial = 1");
        if let Some(ttl) = self.ttl {
            let _ = writeln!(text, "ttl = {ttl}");
        }
        if let Some(ttl) = self.negative_ttl {
            let _ = writeln!(text, "negative_ttl = {ttl}");
        }
        let _ = writeln!(text, "servers = {}", grpc_servers(servers));
        for agent in &self.agents {
            let _ = writeln!(text, "\n[[agent]]");
            let _ = writeln!(text, "name = {}", quoted(&agent.name));
            if let Some(description) = &agent.description {
                let _ = writeln!(text, "description = {}", quoted(description));
            }
            if !agent.tags.is_empty() {
                let _ = writeln!(text, "tags = {}", list(&agent.tags));
            }
            if !agent.capabilities.is_empty() {
                let _ = writeln!(text, "capabilities = {}", list(&agent.capabilities));
            }
            if let Some(ttl) = agent.ttl {
                let _ = writeln!(text, "ttl = {ttl}");
            }
            let _ = writeln!(text, "endpoints = [{{ url = {} }}]", quoted(NOWHERE));
        }
        for (name, target) in &self.aliases {
            let _ = writeln!(text, "\n[[alias]]");
            let _ = writeln!(text, "name = {}", quoted(name));
            let _ = writeln!(text, "target = {}", quoted(target));
        }
        for delegation in delegations {
            let _ = writeln!(text, "\n[[delegation]]");
            let _ = writeln!(text, "zone = {}", quoted(&delegation.zone));
            let _ = writeln!(text, "servers = {}", grpc_servers(&delegation.servers));
            if let Some(ttl) = delegation.ttl {
                let _ = writeln!(text, "ttl = {ttl}");
            }
        }
        text
    }
}

/// A TOML string.
fn quoted(text: &str) -> String {
    toml::Value::from(text).to_string()
}

fn list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| quoted(item)).collect();
    format!("[{}]", items.join(", "))
}

fn grpc_servers(urls: &[String]) -> String {
    let servers: Vec<String> = urls
        .iter()
        .map(|url| format!("{{ grpc = {} }}", quoted(url)))
        .collect();
    format!("[{}]", servers.join(", "))
}
