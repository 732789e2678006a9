//! What this node hands out of its zones: transfers (to secondaries and `aop zone dump`) and
//! Watch events (to gateways). Both are decided here, from the store, and leave in the
//! encoding the store keeps them in (the wire's messages), so a transfer of a large zone
//! costs no decode and re-encode of every record.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Authority, TransferRequest, UpdateError};
use crate::name::Name;
use crate::store::{Store, StoreError};
use crate::wire::pb;

/// The size a transfer chunk grows to before the next one starts.
pub const TRANSFER_CHUNK_BYTES: usize = 1024 * 1024;

/// How many Watch events wait for a slow reader before the writer of the stream waits too.
const WATCH_BUFFER: usize = 16;

impl Authority {
    /// A zone's records (full) or its changes since a serial, in chunks of about
    /// [`TRANSFER_CHUNK_BYTES`], read from one consistent snapshot of the store. Counts the
    /// transfer and remembers the asker for NOTIFY.
    pub async fn transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<Vec<pb::TransferChunk>, UpdateError> {
        let zone = &request.zone;
        self.status(zone)
            .filter(|s| s.served)
            .ok_or_else(|| UpdateError::NotServed { zone: zone.clone() })?;
        self.add_notify_target(zone, &request.notify_url);
        let store = Arc::clone(&self.shared.store);
        let origin = zone.to_string();
        let since = request.since_serial;
        let served_by = self.shared.catalog.node_id().to_string();
        // One read of the store, chunked on the same blocking thread.
        let chunks = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            if let Some(serial) = since
                && let Some(changes) = store.changes_since(&origin, serial)?
            {
                let header = match changes.last() {
                    Some(change) => change.header.clone(),
                    // Up to date: the header as stored, at the serial asked about.
                    None => store.header(&origin)?,
                };
                return Ok(Some(chunked(
                    header,
                    false,
                    served_by,
                    changes,
                    |chunk, change| chunk.changes.push(change),
                )));
            }
            Ok(store.transfer_snapshot(&origin)?.map(|(header, records)| {
                chunked(header, true, served_by, records, |chunk, record| {
                    chunk.records.push(record);
                })
            }))
        })
        .await
        .map_err(|join| StoreError::Io {
            path: "(transfer)".into(),
            reason: join.to_string(),
        })
        .and_then(|read| read)?
        .ok_or_else(|| UpdateError::NotServed { zone: zone.clone() })?;
        let full = chunks.first().is_some_and(|chunk| chunk.full);
        self.shared.transfers[usize::from(!full)]
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(chunks)
    }

    /// A zone's changes as they happen: first the changes since `since` (or just the current
    /// serial), then one event per new serial, until `shutdown` or the reader goes away.
    pub fn watch_events(
        &self,
        zone: &Name,
        since: Option<u32>,
        shutdown: CancellationToken,
    ) -> Result<mpsc::Receiver<pb::WatchEvent>, UpdateError> {
        let mut serials = self
            .shared
            .serials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(zone)
            .map(tokio::sync::watch::Sender::subscribe)
            .ok_or_else(|| UpdateError::NotServed { zone: zone.clone() })?;
        let store = Arc::clone(&self.shared.store);
        let zone = zone.clone();
        let (events, stream) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(async move {
            let current = *serials.borrow_and_update();
            let mut last = since.unwrap_or(current);
            let first = if last == current {
                pb::WatchEvent {
                    zone: zone.to_string(),
                    serial: current,
                    ..pb::WatchEvent::default()
                }
            } else {
                watch_event(&store, &zone, last, current).await
            };
            last = current;
            if events.send(first).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    () = events.closed() => return,
                    () = shutdown.cancelled() => return,
                    changed = serials.changed() => if changed.is_err() { return },
                }
                let serial = *serials.borrow_and_update();
                if serial == last {
                    continue;
                }
                let event = watch_event(&store, &zone, last, serial).await;
                last = serial;
                if events.send(event).await.is_err() {
                    return;
                }
            }
        });
        Ok(stream)
    }
}

/// Items in transfer chunks of about [`TRANSFER_CHUNK_BYTES`]; the first chunk carries the
/// header and whether the transfer is full.
fn chunked<T: prost::Message>(
    header: Option<pb::ZoneHeader>,
    full: bool,
    served_by: String,
    items: Vec<T>,
    push: fn(&mut pb::TransferChunk, T),
) -> Vec<pb::TransferChunk> {
    let mut chunks = Vec::new();
    let mut chunk = pb::TransferChunk {
        header,
        full,
        served_by,
        ..pb::TransferChunk::default()
    };
    let mut size = 0;
    for item in items {
        size += item.encoded_len();
        push(&mut chunk, item);
        if size >= TRANSFER_CHUNK_BYTES {
            chunks.push(std::mem::take(&mut chunk));
            size = 0;
        }
    }
    chunks.push(chunk);
    chunks
}

/// The changes from `from` to `to`, or a reset when the log no longer has them.
async fn watch_event(store: &Arc<Store>, zone: &Name, from: u32, to: u32) -> pb::WatchEvent {
    let reader = Arc::clone(store);
    let origin = zone.to_string();
    let changes = tokio::task::spawn_blocking(move || reader.changes_since(&origin, from))
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    match changes {
        Some(changes) => {
            let changes: Vec<pb::ZoneChange> = changes
                .into_iter()
                .take_while(|c| c.from_serial != to)
                .collect();
            pb::WatchEvent {
                zone: zone.to_string(),
                serial: to,
                changes,
                reset: false,
            }
        }
        None => pb::WatchEvent {
            zone: zone.to_string(),
            serial: to,
            changes: Vec::new(),
            reset: true,
        },
    }
}
