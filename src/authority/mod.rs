//! The zones this node is authoritative for, kept live: updates (register, renew,
//! deregister), lease expiry, zone-file reloads and secondaries' transfers all change them
//! here, and nowhere else.
//!
//! One writer task owns every [`LiveZone`]. Requests queue to it; it takes whatever has
//! queued (up to [`BATCH_MAX`] jobs), applies each to its zone, commits all of them to the
//! [`Store`] in one durable transaction (group commit: one fsync per batch, not per update),
//! and only then publishes the new snapshots to the [`Catalog`], drops cached answers for the
//! names that changed, wakes watchers, NOTIFYs secondaries, and answers the callers. So
//! nothing is acknowledged before it is on disk, and readers never see a change that a
//! crash could take back. A failed commit puts the zones back as the store has them and
//! fails the batch.
//!
//! Secondaries ([`secondary`]) fetch transfers from their primary and hand them to the same
//! writer.

pub mod live;
pub mod secondary;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::grpc::convert::{self, PeerDataError};
use crate::grpc::pb;
use crate::keys::{AuthError, KeyError, KeyRing, UpdateKey};
use crate::name::Name;
use crate::resolver::Resolver;
use crate::store::{Store, StoreError, StoredZoneData, ZoneWrite};
use crate::zone::ZoneSnapshot;

use live::{Deregistered, Edit, Lease, LiveRecord, LiveZone, Registered, Registration, Role};

/// The most jobs one commit carries.
pub const BATCH_MAX: usize = 1024;
/// How many NOTIFY targets a zone remembers beyond its own servers.
const NOTIFY_TARGETS_MAX: usize = 64;
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(1);

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
}

/// The authority, prepared from the store and the zone files, not yet running.
pub struct PreparedAuthority {
    config: AuthorityConfig,
    zones: HashMap<Name, LiveZone>,
    served: BTreeSet<Name>,
    /// When each secondary zone last heard from its primary (Unix ms).
    refreshed: HashMap<Name, u64>,
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
        let mut stored: HashMap<String, (LiveZone, u64)> = HashMap::new();
        for data in store.load()? {
            let refreshed = data.meta.refreshed_unix_ms;
            let zone =
                zone_from_store(data).map_err(|(zone, reason)| stored_error(&zone, reason))?;
            stored.insert(zone.origin().to_string(), (zone, refreshed));
        }

