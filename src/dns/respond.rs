//! One DNS query in, one response out: a pure function of the catalog and the bytes, so it is
//! tested without sockets and both transports share it.
//!
//! Authoritative only (AA on our answers, RA clear): answers, CNAME chains inside the zone,
//! referrals with glue for delegated children (AA clear), NXDOMAIN and NODATA with the SOA at
//! min(SOA TTL, MINIMUM) (RFC 2308), REFUSED outside our zones, FORMERR for malformed
//! queries (a question name over 255 octets on the wire included, RFC 1035 §2.3.4: hickory
//! refuses to parse it), NOTIMP for other opcodes. EDNS(0): our payload is 1232 bytes,
//! version above 0 gets BADVERS with the question echoed, unknown options are ignored (RFC
//! 6891, RFC 8906). An answer that does not fit the UDP payload is sent empty with TC set,
//! and the client retries over TCP.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Record, RecordType};

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::catalog::Catalog;
use crate::dns::cache::{ResponseCache, SimpleQuery, parse_simple};
use crate::dns::direct::{self, Writer};
use crate::dns::message::{EDNS_PAYLOAD, PLAIN_UDP_PAYLOAD, Transport, canonical_text};
use crate::dns::negative;
use crate::dns::records::{self, ApexRecords, dns_name};
use crate::name::Name;
use crate::record::Agent;
use crate::record::limits::ALIAS_CHAIN_MAX;
use crate::zone::ZoneSnapshot;

/// What happened to a query, for logs and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Answered(ResponseCode),
    /// Not answered: it was itself a response, or too short to carry an ID.
    Ignored,
}

/// Answers queries for one door: the full path below, behind the cache of encoded
/// responses, with each zone's question-independent records built once per zone version.
pub struct Answerer {
    catalog: Arc<Catalog>,
    responses: ResponseCache,
    apexes: ArcSwap<Apexes>,
}

/// The question-independent records of each zone, for one catalog generation: read on every
/// query with one atomic load (a shared map would hash and lock), replaced whole when a zone
/// is first asked about after a change (a node serves few zones).
#[derive(Clone, Default)]
struct Apexes {
    generation: u64,
    zones: HashMap<Name, Arc<ApexRecords>>,
}

impl Answerer {
    pub fn new(catalog: Arc<Catalog>, response_cache_bytes: u64) -> Answerer {
        Answerer {
            catalog,
            responses: ResponseCache::new(response_cache_bytes),
            apexes: ArcSwap::from_pointee(Apexes::default()),
        }
    }

    /// Answers `request`: written straight into bytes when the query has the common shape
    /// and the answer one of the shapes [`Self::direct`] writes, else from the cache when the
    /// same question was answered before with the same zone data, else by the full path.
    pub fn answer(&self, request: &[u8], transport: Transport) -> (Option<Vec<u8>>, Disposition) {
        let Some(query) = parse_simple(request) else {
            return self.respond(request, transport);
        };
        if let Some(answer) = self.written(request, &query, transport) {
            return answer;
        }
        let generation = self.catalog.generation();
        if let Some(response) = self.responses.get(request, &query, transport, generation) {
            let code = ResponseCode::from_low(response[3] & 0x0f);
            return (Some(response), Disposition::Answered(code));
        }
        let (response, disposition) = self.respond(request, transport);
        if let Some(bytes) = &response {
            self.responses
                .put(request, &query, transport, generation, bytes);
        }
        (response, disposition)
    }

    /// The answer to `request` written straight into bytes, when it has the common shape and
    /// its answer is one the direct writers cover; `None` when the full path must answer.
    /// (The door tries it first for every simple query; tests and the fuzz target compare it
    /// with the full path.)
    pub fn direct(
        &self,
        request: &[u8],
        transport: Transport,
    ) -> Option<(Option<Vec<u8>>, Disposition)> {
        self.written(request, &parse_simple(request)?, transport)
    }

