//! Start-up: the store read back, zone files seeding or replacing what it holds, and the
//! writer and followers started. Nothing serves before [`PreparedAuthority::prepare`] has
//! either succeeded or refused to start with an error naming the file and zone.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::live::{self, LiveZone, Role};
use super::writer::Writer;
use super::{
    Authority, AuthorityConfig, AuthorityError, BATCH_MAX, ChangeListener, Shared, notify,
    secondary, serve, zone_status,
};
use crate::catalog::Catalog;
use crate::keys::KeyRing;
use crate::name::Name;
use crate::record::ZoneHeader;
use crate::zone::ZoneSnapshot;

/// The authority, prepared from the store and the zone files, not yet running.
pub struct PreparedAuthority {
    config: AuthorityConfig,
    zones: HashMap<Name, LiveZone>,
    served: BTreeSet<Name>,
    /// When each secondary zone last heard from its primary (Unix ms).
    refreshed: HashMap<Name, u64>,
    /// Zones seeded from their file just now: the file's own snapshot is the zone's (cloning
    /// one is O(1)), so a large zone is not built a second time from the live copy.
    seeded: HashMap<Name, ZoneSnapshot>,
}

impl PreparedAuthority {
    /// Reads the store, seeds it from zone files it does not hold yet, and loads newer
    /// files over what it holds (live registrations stay).
    pub fn prepare(config: AuthorityConfig) -> Result<PreparedAuthority, AuthorityError> {
        let store = Arc::clone(&config.store);
        let path = store.path().display().to_string();
        let stored_error = |zone: &str, reason: String| AuthorityError::Stored {
            path: path.clone(),
            zone: zone.to_string(),
            reason,
        };
        for (zone, _) in &config.secondaries {
            if config.primaries.iter().any(|p| p.origin() == zone) {
                return Err(AuthorityError::BothRoles { zone: zone.clone() });
            }
        }
        let mut stored: HashMap<Name, (LiveZone, u64)> = HashMap::new();
        for data in store.load()? {
            let refreshed = data.refreshed_unix_ms;
            let zone =
                LiveZone::from_store(data).map_err(|(zone, reason)| stored_error(&zone, reason))?;
            stored.insert(zone.origin().clone(), (zone, refreshed));
        }

        let mut zones = HashMap::new();
        let mut served = BTreeSet::new();
        let mut refreshed = HashMap::new();
        let mut seeded = HashMap::new();
        let mut writes = Vec::new();
        let now = config.clock.unix_ms();
        for file in &config.primaries {
            let origin = file.origin().clone();
            let held = stored
                .remove(&origin)
                .filter(|(zone, _)| zone.role == Role::Primary);
            let zone = match held {
                None => {
                    let zone = LiveZone::from_file(file);
                    seeded.insert(origin.clone(), file.clone());
                    writes.push(zone.full_write());
                    tracing::info!(zone = %origin, serial = file.serial(), "zone seeded from its file");
                    zone
                }
                Some((mut zone, _)) => {
                    // Leases ran on while the node was down: each gets one full lease length
                    // from now, so endpoints kept alive by their agents survive a restart of
                    // their primary.
                    let extended = zone.extend_leases(now);
                    if !extended.is_empty() {
                        tracing::info!(zone = %origin, leases = extended.len(), "leases extended to a full lease length from the start");
                        let mut write = crate::store::ZoneWrite::new(origin.clone());
                        write.lease_puts = extended;
                        writes.push(write);
                    }
                    match zone.reload(file) {
                        Ok(Some((edit, floor))) => {
                            let change = zone.seal(&edit, Some(floor));
                            let mut write = live::edit_write(&zone, &edit, change);
                            write.file_serial = Some(zone.file_serial);
                            writes.push(write);
                            tracing::info!(zone = %origin, serial = zone.header.serial, "newer zone file loaded over the store");
                        }
                        Ok(None) => {
                            tracing::info!(zone = %origin, serial = zone.header.serial, file_serial = file.serial(), "zone recovered from the store (the file is not newer)");
                        }
                        Err(error) => return Err(stored_error(origin.as_str(), error.to_string())),
                    }
                    zone
                }
            };
            served.insert(origin.clone());
            zones.insert(origin, zone);
        }
        for (origin, primary) in &config.secondaries {
            let held = stored
                .remove(origin)
                .filter(|(zone, _)| matches!(zone.role, Role::Secondary { .. }));
            let zone = match held {
                Some((mut zone, at)) => {
                    zone.role = Role::Secondary {
                        primary: primary.clone(),
                    };
                    let age = now.saturating_sub(at);
                    if age <= u64::from(zone.header.expire) * 1000 {
                        served.insert(origin.clone());
                    }
                    refreshed.insert(origin.clone(), at);
                    zone
                }
                None => LiveZone::empty(
                    ZoneHeader {
                        origin: origin.clone(),
                        serial: 0,
                        ttl: 0,
                        negative_ttl: 0,
                        refresh: ZoneHeader::DEFAULT_REFRESH,
                        retry: ZoneHeader::DEFAULT_RETRY,
                        expire: ZoneHeader::DEFAULT_EXPIRE,
                        contact: String::new(),
                        servers: Vec::new(),
                        health: crate::record::HealthSettings::DEFAULT,
                    },
                    Role::Secondary {
                        primary: primary.clone(),
                    },
                ),
            };
            zones.insert(origin.clone(), zone);
        }
        for origin in stored.keys() {
            tracing::warn!(zone = %origin, store = %path, "the store holds a zone this node is not configured for; not serving it");
        }
        if !writes.is_empty() {
            store.commit(&writes)?;
        }
        Ok(PreparedAuthority {
            config,
            zones,
            served,
            refreshed,
            seeded,
        })
    }

