//! `aop bench register`: durable registrations per second against a zone's primary, C in
//! flight, each one acknowledged only after the node's fsync'd commit; and, with a
//! secondary, how long each change takes to reach it (ack at the primary to the serial
//! showing in the secondary's Watch stream).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::grpc::pb;
use crate::keys::UpdateKey;

use super::{BenchError, Percentiles};

/// What to run.
pub struct RegisterBench {
    pub server: String,
    /// What `https://` connections trust and present (default: the system roots).
    pub tls: Option<std::sync::Arc<crate::tls::ClientTls>>,
    pub zone: String,
    pub key: UpdateKey,
    pub concurrency: usize,
    pub count: u64,
    /// A secondary of the zone to time convergence at.
    pub secondary: Option<String>,
    /// Distinguishes the names of one run from another's.
    pub run_id: String,
}

/// What it measured.
#[derive(Debug, Clone)]
pub struct RegisterReport {
    pub acknowledged: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub latency: Percentiles,
    /// Changes whose convergence was timed, and the times.
    pub converged: u64,
    pub convergence: Option<Percentiles>,
}

impl RegisterReport {
    pub fn per_second(&self) -> f64 {
        self.acknowledged as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    Percentiles::of(histogram)
}

pub async fn run_register(bench: RegisterBench) -> Result<RegisterReport, BenchError> {
    let unreachable = |url: &str, error: String| BenchError::Unreachable {
        url: url.to_string(),
        reason: error,
    };
    // The secondary's serials as they arrive.
    let arrivals: Arc<std::sync::Mutex<BTreeMap<u32, Instant>>> = Arc::default();
    let watcher = match &bench.secondary {
        None => None,
        Some(url) => {
            let mut client = super::connect_to(url, &bench.tls)
                .await
                .map_err(|e| unreachable(url, e.to_string()))?;
            let mut stream = client
                .watch(&bench.zone, None, false)
                .await
                .map_err(|e| unreachable(url, e.to_string()))?;
            let arrivals = Arc::clone(&arrivals);
            Some(tokio::spawn(async move {
                while let Ok(Some(event)) = stream.next().await {
                    let now = Instant::now();
                    arrivals
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(event.serial)
                        .or_insert(now);
                }
            }))
        }
    };
    let client = super::connect_to(&bench.server, &bench.tls)
        .await
        .map_err(|e| unreachable(&bench.server, e.to_string()))?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..bench.concurrency.max(1) {
        let mut client = client.clone();
        let next = Arc::clone(&next);
        let key = bench.key.clone();
        let zone = bench.zone.clone();
        let run_id = bench.run_id.clone();
        let count = bench.count;
        workers.push(tokio::spawn(async move {
            let mut latency = super::new_histogram();
            let mut acks: Vec<(u32, Instant)> = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let body = pb::RegisterRequest {
                    zone: zone.clone(),
                    name: format!("bench-{run_id}-{i}.{zone}"),
                    endpoint: Some(pb::Endpoint {
                        url: format!("http://127.0.0.1:9/mcp/{i}"),
                        tool: "bench".into(),
                        priority: 10,
                        weight: 1,
                        health: None,
                    }),
                    lease_seconds: 3600,
                    fields: None,
                };
                let sent = Instant::now();
                match client.register(body, Some(&key), None).await {
                    Ok(response) => {
                        let now = Instant::now();
                        let _ = latency.record(now.duration_since(sent).as_micros() as u64);
                        acks.push((response.serial, now));
                    }
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| error.to_string());
                    }
                }
            }
            (latency, acks, errors, first_error)
        }));
    }
    let mut latency = super::new_histogram();
    let mut acks = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for worker in workers {
        let (histogram, worker_acks, worker_errors, worker_error) =
            worker.await.map_err(|e| BenchError::Unreachable {
                url: bench.server.clone(),
                reason: e.to_string(),
            })?;
        let _ = latency.add(histogram);
        acks.extend(worker_acks);
        errors += worker_errors;
        if first_error.is_none() {
            first_error = worker_error;
        }
    }
    let elapsed = started.elapsed();
    let mut convergence = None;
    let mut converged = 0;
    if let Some(watcher) = watcher {
        let last = acks.iter().map(|(serial, _)| *serial).max().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let reached = arrivals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .range(last..)
                .next()
                .is_some();
            if reached {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        watcher.abort();
        let arrivals = arrivals.lock().unwrap_or_else(|p| p.into_inner());
        let mut histogram = super::new_histogram();
        for (serial, acked) in &acks {
            // The first event at or after this serial carries it.
            if let Some((_, seen)) = arrivals.range(*serial..).next() {
                let _ = histogram.record(seen.saturating_duration_since(*acked).as_micros() as u64);
                converged += 1;
            }
        }
        convergence = Some(percentiles(&histogram));
    }
    Ok(RegisterReport {
        acknowledged: acks.len() as u64,
        errors,
        first_error,
        elapsed,
        latency: percentiles(&latency),
        converged,
        convergence,
    })
}
