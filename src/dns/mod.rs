//! The DNS door (docs/protocol.md §5): the same zone data answering real DNS queries over UDP
//! and TCP, so `dig`, Unbound and DNS-AID clients can resolve agent names.
//!
//! [`respond`] turns one query into one response from the catalog ([`records`] maps agents,
//! aliases and zones to TXT, SVCB, SRV, CNAME, SOA, NS and glue); the common answers (an
//! agent's TXT, SRV and addresses, [`direct`]; negatives, [`negative`]) are written straight
//! into bytes first, and other simple questions come from [`cache`]. This module owns the
//! sockets: UDP workers that answer each datagram in place (through the optional
//! response-rate limiter, [`ratelimit`]), and a TCP listener with a cap on connections and an
//! idle timeout, for answers too large for UDP (RFC 7766).

pub mod cache;
pub mod direct;
pub mod message;
pub mod negative;
pub mod observe;
pub mod ratelimit;
pub mod records;
pub mod respond;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admission::{Admission, Bounds};
use crate::catalog::Catalog;
use crate::telemetry::RequestId;
use message::Transport;
pub use observe::DnsCounters;
use ratelimit::{ResponseRateLimiter, Verdict};
use respond::Answerer;

/// Bounds on TCP clients.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Connections served at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Connections one client address may hold, so one client cannot take them all.
    pub per_client: usize,
    /// A connection with no query for this long is closed (RFC 7766 section 6.2.3).
    pub idle_timeout: Duration,
    /// The idle timeout while more than half the connections are taken: as NSD does, a
    /// busy door gives idle connections less time, so a client that opens many and sends
    /// nothing cannot keep out those that have queries.
    pub busy_idle_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 256,
            per_client: 16,
            idle_timeout: Duration::from_secs(10),
            busy_idle_timeout: Duration::from_millis(500),
        }
    }
}
/// UDP workers sharing the socket.
const UDP_WORKERS: usize = 2;
/// Bytes of encoded responses kept for repeat questions.
const RESPONSE_CACHE_BYTES: u64 = 64 << 20;
/// UDP socket buffers. The kernel charges each small datagram its whole buffer (about a
/// kilobyte), so the 208 KB default overflows with a couple of hundred queries in flight
/// and drops them; NSD and Unbound ask for megabytes too. Capped by net.core.rmem_max.
const UDP_SOCKET_BUFFER: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    #[error("cannot listen for DNS on {addr} ({transport}): {source}")]
    Bind {
        addr: SocketAddr,
        transport: &'static str,
        source: std::io::Error,
    },
}

/// Bound UDP and TCP sockets on one address, not yet serving.
pub struct DnsListener {
    udp: UdpSocket,
    tcp: TcpListener,
    addr: SocketAddr,
    limits: TcpLimits,
    /// Answers per second per client network over UDP (`--dns-rate-limit`); `None`: no limit.
    rate_limit: Option<u32>,
}

