//! A secondary zone's follower: it asks the primary for the changes since its serial
//! (IXFR's role; a full transfer when the primary's log no longer reaches back, AXFR's),
//! when a NOTIFY comes, every `refresh` seconds after a success and every `retry` seconds
//! after a failure; past `expire` seconds without the primary it withdraws the zone, as a
//! DNS secondary stops answering. The writer applies what it brings.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::name::Name;
use crate::peer::{FailureKind, PeerFailure};

use super::{Applied, Authority, TransferData, TransferRequest};

/// How long one transfer may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs until shutdown.
pub async fn follow(
    authority: Authority,
    zone: Name,
    primary: String,
    mut last_ok: Option<u64>,
    mut kicked: mpsc::Receiver<()>,
    shutdown: CancellationToken,
) {
    let mut want_full = false;
    loop {
        let Some(status) = authority.status(&zone) else {
            return;
        };
        // A zone never transferred has nothing to ask changes against.
        let since = (status.served && !want_full).then_some(status.serial);
        let before = status.served.then_some(status.serial);
        // Err((the primary's data was unusable, why)).
        let outcome = match fetch(&authority, &zone, &primary, since).await {
            Ok(data) => authority
                .apply_transfer(zone.clone(), data)
                .await
                .map_err(|error| (true, error.to_string())),
            // Data that does not decode or breaks the rules: start over from a full transfer.
            Err(failure) => Err((failure.kind == FailureKind::BadAnswer, failure.to_string())),
        };
        // The timers of the zone as it is now (a transfer may have changed them).
        let Some(status) = authority.status(&zone) else {
            return;
        };
        let mut wait = match outcome {
            Ok(Applied::Serial(serial)) => {
                want_full = false;
                last_ok = Some(authority.clock().unix_ms());
                if before == Some(serial) {
                    tracing::debug!(%zone, serial, "secondary up to date");
                } else {
                    // Each transfer that changed the zone is worth a line: an operator
                    // follows a secondary by these.
                    tracing::info!(
                        %zone,
                        %primary,
                        from_serial = before,
                        serial,
                        kind = if since.is_some() { "incremental" } else { "full" },
                        "zone transferred from the primary"
                    );
                }
                secs(status.refresh)
            }
            Ok(Applied::NeedFull) => {
                want_full = true;
                Duration::ZERO
            }
            Err((unusable, error)) => {
                tracing::warn!(%zone, %primary, %error, "transfer failed");
                // Changes that do not apply: start over from a full transfer.
                want_full |= unusable;
                secs(status.retry)
            }
        };
        if let Some(at) = last_ok {
            let expire_ms = u64::from(status.expire) * 1000;
            let silent = authority.clock().unix_ms().saturating_sub(at);
            if silent > expire_ms {
                if status.served {
                    authority.withdraw(zone.clone()).await;
                }
            } else {
                // Wake in time to withdraw when the primary stays silent.
                wait = wait.min(Duration::from_millis(expire_ms - silent + 1));
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = kicked.recv() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

fn secs(value: u32) -> Duration {
    Duration::from_secs(u64::from(value.max(1)))
}

/// One transfer from the primary.
async fn fetch(
    authority: &Authority,
    zone: &Name,
    primary: &str,
    since: Option<u32>,
) -> Result<TransferData, PeerFailure> {
    let request = TransferRequest {
        zone: zone.clone(),
        since_serial: since,
        notify_url: authority.own_url().to_string(),
    };
    authority
        .peers()
        .transfer(primary, request, TRANSFER_TIMEOUT)
        .await
}
