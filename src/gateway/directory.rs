//! The mounted zones: their agents, as listings and as tools, kept in step with the zones.
//!
//! A background task asks the resolver node for each mounted zone's serial (`GetZone`,
//! recursive, so the node finds the zone's own servers) and, when it moved, lists the zone
//! again (`ListAgents`, paged). Each change swaps in a new immutable [`Mounted`] and bumps a
//! watch channel that the MCP sessions turn into `notifications/tools/list_changed`. This is
//! polling until nodes offer a watch stream (issue 7); the interval is a flag.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::gateway::meta::agent_tool_name;
use crate::grpc::client::RegistryClient;
use crate::grpc::pb;
use crate::name::Name;
use crate::record::{Agent, limits};

/// One mounted zone as last listed.
#[derive(Debug, Clone)]
pub struct MountedZone {
    pub origin: Name,
    /// `None` until the zone has been listed once.
    pub serial: Option<u32>,
    /// The zone's default TTL: how long a client may keep the tool list (`ttlMs`).
    pub ttl: u32,
    pub agents: Vec<Arc<Agent>>,
    /// Why the last refresh failed, while it keeps failing (the listing above stays).
    pub error: Option<String>,
}

/// Everything mounted, at one moment.
#[derive(Debug, Default)]
pub struct Mounted {
    pub zones: BTreeMap<Name, MountedZone>,
    /// What the zones' agents make, shared between moments when only a zone's serial or
    /// error changed.
    pub listing: Arc<Listing>,
}

/// The mounted agents as tools and listings.
#[derive(Debug, Default)]
pub struct Listing {
    /// Tool name -> agent, for every agent of every mounted zone.
    pub by_tool: BTreeMap<String, Arc<Agent>>,
    /// Agent name -> agent.
    pub by_name: BTreeMap<Name, Arc<Agent>>,
    /// Every mounted agent, in name order (the order of listings and their cursors).
    pub agents: Vec<Arc<Agent>>,
    /// The agents' searchable text, lowercased once here rather than on every search;
    /// `search[i]` is `agents[i]`'s.
    pub search: Vec<SearchDoc>,
    /// The agents' tool definitions, in tool-name order (stable pages).
    pub tools: Vec<Tool>,
}

/// One agent's text as `search_agents` matches it: lowercase.
#[derive(Debug)]
pub struct SearchDoc {
    /// Every field below, joined: an agent containing none of the query's words anywhere is
    /// skipped with one scan instead of one per field.
    pub all: String,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub capabilities: Vec<String>,
}

impl SearchDoc {
    fn of(agent: &Agent) -> SearchDoc {
        let name = agent.name.as_str().to_lowercase();
        let description = agent.description.to_lowercase();
        let tags: Vec<String> = agent.tags.iter().map(|t| t.to_lowercase()).collect();
        let capabilities: Vec<String> = agent
            .capabilities
            .iter()
            .map(|c| c.to_lowercase())
            .collect();
        let all = [name.as_str(), description.as_str()]
            .into_iter()
            .chain(tags.iter().map(String::as_str))
            .chain(capabilities.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("\n");
        SearchDoc {
            all,
            name,
            description,
            tags,
            capabilities,
        }
    }
}

impl Listing {
    fn build(zones: &BTreeMap<Name, MountedZone>) -> Listing {
        let mut by_tool = BTreeMap::new();
        let mut by_name = BTreeMap::new();
        for agent in zones.values().flat_map(|zone| zone.agents.iter()) {
            by_tool.insert(agent_tool_name(agent), Arc::clone(agent));
            by_name.insert(agent.name.clone(), Arc::clone(agent));
        }
        let tools = by_tool
            .iter()
            .map(|(tool, agent)| agent_tool(tool, agent))
            .collect();
        let agents: Vec<Arc<Agent>> = by_name.values().cloned().collect();
        let search = agents.iter().map(|agent| SearchDoc::of(agent)).collect();
        Listing {
            by_tool,
            by_name,
            agents,
            search,
            tools,
        }
    }
}

impl Mounted {
    fn build(zones: BTreeMap<Name, MountedZone>) -> Mounted {
        Mounted {
            listing: Arc::new(Listing::build(&zones)),
            zones,
        }
    }

