//! The load generator behind `aop bench resolve`: a fixed number of requests in flight over a
//! fixed number of HTTP/2 connections for a fixed time, latencies in an HDR histogram.
//!
//! Each worker keeps its own histogram and counters (no shared lock on the hot path); they
//! are merged at the end. Connections are opened before the clock starts, so the figures are
//! about serving, not about connecting.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::grpc::client::{ClientError, connect};
use crate::grpc::pb;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error(transparent)]
    Connect(#[from] ClientError),
    #[error("no names to query: the names file is empty")]
    NoNames,
    #[error("--{flag} must be at least 1")]
    Zero { flag: &'static str },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ResolveBench {
    pub server: String,
    pub names: Vec<String>,
    pub concurrency: usize,
    pub connections: usize,
    pub duration: Duration,
    pub recursive: bool,
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
    fn of(histogram: &Histogram<u64>) -> Percentiles {
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

fn new_histogram() -> Histogram<u64> {
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
    let mut clients = Vec::with_capacity(bench.connections);
    for _ in 0..bench.connections {
        clients.push(connect(&bench.server).await?);
    }
    let names: Arc<[String]> = bench.names.into();
    let completed = Arc::new(AtomicU64::new(0));
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
        let recursive = bench.recursive;
        workers.push(tokio::spawn(async move {
            let mut result = WorkerResult {
                histogram: new_histogram(),
                errors: 0,
                outcomes: BTreeMap::new(),
                error_samples: Vec::new(),
            };
            // Workers start at different offsets and stride through the names, so the
            // whole set is covered without a shared counter.
            let mut index = worker.wrapping_mul(7919) % names.len();
            while Instant::now() < deadline {
                let request = pb::ResolveRequest {
                    name: names[index].clone(),
                    recursive,
                    trace: false,
                };
                index = (index + 1) % names.len();
                let sent = Instant::now();
                let response = client.resolve(request).await;
                let micros = sent.elapsed().as_micros().max(1) as u64;
                match response {
                    Ok(response) => {
                        let _ = result.histogram.record(micros.min(60_000_000));
                        *result
                            .outcomes
                            .entry(response.get_ref().outcome)
                            .or_default() += 1;
                    }
                    Err(status) => {
                        result.errors += 1;
                        let text = format!("{:?}: {}", status.code(), status.message());
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
    })
}

fn progress_bar(enabled: bool, duration: Duration) -> indicatif::ProgressBar {
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
