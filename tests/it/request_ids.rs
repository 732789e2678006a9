//! One request id follows a query across nodes: a resolver node asked with `x-request-id`
//! sends the same id with every query it makes to the authorities on the way, and a gateway
//! tool call's id reaches the resolver node and the zone's server.

use std::net::SocketAddr;
use std::path::Path;

use aop::gateway::{self, GatewayConfig};
use aop::grpc::pb;

/// The generated client on one connection (these tests exercise the wire itself).
async fn connect(url: &str) -> Result<aop::grpc::RegistryClient, aop::grpc::ClientError> {
    aop::grpc::connect(url).await.map(|client| client.raw())
}
use aop::name::Name;
use aop::node::{GrpcListener, NodeHandle, ServeOptions};
use aop::record::ServerAddress;
use aop::zone::file;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;

async fn bind() -> GrpcListener {
    GrpcListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind a free port")
}

fn zone(text: &str) -> aop::zone::ZoneSnapshot {
    file::parse(Path::new("test.toml"), text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

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
    let (root, finance, resolver) = (bind().await, bind().await, bind().await);
    let (root_url, finance_url) = (root.url(), finance.url());
    let root = root
        .serve_with(
            ServeOptions::new(vec![zone(&format!(
                "[zone]\norigin = \".\"\nserial = 1\nservers = [{{ grpc = \"{root_url}\" }}]\n\n\
                 [[delegation]]\nzone = \"finance.acme\"\nservers = [{{ grpc = \"{finance_url}\" }}]\n"
            ))])
            .node_id("root"),
        )
        .expect("root serves");
    let finance = finance
        .serve_with(
            ServeOptions::new(vec![zone(&format!(
                "[zone]\norigin = \"finance.acme\"\nserial = 1\nservers = [{{ grpc = \"{finance_url}\" }}]\n\n\
                 [[agent]]\nname = \"analyst\"\nendpoints = [{{ url = \"http://127.0.0.1:9/mcp\" }}]\n"
            ))])
            .node_id("finance"),
        )
        .expect("finance serves");
    let resolver = resolver
        .serve_with(
            ServeOptions::new(Vec::new())
                .node_id("resolver")
                .roots(vec![ServerAddress::new(&root_url, None).unwrap()]),
        )
        .expect("resolver serves");

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
    for node in [&resolver, &root, &finance] {
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = gateway::start(config, listener).await.expect("gateway");
    let mcp = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("request-id-test", "1"),
    )
    .serve(StreamableHttpClientTransport::from_uri(
        gateway.url().unwrap(),
    ))
    .await
    .expect("MCP handshake");
    let before: Vec<String> = seen(&finance).into_iter().map(|(id, _)| id).collect();
    let found = mcp
        .call_tool(
            CallToolRequestParams::new("search_agents")
                .with_arguments(json!({"query": "analyst"}).as_object().unwrap().clone()),
        )
        .await
        .expect("search_agents");
    assert_eq!(found.is_error, Some(false));
    let at_resolver: Vec<(String, &str)> = seen(&resolver)
        .into_iter()
        .filter(|(_, method)| *method == "Search")
        .collect();
    let at_finance: Vec<(String, &str)> = seen(&finance)
        .into_iter()
        .filter(|(id, method)| *method == "Search" && !before.contains(id))
        .collect();
    assert_eq!(at_resolver.len(), 1, "{at_resolver:?}");
    assert_eq!(at_finance.len(), 1, "{at_finance:?}");
    assert_eq!(at_resolver[0].0, at_finance[0].0, "one id across the hops");
    assert_eq!(at_resolver[0].0.len(), 16, "the gateway's generated id");

    drop(mcp);
    gateway.shutdown().await;
    for node in [resolver, finance, root] {
        node.shutdown().await.expect("clean shutdown");
    }
}
