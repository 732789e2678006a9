//! The gateway follows a zone it reaches through a resolver node: the node relays a Watch
//! stream from one of the zone's servers, and when that server goes away the gateway
//! reopens the stream on another and keeps following.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use aop::authority::live::{AgentUpdate, Registration};
use aop::gateway::{self, GatewayConfig, GatewayHandle};
use aop::name::Name;
use aop::node::{GrpcListener, NodeHandle, ServeOptions};
use aop::record::{Endpoint, ServerAddress};
use aop::zone::file;

const DEADLINE: Duration = Duration::from_secs(20);

async fn bind() -> GrpcListener {
    GrpcListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind a free port")
}

fn zone(text: &str) -> aop::zone::ZoneSnapshot {
    file::parse(Path::new("test.toml"), text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn name(text: &str) -> Name {
    Name::parse(text).unwrap()
}

async fn register(node: &NodeHandle, agent: &str) {
    let registration = Registration {
        name: name(&format!("{agent}.finance.acme")),
        endpoint: Endpoint::new("http://127.0.0.1:9/mcp", agent, 10, 1).unwrap(),
        lease_secs: 600,
        fields: AgentUpdate::default(),
    };
    node.authority()
        .register(name("finance.acme"), registration)
        .await
        .expect("registered");
}

/// Waits until the gateway's tools include (or not) `tool`.
async fn until_tool(gateway: &GatewayHandle, tool: &str, present: bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut changes = gateway.gateway.directory().subscribe();
    loop {
        let listing = gateway.gateway.directory().current().listing.clone();
        if listing.by_tool.contains_key(tool) == present {
            return;
        }
        let now = tokio::time::Instant::now();
        assert!(now < deadline, "{tool} present={present} not seen in time");
        let _ = tokio::time::timeout(deadline - now, changes.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_follows_a_zone_through_a_resolver_and_survives_a_server_going_away() {
    let (root, fin1, fin2, resolver) = (bind().await, bind().await, bind().await, bind().await);
    let (root_url, fin1_url, fin2_url) = (root.url(), fin1.url(), fin2.url());
    let root_zone = zone(&format!(
        r#"
[zone]
origin = "."
serial = 1
ttl = 3600
servers = [{{ grpc = "{root_url}" }}]

[[delegation]]
zone = "finance.acme"
servers = [{{ grpc = "{fin1_url}" }}, {{ grpc = "{fin2_url}" }}]
"#
    ));
    let finance_zone = format!(
        r#"
[zone]
origin = "finance.acme"
serial = 1
ttl = 300
servers = [{{ grpc = "{fin1_url}" }}, {{ grpc = "{fin2_url}" }}]

[[agent]]
name = "analyst"
endpoints = [{{ url = "http://127.0.0.1:9/mcp" }}]
"#
    );
    let root = root
        .serve_with(ServeOptions::new(vec![root_zone]).node_id("root"))
        .expect("root serves");
    // Two servers holding the same data (each takes the same registrations below), so the
    // stream can move from one to the other.
    let mut finance = vec![
        Some(
            fin1.serve_with(ServeOptions::new(vec![zone(&finance_zone)]).node_id("finance-1"))
                .expect("serves"),
        ),
        Some(
            fin2.serve_with(ServeOptions::new(vec![zone(&finance_zone)]).node_id("finance-2"))
                .expect("serves"),
        ),
    ];
    let resolver = resolver
        .serve_with(
            ServeOptions::new(Vec::new())
                .node_id("resolver")
                .roots(vec![ServerAddress::new(&root_url, None).unwrap()]),
        )
        .expect("resolver serves");

    let mut config = GatewayConfig::new(resolver.grpc_url());
    config.mounts = vec![name("finance.acme")];
    // An hour: only the Watch stream can bring changes in time.
    config.poll_interval = Duration::from_secs(3600);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = gateway::start(config, listener).await.expect("gateway");
    until_tool(&gateway, "analyst_finance_acme", true).await;

    for node in finance.iter().flatten() {
        register(node, "writer").await;
    }
    until_tool(&gateway, "writer_finance_acme", true).await;

    // Stop the server the stream comes from (the one with a Watch subscriber): the stream
    // ends, the gateway reopens it through the resolver on the other server, and a
    // registration there reaches the tools.
    let origin = name("finance.acme");
    let relayed_from = finance
        .iter()
        .position(|node| node.as_ref().unwrap().authority().watchers(&origin) > 0)
        .expect("one finance server has the gateway's Watch stream");
    let survivor = 1 - relayed_from;
    let stopped = finance[relayed_from].take().unwrap();
    stopped.shutdown().await.expect("clean shutdown");
    // The stream ended with the node; the gateway reopens it on the survivor.
    let survivor = finance[survivor].as_ref().unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while survivor.authority().watchers(&origin) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Watch stream did not move to the surviving server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Only the stream can bring this one (polling is an hour).
    register(survivor, "scribe").await;
    until_tool(&gateway, "scribe_finance_acme", true).await;
    let zone = &gateway.gateway.directory().current().zones[&name("finance.acme")];
    assert_eq!(zone.error, None);

    gateway.shutdown().await;
    for node in finance.into_iter().flatten() {
        node.shutdown().await.expect("clean shutdown");
    }
    resolver.shutdown().await.expect("clean shutdown");
    root.shutdown().await.expect("clean shutdown");
}
