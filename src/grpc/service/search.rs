//! The Search RPC: this node's zones, then the delegated children, merged.
//!
//! A search names a scope (a name; the whole tree by default). The node finds the zone
//! holding the scope among its own (or, asked `recursive`ly, the zone's servers, and forwards
//! there), searches that zone's index, and walks down the delegations at or below the scope:
//! child zones this node also serves are searched in place, the others are asked over gRPC in
//! parallel, each with the same query, one level less of depth, and a deadline a fifth short
//! of what this node has left, so that a child's late answer is dropped here in time to
//! answer our own caller within its deadline. A child that fails or misses its deadline is
//! reported in `missed` and the answer is `partial`, never late.
//!
//! Children answer for their whole subtree with summed term statistics; this node sums them
//! again with its own zones' and rescores every hit ([`search::merge`]), so scores from
//! different zones compare (see `search`'s module doc).
//!
//! Limits: depth [`SEARCH_DEPTH_MAX`] below the scope's zone, [`SEARCH_FANOUT_MAX`] remote
//! children per node, a default budget of [`SEARCH_BUDGET`] when the caller gives none.

use std::sync::Arc;
use std::time::Duration;

use tonic::Request;

use super::RegistryService;
use crate::grpc::convert::{RequestError, request_name, search_part};
use crate::grpc::pb;
use crate::grpc::status::ServiceError;
use crate::name::Name;
use crate::record::{Delegation, limits};
use crate::resolver::{ResolveError, ResolveOptions, ZoneAuthority};
use crate::search::{self, AnalyzedQuery, Hit, SearchQuery, ZoneResult};
use crate::zone::ZoneSnapshot;

/// Levels of delegation followed below the zone holding the scope.
pub const SEARCH_DEPTH_MAX: u32 = 8;
/// Children asked over the network by one node for one search.
pub const SEARCH_FANOUT_MAX: usize = 32;
/// The whole search's budget when the caller sets no deadline.
pub const SEARCH_BUDGET: Duration = Duration::from_secs(1);
/// Hits returned when the request does not say.
const LIMIT_DEFAULT: usize = 10;

/// What one node gathered for one search before merging.
#[derive(Default)]
struct Gathered {
    /// Zones served here that the search covers, searched after the walk.
    local: Vec<Arc<ZoneSnapshot>>,
    parts: Vec<ZoneResult>,
    searched: Vec<pb::ZoneSearched>,
    missed: Vec<pb::ZoneMissed>,
}

