//! The entry points of the fuzz targets (`fuzz/`, cargo-fuzz; docs/protocol.md §8.3): one
//! function per decoder that reads bytes another party controls, taking those bytes and
//! running the same code a node or the gateway runs on them.
//!
//! They live in the library, not in `fuzz/`, so that they are compiled, linted and tested
//! with everything else (a refactor that breaks one fails `cargo build`, not a fuzz run
//! weeks later), and so that a regression test replays a crashing input through exactly the
//! path the fuzzer found it on. Each function also checks what must hold of any input, and
//! panics when it does not: a panic is what the fuzzer reports.
//!
//! Not part of the API: hidden from the docs, and free to change with the targets.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use prost::Message as _;
use serde_json::Value;

use crate::authority::live::LiveZone;
use crate::catalog::Catalog;
use crate::config::NodeConfigFile;
use crate::dns::message::Transport;
use crate::dns::respond::Answerer;
use crate::gateway::args;
use crate::gateway::call::Validators;
use crate::grpc::codec::decode_request;
use crate::grpc::convert::{decode_cursor, page_size, request_name, search_query};
use crate::grpc::{pb, update};
use crate::keys::UpdateKey;
use crate::name::Name;
use crate::record::{Agent, LiveRecord, ZoneChange};
use crate::store::{StoredZoneData, decode_record_value, decode_zone_value};
use crate::zone::ZoneSnapshot;
use crate::zone::dump::write_zone_file;

/// The zones shipped in `zones/`: what the DNS and MCP targets answer from, so that inputs
/// reach real answers, referrals and schemas rather than only REFUSED.
const SHIPPED_ZONES: [(&str, &str); 5] = [
    ("zones/root.toml", include_str!("../zones/root.toml")),
    ("zones/acme.toml", include_str!("../zones/acme.toml")),
    (
        "zones/finance.acme.toml",
        include_str!("../zones/finance.acme.toml"),
    ),
    ("zones/globex.toml", include_str!("../zones/globex.toml")),
    (
        "zones/research.globex.toml",
        include_str!("../zones/research.globex.toml"),
    ),
];

fn shipped_zones() -> Vec<ZoneSnapshot> {
    SHIPPED_ZONES
        .iter()
        .filter_map(|(path, text)| crate::zone::file::parse(Path::new(path), text).ok())
        .collect()
}

/// A zone file (docs/protocol.md §2). One that loads must survive `aop zone dump`: the dump
/// loads back to the same records (the dump's own contract, `zone::dump`).
pub fn zone_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(zone) = crate::zone::file::parse(Path::new("fuzz.toml"), text) else {
        return;
    };
    let dumped = write_zone_file(&zone, &|_, _| None);
    let again = match crate::zone::file::parse(Path::new("dump.toml"), &dumped) {
        Ok(again) => again,
        Err(error) => panic!("the dump of a loaded zone does not load: {error}\n{dumped}"),
    };
    assert_eq!(zone.header(), again.header(), "the dump changed the header");
    let (before, after) = (sorted(zone.records()), sorted(again.records()));
    assert!(before == after, "the dump changed the records:\n{dumped}");
}

type SortedRecords = (
    Vec<Arc<crate::record::Agent>>,
    Vec<Arc<crate::record::Alias>>,
    Vec<Arc<crate::record::Delegation>>,
);

fn sorted(records: crate::zone::ZoneRecords) -> SortedRecords {
    let mut agents = records.agents;
    agents.sort_by(|a, b| a.name.cmp(&b.name));
    let mut aliases = records.aliases;
    aliases.sort_by(|a, b| a.name.cmp(&b.name));
    let mut delegations = records.delegations;
    delegations.sort_by(|a, b| a.zone.cmp(&b.zone));
    (agents, aliases, delegations)
}

/// A key file (`aop key new`). Whatever is wrong, the error never quotes the secret.
pub fn key_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match UpdateKey::parse_file(Path::new("fuzz.key"), text) {
        Ok(key) => {
            let again = UpdateKey::parse_file(Path::new("again.key"), &key.to_key_file());
            assert!(
                again.is_ok(),
                "a key's own key file does not load: {again:?}"
            );
        }
        Err(error) => {
            let message = error.to_string();
            if let Some(secret) = secret_value(text) {
                assert!(
                    !message.contains(secret),
                    "a key file error quotes the secret: {message}"
                );
            }
        }
    }
}

