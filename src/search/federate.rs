//! The federated search walk: the zones of this node, then the delegated children, merged.
//!
//! A search names a scope (a name; the whole tree by default). The node finds the zone
//! holding the scope among its own (or, asked `recursive`ly, the zone's servers, and asks
//! them instead), searches that zone's index, and walks down the delegations at or below the
//! scope: child zones this node also serves are searched in place, the others are asked
//! through a [`SearchPeer`] in parallel, each with the same query, one level less of depth,
//! and a deadline a fifth short of what this node has left, so that a child's late answer is
//! dropped here in time to answer our own caller within its deadline. A child that fails or
//! misses its deadline is reported in `missed` and the answer is partial, never late.
//!
//! Children answer for their whole subtree with summed term statistics; this node sums them
//! again with its own zones' and rescores every hit ([`merge()`]), so scores from different
//! zones compare (see the module doc of `search`).
//!
//! The gateway uses the same fan-out ([`ask_all`]) for its scopes, each asked of its resolver
//! node, and the same merge.
//!
//! Limits: depth [`SEARCH_DEPTH_MAX`] below the scope's zone, [`SEARCH_FANOUT_MAX`] remote
//! children per node, a default budget of [`SEARCH_BUDGET`] when the caller gives none.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::{AnalyzedQuery, Merged, SearchQuery, ZoneIndexes, ZoneResult, merge};
use crate::answer::Outcome;
use crate::catalog::{Catalog, CatalogError};
use crate::name::Name;
use crate::peer::{FailureKind, PeerFailure};
use crate::record::{Delegation, ServerAddress};
use crate::resolver::{ResolveError, ResolveOptions, Resolver, ZoneAuthority};
use crate::zone::ZoneSnapshot;

/// Levels of delegation followed below the zone holding the scope.
pub const SEARCH_DEPTH_MAX: u32 = 8;
/// Children asked over the network by one node for one search.
pub const SEARCH_FANOUT_MAX: usize = 32;
/// The whole search's budget when the caller sets no deadline.
pub const SEARCH_BUDGET: Duration = Duration::from_secs(1);

/// A zone searched, and by which node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Searched {
    pub zone: String,
    pub serial: u32,
    pub served_by: String,
}

/// A zone left out, and why (no answer in time, every server failed, a limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    pub zone: String,
    pub reason: String,
}

/// One answer for a subtree: its part to merge, and the zones it covered and missed.
#[derive(Debug, Clone)]
pub struct SearchPart {
    pub result: ZoneResult,
    pub searched: Vec<Searched>,
    pub missed: Vec<Missed>,
}

/// What a node is asked to search (the scope is in `query`).
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: SearchQuery,
    /// Levels of delegation still to follow below the zones searched; `None`: the node's own
    /// limit.
    pub max_depth: Option<u32>,
    /// The node may find the scope's zone elsewhere and ask its servers.
    pub recursive: bool,
}

/// A merged answer.
#[derive(Debug)]
pub struct SearchAnswer {
    pub merged: Merged,
    /// The query's terms as analysed.
    pub terms: Vec<String>,
    pub searched: Vec<Searched>,
    pub missed: Vec<Missed>,
}

impl SearchAnswer {
    /// Some zone below did not answer.
    pub fn partial(&self) -> bool {
        !self.missed.is_empty()
    }
}

/// Why a search could not run at all (a zone that did not answer only makes it partial).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The scope's zone is elsewhere and its servers failed.
    #[error("every server of zone {zone} failed: {}", failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Unavailable {
        zone: Name,
        failures: Vec<PeerFailure>,
    },
}

/// How a node asks other nodes to search.
pub trait SearchPeer: Send + Sync + 'static {
    /// Asks `servers` (best first, the next after a failure that allows it) to search
    /// `request`'s scope, answering by `deadline`. The answer is checked against `terms`, the
    /// query's terms as analysed here.
    fn search<'a>(
        &'a self,
        servers: &'a [ServerAddress],
        request: &'a SearchRequest,
        terms: &'a [String],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<SearchPart, Vec<PeerFailure>>>;
}

/// A subtree to ask over the network: the zone whose servers answer, and what to ask.
#[derive(Debug, Clone)]
pub struct RemoteAsk {
    pub zone: Name,
    pub servers: Vec<ServerAddress>,
    pub request: SearchRequest,
}

/// What one node gathered for one search before merging.
#[derive(Default)]
struct Gathered {
    /// Zones served here that the search covers, searched after the walk.
    local: Vec<Arc<ZoneSnapshot>>,
    parts: Vec<ZoneResult>,
    searched: Vec<Searched>,
    missed: Vec<Missed>,
}

