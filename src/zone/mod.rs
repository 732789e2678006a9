//! An immutable zone snapshot and the authoritative lookup in it.
//!
//! A [`ZoneSnapshot`] is built from checked records ([`ZoneSnapshot::build`] enforces the
//! structural rules: names inside the origin, no duplicates, nothing occluded by a
//! delegation, no alias loops) and then only read, so readers share it through an `Arc`
//! without locks. A change does not build the zone again: [`ZoneSnapshot::apply`] derives
//! the next snapshot from the previous one, checking only the names the change touches, and
//! shares the rest through persistent maps (`imbl`), so a change costs what it changes
//! while publication stays the swap of one immutable snapshot for the next. [`ZoneSnapshot::lookup`] follows the
//! shape of RFC 1034 section 4.3.2 for our record kinds: a delegation cut at or above the name
//! gives a referral, an exact match gives the agent or follows the alias, and a miss is NODATA
//! when names exist below (an empty non-terminal) and NXDOMAIN otherwise.
//!
//! Parsing zone files lives in [`file`]; this module knows nothing of TOML.

pub mod dump;
pub mod file;
pub mod spanned;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::answer::Outcome;
use crate::name::Name;
use crate::record::limits::ALIAS_CHAIN_MAX;
use crate::record::{
    self, Agent, Alias, Delegation, Endpoint, LiveRecord, RecordChange, RecordKind, ServerAddress,
    ZoneHeader,
};

/// Which record of the input a structural error is about (index into its list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemRef {
    Agent(usize),
    Alias(usize),
    Delegation(usize),
}

/// A rule about how records fit together in a zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ZoneError {
    #[error("{name} is not inside zone {origin}")]
    OutsideOrigin { name: Name, origin: Name },
    #[error("delegated zone {zone} must be strictly below the origin {origin}")]
    DelegationNotBelowOrigin { zone: Name, origin: Name },
    #[error(
        "{name} is occluded by the delegation of {delegation}: data at or below a delegated zone belongs to the child zone"
    )]
    Occluded { name: Name, delegation: Name },
    #[error("duplicate name {name}: already defined as {first_kind}")]
    Duplicate {
        name: Name,
        first_kind: &'static str,
    },
    #[error("alias {name} cannot be the zone's origin: the origin holds the zone's own data")]
    AliasAtOrigin { name: Name },
    #[error("alias loop: {}", chain.iter().map(Name::to_string).collect::<Vec<_>>().join(" -> "))]
    AliasLoop { chain: Vec<Name> },
    #[error(
        "alias chain from {name} follows more than {ALIAS_CHAIN_MAX} aliases (limit {ALIAS_CHAIN_MAX})"
    )]
    AliasChainTooLong { name: Name },
    #[error("a change cannot move zone {from} to another origin ({to})")]
    OriginChanged { from: Name, to: Name },
}

/// A structural error and the record it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureError {
    pub item: ItemRef,
    pub error: ZoneError,
}

/// The records of a zone before they are checked together.
#[derive(Debug, Clone, Default)]
pub struct ZoneRecords {
    pub agents: Vec<Arc<Agent>>,
    pub aliases: Vec<Arc<Alias>>,
    pub delegations: Vec<Arc<Delegation>>,
}

#[derive(Debug, Clone)]
enum Entry {
    Agent(Arc<Agent>),
    Alias(Arc<Alias>),
}

/// The result of an authoritative lookup in one zone.
#[derive(Debug, Clone)]
pub struct ZoneLookup {
    pub outcome: Outcome,
    pub aliases: Vec<Arc<Alias>>,
    pub ttl: u32,
}

/// How a snapshot differs from the one its zone served before it: that snapshot's serial and
/// the names whose records were put or deleted in between (agents, aliases and delegated
/// zones, each once, in name order). Structures derived from a snapshot, such as the search
/// index, follow a change through it instead of being built again from every record.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub parent_serial: u32,
    pub changed: Arc<[Name]>,
}

/// The zone's agent names in order: what paged listings walk. A persistent ordered set, so
/// the snapshot after a change shares all but the changed path with the one before it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentNames(imbl::OrdSet<Name>);

