//! The `aop.v1.Registry` service: decode, ask the catalog, encode.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use crate::answer::TraceStep;
use crate::catalog::Catalog;
use crate::grpc::convert::{self, request_name};
use crate::grpc::pb;
use crate::grpc::status::ServiceError;

/// Serves one node's catalog over gRPC.
#[derive(Clone)]
pub struct RegistryService {
    catalog: Arc<Catalog>,
}

impl RegistryService {
    pub fn new(catalog: Arc<Catalog>) -> RegistryService {
        RegistryService { catalog }
    }

    fn resolve(&self, request: pb::ResolveRequest) -> Result<pb::ResolveResponse, ServiceError> {
        let started = Instant::now();
        let name = request_name("name", &request.name)?;
        let mut answer = self.catalog.lookup(&name)?;
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
}

#[tonic::async_trait]
impl pb::registry_server::Registry for RegistryService {
    async fn resolve(
        &self,
        request: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveResponse>, Status> {
        let response = RegistryService::resolve(self, request.into_inner())?;
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
}