/// The value of a line `secret = "..."`, when it could be a secret that only the secret line
/// holds: at least 16 characters of the base64 alphabet, found nowhere else in the file. (A
/// shorter one, or one of other characters, or one the file also uses as a name, may appear
/// in a message without being quoted from the secret: the fuzzer once made the secret a piece
/// of the very message the file's error produced.)
fn secret_value(text: &str) -> Option<&str> {
    text.lines().find_map(|line| {
        let value = line
            .trim_start()
            .strip_prefix("secret")?
            .trim_start()
            .strip_prefix('=')?
            .trim()
            .strip_prefix('"')?
            .strip_suffix('"')?;
        let base64 = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
        (value.len() >= 16 && base64 && text.matches(value).count() == 1).then_some(value)
    })
}

/// A node config file (`deploy/nodes/*.toml`), and the values the node reads from it.
pub fn node_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = NodeConfigFile::parse(Path::new("/etc/aop/fuzz.toml"), text) else {
        return;
    };
    for key in config.update_key {
        let _ = UpdateKey::try_from(key);
    }
    for secondary in &config.secondary {
        let _ = Name::parse(&secondary.zone);
    }
}

/// The DNS door's answerer over the shipped zones, shared by every input as the door shares
/// it by every query (the response cache included). Without `finance.acme`, so that names
/// below it get referrals.
fn answerer() -> &'static Answerer {
    static ANSWERER: OnceLock<Answerer> = OnceLock::new();
    ANSWERER.get_or_init(|| {
        let zones = shipped_zones()
            .into_iter()
            .filter(|zone| zone.origin().as_str() != "finance.acme")
            .collect();
        Answerer::new(Arc::new(Catalog::new("fuzz", zones)), 1 << 20)
    })
}

/// What any response must be: a DNS message for the request's ID, never longer than the
/// transport carries.
fn check_response(request: &[u8], response: Option<&[u8]>, transport: Transport) {
    let Some(response) = response else {
        return;
    };
    assert!(response.len() >= 12, "a response shorter than a header");
    assert_eq!(response[..2], request[..2], "a response with another ID");
    assert!(response[2] & 0x80 != 0, "a response without QR");
    let limit = match transport {
        Transport::Udp => usize::from(crate::dns::message::EDNS_PAYLOAD),
        Transport::Tcp => usize::from(u16::MAX),
    };
    assert!(
        response.len() <= limit,
        "a response over the transport's size"
    );
}

/// The DNS door's fast path: the common query shape parsed without allocating, the response
/// cache (each query asked twice, so the second is a cache hit with patched ID and question)
/// and the answers written straight into bytes (agents' TXT, SRV and addresses, negatives).
pub fn dns_fast(data: &[u8]) {
    let answerer = answerer();
    for transport in [Transport::Udp, Transport::Tcp] {
        for _ in 0..2 {
            let (response, _) = answerer.answer(data, transport);
            check_response(data, response.as_deref(), transport);
        }
        if let Some((response, code)) = answerer.direct(data, transport) {
            check_response(data, response.as_deref(), transport);
            // A positive answer written directly is the full path's, byte for byte.
            if let Some(bytes) = &response
                && bytes.get(6..8).is_some_and(|count| count != [0, 0])
            {
                let (full, full_code) = answerer.respond(data, transport);
                assert_eq!(code, full_code, "the direct writer's RCODE");
                assert_eq!(
                    full.as_deref(),
                    Some(bytes.as_slice()),
                    "the direct writer's bytes"
                );
            }
        }
    }
}

/// The DNS door's full path: any message parsed by hickory and answered from the catalog.
pub fn dns_full(data: &[u8]) {
    let answerer = answerer();
    for transport in [Transport::Udp, Transport::Tcp] {
        let (response, _) = answerer.respond(data, transport);
        check_response(data, response.as_deref(), transport);
    }
}

