//! Recursive resolution (docs/protocol.md §4): from this node's own zones, or from the closest
//! cached zone cut, or from the root hints, follow referrals down to the answer, chase
//! aliases across zones, and cache what was learnt.
//!
//! - Caches ([`cache`]): answers, negative answers and delegations, each with its TTL on the
//!   resolver's clock, kept past it for serve-stale.
//! - Server choice ([`servers`]): smoothed RTT with a decaying failure penalty; on error the
//!   next server of the zone is tried within the same query, and when a server has not
//!   answered within its own attempt timeout (from its SRTT, floored and capped) the next one
//!   is asked alongside it and the first answer wins: a cut link costs a few hundred
//!   milliseconds, not the whole attempt timeout, for every lookup that meets it.
//! - Bounds: referral depth, alias chain, upstream queries per resolution, and the caller's
//!   deadline, which shrinks as it travels to every hop.
//! - Coalescing: concurrent resolutions of one name share one walk through the tree (moka's
//!   `try_get_with` on an in-flight map), so a burst of identical cold queries costs one
//!   upstream query per hop. Concurrent walks for different names share the questions they
//!   ask on the way: a question to a zone's servers is shared by every walk that would ask
//!   that zone about a name under the same child label (`*.b.acme` asked of `acme`), and a
//!   referral it brings back serves each of them whose name lies under it. A cold start with
//!   many names under one zone cut then costs one walk to the cut, not one per name.
//!
//! The resolver asks other nodes through the [`Upstream`] trait, implemented over gRPC in
//! `grpc::upstream`; it never sees a wire format.

pub mod cache;
pub mod liveness;
pub mod servers;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::answer::{Answer, Outcome, TraceStep};
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::name::Name;
use crate::peer::{FailureKind, PeerFailure};
use crate::record::limits::ALIAS_CHAIN_MAX;
use crate::record::{Alias, Delegation, ServerAddress};

pub use cache::{CacheConfig, LevelStats, ResolverCache};
pub use servers::ServerSelector;

/// How long before the caller's deadline a resolution that has not finished gives up and
/// serves a stale answer, when it has one: the caller must still be waiting when it arrives.
const STALE_ANSWER_MARGIN: Duration = Duration::from_millis(250);

/// Limits and windows of the resolver.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// Root hints: the servers of the root zone.
    pub roots: Vec<ServerAddress>,
    /// Referrals followed in one resolution.
    pub max_referrals: usize,
    /// Upstream queries one resolution may send, failovers included.
    pub max_queries: usize,
    /// Budget of a resolution when the caller sets no deadline (and the cap when it does).
    pub max_time: Duration,
    /// Longest wait for one server's answer: the ceiling of its adaptive attempt timeout,
    /// after which the next server is asked too (a hedge), and the limit of the attempt.
    pub attempt_timeout: Duration,
    /// Floor of a server's adaptive attempt timeout, so a server measured at microseconds
    /// is not hedged against on every scheduling hiccup.
    pub attempt_timeout_floor: Duration,
    /// TTL given to a stale answer.
    pub stale_ttl: u32,
    pub cache: CacheConfig,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            roots: Vec::new(),
            max_referrals: 16,
            max_queries: 32,
            max_time: Duration::from_secs(5),
            attempt_timeout: Duration::from_millis(1500),
            attempt_timeout_floor: Duration::from_millis(150),
            stale_ttl: 30,
            cache: CacheConfig::default(),
        }
    }
}

