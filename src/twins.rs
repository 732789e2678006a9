//! In-memory twins of the traits through which the core reaches other nodes, for tests: the
//! resolver's [`Upstream`] and the authority's [`Peers`], wired straight to other nodes'
//! catalogs and authorities in the same process, over [`Links`] a test can cut, black-hole
//! or make lose NOTIFYs. No sockets, so the resolver's failover and stale answers and the
//! authority's replication are tested on paused or manual time, deterministically.
//!
//! Only for tests (the crate's own and `tests/`); nothing in a node uses it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::answer::Answer;
use crate::authority::{Authority, Peers, TransferData, TransferRequest};
use crate::catalog::Catalog;
use crate::name::Name;
use crate::peer::{FailureKind, PeerFailure};
use crate::record::ServerAddress;
use crate::resolver::Upstream;

/// The state of the link to one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Link {
    /// Requests arrive and are answered.
    #[default]
    Up,
    /// Connections are refused at once.
    Down,
    /// Requests vanish: the caller waits out its timeout.
    BlackHole,
    /// Requests arrive and are answered this much later (within the caller's timeout).
    Slow(Duration),
}

/// The links to every server, by URL, and what the test counts of them.
#[derive(Default)]
pub struct Links {
    // std Mutex: held to read or change one entry, never across an await.
    links: Mutex<HashMap<String, Link>>,
    /// NOTIFYs to these URLs are lost (the rest of their traffic flows).
    lose_notify: Mutex<HashMap<String, bool>>,
    /// Requests that reached each URL.
    delivered: Mutex<HashMap<String, u64>>,
}

impl Links {
    pub fn new() -> Arc<Links> {
        Arc::new(Links::default())
    }

    pub fn set(&self, url: &str, link: Link) {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url.to_string(), link);
    }

    pub fn lose_notifies(&self, url: &str, lose: bool) {
        self.lose_notify
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url.to_string(), lose);
    }

    /// Requests delivered to `url` so far.
    pub fn delivered(&self, url: &str) -> u64 {
        self.delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .copied()
            .unwrap_or(0)
    }

    fn link(&self, url: &str) -> Link {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .copied()
            .unwrap_or_default()
    }

    fn notify_lost(&self, url: &str) -> bool {
        self.lose_notify
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .copied()
            .unwrap_or(false)
    }

    /// Crosses the link to `url`: an error as the transport would give it, or delivery.
    async fn cross(&self, url: &str, timeout: Duration) -> Result<(), PeerFailure> {
        let link = self.link(url);
        if let Link::Slow(delay) = link {
            if delay >= timeout {
                tokio::time::sleep(timeout).await;
                return Err(PeerFailure::new(url, FailureKind::Timeout(timeout), ""));
            }
            tokio::time::sleep(delay).await;
        }
        match link {
            Link::Up | Link::Slow(_) => {
                *self
                    .delivered
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(url.to_string())
                    .or_default() += 1;
                Ok(())
            }
            Link::Down => Err(PeerFailure::new(
                url,
                FailureKind::Unreachable,
                "connection refused",
            )),
            Link::BlackHole => {
                tokio::time::sleep(timeout).await;
                Err(PeerFailure::new(url, FailureKind::Timeout(timeout), ""))
            }
        }
    }
}

/// The resolver's upstream: non-recursive lookups in other nodes' catalogs.
pub struct MemoryUpstream {
    links: Arc<Links>,
    servers: Mutex<HashMap<String, Arc<Catalog>>>,
}

impl MemoryUpstream {
    pub fn new(links: Arc<Links>) -> Arc<MemoryUpstream> {
        Arc::new(MemoryUpstream {
            links,
            servers: Mutex::new(HashMap::new()),
        })
    }

    /// The server at `url` answers from `catalog`.
    pub fn add(&self, url: &str, catalog: Arc<Catalog>) {
        self.servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url.to_string(), catalog);
    }
}

