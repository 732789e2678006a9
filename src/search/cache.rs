//! [`ZoneIndexes`]: one search index per zone and serial.
//!
//! Indexing a large zone takes a while (about half a second for 100,000 agents), and a new
//! serial makes a new snapshot, so a node keeps the index of each zone's current serial and
//! builds the next one when asked with a newer snapshot. Callers that ask for the same serial
//! at the same time share one build: each (zone, serial) has one slot whose `OnceLock` the
//! first caller fills while the others wait for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::ZoneIndex;
use crate::name::Name;
use crate::record::serial_newer;
use crate::zone::ZoneSnapshot;

struct Slot {
    serial: u32,
    index: OnceLock<Arc<ZoneIndex>>,
}

/// The search indexes of a node's zones, built on demand, once per serial.
#[derive(Default)]
pub struct ZoneIndexes {
    /// A std `Mutex`: it is held only to find or replace a slot, never while building and
    /// never across an `.await`.
    zones: Mutex<HashMap<Name, Arc<Slot>>>,
}

impl std::fmt::Debug for ZoneIndexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_map()
            .entries(zones.iter().map(|(origin, slot)| (origin, slot.serial)))
            .finish()
    }
}

impl ZoneIndexes {
    pub fn new() -> ZoneIndexes {
        ZoneIndexes::default()
    }

    /// The index of `snapshot`: the cached one when it is of the same serial, else a new one,
    /// built on the caller's thread. A snapshot older than the cached index (a reader that
    /// took it just before an update) gets an index of its own, which replaces nothing.
    pub fn get(&self, snapshot: &ZoneSnapshot) -> Arc<ZoneIndex> {
        let origin = snapshot.origin();
        let serial = snapshot.serial();
        let slot = {
            let mut zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
            match zones.get(origin) {
                Some(slot) if slot.serial == serial => Arc::clone(slot),
                Some(slot) if serial_newer(slot.serial, serial) => {
                    drop(zones);
                    return Arc::new(ZoneIndex::build(snapshot));
                }
                _ => {
                    let slot = Arc::new(Slot {
                        serial,
                        index: OnceLock::new(),
                    });
                    zones.insert(origin.clone(), Arc::clone(&slot));
                    slot
                }
            }
        };
        // A build that panics leaves the slot empty; the next caller builds again.
        Arc::clone(
            slot.index
                .get_or_init(|| Arc::new(ZoneIndex::build(snapshot))),
        )
    }

    /// The index of `snapshot` when it is already built (no waiting, no building): lets an
    /// async caller search at once, and hand a build to a blocking thread otherwise.
    pub fn built(&self, snapshot: &ZoneSnapshot) -> Option<Arc<ZoneIndex>> {
        let zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = zones.get(snapshot.origin())?;
        if slot.serial != snapshot.serial() {
            return None;
        }
        slot.index.get().cloned()
    }

    /// Drops the index of a zone this node no longer serves. True when there was one.
    pub fn forget(&self, origin: &Name) -> bool {
        let mut zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        zones.remove(origin).is_some()
    }

    /// Zones with an index (built or being built).
    pub fn len(&self) -> usize {
        self.zones
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::*;
    use crate::search::fixtures::{agent, zone};

    fn snapshot(serial: u32, agents: usize) -> ZoneSnapshot {
        let agents = (0..agents)
            .map(|i| agent(&format!("a{i}.acme"), "an agent", &[], &[]))
            .collect();
        zone("acme", serial, agents)
    }

    #[test]
    fn builds_once_per_serial_and_again_for_a_newer_one() {
        let indexes = ZoneIndexes::new();
        let first = snapshot(1, 2);
        let a = indexes.get(&first);
        let b = indexes.get(&first);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.len(), 2);

        let second = snapshot(2, 3);
        let c = indexes.get(&second);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!((c.serial(), c.len()), (2, 3));
        assert!(Arc::ptr_eq(&c, &indexes.get(&second)));

        // An older snapshot gets its own index and leaves the newer one cached.
        let old = indexes.get(&first);
        assert_eq!(old.serial(), 1);
        assert!(Arc::ptr_eq(&c, &indexes.get(&second)));
        assert_eq!(indexes.len(), 1);
    }

    #[test]
    fn built_answers_only_with_an_index_of_the_same_serial_without_building() {
        let indexes = ZoneIndexes::new();
        let first = snapshot(1, 2);
        assert!(
            indexes.built(&first).is_none(),
            "nothing is built by asking"
        );
        assert!(indexes.is_empty());
        let a = indexes.get(&first);
        assert!(Arc::ptr_eq(&a, &indexes.built(&first).unwrap()));
        assert!(
            indexes.built(&snapshot(2, 2)).is_none(),
            "a newer serial is not built yet"
        );
    }

    #[test]
    fn forget_drops_the_zone() {
        let indexes = ZoneIndexes::new();
        let first = snapshot(1, 1);
        let a = indexes.get(&first);
        assert!(indexes.forget(first.origin()));
        assert!(!indexes.forget(first.origin()));
        assert!(indexes.is_empty());
        assert!(!Arc::ptr_eq(&a, &indexes.get(&first)));
    }

    #[test]
    fn concurrent_callers_share_one_build() {
        let indexes = ZoneIndexes::new();
        let zone = Arc::new(snapshot(5, 2_000));
        let barrier = Barrier::new(4);
        let built: Vec<Arc<ZoneIndex>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        indexes.get(&zone)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .collect()
        });
        assert!(built.iter().all(|index| Arc::ptr_eq(index, &built[0])));
    }
}
