//! The load generator behind `aop bench call`: MCP tool calls against any Streamable HTTP
//! MCP server (our gateway, an agent directly, a Python AOP server), C in flight over K
//! sessions, for N calls or for a time, latencies in an HDR histogram.
//!
//! Sessions are opened before the clock starts. A call counts as an error when it fails at
//! the protocol level, when its result has `isError`, or when its structured result (or the
//! JSON in its first text block, as Python AOP servers answer) says `"success": false`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Map, Value};

use crate::bench::{Percentiles, new_histogram, progress_bar};
use crate::mcp::client::McpClient;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallBenchError {
    #[error("--{flag} must be at least 1")]
    Zero { flag: &'static str },
    #[error("cannot open an MCP session with {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot make an HTTP client: {0}")]
    Client(String),
}

/// What to call and how hard.
#[derive(Debug, Clone)]
pub struct CallBench {
    pub url: String,
    pub tool: String,
    pub arguments: Map<String, Value>,
    pub concurrency: usize,
    pub sessions: usize,
    /// Stop after this many calls; `None`: run for `duration`.
    pub calls: Option<u64>,
    pub duration: Duration,
    pub timeout: Duration,
    pub progress: bool,
    /// What an `https://` gateway is verified against (none: the system roots).
    pub tls: Option<std::sync::Arc<crate::tls::ClientTls>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CallReport {
    pub url: String,
    pub tool: String,
    pub calls: u64,
    pub errors: u64,
    /// Wall time from the first call sent to the last answer.
    pub elapsed_s: f64,
    pub throughput_per_s: f64,
    pub concurrency: usize,
    pub sessions: usize,
    pub latency_us: Percentiles,
    pub error_samples: Vec<String>,
}

struct Worker {
    histogram: Histogram<u64>,
    errors: u64,
    samples: Vec<String>,
}

pub async fn run_call(bench: CallBench) -> Result<CallReport, CallBenchError> {
    if bench.concurrency == 0 {
        return Err(CallBenchError::Zero {
            flag: "concurrency",
        });
    }
    if bench.sessions == 0 {
        return Err(CallBenchError::Zero { flag: "sessions" });
    }
    let builder = reqwest::Client::builder()
        .pool_max_idle_per_host(bench.concurrency)
        .tcp_nodelay(true);
    // https:// gateways: the system roots plus --ca (reqwest's own default TLS would need a
    // process-wide crypto provider).
    let config = crate::tls::ClientTls::http_config_or_system(bench.tls.as_deref())
        .map_err(|error| CallBenchError::Client(error.to_string()))?;
    let builder = builder.tls_backend_preconfigured(config);
    let http = builder
        .build()
        .map_err(|error| CallBenchError::Client(crate::peer::error_chain(&error)))?;
    let mut sessions = Vec::with_capacity(bench.sessions);
    for _ in 0..bench.sessions {
        let session = McpClient::connect(&bench.url, &http, "aop-bench")
            .await
            .map_err(|reason| CallBenchError::Connect {
                url: bench.url.clone(),
                reason,
            })?;
        sessions.push(Arc::new(session));
    }
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let stop_at = started + bench.duration;
    let bar = progress_bar(bench.progress, bench.duration);
    let mut workers = Vec::with_capacity(bench.concurrency);
    for index in 0..bench.concurrency {
        let session = Arc::clone(&sessions[index % sessions.len()]);
        let issued = Arc::clone(&issued);
        let done = Arc::clone(&done);
        let bench = bench.clone();
        workers.push(tokio::spawn(async move {
            let mut worker = Worker {
                histogram: new_histogram(),
                errors: 0,
                samples: Vec::new(),
            };
            loop {
                match bench.calls {
                    Some(limit) => {
                        if issued.fetch_add(1, Ordering::Relaxed) >= limit {
                            break;
                        }
                    }
                    None => {
                        if Instant::now() >= stop_at {
                            break;
                        }
                    }
                }
                let sent = Instant::now();
                let outcome = tokio::time::timeout(
                    bench.timeout,
                    session.call(&bench.tool, bench.arguments.clone()),
                )
                .await;
                let micros = sent.elapsed().as_micros().clamp(1, 60_000_000) as u64;
                let _ = worker.histogram.record(micros);
                let failure = match outcome {
                    Err(_) => Some(format!("no answer within {} ms", bench.timeout.as_millis())),
                    Ok(Err(error)) => Some(error),
                    Ok(Ok(answer)) => answer.failure(),
                };
                if let Some(message) = failure {
                    worker.errors += 1;
                    if worker.samples.len() < 3 && !worker.samples.contains(&message) {
                        worker.samples.push(message);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            worker
        }));
    }
    let ticker = {
        let bar = bar.clone();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                bar.set_position(started.elapsed().as_millis() as u64);
                bar.set_message(format!("{} calls", done.load(Ordering::Relaxed)));
            }
        })
    };
    let mut histogram = new_histogram();
    let mut errors = 0;
    let mut error_samples: Vec<String> = Vec::new();
    for worker in workers {
        let Ok(worker) = worker.await else {
            errors += 1;
            continue;
        };
        let _ = histogram.add(&worker.histogram);
        errors += worker.errors;
        for sample in worker.samples {
            if error_samples.len() < 5 && !error_samples.contains(&sample) {
                error_samples.push(sample);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    ticker.abort();
    bar.finish_and_clear();
    for session in sessions {
        session.close();
    }
    let calls = histogram.len();
    Ok(CallReport {
        url: bench.url,
        tool: bench.tool,
        calls,
        errors,
        elapsed_s: elapsed,
        throughput_per_s: calls as f64 / elapsed.max(1e-9),
        concurrency: bench.concurrency,
        sessions: bench.sessions,
        latency_us: Percentiles::of(&histogram),
        error_samples,
    })
}
