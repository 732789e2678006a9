//! What this node hands out of its zones: transfers (to secondaries and `aop zone dump`) and
//! Watch events (to gateways). Both are decided here, and leave in the encoding the store
//! keeps them in (the wire's messages), so a transfer of a large zone costs no decode and
//! re-encode of every record.
//!
//! Both are produced lazily, with backpressure: a transfer is read from one snapshot of the
//! store a chunk at a time as the receiver takes them, and a Watch stream's backlog is read a
//! page at a time; a reader that stops reading holds at most a chunk or an event in memory,
//! never the whole zone or log. New changes reach watchers through one broadcast per zone
//! that the writer feeds once per commit (each change encoded once, whatever the number of
//! watchers); a watcher that falls behind the broadcast catches up from the store.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::notify::Fetch;
use super::{Authority, TransferRequest, UpdateError};
use crate::name::Name;
use crate::record::serial_newer;
use crate::store::{Store, StoreError, TransferItem};
use crate::wire::pb;

/// The size a transfer chunk grows to before the next one starts.
pub const TRANSFER_CHUNK_BYTES: usize = 256 * 1024;
/// How long a transfer waits for its receiver to take the next chunk before it gives up
/// (and lets go of the store snapshot it reads from).
pub const TRANSFER_IDLE: Duration = Duration::from_secs(60);
/// Changes in one Watch event while catching up from the log.
const WATCH_PAGE_CHANGES: usize = 64;
/// About the most bytes of changes in one Watch event while catching up.
const WATCH_PAGE_BYTES: usize = 64 * 1024;
/// News of committed changes a zone's broadcast keeps for watchers that are behind; a
/// watcher further behind catches up from the store.
pub(super) const WATCH_BROADCAST: usize = 256;

/// What the writer tells a zone's watchers after a commit.
#[derive(Debug)]
pub(super) enum News {
    /// One serial step, encoded once for every watcher.
    Change(pb::ZoneChange),
    /// The zone was replaced wholesale (a secondary's full transfer): read it again.
    Reset { serial: u32 },
}

impl Authority {
    /// A zone's records (full) or its changes since a serial, read from one consistent
    /// snapshot of the store in chunks of about [`TRANSFER_CHUNK_BYTES`], each read only when
    /// the receiver has taken the one before. Counts the transfer and remembers the asker for
    /// NOTIFY.
    pub fn transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<mpsc::Receiver<Result<pb::TransferChunk, UpdateError>>, UpdateError> {
        let zone = request.zone.clone();
        self.status(&zone)
            .filter(|s| s.served)
            .ok_or_else(|| UpdateError::NotServed { zone: zone.clone() })?;
        let secondary = self
            .add_notify_target(&zone, &request.notify_url)
            .then(|| request.notify_url.clone());
        let (chunks, receiver) = mpsc::channel(1);
        let store = Arc::clone(&self.shared.store);
        let authority = self.clone();
        let since = request.since_serial;
        let served_by = self.shared.catalog.node_id().to_string();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let send = |chunk: Result<pb::TransferChunk, UpdateError>| {
                runtime
                    .block_on(tokio::time::timeout(TRANSFER_IDLE, chunks.send(chunk)))
                    .is_ok_and(|sent| sent.is_ok())
            };
            let mut chunk = pb::TransferChunk {
                served_by,
                ..pb::TransferChunk::default()
            };
            let mut size = 0;
            let mut sink = |item: TransferItem| {
                match item {
                    TransferItem::Start { header, full } => {
                        if let (Some(url), Some(header)) = (&secondary, &header) {
                            let fetch = Fetch {
                                serial: header.serial,
                                at_unix_ms: authority.shared.clock.unix_ms(),
                                full,
                            };
                            authority.record_fetch(&zone, url, fetch);
                        }
                        chunk.header = header;
                        chunk.full = full;
                        authority.shared.transfers[usize::from(!full)]
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return ControlFlow::Continue(());
                    }
                    TransferItem::Record(record) => {
                        size += prost::Message::encoded_len(&record);
                        chunk.records.push(record);
                    }
                    TransferItem::Change(change) => {
                        size += prost::Message::encoded_len(&change);
                        chunk.changes.push(change);
                    }
                }
                if size < TRANSFER_CHUNK_BYTES {
                    return ControlFlow::Continue(());
                }
                size = 0;
                let full = std::mem::take(&mut chunk);
                if send(Ok(full)) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            };
            let read = store.stream_transfer(zone.as_str(), since, &mut sink);
            match read {
                Ok(true) => {
                    send(Ok(chunk));
                }
                Ok(false) => {
                    send(Err(UpdateError::NotServed { zone }));
                }
                Err(error) => {
                    send(Err(UpdateError::Store(error)));
                }
            }
        });
        Ok(receiver)
    }

    /// A zone's changes as they happen: first the changes since `since` (or just the current
    /// serial), read from the log a page at a time, then one event per committed change,
    /// until `shutdown` or the reader goes away. Holds at most one event for a reader that
    /// does not read.
    pub fn watch_events(
        &self,
        zone: &Name,
        since: Option<u32>,
        shutdown: CancellationToken,
    ) -> Result<mpsc::Receiver<pb::WatchEvent>, UpdateError> {
        // Subscribed before the serial is read, so no change falls between the two.
        let news = self
            .shared
            .news
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(zone)
            .map(broadcast::Sender::subscribe)
            .ok_or_else(|| UpdateError::NotServed { zone: zone.clone() })?;
        let current = self
            .status(zone)
            .ok_or_else(|| UpdateError::NotServed { zone: zone.clone() })?
            .serial;
        let (events, receiver) = mpsc::channel(1);
        let watcher = Watcher {
            zone: zone.clone(),
            store: Arc::clone(&self.shared.store),
            events,
            shutdown,
            last: since.unwrap_or(current),
        };
        tokio::spawn(watcher.run(news, current));
        Ok(receiver)
    }
}

