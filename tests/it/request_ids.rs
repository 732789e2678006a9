//! One request id follows a query across nodes: a resolver node asked with `x-request-id`
//! sends the same id with every query it makes to the authorities on the way, and a gateway
//! tool call's id reaches the resolver node and the zone's server.

use aop::gateway::{self, GatewayConfig};
use aop::grpc::pb;
use aop::name::Name;
use aop::node::NodeHandle;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use serde_json::json;

use crate::support::{AgentSpec, FederationBuilder, ZoneSpec, connect, free_listener};

/// The request ids of the gRPC requests a node has seen, with their method.
fn seen(node: &NodeHandle) -> Vec<(String, &'static str)> {
    node.recent_queries()
        .snapshot()
        .into_iter()
        .filter(|q| q.door == "grpc")
        .map(|q| (q.request_id.to_string(), q.kind))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_follows_a_query_from_node_to_node() {
    let fed = FederationBuilder::new()
        .zone(ZoneSpec::new("finance.acme").agent(AgentSpec::new("analyst")))
        .start()
        .await;
    let (root, finance, resolver) = (
        fed.server(".", 0),
        fed.server("finance.acme", 0),
        fed.resolver(),
    );

    // A client's id reaches every authority the resolver asks.
    let mut client = connect(&resolver.grpc_url()).await.unwrap();
    let mut request = tonic::Request::new(pb::ResolveRequest {
        name: "analyst.finance.acme".into(),
        recursive: true,
        trace: false,
    });
    request
        .metadata_mut()
        .insert("x-request-id", "trace-me-1".parse().unwrap());
    let answer = client
        .resolve(request)
        .await
        .expect("resolved")
        .into_inner();
    assert_eq!(answer.agent.unwrap().name, "analyst.finance.acme");
    for node in [resolver, root, finance] {
        assert!(
            seen(node).contains(&("trace-me-1".to_string(), "Resolve")),
            "{}: {:?}",
            node.node_id(),
            seen(node)
        );
    }

    // A gateway tool call's id reaches the resolver node and, forwarded, the zone's server.
    let mut config = GatewayConfig::new(resolver.grpc_url());
    config.mounts = vec![Name::parse("finance.acme").unwrap()];
    let gateway = gateway::start(config, free_listener().await)
        .await
        .expect("gateway");
    let mcp = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("request-id-test", "1"),
    )
    .serve(crate::support::mcp::transport(gateway.url().unwrap()))
    .await
    .expect("MCP handshake");
    let before: Vec<String> = seen(finance).into_iter().map(|(id, _)| id).collect();
    let found = mcp
        .call_tool(
            CallToolRequestParams::new("search_agents")
                .with_arguments(json!({"query": "analyst"}).as_object().unwrap().clone()),
        )
        .await
        .expect("search_agents");
    assert_eq!(found.is_error, Some(false));
    let at_resolver: Vec<(String, &str)> = seen(resolver)
        .into_iter()
        .filter(|(_, method)| *method == "Search")
        .collect();
    let at_finance: Vec<(String, &str)> = seen(finance)
        .into_iter()
        .filter(|(id, method)| *method == "Search" && !before.contains(id))
        .collect();
    assert_eq!(at_resolver.len(), 1, "{at_resolver:?}");
    assert_eq!(at_finance.len(), 1, "{at_finance:?}");
    assert_eq!(at_resolver[0].0, at_finance[0].0, "one id across the hops");
    assert_eq!(at_resolver[0].0.len(), 16, "the gateway's generated id");

    drop(mcp);
    gateway.shutdown().await;
    fed.shutdown().await;
}
