//! The `aop.v1.Registry` service: decode, ask the catalog or the resolver, encode.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use crate::answer::TraceStep;
use crate::catalog::Catalog;
use crate::grpc::client::RegistryClient;
use crate::grpc::convert::{self, request_name};
use crate::grpc::pb;
use crate::grpc::status::ServiceError;
use crate::grpc::upstream::GrpcUpstream;
use crate::name::Name;
use crate::record::ServerAddress;
use crate::resolver::{ResolveError, ResolveOptions, Resolver, ZoneAuthority};

/// How long a forwarded zone request may take when the caller set no deadline.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one node's catalog and resolver over gRPC.
#[derive(Clone)]
pub struct RegistryService {
    catalog: Arc<Catalog>,
    resolver: Arc<Resolver>,
    /// Channels to other nodes, for zone requests forwarded on a client's behalf.
    upstream: Arc<GrpcUpstream>,
    resolve_requests: Arc<AtomicU64>,
}

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
    pub fn new(catalog: Arc<Catalog>, resolver: Arc<Resolver>) -> RegistryService {
        RegistryService {
            catalog,
            resolver,
            upstream: Arc::new(GrpcUpstream::new()),
            resolve_requests: Arc::new(AtomicU64::new(0)),
        }
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
        let zone = self.catalog.zone(&origin)?;
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
        let zone = self.catalog.zone(&origin)?;
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

    /// Asks a zone's servers, best first, until one answers; an error status from a server
    /// that answered is passed on, since its siblings hold the same data.
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
            let client = match self.upstream.client(&server) {
                Ok(client) => client,
                Err(error) => {
                    failures.push(error.to_string());
                    continue;
                }
            };
            match tokio::time::timeout_at(deadline, call(client)).await {
                Err(_) => {
                    failures.push(format!("{}: no answer in time", server.grpc));
                    break;
                }
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status))
                    if matches!(
                        status.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Cancelled
                            | tonic::Code::Unknown
                    ) =>
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

#[tonic::async_trait]
impl pb::registry_server::Registry for RegistryService {
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
