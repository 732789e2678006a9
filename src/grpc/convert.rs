//! The door's own conversions: requests decoded into domain values with [`RequestError`]s
//! that name the field, and the answers only this door gives (a zone's header with its
//! counts, cache statistics, search parts). Records, answers and zone changes are encoded
//! and decoded by `wire`, the one codec the store and transfers share.

use std::sync::Arc;

use crate::name::{Name, NameError};
use crate::record::{Agent, RecordError, limits};
use crate::resolver::LevelStats;
use crate::search::federate::{Missed, SearchAnswer, SearchPart, Searched};
use crate::search::{CorpusStats, Hit, SearchQuery, ZoneResult};
use crate::wire::referral;
use crate::zone::ZoneSnapshot;

use super::pb;

/// A request field this door cannot accept.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The request's bytes are not a message of its type: a `string` field that is not
    /// UTF-8, a truncated field, a wrong wire type. `reason` is prost's, which names the
    /// message and field (`ResolveRequest.name: invalid string value: data is not UTF-8
    /// encoded`).
    #[error("the request does not decode as an aop.v1 message: {reason}")]
    Undecodable { reason: String },
    #[error("invalid {field}: {source}")]
    Name {
        field: &'static str,
        source: NameError,
    },
    #[error(
        "page_size {requested} is over the limit of {} entries per page",
        limits::PAGE_MAX
    )]
    PageTooLarge { requested: u32 },
    #[error("invalid cursor: pass back the next_cursor of a previous ListAgents response")]
    InvalidCursor,
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("invalid {field}: not JSON: {reason}")]
    Json { field: &'static str, reason: String },
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error(
        "lease_seconds {value} is over the limit of {} seconds",
        crate::authority::LEASE_MAX_SECS
    )]
    LeaseTooLong { value: u32 },
    #[error("limit {requested} is over the limit of {} hits", limits::PAGE_MAX)]
    LimitTooLarge { requested: u32 },
    #[error(
        "query is {bytes} bytes, over the limit of {} bytes",
        limits::DESCRIPTION_MAX_BYTES
    )]
    QueryTooLong { bytes: usize },
    #[error("{count} {field} filters, over the limit of {}", limits::TAGS_MAX)]
    TooManyFilters { field: &'static str, count: usize },
    #[error(
        "a {field} filter is {bytes} bytes, over the limit of {} bytes",
        limits::TAG_MAX_BYTES
    )]
    FilterTooLong { field: &'static str, bytes: usize },
}

pub fn request_name(field: &'static str, text: &str) -> Result<Name, RequestError> {
    Name::parse(text).map_err(|source| RequestError::Name { field, source })
}

/// Page size of a ListAgents request: 0 means the default.
pub fn page_size(requested: u32) -> Result<usize, RequestError> {
    const DEFAULT_PAGE: usize = 100;
    match requested {
        0 => Ok(DEFAULT_PAGE),
        n if n as usize > limits::PAGE_MAX => Err(RequestError::PageTooLarge { requested: n }),
        n => Ok(n as usize),
    }
}

const CURSOR_PREFIX: &str = "a1:";

/// An opaque cursor: the last name returned, so paging is stable across zone changes.
pub fn encode_cursor(last: &Name) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{CURSOR_PREFIX}{}", last.as_str()))
}

pub fn decode_cursor(cursor: &str) -> Result<Option<String>, RequestError> {
    use base64::Engine;
    if cursor.is_empty() {
        return Ok(None);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| RequestError::InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| RequestError::InvalidCursor)?;
    let last = text
        .strip_prefix(CURSOR_PREFIX)
        .ok_or(RequestError::InvalidCursor)?;
    Ok(Some(last.to_string()))
}

/// GetZone's answer for a zone served here.
pub fn zone_response(zone: &ZoneSnapshot, served_by: &str) -> pb::GetZoneResponse {
    let header = zone.header();
    pb::GetZoneResponse {
        origin: header.origin.to_string(),
        serial: header.serial,
        ttl: header.ttl,
        negative_ttl: header.negative_ttl,
        refresh: header.refresh,
        retry: header.retry,
        expire: header.expire,
        contact: header.contact.clone(),
        servers: header.servers.iter().map(pb::ServerAddress::from).collect(),
        delegations: zone
            .delegations()
            .map(|d| referral(d, d.ttl.unwrap_or(header.ttl)))
            .collect(),
        agent_count: u32::try_from(zone.agent_count()).unwrap_or(u32::MAX),
        alias_count: u32::try_from(zone.alias_count()).unwrap_or(u32::MAX),
        served_by: served_by.to_string(),
    }
}

impl From<&LevelStats> for pb::CacheLevelStats {
    fn from(stats: &LevelStats) -> pb::CacheLevelStats {
        pb::CacheLevelStats {
            level: stats.level.to_string(),
            entries: stats.entries,
            weighted_bytes: stats.weighted_bytes,
            capacity_bytes: stats.capacity_bytes,
            hits: stats.hits,
            misses: stats.misses,
            inserts: stats.inserts,
            evictions: stats.evictions,
            stale_served: stats.stale_served,
        }
    }
}

