//! The mounted zones: their agents, as listings and as tools, kept in step with the zones.
//!
//! A zone is listed once through the resolver node (`GetZone` then paged `ListAgents`, both
//! recursive, so the node finds the zone's own servers), then followed by a task of its own
//! on a `Watch` stream that the resolver node relays from one of the zone's servers: each
//! event carries the changes since the last, applied here to the zone's agents, so a
//! registration reaches the tool list within milliseconds and a large zone is not listed
//! again for each change. An event that does not follow on from what we hold (a reset, a
//! gap) makes us list the zone again. When the stream fails, the zone is checked once (its
//! serial, listing it if moved) and the stream reopened with a backoff up to the retry
//! interval; a node without Watch is polled at that interval.
//!
//! Each change swaps in a new immutable [`Mounted`] and bumps a watch channel that the MCP
//! sessions turn into `notifications/tools/list_changed`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::gateway::shapes::agent_tool_name;
use crate::grpc::client::{NodeClient, ZoneEvent};
use crate::name::Name;
use crate::record::{Agent, LiveRecord, RecordChange, RecordKind, limits};

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
    /// When the node last confirmed this listing: a listing, a serial check, or a Watch
    /// event (the one a stream opens with included). `None` until the zone is listed.
    pub refreshed: Option<Instant>,
    /// A Watch stream follows the zone now (while one does, a quiet zone sends nothing, so
    /// `refreshed` ages without the listing being stale).
    pub watching: bool,
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
    /// The agents' tool definitions, in tool-name order (stable pages).
    pub tools: Vec<Tool>,
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
        Listing {
            by_tool,
            by_name,
            agents,
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

/// The mounted zones and the tasks that follow them.
pub struct Directory {
    current: ArcSwap<Mounted>,
    /// Serialises writers (one follower per zone): each takes the current moment, changes
    /// its zone and stores the next one. Readers never take it.
    publish: Mutex<()>,
    changes: watch::Sender<u64>,
    mounts: Vec<Name>,
    client: NodeClient,
}

/// A zone as one listing read it.
struct Listed {
    serial: u32,
    ttl: u32,
    agents: Vec<Arc<Agent>>,
}

/// What a Watch event means for a mounted zone.
enum Applied {
    /// The changes followed on from the zone's serial and are applied.
    Applied,
    /// The event cannot be applied to what we have: list the zone again.
    Relist,
}

impl Directory {
    pub fn new(mounts: Vec<Name>, client: NodeClient) -> Arc<Directory> {
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
                        refreshed: None,
                        watching: false,
                    },
                )
            })
            .collect();
        Arc::new(Directory {
            current: ArcSwap::from_pointee(Mounted::build(zones)),
            publish: Mutex::new(()),
            changes: watch::channel(0).0,
            mounts,
            client,
        })
    }

    pub fn mounts(&self) -> &[Name] {
        &self.mounts
    }

    /// The endpoints of a mounted agent that its zone's probes marked down, from the zone
    /// as the Watch stream keeps it: the resolver's answers leave them out (docs/protocol.md
    /// §9.1), and the call path keeps them as a last resort. Empty for an agent outside the
    /// mounts. A scan of the agent's zone: called only once a call's other endpoints failed.
    pub fn endpoints_marked_down(&self, agent: &Name) -> Vec<crate::record::Endpoint> {
        let current = self.current();
        let zone = current
            .zones
            .values()
            .filter(|zone| agent.is_at_or_below(&zone.origin))
            .max_by_key(|zone| zone.origin.label_count());
        zone.and_then(|zone| zone.agents.iter().find(|a| a.name == *agent))
            .map(|record| {
                record
                    .endpoints
                    .iter()
                    .filter(|e| e.health.state == crate::record::HealthState::Down)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn current(&self) -> Arc<Mounted> {
        self.current.load_full()
    }

    /// A receiver that sees a new value on every change of the tool list.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Checks every mounted zone once, in parallel; lists again those whose serial moved.
    /// Returns whether the tool list changed.
    pub async fn refresh(&self) -> bool {
        let checks = self.mounts.iter().map(|origin| self.refresh_zone(origin));
        futures::future::join_all(checks)
            .await
            .into_iter()
            .any(|changed| changed)
    }

    /// Checks one zone's serial and lists it again when it moved. Returns whether the tool
    /// list changed.
    async fn refresh_zone(&self, origin: &Name) -> bool {
        let known = self
            .current()
            .zones
            .get(origin)
            .and_then(|zone| zone.serial);
        self.list_and_store(origin, known).await
    }

    /// Lists a zone (unless its serial is still `known`) and stores what came back, or the
    /// error. Returns whether the tool list changed.
    async fn list_and_store(&self, origin: &Name, known: Option<u32>) -> bool {
        match self.list_zone(origin, known).await {
            Ok(None) => self.update(origin, |zone| {
                zone.error = None;
                zone.refreshed = Some(Instant::now());
                false
            }),
            Ok(Some(listed)) => self.update(origin, |zone| {
                let changed = zone.serial.is_none() || !same_agents(&zone.agents, &listed.agents);
                zone.serial = Some(listed.serial);
                zone.ttl = listed.ttl;
                zone.agents = listed.agents;
                zone.error = None;
                zone.refreshed = Some(Instant::now());
                changed
            }),
            Err(error) => self.record_error(origin, error),
        }
    }

    fn record_error(&self, origin: &Name, error: String) -> bool {
        self.update(origin, |zone| {
            if zone.error.as_deref() != Some(&error) {
                tracing::warn!(zone = %origin, %error, "cannot refresh a mounted zone");
            }
            zone.error = Some(error);
            false
        })
    }

    /// Changes one zone under the publish lock. `change` returns whether the tool list
    /// changed; then the listing is rebuilt and sessions are told. A change of serial or
    /// error alone keeps the listing.
    fn update(&self, origin: &Name, change: impl FnOnce(&mut MountedZone) -> bool) -> bool {
        let _writer = self.publish.lock().unwrap_or_else(PoisonError::into_inner);
        let before = self.current();
        let mut zones = before.zones.clone();
        let Some(zone) = zones.get_mut(origin) else {
            return false;
        };
        let changed = change(zone);
        if changed {
            self.current.store(Arc::new(Mounted::build(zones)));
            self.changes.send_modify(|version| *version += 1);
        } else if zones.values().zip(before.zones.values()).any(|(now, was)| {
            now.error != was.error
                || now.serial != was.serial
                || now.ttl != was.ttl
                || now.refreshed != was.refreshed
                || now.watching != was.watching
        }) {
            self.current.store(Arc::new(Mounted {
                zones,
                listing: Arc::clone(&before.listing),
            }));
        }
        changed
    }

    /// Lists a zone (`GetZone` then paged `ListAgents`), or `None` when its serial is still
    /// `known`.
    async fn list_zone(&self, origin: &Name, known: Option<u32>) -> Result<Option<Listed>, String> {
        let mut client = self.client.clone();
        let header = client
            .get_zone(&origin.to_string(), true, None)
            .await
            .map_err(|error| error.message())?;
        if known == Some(header.serial) {
            return Ok(None);
        }
        let mut agents = Vec::new();
        let mut cursor = String::new();
        let serial = loop {
            let page = client
                .list_agents(
                    &origin.to_string(),
                    limits::PAGE_MAX as u32,
                    &cursor,
                    true,
                    None,
                )
                .await
                .map_err(|error| error.message())?;
            agents.extend(page.agents);
            if page.next_cursor.is_empty() {
                break page.zone_serial;
            }
            cursor = page.next_cursor;
        };
        Ok(Some(Listed {
            serial,
            ttl: header.ttl,
            agents,
        }))
    }

    /// Applies one Watch event to a zone: the changes when they follow on from its serial.
    fn apply_event(&self, origin: &Name, event: ZoneEvent) -> Applied {
        let mut outcome = Applied::Applied;
        self.update(origin, |zone| {
            let no_changes = event.changes.as_ref().is_ok_and(Vec::is_empty);
            if zone.serial == Some(event.serial) && no_changes && !event.reset {
                zone.refreshed = Some(Instant::now());
                return false;
            }
            match apply_changes(zone, &event) {
                Ok(changed) => {
                    zone.error = None;
                    zone.refreshed = Some(Instant::now());
                    changed
                }
                Err(reason) => {
                    tracing::debug!(zone = %origin, reason, "watch event does not apply; listing the zone again");
                    outcome = Applied::Relist;
                    false
                }
            }
        });
        outcome
    }

    /// Follows every mounted zone until `shutdown`, each on its own task. `retry` is how long
    /// to wait at most before reopening a failed Watch stream, and how often a zone is polled
    /// when its node offers no Watch.
    pub async fn run(self: Arc<Directory>, retry: Duration, shutdown: CancellationToken) {
        let followers: Vec<_> = self
            .mounts
            .iter()
            .map(|origin| {
                tokio::spawn(Arc::clone(&self).follow(origin.clone(), retry, shutdown.clone()))
            })
            .collect();
        for follower in followers {
            let _ = follower.await;
        }
    }

    /// Follows one zone: a Watch stream at the resolver node (relayed from the zone's
    /// servers), each event applied as it comes. When the stream cannot be opened or ends,
    /// the zone is polled once (nothing missed while it was down) and the stream reopened
    /// after a backoff; a node without Watch is polled every `retry`.
    async fn follow(
        self: Arc<Directory>,
        origin: Name,
        retry: Duration,
        shutdown: CancellationToken,
    ) {
        let mut backoff = WATCH_BACKOFF_FIRST.min(retry);
        // The wire writes the root as "."; `Name::as_str` gives "" for it.
        let zone = origin.to_string();
        loop {
            let since_serial = self
                .current()
                .zones
                .get(&origin)
                .and_then(|zone| zone.serial);
            let mut client = self.client.clone();
            let opened = tokio::select! {
                () = shutdown.cancelled() => return,
                opened = client.watch(&zone, since_serial, true) => opened,
            };
            match opened {
                Ok(mut stream) => {
                    self.set_watching(&origin, true);
                    // The stream's first event carries the serial now: anything missed
                    // before it opened is caught by a relist if the serials disagree.
                    loop {
                        let next = tokio::select! {
                            () = shutdown.cancelled() => return,
                            next = stream.next() => next,
                        };
                        match next {
                            Ok(Some(event)) => {
                                backoff = WATCH_BACKOFF_FIRST.min(retry);
                                if let Applied::Relist = self.apply_event(&origin, event) {
                                    self.relist(&origin).await;
                                }
                            }
                            Ok(None) => {
                                tracing::debug!(zone = %origin, "watch stream ended");
                                break;
                            }
                            Err(error) => {
                                tracing::debug!(zone = %origin, %error, "watch stream failed");
                                break;
                            }
                        }
                    }
                    self.set_watching(&origin, false);
                }
                Err(error) if error.is_unimplemented() => {
                    // An older node: poll.
                    backoff = retry;
                }
                Err(error) => {
                    self.record_error(&origin, error.message());
                }
            }
            self.refresh_zone(&origin).await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(retry);
        }
    }

    fn set_watching(&self, origin: &Name, watching: bool) {
        self.update(origin, |zone| {
            zone.watching = watching;
            false
        });
    }

    /// Lists a zone again whatever its serial.
    async fn relist(&self, origin: &Name) {
        self.list_and_store(origin, None).await;
    }
}

/// The first wait before reopening a failed Watch stream; it doubles up to the retry interval.
const WATCH_BACKOFF_FIRST: Duration = Duration::from_millis(100);

/// Applies a Watch event's changes to a zone's agents. Errors (with the reason) when they do
/// not follow on from the zone's serial, the event is a reset, or a record is unusable: the
/// caller lists the zone again. Returns whether the agents changed.
fn apply_changes(zone: &mut MountedZone, event: &ZoneEvent) -> Result<bool, String> {
    if event.reset {
        return Err("the node's change log no longer reaches back".into());
    }
    let Some(mut serial) = zone.serial else {
        return Err("not listed yet".into());
    };
    let changes = event.changes.as_ref().map_err(Clone::clone)?;
    if changes.is_empty() {
        return Err(format!(
            "serial moved from {serial} to {} without changes",
            event.serial
        ));
    }
    let mut agents: BTreeMap<Name, Arc<Agent>> = zone
        .agents
        .iter()
        .map(|agent| (agent.name.clone(), Arc::clone(agent)))
        .collect();
    let mut ttl = zone.ttl;
    for change in changes {
        if change.from_serial != serial {
            return Err(format!(
                "a change from serial {} does not follow serial {serial}",
                change.from_serial
            ));
        }
        for record in &change.changes {
            match record {
                RecordChange::Put(LiveRecord::Agent(live)) => {
                    agents.insert(live.agent.name.clone(), Arc::clone(&live.agent));
                }
                RecordChange::Delete {
                    kind: RecordKind::Agent,
                    name,
                } => {
                    agents.remove(name);
                }
                RecordChange::Put(_) | RecordChange::Delete { .. } => {}
            }
        }
        ttl = change.header.ttl;
        serial = change.serial;
    }
    if serial != event.serial {
        return Err(format!(
            "changes end at serial {serial}, the event says {}",
            event.serial
        ));
    }
    let agents: Vec<Arc<Agent>> = agents.into_values().collect();
    let changed = !same_agents(&zone.agents, &agents);
    zone.serial = Some(serial);
    zone.ttl = ttl;
    zone.agents = agents;
    Ok(changed)
}

/// Whether two listings would give the same tools (a serial can move without that: endpoint
/// health, docs/protocol.md §9.1, changes no tool).
fn same_agents(before: &[Arc<Agent>], after: &[Arc<Agent>]) -> bool {
    before.len() == after.len()
        && before.iter().zip(after).all(|(a, b)| {
            a.name == b.name
                && a.description == b.description
                && a.input_schema.text() == b.input_schema.text()
                && a.output_schema.as_ref().map(|s| s.text())
                    == b.output_schema.as_ref().map(|s| s.text())
                // Health moves with probes; the tools it gives do not (calls read the new
                // records all the same).
                && a.endpoints.len() == b.endpoints.len()
                && a.endpoints.iter().zip(&b.endpoints).all(|(x, y)| {
                    (&x.url, &x.tool, x.priority, x.weight) == (&y.url, &y.tool, y.priority, y.weight)
                })
                && a.tags == b.tags
                && a.capabilities == b.capabilities
                && a.version == b.version
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{self, Endpoint, LiveAgent, ServerAddress, ZoneChange, ZoneHeader};

    fn agent(full_name: &str, description: &str) -> Agent {
        Agent {
            name: Name::parse(full_name).unwrap(),
            description: description.into(),
            tags: Box::default(),
            capabilities: Box::default(),
            version: "".into(),
            ttl: None,
            timeout_ms: record::DEFAULT_TIMEOUT_MS,
            max_retries: record::DEFAULT_MAX_RETRIES,
            endpoints: vec![Endpoint::new("http://127.0.0.1:9/mcp", "a", 10, 1).unwrap()],
            input_schema: record::default_input_schema(),
            output_schema: None,
            metadata: None,
            health_checks: true,
        }
    }

    fn zone(serial: u32, agents: &[Agent]) -> MountedZone {
        MountedZone {
            origin: Name::parse("finance.acme").unwrap(),
            serial: Some(serial),
            ttl: 60,
            agents: agents.iter().cloned().map(Arc::new).collect(),
            error: None,
            refreshed: None,
            watching: false,
        }
    }

    fn put(agent: &Agent) -> RecordChange {
        RecordChange::Put(LiveRecord::Agent(LiveAgent {
            agent: Arc::new(agent.clone()),
            from_file: false,
            live: Default::default(),
        }))
    }

    fn delete(name: &str) -> RecordChange {
        RecordChange::Delete {
            kind: RecordKind::Agent,
            name: Name::parse(name).unwrap(),
        }
    }

    fn change(from: u32, to: u32, changes: Vec<RecordChange>) -> ZoneChange {
        ZoneChange {
            from_serial: from,
            serial: to,
            changes,
            header: ZoneHeader {
                origin: Name::parse("finance.acme").unwrap(),
                serial: to,
                ttl: 60,
                negative_ttl: 60,
                refresh: 60,
                retry: 10,
                expire: 86_400,
                contact: String::new(),
                servers: vec![ServerAddress::new("http://127.0.0.1:7102", None).unwrap()],
                health: crate::record::HealthSettings::DEFAULT,
            },
        }
    }

    fn event(serial: u32, changes: Vec<ZoneChange>) -> ZoneEvent {
        ZoneEvent {
            serial,
            changes: Ok(changes),
            reset: false,
        }
    }

    fn names(zone: &MountedZone) -> Vec<String> {
        zone.agents.iter().map(|a| a.name.to_string()).collect()
    }

    #[test]
    fn endpoint_health_changes_no_tool_but_an_endpoint_url_does() {
        let before = Arc::new(agent("analyst.finance.acme", "Numbers."));
        let mut down = Agent::clone(&before);
        down.endpoints[0].health =
            record::EndpointHealth::new(record::HealthState::Down, 1, "connection refused");
        assert!(same_agents(&[Arc::clone(&before)], &[Arc::new(down)]));
        let mut moved = Agent::clone(&before);
        moved.endpoints[0].url = "http://127.0.0.1:10/mcp".into();
        assert!(!same_agents(&[before], &[Arc::new(moved)]));
    }

    #[test]
    fn changes_that_follow_on_are_applied_in_order() {
        let analyst = agent("analyst.finance.acme", "numbers");
        let writer = agent("writer.finance.acme", "words");
        let mut mounted = zone(5, std::slice::from_ref(&analyst));
        let changed = apply_changes(
            &mut mounted,
            &event(
                7,
                vec![
                    change(5, 6, vec![put(&writer)]),
                    change(6, 7, vec![delete("analyst.finance.acme")]),
                ],
            ),
        )
        .unwrap();
        assert!(changed);
        assert_eq!(mounted.serial, Some(7));
        assert_eq!(names(&mounted), ["writer.finance.acme"]);
    }

    #[test]
    fn a_changed_description_changes_the_tools_and_a_same_record_does_not() {
        let analyst = agent("analyst.finance.acme", "numbers");
        let mut mounted = zone(1, std::slice::from_ref(&analyst));
        assert!(
            !apply_changes(
                &mut mounted,
                &event(2, vec![change(1, 2, vec![put(&analyst)])])
            )
            .unwrap()
        );
        assert_eq!(mounted.serial, Some(2));
        let renamed = agent("analyst.finance.acme", "more numbers");
        assert!(
            apply_changes(
                &mut mounted,
                &event(3, vec![change(2, 3, vec![put(&renamed)])])
            )
            .unwrap()
        );
        assert_eq!(mounted.agents[0].description, "more numbers");
    }

    #[test]
    fn gaps_resets_and_unlisted_zones_ask_for_a_listing() {
        let analyst = agent("analyst.finance.acme", "numbers");
        let mut mounted = zone(5, std::slice::from_ref(&analyst));
        let gap = event(8, vec![change(6, 8, vec![delete("analyst.finance.acme")])]);
        assert!(
            apply_changes(&mut mounted, &gap)
                .unwrap_err()
                .contains("does not follow serial 5")
        );
        // Nothing was applied.
        assert_eq!(mounted.serial, Some(5));
        assert_eq!(names(&mounted), ["analyst.finance.acme"]);

        let mut reset = event(9, Vec::new());
        reset.reset = true;
        assert!(apply_changes(&mut mounted, &reset).is_err());
        assert!(apply_changes(&mut mounted, &event(9, Vec::new())).is_err());
        let short = event(9, vec![change(5, 6, Vec::new())]);
        assert!(
            apply_changes(&mut mounted, &short)
                .unwrap_err()
                .contains("end at serial 6")
        );

        let mut unusable = event(6, Vec::new());
        unusable.changes = Err("unusable change: a bad record".into());
        assert!(
            apply_changes(&mut mounted, &unusable)
                .unwrap_err()
                .contains("a bad record")
        );

        mounted.serial = None;
        assert!(apply_changes(&mut mounted, &event(6, vec![change(5, 6, Vec::new())])).is_err());
    }
}
