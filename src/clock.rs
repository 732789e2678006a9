//! Time as an input: TTLs, stale windows and server penalties read the time from a [`Clock`]
//! so tests can move it forward by hand.
//!
//! Tokio's paused time is not enough here: with real sockets in a test, a paused runtime
//! that is waiting on I/O auto-advances to the next timer and fires timeouts that never
//! elapsed. So cache freshness uses this clock, while network timeouts stay on tokio time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    offset_nanos: AtomicU64,
}

impl ManualClock {
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock {
            start: Instant::now(),
            offset_nanos: AtomicU64::new(0),
        })
    }

    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_nanos(self.offset_nanos.load(Ordering::SeqCst))
    }
}

pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}