        let mut zones = HashMap::new();
        let mut served = BTreeSet::new();
        let mut refreshed = HashMap::new();
        let mut writes = Vec::new();
        for file in &config.primaries {
            let origin = file.origin().clone();
            let held = stored
                .remove(origin.as_str())
                .filter(|(zone, _)| zone.role == Role::Primary);
            let zone = match held {
                None => {
                    let zone = LiveZone::from_file(file);
                    writes.push(zone.full_write());
                    tracing::info!(zone = %origin, serial = file.serial(), "zone seeded from its file");
                    zone
                }
                Some((mut zone, _)) => {
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
        let now = config.clock.unix_ms();
        for (origin, primary) in &config.secondaries {
            let held = stored
                .remove(origin.as_str())
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
                    crate::record::ZoneHeader {
                        origin: origin.clone(),
                        serial: 0,
                        ttl: 0,
                        negative_ttl: 0,
                        refresh: 60,
                        retry: 10,
                        expire: 86_400,
                        contact: String::new(),
                        servers: Vec::new(),
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
        })
    }

    /// Snapshots of the zones to serve from the start.
    pub fn snapshots(&self) -> Result<Vec<ZoneSnapshot>, AuthorityError> {
        let mut out = Vec::new();
        for origin in &self.served {
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
        resolver: Arc<Resolver>,
        own_url: String,
        shutdown: CancellationToken,
    ) -> Result<Authority, AuthorityError> {
        let PreparedAuthority {
            config,
            zones,
            served,
            refreshed,
        } = self;
        let keys = KeyRing::new(config.keys, Arc::clone(&config.clock))?;
        let (jobs, receiver) = mpsc::channel(BATCH_MAX * 4);
        let mut serials = HashMap::new();
        let mut status = HashMap::new();
        for (origin, zone) in &zones {
            serials.insert(origin.clone(), watch::channel(zone.header.serial).0);
            status.insert(origin.clone(), zone_status(zone, served.contains(origin)));
        }
        let shared = Arc::new(Shared {
            catalog,
            resolver,
            store: Arc::clone(&config.store),
            keys,
            clock: Arc::clone(&config.clock),
            jobs,
            status: ArcSwap::from_pointee(status),
            serials: Mutex::new(serials),
            notify_targets: Mutex::new(HashMap::new()),
            followers: Mutex::new(HashMap::new()),
            own_url,
            notify: config.notify,
            upstream: crate::grpc::upstream::GrpcUpstream::new(),
            transfers: Default::default(),
            updates: Default::default(),
        });
        let authority = Authority { shared };
        let writer = Writer {
            authority: authority.clone(),
            zones,
            served,
        };
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

fn zone_status(zone: &LiveZone, served: bool) -> ZoneStatus {
    ZoneStatus {
        role: zone.role.clone(),
        serial: zone.header.serial,
        refresh: zone.header.refresh,
        retry: zone.header.retry,
        expire: zone.header.expire,
        served,
    }
}

struct Shared {
    catalog: Arc<Catalog>,
    resolver: Arc<Resolver>,
    store: Arc<Store>,
    keys: KeyRing,
    clock: Arc<dyn Clock>,
    jobs: mpsc::Sender<Job>,
    status: ArcSwap<HashMap<Name, ZoneStatus>>,
    /// The serial of each zone, for watchers.
    serials: Mutex<HashMap<Name, watch::Sender<u32>>>,
    /// Secondaries that asked for transfers, beyond each zone's own servers.
    notify_targets: Mutex<HashMap<Name, BTreeSet<String>>>,
    /// Wakes a secondary zone's follower (a NOTIFY came).
    followers: Mutex<HashMap<Name, mpsc::Sender<()>>>,
    own_url: String,
    notify: bool,
    upstream: crate::grpc::upstream::GrpcUpstream,
    /// Transfers served: full, incremental.
    transfers: [std::sync::atomic::AtomicU64; 2],
    /// Updates answered by the writer: [operation][accepted, refused].
    updates: [[std::sync::atomic::AtomicU64; 2]; UPDATE_OPERATIONS.len()],
}

/// The update operations, as metrics label them (the index into `Shared::updates`).
pub const UPDATE_OPERATIONS: [&str; 3] = ["register", "renew", "deregister"];

/// What a transfer brought.
#[derive(Debug)]
pub enum TransferData {
    Full {
        header: pb::ZoneHeader,
        records: Vec<pb::ZoneRecord>,
    },
    Changes(Vec<pb::ZoneChange>),
    UpToDate,
}

/// A zone file's reload: the zone's new serial, or `None` when the file was not newer.
pub type ReloadResult = (Name, Result<Option<u32>, UpdateError>);

/// The outcome of applying a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Serial(u32),
    /// The changes did not start at our serial: ask for a full transfer.
    NeedFull,
}

/// Where an update's outcome goes: what it did and the zone's serial after it.
type Answer<T> = oneshot::Sender<Result<(T, u32), UpdateError>>;

enum Job {
    Register {
        zone: Name,
        registration: Registration,
        reply: Answer<Registered>,
    },
    Renew {
        zone: Name,
        name: Name,
        url: String,
        lease_secs: Option<u32>,
        reply: Answer<Lease>,
    },
    Deregister {
        zone: Name,
        name: Name,
        url: Option<String>,
        reply: Answer<Deregistered>,
    },
    Reload {
        files: Vec<ZoneSnapshot>,
        reply: oneshot::Sender<Vec<ReloadResult>>,
    },
    Transfer {
        zone: Name,
        data: TransferData,
        reply: oneshot::Sender<Result<Applied, UpdateError>>,
    },
    Withdraw {
        zone: Name,
    },
    Expire,
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
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
                    accepted.load(std::sync::atomic::Ordering::Relaxed),
                    refused.load(std::sync::atomic::Ordering::Relaxed),
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

    /// Remembers a secondary to NOTIFY (it asked for a transfer).
    pub fn add_notify_target(&self, zone: &Name, url: &str) {
        if url.is_empty()
            || url == self.shared.own_url
            || crate::record::check_http_url("notify_url", url).is_err()
        {
            return;
        }
        let mut targets = self
            .shared
            .notify_targets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let set = targets.entry(zone.clone()).or_default();
        if set.len() < NOTIFY_TARGETS_MAX || set.contains(url) {
            set.insert(url.to_string());
        }
    }

    /// Follows a zone's serial (for Watch); `None` when the zone is not held here.
    pub fn watch(&self, zone: &Name) -> Option<watch::Receiver<u32>> {
        self.shared
            .serials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(zone)
            .map(watch::Sender::subscribe)
    }

    /// How many Watch streams follow a zone here now (0 when the zone is not held).
    pub fn watchers(&self, zone: &Name) -> usize {
        self.shared
            .serials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(zone)
            .map_or(0, watch::Sender::receiver_count)
    }

    /// Counts a transfer served to a secondary or a dump.
    pub fn count_transfer(&self, full: bool) {
        self.shared.transfers[usize::from(!full)]
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Transfers served so far: (full, incremental).
    pub fn transfers(&self) -> (u64, u64) {
        let [full, incremental] = &self.shared.transfers;
        (
            full.load(std::sync::atomic::Ordering::Relaxed),
            incremental.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    pub fn own_url(&self) -> &str {
        &self.shared.own_url
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    fn notify_secondaries(&self, zone: &LiveZone) {
        if !self.shared.notify {
            return;
        }
        let mut targets: BTreeSet<String> =
            zone.header.servers.iter().map(|s| s.grpc.clone()).collect();
        if let Some(extra) = self
            .shared
            .notify_targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(zone.origin())
        {
            targets.extend(extra.iter().cloned());
        }
        targets.remove(&self.shared.own_url);
        for url in targets {
            let server = crate::record::ServerAddress {
                grpc: url.clone(),
                dns: None,
            };
            let Ok(mut client) = self.shared.upstream.client(&server) else {
                continue;
            };
            let request = pb::NotifyRequest {
                zone: zone.origin().to_string(),
                serial: zone.header.serial,
            };
            tokio::spawn(async move {
                let mut request = tonic::Request::new(request);
                request.set_timeout(NOTIFY_TIMEOUT);
                match tokio::time::timeout(NOTIFY_TIMEOUT, client.notify(request)).await {
                    Ok(Ok(_)) => tracing::debug!(%url, "NOTIFY sent"),
                    Ok(Err(status)) => {
                        tracing::debug!(%url, code = ?status.code(), message = status.message(), "NOTIFY refused")
                    }
                    Err(_) => tracing::debug!(%url, "NOTIFY unanswered"),
                }
            });
        }
    }
}

/// How a staged job is answered once its batch is committed.
enum Reply {
    Register(Answer<Registered>, Registered),
    Renew(Answer<Lease>, Lease),
    Deregister(Answer<Deregistered>, Deregistered),
    Transfer(oneshot::Sender<Result<Applied, UpdateError>>),
    Nobody,
}

impl Reply {
    fn send(self, result: Result<u32, UpdateError>) {
        match self {
            Reply::Register(reply, done) => {
                let _ = reply.send(result.map(|serial| (done, serial)));
            }
            Reply::Renew(reply, done) => {
                let _ = reply.send(result.map(|serial| (done, serial)));
            }
            Reply::Deregister(reply, done) => {
                let _ = reply.send(result.map(|serial| (done, serial)));
            }
            Reply::Transfer(reply) => {
                let _ = reply.send(result.map(Applied::Serial));
            }
            Reply::Nobody => {}
        }
    }

    fn fail(self, error: UpdateError) {
        self.send(Err(error));
    }
}

/// A job applied in memory, waiting for its batch's commit.
struct Staged {
    zone: Name,
    write: ZoneWrite,
    names: Vec<Name>,
    /// The zone's records changed (publish, notify).
    changed: bool,
    serial: u32,
    reply: Reply,
}

struct Writer {
    authority: Authority,
    zones: HashMap<Name, LiveZone>,
    served: BTreeSet<Name>,
}

impl Writer {
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>, shutdown: CancellationToken) {
        loop {
            let delay = self.next_expiry_delay();
            let first = tokio::select! {
                () = shutdown.cancelled() => return,
                job = jobs.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
                () = tokio::time::sleep(delay) => Job::Expire,
            };
            let mut batch = vec![first, Job::Expire];
            while batch.len() < BATCH_MAX {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.run_batch(batch).await;
        }
    }

    /// How long until the next lease ends (at most a second, so a moved clock is noticed).
    fn next_expiry_delay(&self) -> Duration {
        let now = self.authority.shared.clock.unix_ms();
        let next = self
            .zones
            .values()
            .filter(|z| z.role == Role::Primary)
            .filter_map(LiveZone::next_expiry)
            .min();
        let wait = next.map_or(1000, |at| at.saturating_sub(now).min(1000));
        Duration::from_millis(wait)
    }

    async fn run_batch(&mut self, batch: Vec<Job>) {
        let mut staged: Vec<Staged> = Vec::new();
        for job in batch {
            self.stage(job, &mut staged);
        }
        if staged.is_empty() {
            return;
        }
        let writes: Vec<ZoneWrite> = staged
            .iter()
            .filter(|s| !s.write.is_empty())
            .map(|s| s.write.clone())
            .collect();
        let store = Arc::clone(&self.authority.shared.store);
        let committed = if writes.is_empty() {
            Ok(())
        } else {
            tokio::task::spawn_blocking(move || store.commit(&writes))
                .await
                .unwrap_or_else(|join| {
                    Err(StoreError::Io {
                        path: "(writer)".into(),
                        reason: join.to_string(),
                    })
                })
        };
        let touched: BTreeSet<Name> = staged.iter().map(|s| s.zone.clone()).collect();
        if let Err(error) = committed {
            tracing::error!(%error, "store commit failed; the batch is refused");
            self.restore(&touched);
            let message = error.to_string();
            for staged in staged {
                staged.reply.fail(UpdateError::Store(StoreError::Io {
                    path: self.authority.shared.store.path().to_path_buf(),
                    reason: message.clone(),
                }));
            }
            return;
        }
        let changed: BTreeSet<Name> = staged
            .iter()
            .filter(|s| s.changed)
            .map(|s| s.zone.clone())
            .collect();
        for zone in &changed {
            self.publish(zone);
        }
        let resolver = &self.authority.shared.resolver;
        for staged in &staged {
            for name in &staged.names {
                resolver.invalidate(name).await;
            }
        }
        self.update_status();
        for zone in &changed {
            if let Some(live) = self.zones.get(zone)
                && live.role == Role::Primary
            {
                self.authority.notify_secondaries(live);
            }
        }
        for staged in staged {
            let serial = staged.serial;
            staged.reply.send(Ok(serial));
        }
    }

    fn stage(&mut self, job: Job, staged: &mut Vec<Staged>) {
        let now = self.authority.shared.clock.unix_ms();
        match job {
            Job::Register {
                zone,
                registration,
                reply,
            } => self.stage_update(
                zone,
                reply,
                |live| live.register(registration, now),
                Reply::Register,
                staged,
            ),
            Job::Renew {
                zone,
                name,
                url,
                lease_secs,
                reply,
            } => self.stage_update(
                zone,
                reply,
                |live| live.renew(&name, &url, lease_secs, now),
                Reply::Renew,
                staged,
            ),
            Job::Deregister {
                zone,
                name,
                url,
                reply,
            } => self.stage_update(
                zone,
                reply,
                |live| live.deregister(&name, url.as_deref()),
                Reply::Deregister,
                staged,
            ),
            Job::Expire => {
                let origins: Vec<Name> = self
                    .zones
                    .iter()
                    .filter(|(_, z)| z.role == Role::Primary)
                    .filter(|(_, z)| z.next_expiry().is_some_and(|at| at <= now))
                    .map(|(n, _)| n.clone())
                    .collect();
                for origin in origins {
                    if let Some(live) = self.zones.get_mut(&origin) {
                        let edit = live.expire(now);
                        if !edit.changes.is_empty() || !edit.lease_deletes.is_empty() {
                            tracing::info!(zone = %origin, names = edit.names.len(), "leases expired");
                            staged.push(seal(live, origin, edit, None, Reply::Nobody));
                        }
                    }
                }
            }
            Job::Reload { files, reply } => {
                let mut results = Vec::new();
                for file in files {
                    let origin = file.origin().clone();
                    let result = match self.primary(&origin) {
                        Err(error) => Err(error),
                        Ok(live) => match live.reload(&file) {
                            Err(error) => Err(error),
                            Ok(None) => Ok(None),
                            Ok(Some((edit, floor))) => {
                                let mut step =
                                    seal(live, origin.clone(), edit, Some(floor), Reply::Nobody);
                                step.write.file_serial = Some(live.file_serial);
                                let serial = step.serial;
                                staged.push(step);
                                Ok(Some(serial))
                            }
                        },
                    };
                    results.push((origin, result));
                }
                // Reload answers before the commit; a failed commit is logged and the
                // zones are restored from the store.
                let _ = reply.send(results);
            }
            Job::Transfer { zone, data, reply } => {
                self.stage_transfer(zone, data, reply, now, staged);
            }
            Job::Withdraw { zone } => {
                if self.served.remove(&zone) {
                    tracing::warn!(%zone, "secondary expired: no answer from the primary within the zone's expire time; no longer answering for the zone");
                    self.authority.shared.catalog.remove(&zone);
                    self.update_status();
                }
            }
        }
    }

    /// Applies an update to its primary zone and stages it for the commit, or answers the
    /// update's error at once.
    fn stage_update<T>(
        &mut self,
        zone: Name,
        reply: Answer<T>,
        apply: impl FnOnce(&mut LiveZone) -> Result<(T, Edit), UpdateError>,
        answer: fn(Answer<T>, T) -> Reply,
        staged: &mut Vec<Staged>,
    ) {
        let applied = self.primary(&zone).and_then(|live| {
            let done = apply(live)?;
            Ok((live, done))
        });
        match applied {
            Err(error) => {
                let _ = reply.send(Err(error));
            }
            Ok((live, (done, edit))) => {
                staged.push(seal(live, zone, edit, None, answer(reply, done)));
            }
        }
    }

    fn stage_transfer(
        &mut self,
        zone: Name,
        data: TransferData,
        reply: oneshot::Sender<Result<Applied, UpdateError>>,
        now: u64,
        staged: &mut Vec<Staged>,
    ) {
        let Some(live) = self.zones.get_mut(&zone) else {
            let _ = reply.send(Err(UpdateError::NotServed { zone }));
            return;
        };
        let Role::Secondary { primary } = live.role.clone() else {
            let _ = reply.send(Err(UpdateError::NotServed { zone }));
            return;
        };
        let peer_error = |error: PeerDataError| UpdateError::Transfer {
            zone: zone.clone(),
            primary: primary.clone(),
            reason: error.to_string(),
        };
        let was_served = self.served.contains(&zone);
        match data {
            TransferData::UpToDate => {
                let mut write = ZoneWrite::new(zone.to_string());
                write.refreshed_unix_ms = Some(now);
                staged.push(Staged {
                    zone: zone.clone(),
                    write,
                    names: Vec::new(),
                    changed: !was_served,
                    serial: live.header.serial,
                    reply: Reply::Transfer(reply),
                });
            }
            TransferData::Full { header, records } => {
                let built = (|| {
                    let header = convert::zone_header_from(header)?;
                    if header.origin != zone {
                        return Err(PeerDataError::Missing {
                            field: "the zone asked for (the header names another zone)",
                        });
                    }
                    let mut next = LiveZone::empty(
                        header,
                        Role::Secondary {
                            primary: primary.clone(),
                        },
                    );
                    for record in records {
                        next.insert(convert::live_record(record)?);
                    }
                    Ok(next)
                })();
                let next = match built {
                    Ok(next) => next,
                    Err(error) => {
                        let _ = reply.send(Err(peer_error(error)));
                        return;
                    }
                };
                if let Err(errors) = next.snapshot() {
                    let reason = errors
                        .iter()
                        .map(|e| e.error.to_string())
                        .collect::<Vec<_>>()
                        .join("; ");
                    let _ = reply.send(Err(UpdateError::Transfer {
                        zone,
                        primary,
                        reason,
                    }));
                    return;
                }
                let names: Vec<Name> = live
                    .records()
                    .chain(next.records())
                    .map(|r: LiveRecord| r.name().clone())
                    .collect();
                *live = next;
                let mut write = live.full_write();
                write.refreshed_unix_ms = Some(now);
                staged.push(Staged {
                    zone: zone.clone(),
                    write,
                    names,
                    changed: true,
                    serial: live.header.serial,
                    reply: Reply::Transfer(reply),
                });
            }
            TransferData::Changes(changes) => {
                let before = live.clone();
                let mut write = ZoneWrite::new(zone.to_string());
                let mut names = Vec::new();
                for change in changes {
                    if change.from_serial != live.header.serial {
                        *live = before;
                        let _ = reply.send(Ok(Applied::NeedFull));
                        return;
                    }
                    match live.apply_change(&change) {
                        Ok(edit) => {
                            let step = live::edit_write(live, &edit, Some(change));
                            write.puts.extend(step.puts);
                            write.deletes.extend(step.deletes);
                            write.changes.extend(step.changes);
                            write.header = step.header;
                            names.extend(edit.names);
                        }
                        Err(error) => {
                            *live = before;
                            let _ = reply.send(Err(peer_error(error)));
                            return;
                        }
                    }
                }
                if let Err(errors) = live.snapshot() {
                    *live = before;
                    let reason = errors
                        .iter()
                        .map(|e| e.error.to_string())
                        .collect::<Vec<_>>()
                        .join("; ");
                    let _ = reply.send(Err(UpdateError::Transfer {
                        zone,
                        primary,
                        reason,
                    }));
                    return;
                }
                write.refreshed_unix_ms = Some(now);
                staged.push(Staged {
                    zone: zone.clone(),
                    write,
                    names,
                    changed: true,
                    serial: live.header.serial,
                    reply: Reply::Transfer(reply),
                });
            }
        }
        self.served.insert(zone);
    }

    fn primary(&mut self, zone: &Name) -> Result<&mut LiveZone, UpdateError> {
        match self.zones.get_mut(zone) {
            None => Err(UpdateError::NotServed { zone: zone.clone() }),
            Some(live) => match &live.role {
                Role::Primary => Ok(live),
                Role::Secondary { primary } => Err(UpdateError::Secondary {
                    zone: zone.clone(),
                    primary: primary.clone(),
                }),
            },
        }
    }

    /// Builds and serves the zone's new snapshot, and tells watchers its serial.
    fn publish(&mut self, zone: &Name) {
        let Some(live) = self.zones.get(zone) else {
            return;
        };
        if !self.served.contains(zone) {
            return;
        }
        match live.snapshot() {
            Ok(snapshot) => self.authority.shared.catalog.upsert(snapshot),
            Err(errors) => {
                tracing::error!(%zone, errors = ?errors, "a committed zone does not build; serving the previous snapshot");
                return;
            }
        }
        let serials = self
            .authority
            .shared
            .serials
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = serials.get(zone) {
            sender.send_replace(live.header.serial);
        }
    }

    fn update_status(&self) {
        let status: HashMap<Name, ZoneStatus> = self
            .zones
            .iter()
            .map(|(n, z)| (n.clone(), zone_status(z, self.served.contains(n))))
            .collect();
        self.authority.shared.status.store(Arc::new(status));
    }

    /// After a failed commit: the zones as the store has them.
    fn restore(&mut self, zones: &BTreeSet<Name>) {
        let loaded = match self.authority.shared.store.load() {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::error!(%error, "cannot reread the store after a failed commit");
                return;
            }
        };
        for data in loaded {
            match zone_from_store(data) {
                Ok(mut zone) => {
                    // The role as configured now (a secondary's primary comes from its flags).
                    let Some(current) = self.zones.get(zone.origin()) else {
                        continue;
                    };
                    if !zones.contains(zone.origin()) {
                        continue;
                    }
                    zone.role = current.role.clone();
                    self.zones.insert(zone.origin().clone(), zone);
                }
                Err((zone, reason)) => {
                    tracing::error!(%zone, %reason, "cannot reread a zone from the store after a failed commit");
                }
            }
        }
    }
}

/// A zone as the store holds it; an error names the zone and what is wrong.
fn zone_from_store(data: StoredZoneData) -> Result<LiveZone, (String, String)> {
    let header = data
        .meta
        .header
        .ok_or_else(|| ("?".to_string(), "no zone header".to_string()))?;
    let origin = header.origin.clone();
    let failed = |reason: String| (origin.clone(), reason);
    let header = convert::zone_header_from(header).map_err(|e| failed(e.to_string()))?;
    let role = if data.meta.primary_url.is_empty() {
        Role::Primary
    } else {
        Role::Secondary {
            primary: data.meta.primary_url,
        }
    };
    let mut zone = LiveZone::empty(header, role);
    zone.file_serial = data.meta.file_serial;
    for record in data.records {
        zone.insert(convert::live_record(record).map_err(|e| failed(e.to_string()))?);
    }
    for lease in data.leases {
        let agent = Name::parse(&lease.agent).map_err(|e| failed(e.to_string()))?;
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

/// Seals an edit into its zone's next serial and the store rows to commit.
fn seal(live: &mut LiveZone, zone: Name, edit: Edit, floor: Option<u32>, reply: Reply) -> Staged {
    let change = live.seal(&edit, floor);
    let changed = change.is_some();
    let write = live::edit_write(live, &edit, change);
    Staged {
        zone,
        write,
        names: edit.names,
        changed,
        serial: live.header.serial,
        reply,
    }
}
