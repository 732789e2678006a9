//! The durable zone store: one redb file per node (`<data-dir>/aop.redb`), or the same
//! tables in memory when a node runs without a data directory.
//!
//! Why redb: an embedded, pure-Rust, ACID key-value store with copy-on-write B-trees, MVCC
//! readers that never block the writer, checksummed pages and crash recovery; no server, no C
//! toolchain. A write transaction committed with `Durability::Immediate` is on disk (fsync)
//! when `commit` returns, and the zone authority acknowledges an update only after that, with
//! many updates sharing one commit (group commit), so fsync cost is paid per batch.
//!
//! What is kept, per zone:
//! - `zones`: the zone's header, the serial of the zone file last loaded, a secondary's
//!   primary, and the bounds of its change log (`pb::StoredZone`);
//! - `records`: every agent, alias and delegation (`pb::ZoneRecord`, keyed by kind and name);
//! - `changes`: the change log, one `pb::ZoneChange` per serial step, by sequence number,
//!   with an index from the serial a change starts at, so a transfer finds "changes since S"
//!   without a scan; the oldest entries are trimmed past [`CHANGE_LOG_MAX`];
//! - `leases`: when each live endpoint expires (a renewal writes only here: it changes no
//!   serial, but must survive a crash like any acknowledged update).
//!
//! And for the node: `nonces`, the update signatures' nonces accepted in the last replay
//! window, by expiry, so a captured update cannot be replayed after a restart either.
//!
//! Values are protobuf, the project's one encoding (`wire`): writes are typed records and
//! changes, encoded here; a zone read back at start goes through the wire's record checks, so
//! a damaged value is an error, never a silent loss. Transfers and Watch streams read the
//! messages as stored ([`Store::stream_transfer`], [`Store::changes_page`]): they leave in the
//! same encoding they were kept in, a bounded piece at a time.
//!
//! Opening checks every page's checksum (`set_check_integrity_on_open`); an empty file where
//! a store should be is refused like a damaged one; every error names the file. After a failed
//! write (a full disk, an I/O error) redb refuses further writes until the database is opened
//! again, so the store drops its handle and reopens on the next use: once the cause is gone,
//! writes succeed without a restart, and [`Store::write_error`] says meanwhile why they fail.
//!
//! A store in memory (a node without a data directory) keeps its `records` table as the
//! records themselves, not encoded: each holds the same `Arc` as the zone the node serves, so
//! a million file records are held once, not a second time as protobuf pages of an in-memory
//! database (that copy cost as much as the zone itself). The other tables stay in redb. The
//! records are an `imbl` map per zone, swapped in under a lock only after the redb commit
//! succeeded, and a reader takes its redb snapshot and the map's (O(1)) under the same lock,
//! so a transfer still reads one consistent state; they are encoded when read out.
//!
//! [`backup`] copies a stopped node's store into a fresh file and puts one back.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::name::Name;
use crate::record::{LiveRecord, RecordKind, ZoneChange, ZoneHeader};
use crate::wire::pb;
use std::collections::HashMap;

pub mod backup;

/// How many changes a zone's log keeps; older serials get a full transfer.
pub const CHANGE_LOG_MAX: u64 = 10_000;

/// The file inside a data directory.
pub const STORE_FILE: &str = "aop.redb";

/// redb's page cache for a store file. redb's default (1 GiB) keeps a second copy of a large
/// zone's records in memory after the commit that seeds it, while the node holds the zone
/// decoded anyway and reads the store in full only at start; the OS page cache serves those
/// reads. A commit of a batch of updates touches a few pages per table (the paths from the
/// roots to the keys it writes, a handful of levels deep), so 16 MiB holds them many times
/// over; more only keeps pages of the seeding commit resident that nothing reads again.
const FILE_CACHE_BYTES: usize = 16 << 20;
/// The same for a store in memory, whose backend holds every page already.
const MEMORY_CACHE_BYTES: usize = 4 << 20;

const ZONES: TableDefinition<&str, &[u8]> = TableDefinition::new("zones");
const RECORDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("records");
const CHANGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("changes");
const CHANGE_INDEX: TableDefinition<(&str, u32), u64> = TableDefinition::new("change_index");
/// (zone, agent, url) -> (expires at, Unix ms; lease seconds).
const LEASES: TableDefinition<(&str, &str, &str), (u64, u32)> = TableDefinition::new("leases");
/// (expires at, Unix ms; key name; nonce): accepted update nonces, by expiry for trimming.
const NONCES: TableDefinition<(u64, &str, &str), ()> = TableDefinition::new("nonces");

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot create data directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "store {} cannot be opened: {reason}; the file is damaged or not an aop store. Restore it from a backup, or move it aside to start empty (registrations in it would be lost)",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("store {} is in use by another process (is another node running on this data directory?)", path.display())]
    InUse { path: PathBuf },
    #[error("store {}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    #[error("store {}: damaged {what} for zone {zone}: {reason}", path.display())]
    BadValue {
        path: PathBuf,
        zone: String,
        what: &'static str,
        reason: String,
    },
}

/// A lease row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub agent: String,
    pub url: String,
    pub expires_unix_ms: u64,
    pub lease_secs: u32,
}

