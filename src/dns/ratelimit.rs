//! Response-rate limiting for the DNS door over UDP (docs/protocol.md §8.3,
//! `--dns-rate-limit QPS`; off unless set).
//!
//! Why: a UDP query's source address can be forged, so an open authoritative server is an
//! amplifier aimed at whoever the forger names (a 40-byte query, a 1,232-byte answer). As
//! BIND's and NSD's RRL do, the door answers each client network at most QPS times a second
//! (a token bucket holding one second's worth, so short bursts pass) and, past that, sends
//! every second refused query back truncated (TC=1, no records: a real client retries over
//! TCP, which cannot be forged; BIND calls it "slip 2") and drops the others. The victim of a
//! reflection gets at most a trickle of small answers. TCP is never limited: it has a
//! handshake, and the door's TCP bounds (`TcpLimits`) apply.
//!
//! Clients are counted by network, not address: an IPv4 /24 and an IPv6 /56 (the usual
//! smallest allocation to a site), so one host cannot escape its limit by cycling addresses
//! it holds (an IPv6 host often holds a /64).
//!
//! The buckets live in a bounded table (moka: at most [`TRACKED_NETWORKS`], idle entries
//! dropped after [`IDLE`]) rather than a map that grows with every forged source: a flood of
//! spoofed networks can make the table forget a network, which then starts again with a full
//! bucket, but it can never make the door refuse a network that did not exceed its rate.
//! A bucket idle for a second is full again, so dropping it after [`IDLE`] loses nothing.
//! (governor's keyed limiter would give the same buckets, in a map that only a periodic
//! `retain_recent` sweep bounds, and no bound on its size between sweeps.)

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Client networks tracked at once.
pub const TRACKED_NETWORKS: u64 = 100_000;
/// A network not seen for this long is forgotten (its bucket would be full again anyway).
pub const IDLE: Duration = Duration::from_secs(2);

/// What to do with one UDP query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Answer,
    /// Over the rate: send an empty answer with TC set.
    Truncate,
    /// Over the rate: send nothing.
    Drop,
}

/// A client network: an IPv4 /24 or an IPv6 /56.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    V4([u8; 3]),
    V6([u8; 7]),
}

impl Network {
    pub fn of(ip: IpAddr) -> Network {
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Network::V4([a, b, c])
            }
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Network::of(IpAddr::V4(v4)),
                None => {
                    let o = v6.octets();
                    Network::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6]])
                }
            },
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Queries refused so far, so that every second one slips through truncated.
    refused: u64,
}

/// The door's response-rate limiter: token buckets per client network.
pub struct ResponseRateLimiter {
    qps: u32,
    buckets: moka::sync::Cache<Network, Arc<Mutex<Bucket>>>,
}

impl std::fmt::Debug for ResponseRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseRateLimiter")
            .field("qps", &self.qps)
            .finish_non_exhaustive()
    }
}

impl ResponseRateLimiter {
    /// At most `qps` answers a second per client network (at least 1).
    pub fn new(qps: u32) -> ResponseRateLimiter {
        ResponseRateLimiter {
            qps: qps.max(1),
            buckets: moka::sync::Cache::builder()
                .max_capacity(TRACKED_NETWORKS)
                .time_to_idle(IDLE)
                .build(),
        }
    }

    pub fn qps(&self) -> u32 {
        self.qps
    }

    /// Whether a query from `client` arriving at `now` is answered.
    pub fn check(&self, client: IpAddr, now: Instant) -> Verdict {
        let capacity = f64::from(self.qps);
        let bucket = self.buckets.get_with(Network::of(client), || {
            Arc::new(Mutex::new(Bucket {
                tokens: capacity,
                refilled: now,
                refused: 0,
            }))
        });
        // A plain mutex: held for a few arithmetic operations, never across an await.
        let mut bucket = bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * capacity).min(capacity);
        bucket.refilled = bucket.refilled.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Verdict::Answer;
        }
        bucket.refused += 1;
        if bucket.refused % 2 == 1 {
            Verdict::Truncate
        } else {
            Verdict::Drop
        }
    }
}

/// The truncated answer to `request` (TC set, the question echoed, no records), when the
/// request has the common shape whose question ends at `question_end`; else `None` (the
/// query is dropped instead).
pub fn truncated(request: &[u8], question_end: usize) -> Option<Vec<u8>> {
    let mut response = request.get(..question_end)?.to_vec();
    // QR, the request's opcode and RD kept, TC; RA clear, RCODE NOERROR.
    response[2] = 0x80 | (request[2] & 0x79) | 0x02;
    response[3] = 0;
    // One question, no answer, authority or additional records.
    response[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_are_slash_24_and_slash_56() {
        assert_eq!(Network::of(ip("192.0.2.1")), Network::of(ip("192.0.2.254")));
        assert_ne!(Network::of(ip("192.0.2.1")), Network::of(ip("192.0.3.1")));
        assert_eq!(
            Network::of(ip("2001:db8:0:ff01::1")),
            Network::of(ip("2001:db8:0:ffff::2"))
        );
        assert_ne!(
            Network::of(ip("2001:db8:0:ff01::1")),
            Network::of(ip("2001:db8:0:fe01::1"))
        );
        assert_eq!(
            Network::of(ip("::ffff:192.0.2.7")),
            Network::of(ip("192.0.2.1"))
        );
    }

    #[test]
    fn one_network_is_limited_and_another_is_not() {
        let limiter = ResponseRateLimiter::new(3);
        let now = Instant::now();
        let verdicts: Vec<Verdict> = (1..=7)
            .map(|host| limiter.check(ip(&format!("192.0.2.{host}")), now))
            .collect();
        use Verdict::*;
        assert_eq!(
            verdicts,
            [Answer, Answer, Answer, Truncate, Drop, Truncate, Drop]
        );
        // Another /24 has its own bucket.
        assert_eq!(limiter.check(ip("192.0.3.1"), now), Answer);
        // A third of a second later the first network has earned one answer back.
        let later = now + Duration::from_millis(334);
        assert_eq!(limiter.check(ip("192.0.2.9"), later), Answer);
        assert_eq!(limiter.check(ip("192.0.2.9"), later), Truncate);
        // After a full second idle, a full bucket again, never more.
        let idle = later + Duration::from_secs(5);
        let answered = (0..10)
            .filter(|_| limiter.check(ip("192.0.2.9"), idle) == Answer)
            .count();
        assert_eq!(answered, 3);
    }

    #[test]
    fn the_truncated_answer_echoes_the_question_with_tc() {
        // ID 0xabcd, RD, one question "a." TXT IN, then an OPT record.
        let mut request = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        request.extend([1, b'a', 0, 0, 16, 0, 1]);
        let question_end = request.len();
        request.extend([0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        let response = truncated(&request, question_end).unwrap();
        assert_eq!(&response[..2], &[0xab, 0xcd]);
        assert_eq!(response[2], 0x80 | 0x01 | 0x02, "QR, RD and TC");
        assert_eq!(&response[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&response[12..], &request[12..question_end]);
    }
}
