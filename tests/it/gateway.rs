//! The MCP gateway over real HTTP, driven by rmcp's client: a node on 127.0.0.1:0 serving a
//! zone whose endpoints are built-in agents (in this process, or child processes where a
//! test kills one), and a gateway mounting that zone.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aop::agent::AgentKind;
use aop::authority::live::{AgentUpdate, Registration};
use aop::gateway::breaker::BreakerState;
use aop::gateway::{self, GatewayConfig, GatewayHandle, shapes};
use aop::name::Name;
use aop::node::NodeHandle;
use aop::record::Endpoint;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    JsonObject, ProgressNotificationParam,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::support::{AOP, ReservedPort, agent, bind, dead_url, eventually, free_listener, zone};

const DEADLINE: Duration = Duration::from_secs(20);

fn zone_text(serial: u32, agents: &str) -> String {
    format!(
        r#"
[zone]
origin = "finance.acme"
serial = {serial}
ttl = 2
negative_ttl = 1
servers = [{{ grpc = "http://127.0.0.1:7102" }}]
{agents}
"#
    )
}

async fn start_node(text: &str) -> NodeHandle {
    bind()
        .await
        .serve(Some("finance-node".to_string()), vec![zone(text)])
        .expect("node serves")
}

async fn start_gateway(node: &NodeHandle) -> GatewayHandle {
    let mut config = GatewayConfig::new(node.grpc_url());
    config.mounts = vec![Name::parse("finance.acme").unwrap()];
    // An hour: a zone change can only reach the gateway through the Watch stream.
    config.poll_interval = Duration::from_secs(3600);
    gateway::start(config, free_listener().await)
        .await
        .expect("start the gateway")
}

/// Registers `writer.finance.acme` live at the node, as `aop register` would.
async fn register_writer(node: &NodeHandle, url: &str) {
    let registration = Registration {
        name: Name::parse("writer.finance.acme").unwrap(),
        endpoint: Endpoint::new(url, "writer", 10, 1).unwrap(),
        lease_secs: 600,
        fields: AgentUpdate::default(),
    };
    node.authority()
        .register(Name::parse("finance.acme").unwrap(), registration)
        .await
        .expect("registered");
}

/// A client that forwards list_changed and progress notifications to the test.
#[derive(Clone)]
struct Observer {
    list_changed: mpsc::UnboundedSender<()>,
    progress: mpsc::UnboundedSender<ProgressNotificationParam>,
}

impl ClientHandler for Observer {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.list_changed.send(());
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.progress.send(params);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("gateway-test", "1"),
        )
    }
}

struct Client {
    service: RunningService<RoleClient, Observer>,
    list_changed: mpsc::UnboundedReceiver<()>,
    progress: mpsc::UnboundedReceiver<ProgressNotificationParam>,
}

async fn connect(gateway: &GatewayHandle) -> Client {
    let (list_tx, list_changed) = mpsc::unbounded_channel();
    let (progress_tx, progress) = mpsc::unbounded_channel();
    let observer = Observer {
        list_changed: list_tx,
        progress: progress_tx,
    };
    let transport = crate::support::mcp::transport(gateway.url().unwrap());
    let service = observer.serve(transport).await.expect("MCP handshake");
    Client {
        service,
        list_changed,
        progress,
    }
}

fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    tokio::time::timeout(
        DEADLINE,
        client.service.call_tool(
            CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments)),
        ),
    )
    .await
    .expect("answer in time")
    .expect("a tool result, not a protocol error")
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn structured(result: &CallToolResult) -> &Value {
    result
        .structured_content
        .as_ref()
        .expect("structuredContent")
}

