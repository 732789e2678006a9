//! Zone data as DNS records (docs/protocol.md §5).
//!
//! - `<agent>` TXT: DNS-SD style `key=value` strings (RFC 6763): `v=aop1`, description, tags,
//!   capabilities, version, then `url=`, `url2=`, ... one per endpoint.
//! - `<agent>` SVCB: one per endpoint (DNS-AID layout): priority, `alpn=mcp`, `port`, and
//!   for a literal address the agent's own name as target with `ipv4hint`/`ipv6hint`.
//! - `_mcp._tcp.<agent>` SRV: one per endpoint.
//! - `<agent>` A/AAAA: the literal endpoint addresses, if any.
//! - `_index._agents.<zone>` TXT: `agents=name:mcp,...` of the zone's single-label agents.
//! - `<zone>` SOA and NS; name servers are named `_ns1.<zone>`, `_ns2.<zone>`, ... (a label
//!   no agent name can take), with A/AAAA glue from `servers[].dns`. Glue carries addresses,
//!   not ports: resolvers ask port 53.

use std::net::IpAddr;

use hickory_proto::rr::rdata::svcb::{Alpn, IpHint, SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, SRV, SVCB, TXT};
use hickory_proto::rr::{Name as DnsName, RData, Record};

use crate::name::Name;
use crate::record::{Agent, Alias, Endpoint, ServerAddress, ZoneHeader, answer_endpoints};
use crate::zone::ZoneSnapshot;

/// Longest character-string in a TXT record (RFC 1035 section 3.3).
pub(crate) const TXT_STRING_MAX: usize = 255;

/// The protocol label of our agents in the DNS-AID index and SRV owner names.
pub const PROTOCOL: &str = "mcp";

/// A DNS name from canonical text ("" for the root). Our names are LDH or `_`-prefixed
/// service labels, always valid DNS names; the fallback is never reached with our data.
pub fn dns_name(text: &str) -> DnsName {
    if text.is_empty() {
        return DnsName::root();
    }
    DnsName::from_ascii(format!("{text}.")).unwrap_or_else(|_| DnsName::root())
}

fn record(owner: &DnsName, ttl: u32, rdata: RData) -> Record {
    Record::from_rdata(owner.clone(), ttl, rdata)
}

