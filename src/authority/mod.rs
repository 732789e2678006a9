//! The zones this node is authoritative for, kept live: updates (register, renew,
//! deregister), lease expiry, zone-file reloads and secondaries' transfers all change them
//! here, and nowhere else.
//!
//! One writer task (`writer`) owns every [`LiveZone`]. Requests queue to it; it takes
//! whatever has queued (up to [`BATCH_MAX`] jobs), applies each to its zone, commits all of
//! them to the [`Store`] in one durable transaction (group commit: one fsync per batch, not
//! per update), and only then publishes the new snapshots to the [`Catalog`], drops cached
//! answers for the names that changed, wakes watchers, NOTIFYs secondaries, and answers the
//! callers. So nothing is acknowledged before it is on disk, and readers never see a change
//! that a crash could take back. A failed commit puts the zones back as the store has them
//! and fails the batch.
//!
//! The rooms:
//! - `prepare`: reads the store and the zone files at start, before anything serves;
//! - `writer`: the one task that changes zones;
//! - [`live`]: one zone between changes, and the pure operations on it;
//! - [`notify`] and [`secondary`]: replication, the primary's NOTIFYs and a secondary's
//!   follower, talking to other nodes only through the [`Peers`] trait ([`peers`]), which
//!   the gRPC door implements (and tests replace with an in-memory twin);
//! - [`serve`]: what this node hands out of its zones: transfers and Watch events.

pub mod live;
pub mod notify;
pub mod peers;
mod prepare;
pub mod secondary;
pub mod serve;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::keys::{AuthError, KeyError, KeyRing, UpdateKey};
use crate::name::Name;
use crate::store::{Store, StoreError};
use crate::zone::ZoneSnapshot;

pub use live::{
    AgentSource, DEFAULT_LEASE_SECS, Deregistered, EndpointSource, HealthMark, LEASE_MAX_SECS,
    Lease, LiveZone, Registered, Registration, Role,
};
pub use notify::{Fetch, KnownSecondary};
pub use peers::{Peers, TransferData, TransferRequest};
pub use prepare::PreparedAuthority;

use writer::Job;

/// The most jobs one commit carries.
pub const BATCH_MAX: usize = 1024;

/// Why an update or a transfer was not applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    #[error("this node does not serve zone {zone}")]
    NotServed { zone: Name },
    #[error("this node is a secondary for zone {zone}: send updates to its primary, {primary}")]
    Secondary { zone: Name, primary: String },
    #[error("{name} is not inside zone {zone}")]
    OutsideZone { name: Name, zone: Name },
    #[error(
        "{name} is at or below the delegated zone {delegation}: register it with that zone's servers"
    )]
    Occluded { name: Name, delegation: Name },
    #[error("{name} is already {kind} in the zone; an agent cannot take its name")]
    NameTaken { name: Name, kind: &'static str },
    #[error("no agent {name} in zone {zone}")]
    NoSuchAgent { name: Name, zone: Name },
    #[error("agent {name} has no registered endpoint {url}")]
    NoSuchEndpoint { name: Name, url: String },
    #[error("{}", from_file_message(name, url.as_deref()))]
    FromFile { name: Name, url: Option<String> },
    #[error(
        "agent {name} already has {} endpoints (limit {})",
        crate::record::limits::ENDPOINTS_MAX,
        crate::record::limits::ENDPOINTS_MAX
    )]
    TooManyEndpoints { name: Name },
    #[error("zone file for {zone} not loaded: {reason}")]
    Reload { zone: Name, reason: String },
    #[error("transfer of zone {zone} from {primary} failed: {reason}")]
    Transfer {
        zone: Name,
        primary: String,
        reason: String,
    },
    #[error(
        "the primary {primary} of zone {zone} is at serial {theirs}, older than ours ({ours}): it may have lost its store; this secondary keeps its copy and will not follow it backwards"
    )]
    PrimaryBehind {
        zone: Name,
        primary: String,
        ours: u32,
        theirs: u32,
    },
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("update not stored: {0}")]
    Store(#[from] StoreError),
    #[error("the node is shutting down")]
    Stopped,
}

fn from_file_message(name: &Name, url: Option<&str>) -> String {
    match url {
        Some(url) => format!(
            "endpoint {url} of {name} is defined in the zone file: change it there, not by registration"
        ),
        None => format!(
            "agent {name} is defined in the zone file: remove it there (deregister removes only endpoints registered live)"
        ),
    }
}

/// Why the authority could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("store {path}: zone {zone}: {reason}")]
    Stored {
        path: String,
        zone: String,
        reason: String,
    },
    #[error("zone {zone} is configured both as a primary (a zone file) and as a secondary")]
    BothRoles { zone: Name },
}