fn analyst_zone(urls: &[String]) -> String {
    let endpoints: Vec<String> = urls
        .iter()
        .map(|url| format!(r#"{{ url = "{url}", tool = "analyst", priority = 10, weight = 1 }}"#))
        .collect();
    format!(
        r#"
[[agent]]
name = "analyst"
description = "Financial analyst: ratios, forecasts, filings."
tags = ["finance", "analysis"]
capabilities = ["forecast", "summarize"]
version = "1.4.0"
timeout_ms = 10000
max_retries = 2
endpoints = [{}]
"#,
        endpoints.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_shows_the_meta_tools_and_the_mounted_agents() {
    let (_analyst, server) = agent(AgentKind::Analyst, "analyst").await;
    let (_writer, writer_server) = agent(AgentKind::Writer, "writer").await;
    let agents = format!(
        "{}\n[[agent]]\nname = \"writer\"\ndescription = \"Turns notes into outlines.\"\nendpoints = [{{ url = \"{}\" }}]\n",
        analyst_zone(&[server.url()]),
        writer_server.url()
    );
    let node = start_node(&zone_text(1, &agents)).await;
    let gateway = start_gateway(&node).await;
    let client = connect(&gateway).await;
    let tools = client.service.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for meta in [
        "discover_agents",
        "get_agent_details",
        "get_agents_info",
        "list_agents",
        "search_agents",
        "get_server_info",
        "resolve_agent",
        "call_agent",
        "route_task",
    ] {
        assert!(names.contains(&meta), "{meta} missing from {names:?}");
    }
    assert!(names.contains(&"analyst_finance_acme"), "{names:?}");
    assert!(names.contains(&"writer_finance_acme"), "{names:?}");
    let analyst = tools
        .iter()
        .find(|t| t.name == "analyst_finance_acme")
        .unwrap();
    assert_eq!(analyst.input_schema["required"], json!(["task"]));
    assert!(
        analyst
            .description
            .as_deref()
            .unwrap()
            .contains("Financial analyst")
    );
    for tool in &tools {
        let name = tool.name.as_ref();
        assert!(
            !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "tool name {name:?} is not one LLM APIs accept"
        );
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_is_paged_by_500() {
    let mut agents = String::new();
    for i in 0..620 {
        agents.push_str(&format!(
            "[[agent]]\nname = \"a{i:04}\"\nendpoints = [{{ url = \"http://127.0.0.1:9/mcp\" }}]\n"
        ));
    }
    let node = start_node(&zone_text(1, &agents)).await;
    let gateway = start_gateway(&node).await;
    let client = connect(&gateway).await;
    let first = client.service.list_tools(None).await.expect("first page");
    assert_eq!(first.tools.len(), 500);
    let cursor = first.next_cursor.clone().expect("a next page");
    let second = client
        .service
        .list_tools(Some(
            rmcp::model::PaginatedRequestParams::default().with_cursor(Some(cursor)),
        ))
        .await
        .expect("second page");
    assert_eq!(second.tools.len(), 620 + shapes::NAMES.len() - 500);
    assert!(second.next_cursor.is_none());
    assert_eq!(first.ttl_ms, Some(2000), "ttlMs is the zone TTL");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tools_and_call_agent_return_the_agents_result() {
    let (analyst, server) = agent(AgentKind::Analyst, "analyst").await;
    let node = start_node(&zone_text(1, &analyst_zone(&[server.url()]))).await;
    let gateway = start_gateway(&node).await;
    let client = connect(&gateway).await;

    let result = call(
        &client,
        "analyst_finance_acme",
        json!({"task": "sales 10, 20, 30, 40"}),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    let expected = "count=4 sum=100 mean=25 median=25 min=10 max=40 stdev=11.1803";
    assert_eq!(
        structured(&result),
        &json!({"result": expected, "success": true, "error": null})
    );
    let from_text: Value = serde_json::from_str(&text(&result)).expect("a JSON text block");
    assert_eq!(&from_text, structured(&result));

    let result = call(
        &client,
        "call_agent",
        json!({"name": "analyst.finance.acme", "arguments": {"task": "1 2 3"}}),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    assert_eq!(
        text(&result),
        "count=3 sum=6 mean=2 median=2 min=1 max=3 stdev=0.8165"
    );
    assert_eq!(structured(&result)["served_by"], json!(server.url()));
    assert_eq!(structured(&result)["success"], json!(true));
    assert_eq!(analyst.calls(), 2);

    // Python AOP clients call agents by name: the FQDN works as a tool name too.
    let result = call(&client, "analyst.finance.acme", json!({"task": "5"})).await;
    assert_eq!(structured(&result)["success"], json!(true));

    // Pooled: three calls, one MCP session with the agent.
    assert_eq!(gateway.gateway.session_stats().opened, 1);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_tools_answer_in_the_python_aop_shape() {
    let (_analyst, server) = agent(AgentKind::Analyst, "analyst").await;
    let node = start_node(&zone_text(1, &analyst_zone(&[server.url()]))).await;
    let gateway = start_gateway(&node).await;
    let client = connect(&gateway).await;

    let listed = call(&client, "list_agents", json!({})).await;
    assert_eq!(
        structured(&listed)["agent_names"],
        json!(["analyst.finance.acme"])
    );
    assert_eq!(structured(&listed)["total_count"], json!(1));

    let discovered = call(&client, "discover_agents", json!({})).await;
    let agent = &structured(&discovered)["agents"][0];
    assert_eq!(agent["tool_name"], json!("analyst_finance_acme"));
    assert_eq!(agent["agent_name"], json!("analyst.finance.acme"));
    assert_eq!(agent["tags"], json!(["finance", "analysis"]));
    for key in [
        "description",
        "short_system_prompt",
        "capabilities",
        "role",
        "model_name",
    ] {
        assert!(agent.get(key).is_some(), "discovery info lacks {key}");
    }

    let details = call(
        &client,
        "get_agent_details",
        json!({"agent_name": "analyst_finance_acme"}),
    )
    .await;
    assert_eq!(structured(&details)["success"], json!(true));
    assert_eq!(structured(&details)["agent_info"]["max_retries"], json!(2));
    assert!(structured(&details)["discovery_info"].is_object());

    let missing = call(
        &client,
        "get_agent_details",
        json!({"agent_name": "nobody.finance.acme"}),
    )
    .await;
    assert_eq!(missing.is_error, Some(true));
    assert_eq!(structured(&missing)["success"], json!(false));
    assert!(
        structured(&missing)["error"]
            .as_str()
            .unwrap()
            .contains("nobody.finance.acme")
    );
    assert_eq!(structured(&missing)["agent_info"], Value::Null);

    let info = call(
        &client,
        "get_agents_info",
        json!({"agent_names": ["analyst.finance.acme", "ghost"]}),
    )
    .await;
    assert_eq!(structured(&info)["total_found"], json!(1));
    assert_eq!(structured(&info)["not_found"], json!(["ghost"]));
    assert_eq!(structured(&info)["total_requested"], json!(2));

    let found = call(&client, "search_agents", json!({"query": "forecast"})).await;
    assert_eq!(structured(&found)["total_matches"], json!(1));
    assert_eq!(
        structured(&found)["matching_agents"][0]["agent_name"],
        json!("analyst.finance.acme")
    );
    assert_eq!(structured(&found)["partial"], json!(false));
    let none = call(
        &client,
        "search_agents",
        json!({"query": "forecast", "search_fields": ["name"]}),
    )
    .await;
    assert_eq!(structured(&none)["total_matches"], json!(0));

    let resolved = call(
        &client,
        "resolve_agent",
        json!({"name": "analyst.finance.acme"}),
    )
    .await;
    assert_eq!(structured(&resolved)["served_by"], json!("finance-node"));
    assert_eq!(structured(&resolved)["authoritative"], json!(true));
    assert_eq!(structured(&resolved)["stale"], json!(false));
    assert_eq!(
        structured(&resolved)["endpoints"][0]["url"],
        json!(server.url())
    );

    let server_info = call(&client, "get_server_info", json!({})).await;
    assert_eq!(
        structured(&server_info)["server_info"]["total_agents"],
        json!(1)
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_an_error_result_naming_the_field() {
    let (analyst, server) = agent(AgentKind::Analyst, "analyst").await;
    let node = start_node(&zone_text(1, &analyst_zone(&[server.url()]))).await;
    let gateway = start_gateway(&node).await;
    let client = connect(&gateway).await;

    let result = call(&client, "analyst_finance_acme", json!({"task": 42})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).contains("`task`"), "{}", text(&result));
    assert!(text(&result).contains("string"), "{}", text(&result));

    let result = call(
        &client,
        "call_agent",
        json!({"name": "analyst.finance.acme", "arguments": {}}),
    )
    .await;
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).contains("`task`"), "{}", text(&result));
    assert!(text(&result).contains("required"), "{}", text(&result));
    assert_eq!(analyst.calls(), 0, "invalid calls never reach the agent");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tool_is_a_json_rpc_error() {
    let node = start_node(&zone_text(1, "")).await;
    let gateway = start_gateway(&node).await;
    let client = connect(&gateway).await;
    let error = client
        .service
        .call_tool(CallToolRequestParams::new("no_such_tool").with_arguments(JsonObject::new()))
        .await
        .expect_err("a JSON-RPC error");
    match error {
        rmcp::ServiceError::McpError(data) => {
            assert!(data.message.contains("no_such_tool"), "{}", data.message);
        }
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoints_breaker_opens_and_calls_go_to_the_live_one() {
    let dead = dead_url();
    let (analyst, live) = agent(AgentKind::Analyst, "analyst").await;
    let node = start_node(&zone_text(1, &analyst_zone(&[dead.clone(), live.url()]))).await;
    let gateway = start_gateway(&node).await;
    let client = connect(&gateway).await;
    for i in 0..30 {
        let result = call(
            &client,
            "analyst_finance_acme",
            json!({"task": format!("{i}")}),
        )
        .await;
        assert_ne!(result.is_error, Some(true), "call {i}: {}", text(&result));
    }
    assert_eq!(
        analyst.calls(),
        30,
        "every call answered by the live endpoint"
    );
    let state = gateway.gateway.breakers().state(&dead);
    assert_eq!(state, aop::gateway::breaker::BreakerState::Open);
    let resolved = call(
        &client,
        "resolve_agent",
        json!({"name": "analyst.finance.acme"}),
    )
    .await;
    let endpoints = structured(&resolved)["endpoints"]
        .as_array()
        .unwrap()
        .clone();
    let dead_entry = endpoints.iter().find(|e| e["url"] == json!(dead)).unwrap();
    assert_eq!(dead_entry["breaker"], json!("open"));
    gateway.shutdown().await;
}

/// Two replicas of analyst: the first's port held but not listening, the second an agent;
/// a gateway whose breakers stay open for an hour (only an early probe reaches an open
/// endpoint), called until the first replica's breaker opened.
struct FirstReplicaOpen {
    first_port: ReservedPort,
    first_url: String,
    _second_agent: aop::agent::BuiltinAgent,
    second: aop::mcp::http::McpHttpServer,
    _node: NodeHandle,
    gateway: GatewayHandle,
    client: Client,
}

async fn first_replica_open() -> FirstReplicaOpen {
    let first_port = ReservedPort::new();
    let first_url = format!("http://{}/mcp", first_port.addr());
    let (second_agent, second) = agent(AgentKind::Analyst, "analyst").await;
    let node = start_node(&zone_text(
        1,
        &analyst_zone(&[first_url.clone(), second.url()]),
    ))
    .await;
    let mut config = GatewayConfig::new(node.grpc_url());
    config.mounts = vec![Name::parse("finance.acme").unwrap()];
    config.poll_interval = Duration::from_secs(3600);
    config.breaker.open_for = Duration::from_secs(3600);
    config.breaker.open_max = Duration::from_secs(3600);
    let gateway = gateway::start(config, free_listener().await)
        .await
        .expect("start the gateway");
    let client = connect(&gateway).await;
    let breakers = gateway.gateway.breakers();
    // Nothing listens at the first replica: calls fail over to the second until the first's
    // breaker opens.
    for i in 0.. {
        assert!(i < 200, "the first replica's breaker never opened");
        let result = call(&client, "analyst_finance_acme", json!({"task": "x"})).await;
        assert_ne!(result.is_error, Some(true), "call {i}: {}", text(&result));
        if breakers.state(&first_url) == BreakerState::Open {
            break;
        }
    }
    FirstReplicaOpen {
        first_port,
        first_url,
        _second_agent: second_agent,
        second,
        _node: node,
        gateway,
        client,
    }
}

/// docs/protocol.md §9.3: when every endpoint of an agent has its breaker open, the gateway
/// probes the one open longest instead of failing at once, so a replica that has come back is
/// used again at once. (The chaos run of issue 17: coder-1 back while its breaker was open,
/// coder-2 killed, calls refused with "every endpoint: circuit breaker open" for 2 s.)
/// Breakers stay open for an hour here: only the early probe can reach the first replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_replica_is_called_while_its_breaker_is_still_open() {
    let FirstReplicaOpen {
        first_port,
        first_url,
        second,
        gateway,
        client,
        ..
    } = first_replica_open().await;
    let breakers = gateway.gateway.breakers();
    // The second goes away too: calls fail until its breaker opens as well.
    let second_url = second.url();
    second.shutdown().await;
    for i in 0.. {
        assert!(i < 200, "the second replica's breaker never opened");
        let result = call(&client, "analyst_finance_acme", json!({"task": "x"})).await;
        assert_eq!(result.is_error, Some(true), "call {i}: nothing listens");
        if breakers.state(&second_url) == BreakerState::Open {
            break;
        }
    }
    // The first replica comes back on its address. With every breaker open, a call probes
    // the endpoint open longest (the replicas take turns), and the first answers.
    let first_agent = aop::agent::BuiltinAgent::new(AgentKind::Analyst, "analyst");
    let first = first_agent.serve_http(first_port.listen()).unwrap();
    let mut answered = None;
    for i in 0..10 {
        let result = call(&client, "analyst_finance_acme", json!({"task": "x"})).await;
        if result.is_error != Some(true) {
            answered = Some(i);
            break;
        }
    }
    assert!(
        answered.is_some(),
        "no call reached the recovered replica; breakers: {:?}",
        breakers.endpoints()
    );
    assert_eq!(first_agent.calls(), 1, "the early probe answered");
    assert_eq!(breakers.state(&first_url), BreakerState::Closed);
    // And it takes the calls from then on.
    let result = call(&client, "analyst_finance_acme", json!({"task": "y"})).await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    assert_eq!(first_agent.calls(), 2);
    first.shutdown().await;
    gateway.shutdown().await;
}

/// The chaos run's failure (one replica killed and back, its breaker still open; then its
/// sibling killed): the retries of a call go to the recovered replica, not all to the one
/// that has just died while its breaker is still closed.
#[tokio::test]
async fn a_retry_goes_to_a_recovered_replica_before_the_one_that_just_failed() {
    let FirstReplicaOpen {
        first_port,
        first_url,
        second,
        gateway,
        client,
        ..
    } = first_replica_open().await;
    let second_url = second.url();
    let breakers = gateway.gateway.breakers();
    // The first comes back; the second dies, its breaker closed: the next call tries the
    // second (not yet known dead), then the first, open, before the second again.
    let first_agent = aop::agent::BuiltinAgent::new(AgentKind::Analyst, "analyst");
    let first = first_agent.serve_http(first_port.listen()).unwrap();
    second.shutdown().await;
    assert_eq!(breakers.state(&second_url), BreakerState::Closed);
    let result = call(&client, "analyst_finance_acme", json!({"task": "x"})).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "the retry should reach the recovered replica: {}; breakers: {:?}",
        text(&result),
        breakers.endpoints()
    );
    assert_eq!(first_agent.calls(), 1);
    assert_eq!(breakers.state(&first_url), BreakerState::Closed);
    first.shutdown().await;
    gateway.shutdown().await;
}

/// A probe's verdict is a few samples from the primary's host, older than a call: when the
/// endpoints a call prefers fail, one its zone marks down is tried before the call fails
/// (the last call failure of the availability run: a replica marked down by probes from a
/// lossy host, answering again, was left out while its sibling died).
#[tokio::test]
async fn an_endpoint_marked_down_is_tried_when_the_others_fail() {
    let first_port = ReservedPort::new();
    let first_url = format!("http://{}/mcp", first_port.addr());
    let (_second_agent, second) = agent(AgentKind::Analyst, "analyst").await;
    // Down after two failed probes; up again only after a hundred answers (20 s).
    let zone_toml = zone_text(1, &analyst_zone(&[first_url.clone(), second.url()])).replace(
        "ttl = 2\n",
        "ttl = 2\nhealth = { interval = \"200ms\", timeout = \"150ms\", down_after = 2, up_after = 100 }\n",
    );
    let node = start_node(&zone_toml).await;
    let gateway = start_gateway(&node).await;
    let analyst = Name::parse("analyst.finance.acme").unwrap();
    let first_down = || {
        gateway
            .gateway
            .directory()
            .endpoints_marked_down(&analyst)
            .iter()
            .any(|e| e.url == first_url)
    };
    eventually(
        Duration::from_secs(10),
        "the gateway hears that the first endpoint is down",
        || async { first_down() },
    )
    .await;
    let client = connect(&gateway).await;
    // Answers leave the first out: calls go to the second.
    let result = call(&client, "analyst_finance_acme", json!({"task": "x"})).await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    // The first answers again (its zone still says down); the second dies.
    let first_agent = aop::agent::BuiltinAgent::new(AgentKind::Analyst, "analyst");
    let first = first_agent.serve_http(first_port.listen()).unwrap();
    second.shutdown().await;
    let result = call(&client, "analyst_finance_acme", json!({"task": "x"})).await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    assert_eq!(first_agent.calls(), 1);
    assert!(first_down(), "answered while its zone still marks it down");
    first.shutdown().await;
    gateway.shutdown().await;
}

/// `aop agent serve` in a child process, killable with SIGKILL.
struct ChildAgent {
    child: tokio::process::Child,
    url: String,
}

async fn child_agent(kind: &str, name: &str) -> ChildAgent {
    let mut child = tokio::process::Command::new(AOP)
        .args([
            "agent",
            "serve",
            "--kind",
            kind,
            "--name",
            name,
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start aop agent serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("agent ready in time")
        .expect("read stdout")
        .expect("a ready line");
    let url = line
        .rsplit(' ')
        .next()
        .expect("the URL ends the ready line")
        .to_string();
    ChildAgent { child, url }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_run_is_retried_on_the_other() {
    let mut first = child_agent("sleeper", "sleeper").await;
    let second = child_agent("sleeper", "sleeper").await;
    let agents = format!(
        r#"
[[agent]]
name = "sleeper"
timeout_ms = 15000
max_retries = 3
input_schema = {{ type = "object", properties = {{ task = {{ type = "string" }}, ms = {{ type = "integer" }} }}, required = ["task"] }}
endpoints = [
  {{ url = "{}", tool = "sleeper", priority = 10, weight = 1 }},
  {{ url = "{}", tool = "sleeper", priority = 10, weight = 1 }},
]
"#,
        first.url, second.url
    );
    let node = start_node(&zone_text(1, &agents)).await;
    let gateway = start_gateway(&node).await;
    let mut client = connect(&gateway).await;
    let (_, unused) = mpsc::unbounded_channel();
    let mut progress = std::mem::replace(&mut client.progress, unused);
    let client = Arc::new(client);
    // Twenty calls in flight, spread over both replicas, each sleeping 1.5 s.
    let mut calls = Vec::new();
    for i in 0..20 {
        let client = Arc::clone(&client);
        calls.push(tokio::spawn(async move {
            call(
                &client,
                "call_agent",
                json!({"name": "sleeper.finance.acme",
                "arguments": {"task": format!("call {i}"), "ms": 1500}}),
            )
            .await
        }));
    }
    // Kill the first replica once calls are running on it: once every call has reported
    // progress (the sleeper reports every 100 ms), all twenty are sleeping at one replica or
    // the other.
    let mut running = HashSet::new();
    while running.len() < 20 {
        let update = tokio::time::timeout(DEADLINE, progress.recv())
            .await
            .expect("every call reports progress in time")
            .expect("a progress notification");
        running.insert(update.progress_token);
    }
    first.child.start_kill().expect("SIGKILL the first replica");
    let _ = first.child.wait().await;
    let mut retried = 0;
    for call in calls {
        let result = call.await.unwrap();
        assert_ne!(result.is_error, Some(true), "{}", text(&result));
        let structured = structured(&result);
        assert_eq!(structured["success"], json!(true));
        assert_eq!(structured["served_by"], json!(second.url), "{structured}");
        if structured["attempts"].as_u64().unwrap() > 1 {
            retried += 1;
        }
    }
    assert!(
        retried > 0,
        "some calls were on the killed replica and were retried"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_from_the_agent_reaches_the_client() {
    let (_sleeper, server) = agent(AgentKind::Sleeper, "sleeper").await;
    let agents = format!(
        "[[agent]]\nname = \"sleeper\"\nendpoints = [{{ url = \"{}\" }}]\n",
        server.url()
    );
    let node = start_node(&zone_text(1, &agents)).await;
    let gateway = start_gateway(&node).await;
    let mut client = connect(&gateway).await;
    let result = call(
        &client,
        "sleeper_finance_acme",
        json!({"task": "wait", "ms": 450}),
    )
    .await;
    assert_eq!(structured(&result)["result"], json!("slept 450 ms"));
    let first = tokio::time::timeout(DEADLINE, client.progress.recv())
        .await
        .expect("progress in time")
        .expect("a progress notification");
    assert_eq!(first.total, Some(450.0));
    assert!(first.progress > 0.0);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_reaches_the_tools_through_the_watch_stream() {
    let (_analyst, server) = agent(AgentKind::Analyst, "analyst").await;
    let node = start_node(&zone_text(1, &analyst_zone(&[server.url()]))).await;
    let gateway = start_gateway(&node).await;
    let mut client = connect(&gateway).await;
    let before = client.service.list_all_tools().await.unwrap();
    assert!(!before.iter().any(|t| t.name == "writer_finance_acme"));

    register_writer(&node, &server.url()).await;

    tokio::time::timeout(DEADLINE, client.list_changed.recv())
        .await
        .expect("list_changed in time")
        .expect("a notification");
    let after = client.service.list_all_tools().await.unwrap();
    assert!(after.iter().any(|t| t.name == "writer_finance_acme"));

    node.authority()
        .deregister(
            Name::parse("finance.acme").unwrap(),
            Name::parse("writer.finance.acme").unwrap(),
            None,
        )
        .await
        .expect("deregistered");
    tokio::time::timeout(DEADLINE, client.list_changed.recv())
        .await
        .expect("list_changed in time")
        .expect("a notification");
    let after = client.service.list_all_tools().await.unwrap();
    assert!(!after.iter().any(|t| t.name == "writer_finance_acme"));
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origins_and_missing_tokens_are_refused() {
    let node = start_node(&zone_text(1, "")).await;
    let mut config = GatewayConfig::new(node.grpc_url());
    config.mounts = vec![Name::parse("finance.acme").unwrap()];
    config.guards.bearer_token = Some(Arc::from("s3cret"));
    let gateway = gateway::start(config, free_listener().await).await.unwrap();
    let url = gateway.url().unwrap();
    let http = crate::support::http();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}}});
    let post = |origin: Option<&str>, token: Option<&str>| {
        let mut request = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(initialize.to_string());
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.send()
    };
    assert_eq!(post(None, None).await.unwrap().status(), 401);
    assert_eq!(post(None, Some("wrong")).await.unwrap().status(), 401);
    assert_eq!(
        post(Some("http://evil.example"), Some("s3cret"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(Some("http://localhost:3000"), Some("s3cret"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(post(None, Some("s3cret")).await.unwrap().status(), 200);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_loopback_host_is_answered_and_other_hosts_refused() {
    let node = start_node(&zone_text(1, "")).await;
    let gateway = start_gateway(&node).await;
    // `aop agent serve` serves its agent through the same door.
    let (_agent, agent_server) = agent(AgentKind::Echo, "echo").await;
    let http = crate::support::http();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}}});
    for url in [gateway.url().unwrap(), agent_server.url()] {
        let port = url.rsplit(':').next().unwrap().trim_end_matches("/mcp");
        for (host, expected) in [
            (format!("127.0.0.1:{port}"), 200),
            (format!("127.0.1.5:{port}"), 200),
            (format!("127.255.255.254:{port}"), 200),
            (format!("localhost:{port}"), 200),
            (format!("[::1]:{port}"), 200),
            (format!("evil.example:{port}"), 403),
            (format!("127.0.0.1.evil.example:{port}"), 403),
        ] {
            let response = http
                .post(&url)
                .header("host", &host)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(initialize.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), expected, "{url} Host {host}");
            if expected == 403 {
                let body = response.text().await.unwrap();
                assert!(body.contains(&format!("{host:?}")), "{body}");
            }
        }
    }
    agent_server.shutdown().await;
    gateway.shutdown().await;
}

fn sleeper_zone(url: &str, timeout_ms: u32) -> String {
    format!(
        r#"
[[agent]]
name = "sleeper"
timeout_ms = {timeout_ms}
input_schema = {{ type = "object", properties = {{ task = {{ type = "string" }}, ms = {{ type = "integer" }} }}, required = ["task"] }}
endpoints = [{{ url = "{url}", tool = "sleeper" }}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_is_cancelled_at_the_agent() {
    let (sleeper, server) = agent(AgentKind::Sleeper, "sleeper").await;
    let node = start_node(&zone_text(1, &sleeper_zone(&server.url(), 60_000))).await;
    let gateway = start_gateway(&node).await;
    let client = connect(&gateway).await;
    let request = rmcp::model::ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(
        CallToolRequestParams::new("sleeper_finance_acme")
            .with_arguments(args(json!({"task": "long", "ms": 30_000}))),
    ));
    let handle = client
        .service
        .send_request_with_option(request, rmcp::service::PeerRequestOptions::no_options())
        .await
        .expect("request sent");
    eventually(DEADLINE, "the call reaches the agent", || async {
        sleeper.calls() == 1
    })
    .await;
    handle
        .cancel(Some("the user changed their mind".into()))
        .await
        .expect("cancel sent");
    eventually(DEADLINE, "the agent sees the cancellation", || async {
        sleeper.cancelled() == 1
    })
    .await;
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_timeout_bounds_the_whole_call() {
    let (sleeper, server) = agent(AgentKind::Sleeper, "sleeper").await;
    let node = start_node(&zone_text(1, &sleeper_zone(&server.url(), 400))).await;
    let gateway = start_gateway(&node).await;
    let client = connect(&gateway).await;
    let started = std::time::Instant::now();
    let result = call(
        &client,
        "sleeper_finance_acme",
        json!({"task": "long", "ms": 5000}),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).contains("within 400 ms"), "{}", text(&result));
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    eventually(DEADLINE, "the agent is told to stop", || async {
        sleeper.cancelled() == 1
    })
    .await;
    // A caller's timeout_ms only shortens the agent's.
    let result = call(
        &client,
        "call_agent",
        json!({"name": "sleeper.finance.acme", "arguments": {"task": "t", "ms": 5000}, "timeout_ms": 100}),
    )
    .await;
    assert!(text(&result).contains("within 100 ms"), "{}", text(&result));
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_speaks_mcp_over_stdio() {
    let (_analyst, server) = agent(AgentKind::Analyst, "analyst").await;
    let node = start_node(&zone_text(1, &analyst_zone(&[server.url()]))).await;
    let mut child = tokio::process::Command::new(AOP)
        .args([
            "gateway",
            "--stdio",
            "--resolver",
            &node.grpc_url(),
            "--mount",
            "finance.acme",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start aop gateway --stdio");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    use tokio::io::AsyncWriteExt;
    let mut exchange = async |message: Value| -> Option<Value> {
        let mut line = message.to_string();
        line.push('\n');
        stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the gateway");
        message.get("id")?;
        let reply = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("a reply in time")
            .expect("read")
            .expect("a line");
        Some(serde_json::from_str(&reply).expect("JSON-RPC on stdout"))
    };
    let init = exchange(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "stdio-test", "version": "1"}}}),
    )
    .await
    .unwrap();
    assert_eq!(init["result"]["serverInfo"]["name"], "aop-gateway");
    exchange(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    let call = exchange(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "analyst_finance_acme", "arguments": {"task": "2 4"}}}),
    )
    .await
    .unwrap();
    assert_eq!(
        call["result"]["structuredContent"]["result"],
        "count=2 sum=6 mean=3 median=3 min=2 max=4 stdev=1"
    );
    drop(stdin);
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("the gateway exits when stdin closes")
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_2026_era_hears_list_changed_through_subscriptions_listen() {
    use rmcp::{ClientLifecycleMode, ClientServiceExt};
    let (_analyst, server) = agent(AgentKind::Analyst, "analyst").await;
    let node = start_node(&zone_text(1, &analyst_zone(&[server.url()]))).await;
    let gateway = start_gateway(&node).await;
    let transport = crate::support::mcp::transport(gateway.url().unwrap());
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("gateway-test-2026", "1"),
    )
    .serve_with_lifecycle(
        transport,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .expect("server/discover");
    // Stateless era: tools/list carries ttlMs, calls work without a session.
    let page = client.list_tools(None).await.expect("tools/list");
    assert_eq!(page.ttl_ms, Some(2000));
    let result = tokio::time::timeout(
        DEADLINE,
        client.call_tool(
            CallToolRequestParams::new("analyst_finance_acme")
                .with_arguments(args(json!({"task": "1 2 3"}))),
        ),
    )
    .await
    .expect("in time")
    .expect("a result");
    assert_eq!(structured(&result)["success"], json!(true));

    let mut filter = rmcp::model::SubscriptionFilter::new();
    filter.tools_list_changed = Some(true);
    let mut subscription = client.listen(filter).await.expect("subscriptions/listen");
    register_writer(&node, &server.url()).await;
    let notification = tokio::time::timeout(DEADLINE, subscription.next())
        .await
        .expect("a notification in time")
        .expect("the subscription stays open")
        .expect("a notification");
    assert!(
        matches!(
            notification,
            rmcp::model::ServerNotification::ToolListChangedNotification(_)
        ),
        "{notification:?}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_never_shadows_a_meta_tool() {
    let (echo, server) = agent(AgentKind::Echo, "echo").await;
    let zone = format!(
        r#"
[zone]
origin = "agents"
serial = 1
servers = [{{ grpc = "http://127.0.0.1:7102" }}]

[[agent]]
name = "list"
endpoints = [{{ url = "{}", tool = "echo" }}]
"#,
        server.url()
    );
    let node = start_node(&zone).await;
    let mut config = GatewayConfig::new(node.grpc_url());
    config.mounts = vec![Name::parse("agents").unwrap()];
    let gateway = gateway::start(config, free_listener().await).await.unwrap();
    let client = connect(&gateway).await;
    let tools = client.service.list_all_tools().await.unwrap();
    let hashed = tools
        .iter()
        .map(|t| t.name.to_string())
        .find(|name| name.starts_with("list_agents_"))
        .expect("the agent list.agents under its hashed name");
    let listed = call(&client, "list_agents", json!({})).await;
    assert_eq!(structured(&listed)["agent_names"], json!(["list.agents"]));
    let result = call(&client, &hashed, json!({"task": "still reachable"})).await;
    assert_eq!(structured(&result)["result"], json!("still reachable"));
    assert_eq!(echo.calls(), 1);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_task_calls_the_best_live_agent_and_falls_back_when_one_fails() {
    let (_analyst, server) = agent(AgentKind::Analyst, "analyst").await;
    let (_writer, writer_server) = agent(AgentKind::Writer, "writer").await;
    let dead = dead_url();
    let agents = format!(
        "{}
[[agent]]
name = \"writer\"
description = \"Turns meeting notes into outlines.\"
capabilities = [\"outline\"]
endpoints = [{{ url = \"{}\" }}]

[[agent]]
name = \"forecaster\"
description = \"Forecasts quarterly figures.\"
capabilities = [\"forecast\"]
max_retries = 0
endpoints = [{{ url = \"{dead}\" }}]
",
        analyst_zone(&[server.url()]),
        writer_server.url()
    );
    let node = start_node(&zone_text(1, &agents)).await;
    let gateway = start_gateway(&node).await;
    let client = connect(&gateway).await;

    // The forecaster ranks first for these words but is down: the analyst answers.
    let routed = call(
        &client,
        "route_task",
        json!({"task": "forecast quarterly figures: 10 20 30"}),
    )
    .await;
    let result = structured(&routed);
    assert_eq!(routed.is_error, Some(false), "{result}");
    assert_eq!(
        result["candidates"][0],
        json!("forecaster.finance.acme"),
        "{result}"
    );
    assert_eq!(result["agent"], json!("analyst.finance.acme"), "{result}");
    assert_eq!(
        result["tried"][0]["agent"],
        json!("forecaster.finance.acme")
    );
    assert!(
        result["result"].as_str().unwrap().contains("mean"),
        "{result}"
    );

    // Another task goes to another agent.
    let routed = call(
        &client,
        "route_task",
        json!({"task": "make an outline of these notes: budget; hiring"}),
    )
    .await;
    assert_eq!(structured(&routed)["agent"], json!("writer.finance.acme"));

    // Filters narrow the candidates; nothing matching is a failure naming the cause.
    let routed = call(
        &client,
        "route_task",
        json!({"task": "forecast", "capabilities": ["outline"]}),
    )
    .await;
    assert_eq!(routed.is_error, Some(true));
    assert!(
        structured(&routed)["error"]
            .as_str()
            .unwrap()
            .contains("no agent matches"),
        "{}",
        structured(&routed)
    );
    let routed = call(&client, "route_task", json!({})).await;
    assert_eq!(routed.is_error, Some(true));
    assert!(
        structured(&routed)["error"]
            .as_str()
            .unwrap()
            .contains("task")
    );
    gateway.shutdown().await;
}

/// A gateway whose resolver cannot be reached says so, naming the resolver, instead of
/// telling the LLM there are no agents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_resolver_is_a_failure_naming_it() {
    let resolver = format!("http://{}", crate::support::free_addr());
    let mut config = GatewayConfig::new(resolver.clone());
    config.mounts = vec![Name::parse("finance.acme").unwrap()];
    let gateway = gateway::start(config, free_listener().await)
        .await
        .expect("start the gateway");
    eventually(DEADLINE, "the first listing fails", || async {
        gateway.gateway.directory().current().zones[&Name::parse("finance.acme").unwrap()]
            .error
            .is_some()
    })
    .await;
    let client = connect(&gateway).await;
    for (tool, arguments) in [
        ("discover_agents", json!({})),
        ("list_agents", json!({})),
        ("list_agents", json!({"zone": "finance.acme"})),
        ("search_agents", json!({"query": "forecasting"})),
        (
            "call_agent",
            json!({"name": "analyst.finance.acme", "arguments": {"task": "x"}}),
        ),
    ] {
        let result = call(&client, tool, arguments).await;
        assert_eq!(result.is_error, Some(true), "{tool}: {}", text(&result));
        let error = text(&result);
        assert!(
            error.contains(&resolver),
            "{tool} names {resolver}: {error}"
        );
        assert!(
            error.to_lowercase().contains("refused"),
            "{tool} says what happened: {error}"
        );
        assert!(
            !error.contains("rmcp::") && !error.contains("tonic::"),
            "{error}"
        );
    }
    gateway.shutdown().await;
}

/// A `zone` argument that names nothing is an error naming it, not an empty list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_argument_that_names_nothing_is_an_error() {
    let (_analyst, server) = agent(AgentKind::Analyst, "analyst").await;
    let node = start_node(&zone_text(1, &analyst_zone(&[server.url()]))).await;
    let gateway = start_gateway(&node).await;
    let client = connect(&gateway).await;
    for tool in [
        "list_agents",
        "discover_agents",
        "search_agents",
        "route_task",
    ] {
        let result = call(
            &client,
            tool,
            json!({"zone": "nosuch.finance.acme", "query": "analysis", "task": "analysis"}),
        )
        .await;
        assert_eq!(result.is_error, Some(true), "{tool}: {}", text(&result));
        assert_eq!(structured(&result)["success"], json!(false), "{tool}");
        assert!(
            text(&result).contains("nosuch.finance.acme"),
            "{tool}: {}",
            text(&result)
        );
    }
    // The zone itself still lists.
    let listed = call(&client, "list_agents", json!({"zone": "finance.acme"})).await;
    assert_eq!(structured(&listed)["total_count"], json!(1));
    gateway.shutdown().await;
}

/// An agent whose only endpoint is down: the first calls say "connection refused" at its URL
/// (never a library's type names); once its breaker is open a call makes one early probe
/// (docs/protocol.md §9.3) and says the breaker is open, when the next scheduled probe goes
/// and what the probe met, not "3 attempts" of the same thing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_agent_is_described_in_plain_words() {
    let dead = dead_url();
    let node = start_node(&zone_text(1, &analyst_zone(std::slice::from_ref(&dead)))).await;
    let gateway = start_gateway(&node).await;
    let client = connect(&gateway).await;
    let first = call(&client, "analyst_finance_acme", json!({"task": "x"})).await;
    assert_eq!(first.is_error, Some(true));
    let error = text(&first);
    assert!(error.contains(&dead), "{error}");
    assert!(error.contains("connection refused"), "{error}");
    assert!(
        error.contains("times)") || error.contains("1 attempt"),
        "repeats said once: {error}"
    );
    assert!(!error.contains("::"), "no Rust type names: {error}");
    let mut open = None;
    for _ in 0..20 {
        let result = call(&client, "analyst_finance_acme", json!({"task": "x"})).await;
        let error = text(&result);
        if error.contains("circuit breaker") {
            open = Some(error);
            break;
        }
    }
    let open = open.expect("the breaker opens after repeated failures");
    assert!(open.contains("next scheduled probe in"), "{open}");
    assert!(open.contains("connection refused"), "the probe: {open}");
    assert!(!open.contains("times)"), "one probe, not retries: {open}");
    assert_eq!(
        open.matches("circuit breaker").count(),
        1,
        "said once: {open}"
    );
    // A misspelt key names the argument and what was given.
    let result = call(
        &client,
        "call_agent",
        json!({"agent_name": "analyst.finance.acme", "arguments": {}}),
    )
    .await;
    let error = text(&result);
    assert!(
        error.contains("missing argument `name`") && error.contains("agent_name"),
        "{error}"
    );
    gateway.shutdown().await;
}

/// POSTs `body` to an MCP door as a client would (both media types accepted), in `session`
/// when given.
async fn post_raw(
    url: &str,
    content_type: &str,
    body: String,
    session: Option<&str>,
) -> reqwest::Response {
    let mut request = crate::support::http()
        .post(url)
        .header("content-type", content_type)
        .header("accept", "application/json, text/event-stream")
        .body(body);
    if let Some(session) = session {
        request = request
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18");
    }
    request.send().await.expect("the MCP door answers")
}

/// The JSON-RPC message with `id` in a JSON or SSE response, within the deadline (an SSE
/// stream may stay open after it).
async fn reply_with_id(mut response: reqwest::Response, id: i64) -> Value {
    let sse = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    if !sse {
        return response.json().await.expect("a JSON body");
    }
    let mut text = String::new();
    loop {
        let chunk = tokio::time::timeout(DEADLINE, response.chunk())
            .await
            .expect("the reply in time")
            .expect("read the stream")
            .expect("the stream carries the reply");
        text.push_str(&String::from_utf8_lossy(&chunk));
        for line in text.lines() {
            if let Some(data) = line.strip_prefix("data:")
                && let Ok(message) = serde_json::from_str::<Value>(data.trim())
                && message["id"] == json!(id)
            {
                return message;
            }
        }
    }
}

/// Opens a 2025-era session with raw HTTP; its id.
async fn raw_session(url: &str) -> String {
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}}});
    let response = post_raw(url, "application/json", initialize.to_string(), None).await;
    assert_eq!(response.status(), 200);
    let session = response
        .headers()
        .get("mcp-session-id")
        .expect("a session id")
        .to_str()
        .unwrap()
        .to_string();
    let init = reply_with_id(response, 1).await;
    assert!(init.get("result").is_some(), "{init}");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let response = post_raw(
        url,
        "application/json",
        initialized.to_string(),
        Some(&session),
    )
    .await;
    assert!(response.status().is_success(), "{}", response.status());
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_batches_and_deep_nesting_are_http_400_with_json_rpc_errors() {
    // docs/protocol.md §6 and §7: a body that is not one JSON-RPC message is HTTP 400 with a
    // JSON-RPC error (parse error or invalid request), never 415; 415 is for Content-Type.
    let node = start_node(&zone_text(1, "")).await;
    let gateway = start_gateway(&node).await;
    let url = gateway.url().unwrap();
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"a":{}0{}}}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let cases = [
        (
            r#"{"jsonrpc": "2.0", "id": 1, "method": "#.to_string(),
            -32700,
            "parse error: the body is not JSON: ",
            Value::Null,
        ),
        (
            String::new(),
            -32700,
            "parse error: the body is not JSON",
            Value::Null,
        ),
        (
            format!("[{ping}, {ping}]"),
            -32600,
            "invalid request: JSON-RPC batches (a JSON array) are not supported",
            Value::Null,
        ),
        (
            deep,
            -32700,
            "parse error: JSON nested deeper than the limit of 100 levels",
            Value::Null,
        ),
        (
            r#"{"id": 9, "method": "ping"}"#.to_string(),
            -32600,
            "invalid request: not a JSON-RPC 2.0 message: \"jsonrpc\" must be \"2.0\"",
            json!(9),
        ),
        (
            "\"hello\"".to_string(),
            -32600,
            "a message is a JSON object, not a string",
            Value::Null,
        ),
    ];
    for (body, code, message, id) in cases {
        let shown: String = body.chars().take(60).collect();
        let response = post_raw(&url, "application/json", body, None).await;
        assert_eq!(response.status(), 400, "{shown}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{shown}"
        );
        let error: Value = response.json().await.expect("a JSON-RPC error body");
        assert_eq!(error["jsonrpc"], "2.0");
        assert_eq!(error["id"], id, "{shown}");
        assert_eq!(error["error"]["code"], json!(code), "{shown}: {error}");
        let text = error["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{shown}: {text}");
    }
    // A wrong Content-Type is still 415, whatever the body.
    let response = post_raw(&url, "text/plain", ping.to_string(), None).await;
    assert_eq!(response.status(), 415);
    // The header checks come first: a foreign origin hears 403 whatever its body.
    let response = crate::support::http()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("origin", "http://evil.example")
        .body("[not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // Still serving, on the same door.
    let client = connect(&gateway).await;
    assert!(!client.service.list_all_tools().await.unwrap().is_empty());
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_call_whose_arguments_are_not_an_object_is_invalid_params() {
    // JSON-RPC: the method exists, its params are bad: -32602, not -32601.
    let (_analyst, server) = agent(AgentKind::Analyst, "analyst").await;
    let node = start_node(&zone_text(1, &analyst_zone(&[server.url()]))).await;
    let gateway = start_gateway(&node).await;
    // The gateway, and the built-in agent behind it, answer alike.
    for (url, tool) in [
        (gateway.url().unwrap(), "analyst_finance_acme"),
        (server.url(), "analyst"),
    ] {
        let session = raw_session(&url).await;
        for (id, arguments, kind) in [
            (2, json!(["1 2 3"]), "an array"),
            (3, json!("1 2 3"), "a string"),
            (4, json!(7), "a number"),
        ] {
            let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}});
            let response =
                post_raw(&url, "application/json", call.to_string(), Some(&session)).await;
            assert_eq!(response.status(), 200, "{url}");
            let reply = reply_with_id(response, id).await;
            assert_eq!(reply["error"]["code"], json!(-32602), "{url}: {reply}");
            let message = reply["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(&format!(
                    "`arguments` must be an object (named arguments), not {kind}"
                )),
                "{url}: {message}"
            );
        }
        // A method nobody serves is still method-not-found.
        let unknown = json!({"jsonrpc": "2.0", "id": 5, "method": "no/such", "params": {}});
        let response = post_raw(
            &url,
            "application/json",
            unknown.to_string(),
            Some(&session),
        )
        .await;
        let reply = reply_with_id(response, 5).await;
        assert_eq!(reply["error"]["code"], json!(-32601), "{url}: {reply}");
        // And the session still calls with proper arguments.
        let call = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
            "params": {"name": tool, "arguments": {"task": "2 4"}}});
        let response = post_raw(&url, "application/json", call.to_string(), Some(&session)).await;
        let reply = reply_with_id(response, 6).await;
        assert!(reply.get("result").is_some(), "{url}: {reply}");
    }
    gateway.shutdown().await;
}

/// docs/protocol.md §10.2: `list_agents` and `discover_agents` read any zone of the
/// federation, mounted or not: a zone outside the mounts is listed through the resolver node
/// (paged with its cursor), and one the federation does not know is an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_that_are_not_mounted_are_listed_through_the_resolver() {
    use crate::support::{AgentSpec, FederationBuilder, ZoneSpec};
    let fed = FederationBuilder::new()
        .zone(ZoneSpec::root())
        .zone(
            ZoneSpec::new("acme")
                .agent(AgentSpec::new("writer"))
                .agent(AgentSpec::new("coder")),
        )
        .zone(ZoneSpec::new("finance.acme").agent(AgentSpec::new("analyst")))
        .start()
        .await;
    let mut config = GatewayConfig::new(fed.resolver().grpc_url());
    config.mounts = vec![Name::parse("finance.acme").unwrap()];
    let gateway = gateway::start(config, free_listener().await)
        .await
        .expect("start the gateway");
    let client = connect(&gateway).await;

    let listed = call(&client, "list_agents", json!({"zone": "acme"})).await;
    assert_ne!(listed.is_error, Some(true), "{}", text(&listed));
    assert_eq!(
        structured(&listed)["agent_names"],
        json!(["coder.acme", "writer.acme"])
    );
    assert_eq!(structured(&listed)["total_count"], json!(2));

    // discover_agents pages through it with the cursor.
    let first = call(
        &client,
        "discover_agents",
        json!({"zone": "acme", "limit": 1}),
    )
    .await;
    let first = structured(&first);
    assert_eq!(first["success"], json!(true), "{first}");
    assert_eq!(first["agents"][0]["name"], json!("coder.acme"), "{first}");
    assert_eq!(first["total_count"], json!(2));
    let cursor = first["next_cursor"].as_str().expect("a cursor").to_string();
    let second = call(
        &client,
        "discover_agents",
        json!({"zone": "acme", "limit": 1, "cursor": cursor}),
    )
    .await;
    let second = structured(&second);
    assert_eq!(
        second["agents"][0]["name"],
        json!("writer.acme"),
        "{second}"
    );
    assert_eq!(second["next_cursor"], Value::Null, "{second}");

    // So does the roster.
    let roster = call(
        &client,
        "list_agent_roster",
        json!({"zone": "acme", "limit": 1}),
    )
    .await;
    let roster = structured(&roster);
    assert_eq!(roster["agents"][0]["name"], json!("coder.acme"), "{roster}");
    assert_eq!(roster["agents"][0]["zone"], json!("acme"), "{roster}");
    assert!(roster["next_cursor"].is_string(), "{roster}");

    // The mounted zone still comes from the gateway's own listing.
    let mounted = call(&client, "list_agents", json!({"zone": "finance.acme"})).await;
    assert_eq!(
        structured(&mounted)["agent_names"],
        json!(["analyst.finance.acme"])
    );

    // A zone nobody serves: an error naming it, nothing listed.
    let missing = call(&client, "list_agents", json!({"zone": "nosuch.acme"})).await;
    assert_eq!(missing.is_error, Some(true), "{}", text(&missing));
    assert_eq!(structured(&missing)["success"], json!(false));
    assert!(text(&missing).contains("nosuch.acme"), "{}", text(&missing));
    assert_eq!(structured(&missing)["agent_names"], json!([]));
    gateway.shutdown().await;
    fed.shutdown().await;
}

/// docs/protocol.md §10.2: `list_agent_roster` pages light entries in name order, and its
/// cursor survives churn: an agent registered before the cursor's position between two pages
/// shifts nothing (an index cursor would repeat one), one registered after it is reached, and
/// every agent present throughout is listed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roster_pages_light_entries_with_a_cursor_that_survives_churn() {
    let mut agents = String::new();
    for i in 0..250 {
        agents.push_str(&format!(
            "[[agent]]\nname = \"a{i:04}\"\ndescription = \"Agent {i}.\\nSecond line, not in the roster.\"\ntags = [\"t{i}\"]\nendpoints = [{{ url = \"http://127.0.0.1:9/mcp\" }}]\n"
        ));
    }
    let node = start_node(&zone_text(1, &agents)).await;
    let gateway = start_gateway(&node).await;
    let client = connect(&gateway).await;

    let first = call(&client, "list_agent_roster", json!({"limit": 100})).await;
    let first = structured(&first);
    assert_eq!(first["success"], json!(true), "{first}");
    let entries = first["agents"].as_array().unwrap();
    assert_eq!(entries.len(), 100);
    assert_eq!(
        entries[7],
        json!({"name": "a0007.finance.acme", "zone": "finance.acme",
               "description": "Agent 7.", "tags": ["t7"], "capabilities": []}),
        "light entries: the description's first line, no schema, no endpoints"
    );
    let mut seen: Vec<String> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();

    // Churn between pages: one agent before the cursor's position, one after it.
    for name in ["a0050x", "zz-late"] {
        let registration = Registration {
            name: Name::parse(&format!("{name}.finance.acme")).unwrap(),
            endpoint: Endpoint::new("http://127.0.0.1:9/mcp", "t", 10, 1).unwrap(),
            lease_secs: 600,
            fields: AgentUpdate::default(),
        };
        node.authority()
            .register(Name::parse("finance.acme").unwrap(), registration)
            .await
            .expect("registered");
    }
    eventually(DEADLINE, "the gateway lists both new agents", || async {
        let listed = call(&client, "list_agents", json!({})).await;
        let names = structured(&listed)["agent_names"].clone();
        names
            .as_array()
            .is_some_and(|names| names.contains(&json!("zz-late.finance.acme")))
    })
    .await;

    let mut cursor = first["next_cursor"].as_str().map(String::from);
    while let Some(after) = cursor {
        let page = call(
            &client,
            "list_agent_roster",
            json!({"limit": 100, "cursor": after}),
        )
        .await;
        let page = structured(&page);
        seen.extend(
            page["agents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string()),
        );
        cursor = page["next_cursor"].as_str().map(String::from);
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no agent listed twice");
    for i in 0..250 {
        assert!(
            seen.contains(&format!("a{i:04}.finance.acme")),
            "a{i:04} missing"
        );
    }
    assert!(seen.contains(&"zz-late.finance.acme".to_string()));
    assert!(
        !seen.contains(&"a0050x.finance.acme".to_string()),
        "registered behind the cursor: not on a later page"
    );
    assert_eq!(seen.len(), 251);

    // Bad input: a limit over the page limit names it.
    let bad = call(&client, "list_agent_roster", json!({"limit": 5000})).await;
    assert_eq!(structured(&bad)["success"], json!(false));
    assert!(text(&bad).contains("1000"), "{}", text(&bad));
    gateway.shutdown().await;
}