/// A gRPC message as the door decodes it (the server's codec, then the checks that turn it
/// into domain values), or as a node decodes a peer's answer (`wire`). The first byte picks
/// the message; the rest is its protobuf encoding.
pub fn grpc_message(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % 13 {
        0 => {
            if let Ok(request) = decode_request::<pb::ResolveRequest>(bytes) {
                let _ = request_name("name", &request.name);
            }
        }
        1 => {
            if let Ok(request) = decode_request::<pb::GetZoneRequest>(bytes) {
                let _ = request_name("zone", &request.zone);
            }
        }
        2 => {
            if let Ok(request) = decode_request::<pb::ListAgentsRequest>(bytes) {
                let _ = request_name("zone", &request.zone);
                let _ = page_size(request.page_size);
                let _ = decode_cursor(&request.cursor);
            }
        }
        3 => {
            if let Ok(request) = decode_request::<pb::RegisterRequest>(bytes) {
                let _ = update::registration(&request);
                let _ = update::register_fields(&request);
            }
        }
        4 => {
            if let Ok(request) = decode_request::<pb::RenewRequest>(bytes) {
                let _ = update::renewal(&request);
                let _ = update::renew_fields(&request);
            }
        }
        5 => {
            if let Ok(request) = decode_request::<pb::DeregisterRequest>(bytes) {
                let _ = update::deregistration(&request);
                let _ = update::deregister_fields(&request);
            }
        }
        6 => {
            if let Ok(request) = decode_request::<pb::TransferRequest>(bytes) {
                let _ = request_name("zone", &request.zone);
            }
        }
        7 => {
            if let Ok(request) = decode_request::<pb::NotifyRequest>(bytes) {
                let _ = request_name("zone", &request.zone);
            }
        }
        8 => {
            if let Ok(request) = decode_request::<pb::WatchRequest>(bytes) {
                let _ = request_name("zone", &request.zone);
            }
        }
        9 => {
            if let Ok(request) = decode_request::<pb::SearchRequest>(bytes) {
                let scope = if request.zone.is_empty() {
                    Ok(Name::root())
                } else {
                    request_name("zone", &request.zone)
                };
                if let Ok(scope) = scope {
                    let _ = search_query(&request, &scope);
                }
            }
        }
        // What a peer sends back: an answer, a transfer, a Watch event.
        10 => {
            if let Ok(response) = decode_request::<pb::ResolveResponse>(bytes) {
                let _ = crate::answer::Answer::try_from(response);
            }
        }
        11 => {
            if let Ok(chunk) = decode_request::<pb::TransferChunk>(bytes) {
                if let Some(header) = chunk.header {
                    let _ = crate::record::ZoneHeader::try_from(header);
                }
                for record in chunk.records {
                    let _ = LiveRecord::try_from(record);
                }
                for change in chunk.changes {
                    let _ = ZoneChange::try_from(change);
                }
            }
        }
        _ => {
            if let Ok(event) = decode_request::<pb::WatchEvent>(bytes) {
                let _ = Name::parse(&event.zone);
                for change in event.changes {
                    let _ = ZoneChange::try_from(change);
                }
            }
        }
    }
}

/// Values read back from the store: a `zones` row and the `records` rows of that zone, then
/// the zone rebuilt from them as a node does at start. The input is a sequence of values,
/// each preceded by its length (two bytes, big-endian): the zone's first, then its records.
pub fn stored_values(data: &[u8]) {
    let mut values = Vec::new();
    let mut rest = data;
    while let [high, low, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*high, *low])).min(tail.len());
        let (value, after) = tail.split_at(len);
        values.push(value);
        rest = after;
    }
    let Some((zone, records)) = values.split_first() else {
        return;
    };
    let Ok((meta, header)) = decode_zone_value(zone) else {
        return;
    };
    let mut decoded = Vec::new();
    for record in records {
        match decode_record_value(record) {
            Ok(record) => decoded.push(record),
            // The store refuses the whole zone when one record is bad.
            Err(_) => return,
        }
    }
    let _ = LiveZone::from_store(StoredZoneData {
        header,
        file_serial: meta.file_serial,
        primary_url: meta.primary_url,
        refreshed_unix_ms: meta.refreshed_unix_ms,
        records: decoded,
        leases: Vec::new(),
    });
}