/// Cuts text at `limit` bytes on a UTF-8 character boundary.
fn cut(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The agent's TXT record.
pub fn agent_txt(agent: &Agent, ttl: u32) -> Record {
    let mut strings = vec!["v=aop1".to_string()];
    let mut push = |key: &str, value: &str| {
        if !value.is_empty() {
            strings.push(cut(&format!("{key}={value}"), TXT_STRING_MAX).to_string());
        }
    };
    push("description", &agent.description);
    push("tags", &agent.tags.join(","));
    push("capabilities", &agent.capabilities.join(","));
    push("version", &agent.version);
    for (index, endpoint) in answer_endpoints(&agent.endpoints).into_iter().enumerate() {
        let key = if index == 0 {
            "url".to_string()
        } else {
            format!("url{}", index + 1)
        };
        push(&key, &endpoint.url);
    }
    record(
        &dns_name(agent.name.as_str()),
        ttl,
        RData::TXT(TXT::new(strings)),
    )
}

/// Where an endpoint is: its target name and port, and its address when the URL holds a
/// literal one.
struct Location {
    target: DnsName,
    port: u16,
    address: Option<IpAddr>,
}

/// What an endpoint's URL says about where it is, before any DNS name is built: the one
/// reading of a URL that both the record builders here and the direct writer
/// (`dns::direct`) use, so they cannot disagree.
pub(crate) struct Place {
    /// The host name, lowercase without a trailing dot; `None` for a literal address (the
    /// target is then the agent's own name).
    pub host: Option<String>,
    pub port: u16,
    pub address: Option<IpAddr>,
}

pub(crate) fn place(endpoint: &Endpoint) -> Option<Place> {
    let url = url::Url::parse(&endpoint.url).ok()?;
    let port = url.port_or_known_default()?;
    Some(match url.host()? {
        url::Host::Domain(host) => Place {
            host: Some(host.trim_end_matches('.').to_ascii_lowercase()),
            port,
            address: None,
        },
        url::Host::Ipv4(ip) => Place {
            host: None,
            port,
            address: Some(IpAddr::V4(ip)),
        },
        url::Host::Ipv6(ip) => Place {
            host: None,
            port,
            address: Some(IpAddr::V6(ip)),
        },
    })
}

fn locate(agent: &Agent, endpoint: &Endpoint) -> Option<Location> {
    let place = place(endpoint)?;
    let target = match &place.host {
        Some(host) => dns_name(host),
        None => dns_name(agent.name.as_str()),
    };
    Some(Location {
        target,
        port: place.port,
        address: place.address,
    })
}

/// Endpoints in the order clients should try them: healthy first and down ones left out
/// (docs/protocol.md §9.1), then lowest priority first, then heaviest weight. Some clients
/// (the DNS-AID reference client among them) use only the first SVCB record on the wire, so
/// the order matters.
pub(crate) fn preferred_order(agent: &Agent) -> Vec<&Endpoint> {
    let mut endpoints = answer_endpoints(&agent.endpoints);
    endpoints.sort_by_key(|e| {
        (
            e.health.state.rank(),
            e.priority,
            std::cmp::Reverse(e.weight),
        )
    });
    endpoints
}

/// One SVCB per endpoint, preferred first, keys in increasing order (alpn=1, port=3,
/// ipv4hint=4, ipv6hint=6), never `mandatory` (every client must understand these keys).
pub fn agent_svcb(agent: &Agent, ttl: u32) -> Vec<Record> {
    let owner = dns_name(agent.name.as_str());
    preferred_order(agent)
        .into_iter()
        .filter_map(|endpoint| {
            let location = locate(agent, endpoint)?;
            let mut params = vec![
                (
                    SvcParamKey::Alpn,
                    SvcParamValue::Alpn(Alpn(vec![PROTOCOL.to_string()])),
                ),
                (SvcParamKey::Port, SvcParamValue::Port(location.port)),
            ];
            match location.address {
                Some(IpAddr::V4(ip)) => params.push((
                    SvcParamKey::Ipv4Hint,
                    SvcParamValue::Ipv4Hint(IpHint(vec![A(ip)])),
                )),
                Some(IpAddr::V6(ip)) => params.push((
                    SvcParamKey::Ipv6Hint,
                    SvcParamValue::Ipv6Hint(IpHint(vec![AAAA(ip)])),
                )),
                None => {}
            }
            let svcb = SVCB::new(endpoint.priority, location.target, params);
            Some(record(&owner, ttl, RData::SVCB(svcb)))
        })
        .collect()
}

/// `_mcp._tcp.<agent>` SRV, one per endpoint, preferred first.
pub fn agent_srv(agent: &Agent, owner: &DnsName, ttl: u32) -> Vec<Record> {
    preferred_order(agent)
        .into_iter()
        .filter_map(|endpoint| {
            let location = locate(agent, endpoint)?;
            let srv = SRV::new(
                endpoint.priority,
                endpoint.weight,
                location.port,
                location.target,
            );
            Some(record(owner, ttl, RData::SRV(srv)))
        })
        .collect()
}

/// A or AAAA records for the agent's literal endpoint addresses, without duplicates.
pub fn agent_addresses(agent: &Agent, ttl: u32, v6: bool) -> Vec<Record> {
    let owner = dns_name(agent.name.as_str());
    let mut seen = Vec::new();
    for endpoint in answer_endpoints(&agent.endpoints) {
        if let Some(address) = locate(agent, endpoint).and_then(|l| l.address)
            && address.is_ipv6() == v6
            && !seen.contains(&address)
        {
            seen.push(address);
        }
    }
    seen.into_iter()
        .map(|address| record(&owner, ttl, address_rdata(address)))
        .collect()
}

fn address_rdata(address: IpAddr) -> RData {
    match address {
        IpAddr::V4(ip) => RData::A(A(ip)),
        IpAddr::V6(ip) => RData::AAAA(AAAA(ip)),
    }
}

pub fn alias_cname(alias: &Alias, ttl: u32) -> Record {
    record(
        &dns_name(alias.name.as_str()),
        ttl,
        RData::CNAME(CNAME(dns_name(alias.target.as_str()))),
    )
}

/// `agents=analyst:mcp,writer:mcp,...`: the zone's single-label agents, whole entries only
/// within one 255-byte string (the full list is on gRPC and MCP).
pub fn index_txt<'a>(
    owner: &DnsName,
    origin: &Name,
    agents: impl IntoIterator<Item = &'a Name>,
    ttl: u32,
) -> Record {
    let mut text = String::from("agents=");
    let mut first = true;
    for name in agents {
        let Some(label) = name.relative_to(origin) else {
            continue;
        };
        if label.contains('.') || label == "@" {
            continue;
        }
        let entry_len = label.len() + 1 + PROTOCOL.len() + usize::from(!first);
        if text.len() + entry_len > TXT_STRING_MAX {
            break;
        }
        if !first {
            text.push(',');
        }
        text.push_str(label);
        text.push(':');
        text.push_str(PROTOCOL);
        first = false;
    }
    record(owner, ttl, RData::TXT(TXT::new(vec![text])))
}

