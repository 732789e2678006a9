//! A listener's TLS settings, re-read from their files on demand (SIGHUP).
//!
//! Reloading swaps an `Arc<ServerConfig>` in an `ArcSwap`: a handshake takes the current
//! configuration when it starts and keeps it, so connections already open are untouched and
//! every new one sees the new certificate. A reload that fails (a half-written file, a key
//! that does not match) keeps the previous settings and says why.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;

use super::{TlsError, load_certs, load_key, load_roots, provider};

/// Where a listener's certificate, key and client CA live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The certificate chain (PEM, the leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// With a client CA, every client must present a certificate chaining to it (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// A listener's live TLS settings.
#[derive(Debug)]
pub struct ServerTls {
    files: ServerTlsFiles,
    alpn: Vec<Vec<u8>>,
    config: ArcSwap<ServerConfig>,
}

impl ServerTls {
    /// The settings of a gRPC door: HTTP/2 only (ALPN `h2`).
    pub fn grpc(files: ServerTlsFiles) -> Result<Arc<ServerTls>, TlsError> {
        ServerTls::load(files, vec![b"h2".to_vec()])
    }

    /// The settings of an HTTPS endpoint: ALPN `http/1.1` only, since the HTTP doors are
    /// served by axum built with HTTP/1.1 alone (a client offered `h2` would speak a
    /// protocol the server does not).
    pub fn https(files: ServerTlsFiles) -> Result<Arc<ServerTls>, TlsError> {
        ServerTls::load(files, vec![b"http/1.1".to_vec()])
    }

    fn load(files: ServerTlsFiles, alpn: Vec<Vec<u8>>) -> Result<Arc<ServerTls>, TlsError> {
        let config = build(&files, &alpn)?;
        Ok(Arc::new(ServerTls {
            files,
            alpn,
            config: ArcSwap::from_pointee(config),
        }))
    }

    /// Re-reads the files; on error the settings in force stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.files, &self.alpn)?;
        self.config.store(Arc::new(config));
        Ok(())
    }

    /// The settings for a handshake starting now.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }

    /// An acceptor with the settings in force now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config())
    }

    pub fn files(&self) -> &ServerTlsFiles {
        &self.files
    }

    /// Clients must present a certificate (mTLS).
    pub fn requires_client_certificate(&self) -> bool {
        self.files.client_ca.is_some()
    }
}

fn build(files: &ServerTlsFiles, alpn: &[Vec<u8>]) -> Result<ServerConfig, TlsError> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let rejected = |what: String| {
        move |error: rustls::Error| TlsError::Rejected {
            what,
            reason: error.to_string(),
        }
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rejected("TLS protocol versions".into()))?;
    let builder = match &files.client_ca {
        Some(path) => {
            let roots = load_roots(path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|error| TlsError::Rejected {
                    what: format!("client CA {}", path.display()),
                    reason: error.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(rejected(format!(
            "certificate {} with key {}",
            files.cert.display(),
            files.key.display()
        )))?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}
