//! The primary's NOTIFY (DNS NOTIFY's role): after every committed change of a zone, tell
//! its other servers and every secondary that has transferred from this node, so they pull
//! the change at once instead of at their next refresh. Fire and forget: a lost NOTIFY
//! costs only latency, since secondaries also poll.
//!
//! The secondaries that transferred are remembered with what their last transfer brought
//! them (serial, time, full or not): the same bookkeeping tells the operator which
//! secondaries a primary has and how far behind each is ([`Authority::secondaries`]), at no
//! cost beyond a map update per transfer served.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use super::Authority;
use super::live::LiveZone;
use crate::name::Name;

/// How many NOTIFY targets a zone remembers beyond its own servers.
const NOTIFY_TARGETS_MAX: usize = 64;
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(1);

/// Secondaries to NOTIFY beyond each zone's own servers (those that asked for a transfer),
/// with their last transfer.
pub(super) struct NotifyTargets {
    enabled: bool,
    // std Mutex: held only to read or insert, never across an await.
    extra: Mutex<HashMap<Name, BTreeMap<String, Option<Fetch>>>>,
}

/// What a secondary's last transfer from this node brought it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch {
    /// The serial it was brought to (its own, when it was up to date).
    pub serial: u32,
    /// When the transfer started, Unix ms (the authority's clock).
    pub at_unix_ms: u64,
    pub full: bool,
}

/// A secondary of a zone as its primary knows it: a server the zone names, or a node that
/// transferred the zone from here (with its NOTIFY address), or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownSecondary {
    /// Its gRPC URL.
    pub url: String,
    /// The zone lists it among its servers.
    pub listed: bool,
    /// Its last transfer from this node, if it made one since this node started.
    pub last_fetch: Option<Fetch>,
}

impl NotifyTargets {
    pub(super) fn new(enabled: bool) -> NotifyTargets {
        NotifyTargets {
            enabled,
            extra: Mutex::new(HashMap::new()),
        }
    }
}

impl Authority {
    /// Remembers a secondary to NOTIFY (it asked for a transfer). Returns whether `url` is
    /// one (not empty, not this node, an HTTP URL, within the bound).
    pub fn add_notify_target(&self, zone: &Name, url: &str) -> bool {
        if url.is_empty()
            || url == self.shared.own_url
            || crate::record::check_http_url("notify_url", url).is_err()
        {
            return false;
        }
        let mut targets = self.notify_targets();
        let known = targets.entry(zone.clone()).or_default();
        if known.len() < NOTIFY_TARGETS_MAX || known.contains_key(url) {
            known.entry(url.to_string()).or_default();
            return true;
        }
        false
    }

    /// Remembers what a transfer brought a secondary added by [`Self::add_notify_target`].
    pub(super) fn record_fetch(&self, zone: &Name, url: &str, fetch: Fetch) {
        if let Some(entry) = self
            .notify_targets()
            .get_mut(zone)
            .and_then(|known| known.get_mut(url))
        {
            *entry = Some(fetch);
        }
    }

    fn notify_targets(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Name, BTreeMap<String, Option<Fetch>>>> {
        self.shared
            .notify
            .extra
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The secondaries of `zone` this node knows, in URL order: the servers the zone lists
    /// (this node left out) and every node that transferred it from here, with its last
    /// transfer. Empty for a zone this node is not the primary of.
    pub fn secondaries(&self, zone: &Name) -> Vec<KnownSecondary> {
        if !matches!(
            self.status(zone).map(|s| s.role),
            Some(super::Role::Primary)
        ) {
            return Vec::new();
        }
        let mut known: BTreeMap<String, KnownSecondary> = self
            .notify_targets()
            .get(zone)
            .into_iter()
            .flatten()
            .map(|(url, last_fetch)| {
                let secondary = KnownSecondary {
                    url: url.clone(),
                    listed: false,
                    last_fetch: *last_fetch,
                };
                (url.clone(), secondary)
            })
            .collect();
        if let Ok(snapshot) = self.shared.catalog.zone(zone) {
            for server in &snapshot.header().servers {
                if server.grpc == self.shared.own_url {
                    continue;
                }
                known
                    .entry(server.grpc.clone())
                    .or_insert_with(|| KnownSecondary {
                        url: server.grpc.clone(),
                        listed: true,
                        last_fetch: None,
                    })
                    .listed = true;
            }
        }
        known.into_values().collect()
    }
}

/// NOTIFYs every server of `zone` but this one, and every secondary that transferred it.
pub(super) fn notify_secondaries(authority: &Authority, zone: &LiveZone) {
    let shared = &authority.shared;
    if !shared.notify.enabled {
        return;
    }
    let mut targets: BTreeSet<String> =
        zone.header.servers.iter().map(|s| s.grpc.clone()).collect();
    if let Some(extra) = authority.notify_targets().get(zone.origin()) {
        targets.extend(extra.keys().cloned());
    }
    targets.remove(&shared.own_url);
    let origin = zone.origin().clone();
    let serial = zone.header.serial;
    for url in targets {
        let peers = std::sync::Arc::clone(&shared.peers);
        let origin = origin.clone();
        tokio::spawn(async move {
            match peers.notify(&url, &origin, serial, NOTIFY_TIMEOUT).await {
                Ok(()) => tracing::debug!(%url, zone = %origin, serial, "NOTIFY sent"),
                Err(failure) => tracing::debug!(%failure, zone = %origin, "NOTIFY not delivered"),
            }
        });
    }
}
