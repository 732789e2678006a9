//! Interop of the MCP gateway with outside MCP programs: the official MCP Python SDK, clients
//! written for a swarms AOP server, and a real swarms AOP server as the agents' endpoint.
//!
//! Ignored by `cargo test`, which needs nothing but the toolchain. The interop stage makes
//! the Python venvs with `.ci/interop-mcp-venvs`, which prints the two variables these tests
//! read, then runs `cargo test --test interop -- --ignored --test-threads=1 mcp_clients::`:
//!
//! - `AOP_INTEROP_MCP_PYTHON`: a Python with the newest MCP SDK (`mcp==2.3.0`; it also
//!   drives the task tools and the MCP tasks extension, tests/clients/mcp_sdk_tasks.py);
//! - `AOP_INTEROP_SWARMS_PYTHON`: a Python with `swarms==14.0.2` and `mcp==1.30.0` (swarms'
//!   AOP server needs `mcp<2`).
//!
//! Each test starts a node, built-in agents and a gateway in this process on free ports, and
//! runs the Python programs in `tests/clients/` as child processes with a deadline. The
//! `--auth` tests (tests/clients/mcp_sdk_auth.py) run the gateway as an OAuth resource
//! server: once with a static token the client is given, once with the SDK's own OAuth client
//! getting a JWT from a tiny authorization server run here (`tiny_as`).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use aop::agent::AgentKind;
use aop::gateway::{self, GatewayConfig, GatewayHandle};
use aop::name::Name;
use aop::node::NodeHandle;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::support::{agent, bind, free_addr, free_listener, zone};

/// How long one Python program may run (importing swarms alone takes 3-8 s).
const SCRIPT_DEADLINE: Duration = Duration::from_secs(180);
/// How long the swarms AOP server may take to listen.
const SWARMS_START_DEADLINE: Duration = Duration::from_secs(90);
/// How long one MCP call through the gateway may take.
const CALL_DEADLINE: Duration = Duration::from_secs(60);

const MCP_PYTHON: &str = "AOP_INTEROP_MCP_PYTHON";
const SWARMS_PYTHON: &str = "AOP_INTEROP_SWARMS_PYTHON";

/// The Python named by `var`; these tests only run in the interop stage, which sets it.
fn python(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: it names the venv Python for this interop test; \
             run `eval \"$(.ci/interop-mcp-venvs)\"` first (the interop stage does)"
        )
    })
}

fn client_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

fn zone_text(agents: &str) -> String {
    format!(
        r#"
[zone]
origin = "finance.acme"
serial = 1
ttl = 60
negative_ttl = 10
servers = [{{ grpc = "http://127.0.0.1:7102" }}]
{agents}
"#
    )
}

async fn start_node(text: &str) -> NodeHandle {
    bind()
        .await
        .serve(Some("interop-node".to_string()), vec![zone(text)])
        .expect("node serves")
}

async fn start_gateway(node: &NodeHandle) -> GatewayHandle {
    let mut config = GatewayConfig::new(node.grpc_url());
    config.mounts = vec![Name::parse("finance.acme").unwrap()];
    gateway::start(config, free_listener().await)
        .await
        .expect("start the gateway")
}

/// Runs a Python program to the end, within the deadline (killed when it is overrun).
async fn run_python(python: &str, script: &Path, args: &[&str], dir: &Path) -> Output {
    let child = tokio::process::Command::new(python)
        .arg(script)
        .args(args)
        .current_dir(dir)
        .env("WORKSPACE_DIR", dir.join("swarms-workspace"))
        .env("SWARMS_TELEMETRY_ON", "false")
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("run {python} {}: {e}", script.display()));
    match tokio::time::timeout(SCRIPT_DEADLINE, child.wait_with_output()).await {
        Ok(output) => output.expect("wait for the Python program"),
        Err(_) => panic!(
            "{} ran past {SCRIPT_DEADLINE:?} and was killed",
            script.display()
        ),
    }
}

