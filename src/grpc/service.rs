//! The `aop.v1.Registry` service: decode, ask the catalog or the resolver, encode.

mod search;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;

use crate::admission::Admission;
use crate::answer::TraceStep;
use crate::authority::{Authority, TransferRequest};
use crate::catalog::Catalog;
use crate::grpc::client::{ChannelPool, RegistryClient, status_failure};
use crate::grpc::convert::{self, request_name};
use crate::grpc::pb;
use crate::grpc::server::PeerInfo;
use crate::grpc::status::ServiceError;
use crate::grpc::update;
use crate::keys::SignedFields;
use crate::keys::identity::{self, UpdateIdentity};
use crate::name::Name;
use crate::record::ServerAddress;
use crate::resolver::{ResolveError, ResolveOptions, Resolver, ZoneAuthority};

/// How long a forwarded zone request may take when the caller set no deadline.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one node's catalog and resolver over gRPC.
#[derive(Clone)]
pub struct RegistryService {
    catalog: Arc<Catalog>,
    authority: Authority,
    resolver: Arc<Resolver>,
    /// Channels to other nodes, for zone requests forwarded on a client's behalf.
    pool: ChannelPool,
    resolve_requests: Arc<AtomicU64>,
    /// Cancelled when the node stops: long-lived streams (Watch) end with it, so a graceful
    /// shutdown is not held open by them and their clients move to another server.
    shutdown: CancellationToken,
    /// Watch streams open, in total and per client.
    watches: Arc<Admission>,
    /// The federated search over this node's zones and its children's.
    federation: Arc<crate::search::federate::Federation>,
    /// Client certificate identities that may update zones without a signature.
    identities: Arc<[UpdateIdentity]>,
}

/// Marks an update a node forwards to the zone's primary: the primary judges it by its
/// signature only, never by the forwarding node's own certificate.
const FORWARDED_HEADER: &str = "x-aop-forwarded";

/// The caller's deadline from the `grpc-timeout` header ("100m", "5S", ...).
fn deadline<T>(request: &Request<T>) -> Option<tokio::time::Instant> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    tokio::time::Instant::now().checked_add(parse_grpc_timeout(value)?)
}

/// A `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    };
    Some(timeout)
}

impl RegistryService {
    pub fn new(
        catalog: Arc<Catalog>,
        resolver: Arc<Resolver>,
        authority: Authority,
        pool: ChannelPool,
    ) -> RegistryService {
        let federation = Arc::new(crate::search::federate::Federation::new(
            Arc::clone(&catalog),
            Arc::clone(&resolver),
            Arc::new(crate::grpc::GrpcPeers::new(pool.clone())),
        ));
        RegistryService {
            catalog,
            authority,
            resolver,
            pool,
            resolve_requests: Arc::new(AtomicU64::new(0)),
            shutdown: CancellationToken::new(),
            watches: Admission::new(crate::grpc::server::ServerLimits::default().watches),
            federation,
            identities: Arc::from(Vec::new()),
        }
    }

    /// Accepts updates from clients whose mTLS certificate these rules name.
    pub fn with_update_identities(mut self, identities: Vec<UpdateIdentity>) -> RegistryService {
        self.identities = Arc::from(identities);
        self
    }

    /// Bounds the Watch streams open at once, in total and per client.
    pub fn with_watch_limits(mut self, watches: Arc<Admission>) -> RegistryService {
        self.watches = watches;
        self
    }

    /// Ends Watch streams when `shutdown` is cancelled.
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> RegistryService {
        self.shutdown = shutdown;
        self
    }

    /// A zone served here; a zone configured here but not loaded is UNAVAILABLE (so a
    /// forwarding node tries the zone's next server), any other NOT_FOUND.
    fn served_zone(&self, origin: &Name) -> Result<Arc<crate::zone::ZoneSnapshot>, ServiceError> {
        self.catalog.zone(origin).map_err(|error| {
            if self.authority.status(origin).is_some() {
                ServiceError::NotLoaded {
                    zone: origin.clone(),
                }
            } else {
                error.into()
            }
        })
    }

