//! The load generator behind `aop bench resolve`: a fixed number of requests in flight over a
//! fixed number of HTTP/2 connections for a fixed time, latencies in an HDR histogram.
//!
//! Each worker keeps its own histogram and counters (no shared lock on the hot path); they
//! are merged at the end. Connections are opened before the clock starts, so the figures are
//! about serving, not about connecting.
//!
//! Names are taken in turn, or by a Zipf law over their order in the file (the first name the
//! most popular), which is how real lookups spread; the node's cache statistics before and
//! after give the hit ratio of the run. The cold mode measures what a cache miss costs: each
//! lookup runs in a fresh in-process resolver with empty caches, from the root hints down
//! (connections to the nodes stay warm, as they would in a long-running resolver).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Zipf};

use crate::catalog::Catalog;
use crate::grpc::GrpcPeers;
use crate::grpc::client::{ClientError, NodeClient, connect, connect_with};
use crate::grpc::pb;
use crate::name::Name;
use crate::record::ServerAddress;
use crate::resolver::{ResolveOptions, Resolver, ResolverConfig};
use crate::tls::ClientTls;

pub mod auth;
pub mod call;
pub mod register;
pub mod search;

pub use call::{CallBench, CallReport, run_call};
pub use search::{Churn, ChurnReport, SearchBench, SearchReport, run_search};