impl AgentNames {
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Name> + '_ {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The last name in order.
    pub fn last(&self) -> Option<&Name> {
        self.0.get_max()
    }
}

impl<'a> IntoIterator for &'a AgentNames {
    type Item = &'a Name;
    type IntoIter = imbl::ordset::Iter<'a, Name, imbl::shared_ptr::DefaultSharedPtr>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The hasher of the zones' maps: foldhash, seeded at random per process, several times
/// cheaper than std's SipHash on names, which a lookup hashes once per label it tries (at
/// start-up, a million-agent zone's names were hashed for over 10% of the time). The keys are
/// zone data (a zone file, an authenticated update), never chosen by a query.
pub type NameHasher = foldhash::fast::RandomState;
/// A persistent map keyed by name, with [`NameHasher`].
pub type NameMap<V> = imbl::GenericHashMap<Name, V, NameHasher, imbl::shared_ptr::DefaultSharedPtr>;

/// One zone's data at one serial. Immutable; share it through `Arc`.
///
/// Its maps are persistent (`imbl`): [`ZoneSnapshot::apply`] derives the next snapshot from
/// this one in O(changed records · log N), sharing everything the change did not touch, so a
/// registration into a zone of a million agents costs what it changes, not what the zone
/// holds. Cloning a snapshot is O(1).
#[derive(Debug, Clone)]
pub struct ZoneSnapshot {
    header: ZoneHeader,
    /// Set by the authority when it publishes a change to a zone it served already.
    lineage: Option<Lineage>,
    entries: NameMap<Entry>,
    delegations: NameMap<Arc<Delegation>>,
    /// For every name strictly below the origin with records below it (agents, aliases,
    /// delegated zones): how many. A name here without an entry of its own is an empty
    /// non-terminal (RFC 8020); counts, not a set, so a delete knows when the last name
    /// below is gone.
    below: NameMap<u32>,
    /// Agent names in order, for paged listings.
    agent_order: AgentNames,
    /// Delegated zones in order.
    delegation_order: imbl::OrdSet<Name>,
    alias_count: usize,
}

/// The records one name holds, as a derivation collects them.
#[derive(Debug, Clone, Default)]
struct Slot {
    agent: Option<Arc<Agent>>,
    alias: Option<Arc<Alias>>,
    delegation: Option<Arc<Delegation>>,
}

impl ZoneSnapshot {
    /// Checks how the records fit together and builds the snapshot, or returns every
    /// structural error found.
    pub fn build(
        header: ZoneHeader,
        records: ZoneRecords,
    ) -> Result<ZoneSnapshot, Vec<StructureError>> {
        let origin = header.origin.clone();
        let mut errors = Vec::new();
        let mut entries: NameMap<Entry> = NameMap::default();
        let mut delegations: NameMap<Arc<Delegation>> = NameMap::default();
        let mut delegation_index: HashMap<Name, usize> = HashMap::new();
        let mut kinds: HashMap<Name, &'static str> = HashMap::new();

        for (index, delegation) in records.delegations.into_iter().enumerate() {
            let item = ItemRef::Delegation(index);
            if !delegation.zone.is_strictly_below(&origin) {
                errors.push(StructureError {
                    item,
                    error: ZoneError::DelegationNotBelowOrigin {
                        zone: delegation.zone.clone(),
                        origin: origin.clone(),
                    },
                });
                continue;
            }
            if let Some(first_kind) = kinds.get(&delegation.zone) {
                errors.push(StructureError {
                    item,
                    error: ZoneError::Duplicate {
                        name: delegation.zone.clone(),
                        first_kind,
                    },
                });
                continue;
            }
            kinds.insert(delegation.zone.clone(), "a delegation");
            delegation_index.insert(delegation.zone.clone(), index);
            delegations.insert(delegation.zone.clone(), delegation);
        }
        // A delegation below another delegation is occluded by it.
        let mut occluded: Vec<(usize, Name, Name)> = delegations
            .keys()
            .filter_map(|zone| {
                let cut = find_cut(&delegations, zone.as_str(), &origin, true)?;
                Some((delegation_index[zone], zone.clone(), cut.zone.clone()))
            })
            .collect();
        occluded.sort_by_key(|(index, _, _)| *index);
        for (index, zone, cut) in occluded {
            delegations.remove(&zone);
            errors.push(StructureError {
                item: ItemRef::Delegation(index),
                error: ZoneError::Occluded {
                    name: zone,
                    delegation: cut,
                },
            });
        }

        let mut add = |name: &Name,
                       item: ItemRef,
                       kind: &'static str,
                       entry: Entry,
                       errors: &mut Vec<StructureError>| {
            if !name.is_at_or_below(&origin) {
                errors.push(StructureError {
                    item,
                    error: ZoneError::OutsideOrigin {
                        name: name.clone(),
                        origin: origin.clone(),
                    },
                });
                return;
            }
            if let Some(cut) = find_cut(&delegations, name.as_str(), &origin, false) {
                errors.push(StructureError {
                    item,
                    error: ZoneError::Occluded {
                        name: name.clone(),
                        delegation: cut.zone.clone(),
                    },
                });
                return;
            }
            if let Some(first_kind) = kinds.get(name) {
                errors.push(StructureError {
                    item,
                    error: ZoneError::Duplicate {
                        name: name.clone(),
                        first_kind,
                    },
                });
                return;
            }
            kinds.insert(name.clone(), kind);
            entries.insert(name.clone(), entry);
        };

        let mut agent_order = Vec::with_capacity(records.agents.len());
        for (index, agent) in records.agents.into_iter().enumerate() {
            let name = agent.name.clone();
            let before = errors.len();
            add(
                &name,
                ItemRef::Agent(index),
                "an agent",
                Entry::Agent(agent),
                &mut errors,
            );
            if errors.len() == before {
                agent_order.push(name);
            }
        }
        let mut alias_count = 0;
        let mut alias_items = Vec::new();
        for (index, alias) in records.aliases.into_iter().enumerate() {
            let item = ItemRef::Alias(index);
            if alias.name == origin {
                errors.push(StructureError {
                    item,
                    error: ZoneError::AliasAtOrigin {
                        name: alias.name.clone(),
                    },
                });
                continue;
            }
            let name = alias.name.clone();
            let before = errors.len();
            add(&name, item, "an alias", Entry::Alias(alias), &mut errors);
            if errors.len() == before {
                alias_count += 1;
                alias_items.push((index, name));
            }
        }
        errors.extend(check_alias_chains(&entries, &alias_items));

        if !errors.is_empty() {
            return Err(errors);
        }

        agent_order.sort_unstable();
        let delegation_order: imbl::OrdSet<Name> = delegations.keys().cloned().collect();
        let mut below: NameMap<u32> = NameMap::default();
        for name in entries.keys().chain(delegations.keys()) {
            count_below(&mut below, name, &origin, 1);
        }

        Ok(ZoneSnapshot {
            header,
            lineage: None,
            entries,
            delegations,
            below,
            agent_order: AgentNames(agent_order.into_iter().collect()),
            delegation_order,
            alias_count,
        })
    }