/// A gateway MCP request body: the body checks (one JSON-RPC message, nesting bounded), the
/// params check of `tools/call`, then its arguments read as the meta tools read them and
/// validated against the input schema of every agent in the shipped zones.
pub fn mcp_arguments(data: &[u8]) {
    let _ = crate::mcp::body::check(data);
    let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Some(Value::String(method)) = message.get("method") else {
        return;
    };
    let params = message.get("params");
    let _ = crate::mcp::params::misfit(method, params);
    let Some(Value::Object(arguments)) = params.and_then(|params| params.get("arguments")) else {
        return;
    };
    let _ = args::string_arg(arguments, "zone");
    let _ = args::required_string_arg(arguments, "name", "the agent's name");
    let _ = args::strings_arg(arguments, "tags");
    let _ = args::timeout_ms_arg(arguments);
    let _ = args::limit_arg(arguments);
    let validators = validators();
    for agent in shipped_agents() {
        let _ = validators.check(agent, arguments);
    }
}

fn validators() -> &'static Validators {
    static VALIDATORS: OnceLock<Validators> = OnceLock::new();
    VALIDATORS.get_or_init(Validators::new)
}

fn shipped_agents() -> &'static [Arc<Agent>] {
    static AGENTS: OnceLock<Vec<Arc<Agent>>> = OnceLock::new();
    AGENTS.get_or_init(|| {
        shipped_zones()
            .into_iter()
            .flat_map(|zone| zone.records().agents)
            .collect()
    })
}

