//! Backup and restore of a node's store file (`aop store backup`, `aop store restore`).
//!
//! A backup is a fresh redb file holding every table of the store, copied in one read
//! transaction (one consistent snapshot), then opened again with every page's checksum
//! checked and every zone read back through the record rules before it takes its name. The
//! tables are read from a byte copy of the store taken under its lock and opened with every
//! checksum checked, so damage in the store is found rather than copied, and the store itself
//! is never written (that check commits). A
//! restore checks the backup the same way, on a copy beside the store it is to replace, and
//! only then swaps it in. Every file is written under a temporary name in its destination's
//! directory, fsynced, renamed over the destination and the directory fsynced, so a crash
//! leaves the old file or the new one under the name, never part of one. A forced restore
//! keeps the store it replaces as `aop.redb.before-restore`, linked under that name before
//! the rename, so the store's own name never goes missing.
//!
//! Why a copy through redb rather than `cp`: the copy is consistent by construction, holds no
//! freed pages, and is read back as a store before anything trusts it, so a backup a node
//! could not start on is an error when it is made, not when it is needed.
//!
//! Why only a stopped node: redb locks the file for the process that opens it for writing,
//! and no other process may then open it, not even read-only. Both commands open the store
//! read-only and refuse a locked one ([`BackupError::InUse`]); holding that open also keeps
//! a node from starting on the file while they work. A backup from a running node would need
//! a request to the node, and the one endpoint an operator reaches without credentials (the
//! admin endpoint) is read-only by design, so none is offered. A zone with a secondary stays
//! served while one of its servers is stopped for a backup.
//!
//! The store has no schema version number: a file is a store of this version when it holds
//! exactly the tables [`Store`](super::Store) creates, with their key and value types, and
//! its values decode. That is what is checked.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use prost::Message;
use redb::{
    Database, DatabaseError, Key, ReadOnlyDatabase, ReadTransaction, ReadableDatabase,
    ReadableTable, TableDefinition, TableHandle, Value, WriteTransaction,
};

use super::{
    CHANGE_INDEX, CHANGES, LEASES, NONCES, RECORDS, STORE_FILE, StoreError, ZONES, load_zones,
};
use crate::record::RecordKind;
use crate::wire::pb;

/// Appended to the store file's name for the store a forced restore replaced.
pub const KEPT_SUFFIX: &str = ".before-restore";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error(
        "no store at {}: --data-dir must be the node's data directory, where it keeps {STORE_FILE}",
        path.display()
    )]
    NoStore { path: PathBuf },
    #[error(
        "store {} is in use by a running node: {operation} needs the node stopped. Stop the node (SIGTERM; `systemctl stop` under systemd), run this again, then start the node",
        path.display()
    )]
    InUse {
        path: PathBuf,
        /// "a backup" or "a restore".
        operation: &'static str,
    },
    #[error(
        "store {} was not closed cleanly (the node crashed or was killed): start the node on it once, which recovers it, stop the node with SIGTERM, then back it up",
        path.display()
    )]
    NotClosedCleanly { path: PathBuf },
    #[error(
        "store {} cannot be backed up: {reason}; the file is damaged or not an aop store of this version",
        path.display()
    )]
    BadStore { path: PathBuf, reason: String },
    #[error(
        "backup {} cannot be restored: {reason}; nothing was changed. Restore from another backup file",
        path.display()
    )]
    BadBackup { path: PathBuf, reason: String },
    #[error("{} already exists: give --force to replace it, or choose another --out", path.display())]
    OutExists { path: PathBuf },
    #[error("--out {} is the store itself: write the backup to another file", path.display())]
    OutIsStore { path: PathBuf },
    #[error(
        "{} already holds a store ({held}): give --force to replace it (it is then kept as {}), or restore into another --data-dir",
        path.display(),
        kept.display()
    )]
    StoreExists {
        path: PathBuf,
        kept: PathBuf,
        held: String,
    },
    #[error(
        "{} exists, kept by an earlier restore: move it away (or delete it), then run this again",
        path.display()
    )]
    KeptExists { path: PathBuf },
    #[error("{}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
}