impl DnsListener {
    /// Binds UDP and TCP on `addr`; with port 0, one free port that both can use.
    pub async fn bind(addr: SocketAddr) -> Result<DnsListener, DnsError> {
        const ATTEMPTS: usize = 16;
        let bind_error = |transport, source| DnsError::Bind {
            addr,
            transport,
            source,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let udp = UdpSocket::bind(addr)
                .await
                .map_err(|e| bind_error("udp", e))?;
            let bound = udp.local_addr().map_err(|e| bind_error("udp", e))?;
            let socket = socket2::SockRef::from(&udp);
            if let Err(error) = socket
                .set_recv_buffer_size(UDP_SOCKET_BUFFER)
                .and_then(|()| socket.set_send_buffer_size(UDP_SOCKET_BUFFER))
            {
                tracing::warn!(%error, "cannot enlarge the DNS UDP socket buffers; bursts may be dropped");
            }
            match TcpListener::bind(bound).await {
                Ok(tcp) => {
                    return Ok(DnsListener {
                        udp,
                        tcp,
                        addr: bound,
                        limits: TcpLimits::default(),
                        rate_limit: None,
                    });
                }
                // The OS gave UDP a port whose TCP twin is taken: try another.
                Err(_) if addr.port() == 0 && attempt < ATTEMPTS => continue,
                Err(error) => return Err(bind_error("tcp", error)),
            }
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn with_tcp_limits(mut self, limits: TcpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Limits UDP answers to `qps` a second per client /24 or /56 ([`ratelimit`]); `None`
    /// answers every query.
    pub fn with_rate_limit(mut self, qps: Option<u32>) -> Self {
        self.rate_limit = qps;
        self
    }

    /// Serves until `shutdown` is cancelled.
    pub fn serve(
        self,
        catalog: Arc<Catalog>,
        shutdown: CancellationToken,
        counters: Arc<DnsCounters>,
    ) -> tokio::task::JoinHandle<()> {
        let addr = self.addr;
        let udp = Arc::new(self.udp);
        let tcp = self.tcp;
        let limits = self.limits;
        let door = Arc::new(Door {
            answerer: Answerer::new(catalog, RESPONSE_CACHE_BYTES),
            counters,
            limiter: self.rate_limit.map(ResponseRateLimiter::new),
        });
        tokio::spawn(async move {
            match &door.limiter {
                Some(limiter) => tracing::info!(
                    %addr,
                    rate_limit = limiter.qps(),
                    "DNS door listening (UDP and TCP; UDP answers limited per client /24 or /56)"
                ),
                None => tracing::info!(%addr, "DNS door listening (UDP and TCP)"),
            }
            let mut tasks = JoinSet::new();
            for _ in 0..UDP_WORKERS {
                tasks.spawn(serve_udp(
                    Arc::clone(&udp),
                    Arc::clone(&door),
                    shutdown.clone(),
                ));
            }
            tasks.spawn(serve_tcp(tcp, limits, door, shutdown));
            while tasks.join_next().await.is_some() {}
        })
    }
}

/// What every socket task shares.
struct Door {
    answerer: Answerer,
    counters: Arc<DnsCounters>,
    limiter: Option<ResponseRateLimiter>,
}

impl Door {
    /// Answers a UDP query from `client`, unless its network is over the rate limit: then
    /// the answer is truncated or dropped ([`ratelimit`]), and counted.
    fn answer_udp(&self, request: &[u8], client: IpAddr) -> Option<Vec<u8>> {
        if let Some(limiter) = &self.limiter {
            let truncated = match limiter.check(client, Instant::now()) {
                Verdict::Answer => return self.answer(request, Transport::Udp),
                Verdict::Truncate => cache::parse_simple(request)
                    .and_then(|query| ratelimit::truncated(request, query.question_end)),
                Verdict::Drop => None,
            };
            let counter = match truncated {
                Some(_) => &self.counters.rate_limited_truncated,
                None => &self.counters.rate_limited_dropped,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return truncated;
        }
        self.answer(request, Transport::Udp)
    }

    /// Answers one query inside a span carrying its request id (debug level: at the
    /// default `info` filter the span costs nothing per query, and a SERVFAIL's warning
    /// names the id itself), then counts and records it.
    fn answer(&self, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let started = Instant::now();
        let request_id = RequestId::generate();
        let span = tracing::debug_span!("dns", request_id = %request_id);
        let _entered = span.enter();
        let (response, disposition) = self.answerer.answer(request, transport);
        self.counters.observe(
            request,
            disposition,
            response.as_deref(),
            started.elapsed(),
            &request_id,
        );
        response
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, door: Arc<Door>, shutdown: CancellationToken) {
    #[cfg(target_os = "linux")]
    {
        batch::serve_udp(socket, door, shutdown).await
    }
    #[cfg(not(target_os = "linux"))]
    {
        serve_udp_one_by_one(socket, door, shutdown).await
    }
}

#[cfg_attr(target_os = "linux", allow(dead_code))]
async fn serve_udp_one_by_one(
    socket: Arc<UdpSocket>,
    door: Arc<Door>,
    shutdown: CancellationToken,
) {
    // Large enough for any datagram, so an oversized query is seen whole and answered.
    let mut buffer = vec![0u8; 65_535];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = socket.recv_from(&mut buffer) => received,
        };
        let (len, peer) = match received {
            Ok(received) => received,
            // ICMP errors from earlier sends surface here on some systems; keep serving.
            Err(error) => {
                tracing::debug!(%error, "DNS UDP receive failed");
                continue;
            }
        };
        if let Some(response) = door.answer_udp(&buffer[..len], peer.ip())
            && let Err(error) = socket.send_to(&response, peer).await
        {
            tracing::debug!(%peer, %error, "DNS UDP send failed");
        }
    }
}

/// Linux: datagrams received and sent in batches (`recvmmsg`, `sendmmsg`), one system call
/// for up to [`batch::BATCH`] queries each way instead of one per query.
#[cfg(target_os = "linux")]
mod batch {
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;
    use std::sync::Arc;

    use tokio::io::Interest;
    use tokio::net::UdpSocket;
    use tokio_util::sync::CancellationToken;

    use super::Door;

    use crate::sys::udp_batch::{BATCH, Inbox, try_send_batch};

    /// Sends `responses` (each to its peer) with as few `sendmmsg` calls as the socket's
    /// buffer allows; a datagram that would block is sent on its own, waiting its turn.
    async fn send_all(socket: &UdpSocket, responses: &[(Vec<u8>, SocketAddr)]) {
        let mut sent = 0;
        while sent < responses.len() {
            match try_send_batch(socket, &responses[sent..]) {
                Ok(count) if count > 0 => sent += count,
                _ => {
                    let (bytes, peer) = &responses[sent];
                    if let Err(error) = socket.send_to(bytes, *peer).await {
                        tracing::debug!(%peer, %error, "DNS UDP send failed");
                    }
                    sent += 1;
                }
            }
        }
    }

    pub async fn serve_udp(socket: Arc<UdpSocket>, door: Arc<Door>, shutdown: CancellationToken) {
        let mut inbox = Inbox::new();
        let mut responses: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => return,
                received = socket.async_io(Interest::READABLE, || inbox.receive(socket.as_raw_fd())) => received,
            };
            let count = match received {
                Ok(count) => count,
                // ICMP errors from earlier sends surface here; keep serving.
                Err(error) => {
                    tracing::debug!(%error, "DNS UDP receive failed");
                    continue;
                }
            };
            responses.clear();
            for index in 0..count {
                let Some(peer) = inbox.peer(index) else {
                    continue;
                };
                if let Some(response) = door.answer_udp(inbox.datagram(index), peer.ip()) {
                    responses.push((response, peer));
                }
            }
            send_all(&socket, &responses).await;
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    limits: TcpLimits,
    door: Arc<Door>,
    shutdown: CancellationToken,
) {
    let admission = Admission::new(Bounds {
        total: limits.max_connections,
        per_client: limits.per_client,
    });
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "DNS TCP accept failed");
                continue;
            }
        };
        let ticket = match admission.admit(peer.ip()) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                door.counters.tcp_refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, %refusal, "DNS TCP connection refused; closing");
                drop(stream);
                continue;
            }
        };
        let door = Arc::clone(&door);
        let shutdown = shutdown.clone();
        let admission = Arc::clone(&admission);
        connections.spawn(async move {
            let _ticket = ticket;
            let idle = || {
                if admission.pressure() > 0.5 {
                    limits.busy_idle_timeout
                } else {
                    limits.idle_timeout
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = serve_tcp_connection(stream, idle, &door) => {}
            }
        });
    }
    connections.shutdown().await;
}

/// Length-prefixed queries, answered in order, until the peer closes or goes idle.
async fn serve_tcp_connection(
    mut stream: TcpStream,
    idle_timeout: impl Fn() -> Duration,
    door: &Door,
) {
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::new();
    loop {
        let mut prefix = [0u8; 2];
        // Judged afresh for each query: the door may have become busy meanwhile.
        match tokio::time::timeout(idle_timeout(), stream.read_exact(&mut prefix)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return,
        }
        let len = usize::from(u16::from_be_bytes(prefix));
        buffer.resize(len, 0);
        match tokio::time::timeout(idle_timeout(), stream.read_exact(&mut buffer)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return,
        }
        let Some(response) = door.answer(&buffer, Transport::Tcp) else {
            continue;
        };
        let Ok(len) = u16::try_from(response.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&response);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
