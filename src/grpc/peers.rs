//! Other nodes, as the core sees them, over gRPC: the resolver's [`Upstream`] (non-recursive
//! Resolve), the authority's [`Peers`] (NOTIFY, transfers) and search's `SearchPeer`, all on
//! one node's [`ChannelPool`], every failure classified once ([`ClientError::failure`]).

use std::time::Duration;

use futures::future::BoxFuture;

use tokio::time::Instant;

use crate::answer::Answer;
use crate::authority::{Peers, TransferData, TransferRequest};
use crate::grpc::client::{ChannelPool, ClientError, SearchCall};
use crate::grpc::convert::search_part;
use crate::name::Name;
use crate::peer::{FailureKind, PeerFailure};
use crate::record::ServerAddress;
use crate::resolver::Upstream;
use crate::search::federate::{SearchPart, SearchPeer, SearchRequest};

/// Every gRPC peer of one node.
#[derive(Default, Clone)]
pub struct GrpcPeers {
    pool: ChannelPool,
}

impl GrpcPeers {
    pub fn new(pool: ChannelPool) -> GrpcPeers {
        GrpcPeers { pool }
    }

    pub fn pool(&self) -> &ChannelPool {
        &self.pool
    }
}

/// A failure as the core classifies it, with the budget the call had for a timeout.
fn failure(error: &ClientError, timeout: Duration) -> PeerFailure {
    let mut failure = error.failure();
    if let FailureKind::Timeout(_) = failure.kind {
        failure.kind = FailureKind::Timeout(timeout);
    }
    failure
}

impl Upstream for GrpcPeers {
    fn query<'a>(
        &'a self,
        server: &'a ServerAddress,
        name: &'a Name,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Answer, PeerFailure>> {
        Box::pin(async move {
            let mut client = self
                .pool
                .client(&server.grpc)
                .map_err(|error| failure(&error, timeout))?;
            let result = client
                .resolve(name.as_str(), false, false, Some(timeout))
                .await
                .map_err(|error| failure(&error, timeout));
            // No answer in the whole time: the connection may be stalled behind a cut link.
            if let Err(PeerFailure {
                kind: FailureKind::Timeout(_),
                ..
            }) = &result
            {
                self.pool.forget(&server.grpc);
            }
            result
        })
    }
}

impl Peers for GrpcPeers {
    fn notify<'a>(
        &'a self,
        url: &'a str,
        zone: &'a Name,
        serial: u32,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), PeerFailure>> {
        Box::pin(async move {
            let mut client = self
                .pool
                .client(url)
                .map_err(|error| failure(&error, timeout))?;
            client
                .notify(zone, serial, timeout)
                .await
                .map_err(|error| failure(&error, timeout))
        })
    }

    fn transfer<'a>(
        &'a self,
        url: &'a str,
        request: TransferRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<TransferData, PeerFailure>> {
        Box::pin(async move {
            let mut client = self
                .pool
                .client(url)
                .map_err(|error| failure(&error, timeout))?;
            client
                .transfer(&request, timeout)
                .await
                .map_err(|error| failure(&error, timeout))
        })
    }
}

impl SearchPeer for GrpcPeers {
    fn search<'a>(
        &'a self,
        servers: &'a [ServerAddress],
        request: &'a SearchRequest,
        terms: &'a [String],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<SearchPart, Vec<PeerFailure>>> {
        Box::pin(async move {
            let query = &request.query;
            let scope = query.scope.clone().unwrap_or_else(Name::root);
            let call = SearchCall {
                query: query.text.clone(),
                zone: scope.to_string(),
                tags: query.tags.clone(),
                capabilities: query.capabilities.clone(),
                limit: u32::try_from(query.limit).unwrap_or(u32::MAX),
                max_depth: request.max_depth,
                recursive: request.recursive,
            };
            let mut failures = Vec::new();
            for server in servers {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    failures.push(PeerFailure::new(
                        &server.grpc,
                        FailureKind::Timeout(left),
                        "no time left",
                    ));
                    break;
                }
                let answer = match self.pool.client(&server.grpc) {
                    Ok(mut client) => client.search(&call, Some(left)).await,
                    Err(error) => Err(error),
                };
                let failure = match answer {
                    Ok(response) => match search_part(&scope, response, terms) {
                        Ok(part) => return Ok(part),
                        Err(reason) => {
                            PeerFailure::new(&server.grpc, FailureKind::BadAnswer, reason)
                        }
                    },
                    Err(error) => failure(&error, left),
                };
                let again = failure.retry_elsewhere(true);
                failures.push(failure);
                if !again {
                    break;
                }
            }
            Err(failures)
        })
    }
}