    /// Snapshots of the zones to serve from the start.
    pub fn snapshots(&self) -> Result<Vec<ZoneSnapshot>, AuthorityError> {
        let mut out = Vec::new();
        for origin in &self.served {
            if let Some(file) = self.seeded.get(origin) {
                out.push(file.clone());
                continue;
            }
            if let Some(zone) = self.zones.get(origin) {
                let snapshot = zone.snapshot().map_err(|errors| AuthorityError::Stored {
                    path: self.config.store.path().display().to_string(),
                    zone: origin.to_string(),
                    reason: errors
                        .iter()
                        .map(|e| e.error.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                })?;
                out.push(snapshot);
            }
        }
        Ok(out)
    }

    /// Starts the writer (and a follower per secondary zone).
    pub fn start(
        self,
        catalog: Arc<Catalog>,
        listener: Arc<dyn ChangeListener>,
        own_url: String,
        shutdown: CancellationToken,
    ) -> Result<Authority, AuthorityError> {
        let PreparedAuthority {
            config,
            zones,
            served,
            refreshed,
            seeded: _,
        } = self;
        let keys = KeyRing::new(config.keys, Arc::clone(&config.clock))?;
        // Nonces accepted before a restart: their replay is refused as before it.
        keys.remember(config.store.live_nonces(config.clock.unix_ms())?);
        let (jobs, receiver) = mpsc::channel(BATCH_MAX * 4);
        let mut news = HashMap::new();
        let mut status = HashMap::new();
        for (origin, zone) in &zones {
            news.insert(origin.clone(), broadcast::channel(serve::WATCH_BROADCAST).0);
            let at = refreshed.get(origin).copied();
            status.insert(
                origin.clone(),
                zone_status(zone, served.contains(origin), at),
            );
        }
        let shared = Arc::new(Shared {
            catalog,
            listener,
            store: Arc::clone(&config.store),
            keys,
            clock: Arc::clone(&config.clock),
            peers: Arc::clone(&config.peers),
            jobs,
            status: ArcSwap::from_pointee(status),
            news: std::sync::Mutex::new(news),
            notify: notify::NotifyTargets::new(config.notify),
            followers: std::sync::Mutex::new(HashMap::new()),
            own_url,
            transfers: Default::default(),
            updates: Default::default(),
        });
        let authority = Authority { shared };
        let writer = Writer::new(authority.clone(), zones, served, refreshed.clone());
        tokio::spawn(writer.run(receiver, shutdown.clone()));
        for (origin, primary) in config.secondaries {
            let (kick, kicked) = mpsc::channel(1);
            authority
                .shared
                .followers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(origin.clone(), kick);
            tokio::spawn(secondary::follow(
                authority.clone(),
                origin.clone(),
                primary,
                refreshed.get(&origin).copied(),
                kicked,
                shutdown.clone(),
            ));
        }
        Ok(authority)
    }
}
