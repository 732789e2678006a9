//! Token buckets per key (caller subject, agent name): `[rate_limit]` of docs/protocol.md §8.2.
//!
//! Our own rather than `governor`: the buckets read time from [`crate::clock::Clock`], so
//! tests move time by hand instead of sleeping (governor has its own clock trait, which
//! would need an adapter to the gateway's), the refusal must give a whole-second
//! `Retry-After`, and the whole of it is a few lines of arithmetic. The map of buckets is
//! bounded: past [`MAX_KEYS`] the buckets that are full again (indistinguishable from new
//! ones) are dropped; if none is, the key is refused rather than the map grown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::BucketLimit;
use crate::clock::Clock;

/// Keys tracked at once per limiter.
pub const MAX_KEYS: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct Buckets {
    limit: BucketLimit,
    clock: Arc<dyn Clock>,
    // std Mutex: held for the arithmetic of one take, never across an await.
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    pub fn new(limit: BucketLimit, clock: Arc<dyn Clock>) -> Buckets {
        Buckets {
            limit,
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn rate_per_s(&self) -> f64 {
        f64::from(self.limit.requests) / f64::from(self.limit.per_s)
    }

    /// Takes one token of `key`'s bucket, or says how long until one is there.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        self.refill(key, true)
    }

    /// Whether `key`'s bucket holds a token now (none taken), or how long until it does.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.refill(key, false)
    }

    fn refill(&self, key: &str, take: bool) -> Result<(), Duration> {
        let now = self.clock.now();
        let capacity = f64::from(self.limit.requests);
        let rate = self.rate_per_s();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(key) && buckets.len() >= MAX_KEYS {
            buckets.retain(|_, bucket| {
                bucket.tokens + now.saturating_duration_since(bucket.at).as_secs_f64() * rate
                    < capacity
            });
            if buckets.len() >= MAX_KEYS {
                return Err(Duration::from_secs(u64::from(self.limit.per_s)));
            }
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let refilled = now.saturating_duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refilled).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            if take {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

/// `Retry-After` in whole seconds, at least 1.
pub fn retry_after_s(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn a_burst_then_the_refill_rate() {
        let clock = ManualClock::new();
        let buckets = Buckets::new(
            BucketLimit {
                requests: 3,
                per_s: 3,
            },
            clock.clone(),
        );
        for _ in 0..3 {
            assert_eq!(buckets.take("alice"), Ok(()));
        }
        let wait = buckets.take("alice").unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert_eq!(retry_after_s(wait), 1);
        assert_eq!(buckets.take("bob"), Ok(()), "buckets are per key");
        clock.advance(Duration::from_secs(1));
        assert_eq!(buckets.take("alice"), Ok(()));
        assert!(buckets.take("alice").is_err());
    }

    #[test]
    fn a_check_takes_nothing() {
        let clock = ManualClock::new();
        let buckets = Buckets::new(
            BucketLimit {
                requests: 1,
                per_s: 1,
            },
            clock.clone(),
        );
        for _ in 0..3 {
            assert_eq!(buckets.check("peer"), Ok(()));
        }
        assert_eq!(buckets.take("peer"), Ok(()));
        assert!(buckets.check("peer").is_err());
        clock.advance(Duration::from_secs(1));
        assert_eq!(buckets.check("peer"), Ok(()));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_s(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_s(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_s(Duration::ZERO), 1);
    }
}
