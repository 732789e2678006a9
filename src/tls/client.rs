//! What a TLS client trusts and presents, and handshake failures in words.
//!
//! Trust is the system's roots plus an optional CA file (`--ca`, `AOP_CA`); a client
//! certificate (`--client-cert`/`--client-key`, or a node's own certificate) is presented
//! when a server asks for one. Failures are [`TlsFailure`]s whose text says what to change:
//! rustls reports "invalid peer certificate: UnknownIssuer", which an operator should not
//! have to decode; and under TLS 1.3 a server that refuses the client's certificate says so
//! only after the client finished its handshake, so the stream itself ([`TlsClientStream`])
//! turns such alerts into the same words on the first read.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{TlsError, load_certs, load_key, load_roots, provider};

/// Where a client's extra CA and its own certificate live (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// Trusted beside the system roots (PEM, one or more CA certificates).
    pub ca: Option<PathBuf>,
    /// Presented when a server asks for a client certificate; with `key`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A client's live TLS settings.
#[derive(Debug)]
pub struct ClientTls {
    files: ClientTlsFiles,
    config: ArcSwap<ClientConfig>,
}

/// A TLS handshake or session that failed, in words.
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS with {server}: {reason}")]
pub struct TlsFailure {
    /// The server name the client asked for.
    pub server: String,
    pub reason: String,
}

impl ClientTls {
    pub fn load(files: ClientTlsFiles) -> Result<Arc<ClientTls>, TlsError> {
        let config = build(&files)?;
        Ok(Arc::new(ClientTls {
            files,
            config: ArcSwap::from_pointee(config),
        }))
    }

    /// The system roots only, no client certificate: the settings of a client given none.
    /// Built once per process.
    pub fn system() -> Result<Arc<ClientTls>, TlsError> {
        static SYSTEM: OnceLock<Arc<ClientTls>> = OnceLock::new();
        if let Some(system) = SYSTEM.get() {
            return Ok(Arc::clone(system));
        }
        let system = ClientTls::load(ClientTlsFiles::default())?;
        Ok(Arc::clone(SYSTEM.get_or_init(|| system)))
    }

    /// [`ClientTls::http_config`] of `tls`, or of [`ClientTls::system`] when none is given:
    /// what an HTTP client trusts. Every HTTP client of the project is given one, because
    /// reqwest's own default TLS would need a process-wide crypto provider, which this
    /// project never installs.
    pub fn http_config_or_system(tls: Option<&ClientTls>) -> Result<ClientConfig, TlsError> {
        match tls {
            Some(tls) => Ok(tls.http_config()),
            None => Ok(ClientTls::system()?.http_config()),
        }
    }

    /// Re-reads the files; on error the settings in force stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.files)?;
        self.config.store(Arc::new(config));
        Ok(())
    }

    pub fn files(&self) -> &ClientTlsFiles {
        &self.files
    }

    /// The settings for a handshake starting now (ALPN `h2`, for gRPC).
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.load_full()
    }

    /// The same trust and client certificate without ALPN, for HTTP clients that set their
    /// own.
    pub fn config_without_alpn(&self) -> ClientConfig {
        let mut config = (*self.config()).clone();
        config.alpn_protocols.clear();
        config
    }

    /// The same trust and client certificate for an HTTP/1.1 client (reqwest, which is
    /// built here without HTTP/2): ALPN `http/1.1`. A copy of the settings in force now; the
    /// client built from it keeps them.
    pub fn http_config(&self) -> ClientConfig {
        let mut config = (*self.config()).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    /// A TLS session over `io` with the server named `host` (a DNS name or an address).
    pub async fn connect<IO>(&self, host: &str, io: IO) -> Result<TlsClientStream<IO>, TlsFailure>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let server: Arc<str> = Arc::from(host);
        let name = ServerName::try_from(host.to_string()).map_err(|error| TlsFailure {
            server: host.to_string(),
            reason: format!("{host:?} is not a valid server name: {error}"),
        })?;
        let connector = tokio_rustls::TlsConnector::from(self.config());
        match connector.connect(name, io).await {
            Ok(stream) => Ok(TlsClientStream {
                inner: Box::new(stream),
                server,
            }),
            Err(error) => Err(TlsFailure {
                server: host.to_string(),
                reason: describe_io(&error, self.files.ca.as_deref()),
            }),
        }
    }
}

