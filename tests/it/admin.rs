//! The admin endpoint of a node on free ports: `/metrics` moves as DNS and gRPC queries
//! flow (and parses as the text format), `/healthz`, `/readyz` for a secondary before and
//! after its primary answers, `/status.json` with zones, agents and recent queries carrying
//! the request ids the gRPC door returned. The status page in headless Chromium is in
//! `tests/interop/status_page.rs`, an interop test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use aop::admin::AdminListener;
use aop::dns::DnsListener;
use aop::grpc::update::{deregister_fields, register_fields, signed};
use aop::grpc::{RegistryClient, pb};
use aop::keys::UpdateKey;
use aop::name::Name;
use aop::node::{GrpcListener, NodeHandle, ServeOptions};
use aop::record::ServerAddress;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name as DnsName, RecordType};
use tokio::net::UdpSocket;

use crate::support::{bind, connect, eventually, free_addr, loopback, zone};

fn finance_zone(grpc: &str) -> String {
    format!(
        r#"
[zone]
origin = "finance.acme"
serial = 2026112401
ttl = 300
negative_ttl = 60
refresh = 60
retry = 1
expire = 600
servers = [{{ grpc = "{grpc}" }}]

[[agent]]
name = "analyst"
description = "Financial analyst: <b>ratios</b>, forecasts & filings."
tags = ["finance", "analysis"]
capabilities = ["forecast"]
endpoints = [
  {{ url = "http://127.0.0.1:9101/mcp", tool = "analyst", priority = 10, weight = 3 }},
  {{ url = "http://127.0.0.1:9102/mcp", priority = 20, weight = 1 }},
]

[[agent]]
name = "fx.trading"
description = "FX desk"
endpoints = [{{ url = "http://127.0.0.1:9103/mcp" }}]

[[delegation]]
zone = "eu"
servers = [{{ grpc = "http://127.0.0.1:9", dns = "127.0.0.1:9" }}]
"#
    )
}

fn key() -> UpdateKey {
    UpdateKey::new(
        "ci-bot",
        "finance.acme",
        "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==",
    )
    .expect("a key")
}

struct Node {
    handle: NodeHandle,
    admin: String,
    client: RegistryClient,
}

/// A node serving finance.acme on gRPC, DNS and admin, its root hint a dead server.
async fn start_node() -> Node {
    let grpc = bind().await;
    let dns = DnsListener::bind(loopback()).await.unwrap();
    let admin = AdminListener::bind(loopback()).await.unwrap();
    let admin_url = admin.url();
    let root = ServerAddress::new(&format!("http://{}", free_addr()), None).unwrap();
    let handle = grpc
        .serve_with(
            ServeOptions::new(vec![zone(&finance_zone("http://127.0.0.1:9"))])
                .node_id("admin-test")
                .dns(dns)
                .admin(admin)
                .roots(vec![root])
                .update_key(key()),
        )
        .expect("node serves");
    let client = connect(&handle.grpc_url()).await.expect("connect");
    Node {
        handle,
        admin: admin_url,
        client,
    }
}

async fn get(url: &str) -> (u16, String, String) {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, response.text().await.unwrap())
}

/// Parses the text format: every line a comment or `name{labels} value`, the value a
/// float; returns `name{labels}` -> value.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "line {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name in {line:?}"
        );
        if name_end < series.len() {
            let labels = &series[name_end..];
            assert!(labels.ends_with('}'), "labels in {line:?}");
            for pair in labels[1..labels.len() - 1].split("\",") {
                let (label, quoted) = pair.split_once("=\"").expect("label=\"value\"");
                assert!(label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                assert!(!quoted.is_empty() || pair.ends_with("=\""), "{line:?}");
            }
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "series twice: {line:?}"
        );
    }
    samples
}

async fn scrape(node: &Node) -> HashMap<String, f64> {
    let (status, content_type, text) = get(&format!("{}metrics", node.admin)).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    parse_exposition(&text)
}

fn moved(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    let value = |samples: &HashMap<String, f64>| samples.get(series).copied().unwrap_or(0.0);
    value(after) - value(before)
}

async fn dns_query(server: SocketAddr, name: &str, qtype: RecordType) -> ResponseCode {
    let mut message = Message::query();
    message.metadata.id = rand::random();
    message.metadata.message_type = MessageType::Query;
    message.metadata.op_code = OpCode::Query;
    message.add_query(Query::query(DnsName::from_ascii(name).unwrap(), qtype));
    let socket = UdpSocket::bind(loopback()).await.unwrap();
    socket
        .send_to(&message.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer))
        .await
        .expect("a DNS response within 5 s")
        .unwrap();
    Message::from_vec(&buffer[..len])
        .unwrap()
        .metadata
        .response_code
}

