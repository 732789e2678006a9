//! The listener of the HTTP doors (the MCP gateway, built-in agents, the admin endpoint):
//! plain TCP, or TLS with a [`ServerTls`] whose files SIGHUP re-reads.
//!
//! axum serves any [`Listener`]; this one hands it connections whose TLS handshake is
//! already done, so the handlers never know which it was. Each handshake runs on its own
//! task (a client that opens a connection and says nothing must not hold up the next
//! accept), bounded in time ([`HANDSHAKE_TIMEOUT`]) and in number ([`HANDSHAKES_IN_FLIGHT`]);
//! a failed one (a plaintext client, a client that does not trust the certificate) is logged
//! at debug level and the door keeps serving. Each handshake takes the settings in force
//! when it starts ([`ServerTls::acceptor`]), so a reload reaches new connections only.
//!
//! Who is on the other end ([`HttpPeer`]: the client's address, and the local address it
//! reached) is what the doors' guards read: sessions per client address, and the Host
//! check, which accepts the address a connection reached.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use super::ServerTls;

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes under way at once; past this the listener stops accepting until one ends
/// (the kernel queues the rest), so a flood of silent connections costs bounded memory.
pub const HANDSHAKES_IN_FLIGHT: usize = 1024;

/// A bound HTTP listener: plaintext, or TLS.
pub struct HttpListener {
    local: SocketAddr,
    kind: Kind,
}

enum Kind {
    Plain(TcpListener),
    /// Connections whose handshake finished, from the accept task.
    Tls(mpsc::Receiver<(HttpStream, SocketAddr)>),
}

impl HttpListener {
    /// Serves `listener` in plaintext, or over TLS with `tls`.
    pub fn new(listener: TcpListener, tls: Option<Arc<ServerTls>>) -> io::Result<HttpListener> {
        let local = listener.local_addr()?;
        let kind = match tls {
            None => Kind::Plain(listener),
            Some(tls) => {
                let (sender, receiver) = mpsc::channel(64);
                tokio::spawn(accept_tls(listener, tls, sender));
                Kind::Tls(receiver)
            }
        };
        Ok(HttpListener { local, kind })
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        match self.kind {
            Kind::Plain(_) => "http",
            Kind::Tls(_) => "https",
        }
    }
}

/// Accepts connections and runs their handshakes until the listener is dropped.
async fn accept_tls(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    accepted: mpsc::Sender<(HttpStream, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
    let mut backoff = Duration::from_millis(10);
    loop {
        let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else {
            return;
        };
        let result = tokio::select! {
            () = accepted.closed() => return,
            result = TcpListener::accept(&listener) => result,
        };
        let (stream, peer) = match result {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(error) => {
                // Out of file descriptors: the connection stays queued; do not spin.
                tracing::warn!(%error, retry_ms = backoff.as_millis() as u64, "HTTPS door cannot accept connections");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = tls.acceptor();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let _ = accepted
                        .send((HttpStream::Tls(Box::new(stream)), peer))
                        .await;
                }
                // The client hears it from the TLS alert (or the closed connection).
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl Listener for HttpListener {
    type Io = HttpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (HttpStream, SocketAddr) {
        match &mut self.kind {
            Kind::Plain(listener) => {
                let mut backoff = Duration::from_millis(10);
                loop {
                    match TcpListener::accept(listener).await {
                        Ok((stream, peer)) => {
                            // Responses go out in several writes (headers, SSE events);
                            // without TCP_NODELAY, Nagle and the peer's delayed ACK add
                            // 40 ms to every answer.
                            let _ = stream.set_nodelay(true);
                            return (HttpStream::Plain(stream), peer);
                        }
                        Err(error) => {
                            tracing::warn!(%error, retry_ms = backoff.as_millis() as u64, "HTTP door cannot accept connections");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(1));
                        }
                    }
                }
            }
            Kind::Tls(receiver) => match receiver.recv().await {
                Some(accepted) => accepted,
                // The accept task is gone (it only ends when this listener is dropped):
                // nothing more will come.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Who a request came from, for the doors' guards.
#[derive(Debug, Clone, Copy)]
pub struct HttpPeer {
    /// The client's address.
    pub remote: SocketAddr,
    /// The local address the connection reached (on a wildcard bind, the interface's).
    pub local: SocketAddr,
}

impl Connected<IncomingStream<'_, HttpListener>> for HttpPeer {
    fn connect_info(stream: IncomingStream<'_, HttpListener>) -> HttpPeer {
        HttpPeer {
            remote: *stream.remote_addr(),
            // Unknown: the unspecified address, which no Host matches.
            local: stream
                .io()
                .local_addr()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
        }
    }
}

/// One accepted connection: plaintext or after its handshake.
pub enum HttpStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl HttpStream {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            HttpStream::Plain(stream) => stream.local_addr(),
            HttpStream::Tls(stream) => stream.get_ref().0.local_addr(),
        }
    }
}

impl AsyncRead for HttpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HttpStream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            HttpStream::Tls(stream) => Pin::new(&mut **stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for HttpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            HttpStream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            HttpStream::Tls(stream) => Pin::new(&mut **stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HttpStream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            HttpStream::Tls(stream) => Pin::new(&mut **stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HttpStream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            HttpStream::Tls(stream) => Pin::new(&mut **stream).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            HttpStream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            HttpStream::Tls(stream) => Pin::new(&mut **stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            HttpStream::Plain(stream) => stream.is_write_vectored(),
            HttpStream::Tls(stream) => stream.is_write_vectored(),
        }
    }
}
