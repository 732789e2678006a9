//! [`ZoneIndexes`]: one search index per zone and serial, following the zone's changes.
//!
//! A new serial makes a new snapshot, so a node keeps the index of each zone's current
//! serial and makes the next one when asked with a newer snapshot:
//!
//! - when the snapshot's lineage says it follows the cached serial directly, the next index
//!   is **derived** from the cached one and the names the change touched
//!   ([`ZoneIndex::follow_snapshot`]): a copy of the small overlay plus the changed
//!   documents' analysis, O(overlay + changed), on the caller's thread;
//! - otherwise (no lineage: a reload, a transfer, the first search; a gap: serials published
//!   while nobody searched; a change list past the overlay's bound) it is **built** in full,
//!   as before (about half a second for 100,000 agents; async callers do that on a blocking
//!   thread, see `federate`).
//!
//! Callers that ask for the same serial at the same time share one derivation or build: each
//! (zone, serial) has one slot whose `OnceLock` the first caller fills while the others wait.
//! A derivation whose previous serial's slot is still being filled waits for it (a
//! derivation, or a build in full) rather than building in full itself. So that nobody waits
//! forever, a slot is always filled, marked failed when making it panicked (a bug):
//! callers of that serial then build their own index, uncached.
//!
//! Each derivation adds to the overlay. Once an index's overlay passes
//! [`ZoneIndex::overlay_bound`], a background thread compacts it ([`ZoneIndex::compacted`]:
//! a new base from the index's own agents) while searches go on with the overlaid index; when
//! the compaction is done, the changes published meanwhile are applied to it again
//! ([`ZoneIndex::rebase`]) and it replaces the zone's cached index (or, if a derivation is
//! under way at that moment, becomes the basis of the next one). No search ever waits for a
//! compaction, and there is at most one per zone at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::ZoneIndex;
use crate::name::Name;
use crate::record::serial_newer;
use crate::zone::ZoneSnapshot;

/// Where the index of a slot comes from, taken by whichever caller fills the slot.
struct Basis {
    /// The slot of the serial the snapshot follows (filled, or being filled).
    previous: Arc<Slot>,
    /// A finished compaction (and the index it compacted), to bring the previous index up to
    /// first.
    compaction: Option<(Arc<ZoneIndex>, Box<ZoneIndex>)>,
}

/// What filling a slot gave.
enum Made {
    Index(Arc<ZoneIndex>),
    /// Making it panicked.
    Failed,
}

impl Made {
    fn index(&self) -> Option<&Arc<ZoneIndex>> {
        match self {
            Made::Index(index) => Some(index),
            Made::Failed => None,
        }
    }
}

struct Slot {
    serial: u32,
    index: OnceLock<Made>,
    basis: Mutex<Option<Basis>>,
}

impl Slot {
    fn new(serial: u32, basis: Option<Basis>) -> Slot {
        Slot {
            serial,
            index: OnceLock::new(),
            basis: Mutex::new(basis),
        }
    }

    fn filled(index: ZoneIndex) -> Slot {
        let slot = Slot::new(index.serial(), None);
        let _ = slot.index.set(Made::Index(Arc::new(index)));
        slot
    }

    /// The slot's index, once made.
    fn made(&self) -> Option<&Arc<ZoneIndex>> {
        self.index.get().and_then(Made::index)
    }
}

/// A zone's background compaction.
enum Compaction {
    Idle,
    Running,
    /// Finished while the zone's slot was being filled: the next derivation starts from it.
    Done {
        source: Arc<ZoneIndex>,
        compacted: Box<ZoneIndex>,
    },
}

struct Zone {
    slot: Arc<Slot>,
    compaction: Compaction,
}

/// How many indexes were made, and how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexCounts {
    /// Built in full from a snapshot.
    pub builds: u64,
    /// Derived from the previous serial's index.
    pub derivations: u64,
    /// Background compactions that replaced a zone's index or became its next basis.
    pub compactions: u64,
}

#[derive(Default)]
struct Shared {
    /// A std `Mutex`: it is held only to find or replace a slot, never while building and
    /// never across an `.await`.
    zones: Mutex<HashMap<Name, Zone>>,
    builds: AtomicU64,
    derivations: AtomicU64,
    compactions: AtomicU64,
}

/// The search indexes of a node's zones, made on demand, once per serial.
#[derive(Default)]
pub struct ZoneIndexes {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ZoneIndexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let zones = self.shared.zones();
        f.debug_map()
            .entries(
                zones
                    .iter()
                    .map(|(origin, zone)| (origin, zone.slot.serial)),
            )
            .finish()
    }
}