/// A node's search answer for the subtree at `zone` as one part to merge (with the zones it
/// searched and missed), checked like any peer input; `terms` are the query's as analysed
/// here. The error says what was wrong with the answer.
pub fn search_part(
    zone: &Name,
    response: pb::SearchResponse,
    terms: &[String],
) -> Result<SearchPart, String> {
    if response.terms != terms {
        return Err(format!(
            "answered for terms {:?}, not {:?} (a different analyser version?)",
            response.terms, terms
        ));
    }
    let stats = response.stats.unwrap_or_default();
    let mut hits = Vec::with_capacity(response.hits.len());
    for hit in response.hits {
        let agent = hit.agent.ok_or("a hit without its agent")?;
        let agent = Agent::try_from(agent).map_err(|error| error.to_string())?;
        let hit_zone = Name::parse(&hit.zone).map_err(|error| format!("a hit's zone: {error}"))?;
        // The agent lies in the asked subtree and in the zone it came from; that zone may
        // be above the scope when the scope is a name inside a zone.
        if !agent.name.is_at_or_below(zone) || !agent.name.is_at_or_below(&hit_zone) {
            return Err(format!(
                "sent {} from zone {hit_zone}, outside the subtree of {zone}",
                agent.name
            ));
        }
        hits.push(Hit {
            agent: Arc::new(agent),
            zone: hit_zone,
            score: hit.score,
            term_freqs: hit.term_freqs,
            length: hit.length,
        });
    }
    let result = ZoneResult {
        zone: zone.clone(),
        serial: 0,
        stats: CorpusStats {
            doc_count: stats.doc_count,
            total_length: stats.total_length,
            doc_freq: stats.doc_freqs,
        },
        matches: response.total_matches,
        hits,
    };
    result
        .check(terms.len())
        .map_err(|error| error.to_string())?;
    Ok(SearchPart {
        result,
        searched: response
            .searched
            .into_iter()
            .map(|s| Searched {
                zone: s.zone,
                serial: s.serial,
                served_by: s.served_by,
            })
            .collect(),
        missed: response
            .missed
            .into_iter()
            .map(|m| Missed {
                zone: m.zone,
                reason: m.reason,
            })
            .collect(),
    })
}

/// A search's answer on the wire.
pub fn search_response(answer: &SearchAnswer, served_by: &str) -> pb::SearchResponse {
    let merged = &answer.merged;
    pb::SearchResponse {
        hits: merged
            .hits
            .iter()
            .map(|hit| pb::SearchHit {
                agent: Some(pb::Agent::from(&*hit.agent)),
                zone: hit.zone.to_string(),
                score: hit.score,
                term_freqs: hit.term_freqs.clone(),
                length: hit.length,
            })
            .collect(),
        stats: Some(pb::SearchStats {
            doc_count: merged.stats.doc_count,
            total_length: merged.stats.total_length,
            doc_freqs: merged.stats.doc_freq.clone(),
        }),
        terms: answer.terms.clone(),
        total_matches: merged.total_matches,
        partial: answer.partial(),
        missed: answer
            .missed
            .iter()
            .map(|m| pb::ZoneMissed {
                zone: m.zone.clone(),
                reason: m.reason.clone(),
            })
            .collect(),
        searched: answer
            .searched
            .iter()
            .map(|s| pb::ZoneSearched {
                zone: s.zone.clone(),
                serial: s.serial,
                served_by: s.served_by.clone(),
            })
            .collect(),
        served_by: served_by.to_string(),
    }
}

/// Hits a search returns when the request does not say.
const SEARCH_LIMIT_DEFAULT: usize = 10;

/// The request's query, checked against the contract's limits.
pub fn search_query(
    request: &pb::SearchRequest,
    scope: &Name,
) -> Result<SearchQuery, RequestError> {
    if request.query.len() > limits::DESCRIPTION_MAX_BYTES {
        return Err(RequestError::QueryTooLong {
            bytes: request.query.len(),
        });
    }
    for (field, values) in [
        ("tags", &request.tags),
        ("capabilities", &request.capabilities),
    ] {
        if values.len() > limits::TAGS_MAX {
            return Err(RequestError::TooManyFilters {
                field,
                count: values.len(),
            });
        }
        if let Some(long) = values.iter().find(|v| v.len() > limits::TAG_MAX_BYTES) {
            return Err(RequestError::FilterTooLong {
                field,
                bytes: long.len(),
            });
        }
    }
    let limit = match request.limit {
        0 => SEARCH_LIMIT_DEFAULT,
        n if n as usize > limits::PAGE_MAX => {
            return Err(RequestError::LimitTooLarge { requested: n });
        }
        n => n as usize,
    };
    Ok(SearchQuery {
        text: request.query.clone(),
        tags: request.tags.clone(),
        capabilities: request.capabilities.clone(),
        scope: (!scope.is_root()).then(|| scope.clone()),
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let name = Name::parse("analyst.finance.acme").unwrap();
        let cursor = encode_cursor(&name);
        assert_eq!(
            decode_cursor(&cursor).unwrap().as_deref(),
            Some("analyst.finance.acme")
        );
        assert_eq!(decode_cursor("").unwrap(), None);
        assert!(matches!(
            decode_cursor("!!!"),
            Err(RequestError::InvalidCursor)
        ));
        assert!(matches!(
            decode_cursor("aGVsbG8"),
            Err(RequestError::InvalidCursor)
        ));
    }

    #[test]
    fn page_size_is_bounded() {
        assert_eq!(page_size(0).unwrap(), 100);
        assert_eq!(page_size(1000).unwrap(), 1000);
        assert_eq!(
            page_size(1001).unwrap_err().to_string(),
            "page_size 1001 is over the limit of 1000 entries per page"
        );
    }
}
