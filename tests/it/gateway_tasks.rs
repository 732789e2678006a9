//! The task tools (docs/protocol.md §10.1), the MCP tasks extension on the same queues
//! (`tasks/get`, `tasks/update`, `tasks/cancel`), and stable `tools/list` cursors (§10.2)
//! through a real MCP client (rmcp over Streamable HTTP): a node on 127.0.0.1:0 serving a zone
//! of built-in agents, and a gateway in this process, or in a child process where a test
//! kills it.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use aop::agent::AgentKind;
use aop::authority::live::{AgentUpdate, Registration};
use aop::gateway::{self, GatewayConfig, GatewayHandle, shapes};
use aop::name::Name;
use aop::node::NodeHandle;
use aop::record::Endpoint;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ClientCapabilities,
    ClientConfig, CreateTaskResult, ErrorCode, GetTaskParams, GetTaskResult, Implementation,
    PaginatedRequestParams, ProtocolVersion, TaskPayload, TaskStatus as McpStatus,
    UpdateTaskParams,
};
use rmcp::service::RunningService;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceError, ServiceExt};
use serde_json::{Value, json};

use crate::support::mcp::{Client, call};
use crate::support::process::NodeProcess;
use crate::support::{AOP, agent, bind, eventually, free_addr, free_listener, zone};

const DEADLINE: Duration = Duration::from_secs(30);
const ZONE: &str = "finance.acme";

fn zone_text(agents: &str) -> String {
    format!(
        r#"
[zone]
origin = "finance.acme"
serial = 1
ttl = 2
negative_ttl = 1
servers = [{{ grpc = "http://127.0.0.1:7102" }}]
{agents}
"#
    )
}

/// The sleeper (`ms` beside `task`) and the echo agent.
fn agents_zone(sleeper_url: &str, echo_url: &str) -> String {
    zone_text(&format!(
        r#"
[[agent]]
name = "sleeper"
timeout_ms = 120000
input_schema = {{ type = "object", properties = {{ task = {{ type = "string" }}, ms = {{ type = "integer" }} }}, required = ["task"] }}
endpoints = [{{ url = "{sleeper_url}", tool = "sleeper" }}]

[[agent]]
name = "echo"
endpoints = [{{ url = "{echo_url}", tool = "echo" }}]
"#
    ))
}

async fn start_node(text: &str) -> NodeHandle {
    bind()
        .await
        .serve(Some("finance-node".to_string()), vec![zone(text)])
        .expect("node serves")
}

async fn start_gateway(
    node: &NodeHandle,
    configure: impl FnOnce(&mut GatewayConfig),
) -> GatewayHandle {
    let mut config = GatewayConfig::new(node.grpc_url());
    config.mounts = vec![Name::parse(ZONE).unwrap()];
    config.poll_interval = Duration::from_secs(3600);
    configure(&mut config);
    gateway::start(config, free_listener().await)
        .await
        .expect("start the gateway")
}

async fn connect(url: &str) -> Client {
    let transport = crate::support::mcp::transport(url.to_string());
    ().serve(transport).await.expect("MCP handshake")
}

/// The answer's structured content, after checking the text block says the same.
fn body(result: &CallToolResult) -> Value {
    let structured = result
        .structured_content
        .clone()
        .expect("structuredContent");
    let text = result.content[0]
        .as_text()
        .expect("a text block")
        .text
        .clone();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), structured);
    structured
}

async fn submit(client: &Client, agent: &str, arguments: Value, priority: u64) -> String {
    let answer = body(
        &call(
            client,
            "submit_task",
            json!({"agent_name": agent, "arguments": arguments, "priority": priority}),
        )
        .await,
    );
    assert_eq!(answer["success"], json!(true), "{answer}");
    answer["task_id"].as_str().expect("a task_id").to_string()
}

async fn task(client: &Client, agent: &str, task_id: &str) -> Value {
    let answer = body(
        &call(
            client,
            "get_task_status",
            json!({"agent_name": agent, "task_id": task_id}),
        )
        .await,
    );
    assert_eq!(answer["success"], json!(true), "{answer}");
    answer["task"].clone()
}