/// One zone of a store, as a backup or a restore reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSummary {
    pub origin: String,
    pub serial: u32,
    /// The primary's gRPC URL when the zone is held as a secondary; empty on a primary.
    pub primary_url: String,
    pub agents: usize,
    pub aliases: usize,
    pub delegations: usize,
    /// Endpoints registered live (each with its lease).
    pub live_endpoints: usize,
}

/// What a store file holds, read back and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSummary {
    pub path: PathBuf,
    pub bytes: u64,
    /// In name order.
    pub zones: Vec<ZoneSummary>,
    /// Entries of the zones' change logs.
    pub changes: u64,
}

impl StoreSummary {
    pub fn agents(&self) -> usize {
        self.zones.iter().map(|zone| zone.agents).sum()
    }

    /// Agents, aliases and delegations.
    pub fn records(&self) -> usize {
        self.zones
            .iter()
            .map(|zone| zone.agents + zone.aliases + zone.delegations)
            .sum()
    }

    /// "2 zones, 5 agents, 7 records".
    pub fn counts(&self) -> String {
        let plural = |n: usize, one: &str, many: &str| {
            if n == 1 {
                format!("1 {one}")
            } else {
                format!("{n} {many}")
            }
        };
        format!(
            "{}, {}, {}",
            plural(self.zones.len(), "zone", "zones"),
            plural(self.agents(), "agent", "agents"),
            plural(self.records(), "record", "records")
        )
    }
}

#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The store copied.
    pub store: PathBuf,
    /// The backup written (`path` is `--out`).
    pub backup: StoreSummary,
    /// An existing file at `--out` was replaced (`--force`).
    pub replaced: bool,
}

#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The backup file restored from.
    pub from: PathBuf,
    /// The store now in the data directory.
    pub store: StoreSummary,
    /// Where the store it replaced was kept (`--force`).
    pub kept: Option<PathBuf>,
}

/// Where a forced restore keeps the store it replaces.
pub fn kept_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_os_string();
    name.push(KEPT_SUFFIX);
    PathBuf::from(name)
}

/// Copies the store of the stopped node whose data directory is `data_dir` into `out` (a
/// file that exists is replaced only with `force`), and reports what the copy holds.
pub fn backup(data_dir: &Path, out: &Path, force: bool) -> Result<BackupReport, BackupError> {
    let store = data_dir.join(STORE_FILE);
    let size = match fs::metadata(&store) {
        Ok(meta) => meta.len(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(BackupError::NoStore { path: store });
        }
        Err(source) => {
            return Err(BackupError::Io {
                path: store,
                action: "cannot read the store",
                source,
            });
        }
    };
    let bad_store = |reason: String| BackupError::BadStore {
        path: store.clone(),
        reason,
    };
    if size == 0 {
        return Err(bad_store("the file is empty (0 bytes)".into()));
    }
    let replaced = out.exists();
    if replaced {
        if same_file(out, &store) {
            return Err(BackupError::OutIsStore {
                path: out.to_path_buf(),
            });
        }
        if !force {
            return Err(BackupError::OutExists {
                path: out.to_path_buf(),
            });
        }
    }
    let lock = match open_read_only(&store) {
        ReadOnly::Open(db) => db,
        ReadOnly::Locked => {
            return Err(BackupError::InUse {
                path: store,
                operation: "a backup",
            });
        }
        ReadOnly::NeedsRepair => return Err(BackupError::NotClosedCleanly { path: store }),
        ReadOnly::Unreadable(reason) => return Err(bad_store(reason)),
    };
    let dir = parent_dir(out);
    if let Err(source) = fs::metadata(&dir) {
        return Err(BackupError::Io {
            path: dir,
            action: "cannot write the backup in this directory",
            source,
        });
    }
    let write_failed = |source: io::Error| BackupError::Io {
        path: out.to_path_buf(),
        action: "cannot write the backup",
        source,
    };
    // The store's bytes, copied while the read-only open keeps every writer out; that copy is
    // opened with every page's checksum checked (which commits, so not on the store itself),
    // and the tables are read from it.
    let snapshot = TempFile::create(&dir, out, "snapshot").map_err(write_failed)?;
    copy_file(&store, &snapshot.path).map_err(write_failed)?;
    drop(lock);
    let mut temp = TempFile::create(&dir, out, "tmp").map_err(write_failed)?;
    let checked = open_checked(&snapshot.path).map_err(bad_store)?;
    {
        let txn = checked.begin_read().map_err(|e| bad_store(e.to_string()))?;
        check_tables(&txn).map_err(bad_store)?;
        copy_store(&txn, &temp.path).map_err(|reason| {
            write_failed(io::Error::other(format!(
                "{reason} (writing {})",
                temp.path.display()
            )))
        })?;
    }
    drop(checked);
    drop(snapshot);
    let mut summary = verify(&temp.path)
        .map_err(|reason| bad_store(format!("its copy does not read back: {reason}")))?;
    sync_file(&temp.path).map_err(write_failed)?;
    fs::rename(&temp.path, out).map_err(write_failed)?;
    temp.keep = true;
    sync_file(&dir).map_err(write_failed)?;
    summary.path = out.to_path_buf();
    Ok(BackupReport {
        store,
        backup: summary,
        replaced,
    })
}

