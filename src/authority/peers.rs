//! How the authority reaches other nodes: the [`Peers`] trait, beside the resolver's
//! `Upstream`. The gRPC door implements both over its channel pool; tests connect
//! authorities in memory, with links that can drop a NOTIFY or refuse a transfer, so the
//! replication logic is tested without sockets.
//!
//! A transfer arrives as the wire's chunks (records or changes, as the primary's store keeps
//! them); [`TransferData::from_chunks`] is the one place they are decoded and checked.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::name::Name;
use crate::peer::PeerFailure;
use crate::record::{LiveRecord, ZoneChange, ZoneHeader};
use crate::wire::pb;

/// A secondary's request for a zone's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    pub zone: Name,
    /// Only the changes after this serial; a full transfer comes back when the primary's log
    /// no longer reaches back to it.
    pub since_serial: Option<u32>,
    /// The asking secondary's gRPC URL: the primary NOTIFYs it of later changes.
    pub notify_url: String,
}

/// What a transfer brought, checked.
#[derive(Debug, Clone)]
pub enum TransferData {
    Full {
        header: ZoneHeader,
        records: Vec<LiveRecord>,
    },
    Changes(Vec<ZoneChange>),
    /// Nothing changed since the serial asked about.
    UpToDate,
}

impl TransferData {
    /// Decodes a transfer's chunks (the first carries the header and whether the transfer is
    /// full), checking every record and change like any peer input. The error says what was
    /// wrong.
    pub fn from_chunks(
        chunks: Vec<pb::TransferChunk>,
        since: Option<u32>,
    ) -> Result<TransferData, String> {
        let mut chunks = chunks.into_iter();
        let first = chunks.next().ok_or("the transfer was empty")?;
        let header = first
            .header
            .clone()
            .ok_or("the first transfer chunk has no zone header")?;
        let header = ZoneHeader::try_from(header).map_err(|error| error.to_string())?;
        let full = first.full;
        let mut records = Vec::new();
        let mut changes = Vec::new();
        for chunk in std::iter::once(first).chain(chunks) {
            for record in chunk.records {
                records.push(LiveRecord::try_from(record).map_err(|error| error.to_string())?);
            }
            for change in chunk.changes {
                changes.push(ZoneChange::try_from(change).map_err(|error| error.to_string())?);
            }
        }
        if full {
            return Ok(TransferData::Full { header, records });
        }
        if changes.is_empty() {
            return match since {
                Some(serial) if serial == header.serial => Ok(TransferData::UpToDate),
                _ => Err("an incremental transfer without changes to a different serial".into()),
            };
        }
        Ok(TransferData::Changes(changes))
    }
}

/// How the authority asks other nodes.
pub trait Peers: Send + Sync + 'static {
    /// Tells the server at `url` that `zone` changed to `serial` (DNS NOTIFY's role).
    fn notify<'a>(
        &'a self,
        url: &'a str,
        zone: &'a Name,
        serial: u32,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), PeerFailure>>;

    /// Asks the primary at `url` for a zone's records or its changes since a serial.
    fn transfer<'a>(
        &'a self,
        url: &'a str,
        request: TransferRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<TransferData, PeerFailure>>;
}