    /// Resolve requests received so far (every kind, answered or not).
    pub fn resolve_requests(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.resolve_requests)
    }

    async fn resolve(
        &self,
        request: pb::ResolveRequest,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<pb::ResolveResponse, ServiceError> {
        let started = Instant::now();
        let name = request_name("name", &request.name)?;
        if request.recursive {
            let options = ResolveOptions {
                deadline,
                trace: request.trace,
            };
            let answer = self.resolver.resolve(&name, options).await?;
            return Ok(pb::ResolveResponse::from(&answer));
        }
        let mut answer = self.catalog.lookup(&name)?;
        answer.recursion_available = true;
        if request.trace {
            answer.trace.push(TraceStep {
                server: self.catalog.node_id().to_string(),
                zone: answer.zone.clone(),
                outcome: Some(answer.outcome.word()),
                latency_us: u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX),
                cached: false,
                authoritative: true,
                error: None,
            });
        }
        Ok(pb::ResolveResponse::from(&answer))
    }

    async fn get_zone(
        &self,
        request: pb::GetZoneRequest,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<pb::GetZoneResponse, ServiceError> {
        let origin = request_name("zone", &request.zone)?;
        if request.recursive
            && let Some(servers) = self.remote_servers(&origin, deadline).await?
        {
            let forwarded = pb::GetZoneRequest {
                zone: origin.to_string(),
                recursive: false,
            };
            return self
                .forward(&origin, &servers, deadline, move |mut client| {
                    let request = forwarded.clone();
                    async move { client.get_zone(request).await }
                })
                .await;
        }
        let zone = self.served_zone(&origin)?;
        Ok(convert::zone_response(&zone, self.catalog.node_id()))
    }

    async fn list_agents(
        &self,
        request: pb::ListAgentsRequest,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<pb::ListAgentsResponse, ServiceError> {
        let origin = request_name("zone", &request.zone)?;
        let page_size = convert::page_size(request.page_size)?;
        let after = convert::decode_cursor(&request.cursor)?;
        if request.recursive
            && let Some(servers) = self.remote_servers(&origin, deadline).await?
        {
            let forwarded = pb::ListAgentsRequest {
                recursive: false,
                zone: origin.to_string(),
                ..request
            };
            let response = self
                .forward(&origin, &servers, deadline, move |mut client| {
                    let request = forwarded.clone();
                    async move { client.list_agents(request).await }
                })
                .await?;
            // Relayed, but checked like any peer data before it goes further.
            for agent in &response.agents {
                crate::record::Agent::try_from(agent.clone()).map_err(|error| {
                    ServiceError::Authority {
                        zone: origin.clone(),
                        server: "the zone's servers".into(),
                        code: tonic::Code::Unavailable,
                        message: format!("unusable agent record: {error}"),
                    }
                })?;
            }
            return Ok(response);
        }
        let zone = self.served_zone(&origin)?;
        let names = zone.agents_page(after.as_deref(), page_size);
        let agents: Vec<pb::Agent> = names
            .iter()
            .filter_map(|name| zone.agent(name.as_str()))
            .map(|agent| pb::Agent::from(&**agent))
            .collect();
        let is_last = match names.last() {
            None => true,
            Some(last) => zone.agent_names().last() == Some(last),
        };
        let next_cursor = match names.last() {
            Some(last) if !is_last => convert::encode_cursor(last),
            _ => String::new(),
        };
        Ok(pb::ListAgentsResponse {
            agents,
            next_cursor,
            zone_serial: zone.serial(),
            total: u32::try_from(zone.agent_count()).unwrap_or(u32::MAX),
        })
    }

    /// The servers to forward a recursive zone request to, or `None` when this node serves
    /// the zone itself.
    async fn remote_servers(
        &self,
        zone: &Name,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Option<Vec<ServerAddress>>, ServiceError> {
        let options = ResolveOptions {
            deadline,
            trace: false,
        };
        Ok(match self.resolver.locate_zone(zone, options).await? {
            ZoneAuthority::Local => None,
            ZoneAuthority::Servers(servers) => Some(servers),
        })
    }

    /// Asks a zone's servers, best first, until one answers. A failure that allows it
    /// ([`crate::peer::PeerFailure::retry_elsewhere`]: every forwarded request is harmless to
    /// repeat or goes to one server only) moves on to the next server; an error status from a
    /// server that answered is passed on, since its siblings hold the same data.
    async fn forward<T, F, Fut>(
        &self,
        zone: &Name,
        servers: &[ServerAddress],
        deadline: Option<tokio::time::Instant>,
        call: F,
    ) -> Result<T, ServiceError>
    where
        F: Fn(RegistryClient) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let deadline = deadline.unwrap_or_else(|| tokio::time::Instant::now() + FORWARD_TIMEOUT);
        let mut failures = Vec::new();
        for server in self.resolver.servers().order(servers) {
            let client = match self.pool.client(&server.grpc) {
                Ok(client) => client.raw(),
                Err(error) => {
                    failures.push(error.to_string());
                    continue;
                }
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout_at(deadline, call(client)).await {
                Err(_) => {
                    failures.push(format!("{}: no answer in time", server.grpc));
                    break;
                }
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status))
                    if status_failure(&server.grpc, &status, left).retry_elsewhere(true) =>
                {
                    failures.push(format!("{}: {}", server.grpc, status.message()));
                }
                Ok(Err(status)) => {
                    return Err(ServiceError::Authority {
                        zone: zone.clone(),
                        server: server.grpc.clone(),
                        code: status.code(),
                        message: status.message().to_string(),
                    });
                }
            }
        }
        Err(ServiceError::Resolve(ResolveError::Unavailable {
            zone: zone.clone(),
            failures,
        }))
    }

    /// Lets an update through: this node is the zone's primary, and the signature holds or,
    /// for an unsigned update that came straight from its client, the client's verified
    /// certificate carries an identity of the zone (`--update-identity`).
    fn authorise(
        &self,
        zone: &Name,
        fields: &SignedFields,
        metadata: &tonic::metadata::MetadataMap,
        peer: Option<&PeerInfo>,
    ) -> Result<(), ServiceError> {
        self.authority.check_primary(zone)?;
        let proof =
            update::proof_from_metadata(metadata).map_err(crate::authority::UpdateError::from)?;
        let direct = !metadata.contains_key(FORWARDED_HEADER);
        if proof.is_none()
            && direct
            && let Some(identity) = peer.and_then(|peer| peer.identity.as_ref())
            && identity::authorise(&self.identities, zone, &identity.dns_names)
                .map_err(crate::authority::UpdateError::from)?
        {
            return Ok(());
        }
        self.authority
            .keys()
            .verify(zone, fields, proof.as_ref())
            .map_err(crate::authority::UpdateError::from)?;
        Ok(())
    }

    /// The zone's primary, when this node does not hold the zone itself.
    async fn remote_primary(
        &self,
        zone: &Name,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Option<ServerAddress>, ServiceError> {
        if self.authority.status(zone).is_some() {
            return Ok(None);
        }
        Ok(self
            .remote_servers(zone, deadline)
            .await?
            .and_then(|servers| servers.into_iter().next()))
    }

    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<pb::RegisterResponse, ServiceError> {
        let deadline = deadline(&request);
        let (metadata, extensions, body) = request.into_parts();
        let (zone, registration) = update::registration(&body)?;
        if let Some(primary) = self.remote_primary(&zone, deadline).await? {
            let forwarded = signed_request(&metadata, body);
            return self
                .forward(&zone, &[primary], deadline, move |mut client| {
                    let request = clone_request(&forwarded);
                    async move { client.register(request).await }
                })
                .await;
        }
        let peer = extensions.get::<PeerInfo>();
        self.authorise(&zone, &update::register_fields(&body), &metadata, peer)?;
        let (done, serial) = self.authority.register(zone, registration).await?;
        Ok(pb::RegisterResponse {
            serial,
            agent: Some(pb::Agent::from(&*done.agent)),
            lease_seconds: done.lease.lease_secs,
            expires_unix_ms: done.lease.expires_unix_ms,
            changed: done.changed,
            served_by: self.catalog.node_id().to_string(),
        })
    }

    async fn renew(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<pb::RenewResponse, ServiceError> {
        let deadline = deadline(&request);
        let (metadata, extensions, body) = request.into_parts();
        let (zone, name, url, lease_secs) = update::renewal(&body)?;
        if let Some(primary) = self.remote_primary(&zone, deadline).await? {
            let forwarded = signed_request(&metadata, body);
            return self
                .forward(&zone, &[primary], deadline, move |mut client| {
                    let request = clone_request(&forwarded);
                    async move { client.renew(request).await }
                })
                .await;
        }
        let peer = extensions.get::<PeerInfo>();
        self.authorise(&zone, &update::renew_fields(&body), &metadata, peer)?;
        let (lease, serial) = self.authority.renew(zone, name, url, lease_secs).await?;
        Ok(pb::RenewResponse {
            serial,
            lease_seconds: lease.lease_secs,
            expires_unix_ms: lease.expires_unix_ms,
            served_by: self.catalog.node_id().to_string(),
        })
    }

    async fn deregister(
        &self,
        request: Request<pb::DeregisterRequest>,
    ) -> Result<pb::DeregisterResponse, ServiceError> {
        let deadline = deadline(&request);
        let (metadata, extensions, body) = request.into_parts();
        let (zone, name, url) = update::deregistration(&body)?;
        if let Some(primary) = self.remote_primary(&zone, deadline).await? {
            let forwarded = signed_request(&metadata, body);
            return self
                .forward(&zone, &[primary], deadline, move |mut client| {
                    let request = clone_request(&forwarded);
                    async move { client.deregister(request).await }
                })
                .await;
        }
        let peer = extensions.get::<PeerInfo>();
        self.authorise(&zone, &update::deregister_fields(&body), &metadata, peer)?;
        let (done, serial) = self.authority.deregister(zone, name, url).await?;
        Ok(pb::DeregisterResponse {
            serial,
            endpoints_removed: done.endpoints_removed,
            agent_removed: done.agent_removed,
            served_by: self.catalog.node_id().to_string(),
        })
    }

    /// A zone's records (full) or its changes since a serial, as the authority reads them.
    fn transfer(&self, request: pb::TransferRequest) -> Result<TransferStream, ServiceError> {
        let request = TransferRequest {
            zone: request_name("zone", &request.zone)?,
            since_serial: request.since_serial,
            notify_url: request.notify_url,
        };
        let chunks = self.authority.transfer(&request)?;
        Ok(Box::pin(ReceiverStream::new(chunks).map(|chunk| {
            chunk.map_err(|error| Status::from(ServiceError::from(error)))
        })))
    }

    async fn watch(
        &self,
        request: pb::WatchRequest,
        deadline: Option<tokio::time::Instant>,
        client: Option<std::net::IpAddr>,
    ) -> Result<WatchStream, ServiceError> {
        let zone = request_name("zone", &request.zone)?;
        // A place among the node's Watch streams, held while the stream is open.
        let ticket =
            match client {
                Some(client) => Some(self.watches.admit(client).map_err(|refusal| {
                    ServiceError::Overloaded {
                        what: "Watch streams",
                        reason: refusal.to_string(),
                    }
                })?),
                None => None,
            };
        if request.recursive
            && self.authority.status(&zone).is_none()
            && let Some(servers) = self.remote_servers(&zone, deadline).await?
        {
            let forwarded = pb::WatchRequest {
                recursive: false,
                zone: zone.to_string(),
                ..request
            };
            let stream = self
                .forward(&zone, &servers, deadline, move |mut client| {
                    let request = forwarded.clone();
                    async move { client.watch(request).await }
                })
                .await?;
            return Ok(Box::pin(
                stream
                    .take_until(self.shutdown.clone().cancelled_owned())
                    .map(move |event| {
                        let _held = &ticket;
                        event
                    }),
            ));
        }
        let events =
            self.authority
                .watch_events(&zone, request.since_serial, self.shutdown.clone())?;
        Ok(Box::pin(ReceiverStream::new(events).map(move |event| {
            let _held = &ticket;
            Ok(event)
        })))
    }

    async fn cache_stats(&self) -> pb::GetCacheStatsResponse {
        pb::GetCacheStatsResponse {
            levels: self
                .resolver
                .cache_stats()
                .await
                .iter()
                .map(pb::CacheLevelStats::from)
                .collect(),
            served_by: self.catalog.node_id().to_string(),
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;
type TransferStream = Pin<Box<dyn Stream<Item = Result<pb::TransferChunk, Status>> + Send>>;

/// The update as received, signature headers included, to send on to the primary.
fn signed_request<T>(
    metadata: &tonic::metadata::MetadataMap,
    body: T,
) -> (Vec<(&'static str, String)>, T) {
    (update::proof_entries(metadata), body)
}

fn clone_request<T: Clone>((headers, body): &(Vec<(&'static str, String)>, T)) -> Request<T> {
    let mut request = Request::new(body.clone());
    request.metadata_mut().insert(
        FORWARDED_HEADER,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    for (key, value) in headers {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            request.metadata_mut().insert(key, value);
        }
    }
    request
}

#[tonic::async_trait]
impl pb::registry_server::Registry for RegistryService {
    type TransferStream = TransferStream;
    type WatchStream = WatchStream;

    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        Ok(Response::new(
            RegistryService::register(self, request).await?,
        ))
    }

    async fn renew(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewResponse>, Status> {
        Ok(Response::new(RegistryService::renew(self, request).await?))
    }

    async fn deregister(
        &self,
        request: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::DeregisterResponse>, Status> {
        Ok(Response::new(
            RegistryService::deregister(self, request).await?,
        ))
    }

    async fn transfer(
        &self,
        request: Request<pb::TransferRequest>,
    ) -> Result<Response<TransferStream>, Status> {
        Ok(Response::new(RegistryService::transfer(
            self,
            request.into_inner(),
        )?))
    }

    async fn notify(
        &self,
        request: Request<pb::NotifyRequest>,
    ) -> Result<Response<pb::NotifyResponse>, Status> {
        let request = request.into_inner();
        let zone = request_name("zone", &request.zone).map_err(ServiceError::from)?;
        self.authority.notified(&zone).map_err(ServiceError::from)?;
        tracing::debug!(%zone, serial = request.serial, "NOTIFY received");
        Ok(Response::new(pb::NotifyResponse {}))
    }

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let deadline = deadline(&request);
        let client = super::server::PeerInfo::of(&request)
            .and_then(|peer| peer.remote)
            .map(|addr| addr.ip());
        let stream = RegistryService::watch(self, request.into_inner(), deadline, client).await?;
        Ok(Response::new(stream))
    }

    async fn resolve(
        &self,
        request: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveResponse>, Status> {
        self.resolve_requests.fetch_add(1, Ordering::Relaxed);
        let deadline = deadline(&request);
        let response = RegistryService::resolve(self, request.into_inner(), deadline).await?;
        Ok(Response::new(response))
    }

    async fn get_zone(
        &self,
        request: Request<pb::GetZoneRequest>,
    ) -> Result<Response<pb::GetZoneResponse>, Status> {
        let deadline = deadline(&request);
        let response = RegistryService::get_zone(self, request.into_inner(), deadline).await?;
        Ok(Response::new(response))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let deadline = deadline(&request);
        let response = RegistryService::list_agents(self, request.into_inner(), deadline).await?;
        Ok(Response::new(response))
    }

    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let deadline = deadline(&request);
        let response = RegistryService::search(self, request.into_inner(), deadline).await?;
        Ok(Response::new(response))
    }

    async fn get_cache_stats(
        &self,
        _request: Request<pb::GetCacheStatsRequest>,
    ) -> Result<Response<pb::GetCacheStatsResponse>, Status> {
        Ok(Response::new(self.cache_stats().await))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("250u"), Some(Duration::from_micros(250)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(parse_grpc_timeout("S"), None);
    }
}