    /// The snapshot after `changes` (in order) with `header`, derived from this one in
    /// O(changed records · log N): only the names the changes touch are checked against the
    /// structural rules [`ZoneSnapshot::build`] enforces (inside the origin, one kind of
    /// record per name, nothing at or below a delegation, alias chains without loops and
    /// within the limit), and the result holds exactly what `build` would make of the same
    /// records. A change that breaks a rule is refused with every broken rule found.
    ///
    /// Alias chains are checked again, all of them, only when the change puts an alias: an
    /// agent or delegation can end a chain sooner, never lengthen or close one.
    pub fn apply<'c>(
        &self,
        header: ZoneHeader,
        changes: impl IntoIterator<Item = &'c RecordChange>,
    ) -> Result<ZoneSnapshot, Vec<ZoneError>> {
        let origin = self.origin().clone();
        if header.origin != origin {
            return Err(vec![ZoneError::OriginChanged {
                from: origin,
                to: header.origin,
            }]);
        }
        // Each touched name's records after the changes, applied in order.
        let mut slots: BTreeMap<Name, Slot> = BTreeMap::new();
        for change in changes {
            let name = change.name();
            let slot = slots.entry(name.clone()).or_insert_with(|| self.slot(name));
            match change {
                RecordChange::Put(LiveRecord::Agent(live)) => {
                    slot.agent = Some(Arc::clone(&live.agent));
                }
                RecordChange::Put(LiveRecord::Alias(alias)) => slot.alias = Some(Arc::clone(alias)),
                RecordChange::Put(LiveRecord::Delegation(delegation)) => {
                    slot.delegation = Some(Arc::clone(delegation));
                }
                RecordChange::Delete { kind, .. } => match kind {
                    RecordKind::Agent => slot.agent = None,
                    RecordKind::Alias => slot.alias = None,
                    RecordKind::Delegation => slot.delegation = None,
                },
            }
        }

        let mut next = self.clone();
        next.header = header;
        next.lineage = None;
        // Out with what the touched names held before...
        for name in slots.keys() {
            if let Some(entry) = next.entries.remove(name) {
                match entry {
                    Entry::Agent(_) => {
                        next.agent_order.0.remove(name);
                    }
                    Entry::Alias(_) => next.alias_count -= 1,
                }
                count_below(&mut next.below, name, &origin, -1);
            }
            if next.delegations.remove(name).is_some() {
                next.delegation_order.remove(name);
                count_below(&mut next.below, name, &origin, -1);
            }
        }
        // ...in with what they hold now, each checked on its own.
        let mut errors = Vec::new();
        let mut puts_alias = false;
        for (name, slot) in &slots {
            if let Some(delegation) = &slot.delegation {
                if !name.is_strictly_below(&origin) {
                    errors.push(ZoneError::DelegationNotBelowOrigin {
                        zone: name.clone(),
                        origin: origin.clone(),
                    });
                    continue;
                }
                next.delegations
                    .insert(name.clone(), Arc::clone(delegation));
                next.delegation_order.insert(name.clone());
                count_below(&mut next.below, name, &origin, 1);
            }
            let entry = match (&slot.agent, &slot.alias) {
                (None, None) => continue,
                (Some(_), Some(_)) => {
                    errors.push(ZoneError::Duplicate {
                        name: name.clone(),
                        first_kind: "an agent",
                    });
                    continue;
                }
                (Some(agent), None) => Entry::Agent(Arc::clone(agent)),
                (None, Some(alias)) => {
                    if *name == origin {
                        errors.push(ZoneError::AliasAtOrigin { name: name.clone() });
                        continue;
                    }
                    puts_alias = true;
                    Entry::Alias(Arc::clone(alias))
                }
            };
            if !name.is_at_or_below(&origin) {
                errors.push(ZoneError::OutsideOrigin {
                    name: name.clone(),
                    origin: origin.clone(),
                });
                continue;
            }
            if slot.delegation.is_some() {
                // The entry sits at the delegation's own name: the child zone's data.
                errors.push(ZoneError::Occluded {
                    name: name.clone(),
                    delegation: name.clone(),
                });
                continue;
            }
            match &entry {
                Entry::Agent(_) => {
                    next.agent_order.0.insert(name.clone());
                }
                Entry::Alias(_) => next.alias_count += 1,
            }
            next.entries.insert(name.clone(), entry);
            count_below(&mut next.below, name, &origin, 1);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Delegations against the zone as it now is: nothing at or below a delegated zone.
        for (name, slot) in &slots {
            if slot.delegation.is_some() {
                if let Some(cut) = find_cut(&next.delegations, name.as_str(), &origin, true) {
                    errors.push(ZoneError::Occluded {
                        name: name.clone(),
                        delegation: cut.zone.clone(),
                    });
                }
                if next.below.contains_key(name) {
                    errors.push(ZoneError::Occluded {
                        name: next.first_below(name),
                        delegation: name.clone(),
                    });
                }
            } else if (slot.agent.is_some() || slot.alias.is_some())
                && let Some(cut) = find_cut(&next.delegations, name.as_str(), &origin, false)
            {
                errors.push(ZoneError::Occluded {
                    name: name.clone(),
                    delegation: cut.zone.clone(),
                });
            }
        }
        if puts_alias {
            let mut aliases: Vec<Name> = next
                .entries
                .iter()
                .filter(|(_, entry)| matches!(entry, Entry::Alias(_)))
                .map(|(name, _)| name.clone())
                .collect();
            aliases.sort_unstable();
            let items: Vec<(usize, Name)> = aliases.into_iter().enumerate().collect();
            errors.extend(
                check_alias_chains(&next.entries, &items)
                    .into_iter()
                    .map(|e| e.error),
            );
        }
        if errors.is_empty() {
            Ok(next)
        } else {
            Err(errors)
        }
    }

    /// The records `name` holds in this snapshot.
    fn slot(&self, name: &Name) -> Slot {
        let mut slot = Slot {
            delegation: self.delegations.get(name).cloned(),
            ..Slot::default()
        };
        match self.entries.get(name) {
            Some(Entry::Agent(agent)) => slot.agent = Some(Arc::clone(agent)),
            Some(Entry::Alias(alias)) => slot.alias = Some(Arc::clone(alias)),
            None => {}
        }
        slot
    }

    /// The first name (in order) with a record strictly below `zone`: what a refused
    /// delegation names. A scan of the zone, on the error path only.
    fn first_below(&self, zone: &Name) -> Name {
        self.entries
            .keys()
            .chain(self.delegations.keys())
            .filter(|name| name.is_strictly_below(zone))
            .min()
            .cloned()
            .unwrap_or_else(|| zone.clone())
    }

    pub fn header(&self) -> &ZoneHeader {
        &self.header
    }

    /// What changed since the zone's previous snapshot, when the authority knows.
    pub fn lineage(&self) -> Option<&Lineage> {
        self.lineage.as_ref()
    }

    /// This snapshot, marked as following the one at `lineage.parent_serial`.
    pub fn with_lineage(mut self, lineage: Lineage) -> ZoneSnapshot {
        self.lineage = Some(lineage);
        self
    }

    pub fn origin(&self) -> &Name {
        &self.header.origin
    }

    pub fn serial(&self) -> u32 {
        self.header.serial
    }

    pub fn agent_count(&self) -> usize {
        self.agent_order.0.len()
    }

    pub fn alias_count(&self) -> usize {
        self.alias_count
    }

    /// The zone's own agents in name order (not those of delegated children).
    pub fn agent_names(&self) -> &AgentNames {
        &self.agent_order
    }

    pub fn agent(&self, name: &str) -> Option<&Arc<Agent>> {
        match self.entries.get(name) {
            Some(Entry::Agent(agent)) => Some(agent),
            _ => None,
        }
    }

    /// The alias at exactly this canonical name, if any.
    pub fn alias(&self, name: &str) -> Option<&Arc<Alias>> {
        match self.entries.get(name) {
            Some(Entry::Alias(alias)) => Some(alias),
            _ => None,
        }
    }

    /// True when the name has no record but records exist below it (RFC 8020).
    pub fn is_empty_non_terminal(&self, name: &str) -> bool {
        self.below.contains_key(name) && !self.entries.contains_key(name)
    }

    /// The delegation at or above `name` (canonical text at or below the origin, which may
    /// hold labels no agent name can, such as `_mcp._tcp.x.eu.finance.acme`).
    pub fn delegation_covering(&self, name: &str) -> Option<&Arc<Delegation>> {
        find_cut(&self.delegations, name, self.origin(), false)
    }

    /// Delegations in zone-name order.
    pub fn delegations(&self) -> impl Iterator<Item = &Arc<Delegation>> {
        self.delegation_order
            .iter()
            .filter_map(|zone| self.delegations.get(zone))
    }

    /// Aliases in name order.
    pub fn aliases(&self) -> Vec<&Arc<Alias>> {
        let mut aliases: Vec<&Arc<Alias>> = self
            .entries
            .values()
            .filter_map(|entry| match entry {
                Entry::Alias(alias) => Some(alias),
                Entry::Agent(_) => None,
            })
            .collect();
        aliases.sort_by(|a, b| a.name.cmp(&b.name));
        aliases
    }

    /// Agents whose names sort after `after` (or from the start), at most `limit` of them.
    pub fn agents_page(&self, after: Option<&str>, limit: usize) -> Vec<Name> {
        use std::ops::Bound;
        let start = match after {
            None => Bound::Unbounded,
            Some(after) => Bound::Excluded(after),
        };
        self.agent_order
            .0
            .range::<_, str>((start, Bound::Unbounded))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The zone's records, shared: agents and aliases in name order, then delegations.
    pub fn records(&self) -> ZoneRecords {
        let mut aliases: Vec<Arc<Alias>> = self.aliases().into_iter().cloned().collect();
        aliases.sort_by(|a, b| a.name.cmp(&b.name));
        ZoneRecords {
            agents: self
                .agent_order
                .0
                .iter()
                .filter_map(|name| self.agent(name.as_str()).cloned())
                .collect(),
            aliases,
            delegations: self
                .delegation_order
                .iter()
                .filter_map(|zone| self.delegations.get(zone).cloned())
                .collect(),
        }
    }

    /// The same zone with every server address rewritten (the demo assigns addresses).
    pub fn with_servers(&self, rewrite: impl Fn(&ServerAddress) -> ServerAddress) -> ZoneSnapshot {
        let mut header = self.header.clone();
        header.servers = header.servers.iter().map(&rewrite).collect();
        let delegations = self
            .delegations
            .iter()
            .map(|(zone, delegation)| {
                let mut delegation = Delegation::clone(delegation);
                delegation.servers = delegation.servers.iter().map(&rewrite).collect();
                (zone.clone(), Arc::new(delegation))
            })
            .collect();
        ZoneSnapshot {
            header,
            lineage: None,
            entries: self.entries.clone(),
            delegations,
            below: self.below.clone(),
            agent_order: self.agent_order.clone(),
            delegation_order: self.delegation_order.clone(),
            alias_count: self.alias_count,
        }
    }

    /// The same zone with every agent endpoint passed through `rewrite` (the demo moves
    /// endpoints to the ports of the agents it runs).
    pub fn with_endpoints(&self, rewrite: impl Fn(&Name, &Endpoint) -> Endpoint) -> ZoneSnapshot {
        let entries = self
            .entries
            .iter()
            .map(|(name, entry)| {
                let entry = match entry {
                    Entry::Agent(agent) => {
                        let mut agent = Agent::clone(agent);
                        agent.endpoints = agent
                            .endpoints
                            .iter()
                            .map(|endpoint| rewrite(&agent.name, endpoint))
                            .collect();
                        Entry::Agent(Arc::new(agent))
                    }
                    Entry::Alias(alias) => Entry::Alias(Arc::clone(alias)),
                };
                (name.clone(), entry)
            })
            .collect();
        ZoneSnapshot {
            header: self.header.clone(),
            lineage: None,
            entries,
            delegations: self.delegations.clone(),
            below: self.below.clone(),
            agent_order: self.agent_order.clone(),
            delegation_order: self.delegation_order.clone(),
            alias_count: self.alias_count,
        }
    }

    /// Authoritative lookup of `name`, which must be at or below this zone's origin.
    pub fn lookup(&self, name: &Name) -> ZoneLookup {
        debug_assert!(name.is_at_or_below(self.origin()));
        let mut aliases: Vec<Arc<Alias>> = Vec::new();
        let mut current = name.clone();
        let mut ttl = u32::MAX;
        loop {
            if let Some(cut) = self.delegation_covering(current.as_str()) {
                let delegation = Arc::clone(cut);
                ttl = ttl.min(delegation.ttl.unwrap_or(self.header.ttl));
                return ZoneLookup {
                    outcome: Outcome::Referral(delegation),
                    aliases,
                    ttl,
                };
            }
            match self.entries.get(&current) {
                Some(Entry::Agent(agent)) => {
                    ttl = ttl.min(agent.ttl.unwrap_or(self.header.ttl));
                    return ZoneLookup {
                        // Down endpoints leave answers, healthy ones come first (§9.1).
                        outcome: Outcome::Answer(record::as_answered(agent)),
                        aliases,
                        ttl,
                    };
                }
                Some(Entry::Alias(alias)) => {
                    ttl = ttl.min(alias.ttl.unwrap_or(self.header.ttl));
                    aliases.push(Arc::clone(alias));
                    let target = alias.target.clone();
                    // Chains were checked at build time; this bound keeps a lookup finite
                    // whatever the data.
                    if aliases.len() > ALIAS_CHAIN_MAX || !target.is_at_or_below(self.origin()) {
                        return ZoneLookup {
                            outcome: Outcome::Alias { target },
                            aliases,
                            ttl,
                        };
                    }
                    current = target;
                }
                None => {
                    // No entry here: any name counted below makes this an empty non-terminal.
                    let outcome = if self.below.contains_key(&current) || current == *self.origin()
                    {
                        Outcome::NoData
                    } else {
                        Outcome::NxDomain
                    };
                    return ZoneLookup {
                        outcome,
                        aliases,
                        ttl: ttl.min(self.header.negative_cache_ttl()),
                    };
                }
            }
        }
    }
}

/// Adds `by` to the count of names below each ancestor of `name` strictly below `origin`,
/// forgetting an ancestor whose count reaches zero.
fn count_below(below: &mut NameMap<u32>, name: &Name, origin: &Name, by: i32) {
    let origin_len = origin.as_str().len();
    for ancestor in name.self_and_ancestors().skip(1) {
        if ancestor.len() <= origin_len {
            break;
        }
        match below.get_mut(ancestor) {
            Some(count) => {
                *count = count.saturating_add_signed(by);
                if *count == 0 {
                    below.remove(ancestor);
                }
            }
            None if by > 0 => {
                below.insert(name.ancestor(ancestor), by.unsigned_abs());
            }
            None => {}
        }
    }
}

/// The delegation at or above `name` (strictly above when `strict`), strictly below
/// `origin`, if any. `name` is canonical text, which may hold labels no agent name can.
fn find_cut<'d>(
    delegations: &'d NameMap<Arc<Delegation>>,
    name: &str,
    origin: &Name,
    strict: bool,
) -> Option<&'d Arc<Delegation>> {
    if delegations.is_empty() {
        return None;
    }
    let origin_len = origin.as_str().len();
    crate::name::label_suffixes(name)
        .skip(usize::from(strict))
        .take_while(|ancestor| ancestor.len() > origin_len)
        .find_map(|ancestor| delegations.get(ancestor))
}

