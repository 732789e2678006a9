//! What the DNS door observes about each query: its outcome, its latency, a request id for
//! the logs, and a line in the node's recent-queries ring. The admin endpoint reads
//! [`DnsCounters`] at scrape time; nothing here is counted twice.
//!
//! The outcome is read from the response's header (RCODE, AA, TC, ANCOUNT, NSCOUNT), not
//! from the answering code, so the cached fast path, the direct negative writer and the full
//! path are classified alike at the cost of a few byte reads.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::dns::respond::Disposition;
use crate::telemetry::{Histogram, RecentQueries, RequestId};

/// What happened to a query, as metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DnsOutcome {
    Answer,
    NoData,
    Referral,
    /// Too large for UDP: sent empty with TC, the client retries over TCP.
    Truncated,
    NxDomain,
    Refused,
    FormErr,
    ServFail,
    NotImp,
    BadVers,
    /// Any other response code.
    Error,
    /// Not answered (a response, or too short to carry an ID).
    Ignored,
}

impl DnsOutcome {
    pub const ALL: [DnsOutcome; 12] = [
        DnsOutcome::Answer,
        DnsOutcome::NoData,
        DnsOutcome::Referral,
        DnsOutcome::Truncated,
        DnsOutcome::NxDomain,
        DnsOutcome::Refused,
        DnsOutcome::FormErr,
        DnsOutcome::ServFail,
        DnsOutcome::NotImp,
        DnsOutcome::BadVers,
        DnsOutcome::Error,
        DnsOutcome::Ignored,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DnsOutcome::Answer => "answer",
            DnsOutcome::NoData => "nodata",
            DnsOutcome::Referral => "referral",
            DnsOutcome::Truncated => "truncated",
            DnsOutcome::NxDomain => "nxdomain",
            DnsOutcome::Refused => "refused",
            DnsOutcome::FormErr => "formerr",
            DnsOutcome::ServFail => "servfail",
            DnsOutcome::NotImp => "notimp",
            DnsOutcome::BadVers => "badvers",
            DnsOutcome::Error => "error",
            DnsOutcome::Ignored => "ignored",
        }
    }

    /// Classifies a response by its disposition and header.
    pub fn of(disposition: Disposition, response: Option<&[u8]>) -> DnsOutcome {
        let code = match disposition {
            Disposition::Ignored => return DnsOutcome::Ignored,
            Disposition::Answered(code) => code,
        };
        match code {
            ResponseCode::NoError => {
                let Some(header) = response.and_then(|r| r.get(..12)) else {
                    return DnsOutcome::Error;
                };
                let truncated = header[2] & 0x02 != 0;
                let authoritative = header[2] & 0x04 != 0;
                let answers = u16::from_be_bytes([header[6], header[7]]);
                let authorities = u16::from_be_bytes([header[8], header[9]]);
                if truncated {
                    DnsOutcome::Truncated
                } else if answers > 0 {
                    DnsOutcome::Answer
                } else if !authoritative && authorities > 0 {
                    DnsOutcome::Referral
                } else {
                    DnsOutcome::NoData
                }
            }
            ResponseCode::NXDomain => DnsOutcome::NxDomain,
            ResponseCode::Refused => DnsOutcome::Refused,
            ResponseCode::FormErr => DnsOutcome::FormErr,
            ResponseCode::ServFail => DnsOutcome::ServFail,
            ResponseCode::NotImp => DnsOutcome::NotImp,
            ResponseCode::BADVERS => DnsOutcome::BadVers,
            _ => DnsOutcome::Error,
        }
    }
}

/// Queries seen by the door, by what happened to them.
#[derive(Default)]
pub struct DnsCounters {
    pub answered: AtomicU64,
    pub ignored: AtomicU64,
    pub tcp_refused: AtomicU64,
    /// UDP queries over the response-rate limit, answered truncated or not at all.
    pub rate_limited_truncated: AtomicU64,
    pub rate_limited_dropped: AtomicU64,
    /// By [`DnsOutcome`] (its discriminant is the index).
    pub outcomes: [AtomicU64; DnsOutcome::ALL.len()],
    /// From the datagram's arrival in the door to its response, encoding included.
    pub latency: Histogram,
    /// The node's ring of recent queries (every door writes to the same one).
    pub recent: Arc<RecentQueries>,
    /// When (Unix ms) a query last went into the ring: see [`DnsCounters::observe`].
    last_recorded_ms: AtomicU64,
}