/// Why a resolution failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    #[error("every server of zone {zone} failed: {}", failures.join("; "))]
    Unavailable { zone: Name, failures: Vec<String> },
    #[error("resolution of {name} ran out of time")]
    DeadlineExceeded { name: Name },
    #[error(
        "this node is not authoritative for {name} and has no root hints to recurse from (start it with --root URL)"
    )]
    NoRoots { name: Name },
    #[error(
        "resolution of {name} followed more than {limit} referrals (limit {limit}): a delegation loop?"
    )]
    TooManyReferrals { name: Name, limit: usize },
    #[error("resolution of {name} needed more than {limit} upstream queries (limit {limit})")]
    TooManyQueries { name: Name, limit: usize },
    #[error("alias loop across zones: {}", chain.iter().map(Name::to_string).collect::<Vec<_>>().join(" -> "))]
    AliasLoop { chain: Vec<Name> },
    #[error(
        "alias chain from {name} follows more than {ALIAS_CHAIN_MAX} aliases (limit {ALIAS_CHAIN_MAX})"
    )]
    AliasChainTooLong { name: Name },
    #[error("{name} is not a zone: it lies inside zone {zone}")]
    NotAZone { name: Name, zone: Name },
    #[error("no such zone: {name} does not exist (NXDOMAIN from zone {zone})")]
    NoSuchZone { name: Name, zone: Name },
}

/// Who serves a zone, as [`Resolver::locate_zone`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneAuthority {
    /// This node serves it.
    Local,
    /// These servers do (the zone's NS set from its delegation, or the root hints).
    Servers(Vec<ServerAddress>),
}

/// Why one upstream query failed; the resolver moves on to the next server whatever the
/// kind (a lookup is harmless to repeat, and a server that refuses is a lame one).
pub type UpstreamError = PeerFailure;

/// How the resolver asks another node (non-recursively) about a name.
pub trait Upstream: Send + Sync + 'static {
    fn query<'a>(
        &'a self,
        server: &'a ServerAddress,
        name: &'a Name,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Answer, UpstreamError>>;
}

/// Per-call options.
#[derive(Debug, Clone, Copy)]
pub struct ResolveOptions {
    /// When the caller stops waiting (its gRPC deadline), if it set one.
    pub deadline: Option<Instant>,
    pub trace: bool,
}

/// The state of one resolution: its budget and its trace.
struct Walk {
    deadline: Instant,
    queries: usize,
    trace: Option<Vec<TraceStep>>,
}

impl Walk {
    fn step(&mut self, step: impl FnOnce() -> TraceStep) {
        if let Some(trace) = &mut self.trace {
            trace.push(step());
        }
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// A zone cut to ask: the zone and its servers.
struct Cut {
    zone: Name,
    servers: Vec<ServerAddress>,
}

/// The recursive resolver of one node.
pub struct Resolver {
    catalog: Arc<Catalog>,
    config: ResolverConfig,
    upstream: Arc<dyn Upstream>,
    cache: ResolverCache,
    servers: ServerSelector,
    /// Resolutions in flight, so concurrent misses for one name share one walk.
    in_flight: moka::future::Cache<Name, Answer>,
    /// Questions to a zone's servers in flight, by (zone, the branch one label below it that
    /// the name asked lies in), so concurrent walks under one cut share the walk to it.
    questions: moka::future::Cache<(Name, Name), Answer>,
    /// Upstream queries that failed, indexed as `FailureKind::LABELS`.
    upstream_failures: [std::sync::atomic::AtomicU64; FailureKind::LABELS.len()],
}

/// How this node knew what a trace step records.
#[derive(Debug, Clone, Copy)]
struct Provenance {
    cached: bool,
    authoritative: bool,
}

fn micros(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX)
}

impl Resolver {
    pub fn new(
        catalog: Arc<Catalog>,
        config: ResolverConfig,
        upstream: Arc<dyn Upstream>,
        clock: Arc<dyn Clock>,
    ) -> Resolver {
        Resolver {
            cache: ResolverCache::new(&config.cache, Arc::clone(&clock)),
            servers: ServerSelector::new(clock),
            in_flight: moka::future::Cache::builder().max_capacity(100_000).build(),
            // A question outlives its walk only if the walk was dropped between its answer
            // and its removal; the time bound keeps such an answer from being reused later.
            questions: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.max_time)
                .build(),
            catalog,
            config,
            upstream,
            upstream_failures: Default::default(),
        }
    }

    /// Upstream queries that failed so far, by reason (`unreachable`, `timeout`, ...).
    pub fn upstream_failures(&self) -> Vec<(&'static str, u64)> {
        FailureKind::LABELS
            .iter()
            .zip(&self.upstream_failures)
            .map(|(reason, count)| (*reason, count.load(std::sync::atomic::Ordering::Relaxed)))
            .collect()
    }

