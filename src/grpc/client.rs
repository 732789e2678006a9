//! Reaching nodes over gRPC: channels built in one place ([`endpoint`], [`Connector`]: TCP,
//! then TLS for `https://` URLs with the caller's [`ClientTls`]),
//! one pool of lazily connected channels per node ([`ChannelPool`]), a typed client for every
//! call the project makes ([`NodeClient`]), and the one mapping of gRPC failures to a
//! [`PeerFailure`] ([`status_failure`]).
//!
//! Every channel sends the id of the request being handled (`x-request-id`), so one id
//! follows a query from the gateway through the resolver to each authority it reaches.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

use crate::answer::Answer;
use crate::authority::{TransferData, TransferRequest};
use crate::keys::{SignedFields, UpdateKey};
use crate::name::Name;
pub use crate::peer::error_chain;
use crate::peer::{FailureKind, PeerFailure};
use crate::record::{Agent, ServerAddress, ZoneChange};
use crate::telemetry::RequestId;
use crate::tls::{ClientTls, TlsClientStream, TlsFailure};

use super::pb;

pub type RegistryClient = pb::registry_client::RegistryClient<TracedChannel>;

/// The header carrying a request's id from node to node.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The largest message a client accepts: a transfer chunk (about 256 KiB each, the bound
/// leaves room for one huge record) or a page of a listing.
pub const MESSAGE_MAX_BYTES: usize = 16 * 1024 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 PING on every connection this often, idle or not, and a connection whose PING is
/// not answered within [`KEEPALIVE_TIMEOUT`] is closed (the next request reconnects): after a
/// link cut, TCP would otherwise keep a stalled connection for minutes of retransmissions,
/// and every request on it would wait its whole deadline.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// A channel that sends the id of the request being handled ([`RequestId::current`]) with
/// every call, unless the call already names one.
#[derive(Debug, Clone)]
pub struct TracedChannel(Channel);

