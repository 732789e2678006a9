//! The HTTP client of calls to agents and of endpoint probes: reqwest over rustls with a
//! [`ClientTls`]'s trust (the system roots plus `--ca`) and client certificate, following
//! its reloads.
//!
//! reqwest bakes its TLS settings into a client when it is built, while `ClientTls` swaps
//! its own on SIGHUP. So [`HttpsClient::get`] compares the settings the client was built
//! from with the ones in force, and builds a new client when they differ: new connections
//! (a session opened after the reload, a probe) use the new CA and certificate, while
//! sessions opened before keep the client, and the connections, they had. Every HTTP client
//! here is given its rustls settings, because reqwest's own default TLS would need a
//! process-wide crypto provider, which this project never installs.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ClientConfig;

use crate::tls::{ClientTls, TlsError};

/// How a caller tunes its reqwest client (timeouts, pool sizes).
pub type Tune = fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder;

/// A reqwest client that follows a [`ClientTls`]'s reloads.
pub struct HttpsClient {
    tls: Arc<ClientTls>,
    tune: Tune,
    /// The client and the settings (`ClientTls::config`) it was built from.
    current: ArcSwap<Built>,
}

struct Built {
    from: Arc<ClientConfig>,
    client: reqwest::Client,
}

impl HttpsClient {
    /// A client trusting what `tls` trusts (none: the system roots), tuned by `tune`.
    pub fn new(tls: Option<Arc<ClientTls>>, tune: Tune) -> Result<HttpsClient, TlsError> {
        let tls = match tls {
            Some(tls) => tls,
            None => ClientTls::system()?,
        };
        let built = build(&tls, tune)?;
        Ok(HttpsClient {
            tls,
            tune,
            current: ArcSwap::from_pointee(built),
        })
    }

    /// The client for a request starting now: rebuilt if the TLS settings were reloaded
    /// since (a rebuild that fails keeps the client in force, and says why).
    pub fn get(&self) -> reqwest::Client {
        let current = self.current.load();
        if Arc::ptr_eq(&current.from, &self.tls.config()) {
            return current.client.clone();
        }
        match build(&self.tls, self.tune) {
            Ok(built) => {
                let client = built.client.clone();
                self.current.store(Arc::new(built));
                client
            }
            Err(error) => {
                tracing::warn!(%error, "HTTP client not rebuilt with the reloaded TLS settings");
                current.client.clone()
            }
        }
    }

    /// The CA trusted beside the system roots (named when a certificate does not verify).
    pub fn ca(&self) -> Option<&Path> {
        self.tls.files().ca.as_deref()
    }
}

fn build(tls: &ClientTls, tune: Tune) -> Result<Built, TlsError> {
    // Read before the HTTP settings are derived from it: a reload in between makes the next
    // `get` build again, never keeps stale settings.
    let from = tls.config();
    let client = tune(reqwest::Client::builder())
        .tls_backend_preconfigured(tls.http_config())
        .build()
        .map_err(|error| TlsError::Rejected {
            what: "an HTTP client".into(),
            reason: crate::peer::error_chain(&error),
        })?;
    Ok(Built { from, client })
}
