//! The admin endpoint of a node on free ports: `/metrics` moves as DNS and gRPC queries
//! flow (and parses as the text format), `/healthz`, `/readyz` for a secondary before and
//! after its primary answers, `/status.json` with zones, agents and recent queries carrying
//! the request ids the gRPC door returned; Host headers that do not name the endpoint are
//! refused, secrets in recent queries redacted, a bind to every address warned about; the
//! status tells file records from live ones (with leases), a primary lists its secondaries
//! and their lag, a secondary says when it last heard from its primary. The status page in headless Chromium is in
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
use aop::node::{NodeHandle, ServeOptions};
use aop::record::ServerAddress;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name as DnsName, RecordType};
use tokio::net::UdpSocket;

use crate::support::{bind, connect, eventually, free_addr, loopback, parse_exposition, zone};

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
    let response = crate::support::http()
        .get(url)
        .send()
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
            health: None,
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
    let response = crate::support::http()
        .get(&node.admin)
        .send()
        .await
        .unwrap();
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
    // The primary's port is held (bound and listening, so no other socket can take it in
    // the meantime) but nothing serves there yet: the secondary's transfer gets no answer.
    let primary_listener = bind().await;
    let primary_url = primary_listener.url();
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

    // The primary comes up on that port; a NOTIFY wakes the secondary at once.
    let primary = primary_listener
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

