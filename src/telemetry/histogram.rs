//! Fixed-bucket latency histograms, in the shape Prometheus exposes them.
//!
//! Hand-rolled on atomics rather than built on `prometheus-client` or `hdrhistogram`:
//! Prometheus histograms are cumulative counts over fixed bounds, which `hdrhistogram` (the
//! crate the benches use for percentiles) is not, and one `fetch_add` per bucket is all a
//! concurrent door needs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds (50 µs to 10 s).
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];

/// A latency histogram: a count per bucket (not cumulative; the exposition adds them up)
/// and the sum of every observation.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations at or below it), cumulative, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // The first bound at or above the value: Prometheus buckets are `le`.
        let index = LATENCY_BOUNDS_US.partition_point(|&bound| bound < us);
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BOUNDS_US.len());
        for (bound, count) in LATENCY_BOUNDS_US.iter().zip(&self.counts) {
            running += count.load(Ordering::Relaxed);
            buckets.push((*bound as f64 / 1e6, running));
        }
        running += self.counts[LATENCY_BOUNDS_US.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count: running,
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(50));
        histogram.observe(Duration::from_micros(51));
        histogram.observe(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets[0], (0.00005, 1));
        assert_eq!(snapshot.buckets[1], (0.0001, 2));
        assert_eq!(snapshot.buckets.last().map(|b| b.1), Some(2));
        assert_eq!(snapshot.count, 3);
        assert!((snapshot.sum_seconds - 60.000101).abs() < 1e-9);
    }
}