/// A zone as read back at start, checked.
#[derive(Debug, Clone)]
pub struct StoredZoneData {
    pub header: ZoneHeader,
    /// The serial of the zone file last loaded (primaries).
    pub file_serial: u32,
    /// The primary's gRPC URL (secondaries); empty on a primary.
    pub primary_url: String,
    /// When a secondary last heard from its primary, milliseconds since the Unix epoch.
    pub refreshed_unix_ms: u64,
    pub records: Vec<LiveRecord>,
    pub leases: Vec<LeaseRow>,
}

/// A zone's header and records as stored (wire messages, not decoded).
pub type StoredRecords = (Option<pb::ZoneHeader>, Vec<pb::ZoneRecord>);

/// What one zone's part of a commit changes.
#[derive(Debug, Clone)]
pub struct ZoneWrite {
    pub origin: Name,
    /// Replace everything held for the zone (a full transfer).
    pub clear: bool,
    pub header: Option<ZoneHeader>,
    pub file_serial: Option<u32>,
    pub primary_url: Option<String>,
    pub refreshed_unix_ms: Option<u64>,
    pub puts: Vec<LiveRecord>,
    pub deletes: Vec<(RecordKind, Name)>,
    /// Appended to the change log in order.
    pub changes: Vec<ZoneChange>,
    pub lease_puts: Vec<LeaseRow>,
    /// (agent, url)
    pub lease_deletes: Vec<(String, String)>,
}

impl ZoneWrite {
    pub fn new(origin: Name) -> ZoneWrite {
        ZoneWrite {
            origin,
            clear: false,
            header: None,
            file_serial: None,
            primary_url: None,
            refreshed_unix_ms: None,
            puts: Vec::new(),
            deletes: Vec::new(),
            changes: Vec::new(),
            lease_puts: Vec::new(),
            lease_deletes: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.clear
            && self.header.is_none()
            && self.file_serial.is_none()
            && self.primary_url.is_none()
            && self.refreshed_unix_ms.is_none()
            && self.puts.is_empty()
            && self.deletes.is_empty()
            && self.changes.is_empty()
            && self.lease_puts.is_empty()
            && self.lease_deletes.is_empty()
    }
}

/// An update nonce accepted, kept until the replay window has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceRow {
    pub key: String,
    pub nonce: String,
    pub expires_unix_ms: u64,
}

/// One item of a transfer, in the order the store hands them out.
#[derive(Debug)]
pub enum TransferItem {
    /// First: the header at the serial transferred to, and whether records follow (a full
    /// transfer) or changes (an incremental one).
    Start {
        header: Option<pb::ZoneHeader>,
        full: bool,
    },
    Record(pb::ZoneRecord),
    Change(pb::ZoneChange),
}

/// Opens a store's database on a custom backend (a test's faulty disk), once at start and
/// again after a failed write.
pub type DatabaseOpener = Arc<dyn Fn() -> Result<Database, String> + Send + Sync>;

/// How the store's database is (re)opened.
enum Source {
    File,
    Memory,
    Custom(DatabaseOpener),
}

/// Opens (or creates) a store file, checking every page; an existing file that is empty is
/// refused like a damaged one rather than started empty.
fn open_file_checked(path: &Path) -> Result<Database, StoreError> {
    let path = path.to_path_buf();
    let existing = std::fs::metadata(&path).ok().map(|m| m.len());
    if existing == Some(0) {
        return Err(StoreError::Corrupt {
            path,
            reason: "the file is empty (0 bytes), where a store was expected".into(),
        });
    }
    let mut builder = Database::builder();
    builder.set_check_integrity_on_open(true);
    builder.set_cache_size(FILE_CACHE_BYTES);
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.create(&path)));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(StoreError::InUse { path }),
        Ok(Err(error)) if existing.is_some() => Err(StoreError::Corrupt {
            path,
            reason: error.to_string(),
        }),
        Ok(Err(error)) => Err(StoreError::Io {
            path,
            reason: error.to_string(),
        }),
        Err(_) => Err(StoreError::Corrupt {
            path,
            reason: "the storage engine failed while reading it".into(),
        }),
    }
}