/// Puts the backup `from` in place as the store of the stopped node whose data directory is
/// `data_dir` (created if missing): the backup is checked first, a store already there is
/// replaced only with `force`, and then kept beside as `aop.redb.before-restore`.
pub fn restore(data_dir: &Path, from: &Path, force: bool) -> Result<RestoreReport, BackupError> {
    let bad_backup = |reason: String| BackupError::BadBackup {
        path: from.to_path_buf(),
        reason,
    };
    match fs::metadata(from) {
        Ok(meta) if meta.is_dir() => return Err(bad_backup("it is a directory".into())),
        Ok(meta) if meta.len() == 0 => {
            return Err(bad_backup("the file is empty (0 bytes)".into()));
        }
        Ok(_) => {}
        Err(error) => return Err(bad_backup(error.to_string())),
    }
    let mut created = (!data_dir.exists()).then(|| CreatedDir {
        path: data_dir.to_path_buf(),
        keep: false,
    });
    fs::create_dir_all(data_dir).map_err(|source| BackupError::Io {
        path: data_dir.to_path_buf(),
        action: "cannot create the data directory",
        source,
    })?;
    let store = data_dir.join(STORE_FILE);
    // Open read-only, the store already there shows whether a node runs on it, and keeps one
    // from starting on it until the new file is in place.
    let (held, _guard) = if fs::symlink_metadata(&store).is_ok() {
        match open_read_only(&store) {
            ReadOnly::Locked => {
                return Err(BackupError::InUse {
                    path: store,
                    operation: "a restore",
                });
            }
            ReadOnly::Open(db) => (Some(describe(&db, &store)), Some(db)),
            ReadOnly::NeedsRepair => (Some("not closed cleanly".to_string()), None),
            ReadOnly::Unreadable(reason) => (Some(format!("which cannot be read: {reason}")), None),
        }
    } else {
        (None, None)
    };
    let write_failed = |source: io::Error| BackupError::Io {
        path: store.clone(),
        action: "cannot write the restored store",
        source,
    };
    let mut temp = TempFile::create(data_dir, &store, "restore").map_err(write_failed)?;
    copy_file(from, &temp.path).map_err(|error| bad_backup(error.to_string()))?;
    match_owner(&temp.path, data_dir).map_err(write_failed)?;
    let mut summary = verify(&temp.path).map_err(bad_backup)?;
    sync_file(&temp.path).map_err(write_failed)?;
    let kept = match held {
        None => None,
        Some(held) => {
            let kept = kept_path(&store);
            if !force {
                return Err(BackupError::StoreExists {
                    path: store,
                    kept,
                    held,
                });
            }
            if fs::symlink_metadata(&kept).is_ok() {
                return Err(BackupError::KeptExists { path: kept });
            }
            // A second name for the old file first, so the store's own name always names a
            // whole store: the old one until the rename below, the restored one after it.
            // Where hard links are not supported, a copy.
            let linked = fs::hard_link(&store, &kept)
                .or_else(|_| copy_file(&store, &kept).and_then(|()| sync_file(&kept)));
            linked.map_err(|source| BackupError::Io {
                path: kept.clone(),
                action: "cannot keep the store being replaced",
                source,
            })?;
            Some(kept)
        }
    };
    fs::rename(&temp.path, &store).map_err(write_failed)?;
    temp.keep = true;
    if let Some(created) = &mut created {
        created.keep = true;
    }
    sync_file(data_dir).map_err(write_failed)?;
    summary.path = store;
    Ok(RestoreReport {
        from: from.to_path_buf(),
        store: summary,
        kept,
    })
}