/// A child zone to ask over the network.
struct RemoteChild {
    delegation: Arc<Delegation>,
    /// The scope to send: the child's apex, or the caller's scope when it is below it.
    scope: Name,
    depth: u32,
}

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
        let analyzed = query.analyze();
        let depth = request
            .max_depth
            .unwrap_or(SEARCH_DEPTH_MAX)
            .min(SEARCH_DEPTH_MAX);
        let now = tokio::time::Instant::now();
        let deadline = deadline.map_or(now + SEARCH_BUDGET, |d| d.min(now + 10 * SEARCH_BUDGET));

        let Some(zone) = self.catalog.find_zone(&scope) else {
            if let Some(configured) = scope
                .self_and_ancestors()
                .map(|suffix| scope.ancestor(suffix))
                .find(|zone| self.authority.status(zone).is_some())
            {
                return Err(ServiceError::NotLoaded { zone: configured });
            }
            if !request.recursive {
                return Err(crate::catalog::CatalogError::NotAuthoritative {
                    name: scope,
                    served: self
                        .catalog
                        .origins()
                        .iter()
                        .map(Name::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                }
                .into());
            }
            return self.search_elsewhere(request, &scope, deadline).await;
        };
        let mut gathered = Gathered::default();
        let mut remote = Vec::new();
        if let Some(delegation) = zone.delegation_covering(scope.as_str()) {
            // The scope lies in a child zone this node only delegates.
            remote.push(RemoteChild {
                delegation: Arc::clone(delegation),
                scope: scope.clone(),
                depth,
            });
        } else {
            self.search_local(zone, &scope, depth, &mut gathered, &mut remote);
        }
        let (local_parts, ()) = futures::future::join(
            self.search_local_indexes(std::mem::take(&mut gathered.local), &analyzed),
            self.search_children(remote, &request, &analyzed, deadline, &mut gathered),
        )
        .await;
        for part in local_parts {
            match part {
                Ok(part) => gathered.parts.push(part),
                Err(missed) => gathered.missed.push(missed),
            }
        }
        Ok(self.answer(gathered, &analyzed))
    }

    /// Collects a zone served here and, in place, the children also served here (searched
    /// after the walk); children served elsewhere are left in `remote`.
    fn search_local(
        &self,
        zone: Arc<ZoneSnapshot>,
        scope: &Name,
        depth: u32,
        gathered: &mut Gathered,
        remote: &mut Vec<RemoteChild>,
    ) {
        gathered.local.push(Arc::clone(&zone));
        gathered.searched.push(pb::ZoneSearched {
            zone: zone.origin().to_string(),
            serial: zone.serial(),
            served_by: self.catalog.node_id().to_string(),
        });
        for delegation in zone.delegations() {
            if !delegation.zone.is_at_or_below(scope) {
                continue;
            }
            if depth == 0 {
                gathered.missed.push(pb::ZoneMissed {
                    zone: delegation.zone.to_string(),
                    reason: format!(
                        "not searched: the depth limit ({SEARCH_DEPTH_MAX} levels, or the request's max_depth) was reached"
                    ),
                });
                continue;
            }
            match self.catalog.zone(&delegation.zone) {
                Ok(child) => self.search_local(child, scope, depth - 1, gathered, remote),
                Err(_) => remote.push(RemoteChild {
                    delegation: Arc::clone(delegation),
                    scope: delegation.zone.clone(),
                    depth: depth - 1,
                }),
            }
        }
    }

    /// Searches the zones served here. An index not yet built for a zone's serial (the first
    /// search after a change) is built on a blocking thread: half a second for 100,000
    /// agents must not hold a runtime worker.
    async fn search_local_indexes(
        &self,
        zones: Vec<Arc<ZoneSnapshot>>,
        query: &AnalyzedQuery,
    ) -> Vec<Result<ZoneResult, pb::ZoneMissed>> {
        let mut parts = Vec::with_capacity(zones.len());
        for zone in zones {
            let index = match self.search_indexes.built(&zone) {
                Some(index) => index,
                None => {
                    let indexes = Arc::clone(&self.search_indexes);
                    let snapshot = Arc::clone(&zone);
                    match tokio::task::spawn_blocking(move || indexes.get(&snapshot)).await {
                        Ok(index) => index,
                        // The build panicked (a bug); the slot stays empty for a retry.
                        Err(error) => {
                            parts.push(Err(pb::ZoneMissed {
                                zone: zone.origin().to_string(),
                                reason: format!("the zone's search index failed to build: {error}"),
                            }));
                            continue;
                        }
                    }
                }
            };
            parts.push(Ok(index.search(query)));
        }
        parts
    }

    /// Asks every remote child in parallel, each within a deadline short of ours.
    async fn search_children(
        &self,
        mut children: Vec<RemoteChild>,
        request: &pb::SearchRequest,
        query: &AnalyzedQuery,
        deadline: tokio::time::Instant,
        gathered: &mut Gathered,
    ) {
        if children.len() > SEARCH_FANOUT_MAX {
            for child in children.drain(SEARCH_FANOUT_MAX..) {
                gathered.missed.push(pb::ZoneMissed {
                    zone: child.delegation.zone.to_string(),
                    reason: format!("not searched: over the fan-out limit of {SEARCH_FANOUT_MAX} child zones per node"),
                });
            }
        }
        let child_deadline = hop_deadline(deadline);
        let asks = children.iter().map(|child| async move {
            let sent = pb::SearchRequest {
                zone: child.scope.to_string(),
                max_depth: Some(child.depth),
                recursive: false,
                ..request.clone()
            };
            let zone = &child.delegation.zone;
            let answer = tokio::time::timeout_at(
                child_deadline,
                self.forward(
                    zone,
                    &child.delegation.servers,
                    Some(child_deadline),
                    |mut client| {
                        let mut sent = Request::new(sent.clone());
                        sent.set_timeout(
                            child_deadline.saturating_duration_since(tokio::time::Instant::now()),
                        );
                        async move { client.search(sent).await }
                    },
                ),
            )
            .await;
            (zone, answer)
        });
        for (zone, answer) in futures::future::join_all(asks).await {
            let missed = |reason: String| pb::ZoneMissed {
                zone: zone.to_string(),
                reason,
            };
            match answer {
                Err(_) => gathered
                    .missed
                    .push(missed("no answer within the search's deadline".into())),
                Ok(Err(error)) => gathered.missed.push(missed(error.to_string())),
                Ok(Ok(response)) => match search_part(zone, response, query.terms()) {
                    Ok((part, searched, below_missed)) => {
                        gathered.parts.push(part);
                        gathered.searched.extend(searched);
                        gathered.missed.extend(below_missed);
                    }
                    Err(reason) => gathered.missed.push(missed(reason)),
                },
            }
        }
    }

    /// The scope is in a zone this node does not serve: find its servers, ask them.
    async fn search_elsewhere(
        &self,
        request: pb::SearchRequest,
        scope: &Name,
        deadline: tokio::time::Instant,
    ) -> Result<pb::SearchResponse, ServiceError> {
        let options = || ResolveOptions {
            deadline: Some(deadline),
            trace: false,
        };
        let (zone, authority) = match self.resolver.locate_zone(scope, options()).await {
            Ok(authority) => (scope.clone(), authority),
            Err(ResolveError::NotAZone { zone, .. } | ResolveError::NoSuchZone { zone, .. }) => {
                let authority = self.resolver.locate_zone(&zone, options()).await?;
                (zone, authority)
            }
            Err(error) => return Err(error.into()),
        };
        let ZoneAuthority::Servers(servers) = authority else {
            // Served here after all (it arrived since we looked): search again, in place.
            return Box::pin(self.search(
                pb::SearchRequest {
                    recursive: false,
                    ..request
                },
                Some(deadline),
            ))
            .await;
        };
        let sent = pb::SearchRequest {
            recursive: false,
            ..request
        };
        let hop = hop_deadline(deadline);
        self.forward(&zone, &servers, Some(hop), move |mut client| {
            let mut sent = Request::new(sent.clone());
            sent.set_timeout(hop.saturating_duration_since(tokio::time::Instant::now()));
            async move { client.search(sent).await }
        })
        .await
    }

    fn answer(&self, gathered: Gathered, query: &AnalyzedQuery) -> pb::SearchResponse {
        let merged = search::merge(gathered.parts, query.limit());
        pb::SearchResponse {
            hits: merged.hits.iter().map(search_hit).collect(),
            stats: Some(pb::SearchStats {
                doc_count: merged.stats.doc_count,
                total_length: merged.stats.total_length,
                doc_freqs: merged.stats.doc_freq.clone(),
            }),
            terms: query.terms().to_vec(),
            total_matches: merged.total_matches,
            partial: !gathered.missed.is_empty(),
            missed: gathered.missed,
            searched: gathered.searched,
            served_by: self.catalog.node_id().to_string(),
        }
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

/// The deadline a node gives the next hop: a fifth (at least 5 ms) short of its own, so a
/// child's answer, or the news that it had none, is back in time.
fn hop_deadline(deadline: tokio::time::Instant) -> tokio::time::Instant {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let margin = (left / 5).max(Duration::from_millis(5));
    tokio::time::Instant::now() + left.saturating_sub(margin)
}

fn search_hit(hit: &Hit) -> pb::SearchHit {
    pb::SearchHit {
        agent: Some(pb::Agent::from(&*hit.agent)),
        zone: hit.zone.to_string(),
        score: hit.score,
        term_freqs: hit.term_freqs.clone(),
        length: hit.length,
    }
}