/// A client of `url`, with `tls` for `https://` when given.
pub(crate) async fn connect_to(
    url: &str,
    tls: &Option<std::sync::Arc<ClientTls>>,
) -> Result<NodeClient, ClientError> {
    match tls {
        Some(tls) => connect_with(url, tls).await,
        None => connect(url).await,
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error(transparent)]
    Connect(#[from] ClientError),
    #[error("no names to query: the names file is empty")]
    NoNames,
    #[error("--{flag} must be at least 1")]
    Zero { flag: &'static str },
    #[error("--zipf exponent {0} must be a positive number")]
    BadZipf(f64),
    #[error("invalid root URL: {0}")]
    BadRoot(String),
    #[error("{url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("--churn registers agents into --zone: name the zone to search and change")]
    ChurnWithoutZone,
    #[error("--churn {got} changes per second is out of range: 1 to {max}")]
    ChurnRate { got: u32, max: u32 },
}

/// How the names of the file are chosen.
#[derive(Debug, Clone, Copy)]
pub enum NamePick {
    /// Each worker walks through the names in turn.
    InTurn,
    /// Zipf-distributed ranks with this exponent (the first name the most popular).
    Zipf(f64),
}

/// What is loaded.
#[derive(Debug, Clone)]
pub enum Target {
    /// A node's Resolve over gRPC.
    Server,
    /// A fresh in-process resolver per lookup, recursing from these root hints.
    Cold { root: String },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ResolveBench {
    pub server: String,
    /// What `https://` connections trust and present (default: the system roots).
    pub tls: Option<std::sync::Arc<ClientTls>>,
    pub names: Vec<String>,
    pub concurrency: usize,
    pub connections: usize,
    pub duration: Duration,
    /// Stop after this many requests (sent), if the duration has not run out first: a fixed
    /// amount of work, to count what the server spends per request (`bench/instructions.sh`).
    pub requests: Option<u64>,
    pub recursive: bool,
    pub pick: NamePick,
    pub target: Target,
    /// Seed of the Zipf draws (each worker derives its own), printed so a run can be repeated.
    pub seed: u64,
    /// Show a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
}

/// What it measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub requests: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub throughput_per_s: f64,
    pub concurrency: usize,
    pub connections: usize,
    pub latency_us: Percentiles,
    /// Answers by outcome (`answer`, `nxdomain`, ...).
    pub outcomes: BTreeMap<String, u64>,
    /// The first few distinct error messages.
    pub error_samples: Vec<String>,
    /// Hits / lookups of the node's answer caches (positive and negative) during the run,
    /// when the node reports cache statistics.
    pub cache_hit_ratio: Option<f64>,
    pub seed: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub(crate) fn of(histogram: &Histogram<u64>) -> Percentiles {
        Percentiles {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

struct WorkerResult {
    histogram: Histogram<u64>,
    errors: u64,
    outcomes: BTreeMap<i32, u64>,
    error_samples: Vec<String>,
}

const MAX_ERROR_SAMPLES: usize = 5;

#[expect(
    clippy::expect_used,
    reason = "the bounds are constants that hdrhistogram accepts"
)]
pub(crate) fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

/// Runs the resolve benchmark.
pub async fn run_resolve(bench: ResolveBench) -> Result<BenchReport, BenchError> {
    if bench.names.is_empty() {
        return Err(BenchError::NoNames);
    }
    if bench.concurrency == 0 {
        return Err(BenchError::Zero {
            flag: "concurrency",
        });
    }
    if bench.connections == 0 {
        return Err(BenchError::Zero {
            flag: "connections",
        });
    }
    if bench.requests == Some(0) {
        return Err(BenchError::Zero { flag: "requests" });
    }
    let mut clients = Vec::with_capacity(bench.connections);
    for _ in 0..bench.connections {
        clients.push(connect_to(&bench.server, &bench.tls).await?);
    }
    let cold_root = match &bench.target {
        Target::Server => None,
        Target::Cold { root } => {
            Some(ServerAddress::new(root, None).map_err(|e| BenchError::BadRoot(e.to_string()))?)
        }
    };
    if let NamePick::Zipf(exponent) = bench.pick
        && !(exponent.is_finite() && exponent > 0.0)
    {
        return Err(BenchError::BadZipf(exponent));
    }
    let stats_before = cache_lookups(&mut clients[0]).await;
    let names: Arc<[String]> = bench.names.into();
    let upstream = Arc::new(GrpcPeers::default());
    let completed = Arc::new(AtomicU64::new(0));
    // Requests sent so far, against `bench.requests`.
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + bench.duration;

    let progress = progress_bar(bench.progress, bench.duration);
    let ticker = {
        let progress = progress.clone();
        let completed = Arc::clone(&completed);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(200));
            loop {
                interval.tick().await;
                let elapsed = started.elapsed();
                let done = completed.load(Ordering::Relaxed);
                progress.set_position(elapsed.as_millis().min(u128::from(u64::MAX)) as u64);
                progress.set_message(format!(
                    "{done} requests, {:.0}/s",
                    done as f64 / elapsed.as_secs_f64().max(1e-3)
                ));
            }
        })
    };

    let mut workers = Vec::with_capacity(bench.concurrency);
    for worker in 0..bench.concurrency {
        let mut client = clients[worker % clients.len()].clone();
        let names = Arc::clone(&names);
        let completed = Arc::clone(&completed);
        let issued = Arc::clone(&issued);
        let limit = bench.requests;
        let upstream = Arc::clone(&upstream);
        let cold_root = cold_root.clone();
        let recursive = bench.recursive;
        let mut picker = Picker::new(bench.pick, names.len(), worker, bench.seed);
        workers.push(tokio::spawn(async move {
            let mut result = WorkerResult {
                histogram: new_histogram(),
                errors: 0,
                outcomes: BTreeMap::new(),
                error_samples: Vec::new(),
            };
            while Instant::now() < deadline {
                if limit.is_some_and(|limit| issued.fetch_add(1, Ordering::Relaxed) >= limit) {
                    break;
                }
                let name = &names[picker.next()];
                let outcome = match &cold_root {
                    None => {
                        let sent = Instant::now();
                        let response = client.resolve_unchecked(name, recursive, None).await;
                        (
                            sent,
                            response
                                .map(|r| r.outcome)
                                .map_err(|error| error.to_string()),
                        )
                    }
                    Some(root) => cold_lookup(&upstream, root, name).await,
                };
                let (sent, outcome) = outcome;
                let micros = sent.elapsed().as_micros().max(1) as u64;
                match outcome {
                    Ok(outcome) => {
                        let _ = result.histogram.record(micros.min(60_000_000));
                        *result.outcomes.entry(outcome).or_default() += 1;
                    }
                    Err(text) => {
                        result.errors += 1;
                        if result.error_samples.len() < MAX_ERROR_SAMPLES
                            && !result.error_samples.contains(&text)
                        {
                            result.error_samples.push(text);
                        }
                    }
                }
                completed.fetch_add(1, Ordering::Relaxed);
            }
            result
        }));
    }

    let mut histogram = new_histogram();
    let mut errors = 0;
    let mut outcomes = BTreeMap::new();
    let mut error_samples: Vec<String> = Vec::new();
    for worker in workers {
        let Ok(result) = worker.await else { continue };
        let _ = histogram.add(&result.histogram);
        errors += result.errors;
        for (outcome, count) in result.outcomes {
            let word = pb::Outcome::try_from(outcome)
                .map_or("unknown", |o| o.as_str_name())
                .trim_start_matches("OUTCOME_")
                .to_ascii_lowercase();
            *outcomes.entry(word).or_insert(0) += count;
        }
        for sample in result.error_samples {
            if error_samples.len() < MAX_ERROR_SAMPLES && !error_samples.contains(&sample) {
                error_samples.push(sample);
            }
        }
    }
    let elapsed = started.elapsed();
    ticker.abort();
    progress.finish_and_clear();
    let cache_hit_ratio = match (stats_before, cache_lookups(&mut clients[0]).await) {
        (Some((hits0, lookups0)), Some((hits1, lookups1))) if lookups1 > lookups0 => {
            Some((hits1 - hits0) as f64 / (lookups1 - lookups0) as f64)
        }
        _ => None,
    };
    let requests = histogram.len() + errors;
    Ok(BenchReport {
        requests,
        errors,
        elapsed_s: elapsed.as_secs_f64(),
        throughput_per_s: requests as f64 / elapsed.as_secs_f64(),
        concurrency: bench.concurrency,
        connections: bench.connections,
        latency_us: Percentiles::of(&histogram),
        outcomes,
        error_samples,
        cache_hit_ratio,
        seed: bench.seed,
    })
}