/// How a read-only open of a store file went.
enum ReadOnly {
    Open(ReadOnlyDatabase),
    /// Another process has it open: a running node.
    Locked,
    /// Not closed cleanly: it needs the repair a writable open makes, which a read-only one
    /// does not.
    NeedsRepair,
    Unreadable(String),
}

fn open_read_only(path: &Path) -> ReadOnly {
    // redb may panic on a file that is not a database at all (as `open_file_checked` notes).
    let opened = std::panic::catch_unwind(|| redb::Builder::new().open_read_only(path));
    match opened {
        Ok(Ok(db)) => ReadOnly::Open(db),
        Ok(Err(DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch)) => {
            ReadOnly::Locked
        }
        Ok(Err(DatabaseError::RepairAborted)) => ReadOnly::NeedsRepair,
        Ok(Err(error)) => ReadOnly::Unreadable(error.to_string()),
        Err(_) => ReadOnly::Unreadable("the storage engine failed while reading it".into()),
    }
}

/// A store held in the data directory, in a few words, for the message refusing to replace
/// it.
fn describe(db: &ReadOnlyDatabase, path: &Path) -> String {
    let Ok(txn) = db.begin_read() else {
        return "which cannot be read".into();
    };
    match load_zones(&txn, path, None) {
        Ok(zones) => {
            let summary = StoreSummary {
                path: path.to_path_buf(),
                bytes: 0,
                zones: zones.iter().map(zone_summary).collect(),
                changes: 0,
            };
            let names: Vec<String> = summary
                .zones
                .iter()
                .map(|zone| format!("{} serial {}", zone.origin, zone.serial))
                .collect();
            if names.is_empty() {
                summary.counts()
            } else {
                format!("{}: {}", summary.counts(), names.join(", "))
            }
        }
        Err(error) => format!("which cannot be read: {}", reason_of(&error)),
    }
}

/// The tables a store of this version holds, by name.
fn table_names() -> BTreeSet<String> {
    [
        ZONES.name(),
        RECORDS.name(),
        CHANGES.name(),
        CHANGE_INDEX.name(),
        LEASES.name(),
        NONCES.name(),
    ]
    .into_iter()
    .map(str::to_string)
    .collect()
}

/// Exactly the store's tables, with its key and value types.
fn check_tables(txn: &ReadTransaction) -> Result<(), String> {
    let expected = table_names();
    let found: BTreeSet<String> = txn
        .list_tables()
        .map_err(|e| e.to_string())?
        .map(|table| table.name().to_string())
        .collect();
    let list = || {
        expected
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(extra) = found.iter().find(|name| !expected.contains(*name)) {
        return Err(format!(
            "it holds a table {extra:?} this version of aop does not know (an aop store has {}; was it written by a newer aop?)",
            list()
        ));
    }
    if let Some(missing) = expected.iter().find(|name| !found.contains(*name)) {
        return Err(format!(
            "it has no table {missing:?} (an aop store has {})",
            list()
        ));
    }
    if let Some(table) = txn
        .list_multimap_tables()
        .map_err(|e| e.to_string())?
        .next()
    {
        return Err(format!(
            "it holds a multimap table {:?}, which an aop store never has",
            redb::MultimapTableHandle::name(&table)
        ));
    }
    // A table opened with other key or value types than its own is an error.
    let typed = |result: Result<(), redb::TableError>| result.map_err(|e| e.to_string());
    typed(txn.open_table(ZONES).map(drop))?;
    typed(txn.open_table(RECORDS).map(drop))?;
    typed(txn.open_table(CHANGES).map(drop))?;
    typed(txn.open_table(CHANGE_INDEX).map(drop))?;
    typed(txn.open_table(LEASES).map(drop))?;
    typed(txn.open_table(NONCES).map(drop))?;
    Ok(())
}

/// Every table of `txn` into a new database at `path` (an empty file), in one durable
/// transaction, then closed.
fn copy_store(txn: &ReadTransaction, path: &Path) -> Result<(), String> {
    let copy = Database::builder()
        .create(path)
        .map_err(|e| e.to_string())?;
    let mut write = copy.begin_write().map_err(|e| e.to_string())?;
    write
        .set_durability(redb::Durability::Immediate)
        .map_err(|e| e.to_string())?;
    copy_table(txn, &write, ZONES)?;
    copy_table(txn, &write, RECORDS)?;
    copy_table(txn, &write, CHANGES)?;
    copy_table(txn, &write, CHANGE_INDEX)?;
    copy_table(txn, &write, LEASES)?;
    copy_table(txn, &write, NONCES)?;
    write.commit().map_err(|e| e.to_string())?;
    copy.close().map_err(|e| e.to_string())
}

fn copy_table<K: Key + 'static, V: Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<(), String> {
    let failed =
        |error: &dyn std::fmt::Display| format!("copying table {:?}: {error}", table.name());
    let source = from.open_table(table).map_err(|e| failed(&e))?;
    let mut target = to.open_table(table).map_err(|e| failed(&e))?;
    for row in source.iter().map_err(|e| failed(&e))? {
        let (key, value) = row.map_err(|e| failed(&e))?;
        target
            .insert(key.value(), value.value())
            .map_err(|e| failed(&e))?;
    }
    Ok(())
}