impl Upstream for MemoryUpstream {
    fn query<'a>(
        &'a self,
        server: &'a ServerAddress,
        name: &'a Name,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Answer, PeerFailure>> {
        Box::pin(async move {
            self.links.cross(&server.grpc, timeout).await?;
            let catalog = self
                .servers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&server.grpc)
                .cloned()
                .ok_or_else(|| {
                    PeerFailure::new(&server.grpc, FailureKind::Unreachable, "no such server")
                })?;
            let mut answer = catalog.lookup(name).map_err(|error| {
                PeerFailure::new(&server.grpc, FailureKind::Refused, error.to_string())
            })?;
            answer.recursion_available = true;
            Ok(answer)
        })
    }
}

/// The authority's peers: other authorities in the same process.
pub struct MemoryPeers {
    links: Arc<Links>,
    authorities: Mutex<HashMap<String, Authority>>,
}

impl MemoryPeers {
    pub fn new(links: Arc<Links>) -> Arc<MemoryPeers> {
        Arc::new(MemoryPeers {
            links,
            authorities: Mutex::new(HashMap::new()),
        })
    }

    /// The node at `url` is `authority`.
    pub fn add(&self, url: &str, authority: Authority) {
        self.authorities
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url.to_string(), authority);
    }

    fn authority(&self, url: &str) -> Result<Authority, PeerFailure> {
        self.authorities
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .cloned()
            .ok_or_else(|| PeerFailure::new(url, FailureKind::Unreachable, "no such node"))
    }
}

impl Peers for MemoryPeers {
    fn notify<'a>(
        &'a self,
        url: &'a str,
        zone: &'a Name,
        _serial: u32,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), PeerFailure>> {
        Box::pin(async move {
            if self.links.notify_lost(url) {
                return Err(PeerFailure::new(url, FailureKind::Timeout(timeout), "lost"));
            }
            self.links.cross(url, timeout).await?;
            self.authority(url)?
                .notified(zone)
                .map_err(|error| PeerFailure::new(url, FailureKind::Refused, error.to_string()))
        })
    }

    fn transfer<'a>(
        &'a self,
        url: &'a str,
        request: TransferRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<TransferData, PeerFailure>> {
        Box::pin(async move {
            self.links.cross(url, timeout).await?;
            let since = request.since_serial;
            let refused = |error: crate::authority::UpdateError| {
                PeerFailure::new(url, FailureKind::Refused, error.to_string())
            };
            let mut receiver = self.authority(url)?.transfer(&request).map_err(refused)?;
            let mut chunks = Vec::new();
            while let Some(chunk) = receiver.recv().await {
                chunks.push(chunk.map_err(refused)?);
            }
            TransferData::from_chunks(chunks, since)
                .map_err(|reason| PeerFailure::new(url, FailureKind::BadAnswer, reason))
        })
    }
}

/// A store's disk that fills up on command: writes, growth and syncs fail as a full disk's
/// do (ENOSPC) while `full` is set, and succeed again when it is cleared. Reads always work.
#[derive(Debug)]
pub struct FaultyDisk {
    inner: redb::backends::FileBackend,
    full: Arc<std::sync::atomic::AtomicBool>,
}

impl FaultyDisk {
    /// A store on `path` whose disk fills up while `full` is set, reopened on the same file
    /// (and the same switch) after a failed write, as a node's store is.
    pub fn store(
        path: &std::path::Path,
        full: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<crate::store::Store, crate::store::StoreError> {
        let file = path.to_path_buf();
        let opener: crate::store::DatabaseOpener = Arc::new(move || {
            let handle = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&file)
                .map_err(|error| error.to_string())?;
            let inner =
                redb::backends::FileBackend::new(handle).map_err(|error| error.to_string())?;
            let disk = FaultyDisk {
                inner,
                full: Arc::clone(&full),
            };
            redb::Database::builder()
                .create_with_backend(disk)
                .map_err(|error| error.to_string())
        });
        crate::store::Store::with_opener(path, opener)
    }

    fn check(&self) -> std::io::Result<()> {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "No space left on device",
            ))
        } else {
            Ok(())
        }
    }
}

impl redb::StorageBackend for FaultyDisk {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        if len > self.inner.len()? {
            self.check()?;
        }
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }
}