/// One Watch stream's producer.
struct Watcher {
    zone: Name,
    store: Arc<Store>,
    events: mpsc::Sender<pb::WatchEvent>,
    shutdown: CancellationToken,
    /// The serial the reader has.
    last: u32,
}

impl Watcher {
    async fn run(mut self, mut news: broadcast::Receiver<Arc<News>>, current: u32) {
        if self.last == current {
            if !self.send(self.event(current, Vec::new(), false)).await {
                return;
            }
        } else if !self.catch_up(current).await {
            return;
        }
        loop {
            let received = tokio::select! {
                () = self.events.closed() => return,
                () = self.shutdown.cancelled() => return,
                received = news.recv() => received,
            };
            let sent = match received {
                Ok(news) => match &*news {
                    News::Change(change) if change.from_serial == self.last => {
                        self.last = change.serial;
                        self.send(self.event(change.serial, vec![change.clone()], false))
                            .await
                    }
                    // Already read from the log while catching up.
                    News::Change(change) if !serial_newer(change.serial, self.last) => true,
                    // A gap: read what is missing from the log.
                    News::Change(change) => self.catch_up(change.serial).await,
                    News::Reset { serial } => {
                        self.last = *serial;
                        self.send(self.event(*serial, Vec::new(), true)).await
                    }
                },
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let serial = self.last;
                    self.catch_up(serial).await
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if !sent {
                return;
            }
        }
    }

    fn event(&self, serial: u32, changes: Vec<pb::ZoneChange>, reset: bool) -> pb::WatchEvent {
        pb::WatchEvent {
            zone: self.zone.to_string(),
            serial,
            changes,
            reset,
        }
    }

    /// Sends one event; false when the reader went away or the node stops.
    async fn send(&self, event: pb::WatchEvent) -> bool {
        tokio::select! {
            () = self.shutdown.cancelled() => false,
            sent = self.events.send(event) => sent.is_ok(),
        }
    }

    /// Sends the changes from `self.last` on, a page per event, until the log has no more
    /// (at least up to `target`); a reset when the log no longer reaches back.
    async fn catch_up(&mut self, target: u32) -> bool {
        loop {
            let store = Arc::clone(&self.store);
            let origin = self.zone.to_string();
            let from = self.last;
            let page = tokio::task::spawn_blocking(move || {
                store.changes_page(&origin, from, WATCH_PAGE_CHANGES, WATCH_PAGE_BYTES)
            })
            .await
            .unwrap_or_else(|join| {
                Err(StoreError::Io {
                    path: "(watch)".into(),
                    reason: join.to_string(),
                })
            });
            match page {
                Ok(Some(changes)) if changes.is_empty() => return true,
                Ok(Some(changes)) => {
                    let serial = changes.last().map_or(self.last, |c| c.serial);
                    self.last = serial;
                    if !self.send(self.event(serial, changes, false)).await {
                        return false;
                    }
                }
                Ok(None) | Err(_) => {
                    // The log no longer has them (or cannot be read): the reader reads the
                    // zone again.
                    let serial = if serial_newer(target, self.last) {
                        target
                    } else {
                        self.last
                    };
                    self.last = serial;
                    return self.send(self.event(serial, Vec::new(), true)).await;
                }
            }
        }
    }
}
