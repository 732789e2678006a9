//! `aop bench search`: Search requests from a file of queries, C in flight over K HTTP/2
//! connections for a fixed time, latencies in an HDR histogram.
//!
//! Queries are taken in turn (each worker starting at its own offset). The report counts
//! partial answers apart from errors: a partial answer is an answer, but a benchmark that
//! produced many of them measured deadlines, not search.
//!
//! With [`Churn`], one more task registers and deregisters agents in the searched zone at a
//! steady rate for the whole run (signed with the zone's update key), so the figures show
//! what search costs while the zone changes under it: each change publishes a new serial
//! that the next search's index must follow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::bench::{BenchError, Percentiles, new_histogram, progress_bar};
use crate::grpc::client::{NodeClient, SearchCall};
use crate::grpc::pb;
use crate::keys::UpdateKey;

/// Changes made to the searched zone during the run.
#[derive(Debug, Clone)]
pub struct Churn {
    /// Changes per second: registrations of new agents and, once [`CHURN_LIVE`] of them are
    /// live, alternately the deregistration of the oldest.
    pub per_second: u32,
    pub key: UpdateKey,
    /// Distinguishes the names of one run from another's.
    pub run_id: String,
}

/// Churn agents kept live before deregistrations start.
pub const CHURN_LIVE: usize = 32;
/// The most changes per second asked for (the node acknowledges each after an fsync).
pub const CHURN_MAX: u32 = 1_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct SearchBench {
    pub server: String,
    /// What `https://` connections trust and present (default: the system roots).
    pub tls: Option<std::sync::Arc<crate::tls::ClientTls>>,
    pub queries: Vec<String>,
    /// Scope of every search (empty: the whole tree).
    pub zone: String,
    pub limit: u32,
    pub concurrency: usize,
    pub connections: usize,
    pub duration: Duration,
    /// Deadline of one search, sent as grpc-timeout.
    pub timeout: Duration,
    pub progress: bool,
    /// Registrations and deregistrations in `zone` while searching.
    pub churn: Option<Churn>,
}

/// What the churn task did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ChurnReport {
    /// Changes acknowledged (each a new serial).
    pub changes: u64,
    pub errors: u64,
    pub per_second: f64,
    pub first_error: Option<String>,
}

/// What it measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchReport {
    pub requests: u64,
    pub errors: u64,
    /// Answers marked partial (some zone did not answer in time).
    pub partial: u64,
    /// Answers with at least one hit.
    pub with_hits: u64,
    pub elapsed_s: f64,
    pub throughput_per_s: f64,
    pub concurrency: usize,
    pub connections: usize,
    pub latency_us: Percentiles,
    pub error_samples: Vec<String>,
    /// Zones searched by the first answer, to show what one search covered.
    pub zones_searched: Vec<String>,
    pub churn: Option<ChurnReport>,
}

