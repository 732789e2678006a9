//! One zone as its authority holds it between changes: every record with where it came
//! from (the zone file, or a live registration), the leases of live endpoints, and the
//! operations that change it (register, renew, deregister, lease expiry, file reload, and a
//! secondary's transfers). Pure logic: no I/O, no clock of its own; the writer commits what
//! an operation returns before anyone sees it.
//!
//! Each operation returns an [`Edit`]: the records put and deleted and the leases written.
//! An edit that changes records becomes one step of the zone's serial ([`LiveZone::seal`])
//! and one entry of the change log; a renewal only writes a lease.
//!
//! Its maps are persistent (`imbl`): cloning a zone is O(1), so a secondary can keep the
//! zone as it was while it tries a transfer's changes, whatever the zone's size.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use imbl::{OrdMap, OrdSet};
use std::sync::Arc;

use crate::name::Name;
use crate::record::limits::ENDPOINTS_MAX;
use crate::record::{
    self, Agent, Alias, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_MS, Delegation, Endpoint,
    EndpointHealth, JsonDoc, LiveAgent, LiveRecord, RecordChange, RecordKind, ZoneChange,
    ZoneHeader, serial_newer,
};
use crate::store::{LeaseRow, StoredZoneData, ZoneWrite};
use crate::zone::{StructureError, ZoneRecords, ZoneSnapshot};

use super::UpdateError;

/// The lease of a registration that names none.
pub const DEFAULT_LEASE_SECS: u32 = 60;
/// The longest lease a registration may ask for.
pub const LEASE_MAX_SECS: u32 = 86_400;

/// How this node holds a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Loaded from a zone file; takes updates, expires leases.
    Primary,
    /// Copied from the primary at this gRPC URL.
    Secondary { primary: String },
}

/// When a live endpoint's lease ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub expires_unix_ms: u64,
    pub lease_secs: u32,
}

/// Agent fields a registration sets; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct AgentUpdate {
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub capabilities: Option<Vec<String>>,
    pub version: Option<String>,
    pub ttl: Option<u32>,
    pub timeout_ms: Option<u32>,
    pub max_retries: Option<u32>,
    pub input_schema: Option<JsonDoc>,
    pub output_schema: Option<JsonDoc>,
    pub metadata: Option<JsonDoc>,
}

/// A checked registration.
#[derive(Debug, Clone)]
pub struct Registration {
    pub name: Name,
    pub endpoint: Endpoint,
    pub lease_secs: u32,
    pub fields: AgentUpdate,
}

/// What a registration did.
#[derive(Debug, Clone)]
pub struct Registered {
    pub agent: Arc<Agent>,
    pub lease: Lease,
    pub changed: bool,
}

/// What a deregistration did.
#[derive(Debug, Clone, Copy)]
pub struct Deregistered {
    pub endpoints_removed: u32,
    pub agent_removed: bool,
}

/// What the probes concluded about one endpoint ([`LiveZone::mark_health`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthMark {
    pub agent: Name,
    pub url: String,
    pub health: EndpointHealth,
}

/// Where an agent's record and its endpoints came from, and when the leases of its live
/// endpoints end: what the status page shows beside the record ([`LiveZone::describe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSource {
    pub name: Name,
    /// Defined in the zone file (its fields belong to the file); else registered live.
    pub from_file: bool,
    /// Every endpoint, in the agent's order.
    pub endpoints: Vec<EndpointSource>,
}

/// One endpoint's provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSource {
    pub url: String,
    /// Registered live (else written in the zone file).
    pub live: bool,
    /// A live endpoint's lease (held by the primary only; secondaries copy the records, not
    /// the leases).
    pub lease: Option<Lease>,
}

/// Records and leases one operation changed.
#[derive(Debug, Default)]
pub struct Edit {
    pub changes: Vec<RecordChange>,
    pub lease_puts: Vec<LeaseRow>,
    pub lease_deletes: Vec<(String, String)>,
    /// Names whose answers changed (cached answers for them are dropped).
    pub names: Vec<Name>,
}

impl Edit {
    fn put(&mut self, record: &LiveRecord) {
        self.names.push(record.name().clone());
        self.changes.push(RecordChange::Put(record.clone()));
    }

    fn delete(&mut self, kind: RecordKind, name: &Name) {
        self.names.push(name.clone());
        self.changes.push(RecordChange::Delete {
            kind,
            name: name.clone(),
        });
    }
}