/// GET `url` with `host` as the Host header.
async fn get_as(url: &str, host: &str) -> (u16, String) {
    let response = crate::support::http()
        .get(url)
        .header("host", host)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_admin_endpoint_answers_only_hosts_that_name_it() {
    let node = start_node().await;
    let port = node.handle.admin_addr().unwrap().port();
    let metrics = format!("{}metrics", node.admin);
    // Every loopback name and address (all of 127.0.0.0/8, ::1), with or without a port.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("127.0.1.5:{port}"),
        format!("localhost:{port}"),
        "LocalHost".to_string(),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(get_as(&metrics, &host).await.0, 200, "Host {host}");
    }
    // A name a rebinding page would send, or any other address: 403, naming the Host.
    for host in [
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("10.1.2.3:{port}"),
    ] {
        for path in ["metrics", "status.json", "", "healthz"] {
            let (status, body) = get_as(&format!("{}{path}", node.admin), &host).await;
            assert_eq!(status, 403, "Host {host} /{path}");
            assert!(
                body.starts_with("Forbidden:") && body.contains(&format!("{host:?}")),
                "{body}"
            );
        }
    }
    node.handle.shutdown().await.unwrap();

    // Names the operator allowed pass too.
    let admin = AdminListener::bind(loopback())
        .await
        .unwrap()
        .allow_hosts(vec!["metrics.mgmt.example".to_string()]);
    let admin_url = admin.url();
    let handle = bind()
        .await
        .serve_with(
            ServeOptions::new(vec![zone(&finance_zone("http://127.0.0.1:9"))])
                .node_id("allowed")
                .admin(admin),
        )
        .expect("node serves");
    let healthz = format!("{admin_url}healthz");
    assert_eq!(get_as(&healthz, "metrics.mgmt.example:9300").await.0, 200);
    let (status, body) = get_as(&healthz, "other.mgmt.example").await;
    assert_eq!(status, 403);
    assert!(body.contains("metrics.mgmt.example"), "{body}");
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn recent_queries_show_urls_with_their_secrets_redacted() {
    let mut node = start_node().await;
    // A search names a URL carrying credentials: the gRPC observer records field 1.
    for query in [
        "https://agents.example/mcp?token=t0ps3cret&page=2",
        "http://bot:hunter2@agents.example/?api_key=k3y&Password=pw&x=1",
    ] {
        // Answered or not (this node has no root), the request is recorded.
        let _ = node
            .client
            .search(pb::SearchRequest {
                query: query.into(),
                zone: "finance.acme".into(),
                ..pb::SearchRequest::default()
            })
            .await;
    }
    let (_, _, body) = get(&format!("{}status.json", node.admin)).await;
    for secret in ["t0ps3cret", "hunter2", "k3y", "=pw"] {
        assert!(!body.contains(secret), "{secret} in {body}");
    }
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = doc["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["kind"] == "Search")
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "http://bot:REDACTED@agents.example/?api_key=REDACTED&Password=REDACTED&x=1",
            "https://agents.example/mcp?token=REDACTED&page=2",
        ]
    );
    node.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_admin_endpoint_bound_to_every_address_warns_that_the_network_reaches_it() {
    let setup = crate::support::process::setup().await;
    let data = tempfile::tempdir().unwrap();
    let mut node = crate::support::process::NodeProcess::spawn_with(
        &setup,
        data.path(),
        free_addr(),
        &["--admin", "0.0.0.0:0"],
    );
    node.ready().await;
    let stderr = node.stderr();
    let warning = stderr
        .lines()
        .find(|line| line.contains("reachable from the network"))
        .unwrap_or_else(|| panic!("no warning in:\n{stderr}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("0.0.0.0:"), "{warning}");
}

/// Registers `url` for `name` live on `node`'s finance.acme, with a lease of `lease_secs`.
async fn register_live(handle: &NodeHandle, name: &str, url: &str, lease_secs: u32) {
    use aop::authority::live::{AgentUpdate, Registration};
    let registration = Registration {
        name: Name::parse(name).unwrap(),
        endpoint: aop::record::Endpoint::new(url, "agent", 10, 1).unwrap(),
        lease_secs,
        fields: AgentUpdate::default(),
    };
    handle
        .authority()
        .register(Name::parse("finance.acme").unwrap(), registration)
        .await
        .expect("registered");
}

fn agent<'a>(zone: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    zone["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {zone}"))
}

#[tokio::test]
async fn the_status_tells_file_records_from_live_ones_with_their_leases() {
    let node = start_node().await;
    register_live(
        &node.handle,
        "quant.finance.acme",
        "http://127.0.0.1:9104/mcp",
        60,
    )
    .await;
    // A file agent may take live endpoints beside its file ones.
    register_live(
        &node.handle,
        "analyst.finance.acme",
        "http://127.0.0.1:9199/mcp",
        120,
    )
    .await;
    let (_, _, body) = get(&format!("{}status.json", node.admin)).await;
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let now = doc["now_unix_ms"].as_u64().unwrap();
    let zone = &doc["zones"][0];
    let lease_in = |endpoint: &serde_json::Value| {
        let ends = endpoint["lease_expires_unix_ms"].as_u64().expect("a lease");
        (ends.saturating_sub(now) as f64 / 1000.0).round() as u64
    };

    let analyst = agent(zone, "analyst.finance.acme");
    assert_eq!(analyst["source"], "file");
    let endpoints = analyst["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 3);
    for file_endpoint in &endpoints[..2] {
        assert_eq!(file_endpoint["source"], "file", "{file_endpoint}");
        assert!(file_endpoint.get("lease_expires_unix_ms").is_none());
    }
    assert_eq!(endpoints[2]["url"], "http://127.0.0.1:9199/mcp");
    assert_eq!(endpoints[2]["source"], "live");
    assert!(
        (119..=120).contains(&lease_in(&endpoints[2])),
        "{endpoints:?}"
    );

    let quant = agent(zone, "quant.finance.acme");
    assert_eq!(quant["source"], "live");
    assert_eq!(quant["endpoints"][0]["source"], "live");
    assert!(
        (59..=60).contains(&lease_in(&quant["endpoints"][0])),
        "{quant}"
    );
    assert_eq!(agent(zone, "fx.trading.finance.acme")["source"], "file");
    node.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_primary_lists_its_secondaries_and_their_lag_and_a_secondary_its_refresh() {
    let primary_listener = bind().await;
    let secondary_listener = bind().await;
    let primary_url = primary_listener.url();
    let secondary_url = secondary_listener.url();
    let text = finance_zone(&primary_url).replace(
        &format!("servers = [{{ grpc = \"{primary_url}\" }}]"),
        &format!("servers = [{{ grpc = \"{primary_url}\" }}, {{ grpc = \"{secondary_url}\" }}]"),
    );
    let primary_admin = AdminListener::bind(loopback()).await.unwrap();
    let primary_admin_url = primary_admin.url();
    // No NOTIFY: the secondary hears of a change only when told (or at its refresh, 60 s).
    let mut options = ServeOptions::new(vec![zone(&text)])
        .node_id("primary")
        .admin(primary_admin);
    options.notify = false;
    let primary = primary_listener
        .serve_with(options)
        .expect("primary serves");
    let secondary_admin = AdminListener::bind(loopback()).await.unwrap();
    let secondary_admin_url = secondary_admin.url();
    let secondary = secondary_listener
        .serve_with(
            ServeOptions::new(Vec::new())
                .node_id("secondary")
                .admin(secondary_admin)
                .secondary(Name::parse("finance.acme").unwrap(), &primary_url),
        )
        .expect("secondary serves");
    let primary_doc = || async {
        let body = get(&format!("{primary_admin_url}status.json")).await.2;
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    // Listed in the zone, and seen once it has transferred.
    eventually(
        Duration::from_secs(10),
        "the secondary transfers",
        || async { primary_doc().await["zones"][0]["secondaries"][0]["serial"] == 2026112401 },
    )
    .await;
    let doc = primary_doc().await;
    let secondaries = doc["zones"][0]["secondaries"].as_array().unwrap();
    assert_eq!(secondaries.len(), 1, "{secondaries:?}");
    assert_eq!(secondaries[0]["url"], secondary_url.as_str());
    assert_eq!(secondaries[0]["listed"], true);
    assert_eq!(secondaries[0]["lag"], 0);
    assert_eq!(secondaries[0]["last_transfer_full"], true);

    // The primary counts the transfer as it starts; the secondary has it once committed.
    eventually(
        Duration::from_secs(10),
        "the secondary is ready",
        || async { get(&format!("{secondary_admin_url}readyz")).await.0 == 200 },
    )
    .await;
    let metrics = parse_exposition(&get(&format!("{secondary_admin_url}metrics")).await.2);
    let age = metrics["aop_zone_last_refresh_seconds{zone=\"finance.acme\",role=\"secondary\"}"];
    assert!((0.0..60.0).contains(&age), "{age}");
    let doc: serde_json::Value =
        serde_json::from_str(&get(&format!("{secondary_admin_url}status.json")).await.2).unwrap();
    assert!(doc["zones"][0]["last_refresh_unix_ms"].as_u64().is_some());
    assert!(
        doc["zones"][0]["secondaries"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A change on the primary: the secondary is one serial behind until it is told.
    register_live(
        &primary,
        "quant.finance.acme",
        "http://127.0.0.1:9104/mcp",
        60,
    )
    .await;
    let lag = format!(
        "aop_zone_secondary_lag_serials{{zone=\"finance.acme\",secondary=\"{secondary_url}\"}}"
    );
    let metrics = parse_exposition(&get(&format!("{primary_admin_url}metrics")).await.2);
    assert_eq!(metrics[&lag], 1.0);
    let since = format!(
        "aop_zone_secondary_last_transfer_seconds{{zone=\"finance.acme\",secondary=\"{secondary_url}\"}}"
    );
    assert!(metrics[&since] < 60.0);
    assert_eq!(primary_doc().await["zones"][0]["secondaries"][0]["lag"], 1);
    connect(&secondary.grpc_url())
        .await
        .unwrap()
        .notify(pb::NotifyRequest {
            zone: "finance.acme".into(),
            serial: 0,
        })
        .await
        .expect("the secondary takes a NOTIFY");
    eventually(
        Duration::from_secs(10),
        "the secondary catches up",
        || async {
            let metrics = parse_exposition(&get(&format!("{primary_admin_url}metrics")).await.2);
            metrics.get(&lag) == Some(&0.0)
        },
    )
    .await;
    // The secondary copies where records came from, not the primary's leases.
    let secondary_doc = || async {
        let body = get(&format!("{secondary_admin_url}status.json")).await.2;
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    eventually(Duration::from_secs(10), "the secondary commits", || async {
        secondary_doc().await["zones"][0]["agent_count"] == 3
    })
    .await;
    let doc = secondary_doc().await;
    let quant = agent(&doc["zones"][0], "quant.finance.acme");
    assert_eq!(quant["source"], "live");
    assert!(quant["endpoints"][0].get("lease_expires_unix_ms").is_none());
    secondary.shutdown().await.unwrap();
    primary.shutdown().await.unwrap();
}

/// A node listening on every address gives other nodes the URL it is told to advertise
/// (`--advertise`): its primary knows it there, NOTIFYs it there, and its status page and
/// gossip show it; not `http://0.0.0.0:PORT`, which no other host can reach.
#[tokio::test]
async fn a_node_on_a_wildcard_address_advertises_the_url_it_is_given() {
    let primary_listener = bind().await;
    let primary_url = primary_listener.url();
    let secondary_listener = aop::node::GrpcListener::bind(SocketAddr::from(([0, 0, 0, 0], 0)))
        .await
        .unwrap();
    let wildcard_url = secondary_listener.url();
    let advertised = format!(
        "http://127.0.0.1:{}",
        secondary_listener.local_addr().port()
    );
    let primary_admin = AdminListener::bind(loopback()).await.unwrap();
    let primary_admin_url = primary_admin.url();
    let primary = primary_listener
        .serve_with(
            ServeOptions::new(vec![zone(&finance_zone(&primary_url))])
                .node_id("primary")
                .admin(primary_admin),
        )
        .expect("primary serves");
    let secondary_admin = AdminListener::bind(loopback()).await.unwrap();
    let secondary_admin_url = secondary_admin.url();
    let secondary = secondary_listener
        .serve_with(
            ServeOptions::new(Vec::new())
                .node_id("secondary")
                .admin(secondary_admin)
                .secondary(Name::parse("finance.acme").unwrap(), &primary_url)
                .advertise(format!("{advertised}/")),
        )
        .expect("secondary serves");
    assert_eq!(
        secondary.advertised_url(),
        advertised,
        "a trailing / is dropped"
    );
    assert_eq!(secondary.grpc_url(), wildcard_url);
    let secondaries = || async {
        let body = get(&format!("{primary_admin_url}status.json")).await.2;
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        doc["zones"][0]["secondaries"].clone()
    };
    eventually(
        Duration::from_secs(10),
        "the primary knows the secondary from its transfer",
        || async { secondaries().await[0]["serial"] == 2026112401 },
    )
    .await;
    let known = secondaries().await;
    assert_eq!(known.as_array().map(Vec::len), Some(1), "{known}");
    assert_eq!(known[0]["url"], advertised.as_str(), "{known}");
    let doc: serde_json::Value =
        serde_json::from_str(&get(&format!("{secondary_admin_url}status.json")).await.2).unwrap();
    assert_eq!(doc["grpc"], advertised.as_str());
    // A change reaches the secondary by NOTIFY at that URL, well before its 60 s refresh.
    register_live(
        &primary,
        "quant.finance.acme",
        "http://127.0.0.1:9104/mcp",
        60,
    )
    .await;
    let finance = Name::parse("finance.acme").unwrap();
    let serial = |node: &NodeHandle| node.authority().statuses().get(&finance).map(|s| s.serial);
    let primary_serial = serial(&primary).expect("the primary serves finance.acme");
    eventually(Duration::from_secs(10), "the NOTIFY is heard", || async {
        serial(&secondary) == Some(primary_serial)
    })
    .await;
}

/// An advertised URL that is not one, or whose scheme is not the door's, stops the node
/// naming the flag and what to write.
#[tokio::test]
async fn an_advertised_url_is_checked() {
    for (url, expected) in [
        ("127.0.0.1:7100", "no scheme"),
        ("ftp://node1:7100", "not http or https"),
        ("https://node1:7100", "must start with http://"),
    ] {
        let listener = bind().await;
        let error = match listener.serve_with(ServeOptions::new(Vec::new()).advertise(url)) {
            Ok(_) => panic!("{url} was accepted"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("--advertise"), "{error}");
        assert!(error.contains(expected), "{url}: {error}");
    }
}