/// Runs the search benchmark.
pub async fn run_search(bench: SearchBench) -> Result<SearchReport, BenchError> {
    if bench.queries.is_empty() {
        return Err(BenchError::NoNames);
    }
    for (flag, value) in [
        ("concurrency", bench.concurrency),
        ("connections", bench.connections),
    ] {
        if value == 0 {
            return Err(BenchError::Zero { flag });
        }
    }
    if let Some(churn) = &bench.churn {
        if bench.zone.is_empty() {
            return Err(BenchError::ChurnWithoutZone);
        }
        if !(1..=CHURN_MAX).contains(&churn.per_second) {
            return Err(BenchError::ChurnRate {
                got: churn.per_second,
                max: CHURN_MAX,
            });
        }
    }
    let mut clients = Vec::with_capacity(bench.connections);
    for _ in 0..bench.connections {
        clients.push(super::connect_to(&bench.server, &bench.tls).await?);
    }
    let request = |query: &str| SearchCall {
        query: query.to_string(),
        zone: bench.zone.clone(),
        limit: bench.limit,
        recursive: true,
        ..SearchCall::default()
    };
    // One search first: the nodes build their indexes on the first search of a serial,
    // which is not what the run measures; it also shows what one search covers.
    let first = clients[0]
        .clone()
        .search(&request(&bench.queries[0]), Some(bench.timeout))
        .await
        .map_err(|error| BenchError::Unreachable {
            url: bench.server.clone(),
            reason: error.to_string(),
        })?;
    let zones_searched = first.searched.iter().map(|s| s.zone.clone()).collect();

    let queries: Arc<[String]> = bench.queries.clone().into();
    let completed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + bench.duration;
    let progress = progress_bar(bench.progress, bench.duration);
    let churn = bench.churn.clone().map(|churn| {
        tokio::spawn(run_churn(
            clients[0].clone(),
            bench.zone.clone(),
            churn,
            deadline,
        ))
    });
    let mut workers = Vec::with_capacity(bench.concurrency);
    for worker in 0..bench.concurrency {
        let mut client = clients[worker % clients.len()].clone();
        let queries = Arc::clone(&queries);
        let completed = Arc::clone(&completed);
        let progress = progress.clone();
        let zone = bench.zone.clone();
        let (limit, timeout) = (bench.limit, bench.timeout);
        workers.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            let (mut errors, mut partial, mut with_hits) = (0u64, 0u64, 0u64);
            let mut samples: Vec<String> = Vec::new();
            // Workers start at different queries (a prime stride), then take them in turn.
            let mut next = worker.wrapping_mul(7919) % queries.len();
            while Instant::now() < deadline {
                let query = &queries[next % queries.len()];
                next += 1;
                let request = SearchCall {
                    query: query.clone(),
                    zone: zone.clone(),
                    limit,
                    recursive: true,
                    ..SearchCall::default()
                };
                let sent = Instant::now();
                match client.search(&request, Some(timeout)).await {
                    Ok(response) => {
                        let micros = sent.elapsed().as_micros().max(1) as u64;
                        let _ = histogram.record(micros.min(60_000_000));
                        partial += u64::from(response.partial);
                        with_hits += u64::from(!response.hits.is_empty());
                    }
                    Err(error) => {
                        errors += 1;
                        let text = error.to_string();
                        if samples.len() < 5 && !samples.contains(&text) {
                            samples.push(text);
                        }
                    }
                }
                let done = completed.fetch_add(1, Ordering::Relaxed) + 1;
                if worker == 0 && done.is_multiple_of(64) {
                    let elapsed = started.elapsed();
                    progress.set_position(elapsed.as_millis().min(u128::from(u64::MAX)) as u64);
                    progress.set_message(format!(
                        "{done} searches, {:.0}/s",
                        done as f64 / elapsed.as_secs_f64().max(1e-3)
                    ));
                }
            }
            (histogram, errors, partial, with_hits, samples)
        }));
    }
    let mut histogram = new_histogram();
    let (mut errors, mut partial, mut with_hits) = (0u64, 0u64, 0u64);
    let mut error_samples = Vec::new();
    for worker in workers {
        let Ok((h, e, p, w, samples)) = worker.await else {
            continue;
        };
        let _ = histogram.add(&h);
        errors += e;
        partial += p;
        with_hits += w;
        for sample in samples {
            if error_samples.len() < 5 && !error_samples.contains(&sample) {
                error_samples.push(sample);
            }
        }
    }
    let elapsed = started.elapsed();
    let churn = match churn {
        Some(task) => Some(task.await.unwrap_or_else(|error| ChurnReport {
            first_error: Some(format!("the churn task failed: {error}")),
            ..ChurnReport::default()
        })),
        None => None,
    };
    progress.finish_and_clear();
    let requests = histogram.len() + errors;
    Ok(SearchReport {
        requests,
        errors,
        partial,
        with_hits,
        elapsed_s: elapsed.as_secs_f64(),
        throughput_per_s: requests as f64 / elapsed.as_secs_f64(),
        concurrency: bench.concurrency,
        connections: bench.connections,
        latency_us: Percentiles::of(&histogram),
        error_samples,
        zones_searched,
        churn,
    })
}

/// Registers and deregisters agents in `zone` at `churn.per_second` until `deadline`, one
/// change at a time (a change acknowledged late delays the next rather than bunching them).
async fn run_churn(
    mut client: NodeClient,
    zone: String,
    churn: Churn,
    deadline: Instant,
) -> ChurnReport {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / churn.per_second);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut report = ChurnReport::default();
    let mut live = std::collections::VecDeque::new();
    let mut next = 0_u64;
    let mut deregister_next = false;
    loop {
        tick.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        let outcome = if deregister_next && live.len() >= CHURN_LIVE {
            let name = live.pop_front().unwrap_or_default();
            let request = pb::DeregisterRequest {
                zone: zone.clone(),
                name,
                url: String::new(),
            };
            client
                .deregister(request, Some(&churn.key), Some(Duration::from_secs(5)))
                .await
                .map(|_| ())
        } else {
            let name = format!("churn-{}-{next}.{zone}", churn.run_id);
            next += 1;
            let request = pb::RegisterRequest {
                zone: zone.clone(),
                name: name.clone(),
                endpoint: Some(pb::Endpoint {
                    url: format!("http://127.0.0.1:9/mcp/churn/{next}"),
                    tool: "churn".into(),
                    priority: 10,
                    weight: 1,
                    health: None,
                }),
                lease_seconds: 600,
                fields: Some(pb::AgentFields {
                    description: Some(format!(
                        "Churn agent {next}: forecasts invoices, reconciles payments and answers tickets"
                    )),
                    tags: Some(pb::Labels {
                        items: vec!["churn".into()],
                    }),
                    ..pb::AgentFields::default()
                }),
            };
            let sent = client
                .register(request, Some(&churn.key), Some(Duration::from_secs(5)))
                .await;
            if sent.is_ok() {
                live.push_back(name);
            }
            sent.map(|_| ())
        };
        deregister_next = !deregister_next;
        match outcome {
            Ok(()) => report.changes += 1,
            Err(error) => {
                report.errors += 1;
                report.first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
    report.per_second = report.changes as f64 / started.elapsed().as_secs_f64().max(1e-9);
    report
}