impl Shared {
    fn zones(&self) -> std::sync::MutexGuard<'_, HashMap<Name, Zone>> {
        self.zones.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn build(&self, snapshot: &ZoneSnapshot) -> ZoneIndex {
        self.builds.fetch_add(1, Ordering::Relaxed);
        ZoneIndex::build(snapshot)
    }

    /// Fills a slot: from its basis when it has one, else in full.
    fn make(&self, slot: &Slot, snapshot: &ZoneSnapshot) -> ZoneIndex {
        let basis = slot
            .basis
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(Basis {
            previous,
            compaction,
        }) = basis
        else {
            return self.build(snapshot);
        };
        // Every slot is filled by the caller that made it, and filling never panics: the
        // wait ends.
        let Made::Index(previous) = previous.index.wait() else {
            return self.build(snapshot);
        };
        let changed = snapshot
            .lineage()
            .map_or(0, |lineage| lineage.changed.len());
        if changed > previous.overlay_bound() {
            return self.build(snapshot);
        }
        let rebased = compaction.and_then(|(source, compacted)| {
            let rebased = compacted.rebase(&source, previous)?;
            self.compactions.fetch_add(1, Ordering::Relaxed);
            Some(rebased)
        });
        let previous = rebased.as_ref().unwrap_or(previous);
        match previous.follow_snapshot(snapshot) {
            Some(index) => {
                self.derivations.fetch_add(1, Ordering::Relaxed);
                index
            }
            None => self.build(snapshot),
        }
    }

    /// Starts a compaction of `index`, unless one of its zone is running or done already.
    fn compact_if_due(self: &Arc<Self>, index: &Arc<ZoneIndex>) {
        if index.overlay_size() <= index.overlay_bound() {
            return;
        }
        {
            let mut zones = self.zones();
            let Some(zone) = zones.get_mut(index.origin()) else {
                return;
            };
            // Only the zone's current index, and one compaction at a time.
            let current = zone
                .slot
                .made()
                .is_some_and(|current| Arc::ptr_eq(current, index));
            if !current || !matches!(zone.compaction, Compaction::Idle) {
                return;
            }
            zone.compaction = Compaction::Running;
        }
        let shared = Arc::clone(self);
        let source = Arc::clone(index);
        let spawned = std::thread::Builder::new()
            .name("aop-search-compact".into())
            .spawn(move || {
                // A compaction that panics (a bug) leaves the zone idle: the next derivation
                // past the bound tries again.
                let compacted =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source.compacted()));
                shared.install(source, compacted.ok());
            });
        if let Err(error) = spawned {
            tracing::warn!(zone = %index.origin(), %error, "no thread for a search index compaction");
            self.install(Arc::clone(index), None);
        }
    }

    /// Puts a finished compaction of `source` in place of the zone's index, brought up to
    /// its serial, or keeps it for the next derivation when that index is being made.
    fn install(&self, source: Arc<ZoneIndex>, compacted: Option<ZoneIndex>) {
        let mut zones = self.zones();
        let Some(zone) = zones.get_mut(source.origin()) else {
            return;
        };
        zone.compaction = Compaction::Idle;
        let Some(compacted) = compacted else {
            return;
        };
        match zone.slot.made() {
            Some(current) => {
                if let Some(rebased) = compacted.rebase(&source, current) {
                    zone.slot = Arc::new(Slot::filled(rebased));
                    self.compactions.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                zone.compaction = Compaction::Done {
                    source,
                    compacted: Box::new(compacted),
                }
            }
        }
    }
}

impl ZoneIndexes {
    pub fn new() -> ZoneIndexes {
        ZoneIndexes::default()
    }