impl TracedChannel {
    pub fn new(channel: Channel) -> TracedChannel {
        TracedChannel(channel)
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for TracedChannel {
    type Response = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Response;
    type Error = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Error;
    type Future = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        if !request.headers().contains_key(REQUEST_ID_HEADER)
            && let Some(id) = RequestId::current()
            && let Ok(mut value) = http::HeaderValue::from_str(&id.to_string())
        {
            // Never indexed by HPACK: ids do not repeat (see `grpc::observe`).
            value.set_sensitive(true);
            request.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        tower::Service::call(&mut self.0, request)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The node answered with an error status.
    #[error("{message} ({code:?} from {url})")]
    Status {
        url: String,
        code: Code,
        message: String,
    },
    #[error("no answer from {url} within {} ms", timeout.as_millis())]
    Timeout { url: String, timeout: Duration },
    #[error("unusable answer from {url}: {reason}")]
    BadAnswer { url: String, reason: String },
}

impl ClientError {
    /// The status code a node answered with, if it answered.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The node answered NOT_FOUND (no such zone, or nothing at that name).
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(Code::NotFound)
    }

    /// The node does not offer the call (an older node).
    pub fn is_unimplemented(&self) -> bool {
        self.code() == Some(Code::Unimplemented)
    }

    /// What the node said, or why there was no answer.
    pub fn message(&self) -> String {
        match self {
            ClientError::Status { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// The error in the shared classification of peer failures.
    pub fn failure(&self) -> PeerFailure {
        match self {
            ClientError::InvalidUrl { url, reason } | ClientError::Unreachable { url, reason } => {
                PeerFailure::new(url, FailureKind::Unreachable, reason)
            }
            ClientError::Status { url, code, message } => {
                PeerFailure::new(url, status_kind(*code), format!("{code:?}: {message}"))
            }
            ClientError::Timeout { url, timeout } => {
                PeerFailure::new(url, FailureKind::Timeout(*timeout), "")
            }
            ClientError::BadAnswer { url, reason } => {
                PeerFailure::new(url, FailureKind::BadAnswer, reason)
            }
        }
    }
}

/// What a gRPC status says about the request: codes a server or the transport uses when the
/// request was not acted on, may have been, or was answered.
fn status_kind(code: Code) -> FailureKind {
    match code {
        // tonic reports connection failures as UNAVAILABLE before anything is sent, and
        // servers shed load with it.
        Code::Unavailable => FailureKind::Unreachable,
        Code::ResourceExhausted => FailureKind::Overloaded,
        Code::DeadlineExceeded | Code::Cancelled => FailureKind::Timeout(Duration::ZERO),
        // A broken HTTP/2 stream or connection after sending.
        Code::Unknown | Code::Internal => FailureKind::Lost,
        _ => FailureKind::Refused,
    }
}

/// A failed call to `url` as a [`PeerFailure`]; `timeout` is the budget the call had.
pub fn status_failure(url: &str, status: &Status, timeout: Duration) -> PeerFailure {
    let kind = match status_kind(status.code()) {
        FailureKind::Timeout(_) => FailureKind::Timeout(timeout),
        kind => kind,
    };
    let reason = tls_failure(status).unwrap_or_else(|| status_text(status));
    PeerFailure::new(url, kind, reason)
}

/// How much one stream may have in flight towards this client before it reads: enough for a
/// transfer chunk to arrive in one window.
const STREAM_WINDOW_BYTES: u32 = 1024 * 1024;
/// How much all of a connection's streams may have in flight towards this client. Fixed
/// rather than adaptive: h2 refuses a connection (GOAWAY `too_many_data_frames`) once the
/// small DATA frames it holds unread outgrow half this window, and a connection carrying
/// hundreds of Watch streams holds many small events at once; an adaptive window starts at
/// 64 KiB and only grows on links with a large bandwidth-delay product.
const CONNECTION_WINDOW_BYTES: u32 = 8 * 1024 * 1024;

/// The endpoint for `url` with this project's connection settings (one place, so TLS slots
/// in here).
pub fn endpoint(url: &str) -> Result<Endpoint, ClientError> {
    let invalid = |reason: String| ClientError::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(invalid(format!(
            "scheme {:?} is not http or https",
            parsed.scheme()
        )));
    }
    let endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| invalid(e.to_string()))?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES))
}

fn registry(channel: Channel) -> RegistryClient {
    RegistryClient::new(TracedChannel::new(channel)).max_decoding_message_size(MESSAGE_MAX_BYTES)
}

/// The settings of a client given no TLS files: the system roots, no client certificate.
fn system_tls(url: &str) -> Result<Arc<ClientTls>, ClientError> {
    ClientTls::system().map_err(|error| ClientError::InvalidUrl {
        url: url.to_string(),
        reason: format!("no TLS settings: {error}"),
    })
}

/// Opens one HTTP/2 connection to the node at `url` (the CLI: an unreachable node is an
/// error at once, naming it), trusting the system roots for `https://`.
pub async fn connect(url: &str) -> Result<NodeClient, ClientError> {
    connect_with(url, &system_tls(url)?).await
}

/// [`connect`] with these TLS settings (trust, client certificate) for `https://` URLs.
pub async fn connect_with(url: &str, tls: &Arc<ClientTls>) -> Result<NodeClient, ClientError> {
    let channel = endpoint(url)?
        .connect_with_connector(Connector::new(Arc::clone(tls)))
        .await
        .map_err(|error| ClientError::Unreachable {
            url: url.to_string(),
            reason: transport_reason(&error),
        })?;
    Ok(NodeClient::new(url, registry(channel)))
}

/// Why a connection failed: the TLS failure in words when there is one (not tonic's
/// "transport error"), else the whole chain of causes.
fn transport_reason(error: &(dyn std::error::Error + 'static)) -> String {
    tls_failure(error).unwrap_or_else(|| error_chain(error))
}

/// The [`TlsFailure`] somewhere in an error's chain of causes, as text.
fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(failure) = error.downcast_ref::<TlsFailure>() {
            return Some(failure.to_string());
        }
        if let Some(io) = error.downcast_ref::<io::Error>()
            && let Some(failure) = io.get_ref().and_then(|e| e.downcast_ref::<TlsFailure>())
        {
            return Some(failure.to_string());
        }
        next = error.source();
    }
    None
}