/// What the node serves, as configured.
pub struct AuthorityConfig {
    pub store: Arc<Store>,
    /// Zones loaded from zone files: this node is their primary.
    pub primaries: Vec<ZoneSnapshot>,
    /// Zones copied from a primary at a gRPC URL.
    pub secondaries: Vec<(Name, String)>,
    pub keys: Vec<UpdateKey>,
    /// NOTIFY secondaries on every change (BIND's `notify yes`).
    pub notify: bool,
    pub clock: Arc<dyn Clock>,
    /// How this node reaches other nodes (NOTIFY, transfers).
    pub peers: Arc<dyn Peers>,
}

/// Told, after each commit, the names whose answers changed: the node wires the resolver's
/// caches to it, so the node that took an update answers the new data at once (the
/// authority knows no resolver).
pub trait ChangeListener: Send + Sync + 'static {
    fn names_changed<'a>(&'a self, names: &'a [Name]) -> BoxFuture<'a, ()>;
}

/// Nobody listens (tests of the authority alone).
impl ChangeListener for () {
    fn names_changed<'a>(&'a self, _names: &'a [Name]) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// A zone's place on this node, as readers see it.
#[derive(Debug, Clone)]
pub struct ZoneStatus {
    pub role: Role,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    /// Answering for the zone (a secondary stops after `expire` without its primary).
    pub served: bool,
    /// A secondary: when it last heard from its primary (a transfer, or an answer that it
    /// is up to date), Unix ms, kept in the store across restarts; `None` before the first.
    pub refreshed_unix_ms: Option<u64>,
}

fn zone_status(zone: &LiveZone, served: bool, refreshed_unix_ms: Option<u64>) -> ZoneStatus {
    ZoneStatus {
        role: zone.role.clone(),
        serial: zone.header.serial,
        refresh: zone.header.refresh,
        retry: zone.header.retry,
        expire: zone.header.expire,
        served,
        refreshed_unix_ms,
    }
}

struct Shared {
    catalog: Arc<Catalog>,
    /// Told which names changed after each commit.
    listener: Arc<dyn ChangeListener>,
    store: Arc<Store>,
    keys: KeyRing,
    clock: Arc<dyn Clock>,
    peers: Arc<dyn Peers>,
    jobs: mpsc::Sender<Job>,
    status: ArcSwap<HashMap<Name, ZoneStatus>>,
    /// Each zone's committed changes, for its Watch streams.
    news: std::sync::Mutex<HashMap<Name, broadcast::Sender<Arc<serve::News>>>>,
    /// Secondaries to NOTIFY beyond each zone's own servers.
    notify: notify::NotifyTargets,
    /// Wakes a secondary zone's follower (a NOTIFY came).
    followers: std::sync::Mutex<HashMap<Name, mpsc::Sender<()>>>,
    own_url: String,
    /// Transfers served: full, incremental.
    transfers: [AtomicU64; 2],
    /// Updates answered by the writer: [operation][accepted, refused].
    updates: [[AtomicU64; 2]; UPDATE_OPERATIONS.len()],
}

/// The update operations, as metrics label them (the index into `Shared::updates`).
pub const UPDATE_OPERATIONS: [&str; 3] = ["register", "renew", "deregister"];

/// A zone file's reload: the zone's new serial, or `None` when the file was not newer.
pub type ReloadResult = (Name, Result<Option<u32>, UpdateError>);

/// The outcome of applying a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Serial(u32),
    /// The changes did not start at our serial: ask for a full transfer.
    NeedFull,
}

/// Running authority; cheap to clone.
#[derive(Clone)]
pub struct Authority {
    shared: Arc<Shared>,
}

