//! The gateway's own name cache: the first cache level on the call path.
//!
//! Calls resolve the agent's name through the resolver node (gRPC `Resolve`, recursive), and
//! keep the answer for its TTL, negative answers included (for min(ttl, negative_ttl), as the
//! node said). Concurrent misses for one name share one request (moka's `try_get_with`).
//! An answer is kept whole, so `resolve_agent` can say who served it and whether it was
//! authoritative or stale; the remaining TTL is computed when read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::future::Cache;

use crate::answer::{Answer, Outcome};
use crate::gateway::error::GatewayError;
use crate::grpc::client::{ClientError, NodeClient};
use crate::name::Name;
use crate::record::Agent;

/// How long one resolution may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A cached answer and when it was fetched.
#[derive(Debug)]
pub struct Resolution {
    pub answer: Answer,
    pub fetched: Instant,
}

impl Resolution {
    /// Seconds of freshness left.
    pub fn remaining_ttl(&self) -> u32 {
        let elapsed = u32::try_from(self.fetched.elapsed().as_secs()).unwrap_or(u32::MAX);
        self.answer.ttl.saturating_sub(elapsed)
    }

    /// The agent record, or why there is none.
    pub fn agent(&self) -> Result<&Arc<Agent>, GatewayError> {
        match &self.answer.outcome {
            Outcome::Answer(agent) => Ok(agent),
            Outcome::NxDomain | Outcome::NoData => Err(GatewayError::NoSuchAgent {
                name: self.answer.name.clone(),
                outcome: self.answer.outcome.word(),
            }),
            other => Err(GatewayError::Resolve {
                name: self.answer.name.clone(),
                reason: format!("the resolver answered {} instead of an agent", other.word()),
            }),
        }
    }
}

struct UntilTtlEnds;

impl moka::Expiry<Name, Arc<Resolution>> for UntilTtlEnds {
    fn expire_after_create(
        &self,
        _key: &Name,
        value: &Arc<Resolution>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(u64::from(value.answer.ttl)))
    }
}

/// Cache statistics of the gateway's level.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct NameCacheStats {
    pub entries: u64,
    pub hits: u64,
    pub misses: u64,
}

pub struct NameCache {
    client: NodeClient,
    cache: Cache<Name, Arc<Resolution>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl NameCache {
    pub fn new(client: NodeClient, capacity: u64) -> NameCache {
        NameCache {
            client,
            cache: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilTtlEnds)
                .build(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The answer for `name`, from the cache while fresh, else from the resolver node.
    pub async fn resolve(&self, name: &Name) -> Result<Arc<Resolution>, GatewayError> {
        if let Some(hit) = self.cache.get(name).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.cache
            .try_get_with(name.clone(), self.fetch(name))
            .await
            .map_err(|error| GatewayError::clone(&error))
    }

    /// Forgets `name` (its endpoints moved, say).
    pub async fn invalidate(&self, name: &Name) {
        self.cache.invalidate(name).await;
    }

    async fn fetch(&self, name: &Name) -> Result<Arc<Resolution>, GatewayError> {
        let mut client = self.client.clone();
        let answer = client
            .resolve(name.as_str(), true, false, Some(RESOLVE_TIMEOUT))
            .await
            .map_err(|error| match error {
                error if error.is_not_found() => GatewayError::NoSuchAgent {
                    name: name.clone(),
                    outcome: "not found",
                },
                ClientError::Unreachable { url, reason } => GatewayError::Resolve {
                    name: name.clone(),
                    reason: format!("cannot reach the resolver {url}: {reason}"),
                },
                ClientError::Status { message, .. } => GatewayError::Resolve {
                    name: name.clone(),
                    reason: message,
                },
                ClientError::BadAnswer { reason, .. } => GatewayError::Resolve {
                    name: name.clone(),
                    reason: format!("unusable answer from the resolver: {reason}"),
                },
                other => GatewayError::Resolve {
                    name: name.clone(),
                    reason: other.to_string(),
                },
            })?;
        Ok(Arc::new(Resolution {
            answer,
            fetched: Instant::now(),
        }))
    }

    pub fn stats(&self) -> NameCacheStats {
        NameCacheStats {
            entries: self.cache.entry_count(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}
