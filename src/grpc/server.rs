//! The gRPC door's listener: the one place a gRPC server is built (so TLS slots in here). It
//! owns the accept loop and what bounds a client:
//!
//! - connections: a bound in total and per client address ([`Admission`]); past it a new
//!   connection is closed at once and counted, the node keeps serving the others;
//! - a connection that sends nothing within the preface timeout is closed (a client that
//!   opens sockets and never speaks holds no descriptor for long);
//! - HTTP/2: concurrent streams per connection, the header list size, keepalive pings that
//!   close connections whose peer stopped answering;
//! - requests in flight on the whole node, shed with RESOURCE_EXHAUSTED past
//!   `--max-concurrent` (`limit::InFlightLimitLayer`);
//! - accept errors (out of file descriptors) back off instead of spinning;
//! - TLS, when the node has a certificate: the handshake runs here, on its own task per
//!   connection and within the preface timeout, with the settings current when it starts
//!   ([`ServerTls`] swaps them on SIGHUP). We do the handshake ourselves (tokio-rustls) and
//!   feed tonic the finished streams rather than using tonic's `ServerTlsConfig`, because
//!   that one is fixed when the server is built (no reload) and would bypass this loop's
//!   bounds; the client's verified certificate names travel with each request
//!   ([`PeerInfo`]) for updates authorised by identity.
//!
//! Then the layers (the observer outermost, the in-flight bound, the request size limit),
//! the registry and health services, until shutdown.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use super::RegistryService;
use super::limit::{InFlightLimitLayer, RequestSizeLimitLayer};
use super::observe::{GrpcMetrics, ObserveLayer};
use super::pb::registry_server::RegistryServer;
use crate::admission::{Admission, Bounds, Ticket};
use crate::record::limits::GRPC_REQUEST_MAX_BYTES;
use crate::telemetry::RecentQueries;
use crate::tls::{PeerIdentity, ServerTls};

/// What the door records of its traffic.
pub struct Observers {
    pub metrics: Arc<GrpcMetrics>,
    pub recent: Arc<RecentQueries>,
}

/// What bounds the clients of one gRPC door.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Connections open at once, in total and per client address.
    pub connections: Bounds,
    /// A connection that has sent nothing by then is closed.
    pub preface_timeout: Duration,
    /// Requests in flight on the node; more are shed with RESOURCE_EXHAUSTED.
    pub max_concurrent: usize,
    /// HTTP/2 streams one connection may have open at once.
    pub streams_per_connection: u32,
    /// HTTP/2 header list size.
    pub max_header_list_bytes: u32,
    /// How often an idle connection is pinged, and how long the answer may take.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Watch streams open at once, in total and per client address.
    pub watches: Bounds,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            connections: Bounds {
                total: 8192,
                per_client: 512,
            },
            preface_timeout: Duration::from_secs(10),
            max_concurrent: 1024,
            streams_per_connection: 256,
            max_header_list_bytes: 16 * 1024,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            watches: Bounds {
                total: 10_000,
                per_client: 64,
            },
        }
    }
}

/// Serves `service` on `listener` until `shutdown`, draining requests in flight; the task
/// ends with the server's error, if it failed. `connections` bounds the connections.
pub fn serve(
    listener: TcpListener,
    service: RegistryService,
    observers: Observers,
    limits: ServerLimits,
    connections: Arc<Admission>,
    tls: Option<Arc<ServerTls>>,
    shutdown: CancellationToken,
) -> JoinHandle<Result<(), String>> {
    let addr = listener.local_addr().ok();
    let registry = RegistryServer::new(service)
        // Our own layer enforces the contract's limit with the contract's status; this is
        // only a backstop above it.
        .max_decoding_message_size(2 * GRPC_REQUEST_MAX_BYTES);
    let observer = ObserveLayer::new(observers.metrics, observers.recent);
    let (accepted, incoming) = mpsc::channel(64);
    tokio::spawn(accept_loop(
        listener,
        connections,
        limits.preface_timeout,
        tls,
        accepted,
        shutdown.clone(),
    ));
    tokio::spawn(async move {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<RegistryServer<RegistryService>>()
            .await;
        if let Some(addr) = addr {
            tracing::info!(%addr, "gRPC door listening");
        }
        tonic::transport::Server::builder()
            .max_concurrent_streams(Some(limits.streams_per_connection))
            .http2_max_header_list_size(Some(limits.max_header_list_bytes))
            .http2_keepalive_interval(Some(limits.keepalive_interval))
            .http2_keepalive_timeout(Some(limits.keepalive_timeout))
            // Outermost, so it sees (and counts) what the other layers refuse.
            .layer(observer)
            .layer(InFlightLimitLayer::new(limits.max_concurrent))
            .layer(RequestSizeLimitLayer::new(GRPC_REQUEST_MAX_BYTES))
            .add_service(health_service)
            .add_service(registry)
            .serve_with_incoming_shutdown(ReceiverStream::new(incoming), shutdown.cancelled_owned())
            .await
            .map_err(|error| super::client::error_chain(&error))
    })
}