    /// An agent's TXT, SRV or A/AAAA answer (`dns::direct`), or a negative answer
    /// (`dns::negative`: a missing name, or an existing one without records of the type
    /// asked), written straight into bytes. `None` sends the query on to the cache and the
    /// full path.
    fn written(
        &self,
        request: &[u8],
        query: &SimpleQuery,
        transport: Transport,
    ) -> Option<(Option<Vec<u8>>, Disposition)> {
        if !negative::eligible(query) {
            return None;
        }
        let name = negative::question_text(request, query);
        let zone = self.catalog.find_zone_of_text(&name)?;
        if zone.delegation_covering(&name).is_some() {
            return None;
        }
        let apex = self.apex(&zone);
        let limit = match (transport, query.edns_payload) {
            (Transport::Tcp, _) => usize::from(u16::MAX),
            (Transport::Udp, Some(payload)) => {
                usize::from(payload.clamp(PLAIN_UDP_PAYLOAD, EDNS_PAYLOAD))
            }
            (Transport::Udp, None) => usize::from(PLAIN_UDP_PAYLOAD),
        };
        let ttl = |agent: &Agent| agent.ttl.unwrap_or(zone.header().ttl);
        let positive = |writer: Writer| {
            let bytes = writer.finish(query, limit)?;
            Some((Some(bytes), Disposition::Answered(ResponseCode::NoError)))
        };
        let nxdomain = match classify(&zone, &name, apex.name_servers.len()) {
            Node::Missing => true,
            Node::EmptyNonTerminal => false,
            Node::Agent(agent) => {
                let mut writer = Writer::new(request, query)?;
                match query.qtype {
                    direct::TYPE_TXT => direct::agent_txt(&mut writer, agent, ttl(agent))?,
                    direct::TYPE_A | direct::TYPE_AAAA => {
                        let v6 = query.qtype == direct::TYPE_AAAA;
                        direct::agent_addresses(&mut writer, agent, ttl(agent), v6)?;
                    }
                    // SVCB: the full path (and the cache).
                    qtype if RecordType::from(qtype) == RecordType::SVCB => return None,
                    _ => {}
                }
                if writer.answers() > 0 {
                    return positive(writer);
                }
                false
            }
            Node::Srv(agent) if query.qtype == direct::TYPE_SRV => {
                let mut writer = Writer::new(request, query)?;
                direct::agent_srv(&mut writer, agent, &name, ttl(agent))?;
                if writer.answers() > 0 {
                    return positive(writer);
                }
                false
            }
            Node::Srv(_) => false,
            _ => return None,
        };
        if apex.negative_soa_wire.is_empty() {
            return None;
        }
        let bytes = negative::encode(request, query, nxdomain, &apex.negative_soa_wire, limit)?;
        let code = if nxdomain {
            ResponseCode::NXDomain
        } else {
            ResponseCode::NoError
        };
        Some((Some(bytes), Disposition::Answered(code)))
    }

    fn apex(&self, zone: &ZoneSnapshot) -> Arc<ApexRecords> {
        let generation = self.catalog.generation();
        let table = self.apexes.load();
        if table.generation == generation
            && let Some(apex) = table.zones.get(zone.origin())
        {
            return Arc::clone(apex);
        }
        let built = Arc::new(ApexRecords::build(zone));
        self.apexes.rcu(|current| {
            if current.generation > generation {
                // A newer generation got there first; this answer uses what it built.
                return Apexes::clone(current);
            }
            let mut next = if current.generation == generation {
                Apexes::clone(current)
            } else {
                Apexes {
                    generation,
                    zones: HashMap::new(),
                }
            };
            next.zones.insert(zone.origin().clone(), Arc::clone(&built));
            next
        });
        built
    }

    /// The full path: any query, answered from the catalog.
    pub fn respond(&self, request: &[u8], transport: Transport) -> (Option<Vec<u8>>, Disposition) {
        respond(self, request, transport)
    }
}

/// Builds the response to `request`, or `None` when no response may be sent.
fn respond(
    answerer: &Answerer,
    request: &[u8],
    transport: Transport,
) -> (Option<Vec<u8>>, Disposition) {
    let message = match Message::from_vec(request) {
        Ok(message) => message,
        Err(_) => return malformed(request),
    };
    if message.metadata.message_type == MessageType::Response {
        // Answering responses invites loops between servers.
        return (None, Disposition::Ignored);
    }
    let mut response = Message::response(message.metadata.id, message.metadata.op_code);
    response.metadata.recursion_desired = message.metadata.recursion_desired;
    let udp_limit = match &message.edns {
        Some(edns) => {
            let mut ours = Edns::new();
            ours.set_max_payload(EDNS_PAYLOAD);
            ours.set_version(0);
            response.set_edns(ours);
            if edns.version() > 0 {
                // The question is echoed as in every other answer: clients match a response
                // to their query by it (dnspython rejects a BADVERS without it).
                response.queries = message.queries.clone();
                response.metadata.response_code = ResponseCode::BADVERS;
                return finish(response, usize::from(PLAIN_UDP_PAYLOAD));
            }
            edns.max_payload().clamp(PLAIN_UDP_PAYLOAD, EDNS_PAYLOAD)
        }
        None => PLAIN_UDP_PAYLOAD,
    };
    let limit = match transport {
        Transport::Udp => usize::from(udp_limit),
        Transport::Tcp => usize::from(u16::MAX),
    };
    if message.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return finish(response, limit);
    }
    let [query] = message.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return finish(response, limit);
    };
    response.add_query(query.clone());
    if query.query_class() != DNSClass::IN && query.query_class() != DNSClass::ANY {
        response.metadata.response_code = ResponseCode::Refused;
        return finish(response, limit);
    }
    match query.query_type() {
        // Zone transfers between nodes go over gRPC, not DNS.
        RecordType::AXFR | RecordType::IXFR => {
            response.metadata.response_code = ResponseCode::Refused;
        }
        _ => answer(answerer, query, &mut response),
    }
    finish(response, limit)
}

