//! The one task that changes zones: it drains queued jobs in batches, applies each to its
//! [`LiveZone`], commits the batch to the store in one durable transaction, and only then
//! publishes snapshots, drops cached answers, wakes watchers, NOTIFYs secondaries and
//! answers the callers. It also expires leases on a primary, at the time the clock says.
//!
//! A published snapshot is derived from the zone's previous one and the batch's record
//! changes ([`ZoneSnapshot::apply`]), so a change costs what it changes whatever the zone's
//! size; only whole-zone operations (a full transfer, a zone read back after a failed commit)
//! build one from every record.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::live::{
    self, AgentSource, Deregistered, Edit, HealthMark, Lease, LiveZone, Registered, Registration,
    Role,
};
use super::serve::News;
use super::{Applied, Authority, BATCH_MAX, ReloadResult, TransferData, UpdateError, ZoneStatus};
use super::{notify, zone_status};
use crate::name::Name;
use crate::record::{RecordChange, ZoneChange, serial_newer};
use crate::store::{StoreError, ZoneWrite};
use crate::wire::pb;
use crate::zone::{Lineage, ZoneSnapshot};

/// Where an update's outcome goes: what it did and the zone's serial after it.
type Answer<T> = oneshot::Sender<Result<(T, u32), UpdateError>>;