/// Accepts connections, admits those within the bounds, and hands them to the server.
async fn accept_loop(
    listener: TcpListener,
    connections: Arc<Admission>,
    preface_timeout: Duration,
    tls: Option<Arc<ServerTls>>,
    accepted: mpsc::Sender<Result<Connection, io::Error>>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(10);
    let mut warned: Option<tokio::time::Instant> = None;
    let mut warn = |message: String| {
        // At most one warning every 10 s: a flood must not become a flood of logs.
        let now = tokio::time::Instant::now();
        if warned.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(10)) {
            warned = Some(now);
            tracing::warn!("{message}");
        }
    };
    loop {
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            result = listener.accept() => result,
        };
        let (stream, peer) = match result {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(error) => {
                // Out of file descriptors (EMFILE, ENFILE) or memory: the connection stays
                // queued in the kernel; wait for descriptors to come back, do not spin.
                warn(format!(
                    "gRPC door cannot accept connections: {error} (retrying in {} ms)",
                    backoff.as_millis()
                ));
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let ticket = match connections.admit(peer.ip()) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                warn(format!(
                    "gRPC connection from {peer} refused: {refusal} (connections from clients over the bounds are closed at once)"
                ));
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_keepalive(true);
        let guarded = Guarded {
            inner: stream,
            _ticket: ticket,
            preface: Some(Box::pin(tokio::time::sleep(preface_timeout))),
        };
        match &tls {
            None => {
                if accepted.send(Ok(Connection::Plain(guarded))).await.is_err() {
                    return;
                }
            }
            Some(tls) => {
                // Its own task: a slow handshake must not hold up the next accept.
                let acceptor = tls.acceptor();
                let accepted = accepted.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(preface_timeout, acceptor.accept(guarded)).await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            let identity = Arc::new(PeerIdentity::from_chain(
                                stream.get_ref().1.peer_certificates(),
                            ));
                            let _ = accepted
                                .send(Ok(Connection::Tls(Box::new(stream), identity)))
                                .await;
                        }
                        // The client is told by the TLS alert; the node keeps serving.
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                });
            }
        }
    }
}

/// Who sent a request: the client's address and, over mTLS, the names its verified
/// certificate carries. tonic puts it in every request's extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote: Option<std::net::SocketAddr>,
    /// `None` on a plaintext connection; empty names when the client presented no
    /// certificate.
    pub identity: Option<Arc<PeerIdentity>>,
}

impl PeerInfo {
    /// The peer of a request that reached this door.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&PeerInfo> {
        request.extensions().get::<PeerInfo>()
    }
}

/// A connection the server reads requests from: plaintext or after its TLS handshake.
pub enum Connection {
    Plain(Guarded),
    Tls(
        Box<tokio_rustls::server::TlsStream<Guarded>>,
        Arc<PeerIdentity>,
    ),
}

impl Connected for Connection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            Connection::Plain(guarded) => PeerInfo {
                remote: guarded.inner.peer_addr().ok(),
                identity: None,
            },
            Connection::Tls(stream, identity) => PeerInfo {
                remote: stream.get_ref().0.inner.peer_addr().ok(),
                identity: Some(Arc::clone(identity)),
            },
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(inner) => Pin::new(inner).poll_read(cx, buf),
            Connection::Tls(inner, _) => Pin::new(&mut **inner).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(inner) => Pin::new(inner).poll_write(cx, buf),
            Connection::Tls(inner, _) => Pin::new(&mut **inner).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(inner) => Pin::new(inner).poll_flush(cx),
            Connection::Tls(inner, _) => Pin::new(&mut **inner).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(inner) => Pin::new(inner).poll_shutdown(cx),
            Connection::Tls(inner, _) => Pin::new(&mut **inner).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(inner) => Pin::new(inner).poll_write_vectored(cx, bufs),
            Connection::Tls(inner, _) => Pin::new(&mut **inner).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Plain(inner) => inner.is_write_vectored(),
            Connection::Tls(inner, _) => inner.is_write_vectored(),
        }
    }
}

/// An admitted connection: its place in the bounds is held while it is open, and it is
/// closed if it sends nothing before its preface deadline.
pub struct Guarded {
    inner: TcpStream,
    _ticket: Ticket,
    /// Until the first bytes arrive.
    preface: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.preface.is_some() {
            if buf.filled().len() > before {
                self.preface = None;
            } else if let (Poll::Pending, Some(deadline)) = (&result, self.preface.as_mut())
                && deadline.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent nothing before the preface timeout",
                )));
            }
        }
        result
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