/// Opens the store file at `path` (a copy just written here) with every page's checksum
/// checked, checks its tables and decodes every value; what it holds.
fn verify(path: &Path) -> Result<StoreSummary, String> {
    let db = open_checked(path)?;
    let (zones, changes) = {
        let txn = db.begin_read().map_err(|e| e.to_string())?;
        check_tables(&txn)?;
        let zones = load_zones(&txn, path, None).map_err(|e| reason_of(&e))?;
        let changes = check_change_log(&txn)?;
        (zones, changes)
    };
    db.close().map_err(|e| e.to_string())?;
    let bytes = fs::metadata(path).map_err(|e| e.to_string())?.len();
    let mut zones: Vec<ZoneSummary> = zones.iter().map(zone_summary).collect();
    zones.sort_by(|a, b| a.origin.cmp(&b.origin));
    Ok(StoreSummary {
        path: path.to_path_buf(),
        bytes,
        zones,
        changes,
    })
}

/// Opens the database at `path` (a copy made here: the check commits) with every page's
/// checksum checked.
fn open_checked(path: &Path) -> Result<Database, String> {
    let mut builder = Database::builder();
    builder.set_check_integrity_on_open(true);
    // redb may panic on a file that is not a database at all (as `open_file_checked` notes).
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.open(path)));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(error)) => Err(format!(
            "it does not open as an intact redb database: {error}"
        )),
        Err(_) => Err("the storage engine failed while reading it".into()),
    }
}

/// Every change-log entry decodes; how many there are.
fn check_change_log(txn: &ReadTransaction) -> Result<u64, String> {
    let changes = txn.open_table(CHANGES).map_err(|e| e.to_string())?;
    let mut count = 0;
    for row in changes.iter().map_err(|e| e.to_string())? {
        let (key, value) = row.map_err(|e| e.to_string())?;
        if let Err(error) = pb::ZoneChange::decode(value.value()) {
            let (zone, seq) = key.value();
            return Err(format!(
                "damaged change log entry {seq} for zone {zone}: {error}"
            ));
        }
        count += 1;
    }
    Ok(count)
}

fn zone_summary(zone: &super::StoredZoneData) -> ZoneSummary {
    let count = |kind: RecordKind| zone.records.iter().filter(|r| r.kind() == kind).count();
    ZoneSummary {
        origin: zone.header.origin.to_string(),
        serial: zone.header.serial,
        primary_url: zone.primary_url.clone(),
        agents: count(RecordKind::Agent),
        aliases: count(RecordKind::Alias),
        delegations: count(RecordKind::Delegation),
        live_endpoints: zone.leases.len(),
    }
}

