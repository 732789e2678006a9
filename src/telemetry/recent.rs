//! The ring of recent queries the status page shows: the last hundred queries of every door,
//! with their request ids.

use std::sync::Mutex;
use std::time::Duration;

use super::RequestId;
use crate::clock::system_unix_ms as unix_ms;

/// One query as the status page lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentQuery {
    pub at_unix_ms: u64,
    /// `dns` or `grpc`.
    pub door: &'static str,
    /// The name asked (DNS), or the name or zone a gRPC request is about.
    pub name: String,
    /// The DNS record type, or the gRPC method.
    pub kind: &'static str,
    pub outcome: &'static str,
    pub latency_us: u64,
    #[serde(serialize_with = "as_text")]
    pub request_id: RequestId,
}

fn as_text<S: serde::Serializer>(id: &RequestId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(id)
}

/// How many queries the ring keeps.
pub const RECENT_QUERIES: usize = 100;

/// The last [`RECENT_QUERIES`] queries of every door, newest last. Slots are overwritten in
/// place (their `name` buffers reused), so recording costs a lock and a copy, not an
/// allocation; a DNS door answering 100,000 queries a second pays that on each.
pub struct RecentQueries {
    // std Mutex: held to overwrite one slot or to copy the ring, never across an await.
    ring: Mutex<Ring>,
}

struct Ring {
    slots: Vec<RecentQuery>,
    next: usize,
}

impl Default for RecentQueries {
    fn default() -> Self {
        RecentQueries {
            ring: Mutex::new(Ring {
                slots: Vec::with_capacity(RECENT_QUERIES),
                next: 0,
            }),
        }
    }
}

impl RecentQueries {
    /// Records a query: `fill` writes the name into the (cleared) buffer it is given.
    pub fn record(
        &self,
        door: &'static str,
        kind: &'static str,
        outcome: &'static str,
        latency: Duration,
        request_id: &RequestId,
        fill: impl FnOnce(&mut String),
    ) {
        let at_unix_ms = unix_ms();
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let slot = if ring.slots.len() < RECENT_QUERIES {
            ring.slots.push(RecentQuery {
                at_unix_ms,
                door,
                name: String::new(),
                kind,
                outcome,
                latency_us,
                request_id: request_id.clone(),
            });
            ring.slots.len() - 1
        } else {
            let at = ring.next;
            ring.next = (at + 1) % RECENT_QUERIES;
            at
        };
        let query = &mut ring.slots[slot];
        query.at_unix_ms = at_unix_ms;
        query.door = door;
        query.kind = kind;
        query.outcome = outcome;
        query.latency_us = latency_us;
        query.request_id.clone_from(request_id);
        query.name.clear();
        fill(&mut query.name);
    }

    /// The queries, oldest first.
    pub fn snapshot(&self) -> Vec<RecentQuery> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let (newer, older) = ring.slots.split_at(ring.next.min(ring.slots.len()));
        older.iter().chain(newer).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_hundred_oldest_first() {
        let recent = RecentQueries::default();
        for index in 0..250u64 {
            recent.record(
                "dns",
                "SRV",
                "answer",
                Duration::from_micros(index),
                &RequestId::Generated(index),
                |name| name.push_str(&format!("q{index}")),
            );
        }
        let queries = recent.snapshot();
        assert_eq!(queries.len(), RECENT_QUERIES);
        assert_eq!(queries[0].name, "q150");
        assert_eq!(queries[99].name, "q249");
        assert_eq!(queries[99].request_id, RequestId::Generated(249));
    }
}