    /// The index of `snapshot`: the cached one when it is of the same serial, else a new one,
    /// made on the caller's thread: derived from the cached index when the snapshot follows
    /// it, built in full otherwise (see the module doc). A snapshot older than the cached
    /// index (a reader that took it just before an update) gets an index of its own, which
    /// replaces nothing.
    pub fn get(&self, snapshot: &ZoneSnapshot) -> Arc<ZoneIndex> {
        let shared = &self.shared;
        let origin = snapshot.origin();
        let serial = snapshot.serial();
        let slot = {
            let mut zones = shared.zones();
            match zones.get_mut(origin) {
                Some(zone) if zone.slot.serial == serial => Arc::clone(&zone.slot),
                Some(zone) if serial_newer(zone.slot.serial, serial) => {
                    drop(zones);
                    return Arc::new(shared.build(snapshot));
                }
                Some(zone) => {
                    let basis = snapshot
                        .lineage()
                        .filter(|lineage| lineage.parent_serial == zone.slot.serial)
                        .map(|_| Basis {
                            previous: Arc::clone(&zone.slot),
                            compaction: match std::mem::replace(
                                &mut zone.compaction,
                                Compaction::Idle,
                            ) {
                                Compaction::Done { source, compacted } => Some((source, compacted)),
                                other => {
                                    zone.compaction = other;
                                    None
                                }
                            },
                        });
                    let slot = Arc::new(Slot::new(serial, basis));
                    zone.slot = Arc::clone(&slot);
                    slot
                }
                None => {
                    let slot = Arc::new(Slot::new(serial, None));
                    zones.insert(
                        origin.clone(),
                        Zone {
                            slot: Arc::clone(&slot),
                            compaction: Compaction::Idle,
                        },
                    );
                    slot
                }
            }
        };
        let made = slot.index.get_or_init(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                shared.make(&slot, snapshot)
            }))
            .map_or(Made::Failed, |index| Made::Index(Arc::new(index)))
        });
        match made {
            Made::Index(index) => {
                shared.compact_if_due(index);
                Arc::clone(index)
            }
            // Making this serial's index panicked (a bug): once more, uncached, so that the
            // panic reaches this caller (a blocking task's `JoinError`, see `federate`).
            Made::Failed => Arc::new(shared.build(snapshot)),
        }
    }

    /// The index of `snapshot` when it is already made (no waiting, no building): lets an
    /// async caller search at once, and hand the rest to a blocking thread.
    pub fn built(&self, snapshot: &ZoneSnapshot) -> Option<Arc<ZoneIndex>> {
        let zones = self.shared.zones();
        let zone = zones.get(snapshot.origin())?;
        if zone.slot.serial != snapshot.serial() {
            return None;
        }
        zone.slot.made().cloned()
    }

    /// Drops the index of a zone this node no longer serves. True when there was one.
    pub fn forget(&self, origin: &Name) -> bool {
        self.shared.zones().remove(origin).is_some()
    }

    /// Zones with an index (built or being built).
    pub fn len(&self) -> usize {
        self.shared.zones().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many indexes were built, derived and compacted so far.
    pub fn counts(&self) -> IndexCounts {
        IndexCounts {
            builds: self.shared.builds.load(Ordering::Relaxed),
            derivations: self.shared.derivations.load(Ordering::Relaxed),
            compactions: self.shared.compactions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::*;
    use crate::search::fixtures::{agent, name, zone};

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

    /// A snapshot of `agents` agents `a0.acme`.. at `serial`, following `parent` by `changed`.
    fn following(serial: u32, agents: usize, parent: u32, changed: &[&str]) -> ZoneSnapshot {
        snapshot(serial, agents).with_lineage(crate::zone::Lineage {
            parent_serial: parent,
            changed: changed.iter().map(|n| name(n)).collect::<Vec<_>>().into(),
        })
    }

    #[test]
    fn derives_the_next_serial_and_builds_in_full_only_without_a_direct_lineage() {
        let indexes = ZoneIndexes::new();
        indexes.get(&snapshot(1, 10));
        let two = following(2, 11, 1, &["a10.acme"]);
        let derived = indexes.get(&two);
        assert_eq!((derived.serial(), derived.len()), (2, 11));
        assert_eq!(derived.overlay_size(), 2, "one document, one step");
        assert!(Arc::ptr_eq(&derived, &indexes.built(&two).unwrap()));
        let three = following(3, 9, 2, &["a10.acme", "a9.acme"]);
        assert_eq!(indexes.get(&three).len(), 9);
        assert_eq!(
            indexes.counts(),
            IndexCounts {
                builds: 1,
                derivations: 2,
                compactions: 0
            }
        );
        // A gap (serial 4 was never asked for), then no lineage: in full.
        indexes.get(&following(5, 9, 4, &["a1.acme"]));
        indexes.get(&snapshot(6, 9));
        assert_eq!(indexes.counts().builds, 3);
        assert_eq!(indexes.counts().derivations, 2);
    }

    #[test]
    fn a_large_overlay_is_compacted_in_the_background_and_answers_stay_the_same() {
        let indexes = ZoneIndexes::new();
        indexes.get(&snapshot(1, 100));
        // Four changes of 300 new agents each: 1,200 overlay documents, past the floor.
        let mut index = Arc::clone(&indexes.get(&snapshot(1, 100)));
        for step in 1..=4_u32 {
            let before = 100 + 300 * (step as usize - 1);
            let added: Vec<String> = (before..before + 300)
                .map(|i| format!("a{i}.acme"))
                .collect();
            let added: Vec<&str> = added.iter().map(String::as_str).collect();
            index = indexes.get(&following(step + 1, before + 300, step, &added));
        }
        assert_eq!((index.serial(), index.len()), (5, 1_300));
        assert!(index.overlay_size() > index.overlay_bound());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while indexes.counts().compactions == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no compaction in 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let latest = snapshot(5, 1_300);
        let compacted = indexes
            .built(&latest)
            .expect("the compacted index, same serial");
        assert_eq!(compacted.overlay_size(), 0);
        let fresh = ZoneIndex::build(&latest);
        let query = crate::search::SearchQuery {
            text: "agent a1234".into(),
            limit: 20,
            ..Default::default()
        }
        .analyze();
        let (a, b) = (compacted.search(&query), fresh.search(&query));
        assert_eq!((a.stats, a.matches), (b.stats, b.matches));
        // The next change derives from the compacted index.
        let next = indexes.get(&following(6, 1_301, 5, &["a1300.acme"]));
        assert_eq!((next.overlay_size(), next.len()), (2, 1_301));
        assert_eq!(
            indexes.counts(),
            IndexCounts {
                builds: 1,
                derivations: 5,
                compactions: 1
            }
        );
    }

    /// A compaction that finishes while the zone's next index is being made becomes the basis
    /// of the one after, brought forward over the change it missed.
    #[test]
    fn a_compaction_finished_during_a_derivation_is_used_by_the_next_one() {
        let indexes = ZoneIndexes::new();
        let one = indexes.get(&snapshot(1, 10));
        let two = following(2, 11, 1, &["a10.acme"]);
        // Serial 2's slot exists but is not filled yet when the compaction of serial 1 ends.
        {
            let mut zones = indexes.shared.zones();
            let zone = zones.get_mut(&name("acme")).unwrap();
            let previous = Arc::clone(&zone.slot);
            zone.slot = Arc::new(Slot::new(
                2,
                Some(Basis {
                    previous,
                    compaction: None,
                }),
            ));
            zone.compaction = Compaction::Running;
        }
        indexes
            .shared
            .install(Arc::clone(&one), Some(one.compacted()));
        let derived = indexes.get(&two);
        assert_eq!(derived.overlay_size(), 2, "derived from serial 1's overlay");
        let three = indexes.get(&following(3, 12, 2, &["a11.acme"]));
        assert_eq!(three.len(), 12);
        assert_eq!(
            three.overlay_size(),
            4,
            "compacted at 1, then the documents and steps of 2 and 3"
        );
        assert_eq!(indexes.counts().compactions, 1);
        let query = crate::search::SearchQuery {
            limit: 20,
            ..Default::default()
        }
        .analyze();
        let fresh = ZoneIndex::build(&snapshot(3, 12));
        let names = |r: crate::search::ZoneResult| {
            r.hits
                .iter()
                .map(|h| h.agent.name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(three.search(&query)), names(fresh.search(&query)));
    }

    /// A snapshot that follows a serial whose index is still being made waits for it and
    /// derives, instead of building in full.
    #[test]
    fn a_derivation_waits_for_the_previous_serial_being_made() {
        let indexes = ZoneIndexes::new();
        indexes.get(&snapshot(1, 10));
        let two = following(2, 11, 1, &["a10.acme"]);
        let three = following(3, 12, 2, &["a11.acme"]);
        // Serial 2's slot is in place but not filled yet.
        let slot_two = {
            let mut zones = indexes.shared.zones();
            let zone = zones.get_mut(&name("acme")).unwrap();
            let previous = Arc::clone(&zone.slot);
            zone.slot = Arc::new(Slot::new(
                2,
                Some(Basis {
                    previous,
                    compaction: None,
                }),
            ));
            Arc::clone(&zone.slot)
        };
        let made = std::thread::scope(|scope| {
            let waiting = scope.spawn(|| indexes.get(&three));
            slot_two
                .index
                .get_or_init(|| Made::Index(Arc::new(indexes.shared.make(&slot_two, &two))));
            waiting.join().expect("no panic")
        });
        assert_eq!((made.serial(), made.len(), made.overlay_size()), (3, 12, 4));
        assert_eq!(
            indexes.counts(),
            IndexCounts {
                builds: 1,
                derivations: 2,
                compactions: 0
            }
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
