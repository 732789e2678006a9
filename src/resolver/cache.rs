//! The resolver's caches, one level per kind of data: positive answers, negative answers
//! (NXDOMAIN, NODATA; RFC 2308) and delegations (zone cut -> servers).
//!
//! Each level is a weight-bounded moka cache. An entry is *fresh* until its TTL runs out on
//! the resolver's [`Clock`], and is kept (but never served as fresh) for the stale window
//! after that, so that when every server of a zone fails an expired answer can still be
//! served, marked stale (RFC 8767). moka's own expiry is set to the end of the stale window
//! and only reclaims memory; freshness is always judged against the clock, so tests can move
//! time by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::notification::RemovalCause;

use crate::answer::{Answer, Outcome};
use crate::clock::Clock;
use crate::name::Name;
use crate::record::Delegation;

/// Sizes of the cache levels, in bytes of (approximate) entry weight.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub answers_bytes: u64,
    pub negatives_bytes: u64,
    pub delegations_bytes: u64,
    /// How long past its TTL an entry may still be served stale.
    pub max_stale_age: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            answers_bytes: 64 << 20,
            negatives_bytes: 16 << 20,
            delegations_bytes: 16 << 20,
            max_stale_age: Duration::from_secs(86_400),
        }
    }
}

/// One cached value with its freshness.
#[derive(Debug)]
pub struct Entry<T> {
    pub value: T,
    pub stored_at: Instant,
    pub fresh_until: Instant,
    pub stale_until: Instant,
    weight: u32,
}

impl<T> Entry<T> {
    /// Whole seconds of TTL left, rounded up, so a fresh entry never shows 0.
    fn remaining_ttl(&self, now: Instant) -> u32 {
        let left = self.fresh_until.saturating_duration_since(now);
        u32::try_from(left.as_secs() + u64::from(left.subsec_nanos() > 0)).unwrap_or(u32::MAX)
    }
}

/// Counters of one level.
#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    evictions: AtomicU64,
    stale_served: AtomicU64,
}

/// Statistics of one level, for `GetCacheStats` and `aop resolve --stats`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LevelStats {
    pub level: &'static str,
    pub entries: u64,
    pub weighted_bytes: u64,
    pub capacity_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub evictions: u64,
    pub stale_served: u64,
}

struct Level<T> {
    name: &'static str,
    cache: Cache<Name, Arc<Entry<T>>>,
    counters: Arc<Counters>,
    capacity: u64,
}

/// moka expiry: the end of the stale window, recomputed on every insert.
struct UntilStaleEnds;

impl<T> moka::Expiry<Name, Arc<Entry<T>>> for UntilStaleEnds {
    fn expire_after_create(
        &self,
        _key: &Name,
        value: &Arc<Entry<T>>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.stale_until.saturating_duration_since(value.stored_at))
    }

    fn expire_after_update(
        &self,
        _key: &Name,
        value: &Arc<Entry<T>>,
        _updated_at: std::time::Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.stale_until.saturating_duration_since(value.stored_at))
    }
}