impl fmt::Debug for DnsCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsCounters")
            .field("answered", &self.answered)
            .field("ignored", &self.ignored)
            .field("tcp_refused", &self.tcp_refused)
            .field("rate_limited_truncated", &self.rate_limited_truncated)
            .field("rate_limited_dropped", &self.rate_limited_dropped)
            .finish_non_exhaustive()
    }
}

impl DnsCounters {
    /// Counters that record recent queries into the node's ring.
    pub fn new(recent: Arc<RecentQueries>) -> DnsCounters {
        DnsCounters {
            recent,
            ..DnsCounters::default()
        }
    }

    /// Queries with this outcome so far.
    pub fn outcome(&self, outcome: DnsOutcome) -> u64 {
        self.outcomes[outcome as usize].load(Ordering::Relaxed)
    }

    /// Counts one query, logs it (debug; a SERVFAIL warns) and records it in the ring.
    pub fn observe(
        &self,
        request: &[u8],
        disposition: Disposition,
        response: Option<&[u8]>,
        latency: Duration,
        request_id: &RequestId,
    ) {
        let counter = match disposition {
            Disposition::Answered(_) => &self.answered,
            Disposition::Ignored => &self.ignored,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let outcome = DnsOutcome::of(disposition, response);
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(latency);
        let question = Question(request);
        if outcome == DnsOutcome::ServFail {
            tracing::warn!(request_id = %request_id, name = %question, qtype = question.kind(), "DNS query failed: SERVFAIL");
        } else {
            tracing::debug!(
                outcome = outcome.label(),
                name = %question,
                qtype = question.kind(),
                latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                "DNS query"
            );
        }
        // The ring is for people: at most one answered query a millisecond goes in (every
        // failure does), so a door answering 100,000 queries a second does not pay a lock,
        // a shared cache line and a name copy on each. One clock read, and a write only when
        // recording.
        let now_ms = crate::clock::system_unix_ms();
        let last = self.last_recorded_ms.load(Ordering::Relaxed);
        let failed = matches!(
            outcome,
            DnsOutcome::ServFail | DnsOutcome::FormErr | DnsOutcome::Error
        );
        if !failed
            && (now_ms <= last
                || self
                    .last_recorded_ms
                    .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err())
        {
            return;
        }
        self.recent.record(
            "dns",
            question.kind(),
            outcome.label(),
            latency,
            request_id,
            |name| question.write_name(name),
        );
    }
}

/// The question of a DNS request, read from its bytes for logs and the status page.
pub struct Question<'a>(pub &'a [u8]);

/// Where the question section starts.
const HEADER_LEN: usize = 12;

impl Question<'_> {
    /// The question name in presentation form (lowercase, `\DDD` for other bytes), `.`
    /// for the root, or `?` when the bytes hold no readable name.
    pub fn write_name(&self, out: &mut String) {
        use std::fmt::Write as _;
        let start = out.len();
        let mut first = true;
        let end = self.walk(|label| {
            if !first {
                out.push('.');
            }
            first = false;
            for &byte in label {
                match byte {
                    b'.' | b'\\' => {
                        let _ = write!(out, "\\{byte:03}");
                    }
                    0x21..=0x7e => out.push(char::from(byte.to_ascii_lowercase())),
                    _ => {
                        let _ = write!(out, "\\{byte:03}");
                    }
                }
            }
        });
        if end.is_none() {
            out.truncate(start);
            out.push('?');
        } else if first {
            out.push('.');
        }
    }

    /// The question type's mnemonic (`SRV`, `TXT`, ...; `Unknown` for others; `?`
    /// without a question).
    pub fn kind(&self) -> &'static str {
        let Some(end) = self.walk(|_| {}) else {
            return "?";
        };
        match self.0.get(end..end + 2) {
            Some(&[high, low]) => RecordType::from(u16::from_be_bytes([high, low])).into(),
            _ => "?",
        }
    }

    /// Calls `each` with the name's labels (uncompressed, as queries write them; at most
    /// 128) and returns where the name ends, or `None` when there is no readable name.
    fn walk(&self, mut each: impl FnMut(&[u8])) -> Option<usize> {
        let bytes = self.0;
        let questions = u16::from_be_bytes([*bytes.get(4)?, *bytes.get(5)?]);
        if questions == 0 {
            return None;
        }
        let mut at = HEADER_LEN;
        for _ in 0..=128 {
            let len = usize::from(*bytes.get(at)?);
            if len == 0 {
                return Some(at + 1);
            }
            // A compression pointer (or a reserved label type) in a question: not ours to
            // follow for a log line.
            if len & 0xc0 != 0 {
                return None;
            }
            each(bytes.get(at + 1..at + 1 + len)?);
            at += 1 + len;
        }
        None
    }
}