/// The program's output, for assertion messages.
fn transcript(output: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The JSON of every stdout line that starts with `prefix`.
fn json_lines(output: &Output, prefix: &str) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// A real swarms AOP server (tests/clients/swarms_stub_server.py) in a child process, killed
/// when dropped.
struct SwarmsServer {
    child: tokio::process::Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl SwarmsServer {
    async fn start(extra: &[&str]) -> SwarmsServer {
        let python = python(SWARMS_PYTHON);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("swarms.log");
        let log_file = std::fs::File::create(&log).expect("create the log");
        // A port nothing listens on right now, for the server to bind.
        let port = free_addr().port();
        let child = tokio::process::Command::new(&python)
            .arg(client_script("swarms_stub_server.py"))
            .args(["--port", &port.to_string()])
            .args(extra)
            // Not the repository: swarms loads a .env from the working directory upward.
            .current_dir(dir.path())
            .env("WORKSPACE_DIR", dir.path().join("workspace"))
            .env("SWARMS_TELEMETRY_ON", "false")
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start the swarms AOP server with {python}: {e}"));
        let mut server = SwarmsServer {
            child,
            port,
            log,
            _dir: dir,
        };
        server.wait_until_listening().await;
        server
    }

    /// Polls the port until the server accepts connections, within the deadline.
    async fn wait_until_listening(&mut self) {
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("poll the swarms server") {
                panic!(
                    "the swarms AOP server exited ({status}) before listening:\n{}",
                    self.log_text()
                );
            }
            assert!(
                started.elapsed() < SWARMS_START_DEADLINE,
                "the swarms AOP server did not listen on port {} within {SWARMS_START_DEADLINE:?}:\n{}",
                self.port,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

type Client = RunningService<RoleClient, ()>;

async fn connect(gateway: &GatewayHandle) -> Client {
    let transport = crate::support::mcp::transport(gateway.url().unwrap());
    ().serve(transport).await.expect("MCP handshake")
}

async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object: {arguments}")
    };
    tokio::time::timeout(
        CALL_DEADLINE,
        client.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments)),
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
        .unwrap_or_else(|| panic!("no structuredContent: {}", text(result)))
}

/// The dict a swarms agent tool answers (its JSON text block), which the gateway's agent tool
/// carries as its `result` text.
/// The `result` text of the gateway's AOP shape. The gateway unwraps a swarms agent's
/// `{result, success, error, task_id}` answer into its own shape.
fn aop_result(result: &CallToolResult) -> String {
    structured(result)["result"]
        .as_str()
        .unwrap_or_else(|| panic!("result is not text: {}", structured(result)))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop stage: needs AOP_INTEROP_MCP_PYTHON (a Python with mcp==2.3.0)"]
async fn the_official_mcp_python_sdk_drives_the_gateway() {
    let python = python(MCP_PYTHON);
    let (analyst, server) = agent(AgentKind::Analyst, "analyst").await;
    let agents = format!(
        r#"
[[agent]]
name = "analyst"
description = "Financial analyst: ratios, forecasts, filings."
tags = ["finance", "analysis"]
capabilities = ["forecast", "summarize"]
timeout_ms = 10000
endpoints = [{{ url = "{}", tool = "analyst" }}]
"#,
        server.url()
    );
    let node = start_node(&zone_text(&agents)).await;
    let gateway = start_gateway(&node).await;
    let url = gateway.url().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let expected = "count=3 sum=6 mean=2 median=2 min=1 max=3 stdev=0.8165";
    let output = run_python(
        &python,
        &client_script("mcp_sdk_gateway.py"),
        &[
            "--url",
            &url,
            "--tool",
            "analyst_finance_acme",
            "--agent",
            "analyst.finance.acme",
            "--task",
            "1 2 3",
            "--expect",
            expected,
            "--modes",
            "legacy,auto",
        ],
        dir.path(),
    )
    .await;
    let log = transcript(&output);
    assert!(output.status.success(), "{log}");
    let results = json_lines(&output, "RESULT ");
    assert_eq!(results.len(), 2, "{log}");
    let (legacy, auto) = (&results[0], &results[1]);
    assert_eq!(legacy["mode"], "legacy");
    assert_eq!(legacy["mcp"], "2.3.0", "the pinned SDK");
    assert!(
        legacy["protocol_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("2025-")),
        "the initialize handshake negotiates a 2025 version: {legacy}"
    );
    assert_eq!(
        auto["protocol_version"], "2026-07-28",
        "mcp.Client adopts the stateless era after server/discover: {auto}"
    );
    for result in &results {
        assert_eq!(result["failures"], 0, "{log}");
        assert_eq!(result["server_info"]["name"], "aop-gateway", "{log}");
        assert_eq!(
            result["agent tool"]["structuredContent"],
            json!({"result": expected, "success": true, "error": null}),
            "{log}"
        );
        let unknown = &result["unknown tool error"];
        assert!(
            unknown["message"]
                .as_str()
                .is_some_and(|m| m.contains("no_such_tool")),
            "{log}"
        );
        assert!(
            result["bad argument type"]
                .as_str()
                .is_some_and(|t| t.contains("`task`") && t.contains("string")),
            "{log}"
        );
        assert!(
            result["missing argument"]
                .as_str()
                .is_some_and(|t| t.contains("`task`") && t.contains("required")),
            "{log}"
        );
    }
    assert_eq!(
        legacy["call_agent"]["structuredContent"]["served_by"],
        json!(server.url()),
        "{log}"
    );
    // Per mode: the agent's tool by tool name and by FQDN, and call_agent. Calls with bad
    // arguments never reach the agent.
    assert_eq!(analyst.calls(), 6, "{log}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop stage: needs AOP_INTEROP_MCP_PYTHON (a Python with mcp==2.3.0)"]
async fn the_official_mcp_python_sdk_drives_the_task_tools() {
    let python = python(MCP_PYTHON);
    let (sleeper, server) = agent(AgentKind::Sleeper, "sleeper").await;
    let agents = format!(
        r#"
[[agent]]
name = "sleeper"
timeout_ms = 120000
input_schema = {{ type = "object", properties = {{ task = {{ type = "string" }}, ms = {{ type = "integer" }} }}, required = ["task"] }}
endpoints = [{{ url = "{}", tool = "sleeper" }}]
"#,
        server.url()
    );
    let node = start_node(&zone_text(&agents)).await;
    let mut config = GatewayConfig::new(node.grpc_url());
    config.mounts = vec![Name::parse("finance.acme").unwrap()];
    config.tasks.agent_concurrency = 1;
    let gateway = gateway::start(config, free_listener().await)
        .await
        .expect("start the gateway");
    let url = gateway.url().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = run_python(
        &python,
        &client_script("mcp_sdk_tasks.py"),
        &["--url", &url, "--agent", "sleeper.finance.acme"],
        dir.path(),
    )
    .await;
    let log = transcript(&output);
    assert!(output.status.success(), "{log}");
    let results = json_lines(&output, "RESULT ");
    assert_eq!(results.len(), 1, "{log}");
    let result = &results[0];
    assert_eq!(result["failures"], 0, "{log}");
    assert_eq!(
        result["order"],
        json!(["high", "mid", "low"]),
        "priority order: {log}"
    );
    assert_eq!(result["cancelled_status"], "cancelled", "{log}");
    // The tasks extension through the SDK's extension API, on the same queue.
    assert_eq!(result["tasks_protocol_version"], "2026-07-28", "{log}");
    assert_eq!(result["mcp_cancelled_status"], "cancelled", "{log}");
    assert_eq!(result["unknown_task_error"], -32602, "{log}");
    assert_eq!(
        result["stats"]["stats"]["sleeper.finance.acme"]["completed_tasks"], 3,
        "{log}"
    );
    // Both cancels reached the agent (cancel_task, then tasks/cancel): the sleeper stopped
    // both long calls.
    let deadline = Instant::now() + CALL_DEADLINE;
    while sleeper.cancelled() < 2 {
        assert!(
            Instant::now() < deadline,
            "the sleeper never saw the cancellation: {log}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gateway.shutdown().await;
}

/// A gateway with `--auth` over three agents of finance.acme: alice sees the analyst and the
/// forecaster, may call the analyst only, and does not see the secret agent. `auth` is the
/// auth file after its `[resource]` table (`{url}` is the gateway's URL).
struct AuthGateway {
    gateway: GatewayHandle,
    url: String,
    analyst: aop::agent::BuiltinAgent,
    _servers: Vec<aop::mcp::http::McpHttpServer>,
    _node: NodeHandle,
}

async fn start_auth_gateway(dir: &Path, issuer: &str, auth: &str) -> AuthGateway {
    let (analyst, server) = agent(AgentKind::Analyst, "analyst").await;
    let (_echo, echo_server) = agent(AgentKind::Echo, "echo").await;
    let agents = format!(
        r#"
[[agent]]
name = "analyst"
endpoints = [{{ url = "{}", tool = "analyst" }}]

[[agent]]
name = "forecaster"
endpoints = [{{ url = "{}", tool = "echo" }}]

[[agent]]
name = "secret"
endpoints = [{{ url = "{}", tool = "echo" }}]
"#,
        server.url(),
        echo_server.url(),
        echo_server.url()
    );
    let node = start_node(&zone_text(&agents)).await;
    let listener = free_listener().await;
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    std::fs::write(
        dir.join("auth.toml"),
        format!(
            r#"
[resource]
url = "{url}"
authorization_servers = ["{issuer}"]
scopes_supported = ["agents:read", "agents:call"]

[[policy]]
subject = "alice"
see = ["analyst.finance.acme", "forecaster.finance.acme"]
call = ["analyst.finance.acme"]
{auth}
"#
        ),
    )
    .unwrap();
    let auth = aop::gateway::auth::config::AuthConfig::load(&dir.join("auth.toml"))
        .expect("the auth file");
    let mut config = GatewayConfig::new(node.grpc_url());
    config.mounts = vec![Name::parse("finance.acme").unwrap()];
    config.auth = Some(
        aop::gateway::auth::Authorizer::new(auth, aop::clock::system())
            .await
            .expect("the authorizer"),
    );
    let gateway = gateway::start(config, listener)
        .await
        .expect("start the gateway");
    AuthGateway {
        gateway,
        url,
        analyst,
        _servers: vec![server, echo_server],
        _node: node,
    }
}

/// The checks `mcp_sdk_auth.py` makes of alice's view, with `how` (`--token T` or `--oauth`).
async fn run_auth_client(python: &str, gateway: &AuthGateway, how: &[&str], dir: &Path) {
    let mut args = vec!["--url", gateway.url.as_str()];
    args.extend_from_slice(how);
    args.extend_from_slice(&[
        "--visible",
        "analyst_finance_acme",
        "forecaster_finance_acme",
        "discover_agents",
        "--hidden",
        "secret_finance_acme",
        "--forbidden",
        "forecaster_finance_acme",
        "--call",
        "analyst_finance_acme",
        "--task",
        "1 2 3",
    ]);
    let output = run_python(python, &client_script("mcp_sdk_auth.py"), &args, dir).await;
    let log = transcript(&output);
    assert!(output.status.success(), "{log}");
    let results = json_lines(&output, "RESULT ");
    assert_eq!(results.len(), 1, "{log}");
    assert_eq!(results[0]["failures"], 0, "{log}");
    assert_eq!(
        results[0]["metadata"]["resource"],
        json!(gateway.url),
        "{log}"
    );
    assert_eq!(gateway.analyst.calls(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop stage: needs AOP_INTEROP_MCP_PYTHON (a Python with mcp==2.3.0)"]
async fn the_official_mcp_python_sdk_meets_the_gateway_with_auth() {
    const TOKEN: &str = "interop-alice-static-token-0123456789";
    let python = python(MCP_PYTHON);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alice.token"), TOKEN).unwrap();
    let gateway = start_auth_gateway(
        dir.path(),
        "https://idp.example",
        "[[static_token]]\ntoken_file = \"alice.token\"\nsubject = \"alice\"\n",
    )
    .await;
    run_auth_client(&python, &gateway, &["--token", TOKEN], dir.path()).await;
    gateway.gateway.shutdown().await;
}

/// A tiny OAuth 2.1 authorization server for one user, alice: RFC 8414 metadata, dynamic
/// client registration (RFC 7591), the authorization endpoint (which approves at once and
/// redirects with a code bound to the PKCE challenge), the token endpoint (which checks the
/// verifier and issues an ES256 JWT for the requested resource) and its JWKS.
mod tiny_as {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::extract::{Form, Query, State};
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};
    use sha2::Digest;

    struct Inner {
        issuer: String,
        key: jsonwebtoken::EncodingKey,
        jwks: Value,
        /// code -> (PKCE challenge, resource asked for).
        codes: Mutex<HashMap<String, (String, String)>>,
        issued: std::sync::atomic::AtomicU64,
    }

    #[derive(Clone)]
    pub struct TinyAs(Arc<Inner>);

    impl TinyAs {
        pub fn issuer(&self) -> &str {
            &self.0.issuer
        }

        pub fn issued(&self) -> u64 {
            self.0.issued.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    pub async fn start() -> TinyAs {
        let listener = crate::support::free_listener().await;
        let issuer = format!("http://{}/as", listener.local_addr().unwrap());
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = pair.public_key_raw().to_vec();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "as-1",
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        }]});
        let state = TinyAs(Arc::new(Inner {
            issuer,
            key: jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der()),
            jwks,
            codes: Mutex::new(HashMap::new()),
            issued: std::sync::atomic::AtomicU64::new(0),
        }));
        let app = axum::Router::new()
            .route("/.well-known/oauth-authorization-server/as", get(metadata))
            .route("/.well-known/openid-configuration/as", get(metadata))
            .route("/as/.well-known/openid-configuration", get(metadata))
            .route("/as/register", post(register))
            .route("/as/authorize", get(authorize))
            .route("/as/token", post(token))
            .route("/as/jwks.json", get(jwks_document))
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        state
    }

    async fn metadata(State(s): State<TinyAs>) -> impl IntoResponse {
        let issuer = &s.0.issuer;
        axum::Json(json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "registration_endpoint": format!("{issuer}/register"),
            "jwks_uri": format!("{issuer}/jwks.json"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["agents:read", "agents:call"],
        }))
    }

    async fn jwks_document(State(s): State<TinyAs>) -> impl IntoResponse {
        axum::Json(s.0.jwks.clone())
    }

    async fn register(axum::Json(mut request): axum::Json<Value>) -> impl IntoResponse {
        request["client_id"] = json!("interop-client");
        request["client_id_issued_at"] = json!(aop::clock::system_unix_ms() / 1000);
        (StatusCode::CREATED, axum::Json(request))
    }

    async fn authorize(
        State(s): State<TinyAs>,
        Query(query): Query<HashMap<String, String>>,
    ) -> impl IntoResponse {
        let field = |key: &str| query.get(key).cloned().unwrap_or_default();
        if field("code_challenge_method") != "S256" || field("code_challenge").is_empty() {
            return (StatusCode::BAD_REQUEST, "PKCE S256 required").into_response();
        }
        let code = format!("code-{}", s.0.codes.lock().unwrap().len() + 1);
        s.0.codes
            .lock()
            .unwrap()
            .insert(code.clone(), (field("code_challenge"), field("resource")));
        let location = format!(
            "{}?code={code}&state={}",
            field("redirect_uri"),
            url::form_urlencoded::byte_serialize(field("state").as_bytes()).collect::<String>()
        );
        (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
    }

    async fn token(
        State(s): State<TinyAs>,
        Form(form): Form<HashMap<String, String>>,
    ) -> impl IntoResponse {
        let field = |key: &str| form.get(key).cloned().unwrap_or_default();
        let Some((challenge, resource)) = s.0.codes.lock().unwrap().remove(&field("code")) else {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid_grant"})),
            )
                .into_response();
        };
        let verified =
            URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(field("code_verifier").as_bytes()));
        if verified != challenge || resource.is_empty() {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid_grant"})),
            )
                .into_response();
        }
        let now = aop::clock::system_unix_ms() / 1000;
        let claims = json!({"iss": s.0.issuer, "aud": resource, "sub": "alice", "exp": now + 600,
                            "iat": now, "scope": "agents:read agents:call"});
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("as-1".into());
        let access = jsonwebtoken::encode(&header, &claims, &s.0.key).unwrap();
        s.0.issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        axum::Json(
            json!({"access_token": access, "token_type": "Bearer", "expires_in": 600,
                          "scope": "agents:read agents:call"}),
        )
        .into_response()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop stage: needs AOP_INTEROP_MCP_PYTHON (a Python with mcp==2.3.0)"]
async fn the_official_mcp_python_sdk_gets_its_token_through_the_oauth_flow() {
    let python = python(MCP_PYTHON);
    let authorization_server = tiny_as::start().await;
    let issuer = authorization_server.issuer().to_string();
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_auth_gateway(
        dir.path(),
        &issuer,
        &format!(
            "[jwt]\nissuer = \"{issuer}\"\njwks_url = \"{issuer}/jwks.json\"\nalgorithms = [\"ES256\"]\nleeway_s = 5\n"
        ),
    )
    .await;
    run_auth_client(&python, &gateway, &["--oauth"], dir.path()).await;
    assert_eq!(
        authorization_server.issued(),
        1,
        "one token, issued by the flow"
    );
    gateway.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop stage: needs AOP_INTEROP_SWARMS_PYTHON (a Python with swarms==14.0.2, mcp<2)"]
async fn the_swarms_style_client_works_against_a_real_swarms_aop_server() {
    // The control: the client below passes against the server it was written for.
    let python = python(SWARMS_PYTHON);
    let swarms = SwarmsServer::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let output = run_python(
        &python,
        &client_script("swarms_aop_client.py"),
        &[
            "--url",
            &swarms.url(),
            "--query",
            "echo",
            "--task",
            "hello from a swarms client",
            // The queue tools' walk too, without submit_task (swarms has none).
            "--queue-agent",
            "echo-agent",
        ],
        dir.path(),
    )
    .await;
    let log = transcript(&output);
    assert!(
        output.status.success(),
        "{log}\n--- server\n{}",
        swarms.log_text()
    );
    let summary = &json_lines(&output, "SWARMS-CLIENT ")[0];
    assert_eq!(summary["called"], "echo-agent", "{log}");
    assert_eq!(summary["queue checks"], true, "{log}");
    assert_eq!(
        summary["answer by tool_name"]["result"], "echo: hello from a swarms client",
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop stage: needs AOP_INTEROP_SWARMS_PYTHON (a Python with swarms==14.0.2, mcp<2)"]
async fn a_client_written_for_swarms_aop_works_against_the_gateway() {
    let python = python(SWARMS_PYTHON);
    let (echo, echo_server) = agent(AgentKind::Echo, "echo").await;
    let (_analyst, analyst_server) = agent(AgentKind::Analyst, "analyst").await;
    let (sleeper, sleeper_server) = agent(AgentKind::Sleeper, "sleeper").await;
    let agents = format!(
        r#"
[[agent]]
name = "sleeper"
description = "Waits ms milliseconds."
input_schema = {{ type = "object", properties = {{ task = {{ type = "string" }}, ms = {{ type = "integer" }} }}, required = ["task"] }}
endpoints = [{{ url = "{}", tool = "sleeper" }}]

[[agent]]
name = "echo"
description = "Echoes the task back unchanged."
tags = ["echo", "test"]
capabilities = ["echo", "text"]
endpoints = [{{ url = "{}", tool = "echo" }}]

[[agent]]
name = "analyst"
description = "Financial analyst: ratios, forecasts, filings."
tags = ["finance", "analysis"]
capabilities = ["forecast", "summarize"]
endpoints = [{{ url = "{}", tool = "analyst" }}]
"#,
        sleeper_server.url(),
        echo_server.url(),
        analyst_server.url()
    );
    let node = start_node(&zone_text(&agents)).await;
    let gateway = start_gateway(&node).await;
    let dir = tempfile::tempdir().unwrap();
    let task = "hello from a swarms client";
    let output = run_python(
        &python,
        &client_script("swarms_aop_client.py"),
        &[
            "--url",
            &gateway.url().unwrap(),
            "--query",
            "echo",
            "--task",
            task,
            // The queue tools through swarms' MCPManager, tasks queued with submit_task.
            "--queue-agent",
            "sleeper.finance.acme",
            "--submit",
        ],
        dir.path(),
    )
    .await;
    let log = transcript(&output);
    assert!(output.status.success(), "{log}");
    let summary = &json_lines(&output, "SWARMS-CLIENT ")[0];
    assert_eq!(summary["server"], "aop-gateway", "{log}");
    assert_eq!(
        summary["agent_names"],
        json!([
            "analyst.finance.acme",
            "echo.finance.acme",
            "sleeper.finance.acme"
        ]),
        "{log}"
    );
    assert_eq!(summary["queue checks"], true, "{log}");
    assert_eq!(
        summary["final queue stats"]["stats"]["completed_tasks"], 2,
        "{log}"
    );
    // Of four tasks, one cancelled and one cleared while pending: two reached the agent.
    assert_eq!(sleeper.calls(), 2, "{log}");
    assert_eq!(summary["called"], "echo_finance_acme", "{log}");
    for how in ["answer by tool_name", "answer by agent_name"] {
        assert_eq!(
            summary[how],
            json!({"result": task, "success": true, "error": null}),
            "{how}: {log}"
        );
    }
    // By tool name and by agent name by hand, then once through swarms' MCPManager.
    assert_eq!(echo.calls(), 3, "{log}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop stage: needs AOP_INTEROP_SWARMS_PYTHON (a Python with swarms==14.0.2, mcp<2)"]
async fn the_gateway_calls_the_agents_of_a_real_swarms_aop_server() {
    let swarms = SwarmsServer::start(&["--failer", "--sleep", "0.3"]).await;
    let url = swarms.url();
    let agents = format!(
        r#"
[[agent]]
name = "echo"
description = "A swarms agent: echoes the task, prefixed with 'echo: '."
tags = ["echo", "swarms"]
timeout_ms = 30000
endpoints = [{{ url = "{url}", tool = "echo-agent" }}]

[[agent]]
name = "sleeper"
description = "A swarms agent: sleeps 0.3 s, then returns the task."
timeout_ms = 30000
endpoints = [{{ url = "{url}", tool = "sleeper" }}]

[[agent]]
name = "failer"
description = "A swarms agent whose run() always raises."
timeout_ms = 30000
endpoints = [{{ url = "{url}", tool = "failer" }}]
"#
    );
    let node = start_node(&zone_text(&agents)).await;
    let gateway = start_gateway(&node).await;
    let client = connect(&gateway).await;
    let server_log = || swarms.log_text();

    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for tool in [
        "echo_finance_acme",
        "sleeper_finance_acme",
        "failer_finance_acme",
    ] {
        assert!(names.contains(&tool), "{tool} missing from {names:?}");
    }

    // The agent's tool: the gateway's AOP shape, the swarms answer unwrapped into it.
    let result = call(
        &client,
        "echo_finance_acme",
        json!({"task": "hello swarms"}),
    )
    .await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{}\n{}",
        text(&result),
        server_log()
    );
    assert_eq!(structured(&result)["success"], json!(true));
    assert_eq!(structured(&result)["error"], Value::Null);
    assert_eq!(aop_result(&result), "echo: hello swarms");
    let from_text: Value = serde_json::from_str(&text(&result)).expect("a JSON text block");
    assert_eq!(&from_text, structured(&result));

    // By FQDN, and through call_agent (the agent's content, plus the endpoint that answered).
    let result = call(&client, "echo.finance.acme", json!({"task": "by name"})).await;
    assert_eq!(aop_result(&result), "echo: by name");
    let result = call(
        &client,
        "call_agent",
        json!({"name": "echo.finance.acme", "arguments": {"task": "via call_agent"}}),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    // The agent's own content comes through as it was: swarms' dict as JSON text.
    let inner: Value = serde_json::from_str(&text(&result)).expect("the swarms dict as text");
    assert_eq!(inner["result"], "echo: via call_agent");
    assert!(inner["task_id"].is_string(), "swarms' queue mode: {inner}");
    assert_eq!(structured(&result)["result"], json!("echo: via call_agent"));
    assert_eq!(structured(&result)["served_by"], json!(url));
    assert_eq!(structured(&result)["success"], json!(true));

    // Swarms runs calls one at a time: concurrent calls queue there, and all come back.
    let started = Instant::now();
    let calls = (0..3).map(|i| {
        let client = &client;
        async move {
            call(
                client,
                "sleeper_finance_acme",
                json!({"task": format!("nap {i}")}),
            )
            .await
        }
    });
    let results = futures::future::join_all(calls).await;
    for (i, result) in results.iter().enumerate() {
        assert_ne!(result.is_error, Some(true), "{}", text(result));
        assert_eq!(aop_result(result), format!("slept 0.3s: nap {i}"));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "three 0.3 s calls, served one at a time, took {:?}",
        started.elapsed()
    );

    // A swarms agent that raises: swarms answers isError false with {"success": false, ...}
    // (after its own 3 retries, about 3 s); the gateway reads the AOP dict and reports the
    // failure as one: isError, success false, swarms' error.
    let result = call(&client, "failer_finance_acme", json!({"task": "boom"})).await;
    let outer = structured(&result);
    assert_eq!(result.is_error, Some(true), "{outer}");
    assert_eq!(outer["success"], json!(false), "{outer}");
    assert_eq!(outer["error"], json!("stub failure: boom"), "{outer}");

    // Bad arguments stop at the gateway, naming the field.
    let result = call(&client, "echo_finance_acme", json!({"task": 42})).await;
    assert_eq!(result.is_error, Some(true), "{}", text(&result));
    assert!(text(&result).contains("`task`"), "{}", text(&result));

    // Discovery through the gateway sees the swarms agents as records of our zone.
    let found = call(&client, "search_agents", json!({"query": "swarms"})).await;
    let matching: Vec<&str> = structured(&found)["matching_agents"]
        .as_array()
        .expect("matching_agents")
        .iter()
        .filter_map(|a| a["agent_name"].as_str())
        .collect();
    assert!(matching.contains(&"echo.finance.acme"), "{matching:?}");

    drop(client);
    gateway.shutdown().await;
}