/// The system's trusted roots, read once per process (a missing or partly unreadable
/// store leaves fewer roots, never an error: `--ca` still works).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        if !found.errors.is_empty() {
            tracing::debug!(errors = ?found.errors, "some system root certificates were not read");
        }
        found.certs
    })
}

fn build(files: &ClientTlsFiles) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(ca) = &files.ca {
        for cert in load_roots(ca)?.roots {
            roots.roots.push(cert);
        }
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Rejected {
            what: "TLS protocol versions".into(),
            reason: error.to_string(),
        })?
        .with_root_certificates(roots);
    let mut config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|error| TlsError::Rejected {
                what: format!(
                    "client certificate {} with key {}",
                    cert.display(),
                    key.display()
                ),
                reason: error.to_string(),
            })?,
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) | (None, Some(_)) => {
            return Err(TlsError::Rejected {
                what: "client certificate".into(),
                reason:
                    "give both the certificate and its key (--client-cert FILE --client-key FILE)"
                        .into(),
            });
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Why a request failed in TLS, in words, when it did: the first rustls error in `error`'s
/// chain of sources (an HTTP client's error holds it in an `io::Error` deep down), described
/// as [`TlsFailure`]s are. `ca` is the extra CA the client trusted, named in the advice.
pub fn failure_reason(
    error: &(dyn std::error::Error + 'static),
    ca: Option<&Path>,
) -> Option<String> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(describe(tls, ca));
        }
        if let Some(failure) = error.downcast_ref::<TlsFailure>() {
            return Some(failure.reason.clone());
        }
        // An io::Error's `source` is its inner error's source, skipping the inner error
        // itself (where TLS libraries put the rustls error): step into it instead.
        current = match error
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

/// Why a TLS session failed, in words an operator can act on.
fn describe_io(error: &io::Error, ca: Option<&Path>) -> String {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(error) => describe(error, ca),
        None => match error.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => format!(
                "the server closed the connection during the TLS handshake ({error}); it may not \
                 speak TLS, or it refused this client"
            ),
            _ => format!("TLS handshake failed: {error}"),
        },
    }
}

fn describe(error: &rustls::Error, ca: Option<&Path>) -> String {
    let trusted = match ca {
        Some(ca) => format!("the system roots or {}", ca.display()),
        None => "the system roots (no --ca given)".to_string(),
    };
    match error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer => format!(
                "the server's certificate does not verify: it is not signed by a CA this client \
                 trusts ({trusted}); give the CA that signed it with --ca FILE"
            ),
            CertificateError::BadSignature => format!(
                "the server's certificate does not verify: its signature does not match the \
                 CA of that name this client trusts ({trusted}); another CA with the same \
                 name signed it, give that one with --ca FILE"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the server's certificate does not verify: it is not valid for the name or \
                 address in the URL (see its subjectAltNames)"
                    .to_string()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate does not verify: it has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate does not verify: it is not valid yet".to_string()
            }
            other => format!("the server's certificate does not verify: {other:?}"),
        },
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the server requires a client certificate (mTLS): give --client-cert FILE \
             --client-key FILE"
                .to_string()
        }
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::DecryptError),
        ) => format!(
            "the server refused this client's certificate (alert {alert:?}): it must be signed \
             by the CA the server trusts for clients"
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
            "the server did not answer in TLS ({error}); if it is a plaintext node, use an \
             http:// URL"
        ),
        other => other.to_string(),
    }
}

/// A client TLS stream whose errors say why in words ([`TlsFailure`] inside the
/// `io::Error`).
pub struct TlsClientStream<IO> {
    inner: Box<tokio_rustls::client::TlsStream<IO>>,
    server: Arc<str>,
}

impl<IO> TlsClientStream<IO> {
    /// The certificates the server presented (its leaf first).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.inner.get_ref().1.peer_certificates()
    }

    fn explain(&self, error: io::Error) -> io::Error {
        match error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => io::Error::new(
                error.kind(),
                TlsFailure {
                    server: self.server.to_string(),
                    reason: describe(tls, None),
                },
            ),
            None => error,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsClientStream<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut *self.inner).poll_read(cx, buf) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(self.explain(error))),
            other => other,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsClientStream<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut *self.inner).poll_write(cx, buf) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(self.explain(error))),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut *self.inner).poll_flush(cx) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(self.explain(error))),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut *self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(self.explain(error))),
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