    /// The shortest TTL of the mounted zones, in milliseconds: how long a tool list stays
    /// fresh.
    pub fn ttl_ms(&self) -> u64 {
        self.zones
            .values()
            .map(|zone| u64::from(zone.ttl) * 1000)
            .min()
            .unwrap_or(0)
    }
}

/// The MCP tool standing for one agent.
fn agent_tool(tool: &str, agent: &Agent) -> Tool {
    let description = if agent.description.is_empty() {
        format!("Agent {}", agent.name)
    } else {
        format!("{} (agent {})", agent.description, agent.name)
    };
    let mut definition = Tool::new(
        tool.to_string(),
        description,
        Arc::new(schema_object(agent.input_schema.value())),
    )
    .with_title(agent.name.to_string());
    if let Some(output) = &agent.output_schema {
        definition = definition.with_raw_output_schema(Arc::new(schema_object(output.value())));
    }
    // Whether an agent's tool is idempotent is the agent's to say, on its own endpoint; the
    // gateway only knows the call crosses the network.
    definition.annotate(ToolAnnotations::new().open_world(true))
}

fn schema_object(value: &Value) -> JsonObject {
    match value {
        Value::Object(map) => map.clone(),
        _ => JsonObject::new(),
    }
}

/// The mounted zones and their refresh task.
pub struct Directory {
    current: ArcSwap<Mounted>,
    changes: watch::Sender<u64>,
    mounts: Vec<Name>,
    client: RegistryClient,
}

impl Directory {
    pub fn new(mounts: Vec<Name>, client: RegistryClient) -> Arc<Directory> {
        let zones = mounts
            .iter()
            .map(|origin| {
                (
                    origin.clone(),
                    MountedZone {
                        origin: origin.clone(),
                        serial: None,
                        ttl: 0,
                        agents: Vec::new(),
                        error: Some("not listed yet".into()),
                    },
                )
            })
            .collect();
        Arc::new(Directory {
            current: ArcSwap::from_pointee(Mounted::build(zones)),
            changes: watch::channel(0).0,
            mounts,
            client,
        })
    }

    pub fn mounts(&self) -> &[Name] {
        &self.mounts
    }

    pub fn current(&self) -> Arc<Mounted> {
        self.current.load_full()
    }

    /// A receiver that sees a new value on every change of the tool list.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Checks every mounted zone once; lists again those whose serial moved. Returns whether
    /// the tool list changed.
    pub async fn refresh(&self) -> bool {
        let before = self.current();
        let mut zones = before.zones.clone();
        let mut changed = false;
        for origin in &self.mounts {
            let Some(zone) = zones.get_mut(origin) else {
                continue;
            };
            match self.refresh_zone(zone).await {
                Ok(zone_changed) => {
                    changed |= zone_changed;
                    zone.error = None;
                }
                Err(error) => {
                    if zone.error.as_deref() != Some(&error) {
                        tracing::warn!(zone = %origin, %error, "cannot refresh a mounted zone");
                    }
                    zone.error = Some(error);
                }
            }
        }
        if changed {
            self.current.store(Arc::new(Mounted::build(zones)));
            self.changes.send_modify(|version| *version += 1);
        } else if zones
            .values()
            .zip(before.zones.values())
            .any(|(now, was)| now.error != was.error || now.serial != was.serial)
        {
            // Errors or serials changed, tools did not: keep the listing, record the state.
            self.current.store(Arc::new(Mounted {
                zones,
                listing: Arc::clone(&before.listing),
            }));
        }
        changed
    }

    async fn refresh_zone(&self, zone: &mut MountedZone) -> Result<bool, String> {
        let mut client = self.client.clone();
        let header = client
            .get_zone(pb::GetZoneRequest {
                zone: zone.origin.to_string(),
                recursive: true,
            })
            .await
            .map_err(|status| status.message().to_string())?
            .into_inner();
        if zone.serial == Some(header.serial) {
            return Ok(false);
        }
        let mut agents = Vec::new();
        let mut cursor = String::new();
        let serial = loop {
            let page = client
                .list_agents(pb::ListAgentsRequest {
                    zone: zone.origin.to_string(),
                    page_size: limits::PAGE_MAX as u32,
                    cursor: cursor.clone(),
                    recursive: true,
                })
                .await
                .map_err(|status| status.message().to_string())?
                .into_inner();
            for agent in page.agents {
                let agent = Agent::try_from(agent)
                    .map_err(|error| format!("unusable agent record: {error}"))?;
                agents.push(Arc::new(agent));
            }
            if page.next_cursor.is_empty() {
                break page.zone_serial;
            }
            cursor = page.next_cursor;
        };
        let changed = zone.serial.is_none() || !same_agents(&zone.agents, &agents);
        zone.serial = Some(serial);
        zone.ttl = header.ttl;
        zone.agents = agents;
        Ok(changed)
    }

    /// Refreshes every `interval` until `shutdown`.
    pub async fn run(self: Arc<Directory>, interval: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.refresh() => {}
            }
        }
    }
}

/// Whether two listings would give the same tools (a serial can move without that).
fn same_agents(before: &[Arc<Agent>], after: &[Arc<Agent>]) -> bool {
    before.len() == after.len()
        && before.iter().zip(after).all(|(a, b)| {
            a.name == b.name
                && a.description == b.description
                && a.input_schema.text() == b.input_schema.text()
                && a.output_schema.as_ref().map(|s| s.text())
                    == b.output_schema.as_ref().map(|s| s.text())
                && a.endpoints == b.endpoints
                && a.tags == b.tags
                && a.capabilities == b.capabilities
                && a.version == b.version
        })
}
