//! The Search RPC: the request checked against the limits and decoded, the federated walk
//! (`search::federate`) run, the answer encoded.

use super::RegistryService;
use crate::grpc::convert::{request_name, search_query, search_response};
use crate::grpc::pb;
use crate::grpc::status::ServiceError;
use crate::name::Name;
use crate::search::federate::{Federation, SearchRequest};

impl RegistryService {
    pub(super) async fn search(
        &self,
        request: pb::SearchRequest,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<pb::SearchResponse, ServiceError> {
        let scope = if request.zone.is_empty() {
            Name::root()
        } else {
            request_name("zone", &request.zone)?
        };
        let query = search_query(&request, &scope)?;
        let deadline = Federation::deadline(deadline);
        // A zone configured here but not loaded (a secondary before its first transfer):
        // UNAVAILABLE, so a forwarding node tries the zone's next server.
        if self.catalog.find_zone(&scope).is_none()
            && let Some(configured) = scope
                .self_and_ancestors()
                .map(|suffix| scope.ancestor(suffix))
                .find(|zone| self.authority.status(zone).is_some())
        {
            return Err(ServiceError::NotLoaded { zone: configured });
        }
        let answer = self
            .federation
            .search(
                SearchRequest {
                    query,
                    max_depth: request.max_depth,
                    recursive: request.recursive,
                },
                deadline,
            )
            .await?;
        Ok(search_response(&answer, self.catalog.node_id()))
    }
}
