//! Transport security: the rustls settings every TLS link of the project is built from.
//!
//! One room for certificates, keys and trust, so the gRPC door, the gRPC client, the admin
//! endpoint and the MCP gateway cannot drift apart in what they accept:
//!
//! - [`ServerTls`]: a listener's certificate, key and (for mTLS) client CA, re-read from
//!   their files on [`ServerTls::reload`] (SIGHUP). The configuration sits behind an
//!   `ArcSwap`: each handshake takes the one current when it starts, so new connections use
//!   new files while open connections keep the session they negotiated.
//! - [`ClientTls`]: what a client trusts (the system roots plus `--ca`) and the certificate
//!   it presents when a server asks, reloadable the same way; handshake failures become
//!   [`TlsFailure`]s that say why in words (an unknown issuer, a name mismatch, a server that
//!   wants a client certificate) instead of a transport error.
//! - [`issue`]: a development CA and certificates signed by it (`aop cert`, `aop demo
//!   --tls`, tests).
//! - [`listener`]: the listener of the HTTP doors (MCP gateway, agents, admin endpoint),
//!   plaintext or HTTPS with a [`ServerTls`], handshakes off the accept path.
//!
//! HTTP clients (the gateway calling agents, the node probing endpoints) use
//! [`ClientTls::http_config`] in reqwest, and [`failure_reason`] to say why a call's TLS
//! failed instead of reqwest's "error sending request".
//!
//! Only the ring provider is compiled in, and it is named explicitly everywhere rather than
//! installed as a process default, so a library user's own default cannot change ours.

pub mod client;
pub mod issue;
pub mod listener;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use client::{ClientTls, ClientTlsFiles, TlsClientStream, TlsFailure, failure_reason};
pub use listener::{HttpListener, HttpPeer};
pub use server::{ServerTls, ServerTlsFiles};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {what}", path.display())]
    Pem { path: PathBuf, what: String },
    #[error("{what}: {reason}")]
    Rejected { what: String, reason: String },
    #[error("cannot make a certificate: {reason}")]
    Issue { reason: String },
}

/// The one crypto provider of every TLS configuration here: ring, which rustls 0.23.48
/// deprecates for lacking post-quantum key exchange. aws-lc-rs has it but builds a C
/// library from source; moving is one line here when the build can afford it.
pub fn provider() -> Arc<CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file (a chain: the leaf first); at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            path: path.to_path_buf(),
            what: format!("unreadable PEM certificate: {error}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "no certificate (a PEM block -----BEGIN CERTIFICATE-----) in the file".into(),
        });
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| TlsError::Pem {
        path: path.to_path_buf(),
        what: format!("no usable private key (a PEM block -----BEGIN PRIVATE KEY-----): {error}"),
    })
}

/// A root store holding every certificate of a PEM file (a CA bundle).
pub fn load_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|error| TlsError::Pem {
            path: path.to_path_buf(),
            what: format!("not a usable CA certificate: {error}"),
        })?;
    }
    Ok(roots)
}

/// The DNS names (subjectAltName dNSName entries) a certificate carries: how a client that
/// proved it holds the certificate's key is named (`--update-identity ZONE=SAN`).
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(cert) => cert.valid_dns_names().map(str::to_string).collect(),
        Err(_) => Vec::new(),
    }
}

/// Who the other end of a TLS connection proved to be: the DNS names of the certificate it
/// presented and the handshake verified (empty when it presented none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    pub dns_names: Vec<String>,
}

impl PeerIdentity {
    /// The identity of a verified peer chain (its leaf first).
    pub fn from_chain(chain: Option<&[CertificateDer<'_>]>) -> PeerIdentity {
        PeerIdentity {
            dns_names: chain
                .and_then(|chain| chain.first())
                .map(dns_names)
                .unwrap_or_default(),
        }
    }

    /// The peer's certificate names `san` (DNS names compare without case).
    pub fn has_dns_name(&self, san: &str) -> bool {
        let san = san.trim_end_matches('.');
        self.dns_names
            .iter()
            .any(|name| name.trim_end_matches('.').eq_ignore_ascii_case(san))
    }
}
