//! The primary's NOTIFY (DNS NOTIFY's role): after every committed change of a zone, tell
//! its other servers and every secondary that has transferred from this node, so they pull
//! the change at once instead of at their next refresh. Fire and forget: a lost NOTIFY
//! costs only latency, since secondaries also poll.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use super::Authority;
use super::live::LiveZone;
use crate::name::Name;

/// How many NOTIFY targets a zone remembers beyond its own servers.
const NOTIFY_TARGETS_MAX: usize = 64;
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(1);

/// Secondaries to NOTIFY beyond each zone's own servers (those that asked for a transfer).
pub(super) struct NotifyTargets {
    enabled: bool,
    // std Mutex: held only to read or insert, never across an await.
    extra: Mutex<HashMap<Name, BTreeSet<String>>>,
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
            .notify
            .extra
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let set = targets.entry(zone.clone()).or_default();
        if set.len() < NOTIFY_TARGETS_MAX || set.contains(url) {
            set.insert(url.to_string());
        }
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
    if let Some(extra) = shared
        .notify
        .extra
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(zone.origin())
    {
        targets.extend(extra.iter().cloned());
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