/// Picks name indices in turn or by Zipf rank.
struct Picker {
    next_in_turn: usize,
    len: usize,
    zipf: Option<(Zipf<f64>, SmallRng)>,
}

impl Picker {
    fn new(pick: NamePick, len: usize, worker: usize, seed: u64) -> Picker {
        let zipf = match pick {
            NamePick::InTurn => None,
            NamePick::Zipf(exponent) => Zipf::new(len as f64, exponent).ok().map(|zipf| {
                (
                    zipf,
                    SmallRng::seed_from_u64(seed.wrapping_add(worker as u64)),
                )
            }),
        };
        Picker {
            // Workers start at different offsets so the whole set is covered.
            next_in_turn: worker.wrapping_mul(7919) % len,
            len,
            zipf,
        }
    }

    fn next(&mut self) -> usize {
        match &mut self.zipf {
            Some((zipf, rng)) => (zipf.sample(rng) as usize).clamp(1, self.len) - 1,
            None => {
                let index = self.next_in_turn;
                self.next_in_turn = (index + 1) % self.len;
                index
            }
        }
    }
}

/// One lookup in a brand-new resolver (empty caches), timed from the first query.
async fn cold_lookup(
    upstream: &Arc<GrpcPeers>,
    root: &ServerAddress,
    name: &str,
) -> (Instant, Result<i32, String>) {
    let config = ResolverConfig {
        roots: vec![root.clone()],
        ..ResolverConfig::default()
    };
    let resolver = Resolver::new(
        Arc::new(Catalog::new("bench", Vec::new())),
        config,
        Arc::clone(upstream) as Arc<dyn crate::resolver::Upstream>,
        crate::clock::system(),
    );
    let sent = Instant::now();
    let result = match Name::parse(name) {
        Ok(name) => resolver
            .resolve(
                &name,
                ResolveOptions {
                    deadline: None,
                    trace: false,
                },
            )
            .await
            .map(|answer| pb::ResolveResponse::from(&answer).outcome)
            .map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    (sent, result)
}

/// (hits, lookups) of the node's answer caches, if it reports them.
async fn cache_lookups(client: &mut NodeClient) -> Option<(u64, u64)> {
    let stats = client.cache_stats().await.ok()?;
    let levels = &stats.levels;
    let answers = levels.iter().find(|l| l.level == "answers")?;
    let negatives = levels.iter().find(|l| l.level == "negatives")?;
    // A miss is counted at both answer levels; count it once.
    let hits = answers.hits + negatives.hits;
    Some((hits, hits + answers.misses))
}

pub(crate) fn progress_bar(enabled: bool, duration: Duration) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(duration.as_millis().min(u128::from(u64::MAX)) as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
    {
        bar.set_style(style);
    }
    bar
}