/// A request hickory could not parse: FORMERR with its ID when it has one.
fn malformed(request: &[u8]) -> (Option<Vec<u8>>, Disposition) {
    let [high, low, flags, ..] = *request else {
        return (None, Disposition::Ignored);
    };
    if flags & 0x80 != 0 {
        return (None, Disposition::Ignored);
    }
    let response = Message::error_msg(
        u16::from_be_bytes([high, low]),
        OpCode::Query,
        ResponseCode::FormErr,
    );
    (
        response.to_vec().ok(),
        Disposition::Answered(ResponseCode::FormErr),
    )
}

/// Encodes the response; one that does not fit is sent with TC and empty sections.
fn finish(mut response: Message, limit: usize) -> (Option<Vec<u8>>, Disposition) {
    let code = response.metadata.response_code;
    let bytes = match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => bytes,
        Ok(_) => {
            response.answers.clear();
            response.authorities.clear();
            response.additionals.clear();
            response.metadata.truncation = true;
            match response.to_vec() {
                Ok(bytes) => bytes,
                Err(_) => return server_failure(&response),
            }
        }
        Err(_) => return server_failure(&response),
    };
    (Some(bytes), Disposition::Answered(code))
}

fn server_failure(response: &Message) -> (Option<Vec<u8>>, Disposition) {
    let mut failure = Message::error_msg(
        response.metadata.id,
        response.metadata.op_code,
        ResponseCode::ServFail,
    );
    failure.queries = response.queries.clone();
    (
        failure.to_vec().ok(),
        Disposition::Answered(ResponseCode::ServFail),
    )
}

/// The SRV owner prefix of an agent: `_mcp._tcp.`.
const SERVICE_PREFIX: &str = "_mcp._tcp.";

/// What a name is, inside one zone.
enum Node<'z> {
    Apex,
    Index,
    Agent(&'z std::sync::Arc<crate::record::Agent>),
    Srv(&'z std::sync::Arc<crate::record::Agent>),
    Alias(&'z std::sync::Arc<crate::record::Alias>),
    NameServer(usize),
    /// Exists only because names below it do.
    EmptyNonTerminal,
    Missing,
}

fn classify<'z>(zone: &'z ZoneSnapshot, name: &str, name_servers: usize) -> Node<'z> {
    let origin = zone.origin().as_str();
    if name == origin {
        return Node::Apex;
    }
    let relative = if origin.is_empty() {
        name
    } else {
        name.strip_suffix(origin)
            .and_then(|r| r.strip_suffix('.'))
            .unwrap_or(name)
    };
    match relative {
        "_index._agents" => return Node::Index,
        "_agents" => return Node::EmptyNonTerminal,
        _ => {}
    }
    if let Some(number) = relative
        .strip_prefix("_ns")
        .and_then(|n| n.parse::<usize>().ok())
        && (1..=name_servers).contains(&number)
    {
        return Node::NameServer(number - 1);
    }
    // Agent and alias names, and so the names above them, have only letters, digits and
    // hyphens (`crate::name`): a name with an `_` anywhere is none of them, and two map
    // lookups are saved on every SRV question.
    if !name.contains('_') {
        if let Some(agent) = zone.agent(name) {
            return Node::Agent(agent);
        }
        if let Some(alias) = zone.alias(name) {
            return Node::Alias(alias);
        }
        if zone.is_empty_non_terminal(name) {
            return Node::EmptyNonTerminal;
        }
    }
    if let Some(agent) = name
        .strip_prefix(SERVICE_PREFIX)
        .and_then(|rest| zone.agent(rest))
    {
        return Node::Srv(agent);
    }
    if name
        .strip_prefix("_tcp.")
        .is_some_and(|rest| zone.agent(rest).is_some())
    {
        return Node::EmptyNonTerminal;
    }
    Node::Missing
}