/// A zone between changes.
#[derive(Debug, Clone)]
pub struct LiveZone {
    pub header: ZoneHeader,
    /// The serial of the zone file last loaded (primaries).
    pub file_serial: u32,
    pub role: Role,
    agents: OrdMap<Name, LiveAgent>,
    aliases: OrdMap<Name, Arc<Alias>>,
    delegations: OrdMap<Name, Arc<Delegation>>,
    leases: imbl::GenericHashMap<
        (Name, String),
        Lease,
        crate::zone::NameHasher,
        imbl::shared_ptr::DefaultSharedPtr,
    >,
    /// Leases by expiry, for the next one due.
    expiries: OrdSet<(u64, Name, String)>,
}

impl LiveZone {
    /// A primary zone from its zone file, nothing registered yet.
    pub fn from_file(file: &ZoneSnapshot) -> LiveZone {
        let mut zone = LiveZone::empty(file.header().clone(), Role::Primary);
        zone.file_serial = file.serial();
        let records = file.records();
        for agent in records.agents {
            zone.agents.insert(
                agent.name.clone(),
                LiveAgent {
                    agent,
                    from_file: true,
                    live: BTreeSet::new(),
                },
            );
        }
        for alias in records.aliases {
            zone.aliases.insert(alias.name.clone(), alias);
        }
        for delegation in records.delegations {
            zone.delegations.insert(delegation.zone.clone(), delegation);
        }
        zone
    }

    pub fn empty(header: ZoneHeader, role: Role) -> LiveZone {
        LiveZone {
            header,
            file_serial: 0,
            role,
            agents: OrdMap::new(),
            aliases: OrdMap::new(),
            delegations: OrdMap::new(),
            leases: imbl::GenericHashMap::default(),
            expiries: OrdSet::new(),
        }
    }

    pub fn origin(&self) -> &Name {
        &self.header.origin
    }

    pub fn insert(&mut self, record: LiveRecord) {
        match record {
            LiveRecord::Agent(agent) => {
                self.agents.insert(agent.agent.name.clone(), agent);
            }
            LiveRecord::Alias(alias) => {
                self.aliases.insert(alias.name.clone(), alias);
            }
            LiveRecord::Delegation(delegation) => {
                self.delegations.insert(delegation.zone.clone(), delegation);
            }
        }
    }

    fn remove(&mut self, kind: RecordKind, name: &Name) {
        match kind {
            RecordKind::Agent => {
                self.agents.remove(name);
            }
            RecordKind::Alias => {
                self.aliases.remove(name);
            }
            RecordKind::Delegation => {
                self.delegations.remove(name);
            }
        }
    }

    pub fn set_lease(&mut self, agent: &Name, url: &str, lease: Lease) {
        let key = (agent.clone(), url.to_string());
        if let Some(old) = self.leases.insert(key, lease) {
            self.expiries
                .remove(&(old.expires_unix_ms, agent.clone(), url.to_string()));
        }
        self.expiries
            .insert((lease.expires_unix_ms, agent.clone(), url.to_string()));
    }

    fn drop_lease(&mut self, agent: &Name, url: &str, edit: &mut Edit) {
        if let Some(old) = self.leases.remove(&(agent.clone(), url.to_string())) {
            self.expiries
                .remove(&(old.expires_unix_ms, agent.clone(), url.to_string()));
            edit.lease_deletes
                .push((agent.to_string(), url.to_string()));
        }
    }

    pub fn lease(&self, agent: &Name, url: &str) -> Option<Lease> {
        self.leases.get(&(agent.clone(), url.to_string())).copied()
    }

