//! The Search RPC: the request checked against the limits and decoded, the federated walk
//! (`search::federate`) run, the answer encoded.

use super::RegistryService;
use crate::grpc::convert::{RequestError, request_name, search_response};
use crate::grpc::pb;
use crate::grpc::status::ServiceError;
use crate::name::Name;
use crate::record::limits;
use crate::search::SearchQuery;
use crate::search::federate::{Federation, SearchRequest};

/// Hits returned when the request does not say.
const LIMIT_DEFAULT: usize = 10;

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

/// The request's query, checked against the contract's limits.
fn search_query(request: &pb::SearchRequest, scope: &Name) -> Result<SearchQuery, RequestError> {
    if request.query.len() > limits::DESCRIPTION_MAX_BYTES {
        return Err(RequestError::QueryTooLong {
            bytes: request.query.len(),
        });
    }
    for (field, values) in [
        ("tags", &request.tags),
        ("capabilities", &request.capabilities),
    ] {
        if values.len() > limits::TAGS_MAX {
            return Err(RequestError::TooManyFilters {
                field,
                count: values.len(),
            });
        }
        if let Some(long) = values.iter().find(|v| v.len() > limits::TAG_MAX_BYTES) {
            return Err(RequestError::FilterTooLong {
                field,
                bytes: long.len(),
            });
        }
    }
    let limit = match request.limit {
        0 => LIMIT_DEFAULT,
        n if n as usize > limits::PAGE_MAX => {
            return Err(RequestError::LimitTooLarge { requested: n });
        }
        n => n as usize,
    };
    Ok(SearchQuery {
        text: request.query.clone(),
        tags: request.tags.clone(),
        capabilities: request.capabilities.clone(),
        scope: (!scope.is_root()).then(|| scope.clone()),
        limit,
    })
}