/// A store error's reason without the file it names (a temporary copy, whose name would
/// only confuse).
fn reason_of(error: &StoreError) -> String {
    match error {
        StoreError::BadValue {
            zone, what, reason, ..
        } => format!("damaged {what} for zone {zone}: {reason}"),
        StoreError::Io { reason, .. } | StoreError::Corrupt { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// A file under a temporary name beside `destination`, removed unless `keep` is set (once it
/// has been renamed into place).
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// An empty file `.NAME.TAG-PID` in `dir`, NAME being `destination`'s file name.
    fn create(dir: &Path, destination: &Path, tag: &str) -> io::Result<TempFile> {
        let name = destination
            .file_name()
            .ok_or_else(|| io::Error::other("the path names no file"))?;
        let mut temp = std::ffi::OsString::from(".");
        temp.push(name);
        temp.push(format!(".{tag}-{}", std::process::id()));
        let path = dir.join(temp);
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(TempFile { path, keep: false })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A data directory a restore created, removed again (when empty) unless `keep` is set: a
/// refused restore leaves nothing behind.
struct CreatedDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for CreatedDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir(&self.path);
        }
    }
}

/// The directory a file is (to be) in: `.` for a bare file name.
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether two paths name one file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Copies the bytes of `from` into `to` (which exists, perhaps empty) and fsyncs them.
fn copy_file(from: &Path, to: &Path) -> io::Result<()> {
    let mut source = File::open(from)?;
    let mut target = fs::OpenOptions::new().write(true).truncate(true).open(to)?;
    io::copy(&mut source, &mut target)?;
    target.sync_all()
}

/// fsync of a file, or of a directory (which makes a rename in it durable).
fn sync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Gives `path` the owner and group of `dir` when they differ (a restore run as root into a
/// data directory a service user owns, such as systemd's `StateDirectory`, leaves a store
/// that user can open for writing).
#[cfg(unix)]
fn match_owner(path: &Path, dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (file, dir) = (fs::metadata(path)?, fs::metadata(dir)?);
    if (file.uid(), file.gid()) == (dir.uid(), dir.gid()) {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(dir.uid()), Some(dir.gid()))
}

#[cfg(not(unix))]
fn match_owner(_path: &Path, _dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RecordChange, ZoneChange, ZoneHeader};
    use crate::store::tests::{agent, header_of, name};
    use crate::store::{LeaseRow, Store, ZoneWrite};

    fn header(serial: u32) -> ZoneHeader {
        header_of("b.test", serial)
    }

    /// A data directory whose store holds b.test at serial 3 with two live agents.
    fn data_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path()).unwrap();
        let mut seed = ZoneWrite::new(name("b.test"));
        seed.clear = true;
        seed.header = Some(header(1));
        seed.file_serial = Some(1);
        store.commit(&[seed]).unwrap();
        for (from, agent_name) in [(1, "a.b.test"), (2, "c.b.test")] {
            let mut write = ZoneWrite::new(name("b.test"));
            write.header = Some(header(from + 1));
            write.puts.push(agent(agent_name));
            write.lease_puts.push(LeaseRow {
                agent: agent_name.into(),
                url: "http://a/mcp".into(),
                expires_unix_ms: u64::MAX,
                lease_secs: 60,
            });
            write.changes.push(ZoneChange {
                from_serial: from,
                serial: from + 1,
                changes: vec![RecordChange::Put(agent(agent_name))],
                header: header(from + 1),
            });
            store.commit(&[write]).unwrap();
        }
        drop(store);
        dir
    }

    #[test]
    fn a_backup_restored_elsewhere_holds_the_same_zones() {
        let source = data_dir();
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("b.redb");
        let report = backup(source.path(), &file, false).unwrap();
        assert_eq!(report.backup.path, file);
        assert_eq!(
            report.backup.zones,
            vec![ZoneSummary {
                origin: "b.test".into(),
                serial: 3,
                primary_url: String::new(),
                agents: 2,
                aliases: 0,
                delegations: 0,
                live_endpoints: 2,
            }]
        );
        assert_eq!(report.backup.changes, 2);
        assert_eq!(report.backup.bytes, fs::metadata(&file).unwrap().len());
        let leftovers: Vec<_> = fs::read_dir(out.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("b.redb")]);

        let target = tempfile::tempdir().unwrap();
        let fresh = target.path().join("node");
        let restored = restore(&fresh, &file, false).unwrap();
        assert_eq!(restored.store.zones, report.backup.zones);
        assert_eq!(restored.kept, None);
        let store = Store::open_dir(&fresh).unwrap();
        let zones = store.load().unwrap();
        assert_eq!(zones[0].header.serial, 3);
        assert_eq!(zones[0].records.len(), 2);
        assert_eq!(
            store.changes_since("b.test", 1).unwrap().map(|c| c.len()),
            Some(2),
            "the change log came along"
        );
    }

    #[test]
    fn an_existing_out_file_is_replaced_only_with_force() {
        let source = data_dir();
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("b.redb");
        fs::write(&file, b"older").unwrap();
        let error = backup(source.path(), &file, false).unwrap_err();
        assert!(matches!(error, BackupError::OutExists { .. }), "{error}");
        assert_eq!(fs::read(&file).unwrap(), b"older");
        assert!(backup(source.path(), &file, true).unwrap().replaced);
        let onto_itself = source.path().join(STORE_FILE);
        let error = backup(source.path(), &onto_itself, true).unwrap_err();
        assert!(matches!(error, BackupError::OutIsStore { .. }), "{error}");
    }

    #[test]
    fn a_missing_or_empty_store_is_named() {
        let empty = tempfile::tempdir().unwrap();
        let out = empty.path().join("x.redb");
        let error = backup(empty.path(), &out, false).unwrap_err().to_string();
        assert!(
            error.contains("no store at") && error.contains(STORE_FILE),
            "{error}"
        );
        fs::write(empty.path().join(STORE_FILE), b"").unwrap();
        let error = backup(empty.path(), &out, false).unwrap_err().to_string();
        assert!(error.contains("empty (0 bytes)"), "{error}");
        assert!(!out.exists());
    }

    #[test]
    fn a_damaged_store_is_refused_not_copied() {
        use std::io::{Seek, SeekFrom, Write};
        let source = data_dir();
        let store = source.path().join(STORE_FILE);
        let bytes = fs::read(&store).unwrap();
        let marker = b"c.b.test";
        let mut file = fs::OpenOptions::new().write(true).open(&store).unwrap();
        let mut hit = 0;
        for (page, chunk) in bytes.chunks(4096).enumerate() {
            if chunk.windows(marker.len()).any(|w| w == marker) {
                file.seek(SeekFrom::Start(page as u64 * 4096)).unwrap();
                file.write_all(&[0xA5; 4096]).unwrap();
                hit += 1;
            }
        }
        assert!(hit > 0);
        drop(file);
        let out = tempfile::tempdir().unwrap();
        let error = backup(source.path(), &out.path().join("b.redb"), false)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("store {} cannot be backed up", store.display())),
            "{error}"
        );
        assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0, "nothing left");
        assert_eq!(
            fs::read(&store).unwrap().len(),
            bytes.len(),
            "the store untouched"
        );
    }

    #[test]
    fn a_redb_file_with_other_tables_is_not_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("other.redb");
        {
            let db = Database::create(&file).unwrap();
            let txn = db.begin_write().unwrap();
            let table: TableDefinition<&str, u64> = TableDefinition::new("counters");
            txn.open_table(table).unwrap().insert("a", 1u64).unwrap();
            txn.commit().unwrap();
        }
        let target = dir.path().join("node");
        let error = restore(&target, &file, false).unwrap_err().to_string();
        assert!(
            error.contains("other.redb") && error.contains("\"counters\""),
            "{error}"
        );
        assert!(
            !target.exists(),
            "nothing was restored, and the directory the restore made is gone"
        );

        // The store's own tables with other types are refused too.
        let file = dir.path().join("typed.redb");
        {
            let db = Database::create(&file).unwrap();
            let txn = db.begin_write().unwrap();
            for table in table_names() {
                let wrong: TableDefinition<u64, u64> = TableDefinition::new(&table);
                txn.open_table(wrong).unwrap();
            }
            txn.commit().unwrap();
        }
        let error = restore(&target, &file, false).unwrap_err().to_string();
        assert!(error.contains("typed.redb"), "{error}");
    }
}