    /// Zone cuts in the delegation cache (at most `limit`), with whether each is fresh.
    pub fn cached_delegations(&self, limit: usize) -> Vec<(Arc<Delegation>, bool)> {
        self.cache.delegations(limit)
    }

    pub async fn cache_stats(&self) -> Vec<LevelStats> {
        self.cache.stats().await
    }

    pub fn servers(&self) -> &ServerSelector {
        &self.servers
    }

    fn node_id(&self) -> &Arc<str> {
        self.catalog.node_id()
    }

    /// A trace step taken by this node itself (its own zones, its caches, its root hints).
    fn own_step(
        &self,
        zone: Name,
        outcome: &'static str,
        started: Instant,
        provenance: Provenance,
        error: Option<String>,
    ) -> TraceStep {
        TraceStep {
            server: self.node_id().to_string(),
            zone,
            outcome: Some(outcome),
            latency_us: micros(started),
            cached: provenance.cached,
            authoritative: provenance.authoritative,
            error,
        }
    }

    /// A new resolution's state: the caller's deadline, capped by our own time limit.
    fn walk(&self, options: ResolveOptions) -> Walk {
        let cap = Instant::now() + self.config.max_time;
        Walk {
            deadline: options.deadline.map_or(cap, |d| d.min(cap)),
            queries: 0,
            trace: options.trace.then(Vec::new),
        }
    }

    /// Finds the servers of `zone`: this node, or the NS set of the delegation that leads to
    /// it, walking the tree (through the caches) as a resolution of the apex name does.
    pub async fn locate_zone(
        &self,
        zone: &Name,
        options: ResolveOptions,
    ) -> Result<ZoneAuthority, ResolveError> {
        if self.catalog.zone(zone).is_ok() {
            return Ok(ZoneAuthority::Local);
        }
        if zone.is_root() && !self.config.roots.is_empty() {
            return Ok(ZoneAuthority::Servers(self.config.roots.clone()));
        }
        let mut walk = self.walk(ResolveOptions {
            trace: false,
            ..options
        });
        let answer = self.resolve_name(zone, &mut walk).await?;
        if answer.zone != *zone {
            return Err(match answer.outcome {
                Outcome::NxDomain => ResolveError::NoSuchZone {
                    name: zone.clone(),
                    zone: answer.zone,
                },
                _ => ResolveError::NotAZone {
                    name: zone.clone(),
                    zone: answer.zone,
                },
            });
        }
        // The delegation into the zone is in one of this node's zones, or the walk that
        // reached the zone cached it.
        if let Ok(Answer {
            outcome: Outcome::Referral(delegation),
            ..
        }) = self.catalog.lookup(zone)
            && delegation.zone == *zone
        {
            return Ok(ZoneAuthority::Servers(delegation.servers.clone()));
        }
        match self.cache.closest_delegation(zone, None).await {
            Some(delegation) if delegation.zone == *zone => {
                Ok(ZoneAuthority::Servers(delegation.servers.clone()))
            }
            _ => Err(ResolveError::Unavailable {
                zone: zone.clone(),
                failures: vec!["the delegation into the zone is no longer cached".into()],
            }),
        }
    }

    /// Drops cached answers for `name` (an update on this node changed it).
    pub async fn invalidate(&self, name: &Name) {
        self.cache.invalidate(name).await;
    }

