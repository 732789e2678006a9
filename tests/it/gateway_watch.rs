//! The gateway follows a zone it reaches through a resolver node: the node relays a Watch
//! stream from one of the zone's servers, and when that server goes away the gateway
//! reopens the stream on another and keeps following.

use std::time::Duration;

use aop::authority::live::{AgentUpdate, Registration};
use aop::gateway::{self, GatewayConfig, GatewayHandle};
use aop::name::Name;
use aop::node::NodeHandle;
use aop::record::Endpoint;

use crate::support::{AgentSpec, FederationBuilder, ZoneSpec, eventually, free_listener};

const DEADLINE: Duration = Duration::from_secs(20);

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
    let mut fed = FederationBuilder::new()
        .zone(ZoneSpec::root().ttl(3600))
        // Two servers holding the same data (each takes the same registrations below), so the
        // stream can move from one to the other.
        .zone(
            ZoneSpec::new("finance.acme")
                .servers(2)
                .ttl(300)
                .agent(AgentSpec::new("analyst")),
        )
        .start()
        .await;

    let mut config = GatewayConfig::new(fed.resolver().grpc_url());
    config.mounts = vec![name("finance.acme")];
    // An hour: only the Watch stream can bring changes in time.
    config.poll_interval = Duration::from_secs(3600);
    let gateway = gateway::start(config, free_listener().await)
        .await
        .expect("gateway");
    until_tool(&gateway, "analyst_finance_acme", true).await;

    for node in fed.running("finance.acme") {
        register(node, "writer").await;
    }
    until_tool(&gateway, "writer_finance_acme", true).await;

    // Stop the server the stream comes from (the one with a Watch subscriber): the stream
    // ends, the gateway reopens it through the resolver on the other server, and a
    // registration there reaches the tools.
    let origin = name("finance.acme");
    let relayed_from = (0..2)
        .find(|&index| {
            fed.server("finance.acme", index)
                .authority()
                .watchers(&origin)
                > 0
        })
        .expect("one finance server has the gateway's Watch stream");
    let survivor = 1 - relayed_from;
    fed.stop("finance.acme", relayed_from).await;
    // The stream ended with the node; the gateway reopens it on the survivor.
    let survivor = fed.server("finance.acme", survivor);
    eventually(
        DEADLINE,
        "the Watch stream moves to the surviving server",
        || async { survivor.authority().watchers(&origin) > 0 },
    )
    .await;
    // Only the stream can bring this one (polling is an hour).
    register(survivor, "scribe").await;
    until_tool(&gateway, "scribe_finance_acme", true).await;
    let zone = &gateway.gateway.directory().current().zones[&name("finance.acme")];
    assert_eq!(zone.error, None);

    gateway.shutdown().await;
    fed.shutdown().await;
}

/// The root zone can be mounted like any other (`--mount .`): it is listed and followed under
/// its written name ".", not the empty string, which the wire refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_mounts_and_follows_the_root_zone() {
    let fed = FederationBuilder::new()
        .zone(ZoneSpec::root().ttl(3600).agent(AgentSpec::new("analyst")))
        .start()
        .await;
    let mut config = GatewayConfig::new(fed.resolver().grpc_url());
    config.mounts = vec![Name::root()];
    config.poll_interval = Duration::from_secs(3600);
    let gateway = gateway::start(config, free_listener().await)
        .await
        .expect("gateway");
    until_tool(&gateway, "analyst", true).await;
    let zone = &gateway.gateway.directory().current().zones[&Name::root()];
    assert_eq!(zone.error, None);

    // Only the Watch stream can bring this one (polling is an hour).
    let root_server = fed.server(".", 0);
    let registration = Registration {
        name: name("writer"),
        endpoint: Endpoint::new("http://127.0.0.1:9/mcp", "writer", 10, 1).unwrap(),
        lease_secs: 600,
        fields: AgentUpdate::default(),
    };
    root_server
        .authority()
        .register(Name::root(), registration)
        .await
        .expect("registered");
    until_tool(&gateway, "writer", true).await;

    gateway.shutdown().await;
    fed.shutdown().await;
}
