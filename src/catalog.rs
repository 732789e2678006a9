//! The zones one node serves, and the authoritative answer for any name inside them.
//!
//! A node may serve several zones, nested or not (`acme` and `finance.acme`); a name is
//! answered from the closest enclosing zone it serves, as hickory's catalog and every DNS
//! server do. The set of zones is an immutable map behind an [`ArcSwap`], so lookups never
//! take a lock and a zone update (a reload, later a registration) swaps in a new map.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::answer::Answer;
use crate::name::Name;
use crate::zone::ZoneSnapshot;

/// Why the catalog could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    #[error("this node is not authoritative for {name} (it serves {served})")]
    NotAuthoritative { name: Name, served: String },
    #[error("this node does not serve zone {zone} (it serves {served})")]
    NoSuchZone { zone: Name, served: String },
}

/// The zones of one node.
pub struct Catalog {
    zones: ArcSwap<HashMap<Name, Arc<ZoneSnapshot>>>,
    node_id: Arc<str>,
    /// Bumped on every change, so derived caches (the DNS door's encoded responses) know
    /// when what they hold is out of date.
    generation: AtomicU64,
}

impl Catalog {
    pub fn new(node_id: impl Into<Arc<str>>, zones: Vec<ZoneSnapshot>) -> Catalog {
        let map = zones
            .into_iter()
            .map(|zone| (zone.origin().clone(), Arc::new(zone)))
            .collect();
        Catalog {
            zones: ArcSwap::from_pointee(map),
            node_id: node_id.into(),
            generation: AtomicU64::new(0),
        }
    }

    pub fn node_id(&self) -> &Arc<str> {
        &self.node_id
    }

    /// Adds or replaces a zone.
    pub fn upsert(&self, zone: ZoneSnapshot) {
        let zone = Arc::new(zone);
        self.zones.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(zone.origin().clone(), Arc::clone(&zone));
            next
        });
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Stops serving a zone (a secondary past its expire time).
    pub fn remove(&self, origin: &Name) {
        self.zones.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.remove(origin);
            next
        });
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes on every zone change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The zone with this origin, if served here.
    pub fn zone(&self, origin: &Name) -> Result<Arc<ZoneSnapshot>, CatalogError> {
        self.zones
            .load()
            .get(origin)
            .cloned()
            .ok_or_else(|| CatalogError::NoSuchZone {
                zone: origin.clone(),
                served: self.served_list(),
            })
    }

    /// Origins of the zones served here, in name order.
    pub fn origins(&self) -> Vec<Name> {
        let mut origins: Vec<Name> = self.zones.load().keys().cloned().collect();
        origins.sort();
        origins
    }

    /// The closest enclosing zone of `name` served here.
    pub fn find_zone(&self, name: &Name) -> Option<Arc<ZoneSnapshot>> {
        self.find_zone_of_text(name.as_str())
    }

    /// The closest enclosing zone of any canonical dotted text (lowercase, no trailing dot,
    /// `""` for the root), such as a DNS query name that is not an agent name.
    pub fn find_zone_of_text(&self, name: &str) -> Option<Arc<ZoneSnapshot>> {
        let zones = self.zones.load();
        crate::name::label_suffixes(name)
            .find_map(|suffix| zones.get(suffix))
            .cloned()
    }

    /// The authoritative answer for `name` from the closest enclosing zone.
    pub fn lookup(&self, name: &Name) -> Result<Answer, CatalogError> {
        self.answer(name)
            .ok_or_else(|| CatalogError::NotAuthoritative {
                name: name.clone(),
                served: self.served_list(),
            })
    }

    /// [`Catalog::lookup`] without the error: `None` when no zone served here encloses
    /// `name`, for callers that go elsewhere then (the resolver) and would only drop the
    /// error's text.
    pub fn answer(&self, name: &Name) -> Option<Answer> {
        let zone = self.find_zone(name)?;
        let found = zone.lookup(name);
        Some(Answer {
            name: name.clone(),
            outcome: found.outcome,
            aliases: found.aliases,
            zone: zone.origin().clone(),
            zone_serial: zone.serial(),
            ttl: found.ttl,
            authoritative: true,
            served_by: Arc::clone(&self.node_id),
            stale: false,
            recursion_available: false,
            trace: Vec::new(),
        })
    }

    fn served_list(&self) -> String {
        let origins = self.origins();
        if origins.is_empty() {
            "no zones".to_string()
        } else {
            let names: Vec<String> = origins.iter().map(Name::to_string).collect();
            format!("zones {}", names.join(", "))
        }
    }
}