fn answer(answerer: &Answerer, query: &Query, response: &mut Message) {
    let qname = canonical_text(query.name());
    let Some(zone) = answerer.catalog.find_zone_of_text(&qname) else {
        response.metadata.response_code = ResponseCode::Refused;
        return;
    };
    let header = zone.header();
    if let Some(delegation) = zone.delegation_covering(&qname) {
        let servers = records::name_servers(&delegation.zone, &delegation.servers);
        if servers.is_empty() {
            // The child has no DNS door anywhere: nothing to refer to.
            response.metadata.response_code = ResponseCode::ServFail;
            return;
        }
        let ttl = delegation.ttl.unwrap_or(header.ttl);
        response.add_authorities(records::ns_records(&delegation.zone, &servers, ttl));
        response.add_additionals(records::glue_records(&servers, ttl));
        return;
    }
    response.metadata.authoritative = true;
    let apex = answerer.apex(&zone);
    let qtype = query.query_type();
    let mut current = qname;
    for _ in 0..=ALIAS_CHAIN_MAX {
        let node = classify(&zone, &current, apex.name_servers.len());
        if let Node::Alias(alias) = node {
            let ttl = alias.ttl.unwrap_or(header.ttl);
            response.add_answer(records::alias_cname(alias, ttl));
            let target = alias.target.as_str();
            let in_zone = alias.target.is_at_or_below(zone.origin())
                && zone.delegation_covering(target).is_none();
            if qtype == RecordType::CNAME || !in_zone {
                return;
            }
            current = target.to_string();
            continue;
        }
        if matches!(node, Node::Missing) {
            response.metadata.response_code = ResponseCode::NXDomain;
            response.add_authority(apex.negative_soa.clone());
            return;
        }
        let found = node_records(&zone, &node, &current, qtype, &apex, response);
        if found.is_empty() {
            // NODATA: the SOA at the negative TTL (RFC 2308).
            response.add_authority(apex.negative_soa.clone());
        } else {
            response.add_answers(found);
        }
        return;
    }
}

fn node_records(
    zone: &ZoneSnapshot,
    node: &Node<'_>,
    name: &str,
    qtype: RecordType,
    apex: &ApexRecords,
    response: &mut Message,
) -> Vec<Record> {
    let header = zone.header();
    let any = qtype == RecordType::ANY;
    match node {
        Node::Apex => {
            let mut found = Vec::new();
            if qtype == RecordType::SOA || any {
                found.push(apex.soa.clone());
            }
            if qtype == RecordType::NS || any {
                found.extend(apex.ns.iter().cloned());
                response.add_additionals(apex.glue.iter().cloned());
            }
            if found.is_empty()
                && let Some(agent) = zone.agent(zone.origin().as_str())
            {
                found = agent_records(agent, qtype, agent.ttl.unwrap_or(header.ttl));
            }
            found
        }
        Node::Agent(agent) => agent_records(agent, qtype, agent.ttl.unwrap_or(header.ttl)),
        Node::Srv(agent) => {
            if qtype == RecordType::SRV || any {
                records::agent_srv(agent, &dns_name(name), agent.ttl.unwrap_or(header.ttl))
            } else {
                Vec::new()
            }
        }
        Node::Index => {
            if qtype == RecordType::TXT || any {
                vec![records::index_txt(
                    &dns_name(name),
                    zone.origin(),
                    zone.agent_names(),
                    header.ttl,
                )]
            } else {
                Vec::new()
            }
        }
        Node::NameServer(index) => apex
            .glue
            .get(*index)
            .filter(|record| any || record.record_type() == qtype)
            .cloned()
            .into_iter()
            .collect(),
        Node::EmptyNonTerminal | Node::Missing | Node::Alias(_) => Vec::new(),
    }
}

fn agent_records(agent: &crate::record::Agent, qtype: RecordType, ttl: u32) -> Vec<Record> {
    match qtype {
        // A minimal answer to ANY (RFC 8482): the descriptive record.
        RecordType::TXT | RecordType::ANY => vec![records::agent_txt(agent, ttl)],
        RecordType::SVCB => records::agent_svcb(agent, ttl),
        RecordType::A => records::agent_addresses(agent, ttl, false),
        RecordType::AAAA => records::agent_addresses(agent, ttl, true),
        _ => Vec::new(),
    }
}