    /// Resolves `name` to its final answer, chasing aliases across zones.
    pub async fn resolve(
        &self,
        name: &Name,
        options: ResolveOptions,
    ) -> Result<Answer, ResolveError> {
        let mut walk = self.walk(options);
        let mut chain: Vec<Arc<Alias>> = Vec::new();
        // Every name on the chain after `name` so far; meeting one again, or `name`, is a
        // loop. Empty (no allocation) for the usual answer without aliases.
        let mut seen: Vec<Name> = Vec::new();
        let mut current = name.clone();
        let mut ttl = u32::MAX;
        let mut stale = false;
        loop {
            let mut answer = self.resolve_name(&current, &mut walk).await?;
            ttl = ttl.min(answer.ttl);
            stale |= answer.stale;
            for alias in &answer.aliases {
                if alias.target == *name || seen.contains(&alias.target) {
                    let mut shown = vec![name.clone()];
                    shown.extend(seen.iter().cloned());
                    shown.push(alias.target.clone());
                    return Err(ResolveError::AliasLoop { chain: shown });
                }
                seen.push(alias.target.clone());
            }
            chain.append(&mut answer.aliases);
            if chain.len() > ALIAS_CHAIN_MAX {
                return Err(ResolveError::AliasChainTooLong { name: name.clone() });
            }
            match &answer.outcome {
                Outcome::Alias { target } => current = target.clone(),
                _ => {
                    answer.name = name.clone();
                    answer.aliases = chain;
                    answer.ttl = ttl;
                    answer.stale = stale;
                    answer.served_by = Arc::clone(self.node_id());
                    answer.recursion_available = true;
                    answer.trace = walk.trace.unwrap_or_default();
                    return Ok(answer);
                }
            }
        }
    }

    /// One name, without chasing an out-of-zone alias: cache, then the tree.
    async fn resolve_name(&self, name: &Name, walk: &mut Walk) -> Result<Answer, ResolveError> {
        let started = Instant::now();
        // This node's own final answer needs none of the machinery below (the caches, the
        // table of walks in flight, the deadline timer): it is what the walk would start
        // from and return. A referral, a cut inside our own zone, goes on through them.
        if let Some(answer) = self.catalog.answer(name)
            && !matches!(answer.outcome, Outcome::Referral(_))
        {
            walk.step(|| {
                self.own_step(
                    answer.zone.clone(),
                    answer.outcome.word(),
                    started,
                    Provenance {
                        cached: false,
                        authoritative: true,
                    },
                    None,
                )
            });
            return Ok(answer);
        }
        if let Some(answer) = self.cache.fresh_answer(name).await {
            walk.step(|| {
                self.own_step(
                    answer.zone.clone(),
                    answer.outcome.word(),
                    started,
                    Provenance {
                        cached: true,
                        authoritative: false,
                    },
                    None,
                )
            });
            return Ok(answer);
        }
        let result = if walk.trace.is_some() {
            // A traced resolution walks on its own so its trace is its own.
            Box::pin(self.walk_tree(name, walk)).await
        } else {
            let deadline = walk.deadline;
            // With a stale answer to fall back on, give up on the walk a little before the
            // caller does, so the stale answer reaches the caller in time (RFC 8767's client
            // response timer).
            let answer_by = if self.cache.has_stale_answer(name).await {
                deadline
                    .checked_sub(STALE_ANSWER_MARGIN)
                    .unwrap_or(deadline)
                    .max(started)
            } else {
                deadline
            };
            let shared = self.in_flight.try_get_with(name.clone(), async {
                let mut own = Walk {
                    deadline,
                    queries: 0,
                    trace: None,
                };
                // Boxed: a walk's state (two tables of questions in flight, the servers'
                // attempts) is tens of kilobytes, and inline it would make every request's
                // future that large, answered from the cache or not (each request's future is
                // moved into a box by tonic: bench/instructions.sh counted the copy).
                Box::pin(self.walk_tree(name, &mut own)).await
            });
            let result = match tokio::time::timeout_at(answer_by, shared).await {
                Ok(result) => result.map_err(|error| ResolveError::clone(&error)),
                Err(_) => Err(ResolveError::DeadlineExceeded { name: name.clone() }),
            };
            self.in_flight.invalidate(name).await;
            result
        };
        match result {
            Err(ResolveError::Unavailable { .. } | ResolveError::DeadlineExceeded { .. }) => {
                let Some(mut answer) = self.cache.stale_answer(name).await else {
                    return result;
                };
                answer.ttl = self.config.stale_ttl;
                walk.step(|| {
                    self.own_step(
                        answer.zone.clone(),
                        answer.outcome.word(),
                        started,
                        Provenance {
                            cached: true,
                            authoritative: false,
                        },
                        Some("every server failed; serving a stale answer".to_string()),
                    )
                });
                Ok(answer)
            }
            other => other,
        }
    }