pub(super) enum Job {
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
    /// What the primary's probes concluded (docs/protocol.md §9.1).
    Health {
        zone: Name,
        marks: Vec<HealthMark>,
        reply: Answer<usize>,
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
    /// Read-only: answered after the batch it came in, from committed state.
    Describe {
        zones: Vec<(Name, Vec<Name>)>,
        reply: oneshot::Sender<HashMap<Name, Vec<AgentSource>>>,
    },
}

/// How a staged job is answered once its batch is committed.
enum Reply {
    Register(Answer<Registered>, Registered),
    Renew(Answer<Lease>, Lease),
    Deregister(Answer<Deregistered>, Deregistered),
    Health(Answer<usize>, usize),
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
            Reply::Health(reply, done) => {
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

pub(super) struct Writer {
    authority: Authority,
    zones: HashMap<Name, LiveZone>,
    served: BTreeSet<Name>,
    /// Zones whose memory may hold changes a failed commit did not store, and that could not
    /// be read back from the store yet: no batch commits until they are.
    dirty: BTreeSet<Name>,
    /// When each secondary zone last heard from its primary (Unix ms), as committed.
    refreshed: HashMap<Name, u64>,
    /// Names changed in zones whose last snapshot failed to build: the next published
    /// snapshot's lineage must carry them too.
    unpublished: HashMap<Name, Vec<Name>>,
    /// The snapshot each zone last published: what the next one is derived from.
    published: HashMap<Name, ZoneSnapshot>,
}

impl Writer {
    pub(super) fn new(
        authority: Authority,
        zones: HashMap<Name, LiveZone>,
        served: BTreeSet<Name>,
        refreshed: HashMap<Name, u64>,
    ) -> Writer {
        Writer {
            authority,
            zones,
            served,
            dirty: BTreeSet::new(),
            refreshed,
            unpublished: HashMap::new(),
            published: HashMap::new(),
        }
    }

    pub(super) async fn run(mut self, mut jobs: mpsc::Receiver<Job>, shutdown: CancellationToken) {
        loop {
            // The next lease to end, on the authority's clock (a test's manual clock wakes
            // this when it moves); with no lease, only jobs wake the writer.
            let expiry = match self.next_expiry() {
                Some(at) => self.authority.shared.clock.wait_until_unix_ms(at),
                None => Box::pin(std::future::pending()),
            };
            let first = tokio::select! {
                () = shutdown.cancelled() => return,
                job = jobs.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
                () = expiry => Job::Expire,
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

    /// When the next lease of a primary zone ends (Unix ms).
    fn next_expiry(&self) -> Option<u64> {
        self.zones
            .values()
            .filter(|z| z.role == Role::Primary)
            .filter_map(LiveZone::next_expiry)
            .min()
    }

    async fn run_batch(&mut self, batch: Vec<Job>) {
        let (describes, batch): (Vec<Job>, Vec<Job>) = batch
            .into_iter()
            .partition(|job| matches!(job, Job::Describe { .. }));
        self.apply_batch(batch).await;
        for job in describes {
            if let Job::Describe { zones, reply } = job {
                let _ = reply.send(self.describe(zones));
            }
        }
    }

    /// What [`Job::Describe`] asks, from the zones as committed.
    fn describe(&self, zones: Vec<(Name, Vec<Name>)>) -> HashMap<Name, Vec<AgentSource>> {
        zones
            .into_iter()
            .filter(|(zone, _)| !self.dirty.contains(zone))
            .filter_map(|(zone, names)| {
                let live = self.zones.get(&zone)?;
                Some((zone, live.describe(&names)))
            })
            .collect()
    }

    async fn apply_batch(&mut self, batch: Vec<Job>) {
        // Zones a failed commit left different from the store are read back first; until
        // they can be, nothing commits (so nothing uncommitted is ever published).
        let unreadable = if self.dirty.is_empty() {
            None
        } else {
            let dirty = std::mem::take(&mut self.dirty);
            match self.restore(&dirty) {
                Ok(()) => None,
                Err(error) => {
                    self.dirty = dirty;
                    Some(error)
                }
            }
        };
        let mut staged: Vec<Staged> = Vec::new();
        for job in batch {
            self.stage(job, &mut staged);
        }
        if staged.is_empty() {
            return;
        }
        if let Some(error) = unreadable {
            self.dirty.extend(staged.iter().map(|s| s.zone.clone()));
            for staged in staged {
                staged.reply.fail(UpdateError::Store(StoreError::Io {
                    path: self.authority.shared.store.path().to_path_buf(),
                    reason: format!("the store cannot be read back after a failed write: {error}"),
                }));
            }
            return;
        }
        let writes: Vec<ZoneWrite> = staged
            .iter()
            .filter(|s| !s.write.is_empty())
            .map(|s| s.write.clone())
            .collect();
        let store = Arc::clone(&self.authority.shared.store);
        // Nonces of the updates verified so far go to disk with (or before) their updates, so
        // a replay is refused after a restart too.
        let nonces = self.authority.shared.keys.take_accepted();
        let now = self.authority.shared.clock.unix_ms();
        let committed = if writes.is_empty() && nonces.is_empty() {
            Ok(())
        } else {
            tokio::task::spawn_blocking(move || store.commit_batch(&writes, &nonces, Some(now)))
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
            if let Err(reread) = self.restore(&touched) {
                tracing::error!(error = %reread, "cannot read the store back after a failed commit; updates are refused until it can be");
                self.dirty.extend(touched);
            }
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
            let mut names: Vec<Name> = staged
                .iter()
                .filter(|s| s.changed && &s.zone == zone)
                .flat_map(|s| s.names.iter().cloned())
                .collect();
            names.sort_unstable();
            names.dedup();
            let steps: Vec<&ZoneWrite> = staged
                .iter()
                .filter(|s| s.changed && &s.zone == zone)
                .map(|s| &s.write)
                .collect();
            self.publish(zone, names, &steps);
        }
        for staged in &staged {
            if let Some(at) = staged.write.refreshed_unix_ms {
                self.refreshed.insert(staged.zone.clone(), at);
            }
        }
        let listener = &self.authority.shared.listener;
        for staged in &staged {
            listener.names_changed(&staged.names).await;
        }
        // Readers see the new serial before watchers hear of it, so a stream opened in
        // between starts from the right place.
        self.update_status();
        self.announce(&staged);
        for zone in &changed {
            if let Some(live) = self.zones.get(zone)
                && live.role == Role::Primary
            {
                notify::notify_secondaries(&self.authority, live);
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
            Job::Health { zone, marks, reply } => self.stage_update(
                zone,
                reply,
                |live| Ok(live.mark_health(marks)),
                Reply::Health,
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
            // Taken out of the batch by `run_batch`.
            Job::Describe { zones, reply } => {
                let _ = reply.send(self.describe(zones));
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
        let was_served = self.served.contains(&zone);
        match data {
            TransferData::UpToDate => {
                let mut write = ZoneWrite::new(zone.clone());
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
                if was_served && serial_newer(live.header.serial, header.serial) {
                    tracing::error!(%zone, %primary, ours = live.header.serial, theirs = header.serial, "the primary's serial is older than ours: it may have lost its store; keeping our copy of the zone");
                    let _ = reply.send(Err(UpdateError::PrimaryBehind {
                        zone,
                        primary,
                        ours: live.header.serial,
                        theirs: header.serial,
                    }));
                    return;
                }
                if header.origin != zone {
                    let _ = reply.send(Err(UpdateError::Transfer {
                        zone,
                        primary,
                        reason: format!("the transfer is of zone {}", header.origin),
                    }));
                    return;
                }
                let next = LiveZone::from_records(
                    header,
                    Role::Secondary {
                        primary: primary.clone(),
                    },
                    records,
                );
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
                    .map(|r| r.name().clone())
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
                let mut write = ZoneWrite::new(zone.clone());
                let mut names = Vec::new();
                for change in changes {
                    if change.from_serial != live.header.serial {
                        *live = before;
                        let _ = reply.send(Ok(Applied::NeedFull));
                        return;
                    }
                    let edit = live.apply_change(&change);
                    let step = live::edit_write(live, &edit, Some(change));
                    write.puts.extend(step.puts);
                    write.deletes.extend(step.deletes);
                    write.changes.extend(step.changes);
                    write.header = step.header;
                    names.extend(edit.names);
                }
                let base = self.published.get(&zone).cloned().or_else(|| {
                    let served = self.authority.shared.catalog.zone(&zone).ok()?;
                    Some(ZoneSnapshot::clone(&served))
                });
                if let Err(reason) = next_snapshot(base.as_ref(), live, &[&write]) {
                    *live = before;
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

    /// Serves the zone's new snapshot, derived from the one it published last through the
    /// batch's `steps` (or built from every record when it cannot be), linked to the one it
    /// replaces by the names the batch changed (see [`Lineage`]).
    fn publish(&mut self, zone: &Name, mut changed: Vec<Name>, steps: &[&ZoneWrite]) {
        let Some(live) = self.zones.get(zone) else {
            return;
        };
        if !self.served.contains(zone) {
            return;
        }
        if let Some(earlier) = self.unpublished.remove(zone) {
            changed.extend(earlier);
            changed.sort_unstable();
            changed.dedup();
        }
        let catalog = &self.authority.shared.catalog;
        let served = catalog.zone(zone).ok();
        let previous = served.as_ref().map(|snapshot| snapshot.serial());
        let base = self
            .published
            .get(zone)
            .cloned()
            .or_else(|| served.map(|snapshot| ZoneSnapshot::clone(&snapshot)));
        match next_snapshot(base.as_ref(), live, steps) {
            Ok(snapshot) => {
                self.published.insert(zone.clone(), snapshot.clone());
                let snapshot = match previous {
                    Some(parent_serial) if parent_serial != snapshot.serial() => snapshot
                        .with_lineage(Lineage {
                            parent_serial,
                            changed: changed.into(),
                        }),
                    _ => snapshot,
                };
                catalog.upsert(snapshot)
            }
            Err(errors) => {
                self.unpublished.insert(zone.clone(), changed);
                tracing::error!(%zone, %errors, "a committed zone does not build; serving the previous snapshot");
            }
        }
    }

    /// Tells each zone's watchers what the batch committed: every serial step, encoded once
    /// for all of them, or a reset when a zone was replaced wholesale.
    fn announce(&self, staged: &[Staged]) {
        let news = self
            .authority
            .shared
            .news
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for step in staged.iter().filter(|s| s.changed) {
            let Some(sender) = news.get(&step.zone) else {
                continue;
            };
            if step.write.clear && step.write.changes.is_empty() {
                let _ = sender.send(Arc::new(News::Reset {
                    serial: step.serial,
                }));
            }
            for change in &step.write.changes {
                let _ = sender.send(Arc::new(News::Change(pb::ZoneChange::from(change))));
            }
        }
    }

    fn update_status(&self) {
        let status: HashMap<Name, ZoneStatus> = self
            .zones
            .iter()
            .map(|(n, z)| {
                let refreshed = self.refreshed.get(n).copied();
                (
                    n.clone(),
                    zone_status(z, self.served.contains(n), refreshed),
                )
            })
            .collect();
        self.authority.shared.status.store(Arc::new(status));
    }

    /// After a failed commit: the zones as the store has them. An error when the store
    /// cannot be read (the zones then stay as they are, and must not be published).
    fn restore(&mut self, zones: &BTreeSet<Name>) -> Result<(), StoreError> {
        let loaded = self.authority.shared.store.load()?;
        for data in loaded {
            match LiveZone::from_store(data) {
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
        Ok(())
    }
}

/// The zone's next snapshot: derived from `base` through the record changes of `steps` when
/// they follow on from it serial by serial (O(changed records)), else built from every
/// record of `live`. An error says which structural rules the zone breaks.
fn next_snapshot(
    base: Option<&ZoneSnapshot>,
    live: &LiveZone,
    steps: &[&ZoneWrite],
) -> Result<ZoneSnapshot, String> {
    let joined = |errors: Vec<String>| errors.join("; ");
    if let Some(base) = base
        && let Some(changes) = follows_on(base, live, steps)
    {
        match base.apply(live.header.clone(), changes) {
            Ok(snapshot) => return Ok(snapshot),
            Err(errors) => {
                let derived = joined(errors.iter().map(ToString::to_string).collect());
                // The derivation checks what `build` checks; should they ever disagree, the
                // build of every record decides.
                return match live.snapshot() {
                    Ok(snapshot) => {
                        tracing::error!(zone = %live.origin(), refused = %derived, "a derived snapshot was refused but the whole zone builds; serving the build");
                        Ok(snapshot)
                    }
                    Err(_) => Err(derived),
                };
            }
        }
    }
    live.snapshot()
        .map_err(|errors| joined(errors.iter().map(|e| e.error.to_string()).collect()))
}

/// The record changes that take `base` to `live`'s serial, in order, when `steps` hold them
/// all: one change-log entry after another from `base`'s serial, and no whole-zone write.
fn follows_on<'s>(
    base: &ZoneSnapshot,
    live: &LiveZone,
    steps: &[&'s ZoneWrite],
) -> Option<Vec<&'s RecordChange>> {
    let mut serial = base.serial();
    let mut changes = Vec::new();
    for step in steps {
        if step.clear {
            return None;
        }
        for change in &step.changes {
            let ZoneChange {
                from_serial,
                serial: to,
                ..
            } = change;
            if *from_serial != serial {
                return None;
            }
            serial = *to;
            changes.extend(change.changes.iter());
        }
    }
    (serial == live.header.serial && base.origin() == live.origin()).then_some(changes)
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