/// Reports each in-zone alias loop once (at its first alias in input order) and every chain
/// longer than the limit.
fn check_alias_chains(entries: &NameMap<Entry>, aliases: &[(usize, Name)]) -> Vec<StructureError> {
    let position: HashMap<&Name, usize> = aliases.iter().map(|(i, n)| (n, *i)).collect();
    let mut errors = Vec::new();
    for (index, start) in aliases {
        // Follow the chain far enough to close any loop among the zone's aliases before
        // judging its length, so a long loop is reported as a loop.
        let mut chain = vec![start.clone()];
        let mut current = start.clone();
        let mut ended_in_loop = false;
        while let Some(Entry::Alias(alias)) = entries.get(&current) {
            let target = alias.target.clone();
            if let Some(at) = chain.iter().position(|n| *n == target) {
                ended_in_loop = true;
                let cycle = &chain[at..];
                let first = cycle.iter().filter_map(|n| position.get(n)).min();
                if at == 0 && first == Some(index) {
                    let mut shown = cycle.to_vec();
                    shown.push(target);
                    errors.push(StructureError {
                        item: ItemRef::Alias(*index),
                        error: ZoneError::AliasLoop { chain: shown },
                    });
                }
                break;
            }
            chain.push(target.clone());
            if chain.len() > aliases.len() + 1 {
                break;
            }
            current = target;
        }
        // `chain` holds the start and every target: one more than the aliases followed.
        if !ended_in_loop && chain.len() - 1 > ALIAS_CHAIN_MAX {
            errors.push(StructureError {
                item: ItemRef::Alias(*index),
                error: ZoneError::AliasChainTooLong {
                    name: start.clone(),
                },
            });
        }
    }
    errors
}