    /// Where to start: this node's own authority, the closest fresh cached cut, or the root
    /// hints. Returns the answer itself when this node is authoritative for it.
    async fn start(
        &self,
        name: &Name,
        walk: &mut Walk,
    ) -> Result<Result<Answer, Cut>, ResolveError> {
        let started = Instant::now();
        if let Some(answer) = self.catalog.answer(name) {
            walk.step(|| {
                self.own_step(
                    answer.zone.clone(),
                    answer.outcome.word(),
                    started,
                    Provenance {
                        cached: false,
                        authoritative: true,
                    },
                    None,
                )
            });
            let answer = self.alias_into_child(answer).await;
            return Ok(match answer.outcome {
                Outcome::Referral(delegation) => {
                    // A cut inside our own zone, unless a cached one below it is closer.
                    let below = self
                        .cache
                        .closest_delegation(name, Some(&delegation.zone))
                        .await;
                    if let Some(cached) = &below {
                        walk.step(|| {
                            self.own_step(
                                cached.zone.clone(),
                                "referral",
                                started,
                                Provenance {
                                    cached: true,
                                    authoritative: false,
                                },
                                None,
                            )
                        });
                    }
                    let cut = below.unwrap_or(delegation);
                    Err(Cut {
                        zone: cut.zone.clone(),
                        servers: cut.servers.clone(),
                    })
                }
                _ => Ok(answer),
            });
        }
        if let Some(delegation) = self.cache.closest_delegation(name, None).await {
            walk.step(|| {
                self.own_step(
                    delegation.zone.clone(),
                    "referral",
                    started,
                    Provenance {
                        cached: true,
                        authoritative: false,
                    },
                    None,
                )
            });
            return Ok(Err(Cut {
                zone: delegation.zone.clone(),
                servers: delegation.servers.clone(),
            }));
        }
        if self.config.roots.is_empty() {
            return Err(ResolveError::NoRoots { name: name.clone() });
        }
        walk.step(|| {
            self.own_step(
                Name::root(),
                "referral",
                started,
                Provenance {
                    cached: false,
                    authoritative: false,
                },
                None,
            )
        });
        Ok(Err(Cut {
            zone: Name::root(),
            servers: self.config.roots.clone(),
        }))
    }

    /// A referral reached through an in-zone alias is about the alias target, not the name
    /// asked: cache the cut and hand the target back to be chased like any alias.
    async fn alias_into_child(&self, mut answer: Answer) -> Answer {
        if let (Outcome::Referral(delegation), Some(last)) =
            (&answer.outcome, answer.aliases.last())
        {
            let target = last.target.clone();
            self.cache
                .put_delegation(Arc::clone(delegation), answer.ttl)
                .await;
            answer.outcome = Outcome::Alias { target };
        }
        answer
    }

    /// Follows referrals from the starting cut down to a final answer for `name`.
    async fn walk_tree(&self, name: &Name, walk: &mut Walk) -> Result<Answer, ResolveError> {
        let mut cut = match self.start(name, walk).await? {
            Ok(answer) => return Ok(answer),
            Err(cut) => cut,
        };
        for _ in 0..=self.config.max_referrals {
            let answer = self.ask_zone(&cut, name, walk).await?;
            let answer = self.alias_into_child(answer).await;
            match &answer.outcome {
                Outcome::Referral(delegation) => {
                    self.cache
                        .put_delegation(Arc::clone(delegation), answer.ttl)
                        .await;
                    cut = Cut {
                        zone: delegation.zone.clone(),
                        servers: delegation.servers.clone(),
                    };
                }
                _ => {
                    self.cache.put_answer(&answer).await;
                    return Ok(answer);
                }
            }
        }
        Err(ResolveError::TooManyReferrals {
            name: name.clone(),
            limit: self.config.max_referrals,
        })
    }