impl Authority {
    pub fn keys(&self) -> &KeyRing {
        &self.shared.keys
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    pub fn status(&self, zone: &Name) -> Option<ZoneStatus> {
        self.shared.status.load().get(zone).cloned()
    }

    /// Every zone this node is configured for (primaries and secondaries), as readers see it.
    pub fn statuses(&self) -> Arc<HashMap<Name, ZoneStatus>> {
        self.shared.status.load_full()
    }

    /// Counts an update the writer answered.
    fn count_update<T>(&self, operation: usize, result: &Result<T, UpdateError>) {
        self.shared.updates[operation][usize::from(result.is_err())]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Updates answered so far: (operation, accepted, refused), in [`UPDATE_OPERATIONS`]
    /// order. Requests refused before they reach the writer (bad signature, bad fields)
    /// are counted by the gRPC door's status codes instead.
    pub fn update_counts(&self) -> Vec<(&'static str, u64, u64)> {
        UPDATE_OPERATIONS
            .iter()
            .zip(&self.shared.updates)
            .map(|(operation, [accepted, refused])| {
                (
                    *operation,
                    accepted.load(Ordering::Relaxed),
                    refused.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Checks that this node takes updates for `zone`.
    pub fn check_primary(&self, zone: &Name) -> Result<(), UpdateError> {
        match self.status(zone).map(|s| s.role) {
            Some(Role::Primary) => Ok(()),
            Some(Role::Secondary { primary }) => Err(UpdateError::Secondary {
                zone: zone.clone(),
                primary,
            }),
            None => Err(UpdateError::NotServed { zone: zone.clone() }),
        }
    }

    async fn submit<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<T>) -> Job,
    ) -> Result<T, UpdateError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .jobs
            .send(job(reply))
            .await
            .map_err(|_| UpdateError::Stopped)?;
        answer.await.map_err(|_| UpdateError::Stopped)
    }

    /// Submits an update (`operation` indexes [`UPDATE_OPERATIONS`]) and counts its answer.
    async fn submit_update<T>(
        &self,
        operation: usize,
        job: impl FnOnce(oneshot::Sender<Result<T, UpdateError>>) -> Job,
    ) -> Result<T, UpdateError> {
        let result = self.submit(job).await.and_then(|answer| answer);
        self.count_update(operation, &result);
        result
    }

    pub async fn register(
        &self,
        zone: Name,
        registration: Registration,
    ) -> Result<(Registered, u32), UpdateError> {
        self.submit_update(0, |reply| Job::Register {
            zone,
            registration,
            reply,
        })
        .await
    }

    pub async fn renew(
        &self,
        zone: Name,
        name: Name,
        url: String,
        lease_secs: Option<u32>,
    ) -> Result<(Lease, u32), UpdateError> {
        self.submit_update(1, |reply| Job::Renew {
            zone,
            name,
            url,
            lease_secs,
            reply,
        })
        .await
    }

    pub async fn deregister(
        &self,
        zone: Name,
        name: Name,
        url: Option<String>,
    ) -> Result<(Deregistered, u32), UpdateError> {
        self.submit_update(2, |reply| Job::Deregister {
            zone,
            name,
            url,
            reply,
        })
        .await
    }

    /// Writes what the probes of this primary concluded about its endpoints; the number of
    /// endpoints whose state changed and the zone's serial after it (the same serial when
    /// none did).
    pub async fn mark_health(
        &self,
        zone: Name,
        marks: Vec<HealthMark>,
    ) -> Result<(usize, u32), UpdateError> {
        self.submit(|reply| Job::Health { zone, marks, reply })
            .await
            .and_then(|answer| answer)
    }

    /// Loads zone files again (SIGHUP); per zone, the new serial, or `None` when the file
    /// is not newer than the one loaded.
    pub async fn reload(&self, files: Vec<ZoneSnapshot>) -> Result<Vec<ReloadResult>, UpdateError> {
        self.submit(|reply| Job::Reload { files, reply }).await
    }

    pub async fn apply_transfer(
        &self,
        zone: Name,
        data: TransferData,
    ) -> Result<Applied, UpdateError> {
        self.submit(|reply| Job::Transfer { zone, data, reply })
            .await?
    }

    /// Where the agents named came from (zone file or live registration) and when their live
    /// endpoints' leases end, per zone asked: read by the writer, which owns the live zones,
    /// between two batches (so only committed state is seen). `None` when the writer does
    /// not answer (the node is stopping); a zone not held, or whose memory a failed commit
    /// left unsure, is left out. The status page asks for the agents it shows.
    pub async fn describe(
        &self,
        zones: Vec<(Name, Vec<Name>)>,
    ) -> Option<HashMap<Name, Vec<AgentSource>>> {
        self.submit(|reply| Job::Describe { zones, reply })
            .await
            .ok()
    }

    /// A secondary's primary has been silent past `expire`: stop answering for the zone.
    pub async fn withdraw(&self, zone: Name) {
        let _ = self.shared.jobs.send(Job::Withdraw { zone }).await;
    }

    /// A NOTIFY for `zone`: wakes its follower. Fails unless this node is its secondary.
    pub fn notified(&self, zone: &Name) -> Result<(), UpdateError> {
        match self.status(zone).map(|s| s.role) {
            Some(Role::Secondary { .. }) => {
                if let Some(kick) = self
                    .shared
                    .followers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(zone)
                {
                    // A full channel means a refresh is already due.
                    let _ = kick.try_send(());
                }
                Ok(())
            }
            Some(Role::Primary) => Err(UpdateError::Secondary {
                zone: zone.clone(),
                primary: "this node (it is the zone's primary, not a secondary)".into(),
            }),
            None => Err(UpdateError::NotServed { zone: zone.clone() }),
        }
    }

    /// How many Watch streams follow a zone here now (0 when the zone is not held).
    pub fn watchers(&self, zone: &Name) -> usize {
        self.shared
            .news
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(zone)
            .map_or(0, broadcast::Sender::receiver_count)
    }

    /// Transfers served so far: (full, incremental).
    pub fn transfers(&self) -> (u64, u64) {
        let [full, incremental] = &self.shared.transfers;
        (
            full.load(Ordering::Relaxed),
            incremental.load(Ordering::Relaxed),
        )
    }

    pub fn own_url(&self) -> &str {
        &self.shared.own_url
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    pub fn peers(&self) -> &Arc<dyn Peers> {
        &self.shared.peers
    }
}
