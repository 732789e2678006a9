//! The DNS door over real UDP and TCP on 127.0.0.1:0, queried with hickory-proto messages:
//! every row of docs/protocol.md §5, the protocol rules (EDNS, TC then TCP, REFUSED, FORMERR,
//! NOTIMP, BADVERS), TCP limits, and garbage that must not stop the listener.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use aop::dns::{DnsListener, TcpLimits};
use aop::node::{NodeHandle, ServeOptions};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::svcb::{SvcParamKey, SvcParamValue};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::support::{bind, eventually, loopback, zone};

const FINANCE: &str = r#"
[zone]
origin = "finance.acme"
serial = 2026112401
ttl = 300
negative_ttl = 60
contact = "ops@acme.example"
servers = [
  { grpc = "http://127.0.0.1:7102", dns = "127.0.0.2:53" },
  { grpc = "http://127.0.0.1:7103", dns = "[::1]:53" },
]

[[agent]]
name = "analyst"
description = "Financial analyst: ratios, forecasts, filings."
tags = ["finance", "analysis"]
capabilities = ["forecast", "summarize"]
version = "1.4.0"
ttl = 120
endpoints = [
  { url = "http://127.0.0.1:9101/mcp", priority = 10, weight = 3 },
  { url = "https://agents.example.com/analyst/mcp", priority = 20, weight = 1 },
  { url = "http://[::1]:9102/mcp", priority = 30, weight = 0 },
]

[[agent]]
name = "writer"
endpoints = [{ url = "https://writer.example.com:8443/mcp" }]

[[agent]]
name = "fx.trading"
endpoints = [{ url = "http://127.0.0.1:9103/mcp" }]

[[alias]]
name = "forecaster"
target = "analyst"

[[alias]]
name = "outside"
target = "writer.acme."

[[delegation]]
zone = "eu"
servers = [{ grpc = "http://127.0.0.1:7110", dns = "127.0.0.10:53" }]
ttl = 3600
"#;

async fn start(zones: &[String], limits: TcpLimits) -> (NodeHandle, SocketAddr) {
    let zones = zones.iter().map(|text| zone(text)).collect();
    let grpc = bind().await;
    let dns = DnsListener::bind(loopback())
        .await
        .unwrap()
        .with_tcp_limits(limits);
    let addr = dns.local_addr();
    let node = grpc
        .serve_with(ServeOptions::new(zones).node_id("dns-test").dns(dns))
        .expect("node serves");
    (node, addr)
}

async fn finance() -> (NodeHandle, SocketAddr) {
    start(&[FINANCE.to_string()], TcpLimits::default()).await
}

fn query(name: &str, rtype: RecordType, edns: bool) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(1232);
        message.set_edns(opt);
    }
    message
}

async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, server).await.unwrap();
    let mut buffer = vec![0u8; 65_535];
    match tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buffer)).await {
        Ok(Ok((len, _))) => Some(buffer[..len].to_vec()),
        _ => None,
    }
}

/// A query resent until answered (a flood may make the kernel drop datagrams), within 10 s.
async fn udp_until_answered(server: SocketAddr, message: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let bytes = message.to_vec().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut buffer = vec![0u8; 65_535];
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener stopped answering"
        );
        socket.send_to(&bytes, server).await.unwrap();
        if let Ok(Ok((len, _))) =
            tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buffer)).await
            && let Ok(response) = Message::from_vec(&buffer[..len])
            && response.metadata.id == message.metadata.id
        {
            return response;
        }
    }
}

async fn udp(server: SocketAddr, message: &Message) -> Message {
    let bytes = udp_raw(server, &message.to_vec().unwrap())
        .await
        .expect("an answer over UDP");
    let response = Message::from_vec(&bytes).expect("a well-formed response");
    assert_eq!(response.metadata.id, message.metadata.id);
    assert_eq!(response.metadata.message_type, MessageType::Response);
    assert!(!response.metadata.recursion_available, "RA is always clear");
    response
}

async fn tcp(stream: &mut TcpStream, message: &Message) -> Message {
    let bytes = message.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.unwrap();
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).await.unwrap();
    let mut body = vec![0u8; u16::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).await.unwrap();
    Message::from_vec(&body).unwrap()
}

fn txt_strings(record: &Record) -> Vec<String> {
    match &record.data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| String::from_utf8(s.to_vec()).unwrap())
            .collect(),
        other => panic!("not TXT: {other:?}"),
    }
}