    /// Asks the servers of `cut` about `name`, or waits for the same question another walk is
    /// asking: one whose name lies under the same branch one label below the cut. Its answer
    /// serves this walk too when it is a referral to a zone this name lies in (what a zone's
    /// servers say about a cut does not depend on the name asked); anything else (a final
    /// answer about the other name, a failure, a referral elsewhere) and this walk asks for
    /// itself. A traced walk always asks for itself, so its trace is its own.
    async fn ask_zone(
        &self,
        cut: &Cut,
        name: &Name,
        walk: &mut Walk,
    ) -> Result<Answer, ResolveError> {
        let branch = match name.branch_below(&cut.zone) {
            Some(branch) if walk.trace.is_none() => branch,
            _ => return self.query_zone(cut, name, walk).await,
        };
        let key = (cut.zone.clone(), branch);
        let mut asked_here = false;
        // No deadline of its own: every walk runs under its caller's deadline already
        // (`resolve_name`), which also bounds the wait for another walk's question.
        let result = self
            .questions
            .try_get_with(key.clone(), async {
                asked_here = true;
                self.query_zone(cut, name, walk).await
            })
            .await;
        if asked_here {
            // The cut learnt is cached before the question is cleared, so a walk starting in
            // between finds one or the other.
            if let Ok(answer) = &result
                && let Outcome::Referral(delegation) = &answer.outcome
                && answer.aliases.is_empty()
            {
                self.cache
                    .put_delegation(Arc::clone(delegation), answer.ttl)
                    .await;
            }
            self.questions.invalidate(&key).await;
            return result.map_err(|error| ResolveError::clone(&error));
        }
        match result {
            Ok(answer) if referral_serves(&answer, cut, name) => Ok(answer),
            _ => self.query_zone(cut, name, walk).await,
        }
    }

    /// Asks the servers of one zone, best first, until one gives a usable answer. Each
    /// attempt has its server's adaptive timeout ([`ServerSelector::attempt_timeout`]): when
    /// it passes without an answer, the next server is asked too (a hedge) and the first good
    /// answer wins; the slow attempt keeps running up to `attempt_timeout` in case it is the
    /// one that answers. A failed attempt moves on to the next server at once.
    async fn query_zone(
        &self,
        cut: &Cut,
        name: &Name,
        walk: &mut Walk,
    ) -> Result<Answer, ResolveError> {
        let mut failures = Vec::new();
        let mut order = self.servers.order(&cut.servers).into_iter();
        let mut attempts = FuturesUnordered::new();
        // Servers asked and not yet heard from, with their hedge delay, by URL.
        let mut waiting: Vec<(String, Duration, Instant)> = Vec::new();
        // When to ask the next server although the last one asked has not answered.
        let mut hedge_at: Option<Instant> = None;
        let mut launch_next = true;
        let mut last_asked: Option<String> = None;
        loop {
            if std::mem::take(&mut launch_next) {
                hedge_at = None;
                if let Some(server) = order.next() {
                    if walk.queries >= self.config.max_queries {
                        return Err(ResolveError::TooManyQueries {
                            name: name.clone(),
                            limit: self.config.max_queries,
                        });
                    }
                    let remaining = walk.remaining();
                    if remaining.is_zero() {
                        return Err(ResolveError::DeadlineExceeded { name: name.clone() });
                    }
                    walk.queries += 1;
                    let hedge_after = self.servers.attempt_timeout(
                        &server.grpc,
                        self.config.attempt_timeout_floor,
                        self.config.attempt_timeout,
                    );
                    let started = Instant::now();
                    hedge_at = Some(started + hedge_after);
                    waiting.push((server.grpc.clone(), hedge_after, started));
                    last_asked = Some(server.grpc.clone());
                    let timeout = remaining.min(self.config.attempt_timeout);
                    let upstream = Arc::clone(&self.upstream);
                    attempts.push(async move {
                        let result = upstream
                            .query(&server, name, timeout)
                            .await
                            .and_then(|answer| check_answer(&server, cut, name, answer));
                        (server, started, result)
                    });
                }
            }
            if attempts.is_empty() {
                break;
            }
            let hedge = async {
                match hedge_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => futures::future::pending().await,
                }
            };
            let (server, started, result) = tokio::select! {
                Some(done) = attempts.next() => done,
                () = hedge => {
                    launch_next = true;
                    continue;
                }
            };
            waiting.retain(|(url, ..)| *url != server.grpc);
            match result {
                Ok(answer) => {
                    self.servers.record_success(&server.grpc, started.elapsed());
                    // Servers overtaken by a hedge were slower than their attempt timeout:
                    // penalised and held off like a timeout, so the next query skips them.
                    for (url, hedge_after, asked) in &waiting {
                        self.upstream_failures[FailureKind::Timeout(*hedge_after).index()]
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        self.servers.record_failure(url);
                        walk.step(|| TraceStep {
                            server: url.clone(),
                            zone: cut.zone.clone(),
                            outcome: None,
                            latency_us: micros(*asked),
                            cached: false,
                            authoritative: false,
                            error: Some(format!(
                                "no answer within its attempt timeout of {} ms; another server answered first",
                                hedge_after.as_millis()
                            )),
                        });
                    }
                    walk.step(|| TraceStep {
                        server: answer.served_by.to_string(),
                        zone: answer.zone.clone(),
                        outcome: Some(answer.outcome.word()),
                        latency_us: micros(started),
                        cached: false,
                        authoritative: answer.authoritative,
                        error: None,
                    });
                    return Ok(answer);
                }
                Err(error) => {
                    tracing::debug!(zone = %cut.zone, %error, "upstream query failed; trying the next server");
                    self.upstream_failures[error.kind.index()]
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.servers.record_failure(&server.grpc);
                    walk.step(|| TraceStep {
                        server: server.grpc.clone(),
                        zone: cut.zone.clone(),
                        outcome: None,
                        latency_us: micros(started),
                        cached: false,
                        authoritative: false,
                        error: Some(error.to_string()),
                    });
                    failures.push(error.to_string());
                    // The newest attempt failed: the next server now. An older one that
                    // failed while a hedge runs: the hedge keeps its own timer.
                    launch_next = last_asked.as_deref() == Some(server.grpc.as_str());
                }
            }
        }
        if walk.remaining().is_zero() {
            return Err(ResolveError::DeadlineExceeded { name: name.clone() });
        }
        Err(ResolveError::Unavailable {
            zone: cut.zone.clone(),
            failures,
        })
    }
}