/// Connects a channel: TCP (no Nagle), then for `https://` a TLS session with the settings
/// in force at that moment, so a reloaded client certificate is used by new connections.
#[derive(Clone)]
pub struct Connector {
    tls: Arc<ClientTls>,
}

impl Connector {
    pub fn new(tls: Arc<ClientTls>) -> Connector {
        Connector { tls }
    }
}

impl tower::Service<http::Uri> for Connector {
    type Response = TokioIo<ClientStream>;
    type Error = io::Error;
    type Future = BoxFuture<'static, Result<Self::Response, io::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = Arc::clone(&self.tls);
        Box::pin(async move {
            let https = uri.scheme_str() == Some("https");
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the URL has no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let stream = if https {
                let stream = tls
                    .connect(&host, tcp)
                    .await
                    .map_err(|failure| io::Error::new(io::ErrorKind::InvalidData, failure))?;
                ClientStream::Tls(Box::new(stream))
            } else {
                ClientStream::Plain(tcp)
            };
            Ok(TokioIo::new(stream))
        })
    }
}

/// A client connection, plaintext or TLS.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsClientStream<TcpStream>>),
}

impl ClientStream {
    /// The certificates the server presented, on a TLS connection.
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        match self {
            ClientStream::Plain(_) => None,
            ClientStream::Tls(stream) => stream.peer_certificates(),
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(inner) => Pin::new(inner).poll_read(cx, buf),
            ClientStream::Tls(inner) => Pin::new(&mut **inner).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(inner) => Pin::new(inner).poll_write(cx, buf),
            ClientStream::Tls(inner) => Pin::new(&mut **inner).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(inner) => Pin::new(inner).poll_flush(cx),
            ClientStream::Tls(inner) => Pin::new(&mut **inner).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(inner) => Pin::new(inner).poll_shutdown(cx),
            ClientStream::Tls(inner) => Pin::new(&mut **inner).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(inner) => Pin::new(inner).poll_write_vectored(cx, bufs),
            ClientStream::Tls(inner) => Pin::new(&mut **inner).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(inner) => inner.is_write_vectored(),
            ClientStream::Tls(inner) => inner.is_write_vectored(),
        }
    }
}

/// One node's channels to other nodes, made lazily on first use and kept: the resolver's
/// upstream queries, forwarded requests, NOTIFYs and transfers all share them.
#[derive(Clone, Default)]
pub struct ChannelPool {
    // std Mutex: held only to look up or insert a channel, never across an await.
    clients: Arc<Mutex<HashMap<String, RegistryClient>>>,
    /// The trust and client certificate of this node's `https://` channels.
    tls: Option<Arc<ClientTls>>,
}

impl ChannelPool {
    /// A pool trusting the system roots for `https://` URLs.
    pub fn new() -> ChannelPool {
        ChannelPool::default()
    }

    /// A pool whose `https://` channels use these settings.
    pub fn with_tls(tls: Arc<ClientTls>) -> ChannelPool {
        ChannelPool {
            clients: Arc::default(),
            tls: Some(tls),
        }
    }

    /// A client for the node at `url` on the pooled channel.
    pub fn client(&self, url: &str) -> Result<NodeClient, ClientError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(url) {
            return Ok(NodeClient::new(url, client.clone()));
        }
        let tls = match &self.tls {
            Some(tls) => Arc::clone(tls),
            None => system_tls(url)?,
        };
        let client = registry(endpoint(url)?.connect_with_connector_lazy(Connector::new(tls)));
        clients.insert(url.to_string(), client.clone());
        Ok(NodeClient::new(url, client))
    }

    /// Drops the pooled channel to `url` (a request on it ran out its whole timeout: its
    /// connection may be stalled behind a cut link), so the next request connects afresh.
    /// Requests still in flight on the old channel finish or fail on it.
    pub fn forget(&self, url: &str) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(url);
    }

    /// Whether a channel to `url` is pooled.
    pub fn holds(&self, url: &str) -> bool {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(url)
    }
}