impl<T: Send + Sync + 'static> Level<T> {
    fn new(name: &'static str, capacity: u64) -> Level<T> {
        let counters = Arc::new(Counters::default());
        let evictions = Arc::clone(&counters);
        let cache = Cache::builder()
            .name(name)
            .max_capacity(capacity)
            .weigher(|_key: &Name, entry: &Arc<Entry<T>>| entry.weight)
            .expire_after(UntilStaleEnds)
            .eviction_listener(move |_key, _value, cause: RemovalCause| {
                if cause.was_evicted() {
                    evictions.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Level {
            name,
            cache,
            counters,
            capacity,
        }
    }

    async fn get(&self, key: &str) -> Option<Arc<Entry<T>>> {
        self.cache.get(key).await
    }

    async fn insert(&self, key: Name, entry: Entry<T>) {
        self.counters.inserts.fetch_add(1, Ordering::Relaxed);
        self.cache.insert(key, Arc::new(entry)).await;
    }

    fn hit(&self) {
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
    }

    fn miss(&self) {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
    }

    async fn stats(&self) -> LevelStats {
        // Entry counts are maintained lazily; settle them so the figures are current.
        self.cache.run_pending_tasks().await;
        let c = &self.counters;
        LevelStats {
            level: self.name,
            entries: self.cache.entry_count(),
            weighted_bytes: self.cache.weighted_size(),
            capacity_bytes: self.capacity,
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            inserts: c.inserts.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            stale_served: c.stale_served.load(Ordering::Relaxed),
        }
    }
}

/// A cached delegation: the servers of a zone cut.
pub type CachedDelegation = Arc<Entry<Arc<Delegation>>>;

/// The three levels.
pub struct ResolverCache {
    answers: Level<Answer>,
    negatives: Level<Answer>,
    delegations: Level<Arc<Delegation>>,
    clock: Arc<dyn Clock>,
    max_stale_age: Duration,
}

/// Rough bytes an answer occupies, for the weigher.
fn answer_weight(answer: &Answer) -> u32 {
    let mut bytes = 160 + answer.name.as_str().len() + answer.zone.as_str().len();
    if let Outcome::Answer(agent) = &answer.outcome {
        bytes += agent.name.as_str().len() + agent.description.len() + agent.version.len();
        bytes += agent
            .tags
            .iter()
            .chain(&agent.capabilities)
            .map(|t| t.len() + 24)
            .sum::<usize>();
        bytes += agent
            .endpoints
            .iter()
            .map(|e| e.url.len() + e.tool.len() + 56)
            .sum::<usize>();
        bytes += agent.output_schema.as_ref().map_or(0, |s| s.text().len());
        bytes += agent.metadata.as_ref().map_or(0, |s| s.text().len());
    }
    bytes += answer
        .aliases
        .iter()
        .map(|a| a.name.as_str().len() + a.target.as_str().len() + 48)
        .sum::<usize>();
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

impl ResolverCache {
    pub fn new(config: &CacheConfig, clock: Arc<dyn Clock>) -> ResolverCache {
        ResolverCache {
            answers: Level::new("answers", config.answers_bytes),
            negatives: Level::new("negatives", config.negatives_bytes),
            delegations: Level::new("delegations", config.delegations_bytes),
            clock,
            max_stale_age: config.max_stale_age,
        }
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// A fresh cached answer (positive or negative) for `name`, with its remaining TTL.
    pub async fn fresh_answer(&self, name: &Name) -> Option<Answer> {
        let now = self.now();
        for level in [&self.answers, &self.negatives] {
            if let Some(entry) = level.get(name.as_str()).await
                && now < entry.fresh_until
            {
                level.hit();
                let mut answer = entry.value.clone();
                answer.ttl = entry.remaining_ttl(now);
                answer.authoritative = false;
                return Some(answer);
            }
        }
        self.answers.miss();
        self.negatives.miss();
        None
    }

    /// An expired answer still inside the stale window, if any.
    /// Whether [`Self::stale_answer`] would find an answer for `name` (nothing counted).
    pub async fn has_stale_answer(&self, name: &Name) -> bool {
        let now = self.now();
        for level in [&self.answers, &self.negatives] {
            if let Some(entry) = level.get(name.as_str()).await
                && now < entry.stale_until
            {
                return true;
            }
        }
        false
    }

    pub async fn stale_answer(&self, name: &Name) -> Option<Answer> {
        let now = self.now();
        for level in [&self.answers, &self.negatives] {
            if let Some(entry) = level.get(name.as_str()).await
                && now < entry.stale_until
            {
                level.counters.stale_served.fetch_add(1, Ordering::Relaxed);
                let mut answer = entry.value.clone();
                answer.authoritative = false;
                answer.stale = true;
                return Some(answer);
            }
        }
        None
    }

    /// Caches an answer from an authority under the name it answers.
    pub async fn put_answer(&self, answer: &Answer) {
        if matches!(answer.outcome, Outcome::Referral(_)) {
            return;
        }
        let now = self.now();
        let fresh_until = now + Duration::from_secs(u64::from(answer.ttl));
        let entry = Entry {
            weight: answer_weight(answer),
            value: answer.clone(),
            stored_at: now,
            fresh_until,
            stale_until: fresh_until + self.max_stale_age,
        };
        let level = if answer.outcome.is_negative() {
            &self.negatives
        } else {
            &self.answers
        };
        level.insert(answer.name.clone(), entry).await;
    }

    /// Caches a zone cut learnt from a referral.
    pub async fn put_delegation(&self, delegation: Arc<Delegation>, ttl: u32) {
        let now = self.now();
        let fresh_until = now + Duration::from_secs(u64::from(ttl));
        let weight = 96
            + delegation.zone.as_str().len()
            + delegation
                .servers
                .iter()
                .map(|s| s.grpc.len() + 48)
                .sum::<usize>();
        let entry = Entry {
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
            value: Arc::clone(&delegation),
            stored_at: now,
            fresh_until,
            stale_until: fresh_until + self.max_stale_age,
        };
        self.delegations
            .insert(delegation.zone.clone(), entry)
            .await;
    }

    /// The closest fresh cached zone cut at or above `name` (strictly below `floor` when
    /// given: cuts at or above it are no help).
    pub async fn closest_delegation(
        &self,
        name: &Name,
        floor: Option<&Name>,
    ) -> Option<Arc<Delegation>> {
        let now = self.now();
        let floor_len = floor.map(|f| f.as_str().len());
        for ancestor in name.self_and_ancestors() {
            if floor_len.is_some_and(|len| ancestor.len() <= len) {
                break;
            }
            if let Some(entry) = self.delegations.get(ancestor).await
                && now < entry.fresh_until
            {
                self.delegations.hit();
                return Some(Arc::clone(&entry.value));
            }
        }
        self.delegations.miss();
        None
    }

    pub async fn stats(&self) -> Vec<LevelStats> {
        vec![
            self.answers.stats().await,
            self.negatives.stats().await,
            self.delegations.stats().await,
        ]
    }

    /// Cached zone cuts (at most `limit`, in no particular order), each with whether it is
    /// still fresh; for the status page.
    pub fn delegations(&self, limit: usize) -> Vec<(Arc<Delegation>, bool)> {
        let now = self.now();
        self.delegations
            .cache
            .iter()
            .take(limit)
            .map(|(_, entry)| (Arc::clone(&entry.value), now < entry.fresh_until))
            .collect()
    }

    /// Drops every cached answer for `name` (an update on this node changed it).
    pub async fn invalidate(&self, name: &Name) {
        self.answers.cache.invalidate(name.as_str()).await;
        self.negatives.cache.invalidate(name.as_str()).await;
    }
}
