//! The gateway's admin endpoint: `/metrics` moves as tools are called (calls by tool and
//! outcome, their latency, failed attempts, breaker states, the mounted zone's serial and
//! refresh, MCP sessions), `/status.json` says the same, `/readyz` names a mounted zone not
//! listed yet and why, and Host headers that do not name it are refused; `aop gateway
//! --admin` as a process (on every address: a warning). The demo's gateway page answering
//! its `/metrics` link is checked in `cli.rs`, with the rest of the demo.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use aop::admin::AdminListener;
use aop::admin::gateway::GatewayView;
use aop::agent::AgentKind;
use aop::gateway::{self, GatewayConfig, GatewayHandle};
use aop::name::Name;
use aop::node::NodeHandle;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, JsonObject};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::support::{
    AOP, agent, bind, dead_url, eventually, free_listener, loopback, parse_exposition, zone,
};

const DEADLINE: Duration = Duration::from_secs(20);
const SERIAL: u32 = 2026112401;

fn zone_text(agents: &str) -> String {
    format!(
        r#"
[zone]
origin = "finance.acme"
serial = {SERIAL}
ttl = 60
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

async fn start_gateway(node: &NodeHandle, mounts: &[&str]) -> GatewayHandle {
    let mut config = GatewayConfig::new(node.grpc_url());
    config.mounts = mounts.iter().map(|m| Name::parse(m).unwrap()).collect();
    config.poll_interval = Duration::from_secs(3600);
    gateway::start(config, free_listener().await)
        .await
        .expect("start the gateway")
}

/// The gateway's admin endpoint on a free port: its URL and what stops it.
async fn serve_admin(gateway: &GatewayHandle) -> (String, CancellationToken) {
    let admin = AdminListener::bind(loopback()).await.unwrap();
    let url = admin.url();
    let stop = CancellationToken::new();
    admin.serve_gateway(GatewayView::of(gateway), stop.clone());
    (url, stop)
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

async fn scrape(admin: &str) -> HashMap<String, f64> {
    let (status, content_type, text) = get(&format!("{admin}metrics")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    parse_exposition(&text)
}

fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_metrics_move_as_tools_are_called() {
    let (_echo, echo_server) = agent(AgentKind::Echo, "echo").await;
    let ghost_url = dead_url();
    let agents = format!(
        r#"
[[agent]]
name = "echo"
endpoints = [{{ url = "{}", tool = "echo" }}]

[[agent]]
name = "ghost"
max_retries = 0
endpoints = [{{ url = "{ghost_url}", tool = "ghost" }}]
"#,
        echo_server.url()
    );
    let node = start_node(&zone_text(&agents)).await;
    let gateway = start_gateway(&node, &["finance.acme"]).await;
    let (admin, stop) = serve_admin(&gateway).await;
    assert_eq!(get(&format!("{admin}readyz")).await.2, "ready\n");
    assert_eq!(get(&format!("{admin}healthz")).await.2, "ok\n");

    let transport = crate::support::mcp::transport(gateway.url().unwrap());
    let client = ().serve(transport).await.expect("MCP handshake");
    let call = |tool: &str, arguments: Value| {
        let request = CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments));
        let future = client.call_tool(request);
        async move {
            tokio::time::timeout(DEADLINE, future)
                .await
                .expect("an answer in time")
        }
    };
    let echoed = call("echo_finance_acme", json!({"task": "hi"}))
        .await
        .unwrap();
    assert_ne!(echoed.is_error, Some(true));
    let ghost = call("ghost_finance_acme", json!({"task": "boo"}))
        .await
        .unwrap();
    assert_eq!(ghost.is_error, Some(true));
    call("list_agents", json!({})).await.unwrap();
    call("no_such_tool_at_all", json!({}))
        .await
        .expect_err("an unknown tool is a JSON-RPC error");

    let metrics = scrape(&admin).await;
    let calls = |tool: &str, outcome: &str| {
        metrics
            .get(&format!(
                "aop_gateway_tool_calls_total{{tool=\"{tool}\",outcome=\"{outcome}\"}}"
            ))
            .copied()
    };
    assert_eq!(calls("echo_finance_acme", "ok"), Some(1.0));
    assert_eq!(calls("ghost_finance_acme", "failed"), Some(1.0));
    assert_eq!(calls("list_agents", "ok"), Some(1.0));
    assert_eq!(calls("_unknown", "unknown_tool"), Some(1.0));
    assert!(
        !metrics.keys().any(|series| series.contains("no_such_tool")),
        "a client's tool names never become labels"
    );
    let count = |kind: &str| {
        metrics[&format!("aop_gateway_tool_call_duration_seconds_count{{kind=\"{kind}\"}}")]
    };
    assert_eq!(count("agent"), 2.0);
    assert_eq!(count("meta"), 1.0);
    assert_eq!(
        metrics["aop_gateway_tool_call_duration_seconds_bucket{kind=\"agent\",le=\"+Inf\"}"],
        2.0
    );
    assert_eq!(
        metrics["aop_gateway_call_errors_total{reason=\"unreachable\"}"],
        1.0
    );
    let breaker = |url: &str, state: &str| {
        metrics[&format!("aop_gateway_breaker_state{{endpoint=\"{url}\",state=\"{state}\"}}")]
    };
    assert_eq!(breaker(&echo_server.url(), "closed"), 1.0);
    assert_eq!(breaker(&echo_server.url(), "open"), 0.0);
    assert_eq!(breaker(&ghost_url, "closed"), 1.0, "one failure of three");
    assert_eq!(
        metrics["aop_gateway_zone_serial{zone=\"finance.acme\"}"],
        f64::from(SERIAL)
    );
    assert_eq!(
        metrics["aop_gateway_zone_agents{zone=\"finance.acme\"}"],
        2.0
    );
    let age = metrics["aop_gateway_zone_last_refresh_seconds{zone=\"finance.acme\"}"];
    assert!((0.0..60.0).contains(&age), "{age}");
    assert_eq!(metrics["aop_gateway_mcp_sessions_open"], 1.0);
    assert_eq!(
        metrics["aop_gateway_tools"],
        (aop::gateway::shapes::NAMES.len() + 2) as f64,
        "the meta tools and two agents"
    );
    assert_eq!(metrics["aop_gateway_agent_sessions_open"], 1.0);
    eventually(
        DEADLINE,
        "the zone is followed on a Watch stream",
        || async {
            scrape(&admin).await["aop_gateway_zone_watching{zone=\"finance.acme\"}"] == 1.0
        },
    )
    .await;

    let doc: Value = serde_json::from_str(&get(&format!("{admin}status.json")).await.2).unwrap();
    assert_eq!(doc["kind"], "gateway");
    assert_eq!(doc["ready"], true);
    assert_eq!(doc["mcp_sessions"], 1);
    assert_eq!(doc["mounts"][0]["zone"], "finance.acme");
    assert_eq!(doc["mounts"][0]["serial"], SERIAL);
    assert_eq!(doc["mounts"][0]["watching"], true);
    assert!(doc["mounts"][0]["last_refresh_secs"].as_f64().unwrap() < 60.0);

    client.cancel().await.unwrap();
    eventually(DEADLINE, "the closed session is gone", || async {
        scrape(&admin).await["aop_gateway_mcp_sessions_open"] == 0.0
    })
    .await;
    stop.cancel();
    gateway.shutdown().await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_a_mounted_zone_not_listed_yet_and_foreign_hosts_are_refused() {
    let node = start_node(&zone_text("")).await;
    // The node serves finance.acme only and knows no root: nowhere.acme cannot be listed.
    let gateway = start_gateway(&node, &["finance.acme", "nowhere.acme"]).await;
    let (admin, stop) = serve_admin(&gateway).await;
    let (status, _, body) = get(&format!("{admin}readyz")).await;
    assert_eq!(status, 503);
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 2, "{body}");
    assert_eq!(lines[0], "not ready:");
    assert!(
        lines[1].starts_with("nowhere.acme: not listed yet (last error: "),
        "{body}"
    );
    assert_eq!(get(&format!("{admin}healthz")).await.0, 200);
    let metrics = scrape(&admin).await;
    assert!(metrics.contains_key("aop_gateway_zone_serial{zone=\"finance.acme\"}"));
    assert!(!metrics.contains_key("aop_gateway_zone_serial{zone=\"nowhere.acme\"}"));
    assert!(!metrics.contains_key("aop_gateway_zone_last_refresh_seconds{zone=\"nowhere.acme\"}"));

    let port = admin
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let http = crate::support::http();
    for (host, expected) in [
        (format!("127.0.1.5:{port}"), 200),
        (format!("localhost:{port}"), 200),
        (format!("evil.example:{port}"), 403),
    ] {
        let response = http
            .get(format!("{admin}metrics"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "Host {host}");
        if expected == 403 {
            let body = response.text().await.unwrap();
            assert!(body.contains(&format!("{host:?}")), "{body}");
        }
    }
    stop.cancel();
    gateway.shutdown().await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aop_gateway_admin_serves_metrics_and_warns_when_every_address_reaches_it() {
    let node = start_node(&zone_text("")).await;
    let mut child = tokio::process::Command::new(AOP)
        .args([
            "gateway",
            "--resolver",
            &node.grpc_url(),
            "--listen",
            "127.0.0.1:0",
            "--mount",
            "finance.acme",
            "--admin",
            "0.0.0.0:0",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start aop gateway");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = loop {
        let line = tokio::time::timeout(DEADLINE, stdout.next_line())
            .await
            .expect("the gateway starts in time")
            .expect("read stdout")
            .expect("the admin line");
        if line.starts_with("admin endpoint at ") {
            break line;
        }
    };
    let port = line
        .split_whitespace()
        .nth(3)
        .and_then(|url| url.trim_end_matches('/').rsplit(':').next())
        .and_then(|port| port.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("a port in {line:?}"));
    let admin = format!("http://127.0.0.1:{port}/");
    eventually(DEADLINE, "the gateway is ready", || async {
        get(&format!("{admin}readyz")).await.0 == 200
    })
    .await;
    let metrics = scrape(&admin).await;
    assert_eq!(
        metrics["aop_gateway_zone_serial{zone=\"finance.acme\"}"],
        f64::from(SERIAL)
    );
    assert_eq!(metrics["aop_gateway_mcp_sessions_open"], 0.0);

    aop::sys::send_signal(child.id().unwrap(), libc::SIGINT).unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("the gateway exits on SIGINT")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    let warning = stderr
        .lines()
        .find(|line| line.contains("reachable from the network"))
        .unwrap_or_else(|| panic!("no warning in:\n{stderr}"));
    assert!(warning.contains("WARN"), "{warning}");
    node.shutdown().await.unwrap();
}