/// The servers of a zone that have a DNS door, with their name-server names.
pub fn name_servers(zone: &Name, servers: &[ServerAddress]) -> Vec<(DnsName, IpAddr)> {
    servers
        .iter()
        .filter_map(|server| server.dns)
        .enumerate()
        .map(|(index, dns)| (name_server_name(zone, index + 1), dns.ip()))
        .collect()
}

/// `_nsN.<zone>`: the name of a zone's Nth name server (1-based).
fn name_server_name(zone: &Name, number: usize) -> DnsName {
    if zone.is_root() {
        dns_name(&format!("_ns{number}"))
    } else {
        dns_name(&format!("_ns{number}.{}", zone.as_str()))
    }
}

pub fn ns_records(zone: &Name, servers: &[(DnsName, IpAddr)], ttl: u32) -> Vec<Record> {
    let owner = dns_name(zone.as_str());
    servers
        .iter()
        .map(|(name, _)| record(&owner, ttl, RData::NS(NS(name.clone()))))
        .collect()
}

pub fn glue_records(servers: &[(DnsName, IpAddr)], ttl: u32) -> Vec<Record> {
    servers
        .iter()
        .map(|(name, address)| record(name, ttl, address_rdata(*address)))
        .collect()
}

/// The zone's SOA. RNAME is the contact mailbox written as a name (`ops@acme.example` ->
/// `ops.acme.example.`); MINIMUM is the negative TTL (RFC 2308).
pub fn soa(header: &ZoneHeader, mname: DnsName, ttl: u32) -> Record {
    let rname_text = if header.contact.is_empty() {
        format!("hostmaster.{}", header.origin.as_str())
    } else {
        header.contact.replacen('@', ".", 1)
    };
    let rname = DnsName::from_ascii(format!("{}.", rname_text.trim_end_matches('.')))
        .unwrap_or_else(|_| dns_name(&format!("hostmaster.{}", header.origin.as_str())));
    let soa = SOA::new(
        mname,
        rname,
        header.serial,
        i32::try_from(header.refresh).unwrap_or(i32::MAX),
        i32::try_from(header.retry).unwrap_or(i32::MAX),
        i32::try_from(header.expire).unwrap_or(i32::MAX),
        header.negative_ttl,
    );
    record(&dns_name(header.origin.as_str()), ttl, RData::SOA(soa))
}

/// `record` in wire format without name compression (empty if it cannot be encoded, which
/// sends negative answers down the full path).
fn uncompressed(record: &Record) -> Vec<u8> {
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
    let mut bytes = Vec::new();
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    match record.emit(&mut encoder) {
        Ok(()) => bytes,
        Err(_) => Vec::new(),
    }
}

/// A zone's records that do not depend on the question, built once per zone version rather
/// than on every query (names parsed, SOA assembled).
pub struct ApexRecords {
    pub name_servers: Vec<(DnsName, IpAddr)>,
    /// The SOA at the zone TTL, for SOA and ANY questions.
    pub soa: Record,
    /// The SOA at min(TTL, MINIMUM), for the AUTHORITY of negative answers (RFC 2308).
    pub negative_soa: Record,
    /// The same record encoded, names uncompressed so it can go anywhere in a message (the
    /// negative answers written straight into bytes, `dns::negative`).
    pub negative_soa_wire: Vec<u8>,
    pub ns: Vec<Record>,
    pub glue: Vec<Record>,
}

impl ApexRecords {
    pub fn build(zone: &ZoneSnapshot) -> ApexRecords {
        let header = zone.header();
        let name_servers = name_servers(zone.origin(), &header.servers);
        // MNAME: the first name server, named as it would be even when none has a DNS door.
        let primary = name_server_name(zone.origin(), 1);
        let negative_soa = soa(header, primary.clone(), header.negative_cache_ttl());
        ApexRecords {
            soa: soa(header, primary, header.ttl),
            negative_soa_wire: uncompressed(&negative_soa),
            negative_soa,
            ns: ns_records(zone.origin(), &name_servers, header.ttl),
            glue: glue_records(&name_servers, header.ttl),
            name_servers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_whole_characters() {
        let text = format!("{}é", "a".repeat(254));
        assert_eq!(cut(&text, 255).len(), 254);
        assert_eq!(cut("short", 255), "short");
    }
}