fn resolve_request(name: &str, recursive: bool) -> pb::ResolveRequest {
    pb::ResolveRequest {
        name: name.into(),
        recursive,
        trace: false,
    }
}

#[tokio::test]
async fn metrics_move_as_queries_flow() {
    let mut node = start_node().await;
    let dns = node.handle.dns_addr().expect("a DNS door");
    let before = scrape(&node).await;
    assert_eq!(
        before["aop_zone_serial{zone=\"finance.acme\",role=\"primary\"}"],
        2026112401.0
    );
    assert_eq!(before["aop_zone_agents{zone=\"finance.acme\"}"], 2.0);
    assert_eq!(
        before["aop_zone_served{zone=\"finance.acme\",role=\"primary\"}"],
        1.0
    );

    // DNS: two answers, a NODATA, an NXDOMAIN, a referral, a REFUSED.
    for (name, qtype, code) in [
        (
            "analyst.finance.acme.",
            RecordType::TXT,
            ResponseCode::NoError,
        ),
        (
            "_mcp._tcp.analyst.finance.acme.",
            RecordType::SRV,
            ResponseCode::NoError,
        ),
        (
            "trading.finance.acme.",
            RecordType::TXT,
            ResponseCode::NoError,
        ),
        (
            "nobody.finance.acme.",
            RecordType::TXT,
            ResponseCode::NXDomain,
        ),
        ("x.eu.finance.acme.", RecordType::TXT, ResponseCode::NoError),
        ("elsewhere.example.", RecordType::TXT, ResponseCode::Refused),
    ] {
        assert_eq!(dns_query(dns, name, qtype).await, code, "{name}");
    }
    // gRPC: two answers, one bad name, one recursion to a dead root.
    for name in ["analyst.finance.acme", "fx.trading.finance.acme"] {
        node.client
            .resolve(resolve_request(name, false))
            .await
            .expect("an answer");
    }
    let bad = node.client.resolve(resolve_request("a..b", false)).await;
    assert_eq!(
        bad.expect_err("a bad name").code(),
        tonic::Code::InvalidArgument
    );
    let dead = node
        .client
        .resolve(resolve_request("x.example", true))
        .await;
    assert_eq!(
        dead.expect_err("the root is dead").code(),
        tonic::Code::Unavailable
    );
    // Updates: one accepted, one refused by the writer.
    let body = pb::RegisterRequest {
        zone: "finance.acme".into(),
        name: "quant.finance.acme".into(),
        endpoint: Some(pb::Endpoint {
            url: "http://127.0.0.1:9104/mcp".into(),
            tool: String::new(),
            priority: 10,
            weight: 1,
        }),
        lease_seconds: 60,
        fields: None,
    };
    let fields = register_fields(&body);
    node.client
        .register(signed(body, &fields, Some(&key())))
        .await
        .expect("registered");
    let body = pb::DeregisterRequest {
        zone: "finance.acme".into(),
        name: "ghost.finance.acme".into(),
        url: String::new(),
    };
    let fields = deregister_fields(&body);
    let refused = node
        .client
        .deregister(signed(body, &fields, Some(&key())))
        .await;
    assert_eq!(
        refused.expect_err("no such agent").code(),
        tonic::Code::NotFound
    );

    let after = scrape(&node).await;
    let dns_outcome = |outcome: &str| {
        format!("aop_queries_total{{door=\"dns\",method=\"query\",outcome=\"{outcome}\"}}")
    };
    for (outcome, count) in [
        ("answer", 2.0),
        ("nodata", 1.0),
        ("nxdomain", 1.0),
        ("referral", 1.0),
        ("refused", 1.0),
        ("servfail", 0.0),
        ("formerr", 0.0),
    ] {
        assert_eq!(
            moved(&before, &after, &dns_outcome(outcome)),
            count,
            "dns {outcome}"
        );
    }
    assert_eq!(
        moved(
            &before,
            &after,
            "aop_query_duration_seconds_count{door=\"dns\",method=\"query\"}"
        ),
        6.0
    );
    let grpc = |method: &str, outcome: &str| {
        format!("aop_queries_total{{door=\"grpc\",method=\"{method}\",outcome=\"{outcome}\"}}")
    };
    assert_eq!(moved(&before, &after, &grpc("Resolve", "ok")), 2.0);
    assert_eq!(
        moved(&before, &after, &grpc("Resolve", "invalid_argument")),
        1.0
    );
    assert_eq!(moved(&before, &after, &grpc("Resolve", "unavailable")), 1.0);
    assert_eq!(moved(&before, &after, &grpc("Register", "ok")), 1.0);
    assert_eq!(
        moved(&before, &after, &grpc("Deregister", "not_found")),
        1.0
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "aop_query_duration_seconds_count{door=\"grpc\",method=\"Resolve\"}"
        ),
        4.0
    );
    let inf = "aop_query_duration_seconds_bucket{door=\"grpc\",method=\"Resolve\",le=\"+Inf\"}";
    assert_eq!(
        after[inf],
        after["aop_query_duration_seconds_count{door=\"grpc\",method=\"Resolve\"}"]
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "aop_resolver_upstream_failures_total{reason=\"unreachable\"}"
        ),
        1.0
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "aop_registrations_total{operation=\"register\",result=\"accepted\"}"
        ),
        1.0
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "aop_registrations_total{operation=\"deregister\",result=\"refused\"}"
        ),
        1.0
    );
    // The registration made a new serial and a third agent.
    assert!(after["aop_zone_serial{zone=\"finance.acme\",role=\"primary\"}"] > 2026112401.0);
    assert_eq!(after["aop_zone_agents{zone=\"finance.acme\"}"], 3.0);
    // Cache figures are the resolver's own, not a second count.
    for level in node.handle.resolver().cache_stats().await {
        let series = |name: &str| format!("{name}{{level=\"{}\"}}", level.level);
        assert_eq!(
            after[&series("aop_resolver_cache_hits_total")],
            level.hits as f64
        );
        assert_eq!(
            after[&series("aop_resolver_cache_misses_total")],
            level.misses as f64
        );
    }
    assert!(after["aop_resolver_cache_misses_total{level=\"answers\"}"] >= 1.0);
    node.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn status_json_lists_zones_agents_and_the_request_ids_returned() {
    let mut node = start_node().await;
    let (status, _, body) = get(&format!("{}healthz", node.admin)).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = get(&format!("{}readyz", node.admin)).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    let mut request = tonic::Request::new(resolve_request("analyst.finance.acme", false));
    request
        .metadata_mut()
        .insert("x-request-id", "test-request-42".parse().unwrap());
    let response = node.client.resolve(request).await.expect("an answer");
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "test-request-42"
    );
    let response = node
        .client
        .resolve(resolve_request("nobody.finance.acme", false))
        .await
        .expect("an answer");
    let generated = response
        .metadata()
        .get("x-request-id")
        .expect("a generated request id")
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(generated.len(), 16, "{generated}");
    // An invalid id is replaced, not echoed.
    let mut request = tonic::Request::new(resolve_request("analyst.finance.acme", false));
    request
        .metadata_mut()
        .insert("x-request-id", "bad id!".parse().unwrap());
    let status = node
        .client
        .get_zone(pb::GetZoneRequest {
            zone: "nowhere".into(),
            recursive: false,
        })
        .await
        .expect_err("not our zone");
    let refused_id = status
        .metadata()
        .get("x-request-id")
        .expect("errors carry the request id too")
        .to_str()
        .unwrap()
        .to_string();
    let response = node.client.resolve(request).await.expect("an answer");
    assert_ne!(response.metadata().get("x-request-id").unwrap(), "bad id!");
    dns_query(
        node.handle.dns_addr().unwrap(),
        "analyst.finance.acme.",
        RecordType::TXT,
    )
    .await;

    let (status, content_type, body) = get(&format!("{}status.json", node.admin)).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["node_id"], "admin-test");
    assert_eq!(doc["ready"], true);
    let zones = doc["zones"].as_array().unwrap();
    assert_eq!(zones.len(), 1);
    assert_eq!(zones[0]["zone"], "finance.acme");
    assert_eq!(zones[0]["role"], "primary");
    assert_eq!(zones[0]["serial"], 2026112401);
    assert_eq!(zones[0]["agent_count"], 2);
    assert_eq!(zones[0]["delegations"][0]["zone"], "eu.finance.acme");
    let agents: Vec<&str> = zones[0]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["analyst.finance.acme", "fx.trading.finance.acme"]);
    assert_eq!(
        zones[0]["agents"][0]["endpoints"][0]["url"],
        "http://127.0.0.1:9101/mcp"
    );
    let levels: Vec<&str> = doc["cache"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["answers", "negatives", "delegations"]);

    let recent = doc["recent"].as_array().unwrap();
    let find = |id: &str| {
        recent
            .iter()
            .find(|q| q["request_id"] == id)
            .unwrap_or_else(|| panic!("request {id} in recent queries: {recent:?}"))
    };
    let given = find("test-request-42");
    assert_eq!(given["door"], "grpc");
    assert_eq!(given["kind"], "Resolve");
    assert_eq!(given["name"], "analyst.finance.acme");
    assert_eq!(given["outcome"], "ok");
    assert_eq!(find(&generated)["name"], "nobody.finance.acme");
    let refused = find(&refused_id);
    assert_eq!(
        (&refused["kind"], &refused["name"], &refused["outcome"]),
        (
            &serde_json::json!("GetZone"),
            &serde_json::json!("nowhere"),
            &serde_json::json!("not_found")
        )
    );
    // Newest first: the DNS query came last.
    assert_eq!(recent[0]["door"], "dns");
    assert_eq!(recent[0]["name"], "analyst.finance.acme");
    assert_eq!(recent[0]["kind"], "TXT");
    assert_eq!(recent[0]["outcome"], "answer");
    assert_eq!(recent[0]["request_id"].as_str().unwrap().len(), 16);

    // The page and its parts are served, with their types and headers.
    let response = reqwest::get(&node.admin).await.unwrap();
    assert_eq!(
        response.headers()["content-security-policy"],
        "default-src 'self'; frame-ancestors 'none'"
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("<script src=\"app.js\" defer></script>"));
    let (status, content_type, script) = get(&format!("{}app.js", node.admin)).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/javascript"));
    assert!(
        !script.contains("innerHTML"),
        "the page never parses data as HTML"
    );
    node.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn readyz_waits_for_a_secondary_until_its_primary_answers() {
    // The primary's address is reserved by the OS, but nothing answers there yet.
    let primary_addr = free_addr();
    let primary_url = format!("http://{primary_addr}");
    let admin = AdminListener::bind(loopback()).await.unwrap();
    let admin_url = admin.url();
    let secondary = bind()
        .await
        .serve_with(
            ServeOptions::new(Vec::new())
                .node_id("secondary")
                .admin(admin)
                .secondary(Name::parse("finance.acme").unwrap(), &primary_url),
        )
        .expect("secondary serves");
    let (status, _, body) = get(&format!("{admin_url}healthz")).await;
    assert_eq!(status, 200, "alive while not ready: {body}");
    let (status, _, body) = get(&format!("{admin_url}readyz")).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        format!("not ready:\nfinance.acme: secondary of {primary_url}, not transferred yet\n")
    );
    let metrics = parse_exposition(&get(&format!("{admin_url}metrics")).await.2);
    assert_eq!(
        metrics["aop_zone_served{zone=\"finance.acme\",role=\"secondary\"}"],
        0.0
    );

    // The primary comes up on that address; a NOTIFY wakes the secondary at once.
    let primary = GrpcListener::bind(primary_addr)
        .await
        .expect("the reserved port is free again")
        .serve_with(ServeOptions::new(vec![zone(&finance_zone(&primary_url))]).node_id("primary"))
        .expect("primary serves");
    let mut client = connect(&secondary.grpc_url()).await.unwrap();
    client
        .notify(pb::NotifyRequest {
            zone: "finance.acme".into(),
            serial: 2026112401,
        })
        .await
        .expect("the secondary takes a NOTIFY");
    eventually(
        Duration::from_secs(10),
        "the secondary is ready",
        || async { get(&format!("{admin_url}readyz")).await.0 == 200 },
    )
    .await;
    let metrics = parse_exposition(&get(&format!("{admin_url}metrics")).await.2);
    assert_eq!(
        metrics["aop_zone_served{zone=\"finance.acme\",role=\"secondary\"}"],
        1.0
    );
    assert_eq!(
        metrics["aop_zone_serial{zone=\"finance.acme\",role=\"secondary\"}"],
        2026112401.0
    );
    let doc: serde_json::Value =
        serde_json::from_str(&get(&format!("{admin_url}status.json")).await.2).unwrap();
    assert_eq!(doc["zones"][0]["role"], "secondary");
    assert_eq!(doc["zones"][0]["primary"], primary_url.as_str());
    assert_eq!(doc["zones"][0]["agent_count"], 2);
    secondary.shutdown().await.unwrap();
    primary.shutdown().await.unwrap();
}