#[tokio::test]
async fn agent_txt_carries_the_dns_sd_strings() {
    let (node, dns) = finance().await;
    let response = udp(dns, &query("Analyst.Finance.Acme.", RecordType::TXT, true)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert!(response.metadata.authoritative);
    assert_eq!(response.answers.len(), 1);
    assert_eq!(response.answers[0].ttl, 120);
    assert_eq!(
        txt_strings(&response.answers[0]),
        [
            "v=aop1",
            "description=Financial analyst: ratios, forecasts, filings.",
            "tags=finance,analysis",
            "capabilities=forecast,summarize",
            "version=1.4.0",
            "url=http://127.0.0.1:9101/mcp",
            "url2=https://agents.example.com/analyst/mcp",
            "url3=http://[::1]:9102/mcp",
        ]
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn txt_strings_are_cut_at_255_bytes_on_a_character_boundary() {
    let description = "é".repeat(300); // 600 bytes
    let zone = format!(
        "[zone]\norigin = \"long\"\nserial = 1\nservers = [{{ grpc = \"http://127.0.0.1:7000\", dns = \"127.0.0.2:53\" }}]\n\
         [[agent]]\nname = \"a\"\ndescription = \"{description}\"\nendpoints = [{{ url = \"http://127.0.0.1:9000/mcp\" }}]\n"
    );
    let (node, dns) = start(&[zone], TcpLimits::default()).await;
    let mut stream = TcpStream::connect(dns).await.unwrap();
    let response = tcp(&mut stream, &query("a.long.", RecordType::TXT, false)).await;
    let strings = txt_strings(&response.answers[0]);
    let cut = &strings[1];
    assert!(cut.starts_with("description=é"));
    assert!(cut.len() <= 255 && cut.len() >= 254, "{}", cut.len());
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn svcb_one_per_endpoint_in_the_dns_aid_layout() {
    let (node, dns) = finance().await;
    let response = udp(dns, &query("analyst.finance.acme.", RecordType::SVCB, true)).await;
    assert_eq!(response.answers.len(), 3);
    // The preferred endpoint comes first on the wire: some clients read only the first.
    let RData::SVCB(first) = &response.answers[0].data else {
        panic!("not SVCB")
    };
    assert_eq!(first.svc_priority, 10);
    let mut seen = Vec::new();
    for record in &response.answers {
        let RData::SVCB(svcb) = &record.data else {
            panic!("not SVCB")
        };
        let keys: Vec<u16> = svcb.svc_params.iter().map(|(k, _)| u16::from(*k)).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted, "SvcParam keys in increasing order");
        assert!(!keys.contains(&u16::from(SvcParamKey::Mandatory)));
        let alpn = svcb.svc_params.iter().find_map(|(_, v)| match v {
            SvcParamValue::Alpn(alpn) => Some(alpn.0.clone()),
            _ => None,
        });
        assert_eq!(alpn, Some(vec!["mcp".to_string()]));
        let port = svcb.svc_params.iter().find_map(|(_, v)| match v {
            SvcParamValue::Port(port) => Some(*port),
            _ => None,
        });
        let hint = svcb.svc_params.iter().find_map(|(_, v)| match v {
            SvcParamValue::Ipv4Hint(h) => Some(h.0[0].0.to_string()),
            SvcParamValue::Ipv6Hint(h) => Some(h.0[0].0.to_string()),
            _ => None,
        });
        seen.push((svcb.svc_priority, svcb.target_name.to_string(), port, hint));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                10,
                "analyst.finance.acme.".into(),
                Some(9101),
                Some("127.0.0.1".into())
            ),
            (20, "agents.example.com.".into(), Some(443), None),
            (
                30,
                "analyst.finance.acme.".into(),
                Some(9102),
                Some("::1".into())
            ),
        ]
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn srv_under_mcp_tcp_one_per_endpoint() {
    let (node, dns) = finance().await;
    let response = udp(
        dns,
        &query("_mcp._tcp.analyst.finance.acme.", RecordType::SRV, true),
    )
    .await;
    let mut srvs: Vec<(u16, u16, u16, String)> = response
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(srv) => (srv.priority, srv.weight, srv.port, srv.target.to_string()),
            other => panic!("not SRV: {other:?}"),
        })
        .collect();
    srvs.sort();
    assert_eq!(
        srvs,
        [
            (10, 3, 9101, "analyst.finance.acme.".to_string()),
            (20, 1, 443, "agents.example.com.".to_string()),
            (30, 0, 9102, "analyst.finance.acme.".to_string()),
        ]
    );
    let writer = udp(
        dns,
        &query("_mcp._tcp.writer.finance.acme.", RecordType::SRV, true),
    )
    .await;
    let RData::SRV(srv) = &writer.answers[0].data else {
        panic!()
    };
    assert_eq!(
        (srv.port, srv.target.to_string().as_str()),
        (8443, "writer.example.com.")
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn addresses_only_for_literal_endpoint_hosts() {
    let (node, dns) = finance().await;
    let a = udp(dns, &query("analyst.finance.acme.", RecordType::A, true)).await;
    let RData::A(ip) = &a.answers[0].data else {
        panic!()
    };
    assert_eq!(ip.0, Ipv4Addr::LOCALHOST);
    let aaaa = udp(dns, &query("analyst.finance.acme.", RecordType::AAAA, true)).await;
    let RData::AAAA(ip) = &aaaa.answers[0].data else {
        panic!()
    };
    assert_eq!(ip.0, Ipv6Addr::LOCALHOST);
    // writer's endpoint is a host name: NODATA (NOERROR, no answer, SOA in authority).
    let none = udp(dns, &query("writer.finance.acme.", RecordType::A, true)).await;
    assert_eq!(none.metadata.response_code, ResponseCode::NoError);
    assert!(none.answers.is_empty());
    assert_eq!(none.authorities[0].record_type(), RecordType::SOA);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn index_lists_single_label_agents_whole_entries_within_255_bytes() {
    let (node, dns) = finance().await;
    let response = udp(
        dns,
        &query("_index._agents.finance.acme.", RecordType::TXT, true),
    )
    .await;
    assert_eq!(
        txt_strings(&response.answers[0]),
        ["agents=analyst:mcp,writer:mcp"]
    );

    let mut zone = String::from(
        "[zone]\norigin = \"many\"\nserial = 1\nservers = [{ grpc = \"http://127.0.0.1:7000\" }]\n",
    );
    for i in 0..100 {
        zone.push_str(&format!(
            "[[agent]]\nname = \"agent-number-{i:03}\"\nendpoints = [{{ url = \"http://127.0.0.1:9000/mcp\" }}]\n"
        ));
    }
    let (many, many_dns) = start(&[zone], TcpLimits::default()).await;
    let response = udp(
        many_dns,
        &query("_index._agents.many.", RecordType::TXT, true),
    )
    .await;
    let strings = txt_strings(&response.answers[0]);
    assert_eq!(strings.len(), 1);
    let text = &strings[0];
    assert!(text.len() <= 255, "{}", text.len());
    let entries: Vec<&str> = text.trim_start_matches("agents=").split(',').collect();
    assert!(entries.len() > 5);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(
            *entry,
            format!("agent-number-{i:03}:mcp"),
            "whole entries, in order"
        );
    }
    node.shutdown().await.unwrap();
    many.shutdown().await.unwrap();
}

#[tokio::test]
async fn apex_soa_and_ns_with_glue() {
    let (node, dns) = finance().await;
    let soa = udp(dns, &query("finance.acme.", RecordType::SOA, true)).await;
    let RData::SOA(record) = &soa.answers[0].data else {
        panic!()
    };
    assert_eq!(record.serial, 2026112401);
    assert_eq!(record.minimum, 60);
    assert_eq!(record.rname.to_string(), "ops.acme.example.");
    assert_eq!(record.mname.to_string(), "_ns1.finance.acme.");
    assert_eq!(soa.answers[0].ttl, 300);

    let ns = udp(dns, &query("finance.acme.", RecordType::NS, true)).await;
    let names: Vec<String> = ns
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::NS(ns) => ns.0.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["_ns1.finance.acme.", "_ns2.finance.acme."]);
    let glue: Vec<(String, String)> = ns
        .additionals
        .iter()
        .map(|r| (r.name.to_string(), r.data.to_string()))
        .collect();
    assert_eq!(
        glue,
        [
            ("_ns1.finance.acme.".to_string(), "127.0.0.2".to_string()),
            ("_ns2.finance.acme.".to_string(), "::1".to_string()),
        ]
    );
    // The name servers' own names answer authoritatively.
    let a = udp(dns, &query("_ns1.finance.acme.", RecordType::A, true)).await;
    assert_eq!(a.answers[0].data.to_string(), "127.0.0.2");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn names_under_a_delegation_get_a_referral_with_glue_and_aa_clear() {
    let (node, dns) = finance().await;
    for name in [
        "eu.finance.acme.",
        "agent.eu.finance.acme.",
        "_mcp._tcp.agent.eu.finance.acme.",
    ] {
        let response = udp(dns, &query(name, RecordType::SRV, true)).await;
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert!(
            !response.metadata.authoritative,
            "{name}: AA clear on a referral"
        );
        assert!(response.answers.is_empty());
        assert_eq!(response.authorities.len(), 1);
        assert_eq!(response.authorities[0].name.to_string(), "eu.finance.acme.");
        assert_eq!(response.authorities[0].ttl, 3600);
        assert_eq!(
            response.authorities[0].data.to_string(),
            "_ns1.eu.finance.acme."
        );
        assert_eq!(
            response.additionals[0].name.to_string(),
            "_ns1.eu.finance.acme."
        );
        assert_eq!(
            response.additionals[0].data.to_string(),
            "127.0.0.10",
            "an address, no port"
        );
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn negative_answers_carry_the_soa_at_the_negative_ttl() {
    let (node, dns) = finance().await;
    let missing = udp(dns, &query("nobody.finance.acme.", RecordType::TXT, true)).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert!(missing.metadata.authoritative);
    assert_eq!(missing.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(
        missing.authorities[0].ttl, 60,
        "min(SOA TTL 300, MINIMUM 60), RFC 2308"
    );

    // Names that exist only because names below them do: NODATA, never NXDOMAIN (RFC 8020).
    for name in [
        "_tcp.analyst.finance.acme.",
        "_agents.finance.acme.",
        "trading.finance.acme.",
    ] {
        let response = udp(dns, &query(name, RecordType::SRV, true)).await;
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert!(response.answers.is_empty(), "{name}");
        assert_eq!(
            response.authorities[0].record_type(),
            RecordType::SOA,
            "{name}"
        );
        assert_eq!(response.authorities[0].ttl, 60);
    }
    // Below an agent name, nothing but the service labels exists.
    let below = udp(
        dns,
        &query("x.analyst.finance.acme.", RecordType::TXT, true),
    )
    .await;
    assert_eq!(below.metadata.response_code, ResponseCode::NXDomain);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn aliases_are_cnames_followed_inside_the_zone() {
    let (node, dns) = finance().await;
    let response = udp(
        dns,
        &query("forecaster.finance.acme.", RecordType::TXT, true),
    )
    .await;
    assert_eq!(response.answers.len(), 2);
    assert_eq!(response.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(
        response.answers[0].data.to_string(),
        "analyst.finance.acme."
    );
    assert_eq!(response.answers[1].record_type(), RecordType::TXT);
    let out = udp(dns, &query("outside.finance.acme.", RecordType::TXT, true)).await;
    assert_eq!(
        out.answers.len(),
        1,
        "a target in another zone is left to the resolver"
    );
    assert_eq!(out.answers[0].data.to_string(), "writer.acme.");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn refused_outside_our_zones_formerr_notimp_and_badvers() {
    let (node, dns) = finance().await;
    let refused = udp(dns, &query("example.com.", RecordType::A, true)).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(!refused.metadata.authoritative);

    let mut two = query("analyst.finance.acme.", RecordType::TXT, false);
    two.add_query(Query::query(
        Name::from_str("writer.finance.acme.").unwrap(),
        RecordType::TXT,
    ));
    assert_eq!(
        udp(dns, &two).await.metadata.response_code,
        ResponseCode::FormErr
    );

    let mut notify = query("finance.acme.", RecordType::SOA, false);
    notify.metadata.op_code = OpCode::Notify;
    assert_eq!(
        udp(dns, &notify).await.metadata.response_code,
        ResponseCode::NotImp
    );

    let mut future = query("analyst.finance.acme.", RecordType::TXT, true);
    if let Some(edns) = future.edns.as_mut() {
        edns.set_version(1);
    }
    let badvers = udp(dns, &future).await;
    // Code 16 is BADVERS in a response to an OPT (hickory decodes it as its twin BADSIG).
    assert_eq!(u16::from(badvers.metadata.response_code), 16);
    assert_eq!(badvers.edns.as_ref().map(Edns::version), Some(0));
    // The question is echoed, as clients match responses by it (dnspython does).
    assert_eq!(badvers.queries, future.queries);

    // An unknown EDNS option is ignored, not dropped or refused (RFC 6891, RFC 8906).
    let mut unknown = query("analyst.finance.acme.", RecordType::TXT, true);
    if let Some(edns) = unknown.edns.as_mut() {
        edns.options_mut().insert(EdnsOption::Unknown(
            u16::from(EdnsCode::Unknown(65001)),
            vec![1, 2, 3],
        ));
    }
    let answered = udp(dns, &unknown).await;
    assert_eq!(answered.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answered.edns.as_ref().map(Edns::max_payload), Some(1232));

    // Garbage with an ID: FORMERR with that ID.
    let bytes = udp_raw(dns, &[0xbe, 0xef, 0x01, 0x00, 0xff])
        .await
        .expect("a FORMERR");
    let formerr = Message::from_vec(&bytes).unwrap();
    assert_eq!(formerr.metadata.id, 0xbeef);
    assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);
    node.shutdown().await.unwrap();
}

/// A query (ID 0x4242, RD, one question of type TXT class IN) for the name whose labels
/// are `labels`, written by hand: hickory refuses to encode a name over 255 octets.
fn raw_query(labels: &[&[u8]]) -> Vec<u8> {
    let mut request = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in labels {
        request.push(u8::try_from(label.len()).unwrap());
        request.extend_from_slice(label);
    }
    request.extend_from_slice(&[0, 0, 16, 0, 1]);
    request
}

#[tokio::test]
async fn a_question_name_over_255_octets_is_formerr() {
    // RFC 1035 §2.3.4: a name is at most 255 octets on the wire, its length octets and the
    // root's zero octet included. One octet more is a malformed query, not a missing name.
    let (node, dns) = finance().await;
    const A63: &[u8] = &[b'a'; 63];
    let (finance, acme): (&[u8], &[u8]) = (b"finance", b"acme");
    // 3 x 64 + 62 + 8 ("finance") + 5 ("acme") + 1 = 268: too long by far; then the edges.
    let cases: [(&[&[u8]], usize, ResponseCode); 3] = [
        (
            &[A63, A63, A63, &A63[..61], finance, acme],
            268,
            ResponseCode::FormErr,
        ),
        (
            &[A63, A63, A63, &A63[..49], finance, acme],
            256,
            ResponseCode::FormErr,
        ),
        (
            &[A63, A63, A63, &A63[..48], finance, acme],
            255,
            ResponseCode::NXDomain,
        ),
    ];
    for (labels, octets, expected) in cases {
        let request = raw_query(labels);
        assert_eq!(
            request.len() - 12 - 4,
            octets,
            "the name is {octets} octets"
        );
        // Twice: the second time the door's response cache could answer.
        for _ in 0..2 {
            let bytes = udp_raw(dns, &request).await.expect("an answer over UDP");
            let response = Message::from_vec(&bytes).expect("a well-formed response");
            assert_eq!(response.metadata.id, 0x4242);
            assert_eq!(response.metadata.response_code, expected, "{octets} octets");
        }
    }
    // Still serving.
    let answer = udp(dns, &query("analyst.finance.acme.", RecordType::TXT, false)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn answers_too_big_for_udp_are_truncated_then_served_whole_over_tcp() {
    let mut zone = String::from(
        "[zone]\norigin = \"big\"\nserial = 1\nservers = [{ grpc = \"http://127.0.0.1:7000\" }]\n\
         [[agent]]\nname = \"wide\"\ndescription = \"",
    );
    zone.push_str(&"d".repeat(1000));
    zone.push_str("\"\nendpoints = [\n");
    for i in 0..16 {
        zone.push_str(&format!(
            "  {{ url = \"http://replica-{i}.agents.example.com:9000/mcp/a/longer/path/for/this/replica\" }},\n"
        ));
    }
    zone.push_str("]\n");
    let (node, dns) = start(&[zone], TcpLimits::default()).await;

    // Without EDNS the limit is 512 bytes.
    let plain = udp(dns, &query("wide.big.", RecordType::TXT, false)).await;
    assert!(plain.metadata.truncation, "TC set");
    assert!(plain.answers.is_empty());
    // With EDNS, 1232 bytes: still too big for the TXT record.
    let edns = udp(dns, &query("wide.big.", RecordType::TXT, true)).await;
    assert!(edns.metadata.truncation);
    assert!(edns.edns.is_some(), "the OPT record survives truncation");
    // Over TCP, whole; and several queries on one connection.
    let mut stream = TcpStream::connect(dns).await.unwrap();
    let whole = tcp(&mut stream, &query("wide.big.", RecordType::SVCB, true)).await;
    assert!(!whole.metadata.truncation);
    assert_eq!(whole.answers.len(), 16);
    let txt = tcp(&mut stream, &query("wide.big.", RecordType::TXT, false)).await;
    assert_eq!(
        txt_strings(&txt.answers[0]).len(),
        2 + 16,
        "v=aop1, description, 16 urls"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn tcp_connections_are_capped_and_idle_ones_closed() {
    let limits = TcpLimits {
        max_connections: 2,
        per_client: 2,
        idle_timeout: Duration::from_millis(300),
        busy_idle_timeout: Duration::from_millis(300),
    };
    let (node, dns) = start(&[FINANCE.to_string()], limits).await;
    let mut first = TcpStream::connect(dns).await.unwrap();
    let mut second = TcpStream::connect(dns).await.unwrap();
    tcp(
        &mut first,
        &query("analyst.finance.acme.", RecordType::TXT, false),
    )
    .await;
    tcp(
        &mut second,
        &query("analyst.finance.acme.", RecordType::TXT, false),
    )
    .await;
    // A third connection is accepted and closed at once.
    let mut third = TcpStream::connect(dns).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), third.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed: {read:?}");
    // An idle connection is closed after the timeout.
    let read = tokio::time::timeout(Duration::from_secs(5), first.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "idle connection closed: {read:?}"
    );
    // With slots free again, new connections are served.
    drop(second);
    eventually(Duration::from_secs(5), "a slot comes free", || async {
        let mut fresh = TcpStream::connect(dns).await.unwrap();
        let message = query("analyst.finance.acme.", RecordType::TXT, false);
        let bytes = message.to_vec().unwrap();
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        let _ = fresh.write_all(&framed).await;
        let mut prefix = [0u8; 2];
        fresh.read_exact(&mut prefix).await.is_ok()
    })
    .await;
    node.shutdown().await.unwrap();
}

/// A small deterministic generator, so a failing run can be repeated from its seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[tokio::test]
async fn random_truncated_and_oversized_packets_do_not_stop_the_listener() {
    let seed = std::env::var("AOP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("fuzz seed {seed} (rerun with AOP_FUZZ_SEED={seed})");
    let mut rng = SplitMix(seed);
    let (node, dns) = finance().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let valid = query("analyst.finance.acme.", RecordType::TXT, true)
        .to_vec()
        .unwrap();
    for round in 0..600 {
        let packet: Vec<u8> = match round % 4 {
            // Random bytes of random length.
            0 => (0..(rng.next() % 600) as usize)
                .map(|_| rng.next() as u8)
                .collect(),
            // A valid query cut short.
            1 => valid[..(rng.next() as usize % valid.len())].to_vec(),
            // A valid query with random bytes flipped.
            2 => {
                let mut p = valid.clone();
                for _ in 0..3 {
                    let at = rng.next() as usize % p.len();
                    p[at] = rng.next() as u8;
                }
                p
            }
            // Oversized: a valid query followed by garbage up to 60 KB.
            _ => {
                let mut p = valid.clone();
                p.extend((0..(rng.next() % 60_000) as usize).map(|_| rng.next() as u8));
                p
            }
        };
        socket.send_to(&packet, dns).await.unwrap();
        if round % 50 == 49 {
            // Paces the flood and shows the listener answering all along.
            let check =
                udp_until_answered(dns, &query("writer.finance.acme.", RecordType::TXT, true))
                    .await;
            assert_eq!(
                check.metadata.response_code,
                ResponseCode::NoError,
                "round {round}"
            );
        }
    }
    // Still answering correct queries at the end, over UDP and TCP.
    let response =
        udp_until_answered(dns, &query("analyst.finance.acme.", RecordType::TXT, true)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert_eq!(response.answers.len(), 1);
    let mut stream = TcpStream::connect(dns).await.unwrap();
    // Garbage over TCP too: a frame of junk, then a real query on a new connection.
    stream
        .write_all(&[0x00, 0x05, 1, 2, 3, 4, 5])
        .await
        .unwrap();
    let mut fresh = TcpStream::connect(dns).await.unwrap();
    let answer = tcp(
        &mut fresh,
        &query("analyst.finance.acme.", RecordType::SVCB, true),
    )
    .await;
    assert_eq!(answer.answers.len(), 3);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn repeat_questions_are_answered_the_same_with_the_callers_id_flags_and_case() {
    let (node, dns) = finance().await;
    let names = [
        ("analyst.finance.acme.", RecordType::TXT),
        ("_mcp._tcp.analyst.finance.acme.", RecordType::SRV),
        ("nobody.finance.acme.", RecordType::TXT),
        ("forecaster.finance.acme.", RecordType::SVCB),
        ("x.eu.finance.acme.", RecordType::A),
        ("example.com.", RecordType::A),
    ];
    for (name, rtype) in names {
        for edns in [false, true] {
            let first = udp(dns, &query(name, rtype, edns)).await;
            // Same question in mixed case (0x20), without RD: from the cache this time.
            let mixed: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            let mut again = query(&mixed, rtype, edns);
            again.metadata.recursion_desired = false;
            let second = udp(dns, &again).await;
            assert_eq!(
                second.queries[0].name().to_string(),
                mixed,
                "the question as sent"
            );
            assert!(
                !second.metadata.recursion_desired,
                "RD echoed from this request"
            );
            assert!(first.metadata.recursion_desired);
            assert_eq!(
                first.metadata.response_code, second.metadata.response_code,
                "{name}"
            );
            assert_eq!(
                first.metadata.authoritative, second.metadata.authoritative,
                "{name}"
            );
            assert_eq!(first.answers, second.answers, "{name}");
            assert_eq!(first.authorities, second.authorities, "{name}");
            assert_eq!(first.additionals, second.additionals, "{name}");
            assert_eq!(first.edns.is_some(), edns);
            assert_eq!(second.edns.is_some(), edns);
        }
    }
    node.shutdown().await.unwrap();
}

/// Negative answers are written straight into bytes (`dns::negative`); they must say exactly
/// what the full path says, for every kind of negative, with and without EDNS, in any case.
/// (Their SOA is written uncompressed, so they match after decoding; the positive answers of
/// `dns::direct` match byte for byte: `direct_answers_are_the_full_paths_bytes`.)
#[test]
fn negative_answers_written_directly_match_the_full_path() {
    use aop::catalog::Catalog;
    use aop::dns::message::Transport;
    use aop::dns::respond::Answerer;
    let zone = zone(FINANCE);
    let answerer = Answerer::new(
        std::sync::Arc::new(Catalog::new("dns-test", vec![zone])),
        1 << 20,
    );
    let questions = [
        ("nobody.finance.acme.", RecordType::A, "NXDOMAIN"),
        ("NoBody.Finance.ACME.", RecordType::TXT, "NXDOMAIN"),
        ("deep.missing.finance.acme.", RecordType::SRV, "NXDOMAIN"),
        ("writer.finance.acme.", RecordType::A, "NODATA"),
        ("writer.finance.acme.", RecordType::AAAA, "NODATA"),
        ("analyst.finance.acme.", RecordType::MX, "NODATA"),
        ("_tcp.analyst.finance.acme.", RecordType::TXT, "NODATA"),
        ("_mcp._tcp.analyst.finance.acme.", RecordType::TXT, "NODATA"),
        ("_agents.finance.acme.", RecordType::TXT, "NODATA"),
        ("trading.finance.acme.", RecordType::A, "NODATA"),
        // Not negative: answered by the full path either way, and must still match.
        ("analyst.finance.acme.", RecordType::A, "answer"),
        ("analyst.finance.acme.", RecordType::TXT, "answer"),
        ("forecaster.finance.acme.", RecordType::A, "alias"),
        ("x.eu.finance.acme.", RecordType::A, "referral"),
        ("elsewhere.example.", RecordType::A, "refused"),
    ];
    for (name, rtype, kind) in questions {
        for edns in [false, true] {
            let request = query(name, rtype, edns).to_vec().unwrap();
            for transport in [Transport::Udp, Transport::Tcp] {
                let written = matches!(kind, "NXDOMAIN" | "NODATA" | "answer");
                assert_eq!(
                    answerer.direct(&request, transport).is_some(),
                    written,
                    "{kind} {name} {rtype}: written directly only for agents' answers and negatives"
                );
                let (direct, direct_code) = answerer.answer(&request, transport);
                let (full, full_code) = answerer.respond(&request, transport);
                let decode = |bytes: Option<Vec<u8>>| {
                    Message::from_vec(&bytes.expect("an answer"))
                        .expect("decodes")
                        .to_vec()
                        .expect("encodes")
                };
                assert_eq!(direct_code, full_code, "{kind} {name} {rtype} edns={edns}");
                assert_eq!(
                    decode(direct),
                    decode(full),
                    "{kind} {name} {rtype} edns={edns} {transport:?}"
                );
            }
        }
    }
}

/// Zone of every shape the direct writers meet: several endpoints of each kind (literal IPv4,
/// IPv6, host names, a trailing dot, duplicates), a description over 255 bytes cut inside a
/// UTF-8 character, UTF-8 tags, a multi-label agent, an agent with no endpoint fields beyond
/// the URL, an agent whose SRV set is too big for 512 bytes, aliases, a delegation with glue.
const SHAPES: &str = r#"
[zone]
origin = "shapes.test"
serial = 7
ttl = 300
negative_ttl = 30
contact = "ops@shapes.test"
servers = [
  { grpc = "http://127.0.0.1:7102", dns = "127.0.0.2:53" },
  { grpc = "http://127.0.0.1:7103", dns = "[2001:db8::5]:53" },
]

[[agent]]
name = "multi"
description = "DESCRIPTION"
tags = ["données", "ünïcode", "x"]
capabilities = ["a", "b"]
version = "2.0.0-rc.1"
ttl = 45
endpoints = [
  { url = "http://192.0.2.7:9101/mcp", priority = 30, weight = 3 },
  { url = "https://Agents.Example.COM./m/mcp", priority = 10, weight = 9 },
  { url = "http://[2001:db8::7]:9102/mcp", priority = 20, weight = 0 },
  { url = "http://192.0.2.7:9103/other", priority = 20, weight = 5 },
  { url = "http://192.0.2.8/mcp", priority = 40, weight = 1 },
  { url = "https://multi.shapes.test/mcp", priority = 50, weight = 1 },
]

[[agent]]
name = "plain"
endpoints = [{ url = "https://plain-host.example:8443/mcp" }]

[[agent]]
name = "deep.team.units"
description = "three labels"
endpoints = [{ url = "http://[::1]:9/mcp" }]

[[agent]]
name = "wide"
endpoints = [
WIDE]

[[alias]]
name = "nick"
target = "multi"

[[alias]]
name = "away"
target = "plain.elsewhere."

[[delegation]]
zone = "child"
servers = [{ grpc = "http://127.0.0.1:7110", dns = "127.0.0.10:53" }]
ttl = 3600
"#;

/// Every positive answer the door writes directly must be the full path's bytes exactly
/// (TTLs, flags, compression pointers, record order), and everything else must still be
/// answered as the full path answers it (decoded: the same records, TTLs and flags): over a zone of every shape, each name in several casings, each type,
/// with no EDNS and with payloads of 512, 1232 and 4096, RD set or not, over UDP and TCP.
#[test]
fn direct_answers_are_the_full_paths_bytes() {
    use aop::catalog::Catalog;
    use aop::dns::message::Transport;
    use aop::dns::respond::Answerer;
    // 300 bytes of description with a two-byte character across byte 255 of the string.
    let description = format!(
        "{}é{}",
        "d".repeat(255 - "description=".len() - 1),
        "z".repeat(40)
    );
    let wide: String = (0..16)
        .map(|i| format!("  {{ url = \"http://replica-{i}.agents.example.com:9000/mcp\" }},\n"))
        .collect();
    let text = SHAPES
        .replace("DESCRIPTION", &description)
        .replace("WIDE", &wide);
    let answerer = Answerer::new(
        std::sync::Arc::new(Catalog::new("dns-test", vec![zone(&text), zone(FINANCE)])),
        1 << 20,
    );
    let names = [
        "multi.shapes.test.",
        "_mcp._tcp.multi.shapes.test.",
        "_tcp.multi.shapes.test.",
        "plain.shapes.test.",
        "_mcp._tcp.plain.shapes.test.",
        "deep.team.units.shapes.test.",
        "_mcp._tcp.deep.team.units.shapes.test.",
        "team.units.shapes.test.",
        "wide.shapes.test.",
        "_mcp._tcp.wide.shapes.test.",
        "nick.shapes.test.",
        "away.shapes.test.",
        "x.child.shapes.test.",
        "shapes.test.",
        "_ns1.shapes.test.",
        "_ns2.shapes.test.",
        "_index._agents.shapes.test.",
        "_agents.shapes.test.",
        "missing.shapes.test.",
        "analyst.finance.acme.",
        "_mcp._tcp.analyst.finance.acme.",
        "elsewhere.example.",
    ];
    let types = [
        RecordType::TXT,
        RecordType::SRV,
        RecordType::A,
        RecordType::AAAA,
        RecordType::SVCB,
        RecordType::MX,
        RecordType::CNAME,
        RecordType::SOA,
        RecordType::NS,
        RecordType::ANY,
    ];
    // Casings: as written, all upper, alternating, first label upper, last label upper.
    let casings = |name: &str| -> Vec<String> {
        let alternate: String = name
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        let (first, rest) = name.split_once('.').unwrap();
        let trimmed = name.trim_end_matches('.');
        let (head, last) = trimmed.rsplit_once('.').unwrap_or(("", trimmed));
        let last_upper = if head.is_empty() {
            format!("{}.", last.to_ascii_uppercase())
        } else {
            format!("{head}.{}.", last.to_ascii_uppercase())
        };
        vec![
            name.to_string(),
            name.to_ascii_uppercase(),
            alternate,
            format!("{}.{rest}", first.to_ascii_uppercase()),
            last_upper,
        ]
    };
    let mut direct_positive = std::collections::BTreeSet::new();
    let mut compared = 0;
    for name in names {
        for rtype in types {
            for spelled in casings(name) {
                for payload in [None, Some(512u16), Some(1232), Some(4096)] {
                    for rd in [true, false] {
                        let mut message = query(&spelled, rtype, false);
                        message.metadata.id = 0xBEEF;
                        message.metadata.recursion_desired = rd;
                        if let Some(payload) = payload {
                            let mut opt = Edns::new();
                            opt.set_max_payload(payload);
                            message.set_edns(opt);
                        }
                        let request = message.to_vec().unwrap();
                        for transport in [Transport::Udp, Transport::Tcp] {
                            let what =
                                format!("{spelled} {rtype} edns={payload:?} rd={rd} {transport:?}");
                            let (full, full_code) = answerer.respond(&request, transport);
                            let full = full.expect("the full path answers");
                            let (door, door_code) = answerer.answer(&request, transport);
                            let door = door.expect("the door answers");
                            assert_eq!(door_code, full_code, "{what}");
                            let direct = answerer.direct(&request, transport);
                            let ancount = u16::from_be_bytes([full[6], full[7]]);
                            if let Some((bytes, code)) = &direct {
                                assert_eq!(*code, full_code, "{what}");
                                assert_eq!(bytes.as_deref(), Some(door.as_slice()), "{what}");
                            }
                            if ancount > 0 && direct.is_some() {
                                // Positive answers written directly: the full path's bytes.
                                assert_eq!(door, full, "{what}");
                                direct_positive.insert((name, rtype.to_string()));
                            } else {
                                // Negative answers written directly (their SOA uncompressed),
                                // and answers from the cache (its compression follows the
                                // first asker's casing): the same message once decoded, names
                                // compared without case, everything else exactly.
                                let decode =
                                    |bytes: &[u8]| Message::from_vec(bytes).expect("decodes");
                                assert_eq!(decode(&door), decode(&full), "{what}");
                            }
                            compared += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(compared, names.len() * types.len() * 5 * 4 * 2 * 2);
    // The shapes the direct writers exist for were written directly (not only cached).
    for expected in [
        ("multi.shapes.test.", "TXT"),
        ("multi.shapes.test.", "A"),
        ("multi.shapes.test.", "AAAA"),
        ("_mcp._tcp.multi.shapes.test.", "SRV"),
        ("plain.shapes.test.", "TXT"),
        ("_mcp._tcp.plain.shapes.test.", "SRV"),
        ("deep.team.units.shapes.test.", "AAAA"),
        ("_mcp._tcp.wide.shapes.test.", "SRV"),
        ("analyst.finance.acme.", "TXT"),
        ("_mcp._tcp.analyst.finance.acme.", "SRV"),
    ] {
        assert!(
            direct_positive.contains(&(expected.0, expected.1.to_string())),
            "{expected:?} written directly; written: {direct_positive:?}"
        );
    }
}