/// What a search asks (the `Search` RPC's request, without the transport's details).
#[derive(Debug, Clone, Default)]
pub struct SearchCall {
    pub query: String,
    /// The scope: agents at or below this name (empty: the whole tree).
    pub zone: String,
    pub tags: Vec<String>,
    pub capabilities: Vec<String>,
    pub limit: u32,
    pub max_depth: Option<u32>,
    pub recursive: bool,
}

/// A typed client of one node: every call the project makes, with deadlines sent as the
/// gRPC deadline and failures that name the node.
#[derive(Debug, Clone)]
pub struct NodeClient {
    url: Arc<str>,
    client: RegistryClient,
}

fn status_error(url: &str, status: &Status) -> ClientError {
    // tonic makes a status from a local transport error (connect refused, reset): nothing
    // was answered, the node was not reached.
    if std::error::Error::source(status).is_some() && status.code() == Code::Unavailable {
        return ClientError::Unreachable {
            url: url.to_string(),
            reason: tls_failure(status).unwrap_or_else(|| status_text(status)),
        };
    }
    let mut message = status_text(status);
    // A plaintext client of a TLS-only door sees the connection closed under it, nothing
    // more: say what most likely happened.
    if url.starts_with("http://")
        && status.code() == Code::Cancelled
        && message.contains("connection closed")
    {
        message.push_str(" (if the node speaks TLS, use an https:// URL)");
    }
    ClientError::Status {
        url: url.to_string(),
        code: status.code(),
        message,
    }
}

/// A status's message, followed, for a status tonic made from a local transport error, by
/// that error's root cause ("tcp connect error: Connection refused (os error 111)"): the
/// message alone does not say what happened.
fn status_text(status: &Status) -> String {
    let message = status.message();
    // The deepest cause says what happened (hyper's layers in between repeat the message).
    let mut root = std::error::Error::source(status);
    while let Some(next) = root.and_then(std::error::Error::source) {
        root = Some(next);
    }
    match root.map(ToString::to_string) {
        Some(cause) if !message.contains(&cause) => format!("{message}: {cause}"),
        _ => message.to_string(),
    }
}

