//! A node on 127.0.0.1:0, driven through its real gRPC door: every outcome of Resolve with
//! its TTL and `served_by`, GetZone, paged ListAgents, health, and bad input.

use std::time::Duration;

use aop::grpc::{RegistryClient, pb};
use aop::node::NodeHandle;
use tonic::Code;

use crate::support::{bind, connect, eventually, raw, zone};

const FINANCE: &str = r#"
[zone]
origin = "finance.acme"
serial = 2026112401
ttl = 300
negative_ttl = 60
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
description = "Financial analyst: ratios, forecasts, filings."
tags = ["finance", "analysis"]
capabilities = ["forecast"]
ttl = 120
endpoints = [
  { url = "http://127.0.0.1:9101/mcp", tool = "analyst", priority = 10, weight = 3 },
  { url = "http://127.0.0.1:9102/mcp", priority = 20, weight = 1 },
]

[[agent]]
name = "fx.trading"
endpoints = [{ url = "http://127.0.0.1:9103/mcp" }]

[[alias]]
name = "forecaster"
target = "analyst"
ttl = 30

[[alias]]
name = "outside"
target = "writer.acme."

[[delegation]]
zone = "eu"
servers = [{ grpc = "http://127.0.0.1:7110", dns = "127.0.0.1:5310" }]
ttl = 3600
"#;

/// A zone with a short negative TTL, to check min(ttl, negative_ttl) from the other side.
const TINY: &str = r#"
[zone]
origin = "tiny"
serial = 7
ttl = 20
negative_ttl = 600
servers = [{ grpc = "http://127.0.0.1:7111" }]
"#;

async fn start_node(zones: &[&str]) -> NodeHandle {
    let zones = zones.iter().map(|text| zone(text)).collect();
    bind()
        .await
        .serve(Some("test-node".to_string()), zones)
        .expect("node serves")
}

async fn client(node: &NodeHandle) -> RegistryClient {
    connect(&node.grpc_url())
        .await
        .expect("connect to the node")
}

async fn resolve(client: &mut RegistryClient, name: &str) -> pb::ResolveResponse {
    client
        .resolve(pb::ResolveRequest {
            name: name.to_string(),
            recursive: false,
            trace: false,
        })
        .await
        .unwrap_or_else(|status| panic!("resolve {name}: {status}"))
        .into_inner()
}