/// One seed input: the target it is for, a file name, the bytes.
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The seed corpora of every target (`fuzz/seeds/`, written by `cargo run --example
/// fuzz_seeds`): the shipped zone files, node configs and key, DNS queries of every shape the
/// door tells apart, and protobuf messages encoded from the shipped zones.
pub fn seeds() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        seeds.push(Seed {
            target,
            name: name.to_string(),
            bytes,
        });
    };
    for (path, text) in SHIPPED_ZONES {
        add("zone_file", file_name(path), text.as_bytes().to_vec());
    }
    for (path, text) in SHIPPED_CONFIGS {
        add("node_config", file_name(path), text.as_bytes().to_vec());
    }
    add("key_file", "ci-bot.key", SHIPPED_KEY.as_bytes().to_vec());

    for (name, query) in dns_queries() {
        add("dns_fast", &name, query.clone());
        add("dns_full", &name, query);
    }

    let zones = shipped_zones();
    add(
        "grpc_message",
        "resolve",
        message(
            0,
            &pb::ResolveRequest {
                name: "analyst.finance.acme".into(),
                recursive: true,
                trace: true,
            },
        ),
    );
    add(
        "grpc_message",
        "list_agents",
        message(
            2,
            &pb::ListAgentsRequest {
                zone: "acme".into(),
                page_size: 10,
                cursor: crate::grpc::convert::encode_cursor(&Name::root()),
                recursive: false,
            },
        ),
    );
    if let Some(agent) = shipped_agents().first() {
        let wire = pb::Agent::from(agent.as_ref());
        add(
            "grpc_message",
            "register",
            message(
                3,
                &pb::RegisterRequest {
                    zone: agent
                        .name
                        .parent()
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    name: agent.name.to_string(),
                    endpoint: wire.endpoints.first().cloned(),
                    lease_seconds: 60,
                    fields: Some(pb::AgentFields {
                        description: Some(agent.description.clone()),
                        ..pb::AgentFields::default()
                    }),
                },
            ),
        );
        add(
            "grpc_message",
            "renew",
            message(
                4,
                &pb::RenewRequest {
                    zone: "finance.acme".into(),
                    name: agent.name.to_string(),
                    url: "http://127.0.0.1:7403/mcp".into(),
                    lease_seconds: 30,
                },
            ),
        );
    }
    add(
        "grpc_message",
        "search",
        message(
            9,
            &pb::SearchRequest {
                query: "forecast filings".into(),
                zone: "acme".into(),
                tags: vec!["finance".into()],
                capabilities: vec!["forecast".into()],
                limit: 5,
                max_depth: Some(2),
                recursive: true,
            },
        ),
    );
    for zone in &zones {
        let origin = zone.origin().to_string();
        let records: Vec<pb::ZoneRecord> = zone
            .records()
            .agents
            .iter()
            .map(|agent| pb::ZoneRecord::from(&LiveRecord::Agent(live_agent(agent))))
            .chain(
                zone.records()
                    .aliases
                    .iter()
                    .map(|alias| pb::ZoneRecord::from(&LiveRecord::Alias(Arc::clone(alias)))),
            )
            .chain(zone.records().delegations.iter().map(|delegation| {
                pb::ZoneRecord::from(&LiveRecord::Delegation(Arc::clone(delegation)))
            }))
            .collect();
        let header = pb::ZoneHeader::from(zone.header());
        add(
            "grpc_message",
            &format!("transfer-{}", origin_file(&origin)),
            message(
                11,
                &pb::TransferChunk {
                    header: Some(header.clone()),
                    full: true,
                    records: records.clone(),
                    changes: Vec::new(),
                    served_by: "seed".into(),
                },
            ),
        );
        let change = pb::ZoneChange {
            from_serial: zone.serial().wrapping_sub(1),
            serial: zone.serial(),
            changes: records
                .iter()
                .take(2)
                .map(|record| pb::RecordChange {
                    change: Some(pb::record_change::Change::Put(record.clone())),
                })
                .collect(),
            header: Some(header.clone()),
        };
        add(
            "grpc_message",
            &format!("watch-{}", origin_file(&origin)),
            message(
                12,
                &pb::WatchEvent {
                    zone: origin.clone(),
                    serial: zone.serial(),
                    changes: vec![change],
                    reset: false,
                },
            ),
        );
        let mut stored = Vec::new();
        let mut push = |value: Vec<u8>| {
            let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
            stored.extend(len.to_be_bytes());
            stored.extend(value.into_iter().take(usize::from(len)));
        };
        push(
            pb::StoredZone {
                header: Some(header),
                file_serial: zone.serial(),
                primary_url: String::new(),
                first_seq: 0,
                next_seq: 0,
                refreshed_unix_ms: 0,
            }
            .encode_to_vec(),
        );
        for record in &records {
            push(record.encode_to_vec());
        }
        add("stored_values", &origin_file(&origin), stored);
    }

    let call = |arguments: Value| {
        serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "search_agents", "arguments": arguments}
        })
        .to_string()
        .into_bytes()
    };
    add(
        "mcp_arguments",
        "search",
        call(
            serde_json::json!({"query": "forecast", "zone": "acme", "tags": ["finance"], "limit": 5}),
        ),
    );
    add(
        "mcp_arguments",
        "agent-task",
        call(serde_json::json!({"task": "summarise the filings", "timeout_ms": 1000})),
    );
    add(
        "mcp_arguments",
        "wrong-types",
        call(serde_json::json!({"task": 7, "tags": "finance", "limit": 0, "name": ["x"]})),
    );
    add(
        "mcp_arguments",
        "list",
        br#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"cursor":"abc"}}"#.to_vec(),
    );
    seeds
}

/// A `grpc_message` input: the selector byte, then the message.
fn message(selector: u8, message: &impl prost::Message) -> Vec<u8> {
    let mut bytes = vec![selector];
    bytes.extend(message.encode_to_vec());
    bytes
}