/// An answer from the servers of `cut` about `name` must be about that name, from a zone
/// at or below the cut, and a referral must lead strictly downwards towards the name:
/// anything else is a lame or looping server, and the next one is tried.
fn check_answer(
    server: &ServerAddress,
    cut: &Cut,
    name: &Name,
    answer: Answer,
) -> Result<Answer, UpstreamError> {
    let bad = |reason: String| PeerFailure::new(&server.grpc, FailureKind::BadAnswer, reason);
    if answer.name != *name {
        return Err(bad(format!(
            "answered for {} instead of {name}",
            answer.name
        )));
    }
    if !answer.zone.is_at_or_below(&cut.zone) || !name.is_at_or_below(&answer.zone) {
        return Err(bad(format!(
            "answered from zone {}, which is not between {} and {name} (a lame delegation or a delegation loop)",
            answer.zone, cut.zone
        )));
    }
    if let Outcome::Referral(delegation) = &answer.outcome {
        // Through an alias, the referral is about the alias target.
        let towards = answer.aliases.last().map_or(name, |alias| &alias.target);
        check_referral(delegation, cut, towards).map_err(bad)?;
    }
    Ok(answer)
}

/// True when `answer`, got for another name from the servers of `cut`, is a referral that
/// leads from the cut towards `name` (and not through an alias, which is about its target).
fn referral_serves(answer: &Answer, cut: &Cut, name: &Name) -> bool {
    match &answer.outcome {
        Outcome::Referral(delegation) => {
            answer.aliases.is_empty() && check_referral(delegation, cut, name).is_ok()
        }
        _ => false,
    }
}

fn check_referral(delegation: &Delegation, cut: &Cut, name: &Name) -> Result<(), String> {
    if !delegation.zone.is_strictly_below(&cut.zone) || !name.is_at_or_below(&delegation.zone) {
        return Err(format!(
            "referral to {} does not lead from {} towards {name} (a lame delegation or a delegation loop)",
            delegation.zone, cut.zone
        ));
    }
    Ok(())
}