impl fmt::Display for Question<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut name = String::new();
        self.write_name(&mut name);
        f.write_str(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16) -> Vec<u8> {
        let mut bytes = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(&qtype.to_be_bytes());
        bytes.extend_from_slice(&1u16.to_be_bytes());
        bytes
    }

    #[test]
    fn questions_read_for_logs() {
        let request = query(b"\x04_mcp\x04_tcp\x07Analyst\x07finance\x04acme\x00", 33);
        let question = Question(&request);
        assert_eq!(question.to_string(), "_mcp._tcp.analyst.finance.acme");
        assert_eq!(question.kind(), "SRV");
        assert_eq!(Question(&query(b"\x00", 2)).to_string(), ".");
        assert_eq!(Question(&query(b"\x03a.b\x00", 16)).to_string(), "a\\046b");
        assert_eq!(Question(&query(b"\xc0\x0c", 16)).to_string(), "?");
        assert_eq!(Question(&[1, 2]).kind(), "?");
    }

    #[test]
    fn the_ring_takes_at_most_one_answer_a_millisecond_and_every_failure() {
        let counters = DnsCounters::new(Arc::new(RecentQueries::default()));
        let request = query(b"\x07analyst\x07finance\x04acme\x00", 16);
        let mut header = vec![0u8; 12];
        header[2] = 0x84;
        header[7] = 1;
        let answered = Disposition::Answered(ResponseCode::NoError);
        let started = std::time::Instant::now();
        for _ in 0..1000 {
            counters.observe(
                &request,
                answered,
                Some(&header),
                Duration::from_micros(5),
                &RequestId::generate(),
            );
        }
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap();
        let recorded = counters.recent.snapshot().len() as u64;
        // Every query is counted; the ring got one per millisecond boundary crossed at most.
        assert_eq!(counters.outcome(DnsOutcome::Answer), 1000);
        assert!(
            recorded >= 1 && recorded <= elapsed_ms + 2,
            "{recorded} in {elapsed_ms} ms"
        );
        // A failure always goes in, however soon after the last.
        counters.observe(
            &request,
            Disposition::Answered(ResponseCode::ServFail),
            None,
            Duration::from_micros(5),
            &RequestId::generate(),
        );
        let last = counters.recent.snapshot().pop().unwrap();
        assert_eq!(last.outcome, "servfail");
    }

    #[test]
    fn outcomes_read_from_the_header() {
        let mut header = vec![0u8; 12];
        let answered = Disposition::Answered(ResponseCode::NoError);
        header[2] = 0x84; // QR, AA
        header[7] = 1;
        assert_eq!(DnsOutcome::of(answered, Some(&header)), DnsOutcome::Answer);
        header[7] = 0;
        assert_eq!(DnsOutcome::of(answered, Some(&header)), DnsOutcome::NoData);
        header[2] = 0x80;
        header[9] = 1;
        assert_eq!(
            DnsOutcome::of(answered, Some(&header)),
            DnsOutcome::Referral
        );
        header[2] = 0x86;
        assert_eq!(
            DnsOutcome::of(answered, Some(&header)),
            DnsOutcome::Truncated
        );
        assert_eq!(
            DnsOutcome::of(Disposition::Answered(ResponseCode::NXDomain), None),
            DnsOutcome::NxDomain
        );
        assert_eq!(
            DnsOutcome::of(Disposition::Ignored, None),
            DnsOutcome::Ignored
        );
        for (index, outcome) in DnsOutcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, index);
        }
    }
}