/// Runs `call` within `timeout` (also sent as the gRPC deadline), failures naming `url`.
async fn bounded<T>(
    url: &str,
    timeout: Option<Duration>,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, ClientError> {
    let result = match timeout {
        Some(timeout) => {
            tokio::time::timeout(timeout, call)
                .await
                .map_err(|_| ClientError::Timeout {
                    url: url.to_string(),
                    timeout,
                })?
        }
        None => call.await,
    };
    result
        .map(tonic::Response::into_inner)
        .map_err(|status| status_error(url, &status))
}

fn with_timeout<T>(body: T, timeout: Option<Duration>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}

impl NodeClient {
    fn new(url: &str, client: RegistryClient) -> NodeClient {
        NodeClient {
            url: Arc::from(url),
            client,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The generated client, for calls this type does not wrap (tests of the wire itself).
    pub fn raw(&self) -> RegistryClient {
        self.client.clone()
    }

    fn bad_answer(&self, reason: impl std::fmt::Display) -> ClientError {
        ClientError::BadAnswer {
            url: self.url.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Resolves `name` (recursively, or from the node's own zones), the answer checked like
    /// any peer data.
    pub async fn resolve(
        &mut self,
        name: &str,
        recursive: bool,
        trace: bool,
        timeout: Option<Duration>,
    ) -> Result<Answer, ClientError> {
        let request = with_timeout(
            pb::ResolveRequest {
                name: name.to_string(),
                recursive,
                trace,
            },
            timeout,
        );
        let response = bounded(&self.url, timeout, self.client.resolve(request)).await?;
        Answer::try_from(response).map_err(|error| self.bad_answer(error))
    }

    /// The answer as the node sent it (benchmarks count outcomes without checking records).
    pub async fn resolve_unchecked(
        &mut self,
        name: &str,
        recursive: bool,
        timeout: Option<Duration>,
    ) -> Result<pb::ResolveResponse, ClientError> {
        let request = with_timeout(
            pb::ResolveRequest {
                name: name.to_string(),
                recursive,
                trace: false,
            },
            timeout,
        );
        bounded(&self.url, timeout, self.client.resolve(request)).await
    }

    pub async fn cache_stats(&mut self) -> Result<pb::GetCacheStatsResponse, ClientError> {
        bounded(
            &self.url,
            None,
            self.client.get_cache_stats(pb::GetCacheStatsRequest {}),
        )
        .await
    }

    /// A zone's header and counts.
    pub async fn get_zone(
        &mut self,
        zone: &str,
        recursive: bool,
        timeout: Option<Duration>,
    ) -> Result<ZoneSummary, ClientError> {
        let request = with_timeout(
            pb::GetZoneRequest {
                zone: zone.to_string(),
                recursive,
            },
            timeout,
        );
        let response = bounded(&self.url, timeout, self.client.get_zone(request)).await?;
        let servers = response
            .servers
            .into_iter()
            .map(ServerAddress::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| self.bad_answer(format!("unusable server of the zone: {error}")))?;
        Ok(ZoneSummary {
            serial: response.serial,
            ttl: response.ttl,
            agent_count: response.agent_count,
            servers,
            served_by: response.served_by,
        })
    }

    /// One page of a zone's agents, each checked like any peer data.
    pub async fn list_agents(
        &mut self,
        zone: &str,
        page_size: u32,
        cursor: &str,
        recursive: bool,
        timeout: Option<Duration>,
    ) -> Result<AgentPage, ClientError> {
        let request = with_timeout(
            pb::ListAgentsRequest {
                zone: zone.to_string(),
                page_size,
                cursor: cursor.to_string(),
                recursive,
            },
            timeout,
        );
        let response = bounded(&self.url, timeout, self.client.list_agents(request)).await?;
        let agents = response
            .agents
            .into_iter()
            .map(|agent| Agent::try_from(agent).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| self.bad_answer(format!("unusable agent record: {error}")))?;
        Ok(AgentPage {
            agents,
            next_cursor: response.next_cursor,
            zone_serial: response.zone_serial,
            total: response.total,
        })
    }

    pub async fn search(
        &mut self,
        call: &SearchCall,
        timeout: Option<Duration>,
    ) -> Result<pb::SearchResponse, ClientError> {
        let request = with_timeout(
            pb::SearchRequest {
                query: call.query.clone(),
                zone: call.zone.clone(),
                tags: call.tags.clone(),
                capabilities: call.capabilities.clone(),
                limit: call.limit,
                max_depth: call.max_depth,
                recursive: call.recursive,
            },
            timeout,
        );
        bounded(&self.url, timeout, self.client.search(request)).await
    }

    /// Opens a Watch stream on a zone.
    pub async fn watch(
        &mut self,
        zone: &str,
        since_serial: Option<u32>,
        recursive: bool,
    ) -> Result<WatchStream, ClientError> {
        let request = pb::WatchRequest {
            zone: zone.to_string(),
            since_serial,
            recursive,
        };
        let stream = bounded(&self.url, None, self.client.watch(request)).await?;
        Ok(WatchStream {
            url: Arc::clone(&self.url),
            stream,
        })
    }

    /// A whole transfer, read to its end within `timeout`, decoded and checked.
    pub async fn transfer(
        &mut self,
        request: &TransferRequest,
        timeout: Duration,
    ) -> Result<TransferData, ClientError> {
        let since = request.since_serial;
        let message = pb::TransferRequest {
            zone: request.zone.to_string(),
            since_serial: since,
            notify_url: request.notify_url.clone(),
        };
        let url = Arc::clone(&self.url);
        let client = &mut self.client;
        let read = async {
            let mut stream = client
                .transfer(with_timeout(message, Some(timeout)))
                .await
                .map_err(|status| status_error(&url, &status))?
                .into_inner();
            let mut chunks = Vec::new();
            while let Some(chunk) =
                stream
                    .message()
                    .await
                    .map_err(|status| ClientError::Unreachable {
                        url: url.to_string(),
                        reason: error_chain(&status),
                    })?
            {
                chunks.push(chunk);
            }
            TransferData::from_chunks(chunks, since).map_err(|reason| ClientError::BadAnswer {
                url: url.to_string(),
                reason,
            })
        };
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| ClientError::Timeout {
                url: self.url.to_string(),
                timeout,
            })?
    }

    /// Tells the node that `zone` changed (it must be one of its secondaries).
    pub async fn notify(
        &mut self,
        zone: &Name,
        serial: u32,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let request = with_timeout(
            pb::NotifyRequest {
                zone: zone.to_string(),
                serial,
            },
            Some(timeout),
        );
        bounded(&self.url, Some(timeout), self.client.notify(request))
            .await
            .map(|_| ())
    }

    /// Registers (or renews) an endpoint, signed with `key` when given.
    pub async fn register(
        &mut self,
        body: pb::RegisterRequest,
        key: Option<&UpdateKey>,
        timeout: Option<Duration>,
    ) -> Result<pb::RegisterResponse, ClientError> {
        let fields = super::update::register_fields(&body);
        let request = signed(body, &fields, key, timeout);
        bounded(&self.url, timeout, self.client.register(request)).await
    }

    pub async fn renew(
        &mut self,
        body: pb::RenewRequest,
        key: Option<&UpdateKey>,
        timeout: Option<Duration>,
    ) -> Result<pb::RenewResponse, ClientError> {
        let fields = super::update::renew_fields(&body);
        let request = signed(body, &fields, key, timeout);
        bounded(&self.url, timeout, self.client.renew(request)).await
    }

    pub async fn deregister(
        &mut self,
        body: pb::DeregisterRequest,
        key: Option<&UpdateKey>,
        timeout: Option<Duration>,
    ) -> Result<pb::DeregisterResponse, ClientError> {
        let fields = super::update::deregister_fields(&body);
        let request = signed(body, &fields, key, timeout);
        bounded(&self.url, timeout, self.client.deregister(request)).await
    }
}

/// A zone's header and counts, as `GetZone` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSummary {
    pub serial: u32,
    /// The zone's default TTL.
    pub ttl: u32,
    pub agent_count: u32,
    /// The zone's servers as its header lists them, primary first.
    pub servers: Vec<ServerAddress>,
    pub served_by: String,
}

/// One page of a zone's agents.
#[derive(Debug, Clone)]
pub struct AgentPage {
    pub agents: Vec<Arc<Agent>>,
    /// Empty on the last page.
    pub next_cursor: String,
    pub zone_serial: u32,
    pub total: u32,
}

/// One event of a Watch stream.
#[derive(Debug, Clone)]
pub struct ZoneEvent {
    pub serial: u32,
    /// The changes since the previous event, decoded; an error says why they are unusable
    /// (the watcher then reads the zone again).
    pub changes: Result<Vec<ZoneChange>, String>,
    /// The node's log no longer reaches back: read the zone again.
    pub reset: bool,
}

/// A zone's changes as a node sends them.
pub struct WatchStream {
    url: Arc<str>,
    stream: Streaming<pb::WatchEvent>,
}

impl WatchStream {
    /// The next event; `None` when the node ended the stream.
    pub async fn next(&mut self) -> Result<Option<ZoneEvent>, ClientError> {
        let Some(event) = self
            .stream
            .message()
            .await
            .map_err(|status| status_error(&self.url, &status))?
        else {
            return Ok(None);
        };
        let changes = event
            .changes
            .into_iter()
            .map(ZoneChange::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("unusable change: {error}"));
        Ok(Some(ZoneEvent {
            serial: event.serial,
            changes,
            reset: event.reset,
        }))
    }
}

fn signed<T>(
    body: T,
    fields: &SignedFields,
    key: Option<&UpdateKey>,
    timeout: Option<Duration>,
) -> tonic::Request<T> {
    let mut request = super::update::signed(body, fields, key);
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}