/// An I/O error of the store file at `path`.
fn io_error(path: &Path, error: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

/// A value of `zone` in the store file at `path` that does not decode or breaks the rules.
fn bad_value(
    path: &Path,
    zone: &str,
    what: &'static str,
    reason: impl std::fmt::Display,
) -> StoreError {
    StoreError::BadValue {
        path: path.to_path_buf(),
        zone: zone.to_string(),
        what,
        reason: reason.to_string(),
    }
}

/// Why a stored value was refused: its bytes, or what they say.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    #[error("{0}")]
    Undecodable(#[from] prost::DecodeError),
    #[error("{0}")]
    Rules(#[from] crate::wire::PeerDataError),
    #[error("no zone header")]
    NoHeader,
}

/// The value of a `zones` row decoded, its header checked by the record rules. (Public for
/// the fuzz targets, which feed it arbitrary bytes: a damaged file is input like any other.)
pub fn decode_zone_value(bytes: &[u8]) -> Result<(pb::StoredZone, ZoneHeader), ValueError> {
    let mut meta = pb::StoredZone::decode(bytes)?;
    let header = ZoneHeader::try_from(meta.header.take().ok_or(ValueError::NoHeader)?)?;
    Ok((meta, header))
}

/// The value of a `records` row decoded and checked by the record rules.
pub fn decode_record_value(bytes: &[u8]) -> Result<LiveRecord, ValueError> {
    Ok(LiveRecord::try_from(pb::ZoneRecord::decode(bytes)?)?)
}

/// Every zone in one read transaction of the store file at `path` (the node's own store, or
/// a backup being checked), with its records and leases, each value decoded and checked by
/// the record rules.
fn load_zones(
    txn: &redb::ReadTransaction,
    path: &Path,
    memory: Option<&MemoryRecords>,
) -> Result<Vec<StoredZoneData>, StoreError> {
    let io = |error: &dyn std::fmt::Display| io_error(path, error);
    let zones = txn.open_table(ZONES).map_err(|e| io(&e))?;
    let records = txn.open_table(RECORDS).map_err(|e| io(&e))?;
    let leases = txn.open_table(LEASES).map_err(|e| io(&e))?;
    let mut out = Vec::new();
    for row in zones.iter().map_err(|e| io(&e))? {
        let (origin, value) = row.map_err(|e| io(&e))?;
        let origin = origin.value().to_string();
        let (meta, header) = decode_zone_value(value.value())
            .map_err(|e| bad_value(path, &origin, "zone header", e))?;
        let mut zone_records = Vec::new();
        if let Some(memory) = memory {
            zone_records.extend(
                memory
                    .get(origin.as_str())
                    .into_iter()
                    .flat_map(|m| m.values().cloned()),
            );
        }
        for row in records.range((origin.as_str(), "")..).map_err(|e| io(&e))? {
            let (key, value) = row.map_err(|e| io(&e))?;
            if key.value().0 != origin {
                break;
            }
            let record = decode_record_value(value.value())
                .map_err(|e| bad_value(path, &origin, "record", e))?;
            zone_records.push(record);
        }
        let mut zone_leases = Vec::new();
        for row in leases
            .range((origin.as_str(), "", "")..)
            .map_err(|e| io(&e))?
        {
            let (key, value) = row.map_err(|e| io(&e))?;
            let (zone, agent, url) = key.value();
            if zone != origin {
                break;
            }
            let (expires_unix_ms, lease_secs) = value.value();
            zone_leases.push(LeaseRow {
                agent: agent.to_string(),
                url: url.to_string(),
                expires_unix_ms,
                lease_secs,
            });
        }
        out.push(StoredZoneData {
            header,
            file_serial: meta.file_serial,
            primary_url: meta.primary_url,
            refreshed_unix_ms: meta.refreshed_unix_ms,
            records: zone_records,
            leases: zone_leases,
        });
    }
    Ok(out)
}

/// The store key of a record: its kind and name (`agent/analyst.finance.acme`).
pub fn record_key(kind: RecordKind, name: &Name) -> String {
    format!("{}/{name}", kind.word())
}

/// The records of an in-memory store: per zone, by kind and name.
type MemoryRecords = HashMap<String, imbl::OrdMap<(RecordKind, Name), LiveRecord>>;

/// The node's store.
pub struct Store {
    /// The database; `None` after a failed write dropped it, until the next use reopens it.
    // std RwLock: held to clone or replace the handle, never across an await.
    db: RwLock<Option<Arc<Database>>>,
    source: Source,
    /// The file, or a description of the in-memory store, for messages.
    path: PathBuf,
    /// Why the last commit failed, until one succeeds.
    write_error: Mutex<Option<String>>,
    /// Reads of the change log (pages of changes), for tests and benchmarks of watchers.
    log_reads: std::sync::atomic::AtomicU64,
    /// An in-memory store's records, decoded (see the module doc); `None` for a file. Held
    /// for writing across a commit, for reading while a reader opens its redb snapshot.
    memory: Option<RwLock<MemoryRecords>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

impl Store {
    /// Opens (or creates) `<dir>/aop.redb`, checking every page.
    pub fn open_dir(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        Store::open_file(&dir.join(STORE_FILE))
    }

    pub fn open_file(path: &Path) -> Result<Store, StoreError> {
        let store = Store {
            db: RwLock::new(None),
            source: Source::File,
            path: path.to_path_buf(),
            write_error: Mutex::new(None),
            log_reads: std::sync::atomic::AtomicU64::new(0),
            memory: None,
        };
        store.open()?;
        store.create_tables()?;
        Ok(store)
    }

    /// A store in memory: nothing survives the process (nodes without `--data-dir`).
    pub fn in_memory() -> Result<Store, StoreError> {
        let store = Store {
            db: RwLock::new(None),
            source: Source::Memory,
            path: PathBuf::from("(in memory)"),
            write_error: Mutex::new(None),
            log_reads: std::sync::atomic::AtomicU64::new(0),
            memory: Some(RwLock::new(HashMap::new())),
        };
        store.open()?;
        store.create_tables()?;
        Ok(store)
    }

    /// A store whose database `opener` opens (once at start, again after a failed write);
    /// `path` names it in messages.
    pub fn with_opener(path: &Path, opener: DatabaseOpener) -> Result<Store, StoreError> {
        let store = Store {
            db: RwLock::new(None),
            source: Source::Custom(opener),
            path: path.to_path_buf(),
            write_error: Mutex::new(None),
            log_reads: std::sync::atomic::AtomicU64::new(0),
            memory: None,
        };
        store.open()?;
        store.create_tables()?;
        Ok(store)
    }

    /// Opens the database and puts it in its slot.
    fn open(&self) -> Result<Arc<Database>, StoreError> {
        let path = self.path.clone();
        let db = match &self.source {
            Source::Memory => Database::builder()
                .set_cache_size(MEMORY_CACHE_BYTES)
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .map_err(|error| StoreError::Io {
                    path,
                    reason: error.to_string(),
                })?,
            Source::File => open_file_checked(&path)?,
            Source::Custom(opener) => opener().map_err(|reason| StoreError::Io { path, reason })?,
        };
        let db = Arc::new(db);
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&db));
        Ok(db)
    }

    /// The database, reopened if a failed write dropped it (not the in-memory one: its data
    /// lives in the handle, which is never dropped).
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        if let Some(db) = self.db.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(Arc::clone(db));
        }
        let db = self.open()?;
        tracing::warn!(store = %self.path.display(), "store reopened after a failed write");
        Ok(db)
    }

    /// Drops the database handle after a failed write, so the next use opens it again
    /// (redb refuses every write after an I/O error until then).
    fn reset_after_failure(&self) {
        if matches!(self.source, Source::Memory) {
            return;
        }
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Pages of the change log read so far (Watch catch-ups, not the broadcast of new
    /// changes, which reads nothing).
    pub fn log_reads(&self) -> u64 {
        self.log_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Why the last commit failed, if it did and none has succeeded since: the store cannot
    /// take writes now (a full disk, say).
    pub fn write_error(&self) -> Option<String> {
        self.write_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, error: impl std::fmt::Display) -> StoreError {
        io_error(&self.path, error)
    }

    fn create_tables(&self) -> Result<(), StoreError> {
        let txn = self.db()?.begin_write().map_err(|e| self.io(e))?;
        txn.open_table(ZONES).map_err(|e| self.io(e))?;
        txn.open_table(RECORDS).map_err(|e| self.io(e))?;
        txn.open_table(CHANGES).map_err(|e| self.io(e))?;
        txn.open_table(CHANGE_INDEX).map_err(|e| self.io(e))?;
        txn.open_table(LEASES).map_err(|e| self.io(e))?;
        txn.open_table(NONCES).map_err(|e| self.io(e))?;
        txn.commit().map_err(|e| self.io(e))
    }

    fn bad(&self, zone: &str, what: &'static str, reason: impl std::fmt::Display) -> StoreError {
        bad_value(&self.path, zone, what, reason)
    }

    /// Every zone held, with its records and leases, checked like any input: a value that
    /// does not decode, or breaks the record rules, is an error naming the zone.
    pub fn load(&self) -> Result<Vec<StoredZoneData>, StoreError> {
        let (txn, memory) = self.begin_read()?;
        load_zones(&txn, &self.path, memory.as_ref())
    }

    /// A read transaction, with an in-memory store's records as of the same commit.
    fn begin_read(&self) -> Result<(redb::ReadTransaction, Option<MemoryRecords>), StoreError> {
        let db = self.db()?;
        match &self.memory {
            None => Ok((db.begin_read().map_err(|e| self.io(e))?, None)),
            Some(memory) => {
                let memory = memory.read().unwrap_or_else(|p| p.into_inner());
                let txn = db.begin_read().map_err(|e| self.io(e))?;
                Ok((txn, Some(memory.clone())))
            }
        }
    }

    /// The zone's header as stored.
    pub fn header(&self, origin: &str) -> Result<Option<pb::ZoneHeader>, StoreError> {
        let txn = self.db()?.begin_read().map_err(|e| self.io(e))?;
        let zones = txn.open_table(ZONES).map_err(|e| self.io(e))?;
        Ok(match zones.get(origin).map_err(|e| self.io(e))? {
            Some(value) => {
                pb::StoredZone::decode(value.value())
                    .map_err(|e| self.bad(origin, "zone header", e))?
                    .header
            }
            None => None,
        })
    }

    /// The changes that take the zone from `since` onwards, at most `max_changes` and about
    /// `max_bytes` of them (at least one): `Some(empty)` when `since` is the zone's serial,
    /// `None` when the log no longer reaches back to `since` (the asker needs the whole zone).
    pub fn changes_page(
        &self,
        origin: &str,
        since: u32,
        max_changes: usize,
        max_bytes: usize,
    ) -> Result<Option<Vec<pb::ZoneChange>>, StoreError> {
        self.log_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let txn = self.db()?.begin_read().map_err(|e| self.io(e))?;
        let zones = txn.open_table(ZONES).map_err(|e| self.io(e))?;
        let serial = match zones.get(origin).map_err(|e| self.io(e))? {
            Some(value) => pb::StoredZone::decode(value.value())
                .map_err(|e| self.bad(origin, "zone header", e))?
                .header
                .map(|h| h.serial),
            None => return Ok(None),
        };
        if serial == Some(since) {
            // Up to date: no changes, and not a reason for a full transfer.
            return Ok(Some(Vec::new()));
        }
        let index = txn.open_table(CHANGE_INDEX).map_err(|e| self.io(e))?;
        let Some(first) = index.get((origin, since)).map_err(|e| self.io(e))? else {
            return Ok(None);
        };
        let first = first.value();
        let changes = txn.open_table(CHANGES).map_err(|e| self.io(e))?;
        let mut out = Vec::new();
        let mut bytes = 0;
        for row in changes
            .range((origin, first)..(origin, u64::MAX))
            .map_err(|e| self.io(e))?
        {
            if out.len() >= max_changes || (bytes >= max_bytes && !out.is_empty()) {
                break;
            }
            let (_, value) = row.map_err(|e| self.io(e))?;
            bytes += value.value().len();
            out.push(
                pb::ZoneChange::decode(value.value())
                    .map_err(|e| self.bad(origin, "change log entry", e))?,
            );
        }
        Ok(Some(out))
    }

    /// Every change since `since` (see [`Store::changes_page`]), unbounded: for tests and small
    /// zones; transfers and watchers read in pages.
    pub fn changes_since(
        &self,
        origin: &str,
        since: u32,
    ) -> Result<Option<Vec<pb::ZoneChange>>, StoreError> {
        self.changes_page(origin, since, usize::MAX, usize::MAX)
    }

    /// A transfer read from one consistent snapshot of the store, handed to `sink` an item at
    /// a time (a [`TransferItem::Start`] first): the changes since `since` when the log still
    /// reaches back to it, else every record. `sink` may stop the reading early
    /// ([`ControlFlow::Break`]). Returns false when the store does not hold the zone.
    pub fn stream_transfer(
        &self,
        origin: &str,
        since: Option<u32>,
        sink: &mut dyn FnMut(TransferItem) -> ControlFlow<()>,
    ) -> Result<bool, StoreError> {
        let (txn, memory) = self.begin_read()?;
        let zones = txn.open_table(ZONES).map_err(|e| self.io(e))?;
        let Some(value) = zones.get(origin).map_err(|e| self.io(e))? else {
            return Ok(false);
        };
        let meta = pb::StoredZone::decode(value.value())
            .map_err(|e| self.bad(origin, "zone header", e))?;
        let serial = meta.header.as_ref().map(|h| h.serial);
        // The log holds the changes from `since` to the header's serial, in one snapshot.
        let first = match since {
            Some(since) if serial == Some(since) => {
                let _ = sink(TransferItem::Start {
                    header: meta.header,
                    full: false,
                });
                return Ok(true);
            }
            Some(since) => txn
                .open_table(CHANGE_INDEX)
                .map_err(|e| self.io(e))?
                .get((origin, since))
                .map_err(|e| self.io(e))?
                .map(|seq| seq.value()),
            None => None,
        };
        if let Some(first) = first {
            if sink(TransferItem::Start {
                header: meta.header,
                full: false,
            })
            .is_break()
            {
                return Ok(true);
            }
            let changes = txn.open_table(CHANGES).map_err(|e| self.io(e))?;
            for row in changes
                .range((origin, first)..(origin, u64::MAX))
                .map_err(|e| self.io(e))?
            {
                let (_, value) = row.map_err(|e| self.io(e))?;
                let change = pb::ZoneChange::decode(value.value())
                    .map_err(|e| self.bad(origin, "change log entry", e))?;
                if sink(TransferItem::Change(change)).is_break() {
                    break;
                }
            }
            return Ok(true);
        }
        if sink(TransferItem::Start {
            header: meta.header,
            full: true,
        })
        .is_break()
        {
            return Ok(true);
        }
        if let Some(memory) = memory {
            for record in memory.get(origin).into_iter().flat_map(|m| m.values()) {
                if sink(TransferItem::Record(pb::ZoneRecord::from(record))).is_break() {
                    break;
                }
            }
            return Ok(true);
        }
        let records = txn.open_table(RECORDS).map_err(|e| self.io(e))?;
        for row in records.range((origin, "")..).map_err(|e| self.io(e))? {
            let (key, value) = row.map_err(|e| self.io(e))?;
            if key.value().0 != origin {
                break;
            }
            let record =
                pb::ZoneRecord::decode(value.value()).map_err(|e| self.bad(origin, "record", e))?;
            if sink(TransferItem::Record(record)).is_break() {
                break;
            }
        }
        Ok(true)
    }

    /// The update nonces accepted before that have not expired at `now_ms` (a restarted node
    /// still refuses their replay).
    pub fn live_nonces(&self, now_ms: u64) -> Result<Vec<NonceRow>, StoreError> {
        let txn = self.db()?.begin_read().map_err(|e| self.io(e))?;
        let nonces = txn.open_table(NONCES).map_err(|e| self.io(e))?;
        let mut out = Vec::new();
        for row in nonces.range((now_ms, "", "")..).map_err(|e| self.io(e))? {
            let (key, ()) = row.map(|(k, v)| (k, v.value())).map_err(|e| self.io(e))?;
            let (expires_unix_ms, key, nonce) = key.value();
            out.push(NonceRow {
                key: key.to_string(),
                nonce: nonce.to_string(),
                expires_unix_ms,
            });
        }
        Ok(out)
    }

    /// Commits every write in one transaction, durable (fsync) before it returns.
    pub fn commit(&self, writes: &[ZoneWrite]) -> Result<(), StoreError> {
        self.commit_batch(writes, &[], None)
    }

    /// Commits zone writes and accepted update nonces in one durable transaction, trimming
    /// nonces that expired before `now_ms`. A failure is remembered ([`Store::write_error`])
    /// until a commit succeeds, and drops the database handle so the next use reopens it.
    pub fn commit_batch(
        &self,
        writes: &[ZoneWrite],
        nonces: &[NonceRow],
        now_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let result = self.write_batch(writes, nonces, now_ms);
        let mut last = self.write_error.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(()) => *last = None,
            Err(error) => {
                *last = Some(error.to_string());
                drop(last);
                self.reset_after_failure();
            }
        }
        result
    }

    fn write_batch(
        &self,
        writes: &[ZoneWrite],
        nonces: &[NonceRow],
        now_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        // An in-memory store's records: changed on a copy (O(1) to take), put in place only
        // once the transaction has committed, readers held off meanwhile.
        let mut memory = self
            .memory
            .as_ref()
            .map(|m| m.write().unwrap_or_else(|p| p.into_inner()));
        let mut records_after = memory.as_deref().cloned();
        let mut txn = self.db()?.begin_write().map_err(|e| self.io(e))?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(|e| self.io(e))?;
        {
            let mut zones = txn.open_table(ZONES).map_err(|e| self.io(e))?;
            let mut records = txn.open_table(RECORDS).map_err(|e| self.io(e))?;
            let mut changes = txn.open_table(CHANGES).map_err(|e| self.io(e))?;
            let mut index = txn.open_table(CHANGE_INDEX).map_err(|e| self.io(e))?;
            let mut leases = txn.open_table(LEASES).map_err(|e| self.io(e))?;
            for write in writes {
                let origin = write.origin.as_str();
                let mut meta = match zones.get(origin).map_err(|e| self.io(e))? {
                    Some(value) => pb::StoredZone::decode(value.value())
                        .map_err(|e| self.bad(origin, "zone header", e))?,
                    None => pb::StoredZone::default(),
                };
                let mut in_memory = records_after
                    .as_mut()
                    .map(|m| m.entry(origin.to_string()).or_default());
                if write.clear {
                    if let Some(map) = in_memory.as_deref_mut() {
                        map.clear();
                    }
                    records
                        .retain_in((origin, "")..=(origin, "\u{10ffff}"), |_, _| false)
                        .map_err(|e| self.io(e))?;
                    changes
                        .retain_in((origin, 0)..=(origin, u64::MAX), |_, _| false)
                        .map_err(|e| self.io(e))?;
                    index
                        .retain_in((origin, 0)..=(origin, u32::MAX), |_, _| false)
                        .map_err(|e| self.io(e))?;
                    leases
                        .retain_in(
                            (origin, "", "")..=(origin, "\u{10ffff}", "\u{10ffff}"),
                            |_, _| false,
                        )
                        .map_err(|e| self.io(e))?;
                    meta.first_seq = meta.next_seq;
                }
                if let Some(header) = &write.header {
                    meta.header = Some(pb::ZoneHeader::from(header));
                }
                if let Some(serial) = write.file_serial {
                    meta.file_serial = serial;
                }
                if let Some(url) = &write.primary_url {
                    meta.primary_url.clone_from(url);
                }
                if let Some(at) = write.refreshed_unix_ms {
                    meta.refreshed_unix_ms = at;
                }
                for (kind, name) in &write.deletes {
                    if let Some(map) = in_memory.as_deref_mut() {
                        map.remove(&(*kind, name.clone()));
                        continue;
                    }
                    records
                        .remove((origin, record_key(*kind, name).as_str()))
                        .map_err(|e| self.io(e))?;
                }
                for record in &write.puts {
                    if let Some(map) = in_memory.as_deref_mut() {
                        map.insert((record.kind(), record.name().clone()), record.clone());
                        continue;
                    }
                    let key = record_key(record.kind(), record.name());
                    let value = pb::ZoneRecord::from(record).encode_to_vec();
                    records
                        .insert((origin, key.as_str()), value.as_slice())
                        .map_err(|e| self.io(e))?;
                }
                for change in &write.changes {
                    let seq = meta.next_seq;
                    let value = pb::ZoneChange::from(change).encode_to_vec();
                    changes
                        .insert((origin, seq), value.as_slice())
                        .map_err(|e| self.io(e))?;
                    index
                        .insert((origin, change.from_serial), seq)
                        .map_err(|e| self.io(e))?;
                    meta.next_seq += 1;
                }
                // Trim the log to its bound, oldest first.
                while meta.next_seq - meta.first_seq > CHANGE_LOG_MAX {
                    let seq = meta.first_seq;
                    if let Some(old) = changes.remove((origin, seq)).map_err(|e| self.io(e))? {
                        let old = pb::ZoneChange::decode(old.value())
                            .map_err(|e| self.bad(origin, "change log entry", e))?;
                        // Only if the index still points at this entry (serials wrap).
                        let points_here = index
                            .get((origin, old.from_serial))
                            .map_err(|e| self.io(e))?
                            .is_some_and(|v| v.value() == seq);
                        if points_here {
                            index
                                .remove((origin, old.from_serial))
                                .map_err(|e| self.io(e))?;
                        }
                    }
                    meta.first_seq += 1;
                }
                for (agent, url) in &write.lease_deletes {
                    leases
                        .remove((origin, agent.as_str(), url.as_str()))
                        .map_err(|e| self.io(e))?;
                }
                for lease in &write.lease_puts {
                    leases
                        .insert(
                            (origin, lease.agent.as_str(), lease.url.as_str()),
                            (lease.expires_unix_ms, lease.lease_secs),
                        )
                        .map_err(|e| self.io(e))?;
                }
                zones
                    .insert(origin, meta.encode_to_vec().as_slice())
                    .map_err(|e| self.io(e))?;
            }
            let mut seen = txn.open_table(NONCES).map_err(|e| self.io(e))?;
            if let Some(now) = now_ms {
                seen.retain_in((0, "", "")..(now, "", ""), |_, _| false)
                    .map_err(|e| self.io(e))?;
            }
            for row in nonces {
                seen.insert(
                    (row.expires_unix_ms, row.key.as_str(), row.nonce.as_str()),
                    (),
                )
                .map_err(|e| self.io(e))?;
            }
        }
        txn.commit().map_err(|e| self.io(e))?;
        if let (Some(memory), Some(after)) = (memory.as_deref_mut(), records_after) {
            *memory = after;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;
    use crate::record::{self, Agent, Endpoint, LiveAgent, RecordChange, ServerAddress};

    pub(crate) fn name(text: &str) -> Name {
        Name::parse(text).unwrap()
    }

    fn header(serial: u32) -> ZoneHeader {
        header_of("finance.acme", serial)
    }

    /// A zone header for tests of the store and of its backups.
    pub(crate) fn header_of(origin: &str, serial: u32) -> ZoneHeader {
        ZoneHeader {
            origin: name(origin),
            serial,
            ttl: 300,
            negative_ttl: 60,
            refresh: 60,
            retry: 10,
            expire: 86_400,
            contact: String::new(),
            servers: vec![ServerAddress::new("http://10.0.1.1:7102", None).unwrap()],
            health: crate::record::HealthSettings::DEFAULT,
        }
    }

    /// A live agent with one live endpoint, for tests of the store and of its backups.
    pub(crate) fn agent(full: &str) -> LiveRecord {
        LiveRecord::Agent(LiveAgent {
            agent: Arc::new(Agent {
                name: name(full),
                description: "d".into(),
                tags: Box::default(),
                capabilities: Box::default(),
                version: "".into(),
                ttl: None,
                timeout_ms: record::DEFAULT_TIMEOUT_MS,
                max_retries: record::DEFAULT_MAX_RETRIES,
                endpoints: vec![Endpoint::new("http://a/mcp", "t", 10, 1).unwrap()],
                input_schema: record::default_input_schema(),
                output_schema: None,
                metadata: None,
                health_checks: true,
            }),
            from_file: false,
            live: BTreeSet::from(["http://a/mcp".to_string()]),
        })
    }

    fn step(from: u32, put: &str) -> ZoneWrite {
        let mut write = ZoneWrite::new(name("finance.acme"));
        write.header = Some(header(from + 1));
        write.puts.push(agent(put));
        write.changes.push(ZoneChange {
            from_serial: from,
            serial: from + 1,
            changes: vec![RecordChange::Put(agent(put))],
            header: header(from + 1),
        });
        write
    }

    #[test]
    fn a_commit_reads_back_checked_and_the_log_answers_changes_since() {
        let store = Store::in_memory().unwrap();
        let mut seed = ZoneWrite::new(name("finance.acme"));
        seed.clear = true;
        seed.header = Some(header(1));
        seed.file_serial = Some(1);
        seed.lease_puts.push(LeaseRow {
            agent: "a.finance.acme".into(),
            url: "http://a/mcp".into(),
            expires_unix_ms: 99,
            lease_secs: 60,
        });
        store.commit(&[seed]).unwrap();
        store.commit(&[step(1, "a.finance.acme")]).unwrap();
        store
            .commit(&[step(2, "b.finance.acme"), step(3, "c.finance.acme")])
            .unwrap();
        let zones = store.load().unwrap();
        assert_eq!(zones.len(), 1);
        let zone = &zones[0];
        assert_eq!(zone.header.serial, 4);
        assert_eq!(zone.file_serial, 1);
        assert_eq!(zone.records.len(), 3);
        assert_eq!(zone.leases.len(), 1);
        let since = |serial| store.changes_since("finance.acme", serial).unwrap();
        assert_eq!(since(4).map(|c| c.len()), Some(0), "up to date");
        assert_eq!(since(2).map(|c| c.len()), Some(2));
        assert_eq!(since(1).map(|c| c.len()), Some(3));
        assert!(
            since(77).is_none(),
            "a serial the log never had: a full transfer"
        );
        let mut items = Vec::new();
        assert!(
            store
                .stream_transfer("finance.acme", None, &mut |item| {
                    items.push(item);
                    ControlFlow::Continue(())
                })
                .unwrap()
        );
        assert!(
            matches!(&items[0], TransferItem::Start { header: Some(h), full: true } if h.serial == 4)
        );
        assert_eq!(items.len(), 4, "the start and three records");
        let mut items = Vec::new();
        store
            .stream_transfer("finance.acme", Some(2), &mut |item| {
                items.push(item);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert!(matches!(&items[0], TransferItem::Start { full: false, .. }));
        assert_eq!(items.len(), 3, "the start and two changes");
        let paged = store
            .changes_page("finance.acme", 1, 2, usize::MAX)
            .unwrap()
            .unwrap();
        assert_eq!(paged.len(), 2, "a page stops at its size");

        // A full replacement (a secondary's full transfer) empties the log and the leases.
        let mut full = ZoneWrite::new(name("finance.acme"));
        full.clear = true;
        full.header = Some(header(10));
        full.puts.push(agent("z.finance.acme"));
        store.commit(&[full]).unwrap();
        let zone = &store.load().unwrap()[0];
        assert_eq!(zone.records.len(), 1);
        assert!(zone.leases.is_empty());
        assert!(since(4).is_none());
    }

    /// Every record of a full transfer of `origin`, encoded.
    fn transferred(store: &Store, origin: &str) -> Vec<pb::ZoneRecord> {
        let mut records = Vec::new();
        store
            .stream_transfer(origin, None, &mut |item| {
                if let TransferItem::Record(record) = item {
                    records.push(record);
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        records
    }

    #[test]
    fn an_in_memory_store_holds_the_records_put_not_a_copy_and_reads_like_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = Store::open_dir(dir.path()).unwrap();
        let memory = Store::in_memory().unwrap();
        let put = agent("a.finance.acme");
        let mut seed = ZoneWrite::new(name("finance.acme"));
        seed.clear = true;
        seed.header = Some(header(1));
        seed.puts = vec![
            agent("c.finance.acme"),
            put.clone(),
            agent("b.finance.acme"),
        ];
        let mut other = ZoneWrite::new(name("other.acme"));
        other.header = Some(header_of("other.acme", 7));
        other.puts = vec![agent("x.other.acme")];
        let mut step = ZoneWrite::new(name("finance.acme"));
        step.header = Some(header(2));
        step.deletes = vec![(RecordKind::Agent, name("c.finance.acme"))];
        for store in [&file, &memory] {
            store.commit(&[seed.clone(), other.clone()]).unwrap();
            store.commit(std::slice::from_ref(&step)).unwrap();
        }

        // The same records, in the same order, from both: loaded and transferred.
        let loaded = |store: &Store| {
            let mut zones = store.load().unwrap();
            zones.sort_by(|a, b| a.header.origin.cmp(&b.header.origin));
            zones
                .into_iter()
                .map(|z| (z.header.origin.to_string(), z.records))
                .collect::<Vec<_>>()
        };
        let from_memory = loaded(&memory);
        assert_eq!(from_memory, loaded(&file));
        let names: Vec<&str> = from_memory[0].1.iter().map(|r| r.name().as_str()).collect();
        assert_eq!(names, ["a.finance.acme", "b.finance.acme"], "c was deleted");
        assert_eq!(from_memory[1].1.len(), 1, "the other zone is untouched");
        assert_eq!(
            transferred(&memory, "finance.acme"),
            transferred(&file, "finance.acme")
        );
        assert_eq!(transferred(&memory, "finance.acme").len(), 2);

        // Held, not encoded: the agent read back is the very allocation that was put.
        let (LiveRecord::Agent(put), LiveRecord::Agent(held)) = (&put, &from_memory[0].1[0]) else {
            panic!("agents expected");
        };
        assert!(Arc::ptr_eq(&put.agent, &held.agent));

        // A full replacement empties the zone first, in memory as on file.
        let mut full = ZoneWrite::new(name("finance.acme"));
        full.clear = true;
        full.header = Some(header(3));
        full.puts = vec![agent("z.finance.acme")];
        for store in [&file, &memory] {
            store.commit(std::slice::from_ref(&full)).unwrap();
        }
        assert_eq!(loaded(&memory), loaded(&file));
        assert_eq!(transferred(&memory, "finance.acme").len(), 1);
    }

    #[test]
    fn a_damaged_value_is_an_error_naming_the_zone_not_a_loss() {
        let store = Store::in_memory().unwrap();
        store.commit(&[step(1, "a.finance.acme")]).unwrap();
        // Write a record the record rules refuse, behind the typed API's back.
        let txn = store.db().unwrap().begin_write().unwrap();
        {
            let mut records = txn.open_table(RECORDS).unwrap();
            let mut bad = pb::ZoneRecord::from(&agent("b.finance.acme"));
            if let Some(pb::zone_record::Record::Agent(agent)) = &mut bad.record {
                agent.endpoints.clear();
            }
            records
                .insert(
                    ("finance.acme", "agent/b.finance.acme"),
                    bad.encode_to_vec().as_slice(),
                )
                .unwrap();
        }
        txn.commit().unwrap();
        let error = store.load().unwrap_err().to_string();
        assert!(
            error.contains("finance.acme") && error.contains("record"),
            "{error}"
        );
    }
}
