//! The ring of recent queries the status page shows: the last hundred queries of every door,
//! with their request ids.
//!
//! What a query names is the client's text, and a client may put a URL with credentials in
//! it (a search for `https://host/?token=...`, an endpoint URL): the ring redacts the values
//! of query parameters that look like secrets, and the password of a URL's user info, as it
//! records them ([`redact_secrets`]), so the status page and `/status.json` never show them.

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
        redact_secrets(&mut query.name);
    }

    /// The queries, oldest first.
    pub fn snapshot(&self) -> Vec<RecentQuery> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let (newer, older) = ring.slots.split_at(ring.next.min(ring.slots.len()));
        older.iter().chain(newer).cloned().collect()
    }
}

/// Query parameters whose value is replaced by [`REDACTED`]: a name containing any of these
/// words, in any case (`token`, `access_token`, `api_key`, `client_secret`, `Authorization`).
pub const SECRET_PARAMETERS: [&str; 5] = ["token", "key", "secret", "password", "auth"];

/// What stands for a redacted value.
pub const REDACTED: &str = "REDACTED";

/// Redacts, in place, the values of query parameters named like secrets
/// ([`SECRET_PARAMETERS`]) and the password of a URL's user info (`user:pass@`). Costs one
/// scan for `?` and `@` when there is nothing to redact (DNS names, almost always).
pub fn redact_secrets(text: &mut String) {
    if !text.contains(['?', '@']) {
        return;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    // User info: `scheme://user:password@host`.
    if let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = rest[authority_start..]
            .find(['/', '?', '#'])
            .map_or(rest.len(), |end| authority_start + end);
        let authority = &rest[authority_start..authority_end];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
        {
            out.push_str(&rest[..authority_start + colon + 1]);
            out.push_str(REDACTED);
            out.push_str(&rest[authority_start + at..authority_end]);
            rest = &rest[authority_end..];
        }
    }
    if let Some(question) = rest.find('?') {
        out.push_str(&rest[..=question]);
        let after = &rest[question + 1..];
        let (query, fragment) = match after.find('#') {
            Some(hash) => after.split_at(hash),
            None => (after, ""),
        };
        for (index, pair) in query.split('&').enumerate() {
            if index > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, _)) if is_secret_parameter(key) => {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                _ => out.push_str(pair),
            }
        }
        out.push_str(fragment);
    } else {
        out.push_str(rest);
    }
    *text = out;
}

fn is_secret_parameter(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_PARAMETERS.iter().any(|word| key.contains(word))
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

    #[test]
    fn secrets_in_urls_are_redacted() {
        let redacted = |text: &str| {
            let mut text = text.to_string();
            redact_secrets(&mut text);
            text
        };
        assert_eq!(redacted("analyst.finance.acme"), "analyst.finance.acme");
        assert_eq!(
            redacted("https://a.example/mcp?token=abc&x=1&API_KEY=k#frag"),
            "https://a.example/mcp?token=REDACTED&x=1&API_KEY=REDACTED#frag"
        );
        assert_eq!(
            redacted("q?client_secret=s&password=p&Authorization=Bearer%20t&keep=me"),
            "q?client_secret=REDACTED&password=REDACTED&Authorization=REDACTED&keep=me"
        );
        assert_eq!(
            redacted("http://bot:hunter2@a.example:8000/mcp?auth=x"),
            "http://bot:REDACTED@a.example:8000/mcp?auth=REDACTED"
        );
        assert_eq!(redacted("mail@a.example"), "mail@a.example");
        assert_eq!(redacted("http://bot@a.example/"), "http://bot@a.example/");
        assert_eq!(redacted("a?token"), "a?token", "no value, nothing to hide");
    }

    #[test]
    fn the_ring_records_names_redacted() {
        let recent = RecentQueries::default();
        recent.record(
            "grpc",
            "Search",
            "ok",
            Duration::ZERO,
            &RequestId::Generated(1),
            |name| name.push_str("https://x.example/?token=t0ps3cret"),
        );
        assert_eq!(
            recent.snapshot()[0].name,
            "https://x.example/?token=REDACTED"
        );
    }
}
