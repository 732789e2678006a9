//! The `aop.v1.Registry` service: decode, ask the catalog or the resolver, encode.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use crate::answer::TraceStep;
use crate::catalog::Catalog;
use crate::grpc::convert::{self, request_name};
use crate::grpc::pb;
use crate::grpc::status::ServiceError;
use crate::resolver::{ResolveOptions, Resolver};

/// Serves one node's catalog and resolver over gRPC.
#[derive(Clone)]
pub struct RegistryService {
    catalog: Arc<Catalog>,
    resolver: Arc<Resolver>,
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

    fn get_zone(&self, request: pb::GetZoneRequest) -> Result<pb::GetZoneResponse, ServiceError> {
        let origin = request_name("zone", &request.zone)?;
        let zone = self.catalog.zone(&origin)?;
        Ok(convert::zone_response(&zone, self.catalog.node_id()))
    }

    fn list_agents(
        &self,
        request: pb::ListAgentsRequest,
    ) -> Result<pb::ListAgentsResponse, ServiceError> {
        let origin = request_name("zone", &request.zone)?;
        let page_size = convert::page_size(request.page_size)?;
        let after = convert::decode_cursor(&request.cursor)?;
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
        Ok(Response::new(self.get_zone(request.into_inner())?))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        Ok(Response::new(self.list_agents(request.into_inner())?))
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