#[tokio::test]
async fn answer_carries_the_record_ttl_and_node_id() {
    let node = start_node(&[FINANCE]).await;
    let mut client = client(&node).await;
    let answer = resolve(&mut client, "Analyst.Finance.Acme.").await;
    assert_eq!(answer.outcome(), pb::Outcome::Answer);
    assert_eq!(answer.name, "analyst.finance.acme");
    assert_eq!(answer.zone, "finance.acme");
    assert_eq!(answer.zone_serial, 2026112401);
    assert_eq!(answer.ttl, 120);
    assert!(answer.authoritative);
    assert!(!answer.stale);
    assert_eq!(answer.served_by, "test-node");
    let agent = answer.agent.expect("an answer carries the agent");
    assert_eq!(agent.name, "analyst.finance.acme");
    assert_eq!(agent.tags, ["finance", "analysis"]);
    assert_eq!(agent.endpoints.len(), 2);
    assert_eq!(agent.endpoints[0].priority, 10);
    assert_eq!(agent.endpoints[0].weight, 3);
    // The tool defaults to the agent's first label.
    assert_eq!(agent.endpoints[1].tool, "analyst");
    // The default AOP input schema: `task` required.
    let schema: serde_json::Value = serde_json::from_str(&agent.input_schema_json).unwrap();
    assert_eq!(schema["required"], serde_json::json!(["task"]));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn in_zone_alias_is_followed_and_its_ttl_caps_the_answer() {
    let node = start_node(&[FINANCE]).await;
    let mut client = client(&node).await;
    let answer = resolve(&mut client, "forecaster.finance.acme").await;
    assert_eq!(answer.outcome(), pb::Outcome::Answer);
    assert_eq!(answer.agent.unwrap().name, "analyst.finance.acme");
    assert_eq!(answer.aliases.len(), 1);
    assert_eq!(answer.aliases[0].name, "forecaster.finance.acme");
    assert_eq!(answer.aliases[0].target, "analyst.finance.acme");
    // min(alias ttl 30, agent ttl 120)
    assert_eq!(answer.ttl, 30);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn alias_out_of_the_zone_is_returned_for_the_resolver_to_chase() {
    let node = start_node(&[FINANCE]).await;
    let mut client = client(&node).await;
    let answer = resolve(&mut client, "outside.finance.acme").await;
    assert_eq!(answer.outcome(), pb::Outcome::Alias);
    assert_eq!(answer.alias_target, "writer.acme");
    assert_eq!(
        answer.ttl, 300,
        "the alias has no ttl of its own: the zone's"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn name_below_a_delegation_gets_a_referral_with_the_child_servers() {
    let node = start_node(&[FINANCE]).await;
    let mut client = client(&node).await;
    for name in ["eu.finance.acme", "deep.under.eu.finance.acme"] {
        let answer = resolve(&mut client, name).await;
        assert_eq!(answer.outcome(), pb::Outcome::Referral, "{name}");
        let referral = answer.referral.expect("a referral carries the servers");
        assert_eq!(referral.zone, "eu.finance.acme");
        assert_eq!(referral.servers.len(), 1);
        assert_eq!(referral.servers[0].grpc, "http://127.0.0.1:7110");
        assert_eq!(referral.servers[0].dns, "127.0.0.1:5310");
        assert_eq!(answer.ttl, 3600);
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn negative_answers_distinguish_nxdomain_from_nodata_with_the_negative_ttl() {
    let node = start_node(&[FINANCE, TINY]).await;
    let mut client = client(&node).await;

    let missing = resolve(&mut client, "nobody.finance.acme").await;
    assert_eq!(missing.outcome(), pb::Outcome::Nxdomain);
    assert_eq!(missing.ttl, 60, "min(ttl 300, negative_ttl 60)");
    assert!(missing.agent.is_none());

    // trading.finance.acme exists only because fx.trading.finance.acme does (RFC 8020).
    let empty = resolve(&mut client, "trading.finance.acme").await;
    assert_eq!(empty.outcome(), pb::Outcome::Nodata);
    assert_eq!(empty.ttl, 60);

    // Below an existing agent there is nothing: NXDOMAIN, not NODATA.
    let below = resolve(&mut client, "x.analyst.finance.acme").await;
    assert_eq!(below.outcome(), pb::Outcome::Nxdomain);

    // The apex has no agent record but exists.
    let apex = resolve(&mut client, "finance.acme").await;
    assert_eq!(apex.outcome(), pb::Outcome::Nodata);

    let tiny = resolve(&mut client, "nothing.tiny").await;
    assert_eq!(tiny.outcome(), pb::Outcome::Nxdomain);
    assert_eq!(tiny.ttl, 20, "min(ttl 20, negative_ttl 600)");
    assert_eq!(tiny.served_by, "test-node");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn trace_includes_the_answering_node_step() {
    let node = start_node(&[FINANCE]).await;
    let mut client = client(&node).await;
    let answer = client
        .resolve(pb::ResolveRequest {
            name: "analyst.finance.acme".into(),
            recursive: false,
            trace: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.trace.len(), 1);
    assert_eq!(answer.trace[0].server, "test-node");
    assert_eq!(answer.trace[0].zone, "finance.acme");
    assert_eq!(answer.trace[0].outcome(), pb::Outcome::Answer);
    assert!(answer.trace[0].authoritative);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn names_outside_every_served_zone_are_not_found() {
    let node = start_node(&[FINANCE]).await;
    let mut client = client(&node).await;
    let status = client
        .resolve(pb::ResolveRequest {
            name: "writer.acme".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        status.message(),
        "this node is not authoritative for writer.acme (it serves zones finance.acme)"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_names_are_invalid_argument_naming_the_label() {
    let node = start_node(&[FINANCE]).await;
    let mut client = client(&node).await;
    let cases = [
        ("ana_lyst.finance.acme", "label \"ana_lyst\""),
        ("-analyst.finance.acme", "starts with a hyphen"),
        ("analyst..finance.acme", "empty label at position 2"),
        ("", "empty name"),
    ];
    for (name, expected) in cases {
        let status = client
            .resolve(pb::ResolveRequest {
                name: name.to_string(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name:?}");
        assert!(
            status.message().starts_with("invalid name: "),
            "{}",
            status.message()
        );
        assert!(status.message().contains(expected), "{}", status.message());
    }
    let long_label = format!("{}.finance.acme", "a".repeat(64));
    let status = client
        .resolve(pb::ResolveRequest {
            name: long_label,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("is 64 characters long (limit 63)"),
        "{}",
        status.message()
    );
    // Still serving.
    assert_eq!(
        resolve(&mut client, "analyst.finance.acme").await.outcome(),
        pb::Outcome::Answer
    );
    node.shutdown().await.unwrap();
}

/// A protobuf length-delimited field: tag, one-byte length, bytes.
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2, u8::try_from(bytes.len()).unwrap()];
    out.extend_from_slice(bytes);
    out
}

#[tokio::test]
async fn request_bytes_that_do_not_decode_are_invalid_argument_naming_the_field() {
    // docs/protocol.md §7: bad input is INVALID_ARGUMENT with what is wrong, never INTERNAL.
    let node = start_node(&[FINANCE]).await;
    let url = node.grpc_url();
    // The raw path itself is sound: well-formed bytes get an answer.
    let answer = raw::unary(
        &url,
        "/aop.v1.Registry/Resolve",
        field(1, b"analyst.finance.acme"),
    )
    .await
    .expect("a well-formed request is answered");
    let answer = <pb::ResolveResponse as prost::Message>::decode(answer.as_slice()).unwrap();
    assert_eq!(answer.outcome(), pb::Outcome::Answer);

    let cases: [(&'static str, Vec<u8>, &str); 3] = [
        (
            "/aop.v1.Registry/Resolve",
            field(1, b"analyst\xff.finance.acme"),
            "ResolveRequest.name: invalid string value: data is not UTF-8 encoded",
        ),
        (
            "/aop.v1.Registry/GetZone",
            field(1, &[0xc3, 0x28]),
            "GetZoneRequest.zone: invalid string value: data is not UTF-8 encoded",
        ),
        // A field that claims 16 bytes and carries one.
        (
            "/aop.v1.Registry/Resolve",
            vec![0x0a, 0x10, b'a'],
            "buffer underflow",
        ),
    ];
    for (method, body, expected) in cases {
        let status = raw::unary(&url, method, body).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{method}: {status:?}");
        assert!(
            status
                .message()
                .starts_with("the request does not decode as an aop.v1 message: "),
            "{}",
            status.message()
        );
        assert!(status.message().contains(expected), "{}", status.message());
    }
    // Still serving.
    let mut client = client(&node).await;
    assert_eq!(
        resolve(&mut client, "analyst.finance.acme").await.outcome(),
        pb::Outcome::Answer
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn oversized_request_is_resource_exhausted_and_the_node_keeps_serving() {
    let node = start_node(&[FINANCE]).await;
    let mut client = client(&node).await;
    let status = client
        .resolve(pb::ResolveRequest {
            name: "a".repeat(2 * 1024 * 1024),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("1048576 bytes"),
        "the limit is in the message: {}",
        status.message()
    );
    // A name just under the limit gets past the size check to the name rules.
    let status = client
        .resolve(pb::ResolveRequest {
            name: "a".repeat(1024 * 1024 - 16),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("is 1048560 characters long (limit 63)"),
        "{}",
        status.message()
    );
    // The same connection, and a new one, still get answers.
    assert_eq!(
        resolve(&mut client, "analyst.finance.acme").await.outcome(),
        pb::Outcome::Answer
    );
    let mut fresh = connect(&node.grpc_url()).await.unwrap();
    assert_eq!(
        resolve(&mut fresh, "analyst.finance.acme").await.outcome(),
        pb::Outcome::Answer
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn get_zone_reports_the_header_servers_and_delegations() {
    let node = start_node(&[FINANCE]).await;
    let mut client = client(&node).await;
    let zone = client
        .get_zone(pb::GetZoneRequest {
            zone: "finance.acme".into(),
            recursive: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(zone.origin, "finance.acme");
    assert_eq!(zone.serial, 2026112401);
    assert_eq!((zone.ttl, zone.negative_ttl), (300, 60));
    assert_eq!((zone.refresh, zone.retry, zone.expire), (60, 10, 86400));
    assert_eq!(zone.servers[0].grpc, "http://127.0.0.1:7102");
    assert_eq!(zone.delegations.len(), 1);
    assert_eq!(zone.delegations[0].zone, "eu.finance.acme");
    assert_eq!((zone.agent_count, zone.alias_count), (2, 2));
    assert_eq!(zone.served_by, "test-node");

    let status = client
        .get_zone(pb::GetZoneRequest {
            zone: "globex".into(),
            recursive: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("does not serve zone globex"));
    node.shutdown().await.unwrap();
}

fn many_agents_zone(count: usize) -> String {
    let mut text = String::from(
        "[zone]\norigin = \"big\"\nserial = 1\nservers = [{ grpc = \"http://127.0.0.1:7000\" }]\n",
    );
    for i in 0..count {
        text.push_str(&format!(
            "[[agent]]\nname = \"agent-{i:04}\"\nendpoints = [{{ url = \"http://127.0.0.1:9000/mcp\" }}]\n"
        ));
    }
    text
}

#[tokio::test]
async fn list_agents_pages_through_every_agent_once_in_order() {
    let zone_text = many_agents_zone(2500);
    let node = start_node(&[&zone_text]).await;
    let mut client = client(&node).await;
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_agents(pb::ListAgentsRequest {
                zone: "big".into(),
                page_size: 1000,
                cursor: cursor.clone(),
                recursive: false,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert_eq!(page.total, 2500);
        assert!(page.agents.len() <= 1000);
        seen.extend(page.agents.into_iter().map(|a| a.name));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..2500).map(|i| format!("agent-{i:04}.big")).collect();
    assert_eq!(seen, expected);

    // Default page size, and the limit.
    let first = client
        .list_agents(pb::ListAgentsRequest {
            zone: "big".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.agents.len(), 100);
    let status = client
        .list_agents(pb::ListAgentsRequest {
            zone: "big".into(),
            page_size: 1001,
            cursor: String::new(),
            recursive: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "page_size 1001 is over the limit of 1000 entries per page"
    );
    let status = client
        .list_agents(pb::ListAgentsRequest {
            zone: "big".into(),
            page_size: 10,
            cursor: "not-a-cursor".into(),
            recursive: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("invalid cursor"));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn standard_health_service_reports_serving() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let node = start_node(&[FINANCE]).await;
    let channel = aop::grpc::client::endpoint(&node.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel);
    // The reporter flips to SERVING as the server task starts: wait for it with a deadline.
    eventually(Duration::from_secs(5), "health reports SERVING", || {
        let mut health = health.clone();
        async move {
            let status = health
                .check(HealthCheckRequest {
                    service: "aop.v1.Registry".into(),
                })
                .await
                .map(|r| r.into_inner().status());
            matches!(status, Ok(ServingStatus::Serving))
        }
    })
    .await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let node = start_node(&[FINANCE]).await;
    let url = node.grpc_url();
    let mut client = client(&node).await;
    resolve(&mut client, "analyst.finance.acme").await;
    drop(client);
    node.shutdown().await.unwrap();
    assert!(
        connect(&url).await.is_err(),
        "the port is closed after shutdown"
    );
}
