//! Conversions between protobuf messages and domain types, in one place.
//!
//! Requests are decoded into domain types with [`RequestError`]s that name the field; answers
//! from peers (other nodes, for the CLI and the resolver) are checked with the same record
//! rules as zone files ([`PeerDataError`]), because a peer is input like any other.

use std::sync::Arc;

use crate::answer::{Answer, Outcome, TraceStep};
use crate::authority::live::{LiveAgent, LiveRecord};
use crate::name::{Name, NameError};
use crate::record::{
    self, Agent, Alias, Delegation, Endpoint, JsonDoc, RecordError, ServerAddress, ZoneHeader,
    limits,
};
use crate::resolver::LevelStats;
use crate::search::{CorpusStats, Hit, ZoneResult};
use crate::zone::ZoneSnapshot;

use super::pb;

/// A request field this door cannot accept.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
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
        crate::authority::live::LEASE_MAX_SECS
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

/// Data from a peer that breaks the record rules.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PeerDataError {
    #[error("invalid {field} from peer: {source}")]
    Name {
        field: &'static str,
        source: NameError,
    },
    #[error("invalid agent record from peer: {0}")]
    Record(#[from] RecordError),
    #[error("invalid {field} JSON from peer: {reason}")]
    Json { field: &'static str, reason: String },
    #[error("peer answer is missing {field}")]
    Missing { field: &'static str },
    #[error("peer answer has unknown outcome {0}")]
    UnknownOutcome(i32),
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

fn name_text(name: &Name) -> String {
    name.to_string()
}

impl From<&Agent> for pb::Agent {
    fn from(agent: &Agent) -> pb::Agent {
        pb::Agent {
            name: name_text(&agent.name),
            description: agent.description.clone(),
            tags: agent.tags.clone(),
            capabilities: agent.capabilities.clone(),
            version: agent.version.clone(),
            ttl: agent.ttl.unwrap_or(0),
            timeout_ms: agent.timeout_ms,
            max_retries: agent.max_retries,
            endpoints: agent.endpoints.iter().map(pb::Endpoint::from).collect(),
            input_schema_json: agent.input_schema.text().to_string(),
            output_schema_json: agent
                .output_schema
                .as_ref()
                .map_or_else(String::new, |doc| doc.text().to_string()),
            metadata_json: agent
                .metadata
                .as_ref()
                .map_or_else(String::new, |doc| doc.text().to_string()),
        }
    }
}

impl From<&Endpoint> for pb::Endpoint {
    fn from(endpoint: &Endpoint) -> pb::Endpoint {
        pb::Endpoint {
            url: endpoint.url.clone(),
            tool: endpoint.tool.clone(),
            priority: u32::from(endpoint.priority),
            weight: u32::from(endpoint.weight),
        }
    }
}

impl From<&ServerAddress> for pb::ServerAddress {
    fn from(server: &ServerAddress) -> pb::ServerAddress {
        pb::ServerAddress {
            grpc: server.grpc.clone(),
            dns: server.dns.map_or_else(String::new, |addr| addr.to_string()),
        }
    }
}

fn referral(delegation: &Delegation, ttl: u32) -> pb::Referral {
    pb::Referral {
        zone: name_text(&delegation.zone),
        servers: delegation
            .servers
            .iter()
            .map(pb::ServerAddress::from)
            .collect(),
        ttl,
    }
}

impl From<&Answer> for pb::ResolveResponse {
    fn from(answer: &Answer) -> pb::ResolveResponse {
        let (outcome, agent, referral_msg, alias_target) = match &answer.outcome {
            Outcome::Answer(agent) => (
                pb::Outcome::Answer,
                Some(pb::Agent::from(&**agent)),
                None,
                String::new(),
            ),
            Outcome::Alias { target } => (pb::Outcome::Alias, None, None, name_text(target)),
            Outcome::Referral(delegation) => (
                pb::Outcome::Referral,
                None,
                Some(referral(delegation, answer.ttl)),
                String::new(),
            ),
            Outcome::NxDomain => (pb::Outcome::Nxdomain, None, None, String::new()),
            Outcome::NoData => (pb::Outcome::Nodata, None, None, String::new()),
        };
        pb::ResolveResponse {
            name: name_text(&answer.name),
            outcome: outcome as i32,
            zone: name_text(&answer.zone),
            ttl: answer.ttl,
            authoritative: answer.authoritative,
            served_by: answer.served_by.to_string(),
            stale: answer.stale,
            agent,
            aliases: answer
                .aliases
                .iter()
                .map(|alias| pb::Alias {
                    name: name_text(&alias.name),
                    target: name_text(&alias.target),
                    ttl: alias.ttl.unwrap_or(0),
                })
                .collect(),
            referral: referral_msg,
            alias_target,
            zone_serial: answer.zone_serial,
            recursion_available: answer.recursion_available,
            trace: answer.trace.iter().map(pb::TraceStep::from).collect(),
        }
    }
}

fn outcome_from_word(word: Option<&str>) -> pb::Outcome {
    match word {
        Some("answer") => pb::Outcome::Answer,
        Some("alias") => pb::Outcome::Alias,
        Some("referral") => pb::Outcome::Referral,
        Some("nxdomain") => pb::Outcome::Nxdomain,
        Some("nodata") => pb::Outcome::Nodata,
        _ => pb::Outcome::Unspecified,
    }
}

fn outcome_word(outcome: pb::Outcome) -> Option<&'static str> {
    match outcome {
        pb::Outcome::Answer => Some("answer"),
        pb::Outcome::Alias => Some("alias"),
        pb::Outcome::Referral => Some("referral"),
        pb::Outcome::Nxdomain => Some("nxdomain"),
        pb::Outcome::Nodata => Some("nodata"),
        pb::Outcome::Unspecified => None,
    }
}

impl From<&TraceStep> for pb::TraceStep {
    fn from(step: &TraceStep) -> pb::TraceStep {
        pb::TraceStep {
            server: step.server.clone(),
            zone: name_text(&step.zone),
            outcome: outcome_from_word(step.outcome) as i32,
            latency_us: step.latency_us,
            cached: step.cached,
            authoritative: step.authoritative,
            error: step.error.clone().unwrap_or_default(),
        }
    }
}

/// GetZone's answer for a zone served here.
pub fn zone_response(zone: &ZoneSnapshot, served_by: &str) -> pb::GetZoneResponse {
    let header = zone.header();
    pb::GetZoneResponse {
        origin: name_text(&header.origin),
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

fn peer_name(field: &'static str, text: &str) -> Result<Name, PeerDataError> {
    Name::parse(text).map_err(|source| PeerDataError::Name { field, source })
}

fn peer_json(field: &'static str, text: &str) -> Result<serde_json::Value, PeerDataError> {
    serde_json::from_str(text).map_err(|error| PeerDataError::Json {
        field,
        reason: error.to_string(),
    })
}

impl TryFrom<pb::Agent> for Agent {
    type Error = PeerDataError;

    fn try_from(agent: pb::Agent) -> Result<Agent, PeerDataError> {
        let pb::Agent {
            name,
            description,
            tags,
            capabilities,
            version,
            ttl,
            timeout_ms,
            max_retries,
            endpoints,
            input_schema_json,
            output_schema_json,
            metadata_json,
        } = agent;
        let name = Name::parse_agent(&name).map_err(|source| PeerDataError::Name {
            field: "agent name",
            source,
        })?;
        record::check_description(&description)?;
        record::check_labels("tags", &tags)?;
        record::check_labels("capabilities", &capabilities)?;
        record::check_version(&version)?;
        record::check_range(
            "timeout_ms",
            i64::from(timeout_ms),
            1,
            i64::from(limits::TIMEOUT_MS_MAX),
        )?;
        record::check_range(
            "max_retries",
            i64::from(max_retries),
            0,
            i64::from(limits::MAX_RETRIES_MAX),
        )?;
        let endpoints = endpoints
            .into_iter()
            .map(|e| Endpoint::new(&e.url, &e.tool, i64::from(e.priority), i64::from(e.weight)))
            .collect::<Result<Vec<_>, _>>()?;
        record::check_endpoints(&endpoints)?;
        // The default schema is by far the most common: share it instead of recompiling.
        let default_schema = record::default_input_schema();
        let input_schema =
            if input_schema_json.is_empty() || input_schema_json == default_schema.text() {
                default_schema
            } else {
                record::check_schema(
                    "input_schema",
                    peer_json("input_schema", &input_schema_json)?,
                )?
            };
        let output_schema: Option<JsonDoc> = if output_schema_json.is_empty() {
            None
        } else {
            Some(record::check_schema(
                "output_schema",
                peer_json("output_schema", &output_schema_json)?,
            )?)
        };
        let metadata = if metadata_json.is_empty() {
            None
        } else {
            Some(record::check_metadata(peer_json(
                "metadata",
                &metadata_json,
            )?)?)
        };
        Ok(Agent {
            name,
            description,
            tags,
            capabilities,
            version,
            ttl: (ttl > 0).then_some(ttl),
            timeout_ms,
            max_retries,
            endpoints,
            input_schema,
            output_schema,
            metadata,
        })
    }
}

impl TryFrom<pb::ServerAddress> for ServerAddress {
    type Error = PeerDataError;
    fn try_from(server: pb::ServerAddress) -> Result<ServerAddress, PeerDataError> {
        let dns = (!server.dns.is_empty()).then_some(server.dns.as_str());
        Ok(ServerAddress::new(&server.grpc, dns)?)
    }
}

impl TryFrom<pb::Referral> for Delegation {
    type Error = PeerDataError;
    fn try_from(referral: pb::Referral) -> Result<Delegation, PeerDataError> {
        let servers = referral
            .servers
            .into_iter()
            .map(ServerAddress::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        record::check_servers(&servers)?;
        Ok(Delegation {
            zone: peer_name("referral zone", &referral.zone)?,
            servers,
            ttl: Some(referral.ttl),
        })
    }
}

impl TryFrom<pb::ResolveResponse> for Answer {
    type Error = PeerDataError;

    fn try_from(response: pb::ResolveResponse) -> Result<Answer, PeerDataError> {
        let pb::ResolveResponse {
            name,
            outcome,
            zone,
            ttl,
            authoritative,
            served_by,
            stale,
            agent,
            aliases,
            referral,
            alias_target,
            zone_serial,
            recursion_available,
            trace,
        } = response;
        let outcome = match pb::Outcome::try_from(outcome) {
            Ok(pb::Outcome::Answer) => {
                let agent = agent.ok_or(PeerDataError::Missing { field: "agent" })?;
                Outcome::Answer(Arc::new(Agent::try_from(agent)?))
            }
            Ok(pb::Outcome::Alias) => Outcome::Alias {
                target: peer_name("alias target", &alias_target)?,
            },
            Ok(pb::Outcome::Referral) => {
                let referral = referral.ok_or(PeerDataError::Missing { field: "referral" })?;
                Outcome::Referral(Arc::new(Delegation::try_from(referral)?))
            }
            Ok(pb::Outcome::Nxdomain) => Outcome::NxDomain,
            Ok(pb::Outcome::Nodata) => Outcome::NoData,
            Ok(pb::Outcome::Unspecified) | Err(_) => {
                return Err(PeerDataError::UnknownOutcome(outcome));
            }
        };
        let aliases = aliases
            .into_iter()
            .map(|alias| {
                Ok(Arc::new(Alias {
                    name: peer_name("alias name", &alias.name)?,
                    target: peer_name("alias target", &alias.target)?,
                    ttl: (alias.ttl > 0).then_some(alias.ttl),
                }))
            })
            .collect::<Result<Vec<_>, PeerDataError>>()?;
        let trace = trace
            .into_iter()
            .map(|step| {
                Ok(TraceStep {
                    server: step.server,
                    zone: peer_name("trace zone", &step.zone)?,
                    outcome: pb::Outcome::try_from(step.outcome)
                        .ok()
                        .and_then(outcome_word),
                    latency_us: step.latency_us,
                    cached: step.cached,
                    authoritative: step.authoritative,
                    error: (!step.error.is_empty()).then_some(step.error),
                })
            })
            .collect::<Result<Vec<_>, PeerDataError>>()?;
        Ok(Answer {
            name: peer_name("name", &name)?,
            outcome,
            aliases,
            zone: peer_name("zone", &zone)?,
            zone_serial,
            ttl: ttl.min(limits::TTL_MAX),
            authoritative,
            served_by: Arc::from(served_by),
            stale,
            recursion_available,
            trace,
        })
    }
}

// Zone records, as transferred between nodes and kept in the store.

fn alias_message(alias: &Alias) -> pb::Alias {
    pb::Alias {
        name: name_text(&alias.name),
        target: name_text(&alias.target),
        ttl: alias.ttl.unwrap_or(0),
    }
}

fn delegation_message(delegation: &Delegation) -> pb::Referral {
    pb::Referral {
        zone: name_text(&delegation.zone),
        servers: delegation
            .servers
            .iter()
            .map(pb::ServerAddress::from)
            .collect(),
        ttl: delegation.ttl.unwrap_or(0),
    }
}

/// A record with where it came from.
pub fn zone_record(record: &LiveRecord) -> pb::ZoneRecord {
    match record {
        LiveRecord::Agent(live) => pb::ZoneRecord {
            record: Some(pb::zone_record::Record::Agent(pb::Agent::from(
                &*live.agent,
            ))),
            from_file: live.from_file,
            live_endpoints: live.live.iter().cloned().collect(),
        },
        LiveRecord::Alias(alias) => pb::ZoneRecord {
            record: Some(pb::zone_record::Record::Alias(alias_message(alias))),
            ..pb::ZoneRecord::default()
        },
        LiveRecord::Delegation(delegation) => pb::ZoneRecord {
            record: Some(pb::zone_record::Record::Delegation(delegation_message(
                delegation,
            ))),
            ..pb::ZoneRecord::default()
        },
    }
}

/// The kind and name of a record message (unspecified when it holds nothing).
pub fn zone_record_key(record: &pb::ZoneRecord) -> (pb::RecordKind, String) {
    match &record.record {
        Some(pb::zone_record::Record::Agent(agent)) => (pb::RecordKind::Agent, agent.name.clone()),
        Some(pb::zone_record::Record::Alias(alias)) => (pb::RecordKind::Alias, alias.name.clone()),
        Some(pb::zone_record::Record::Delegation(d)) => {
            (pb::RecordKind::Delegation, d.zone.clone())
        }
        None => (pb::RecordKind::Unspecified, String::new()),
    }
}

/// A record from a peer or the store, checked like any other input.
pub fn live_record(record: pb::ZoneRecord) -> Result<LiveRecord, PeerDataError> {
    match record.record {
        Some(pb::zone_record::Record::Agent(agent)) => {
            let agent = Agent::try_from(agent)?;
            Ok(LiveRecord::Agent(LiveAgent {
                agent: Arc::new(agent),
                from_file: record.from_file,
                live: record.live_endpoints.into_iter().collect(),
            }))
        }
        Some(pb::zone_record::Record::Alias(alias)) => Ok(LiveRecord::Alias(Arc::new(Alias {
            name: Name::parse_agent(&alias.name).map_err(|source| PeerDataError::Name {
                field: "alias name",
                source,
            })?,
            target: peer_name("alias target", &alias.target)?,
            ttl: (alias.ttl > 0).then_some(alias.ttl),
        }))),
        Some(pb::zone_record::Record::Delegation(referral)) => {
            let ttl = referral.ttl;
            let mut delegation = Delegation::try_from(referral)?;
            delegation.ttl = (ttl > 0).then_some(ttl);
            Ok(LiveRecord::Delegation(Arc::new(delegation)))
        }
        None => Err(PeerDataError::Missing { field: "record" }),
    }
}

pub fn zone_header(header: &ZoneHeader) -> pb::ZoneHeader {
    pb::ZoneHeader {
        origin: name_text(&header.origin),
        serial: header.serial,
        ttl: header.ttl,
        negative_ttl: header.negative_ttl,
        refresh: header.refresh,
        retry: header.retry,
        expire: header.expire,
        contact: header.contact.clone(),
        servers: header.servers.iter().map(pb::ServerAddress::from).collect(),
    }
}

pub fn zone_header_from(header: pb::ZoneHeader) -> Result<ZoneHeader, PeerDataError> {
    let servers = header
        .servers
        .into_iter()
        .map(ServerAddress::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    record::check_servers(&servers)?;
    record::check_contact(&header.contact)?;
    Ok(ZoneHeader {
        origin: peer_name("zone origin", &header.origin)?,
        serial: header.serial,
        ttl: header.ttl,
        negative_ttl: header.negative_ttl,
        refresh: header.refresh,
        retry: header.retry,
        expire: header.expire,
        contact: header.contact,
        servers,
    })
}

/// A node's search answer for the subtree at `zone` as one part to merge (with the zones it
/// searched and missed), checked like any peer input; `terms` are the query's as analysed
/// here. The error says what was wrong with the answer.
pub fn search_part(
    zone: &Name,
    response: pb::SearchResponse,
    terms: &[String],
) -> Result<(ZoneResult, Vec<pb::ZoneSearched>, Vec<pb::ZoneMissed>), String> {
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
        if !hit_zone.is_at_or_below(zone) || !agent.name.is_at_or_below(&hit_zone) {
            return Err(format!(
                "sent {} from zone {hit_zone}, outside its subtree",
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
    let part = ZoneResult {
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
    part.check(terms.len()).map_err(|error| error.to_string())?;
    Ok((part, response.searched, response.missed))
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