fn live_agent(agent: &Arc<Agent>) -> crate::record::LiveAgent {
    crate::record::LiveAgent {
        agent: Arc::clone(agent),
        from_file: true,
        live: Default::default(),
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn origin_file(origin: &str) -> String {
    if origin == "." {
        "root".into()
    } else {
        origin.to_string()
    }
}

/// The node configs and key of `deploy/`.
const SHIPPED_CONFIGS: [(&str, &str); 6] = [
    (
        "deploy/nodes/root.toml",
        include_str!("../deploy/nodes/root.toml"),
    ),
    (
        "deploy/nodes/acme.toml",
        include_str!("../deploy/nodes/acme.toml"),
    ),
    (
        "deploy/nodes/finance-1.toml",
        include_str!("../deploy/nodes/finance-1.toml"),
    ),
    (
        "deploy/nodes/finance-2.toml",
        include_str!("../deploy/nodes/finance-2.toml"),
    ),
    (
        "deploy/nodes/globex.toml",
        include_str!("../deploy/nodes/globex.toml"),
    ),
    (
        "deploy/nodes/research-globex.toml",
        include_str!("../deploy/nodes/research-globex.toml"),
    ),
];
const SHIPPED_KEY: &str = include_str!("../deploy/keys/ci-bot.key");

/// A DNS query: one question for `name` (uncompressed), of `qtype`, class IN, recursion
/// desired, with an OPT record of `payload` when given.
fn dns_query(id: u16, name: &str, qtype: u16, payload: Option<u16>) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend(id.to_be_bytes());
    bytes.extend([0x01, 0x00]);
    bytes.extend([0, 1, 0, 0, 0, 0, 0, u8::from(payload.is_some())]);
    for label in name.split('.').filter(|label| !label.is_empty()) {
        bytes.push(u8::try_from(label.len()).unwrap_or(63).min(63));
        bytes.extend(label.bytes().take(63));
    }
    bytes.push(0);
    bytes.extend(qtype.to_be_bytes());
    bytes.extend(1u16.to_be_bytes());
    if let Some(payload) = payload {
        // OPT: root owner, TYPE 41, CLASS = payload, TTL = ext-rcode/version/flags, no data.
        bytes.extend([0, 0, 41]);
        bytes.extend(payload.to_be_bytes());
        bytes.extend([0, 0, 0, 0, 0, 0]);
    }
    bytes
}

fn dns_queries() -> Vec<(String, Vec<u8>)> {
    const TXT: u16 = 16;
    const SVCB: u16 = 64;
    const A: u16 = 1;
    const SRV: u16 = 33;
    const NS: u16 = 2;
    const SOA: u16 = 6;
    const ANY: u16 = 255;
    const CNAME: u16 = 5;
    let mut queries = vec![
        ("txt-agent", dns_query(1, "writer.acme", TXT, Some(1232))),
        (
            "svcb-agent",
            dns_query(2, "analyst.finance.acme", SVCB, None),
        ),
        ("a-agent", dns_query(3, "writer.acme", A, Some(4096))),
        (
            "srv-agent",
            dns_query(4, "_mcp._tcp.writer.acme", SRV, None),
        ),
        ("ns-apex", dns_query(5, "acme", NS, Some(1232))),
        ("soa-root", dns_query(6, "", SOA, None)),
        ("any-agent", dns_query(7, "auditor.finance.acme", ANY, None)),
        (
            "nxdomain",
            dns_query(8, "nobody.finance.acme", TXT, Some(512)),
        ),
        ("index", dns_query(9, "_index._agents.acme", TXT, None)),
        ("alias", dns_query(10, "scribe.acme", CNAME, None)),
        ("alias-chain", dns_query(14, "scribe.acme", TXT, None)),
        ("referral", dns_query(11, "analyst.finance.acme", TXT, None)),
        ("case", dns_query(12, "WrItEr.aCmE", TXT, Some(1232))),
        ("refused", dns_query(13, "example.com", A, None)),
    ];
    // Shapes only the full path takes: a compressed second question, EDNS version 1, a
    // NOTIFY opcode, a response.
    let mut two = dns_query(20, "acme", TXT, None);
    two[5] = 2;
    two.extend([0xc0, 12, 0, 16, 0, 1]);
    queries.push(("two-questions", two));
    let mut version = dns_query(21, "acme", TXT, Some(1232));
    let at = version.len() - 5;
    version[at] = 1;
    queries.push(("edns-version-1", version));
    let mut notify = dns_query(22, "acme", SOA, None);
    notify[2] = 0x20;
    queries.push(("notify", notify));
    let mut response = dns_query(23, "acme", SOA, None);
    response[2] |= 0x80;
    queries.push(("response", response));
    queries
        .into_iter()
        .map(|(name, bytes)| (name.to_string(), bytes))
        .collect()
}
