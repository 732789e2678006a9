//! Time as an input: TTLs, stale windows and server penalties read the time from a [`Clock`]
//! so tests can move it forward by hand.
//!
//! Tokio's paused time is not enough here: with real sockets in a test, a paused runtime
//! that is waiting on I/O auto-advances to the next timer and fires timeouts that never
//! elapsed. So cache freshness uses this clock, while network timeouts stay on tokio time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::watch;

/// The longest a wall-clock wait sleeps before it looks at the clock again, so that a jump of
/// the system's wall clock (NTP) is noticed.
const WALL_CLOCK_RECHECK: Duration = Duration::from_secs(1);

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;

    /// Wall-clock time in milliseconds since the Unix epoch: what survives a restart (lease
    /// expiries) and what crosses the network (update signatures' timestamps).
    fn unix_ms(&self) -> u64 {
        system_unix_ms()
    }

    /// Resolves once [`Clock::unix_ms`] may have reached `at_ms` (the caller looks again and
    /// waits anew if not). The system clock sleeps at most a second at a time; a manual clock
    /// wakes when a test moves it, so nothing in a test waits for real time to pass.
    fn wait_until_unix_ms(&self, at_ms: u64) -> BoxFuture<'static, ()> {
        let wait = Duration::from_millis(at_ms.saturating_sub(self.unix_ms()));
        Box::pin(tokio::time::sleep(wait.min(WALL_CLOCK_RECHECK)))
    }
}

/// The system's wall clock, in milliseconds since the Unix epoch (0 before 1970).
pub fn system_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
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
    start_unix_ms: u64,
    offset_nanos: AtomicU64,
    /// Bumped on every move, for [`Clock::wait_until_unix_ms`].
    moved: watch::Sender<u64>,
}

impl ManualClock {
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock {
            start: Instant::now(),
            start_unix_ms: system_unix_ms(),
            offset_nanos: AtomicU64::new(0),
            moved: watch::channel(0).0,
        })
    }

    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(nanos, Ordering::SeqCst);
        self.moved.send_modify(|moves| *moves += 1);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_nanos(self.offset_nanos.load(Ordering::SeqCst))
    }

    fn unix_ms(&self) -> u64 {
        self.start_unix_ms + self.offset_nanos.load(Ordering::SeqCst) / 1_000_000
    }

    fn wait_until_unix_ms(&self, at_ms: u64) -> BoxFuture<'static, ()> {
        // Subscribed before looking at the time, so a move in between is not missed.
        let mut moved = self.moved.subscribe();
        let reached = self.unix_ms() >= at_ms;
        Box::pin(async move {
            if !reached {
                let _ = moved.changed().await;
            }
        })
    }
}

pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Parses `500ms`, `10s`, `2m`, `1h`, `1d` or a bare number of seconds: the
/// durations of flags (`--timeout 10s`) and of zone files (`health = { interval = "10s" }`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 10s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use ms, s, m, h or d"
            ));
        }
    };
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 30.0 * 86_400.0 {
        return Err(format!("{text:?} must be between 1ms and 30d"));
    }
    Ok(Duration::from_secs_f64(seconds))
}