    /// The provenance and leases of the agents named (those the zone holds), in the order
    /// asked.
    pub fn describe<'a>(&self, names: impl IntoIterator<Item = &'a Name>) -> Vec<AgentSource> {
        names
            .into_iter()
            .filter_map(|name| self.agents.get(name))
            .map(|live| AgentSource {
                name: live.agent.name.clone(),
                from_file: live.from_file,
                endpoints: live
                    .agent
                    .endpoints
                    .iter()
                    .map(|endpoint| EndpointSource {
                        url: endpoint.url.clone(),
                        live: live.live.contains(&endpoint.url),
                        lease: self.lease(&live.agent.name, &endpoint.url),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Every record, agents first, in name order.
    pub fn records(&self) -> impl Iterator<Item = LiveRecord> + '_ {
        self.agents
            .values()
            .cloned()
            .map(LiveRecord::Agent)
            .chain(self.aliases.values().cloned().map(LiveRecord::Alias))
            .chain(
                self.delegations
                    .values()
                    .cloned()
                    .map(LiveRecord::Delegation),
            )
    }

    pub fn agent(&self, name: &Name) -> Option<&LiveAgent> {
        self.agents.get(name)
    }

    /// The immutable snapshot readers use.
    pub fn snapshot(&self) -> Result<ZoneSnapshot, Vec<StructureError>> {
        ZoneSnapshot::build(
            self.header.clone(),
            ZoneRecords {
                agents: self.agents.values().map(|a| Arc::clone(&a.agent)).collect(),
                aliases: self.aliases.values().cloned().collect(),
                delegations: self.delegations.values().cloned().collect(),
            },
        )
    }

    /// Extends every lease that would end within one lease length of `now_ms` to end exactly
    /// one lease length from it (the grace a restarted primary gives its live endpoints);
    /// returns the lease rows to write.
    pub fn extend_leases(&mut self, now_ms: u64) -> Vec<LeaseRow> {
        let short: Vec<((Name, String), Lease)> = self
            .leases
            .iter()
            .filter(|(_, lease)| {
                lease.expires_unix_ms < now_ms.saturating_add(u64::from(lease.lease_secs) * 1000)
            })
            .map(|(key, lease)| (key.clone(), *lease))
            .collect();
        let mut rows = Vec::with_capacity(short.len());
        for ((agent, url), lease) in short {
            let extended = Lease {
                expires_unix_ms: now_ms.saturating_add(u64::from(lease.lease_secs) * 1000),
                lease_secs: lease.lease_secs,
            };
            self.set_lease(&agent, &url, extended);
            rows.push(LeaseRow {
                agent: agent.to_string(),
                url,
                expires_unix_ms: extended.expires_unix_ms,
                lease_secs: extended.lease_secs,
            });
        }
        rows
    }

    /// The earliest lease end, if any endpoint has a lease.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiries.get_min().map(|(at, _, _)| *at)
    }

    /// Turns an edit into the next serial: the header moves on and the change is returned
    /// for the log. An edit without record changes (a renewal) moves nothing.
    pub fn seal(&mut self, edit: &Edit, at_least: Option<u32>) -> Option<ZoneChange> {
        if edit.changes.is_empty() && at_least.is_none() {
            return None;
        }
        let from_serial = self.header.serial;
        let mut serial = from_serial.wrapping_add(1);
        if let Some(floor) = at_least
            && serial_newer(floor, serial)
        {
            serial = floor;
        }
        self.header.serial = serial;
        Some(ZoneChange {
            from_serial,
            serial,
            changes: edit.changes.clone(),
            header: self.header.clone(),
        })
    }

    /// Where `name` may not hold a live agent: outside the zone, at or below a delegated
    /// child, or where an alias is.
    fn check_placement(&self, name: &Name) -> Result<(), UpdateError> {
        if !name.is_at_or_below(self.origin()) {
            return Err(UpdateError::OutsideZone {
                name: name.clone(),
                zone: self.origin().clone(),
            });
        }
        if let Some((cut, _)) = name
            .self_and_ancestors()
            .find_map(|suffix| self.delegations.get_key_value(suffix))
        {
            return Err(UpdateError::Occluded {
                name: name.clone(),
                delegation: cut.clone(),
            });
        }
        if self.aliases.contains_key(name) {
            return Err(UpdateError::NameTaken {
                name: name.clone(),
                kind: "an alias",
            });
        }
        Ok(())
    }

    /// Adds or renews one endpoint of an agent, creating the agent with its first one.
    pub fn register(
        &mut self,
        registration: Registration,
        now_ms: u64,
    ) -> Result<(Registered, Edit), UpdateError> {
        let Registration {
            name,
            endpoint,
            lease_secs,
            fields,
        } = registration;
        self.check_placement(&name)?;
        let mut edit = Edit::default();
        let lease = Lease {
            expires_unix_ms: now_ms.saturating_add(u64::from(lease_secs) * 1000),
            lease_secs,
        };
        let (next, changed) = match self.agents.get(&name) {
            None => {
                let agent = new_agent(name.clone(), endpoint.clone(), fields);
                let mut live = BTreeSet::new();
                live.insert(endpoint.url.clone());
                (
                    LiveAgent {
                        agent: Arc::new(agent),
                        from_file: false,
                        live,
                    },
                    true,
                )
            }
            Some(current) => {
                let existing = current
                    .agent
                    .endpoints
                    .iter()
                    .find(|e| e.url == endpoint.url);
                if existing.is_some() && !current.live.contains(&endpoint.url) {
                    return Err(UpdateError::FromFile {
                        name: name.clone(),
                        url: Some(endpoint.url.clone()),
                    });
                }
                let mut agent = Agent::clone(&current.agent);
                if !current.from_file {
                    apply_fields(&mut agent, fields);
                }
                match agent.endpoints.iter_mut().find(|e| e.url == endpoint.url) {
                    // A renewal by registration keeps what the probes concluded.
                    Some(slot) => {
                        let health = std::mem::take(&mut slot.health);
                        *slot = endpoint.clone();
                        slot.health = health;
                    }
                    None => {
                        if agent.endpoints.len() >= ENDPOINTS_MAX {
                            return Err(UpdateError::TooManyEndpoints { name: name.clone() });
                        }
                        agent.endpoints.push(endpoint.clone());
                    }
                }
                let changed = agent != *current.agent;
                let mut live = current.live.clone();
                live.insert(endpoint.url.clone());
                (
                    LiveAgent {
                        agent: if changed {
                            Arc::new(agent)
                        } else {
                            Arc::clone(&current.agent)
                        },
                        from_file: current.from_file,
                        live,
                    },
                    changed,
                )
            }
        };
        let agent = Arc::clone(&next.agent);
        if changed {
            let record = LiveRecord::Agent(next);
            edit.put(&record);
            self.insert(record);
        }
        self.set_lease(&name, &endpoint.url, lease);
        edit.lease_puts.push(LeaseRow {
            agent: name.to_string(),
            url: endpoint.url.clone(),
            expires_unix_ms: lease.expires_unix_ms,
            lease_secs,
        });
        Ok((
            Registered {
                agent,
                lease,
                changed,
            },
            edit,
        ))
    }

    /// Extends a live endpoint's lease.
    pub fn renew(
        &mut self,
        name: &Name,
        url: &str,
        lease_secs: Option<u32>,
        now_ms: u64,
    ) -> Result<(Lease, Edit), UpdateError> {
        let current = self
            .lease(name, url)
            .ok_or_else(|| self.missing(name, Some(url)))?;
        let lease_secs = lease_secs.unwrap_or(current.lease_secs);
        let lease = Lease {
            expires_unix_ms: now_ms.saturating_add(u64::from(lease_secs) * 1000),
            lease_secs,
        };
        self.set_lease(name, url, lease);
        let edit = Edit {
            lease_puts: vec![LeaseRow {
                agent: name.to_string(),
                url: url.to_string(),
                expires_unix_ms: lease.expires_unix_ms,
                lease_secs,
            }],
            ..Edit::default()
        };
        Ok((lease, edit))
    }

    fn missing(&self, name: &Name, url: Option<&str>) -> UpdateError {
        match (self.agents.get(name), url) {
            (None, _) => UpdateError::NoSuchAgent {
                name: name.clone(),
                zone: self.origin().clone(),
            },
            (Some(agent), Some(url)) if !agent.live.contains(url) && has_url(agent, url) => {
                UpdateError::FromFile {
                    name: name.clone(),
                    url: Some(url.to_string()),
                }
            }
            (Some(_), Some(url)) => UpdateError::NoSuchEndpoint {
                name: name.clone(),
                url: url.to_string(),
            },
            (Some(_), None) => UpdateError::NoSuchAgent {
                name: name.clone(),
                zone: self.origin().clone(),
            },
        }
    }

    /// Writes what the probes concluded: each mark whose state differs from the endpoint's
    /// changes its agent's record (one record change per agent, however many of its
    /// endpoints changed); a mark for an endpoint or agent that has gone since it was probed,
    /// or whose state is already the one marked, changes nothing. Returns how many endpoints
    /// changed state.
    pub fn mark_health(&mut self, marks: Vec<HealthMark>) -> (usize, Edit) {
        let mut edit = Edit::default();
        let mut by_agent: BTreeMap<Name, Vec<HealthMark>> = BTreeMap::new();
        for mark in marks {
            by_agent.entry(mark.agent.clone()).or_default().push(mark);
        }
        let mut changed = 0;
        for (name, marks) in by_agent {
            let Some(current) = self.agents.get(&name) else {
                continue;
            };
            let mut agent = Agent::clone(&current.agent);
            let mut any = false;
            for mark in marks {
                if let Some(endpoint) = agent.endpoints.iter_mut().find(|e| e.url == mark.url)
                    && endpoint.health.state != mark.health.state
                {
                    endpoint.health = mark.health;
                    any = true;
                    changed += 1;
                }
            }
            if any {
                let record = LiveRecord::Agent(LiveAgent {
                    agent: Arc::new(agent),
                    from_file: current.from_file,
                    live: current.live.clone(),
                });
                edit.put(&record);
                self.insert(record);
            }
        }
        (changed, edit)
    }

    /// Removes one live endpoint, or the whole (live) agent.
    pub fn deregister(
        &mut self,
        name: &Name,
        url: Option<&str>,
    ) -> Result<(Deregistered, Edit), UpdateError> {
        let Some(current) = self.agents.get(name).cloned() else {
            return Err(self.missing(name, url));
        };
        let mut edit = Edit::default();
        let urls: Vec<String> = match url {
            Some(url) => {
                if !current.live.contains(url) {
                    return Err(self.missing(name, Some(url)));
                }
                vec![url.to_string()]
            }
            None => {
                if current.from_file {
                    return Err(UpdateError::FromFile {
                        name: name.clone(),
                        url: None,
                    });
                }
                current.live.iter().cloned().collect()
            }
        };
        let removed = self.remove_endpoints(&current, &urls, &mut edit);
        Ok((removed, edit))
    }

    fn remove_endpoints(
        &mut self,
        current: &LiveAgent,
        urls: &[String],
        edit: &mut Edit,
    ) -> Deregistered {
        let name = current.agent.name.clone();
        for url in urls {
            self.drop_lease(&name, url, edit);
        }
        let mut agent = Agent::clone(&current.agent);
        agent.endpoints.retain(|e| !urls.contains(&e.url));
        let removed = (current.agent.endpoints.len() - agent.endpoints.len()) as u32;
        if agent.endpoints.is_empty() {
            self.agents.remove(&name);
            edit.delete(RecordKind::Agent, &name);
            return Deregistered {
                endpoints_removed: removed,
                agent_removed: true,
            };
        }
        let mut live = current.live.clone();
        for url in urls {
            live.remove(url);
        }
        let record = LiveRecord::Agent(LiveAgent {
            agent: Arc::new(agent),
            from_file: current.from_file,
            live,
        });
        edit.put(&record);
        self.insert(record);
        Deregistered {
            endpoints_removed: removed,
            agent_removed: false,
        }
    }

    /// Removes every endpoint whose lease ended at or before `now_ms`.
    pub fn expire(&mut self, now_ms: u64) -> Edit {
        let mut due: BTreeMap<Name, Vec<String>> = BTreeMap::new();
        for (at, agent, url) in &self.expiries {
            if *at > now_ms {
                break;
            }
            due.entry(agent.clone()).or_default().push(url.clone());
        }
        let mut edit = Edit::default();
        for (name, urls) in due {
            match self.agents.get(&name).cloned() {
                Some(current) => {
                    let urls: Vec<String> = urls
                        .into_iter()
                        .filter(|url| current.live.contains(url))
                        .collect();
                    self.remove_endpoints(&current, &urls, &mut edit);
                }
                None => {
                    for url in urls {
                        self.drop_lease(&name, &url, &mut edit);
                    }
                }
            }
        }
        edit
    }

    /// Loads a newer zone file: the file's records replace those that came from the last
    /// file, live endpoints stay (on the file's agent of the same name, or on their own
    /// agent). Returns `None` when the file is not newer than the one loaded.
    pub fn reload(&mut self, file: &ZoneSnapshot) -> Result<Option<(Edit, u32)>, UpdateError> {
        if !serial_newer(file.serial(), self.file_serial) {
            return Ok(None);
        }
        let mut next = LiveZone::from_file(file);
        next.header.serial = self.header.serial;
        next.leases = self.leases.clone();
        next.expiries = self.expiries.clone();
        let mut edit = Edit::default();
        // Live endpoints carry over.
        for (name, current) in &self.agents {
            if current.live.is_empty() {
                continue;
            }
            let live_endpoints: Vec<Endpoint> = current
                .agent
                .endpoints
                .iter()
                .filter(|e| current.live.contains(&e.url))
                .cloned()
                .collect();
            match next.agents.get_mut(name) {
                Some(file_agent) => {
                    let mut agent = Agent::clone(&file_agent.agent);
                    let mut dropped = Vec::new();
                    for endpoint in live_endpoints {
                        // A URL the file now defines is the file's; past the endpoint
                        // limit, live endpoints give way to the file's.
                        if agent.endpoints.iter().any(|e| e.url == endpoint.url)
                            || agent.endpoints.len() >= ENDPOINTS_MAX
                        {
                            dropped.push(endpoint.url);
                            continue;
                        }
                        file_agent.live.insert(endpoint.url.clone());
                        agent.endpoints.push(endpoint);
                    }
                    file_agent.agent = Arc::new(agent);
                    for url in dropped {
                        next.drop_lease(name, &url, &mut edit);
                    }
                }
                None => {
                    let mut agent = Agent::clone(&current.agent);
                    agent.endpoints = live_endpoints;
                    next.agents.insert(
                        name.clone(),
                        LiveAgent {
                            agent: Arc::new(agent),
                            from_file: false,
                            live: current.live.clone(),
                        },
                    );
                }
            }
        }
        // What the probes concluded about the endpoints the file keeps carries over too
        // (unless the file turned probing off for the agent).
        let names: Vec<Name> = next.agents.keys().cloned().collect();
        for name in &names {
            let (Some(current), Some(next_agent)) =
                (self.agents.get(name), next.agents.get_mut(name))
            else {
                continue;
            };
            let concluded = |url: &str| {
                current
                    .agent
                    .endpoints
                    .iter()
                    .find(|e| e.url == url)
                    .map(|e| &e.health)
            };
            let differs = next_agent
                .agent
                .endpoints
                .iter()
                .any(|e| concluded(&e.url).is_some_and(|h| *h != e.health));
            if next_agent.agent.health_checks && differs {
                let mut agent = Agent::clone(&next_agent.agent);
                for endpoint in &mut agent.endpoints {
                    if let Some(health) = concluded(&endpoint.url) {
                        endpoint.health = health.clone();
                    }
                }
                next_agent.agent = Arc::new(agent);
            }
        }
        if let Err(errors) = next.snapshot() {
            return Err(UpdateError::Reload {
                zone: self.origin().clone(),
                reason: errors
                    .iter()
                    .map(|e| e.error.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        // The difference, record by record.
        let old: HashMap<(RecordKind, Name), LiveRecord> = self
            .records()
            .map(|r| ((r.kind(), r.name().clone()), r))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for record in next.records() {
            let key = (record.kind(), record.name().clone());
            let same = old.get(&key).is_some_and(|o| *o == record);
            if !same {
                edit.put(&record);
            }
            seen.insert(key);
        }
        for (kind, name) in old.keys() {
            if !seen.contains(&(*kind, name.clone())) {
                edit.delete(*kind, name);
            }
        }
        let file_serial = file.serial();
        *self = next;
        self.file_serial = file_serial;
        // Even with the same records, the serial moves on to at least the file's.
        Ok(Some((edit, file_serial)))
    }

    /// Applies one change from the primary (a secondary's incremental transfer).
    pub fn apply_change(&mut self, change: &ZoneChange) -> Edit {
        let mut edit = Edit::default();
        for item in &change.changes {
            edit.names.push(item.name().clone());
            match item {
                RecordChange::Put(record) => self.insert(record.clone()),
                RecordChange::Delete { kind, name } => self.remove(*kind, name),
            }
            edit.changes.push(item.clone());
        }
        self.header = change.header.clone();
        self.header.serial = change.serial;
        edit
    }

    /// A zone from a full transfer's header and records (`aop zone dump` reads one).
    pub fn from_records(header: ZoneHeader, role: Role, records: Vec<LiveRecord>) -> LiveZone {
        let mut zone = LiveZone::empty(header, role);
        for record in records {
            zone.insert(record);
        }
        zone
    }

    /// A zone as the store holds it (the store has checked its records); an error names the
    /// zone and what is wrong.
    pub fn from_store(data: StoredZoneData) -> Result<LiveZone, (String, String)> {
        let role = if data.primary_url.is_empty() {
            Role::Primary
        } else {
            Role::Secondary {
                primary: data.primary_url,
            }
        };
        let mut zone = LiveZone::from_records(data.header, role, data.records);
        zone.file_serial = data.file_serial;
        for lease in data.leases {
            let agent = Name::parse(&lease.agent)
                .map_err(|error| (zone.origin().to_string(), format!("a lease: {error}")))?;
            zone.set_lease(
                &agent,
                &lease.url,
                Lease {
                    expires_unix_ms: lease.expires_unix_ms,
                    lease_secs: lease.lease_secs,
                },
            );
        }
        Ok(zone)
    }

    /// The store rows for the whole zone (a seed, or a secondary's full transfer).
    pub fn full_write(&self) -> ZoneWrite {
        let mut write = ZoneWrite::new(self.origin().clone());
        write.clear = true;
        write.header = Some(self.header.clone());
        write.file_serial = Some(self.file_serial);
        if let Role::Secondary { primary } = &self.role {
            write.primary_url = Some(primary.clone());
        }
        write.puts = self.records().collect();
        write.lease_puts = self
            .leases
            .iter()
            .map(|((agent, url), lease)| LeaseRow {
                agent: agent.to_string(),
                url: url.clone(),
                expires_unix_ms: lease.expires_unix_ms,
                lease_secs: lease.lease_secs,
            })
            .collect();
        write
    }
}

/// The store rows of an edit and its change-log entry.
pub fn edit_write(zone: &LiveZone, edit: &Edit, change: Option<ZoneChange>) -> ZoneWrite {
    let mut write = ZoneWrite::new(zone.origin().clone());
    for item in &edit.changes {
        match item {
            RecordChange::Put(record) => write.puts.push(record.clone()),
            RecordChange::Delete { kind, name } => write.deletes.push((*kind, name.clone())),
        }
    }
    if change.is_some() {
        write.header = Some(zone.header.clone());
    }
    write.changes.extend(change);
    write.lease_puts.extend(edit.lease_puts.iter().cloned());
    write
        .lease_deletes
        .extend(edit.lease_deletes.iter().cloned());
    write
}

fn has_url(agent: &LiveAgent, url: &str) -> bool {
    agent.agent.endpoints.iter().any(|e| e.url == url)
}

fn new_agent(name: Name, endpoint: Endpoint, fields: AgentUpdate) -> Agent {
    let mut agent = Agent {
        name,
        description: String::new(),
        tags: Box::default(),
        capabilities: Box::default(),
        version: record::intern::empty(),
        ttl: None,
        timeout_ms: DEFAULT_TIMEOUT_MS,
        max_retries: DEFAULT_MAX_RETRIES,
        endpoints: vec![endpoint],
        input_schema: record::default_input_schema(),
        output_schema: None,
        metadata: None,
        health_checks: true,
    };
    apply_fields(&mut agent, fields);
    agent
}

fn apply_fields(agent: &mut Agent, fields: AgentUpdate) {
    let AgentUpdate {
        description,
        tags,
        capabilities,
        version,
        ttl,
        timeout_ms,
        max_retries,
        input_schema,
        output_schema,
        metadata,
    } = fields;
    if let Some(v) = description {
        agent.description = v;
    }
    if let Some(v) = tags {
        agent.tags = record::intern::intern_all(&v);
    }
    if let Some(v) = capabilities {
        agent.capabilities = record::intern::intern_all(&v);
    }
    if let Some(v) = version {
        agent.version = record::intern::intern(&v);
    }
    if let Some(v) = ttl {
        agent.ttl = (v > 0).then_some(v);
    }
    if let Some(v) = timeout_ms {
        agent.timeout_ms = v;
    }
    if let Some(v) = max_retries {
        agent.max_retries = v;
    }
    if let Some(v) = input_schema {
        agent.input_schema = v;
    }
    if let Some(v) = output_schema {
        agent.output_schema = Some(v);
    }
    if let Some(v) = metadata {
        agent.metadata = Some(v);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn file(serial: u32, extra: &str) -> ZoneSnapshot {
        let text = format!(
            r#"
            [zone]
            origin = "finance.acme"
            serial = {serial}
            servers = [{{ grpc = "http://10.0.1.1:7102" }}]
            [[agent]]
            name = "analyst"
            endpoints = [{{ url = "http://127.0.0.1:9101/mcp" }}]
            {extra}
            "#
        );
        crate::zone::file::parse(Path::new("z.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn name(text: &str) -> Name {
        Name::parse(text).unwrap()
    }

    fn registration(agent: &str, url: &str, lease_secs: u32) -> Registration {
        Registration {
            name: name(agent),
            endpoint: Endpoint::new(url, "t", 10, 1).unwrap(),
            lease_secs,
            fields: AgentUpdate {
                description: Some("live".into()),
                ..AgentUpdate::default()
            },
        }
    }

    #[test]
    fn a_registration_creates_renews_and_adds_endpoints() {
        let mut zone = LiveZone::from_file(&file(1, ""));
        let (done, edit) = zone
            .register(
                registration("planner.finance.acme", "http://a/mcp", 60),
                1_000,
            )
            .unwrap();
        assert!(done.changed);
        assert_eq!(done.lease.expires_unix_ms, 61_000);
        assert_eq!(edit.changes.len(), 1);
        assert_eq!(edit.lease_puts.len(), 1);
        // The same URL again: a renewal, no record change, a new lease.
        let (done, edit) = zone
            .register(
                registration("planner.finance.acme", "http://a/mcp", 60),
                5_000,
            )
            .unwrap();
        assert!(!done.changed);
        assert!(edit.changes.is_empty());
        assert_eq!(
            zone.lease(&name("planner.finance.acme"), "http://a/mcp")
                .unwrap()
                .expires_unix_ms,
            65_000
        );
        // A second URL: one more endpoint on the same agent.
        let (done, _) = zone
            .register(
                registration("planner.finance.acme", "http://b/mcp", 60),
                5_000,
            )
            .unwrap();
        assert_eq!(done.agent.endpoints.len(), 2);
        // A live endpoint on the file's agent; the file's own URL stays the file's.
        zone.register(
            registration("analyst.finance.acme", "http://c/mcp", 60),
            5_000,
        )
        .unwrap();
        let error = zone
            .register(
                registration("analyst.finance.acme", "http://127.0.0.1:9101/mcp", 60),
                5_000,
            )
            .unwrap_err();
        assert!(matches!(error, UpdateError::FromFile { .. }), "{error}");
        // Names outside the zone are refused.
        let error = zone
            .register(registration("planner.globex", "http://a/mcp", 60), 5_000)
            .unwrap_err();
        assert!(matches!(error, UpdateError::OutsideZone { .. }), "{error}");
    }

    #[test]
    fn expiry_removes_only_what_ran_out_and_the_agent_with_its_last_endpoint() {
        let mut zone = LiveZone::from_file(&file(1, ""));
        zone.register(registration("planner.finance.acme", "http://a/mcp", 10), 0)
            .unwrap();
        zone.register(registration("planner.finance.acme", "http://b/mcp", 100), 0)
            .unwrap();
        zone.register(registration("analyst.finance.acme", "http://c/mcp", 10), 0)
            .unwrap();
        assert_eq!(zone.next_expiry(), Some(10_000));
        let edit = zone.expire(10_000);
        assert_eq!(edit.lease_deletes.len(), 2);
        let planner = zone.agent(&name("planner.finance.acme")).unwrap();
        assert_eq!(planner.agent.endpoints.len(), 1);
        // The file's agent keeps its file endpoint.
        let analyst = zone.agent(&name("analyst.finance.acme")).unwrap();
        assert_eq!(analyst.agent.endpoints.len(), 1);
        assert!(analyst.live.is_empty());
        let edit = zone.expire(100_000);
        assert!(zone.agent(&name("planner.finance.acme")).is_none());
        assert!(edit.changes.iter().any(|c| matches!(
            c,
            RecordChange::Delete {
                kind: RecordKind::Agent,
                ..
            }
        )));
        assert_eq!(zone.next_expiry(), None);
    }

    #[test]
    fn deregister_refuses_the_files_records_and_removes_live_ones() {
        let mut zone = LiveZone::from_file(&file(1, ""));
        let error = zone
            .deregister(&name("analyst.finance.acme"), None)
            .unwrap_err();
        assert!(matches!(error, UpdateError::FromFile { url: None, .. }));
        zone.register(registration("planner.finance.acme", "http://a/mcp", 60), 0)
            .unwrap();
        let error = zone
            .deregister(&name("planner.finance.acme"), Some("http://nope/mcp"))
            .unwrap_err();
        assert!(matches!(error, UpdateError::NoSuchEndpoint { .. }));
        let (done, _) = zone
            .deregister(&name("planner.finance.acme"), None)
            .unwrap();
        assert!(done.agent_removed);
        assert!(
            zone.lease(&name("planner.finance.acme"), "http://a/mcp")
                .is_none()
        );
    }

    #[test]
    fn a_newer_file_replaces_the_files_records_and_keeps_live_endpoints() {
        let mut zone = LiveZone::from_file(&file(1, ""));
        zone.register(registration("planner.finance.acme", "http://a/mcp", 60), 0)
            .unwrap();
        zone.register(registration("analyst.finance.acme", "http://c/mcp", 60), 0)
            .unwrap();
        assert!(zone.reload(&file(1, "")).unwrap().is_none(), "not newer");
        let newer = file(
            2,
            r#"[[agent]]
            name = "auditor"
            endpoints = [{ url = "http://127.0.0.1:9105/mcp" }]"#,
        );
        let (edit, floor) = zone.reload(&newer).unwrap().unwrap();
        assert_eq!(floor, 2);
        assert!(edit.names.contains(&name("auditor.finance.acme")));
        assert!(zone.agent(&name("planner.finance.acme")).is_some());
        let analyst = zone.agent(&name("analyst.finance.acme")).unwrap();
        assert_eq!(analyst.agent.endpoints.len(), 2, "the live endpoint stays");
        assert!(
            zone.lease(&name("analyst.finance.acme"), "http://c/mcp")
                .is_some()
        );
    }

    #[test]
    fn a_sealed_change_applied_to_a_copy_gives_the_same_zone() {
        let mut primary = LiveZone::from_file(&file(1, ""));
        let mut secondary = primary.clone();
        let (_, edit) = primary
            .register(registration("planner.finance.acme", "http://a/mcp", 60), 0)
            .unwrap();
        let change = primary.seal(&edit, None).unwrap();
        assert_eq!((change.from_serial, change.serial), (1, 2));
        let (_, edit) = primary
            .deregister(&name("planner.finance.acme"), None)
            .unwrap();
        let second = primary.seal(&edit, None).unwrap();
        secondary.apply_change(&change);
        assert!(secondary.agent(&name("planner.finance.acme")).is_some());
        secondary.apply_change(&second);
        assert_eq!(secondary.header.serial, 3);
        let records = |zone: &LiveZone| zone.records().collect::<Vec<_>>();
        assert_eq!(records(&secondary), records(&primary));
        // A renewal seals nothing: no serial step for a lease.
        let (_, edit) = primary
            .register(registration("analyst.finance.acme", "http://c/mcp", 60), 0)
            .unwrap();
        assert!(primary.seal(&edit, None).is_some());
        let (_, edit) = primary
            .renew(&name("analyst.finance.acme"), "http://c/mcp", None, 10)
            .unwrap();
        assert!(primary.seal(&edit, None).is_none());
    }
}