async fn wait_status(client: &Client, agent: &str, task_id: &str, status: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let last = task(client, agent, task_id).await;
        if last["status"] == json!(status) {
            return last;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "task {task_id} not {status} within {DEADLINE:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A refusal: `success: false`, an error naming `needle`, `isError`.
fn refused(result: &CallToolResult, needle: &str) -> Value {
    let answer = body(result);
    assert_eq!(answer["success"], json!(false), "{answer}");
    let error = answer["error"].as_str().expect("an error");
    assert!(error.contains(needle), "{error:?} should name {needle:?}");
    assert_eq!(result.is_error, Some(true));
    answer
}

const SLEEPER: &str = "sleeper.finance.acme";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_by_priority_and_pause_resume_and_clear_act_on_the_queue() {
    let (_sleeper, sleeper_server) = agent(AgentKind::Sleeper, "sleeper").await;
    let (_echo, echo_server) = agent(AgentKind::Echo, "echo").await;
    let node = start_node(&agents_zone(&sleeper_server.url(), &echo_server.url())).await;
    let gateway = start_gateway(&node, |config| config.tasks.agent_concurrency = 1).await;
    let client = connect(&gateway.url().unwrap()).await;

    // Paused before its first task: the queue is created paused (by tool name here).
    let paused = body(
        &call(
            &client,
            "pause_agent_queue",
            json!({"agent_name": "sleeper_finance_acme"}),
        )
        .await,
    );
    assert_eq!(paused["success"], json!(true), "{paused}");
    let mut ids = Vec::new();
    for (name, priority) in [
        ("low-1", 0),
        ("high-1", 9),
        ("low-2", 0),
        ("mid", 4),
        ("high-2", 9),
    ] {
        let id = submit(&client, SLEEPER, json!({"task": name, "ms": 30}), priority).await;
        ids.push((name, id));
    }
    let stats = body(&call(&client, "get_queue_stats", json!({"agent_name": SLEEPER})).await);
    assert_eq!(stats["agent_name"], json!(SLEEPER));
    assert_eq!(stats["stats"]["queue_size"], json!(5), "{stats}");
    assert_eq!(stats["stats"]["pending_tasks"], json!(5));
    assert_eq!(stats["stats"]["queue_status"], json!("paused"));
    for (_, id) in &ids {
        assert_eq!(task(&client, SLEEPER, id).await["status"], json!("pending"));
    }
    let resumed = body(
        &call(
            &client,
            "resume_agent_queue",
            json!({"agent_name": SLEEPER}),
        )
        .await,
    );
    assert_eq!(resumed["success"], json!(true));
    let mut started = Vec::new();
    for (name, id) in &ids {
        let done = wait_status(&client, SLEEPER, id, "completed").await;
        assert_eq!(done["result"]["success"], json!(true), "{done}");
        assert!(
            done["result"]["result"].as_str().unwrap().contains("slept"),
            "{done}"
        );
        assert_eq!(done["agent_name"], json!(SLEEPER));
        assert!(done["priority"].as_u64().is_some());
        started.push((done["started_at"].as_f64().unwrap(), *name));
    }
    started.sort_by(|a, b| a.0.total_cmp(&b.0));
    let order: Vec<&str> = started.iter().map(|(_, name)| *name).collect();
    assert_eq!(order, ["high-1", "high-2", "mid", "low-1", "low-2"]);
    let stats = body(&call(&client, "get_queue_stats", json!({})).await);
    assert_eq!(stats["total_agents"], json!(1), "{stats}");
    let sleeper_stats = &stats["stats"][SLEEPER];
    assert_eq!(sleeper_stats["completed_tasks"], json!(5), "{stats}");
    assert!(sleeper_stats["average_processing_time"].as_f64().unwrap() >= 0.03);

    // Clear: pending tasks are cancelled, counted; the _all_ tools reach every queue.
    let all = body(&call(&client, "pause_all_queues", json!({})).await);
    assert_eq!(all["total_agents"], json!(1));
    assert_eq!(all["results"][SLEEPER], json!(true));
    let waiting: Vec<String> = futures::future::join_all((0..3).map(|i| {
        submit(
            &client,
            SLEEPER,
            json!({"task": format!("w{i}"), "ms": 1}),
            0,
        )
    }))
    .await;
    let echo_id = submit(&client, "echo_finance_acme", json!({"task": "hello"}), 0).await;
    let echoed = wait_status(&client, "echo.finance.acme", &echo_id, "completed").await;
    assert_eq!(echoed["result"]["result"], json!("hello"), "{echoed}");
    let cleared = body(&call(&client, "clear_agent_queue", json!({"agent_name": SLEEPER})).await);
    assert_eq!(cleared["cleared_tasks"], json!(3), "{cleared}");
    for id in &waiting {
        assert_eq!(
            task(&client, SLEEPER, id).await["status"],
            json!("cancelled")
        );
    }
    let everything = body(&call(&client, "clear_all_queues", json!({})).await);
    assert_eq!(everything["total_cleared"], json!(0), "{everything}");
    assert_eq!(everything["total_agents"], json!(2));
    let resumed = body(&call(&client, "resume_all_queues", json!({})).await);
    assert_eq!(resumed["successful_resumes"], json!(2), "{resumed}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_task_cancels_the_call_at_the_agent() {
    let (sleeper, sleeper_server) = agent(AgentKind::Sleeper, "sleeper").await;
    let (_echo, echo_server) = agent(AgentKind::Echo, "echo").await;
    let node = start_node(&agents_zone(&sleeper_server.url(), &echo_server.url())).await;
    let gateway = start_gateway(&node, |_| {}).await;
    let client = connect(&gateway.url().unwrap()).await;
    let id = submit(&client, SLEEPER, json!({"task": "long", "ms": 60_000}), 0).await;
    wait_status(&client, SLEEPER, &id, "processing").await;
    eventually(DEADLINE, "the call reaches the agent", || async {
        sleeper.calls() == 1
    })
    .await;
    let cancelled = body(
        &call(
            &client,
            "cancel_task",
            json!({"agent_name": SLEEPER, "task_id": id}),
        )
        .await,
    );
    assert_eq!(cancelled["success"], json!(true), "{cancelled}");
    eventually(DEADLINE, "the agent sees the cancellation", || async {
        sleeper.cancelled() == 1
    })
    .await;
    assert_eq!(
        task(&client, SLEEPER, &id).await["status"],
        json!("cancelled")
    );
    let again = call(
        &client,
        "cancel_task",
        json!({"agent_name": SLEEPER, "task_id": id}),
    )
    .await;
    refused(&again, "already cancelled");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_full_queues_and_reused_keys_are_refused_and_nothing_is_queued() {
    let (_sleeper, sleeper_server) = agent(AgentKind::Sleeper, "sleeper").await;
    let (_echo, echo_server) = agent(AgentKind::Echo, "echo").await;
    let node = start_node(&agents_zone(&sleeper_server.url(), &echo_server.url())).await;
    let gateway = start_gateway(&node, |config| config.tasks.queue_size = 2).await;
    let client = connect(&gateway.url().unwrap()).await;
    call(&client, "pause_agent_queue", json!({"agent_name": SLEEPER})).await;
    let args = json!({"task": "x", "ms": 1});
    let cases = [
        (
            json!({"agent_name": "nobody.finance.acme", "arguments": args}),
            "nobody.finance.acme",
        ),
        (
            json!({"agent_name": "not a name", "arguments": args}),
            "not a name",
        ),
        (
            json!({"agent_name": SLEEPER, "arguments": args, "priority": -1}),
            "priority",
        ),
        (
            json!({"agent_name": SLEEPER, "arguments": args, "priority": 1.5}),
            "priority",
        ),
        (
            json!({"agent_name": SLEEPER, "arguments": args, "priority": "3"}),
            "priority",
        ),
        (
            json!({"agent_name": SLEEPER, "arguments": {"ms": 1}}),
            "`task`",
        ),
        (
            json!({"agent_name": SLEEPER, "arguments": {"task": 3}}),
            "`task`",
        ),
        (
            json!({"agent_name": SLEEPER, "arguments": "x"}),
            "arguments",
        ),
        (json!({"agent_name": SLEEPER}), "arguments"),
        (
            json!({"agent_name": SLEEPER, "arguments": args, "idempotency_key": ""}),
            "idempotency_key",
        ),
    ];
    for (arguments, needle) in cases {
        let answer = refused(
            &call(&client, "submit_task", arguments.clone()).await,
            needle,
        );
        assert_eq!(answer["task_id"], Value::Null, "{arguments}");
    }
    let stats = body(&call(&client, "get_queue_stats", json!({"agent_name": SLEEPER})).await);
    assert_eq!(
        stats["stats"]["total_tasks"],
        json!(0),
        "nothing was queued: {stats}"
    );

    // Idempotency: the same key and arguments name the first task; other arguments are refused.
    let keyed = |task: &str| json!({"agent_name": SLEEPER, "arguments": {"task": task}, "idempotency_key": "order-17"});
    let first = body(&call(&client, "submit_task", keyed("a")).await);
    let again = body(&call(&client, "submit_task", keyed("a")).await);
    assert_eq!(first["task_id"], again["task_id"]);
    refused(&call(&client, "submit_task", keyed("b")).await, "order-17");

    // Full: two pending is the limit.
    submit(&client, SLEEPER, json!({"task": "second"}), 0).await;
    let full = refused(
        &call(
            &client,
            "submit_task",
            json!({"agent_name": SLEEPER, "arguments": {"task": "third"}}),
        )
        .await,
        "2 pending tasks is the limit",
    );
    assert_eq!(full["task_id"], Value::Null);

    // Unknown task ids and agents without queues.
    refused(
        &call(
            &client,
            "get_task_status",
            json!({"agent_name": SLEEPER, "task_id": "nope"}),
        )
        .await,
        "nope",
    );
    refused(
        &call(
            &client,
            "cancel_task",
            json!({"agent_name": SLEEPER, "task_id": "nope"}),
        )
        .await,
        "nope",
    );
    refused(
        &call(
            &client,
            "get_task_status",
            json!({"agent_name": "echo.finance.acme", "task_id": "nope"}),
        )
        .await,
        "has no task queue",
    );
    refused(
        &call(
            &client,
            "get_queue_stats",
            json!({"agent_name": "nobody.finance.acme"}),
        )
        .await,
        "nobody.finance.acme",
    );
    refused(
        &call(&client, "clear_agent_queue", json!({})).await,
        "agent_name",
    );
    refused(
        &call(
            &client,
            "pause_agent_queue",
            json!({"agent_name": "nobody.finance.acme"}),
        )
        .await,
        "nobody.finance.acme",
    );
    gateway.shutdown().await;
}

/// `aop gateway` in a child process on `data_dir`.
async fn gateway_process(resolver: &str, data_dir: &Path) -> (NodeProcess, String) {
    let listen = free_addr().to_string();
    let mut process = NodeProcess::spawn_command(&[
        AOP,
        "gateway",
        "--resolver",
        resolver,
        "--listen",
        &listen,
        "--mount",
        ZONE,
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--agent-concurrency",
        "1",
    ]);
    process.line_containing("MCP gateway listening").await;
    (process, format!("http://{listen}/mcp"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_with_tasks_in_every_state_knows_them_all_after_a_restart() {
    let (sleeper, sleeper_server) = agent(AgentKind::Sleeper, "sleeper").await;
    let (_echo, echo_server) = agent(AgentKind::Echo, "echo").await;
    let node = start_node(&agents_zone(&sleeper_server.url(), &echo_server.url())).await;
    let data = tempfile::tempdir().unwrap();
    let (process, url) = gateway_process(&node.grpc_url(), data.path()).await;
    let client = connect(&url).await;
    let completed = submit(&client, SLEEPER, json!({"task": "quick", "ms": 1}), 0).await;
    let before = wait_status(&client, SLEEPER, &completed, "completed").await;
    let processing = submit(&client, SLEEPER, json!({"task": "long", "ms": 60_000}), 0).await;
    wait_status(&client, SLEEPER, &processing, "processing").await;
    eventually(DEADLINE, "the long call reaches the agent", || async {
        sleeper.calls() == 2
    })
    .await;
    let mut pending = Vec::new();
    for i in 0..3 {
        pending.push(
            submit(
                &client,
                SLEEPER,
                json!({"task": format!("p{i}"), "ms": 1}),
                i,
            )
            .await,
        );
    }
    let cancelled = submit(&client, SLEEPER, json!({"task": "never", "ms": 1}), 0).await;
    call(
        &client,
        "cancel_task",
        json!({"agent_name": SLEEPER, "task_id": cancelled}),
    )
    .await;
    call(
        &client,
        "pause_agent_queue",
        json!({"agent_name": "echo_finance_acme"}),
    )
    .await;
    drop(client);

    process.signal(libc::SIGKILL);
    let mut process = process;
    process.exit().await;
    let (restarted, url) = gateway_process(&node.grpc_url(), data.path()).await;
    let client = connect(&url).await;
    let after = task(&client, SLEEPER, &completed).await;
    assert_eq!(after["status"], json!("completed"));
    assert_eq!(after["result"], before["result"], "the result survived");
    assert_eq!(after["created_at"], before["created_at"]);
    assert_eq!(
        task(&client, SLEEPER, &cancelled).await["status"],
        json!("cancelled")
    );
    // The sleeper's tool is annotated idempotentHint: the interrupted task runs again,
    // after the pending ones' turn comes by priority (it kept its place).
    let rerun = wait_status(&client, SLEEPER, &processing, "processing").await;
    assert_eq!(rerun["retry_count"], json!(1), "{rerun}");
    eventually(
        DEADLINE,
        "the long call reaches the agent again",
        || async { sleeper.calls() >= 3 },
    )
    .await;
    call(
        &client,
        "cancel_task",
        json!({"agent_name": SLEEPER, "task_id": processing}),
    )
    .await;
    for id in &pending {
        wait_status(&client, SLEEPER, id, "completed").await;
    }
    let echo = body(
        &call(
            &client,
            "get_queue_stats",
            json!({"agent_name": "echo.finance.acme"}),
        )
        .await,
    );
    assert_eq!(
        echo["stats"]["queue_status"],
        json!("paused"),
        "paused across the restart"
    );
    drop(client);
    let mut restarted = restarted;
    restarted.signal(libc::SIGTERM);
    restarted.exit().await;
}

type TasksClient = RunningService<RoleClient, ClientConfig>;

/// A 2026-07-28 client that declares the MCP tasks extension (in every request's `_meta`).
async fn connect_tasks(url: &str) -> TasksClient {
    let transport = crate::support::mcp::transport(url.to_string());
    ClientConfig::new(
        ClientCapabilities::builder().enable_tasks().build(),
        Implementation::new("gateway-tasks-test", "1"),
    )
    .serve_with_lifecycle(
        transport,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .expect("server/discover")
}

fn params(tool: &str, arguments: Value) -> CallToolRequestParams {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object");
    };
    CallToolRequestParams::new(tool.to_string()).with_arguments(arguments)
}

/// A `tools/call` the gateway answers with a task.
async fn call_as_task(client: &TasksClient, tool: &str, arguments: Value) -> CreateTaskResult {
    let response = tokio::time::timeout(DEADLINE, client.call_tool_once(params(tool, arguments)))
        .await
        .expect("answer in time")
        .expect("a response, not a protocol error");
    match response {
        CallToolResponse::Task(task) => task,
        other => panic!("expected a task, got {other:?}"),
    }
}

async fn get_task(client: &TasksClient, task_id: &str) -> GetTaskResult {
    tokio::time::timeout(DEADLINE, client.get_task(GetTaskParams::new(task_id)))
        .await
        .expect("answer in time")
        .expect("tasks/get")
}

/// Polls `tasks/get` until the task is `status`.
async fn wait_mcp_status(client: &TasksClient, task_id: &str, status: McpStatus) -> GetTaskResult {
    let started = std::time::Instant::now();
    loop {
        let last = get_task(client, task_id).await;
        if last.task.status() == status {
            return last;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "task {task_id} not {status:?} within {DEADLINE:?}: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The JSON-RPC error a request failed with.
fn rpc_error<T: std::fmt::Debug>(outcome: Result<T, ServiceError>) -> rmcp::ErrorData {
    match outcome {
        Err(ServiceError::McpError(error)) => error,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

fn completed_result(task: &GetTaskResult) -> Value {
    match &task.task.payload {
        TaskPayload::Completed { result } => Value::Object(result.clone()),
        other => panic!("expected a completed task, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tool_calls_run_as_mcp_tasks_on_the_queue_for_clients_that_declare_the_extension() {
    let (sleeper, sleeper_server) = agent(AgentKind::Sleeper, "sleeper").await;
    let (echo, echo_server) = agent(AgentKind::Echo, "echo").await;
    let node = start_node(&agents_zone(&sleeper_server.url(), &echo_server.url())).await;
    let gateway = start_gateway(&node, |_| {}).await;
    let url = gateway.url().unwrap();
    let client = connect_tasks(&url).await;
    let plain = connect(&url).await;
    let advertised = client.peer_info().expect("server info");
    assert!(
        advertised.capabilities.supports_tasks(),
        "{:?}",
        advertised.capabilities
    );

    // Paused queue: the task is created, on the queue, pending, and `working` over MCP.
    call(&plain, "pause_agent_queue", json!({"agent_name": SLEEPER})).await;
    let created = call_as_task(
        &client,
        "sleeper_finance_acme",
        json!({"task": "long", "ms": 60_000}),
    )
    .await;
    let long = created.task.task_id.clone();
    assert_eq!(created.task.status, McpStatus::Working);
    assert_eq!(created.task.ttl_ms, None, "kept while it is not finished");
    assert!(created.task.poll_interval_ms.is_some());
    assert!(created.task.created_at.ends_with('Z'), "{:?}", created.task);
    // The same task, under the same id, for the queue tools.
    let queued = task(&plain, SLEEPER, &long).await;
    assert_eq!(queued["status"], json!("pending"), "{queued}");
    let waiting = get_task(&client, &long).await;
    assert_eq!(waiting.task.status(), McpStatus::Working);
    let message = waiting.task.task.status_message.clone().unwrap_or_default();
    assert!(message.contains("paused"), "{message:?}");

    // Running: `working`, processing; tasks/cancel reaches the agent's call.
    call(&plain, "resume_agent_queue", json!({"agent_name": SLEEPER})).await;
    wait_status(&plain, SLEEPER, &long, "processing").await;
    eventually(DEADLINE, "the call reaches the agent", || async {
        sleeper.calls() == 1
    })
    .await;
    let running = get_task(&client, &long).await;
    assert_eq!(running.task.status(), McpStatus::Working);
    assert!(
        running
            .task
            .task
            .status_message
            .as_deref()
            .is_some_and(|m| m.starts_with("processing")),
        "{running:?}"
    );
    client
        .cancel_task(CancelTaskParams::new(long.clone()))
        .await
        .expect("tasks/cancel");
    eventually(DEADLINE, "the agent sees the cancellation", || async {
        sleeper.cancelled() == 1
    })
    .await;
    let cancelled = wait_mcp_status(&client, &long, McpStatus::Cancelled).await;
    assert!(
        cancelled.task.task.ttl_ms.is_some(),
        "forgotten --task-ttl after it ended"
    );
    assert_eq!(
        task(&plain, SLEEPER, &long).await["status"],
        json!("cancelled")
    );

    // Completed: the agent tool's whole result, as the direct call answers it.
    let quick = call_as_task(
        &client,
        "sleeper.finance.acme",
        json!({"task": "quick", "ms": 1}),
    )
    .await
    .task
    .task_id;
    let done = wait_mcp_status(&client, &quick, McpStatus::Completed).await;
    let result: CallToolResult =
        serde_json::from_value(completed_result(&done)).expect("a CallToolResult");
    let structured = body(&result);
    assert_eq!(structured["success"], json!(true), "{structured}");
    assert!(
        structured["result"].as_str().unwrap().contains("slept"),
        "{structured}"
    );
    assert_eq!(result.is_error, Some(false));
    assert_eq!(done.task.task.poll_interval_ms, None);
    let queued = task(&plain, SLEEPER, &quick).await;
    assert_eq!(queued["status"], json!("completed"));
    assert_eq!(queued["result"], structured, "one result, two views");
    // Cancelling a finished task is acknowledged; it stays completed.
    client
        .cancel_task(CancelTaskParams::new(quick.clone()))
        .await
        .expect("tasks/cancel of a finished task is acknowledged");
    assert_eq!(
        get_task(&client, &quick).await.task.status(),
        McpStatus::Completed
    );
    // tasks/update: acknowledged, nothing is outstanding.
    client
        .update_task(UpdateTaskParams::new(quick.clone(), Default::default()))
        .await
        .expect("tasks/update");

    // Bad arguments are answered at once, as by the direct call: no task, nothing queued.
    let refused = tokio::time::timeout(
        DEADLINE,
        client.call_tool_once(params("echo_finance_acme", json!({"task": 3}))),
    )
    .await
    .unwrap()
    .expect("a result");
    let CallToolResponse::Complete(refused) = refused else {
        panic!("bad arguments make no task: {refused:?}");
    };
    assert_eq!(refused.is_error, Some(true));
    assert!(text_of(&refused).contains("`task`"), "{refused:?}");
    assert_eq!(echo.calls(), 0);
    // Meta tools answer directly to such clients too.
    let stats = tokio::time::timeout(
        DEADLINE,
        client.call_tool_once(params("get_queue_stats", json!({"agent_name": SLEEPER}))),
    )
    .await
    .unwrap()
    .expect("a result");
    assert!(matches!(stats, CallToolResponse::Complete(_)), "{stats:?}");

    // Unknown ids, and a task of submit_task: -32602 naming what was wrong.
    for outcome in [
        rpc_error(client.get_task(GetTaskParams::new("no-such-task")).await),
        rpc_error(
            client
                .cancel_task(CancelTaskParams::new("no-such-task"))
                .await,
        ),
        rpc_error(
            client
                .update_task(UpdateTaskParams::new("no-such-task", Default::default()))
                .await,
        ),
    ] {
        assert_eq!(outcome.code, ErrorCode::INVALID_PARAMS, "{outcome:?}");
        assert!(outcome.message.contains("no-such-task"), "{outcome:?}");
    }
    let submitted = submit(&plain, "echo.finance.acme", json!({"task": "hi"}), 0).await;
    let not_mcp = rpc_error(client.get_task(GetTaskParams::new(submitted)).await);
    assert_eq!(not_mcp.code, ErrorCode::INVALID_PARAMS);
    assert!(not_mcp.message.contains("get_task_status"), "{not_mcp:?}");

    // The 2025 session era: the capability declared at initialize counts.
    let session = ClientConfig::new(
        ClientCapabilities::builder().enable_tasks().build(),
        Implementation::new("gateway-tasks-test-2025", "1"),
    )
    .serve(crate::support::mcp::transport(url.clone()))
    .await
    .expect("initialize");
    let echoed = match session
        .call_tool_once(params("echo_finance_acme", json!({"task": "in a session"})))
        .await
        .expect("a response")
    {
        CallToolResponse::Task(task) => task.task.task_id,
        other => panic!("expected a task in the session era too, got {other:?}"),
    };
    let started = std::time::Instant::now();
    let done = loop {
        let now = session
            .get_task(GetTaskParams::new(echoed.clone()))
            .await
            .expect("tasks/get in a session");
        if now.task.status() == McpStatus::Completed {
            break now;
        }
        assert!(started.elapsed() < DEADLINE, "{now:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        completed_result(&done)["structuredContent"]["result"],
        json!("in a session")
    );

    // Without the extension: the call is direct, and tasks/* need the capability.
    let direct = call(&plain, "echo_finance_acme", json!({"task": "direct"})).await;
    assert_eq!(body(&direct)["result"], json!("direct"));
    let refused = rpc_error(plain.get_task(GetTaskParams::new(quick.clone())).await);
    assert_eq!(
        refused.code,
        ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY,
        "{refused:?}"
    );
    // Counted by outcome: the calls made tasks, the refused one, the direct one.
    let calls = gateway.gateway.metrics().calls();
    let count = |tool: &str, outcome: &str| {
        calls
            .iter()
            .find(|(t, o, _)| t == tool && *o == outcome)
            .map_or(0, |(_, _, n)| *n)
    };
    assert_eq!(count("sleeper_finance_acme", "task"), 1, "{calls:?}");
    assert_eq!(count("sleeper.finance.acme", "task"), 1, "{calls:?}");
    assert_eq!(count("echo_finance_acme", "task"), 1, "{calls:?}");
    assert_eq!(
        count("echo_finance_acme", "invalid_arguments"),
        1,
        "{calls:?}"
    );
    assert_eq!(count("echo_finance_acme", "ok"), 1, "{calls:?}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_an_agent_tool_call_with_the_limit_and_makes_no_task() {
    let (sleeper, sleeper_server) = agent(AgentKind::Sleeper, "sleeper").await;
    let (_echo, echo_server) = agent(AgentKind::Echo, "echo").await;
    let node = start_node(&agents_zone(&sleeper_server.url(), &echo_server.url())).await;
    let gateway = start_gateway(&node, |config| config.tasks.queue_size = 1).await;
    let url = gateway.url().unwrap();
    let client = connect_tasks(&url).await;
    let plain = connect(&url).await;
    call(&plain, "pause_agent_queue", json!({"agent_name": SLEEPER})).await;
    call_as_task(&client, "sleeper_finance_acme", json!({"task": "first"})).await;
    let full = tokio::time::timeout(
        DEADLINE,
        client.call_tool_once(params("sleeper_finance_acme", json!({"task": "second"}))),
    )
    .await
    .unwrap()
    .expect("a result");
    let CallToolResponse::Complete(full) = full else {
        panic!("a full queue makes no task: {full:?}");
    };
    // As the direct call's failures: the message as text, the AOP shape as structured content.
    assert_eq!(full.is_error, Some(true));
    let answer = full.structured_content.clone().expect("structuredContent");
    assert_eq!(answer["success"], json!(false), "{answer}");
    assert_eq!(answer["result"], json!(""));
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("1 pending tasks is the limit (--queue-size)"),
        "{error}"
    );
    assert_eq!(text_of(&full), error);
    let stats = body(&call(&plain, "get_queue_stats", json!({"agent_name": SLEEPER})).await);
    assert_eq!(stats["stats"]["total_tasks"], json!(1), "{stats}");
    assert_eq!(sleeper.calls(), 0);
    gateway.shutdown().await;
}

fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|text| text.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tasks_survive_a_gateway_killed_and_restarted_on_its_data_dir() {
    let (_sleeper, sleeper_server) = agent(AgentKind::Sleeper, "sleeper").await;
    let (echo, echo_server) = agent(AgentKind::Echo, "echo").await;
    let node = start_node(&agents_zone(&sleeper_server.url(), &echo_server.url())).await;
    let data = tempfile::tempdir().unwrap();
    let (process, url) = gateway_process(&node.grpc_url(), data.path()).await;
    let client = connect_tasks(&url).await;
    let plain = connect(&url).await;
    let done = call_as_task(&client, "echo_finance_acme", json!({"task": "kept"}))
        .await
        .task
        .task_id;
    let before = wait_mcp_status(&client, &done, McpStatus::Completed).await;
    call(&plain, "pause_agent_queue", json!({"agent_name": SLEEPER})).await;
    let waiting = call_as_task(
        &client,
        "sleeper_finance_acme",
        json!({"task": "later", "ms": 1}),
    )
    .await
    .task
    .task_id;
    drop(client);
    drop(plain);

    process.signal(libc::SIGKILL);
    let mut process = process;
    process.exit().await;
    let (restarted, url) = gateway_process(&node.grpc_url(), data.path()).await;
    let client = connect_tasks(&url).await;
    let plain = connect(&url).await;
    let after = get_task(&client, &done).await;
    assert_eq!(
        completed_result(&after),
        completed_result(&before),
        "the result survived"
    );
    assert_eq!(after.task.task.created_at, before.task.task.created_at);
    assert_eq!(
        get_task(&client, &waiting).await.task.status(),
        McpStatus::Working
    );
    call(&plain, "resume_agent_queue", json!({"agent_name": SLEEPER})).await;
    let ran = wait_mcp_status(&client, &waiting, McpStatus::Completed).await;
    assert!(
        completed_result(&ran)["structuredContent"]["result"]
            .as_str()
            .unwrap()
            .contains("slept"),
        "{ran:?}"
    );
    assert_eq!(echo.calls(), 1, "the finished task did not run again");
    drop(client);
    drop(plain);
    let mut restarted = restarted;
    restarted.signal(libc::SIGTERM);
    restarted.exit().await;
}

/// Registers (or renews) agent `label` of the zone live.
async fn register(node: &NodeHandle, label: &str) {
    let registration = Registration {
        name: Name::parse(&format!("{label}.{ZONE}")).unwrap(),
        endpoint: Endpoint::new("http://127.0.0.1:9/mcp", label, 10, 1).unwrap(),
        lease_secs: 600,
        fields: AgentUpdate::default(),
    };
    node.authority()
        .register(Name::parse(ZONE).unwrap(), registration)
        .await
        .expect("registered");
}

async fn deregister(node: &NodeHandle, label: &str) {
    node.authority()
        .deregister(
            Name::parse(ZONE).unwrap(),
            Name::parse(&format!("{label}.{ZONE}")).unwrap(),
            None,
        )
        .await
        .expect("deregistered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_pages_list_every_tool_once_while_agents_come_and_go() {
    let mut agents = String::new();
    for i in 0..1200 {
        agents.push_str(&format!(
            "[[agent]]\nname = \"a{i:04}\"\nendpoints = [{{ url = \"http://127.0.0.1:9/mcp\" }}]\n"
        ));
    }
    let node = start_node(&zone_text(&agents)).await;
    // Live agents spread over every page (a0024x sorts right after a0024), removed while
    // the listing runs; others arrive meanwhile.
    let leaving: Vec<String> = (0..50).map(|i| format!("a{:04}x", i * 24)).collect();
    let arriving: Vec<String> = (0..50).map(|i| format!("a{:04}y", i * 24)).collect();
    for label in &leaving {
        register(&node, label).await;
    }
    let gateway = start_gateway(&node, |_| {}).await;
    let tools_now =
        |gateway: &GatewayHandle| gateway.gateway.directory().current().listing.tools.len();
    eventually(DEADLINE, "the gateway sees the live agents", || async {
        tools_now(&gateway) == 1250
    })
    .await;
    let client = connect(&gateway.url().unwrap()).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = client
            .list_tools(Some(
                PaginatedRequestParams::default().with_cursor(cursor.clone()),
            ))
            .await
            .expect("tools/list");
        pages += 1;
        for tool in page.tools {
            *seen.entry(tool.name.to_string()).or_default() += 1;
        }
        if pages == 1 {
            // Churn between the first and second pages, on both sides of the cursor.
            for label in &leaving {
                deregister(&node, label).await;
            }
            for label in &arriving {
                register(&node, label).await;
            }
            eventually(DEADLINE, "the gateway sees the churn", || async {
                let mounted = gateway.gateway.directory().current();
                mounted.listing.tools.len() == 1250
                    && mounted
                        .listing
                        .by_tool
                        .contains_key(&format!("{}_finance_acme", arriving[49]))
                    && !mounted
                        .listing
                        .by_tool
                        .contains_key(&format!("{}_finance_acme", leaving[49]))
            })
            .await;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert!(
        pages >= 3,
        "1,270 tools take three pages of 500, got {pages}"
    );
    for i in 0..1200 {
        let tool = format!("a{i:04}_finance_acme");
        assert_eq!(
            seen.get(&tool),
            Some(&1),
            "{tool} should be listed exactly once"
        );
    }
    for meta in shapes::NAMES {
        assert_eq!(seen.get(meta), Some(&1), "{meta}");
    }
    assert!(seen.values().all(|count| *count == 1), "no tool twice");
    let bad = client
        .list_tools(Some(
            PaginatedRequestParams::default().with_cursor(Some("17".into())),
        ))
        .await;
    assert!(bad.is_err(), "an index is not a cursor");
    gateway.shutdown().await;
}