/// A child zone to ask over the network.
struct RemoteChild {
    delegation: Arc<Delegation>,
    /// The scope to send: the child's apex, or the caller's scope when it is below it.
    scope: Name,
    depth: u32,
}

/// One node's federated search: its zones (the catalog), their indexes, and its peers.
pub struct Federation {
    catalog: Arc<Catalog>,
    indexes: Arc<ZoneIndexes>,
    resolver: Arc<Resolver>,
    peer: Arc<dyn SearchPeer>,
}

impl Federation {
    pub fn new(
        catalog: Arc<Catalog>,
        resolver: Arc<Resolver>,
        peer: Arc<dyn SearchPeer>,
    ) -> Federation {
        Federation {
            catalog,
            indexes: Arc::new(ZoneIndexes::new()),
            resolver,
            peer,
        }
    }

    /// The caller's deadline, or [`SEARCH_BUDGET`] from now, capped at ten budgets.
    pub fn deadline(caller: Option<Instant>) -> Instant {
        let now = Instant::now();
        caller.map_or(now + SEARCH_BUDGET, |d| d.min(now + 10 * SEARCH_BUDGET))
    }

    /// Searches `request`'s scope and everything below it, answering by `deadline`.
    pub async fn search(
        &self,
        request: SearchRequest,
        deadline: Instant,
    ) -> Result<SearchAnswer, SearchError> {
        let scope = request.query.scope.clone().unwrap_or_else(Name::root);
        let analyzed = request.query.analyze();
        let depth = request
            .max_depth
            .unwrap_or(SEARCH_DEPTH_MAX)
            .min(SEARCH_DEPTH_MAX);
        let Some(zone) = self.catalog.find_zone(&scope) else {
            if !request.recursive {
                return Err(CatalogError::NotAuthoritative {
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
            // A scope that names nothing in its zone (a mistyped zone, say) is an error, not
            // an empty answer from the enclosing zone.
            if scope != *zone.origin() && matches!(zone.lookup(&scope).outcome, Outcome::NxDomain) {
                return Err(ResolveError::NoSuchZone {
                    name: scope,
                    zone: zone.origin().clone(),
                }
                .into());
            }
            self.search_local(zone, &scope, depth, &mut gathered, &mut remote);
        }
        let asks = self.child_asks(remote, &request, &mut gathered);
        let (local_parts, remote_parts) = futures::future::join(
            self.search_local_indexes(std::mem::take(&mut gathered.local), &analyzed),
            ask_all(&*self.peer, asks, analyzed.terms(), hop_deadline(deadline)),
        )
        .await;
        for part in local_parts {
            match part {
                Ok(part) => gathered.parts.push(part),
                Err(missed) => gathered.missed.push(missed),
            }
        }
        gathered.parts.extend(remote_parts.parts);
        gathered.searched.extend(remote_parts.searched);
        gathered.missed.extend(remote_parts.missed);
        Ok(SearchAnswer {
            merged: merge(gathered.parts, analyzed.limit()),
            terms: analyzed.terms().to_vec(),
            searched: gathered.searched,
            missed: gathered.missed,
        })
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
        gathered.searched.push(Searched {
            zone: zone.origin().to_string(),
            serial: zone.serial(),
            served_by: self.catalog.node_id().to_string(),
        });
        for delegation in zone.delegations() {
            if !delegation.zone.is_at_or_below(scope) {
                continue;
            }
            if depth == 0 {
                gathered.missed.push(Missed {
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

    /// The remote children to ask, at most [`SEARCH_FANOUT_MAX`]; the rest are missed.
    fn child_asks(
        &self,
        mut children: Vec<RemoteChild>,
        request: &SearchRequest,
        gathered: &mut Gathered,
    ) -> Vec<RemoteAsk> {
        if children.len() > SEARCH_FANOUT_MAX {
            for child in children.drain(SEARCH_FANOUT_MAX..) {
                gathered.missed.push(Missed {
                    zone: child.delegation.zone.to_string(),
                    reason: format!("not searched: over the fan-out limit of {SEARCH_FANOUT_MAX} child zones per node"),
                });
            }
        }
        children
            .into_iter()
            .map(|child| RemoteAsk {
                zone: child.delegation.zone.clone(),
                servers: self.resolver.servers().order(&child.delegation.servers),
                request: SearchRequest {
                    query: SearchQuery {
                        scope: (!child.scope.is_root()).then(|| child.scope.clone()),
                        ..request.query.clone()
                    },
                    max_depth: Some(child.depth),
                    recursive: false,
                },
            })
            .collect()
    }

    /// Searches the zones served here. An index not yet made for a zone's serial (the first
    /// search after a change) is made on a blocking thread: usually derived from the
    /// previous serial's (O(overlay + changed)), but built in full after a reload or a gap
    /// (half a second for 100,000 agents), which must not hold a runtime worker.
    async fn search_local_indexes(
        &self,
        zones: Vec<Arc<ZoneSnapshot>>,
        query: &AnalyzedQuery,
    ) -> Vec<Result<ZoneResult, Missed>> {
        let mut parts = Vec::with_capacity(zones.len());
        for zone in zones {
            let index = match self.indexes.built(&zone) {
                Some(index) => index,
                None => {
                    let indexes = Arc::clone(&self.indexes);
                    let snapshot = Arc::clone(&zone);
                    match tokio::task::spawn_blocking(move || indexes.get(&snapshot)).await {
                        Ok(index) => index,
                        // The build panicked (a bug); the slot stays empty for a retry.
                        Err(error) => {
                            parts.push(Err(Missed {
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

    /// The scope is in a zone this node does not serve: find its servers, ask them.
    async fn search_elsewhere(
        &self,
        request: SearchRequest,
        scope: &Name,
        deadline: Instant,
    ) -> Result<SearchAnswer, SearchError> {
        let options = || ResolveOptions {
            deadline: Some(deadline),
            trace: false,
        };
        let (zone, authority) = match self.resolver.locate_zone(scope, options()).await {
            Ok(authority) => (scope.clone(), authority),
            // A name inside a zone: its zone's servers search the names at or below it (and
            // refuse a name that does not exist there).
            Err(ResolveError::NotAZone { zone, .. }) => {
                let authority = self.resolver.locate_zone(&zone, options()).await?;
                (zone, authority)
            }
            Err(error) => return Err(error.into()),
        };
        let ZoneAuthority::Servers(servers) = authority else {
            // Served here after all (it arrived since we looked): search again, in place.
            return Box::pin(self.search(
                SearchRequest {
                    recursive: false,
                    ..request
                },
                deadline,
            ))
            .await;
        };
        let terms = request.query.terms();
        let sent = SearchRequest {
            recursive: false,
            ..request.clone()
        };
        let servers = self.resolver.servers().order(&servers);
        match self
            .peer
            .search(&servers, &sent, &terms, hop_deadline(deadline))
            .await
        {
            // The zone's servers merged their subtree; merging one part again is the same.
            Ok(part) => Ok(SearchAnswer {
                merged: merge(vec![part.result], request.query.limit),
                terms,
                searched: part.searched,
                missed: part.missed,
            }),
            Err(failures) => Err(SearchError::Unavailable { zone, failures }),
        }
    }
}

/// What asking several subtrees brought.
#[derive(Debug, Default)]
pub struct Asked {
    pub parts: Vec<ZoneResult>,
    pub searched: Vec<Searched>,
    pub missed: Vec<Missed>,
}

/// Asks every subtree in parallel, each within `deadline`: answers become parts to merge,
/// failures and late answers become `missed`.
pub async fn ask_all(
    peer: &dyn SearchPeer,
    asks: Vec<RemoteAsk>,
    terms: &[String],
    deadline: Instant,
) -> Asked {
    let answers = asks.iter().map(|ask| async move {
        let answer = tokio::time::timeout_at(
            deadline,
            peer.search(&ask.servers, &ask.request, terms, deadline),
        )
        .await;
        (&ask.zone, answer)
    });
    let mut asked = Asked::default();
    for (zone, answer) in futures::future::join_all(answers).await {
        let missed = |reason: String| Missed {
            zone: zone.to_string(),
            reason,
        };
        match answer {
            Err(_) => asked
                .missed
                .push(missed("no answer within the search's deadline".into())),
            Ok(Err(failures)) => {
                let text = failures
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                let late = failures
                    .iter()
                    .any(|failure| matches!(failure.kind, FailureKind::Timeout(_)));
                asked.missed.push(missed(if late {
                    format!("no answer within the search's deadline ({text})")
                } else {
                    text
                }));
            }
            Ok(Ok(part)) => {
                asked.parts.push(part.result);
                asked.searched.extend(part.searched);
                asked.missed.extend(part.missed);
            }
        }
    }
    asked
}

/// The deadline a node gives the next hop: a fifth (at least 5 ms) short of its own, so a
/// child's answer, or the news that it had none, is back in time.
pub fn hop_deadline(deadline: Instant) -> Instant {
    let left = deadline.saturating_duration_since(Instant::now());
    let margin = (left / 5).max(Duration::from_millis(5));
    Instant::now() + left.saturating_sub(margin)
}
