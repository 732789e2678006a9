//! The gateway as an OAuth 2.1 resource server (docs/protocol.md §8.2), through real HTTP
//! (reqwest) and a real MCP client (rmcp with an `Authorization` header): a node on
//! 127.0.0.1:0 serving two zones of built-in agents, a gateway in this process with an auth
//! file written into a temporary directory, and signing keys generated here (ECDSA P-256
//! with rcgen; nothing private is committed).
//!
//! Callers: `alice` (a static token) sees finance.acme and may call only its analyst;
//! `bob` (a JWT) sees and calls everything; `carol` (a static token) sees everything and
//! calls nothing.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aop::agent::{AgentKind, BuiltinAgent};
use aop::gateway::auth::config::AuthConfig;
use aop::gateway::auth::{Authorizer, policy};
use aop::gateway::{self, GatewayConfig, GatewayHandle};
use aop::mcp::http::{HttpGuards, McpHttpServer};
use aop::name::Name;
use aop::node::NodeHandle;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::mcp::{Client, call};
use crate::support::{bind, eventually, free_listener, zone};

const DEADLINE: Duration = Duration::from_secs(30);
const ISSUER: &str = "https://idp.test";
const ALICE_TOKEN: &str = "alice-static-token-0123456789";
const CAROL_TOKEN: &str = "carol-static-token-0123456789";
const UPSTREAM_TOKEN: &str = "upstream-secret-for-the-analyst";

/// An ES256 signing key and its public JWK.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    fn generate(kid: &str) -> SigningKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = pair.public_key_raw();
        assert_eq!(raw.len(), 65, "an uncompressed P-256 point");
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        });
        SigningKey {
            kid: kid.to_string(),
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk,
        }
    }

    /// A token with these claims over the defaults (`iss`, `aud`, `sub`, `exp` in an hour).
    fn token(&self, audience: &str, claims: Value) -> String {
        let now = aop::clock::system_unix_ms() / 1000;
        let mut all =
            json!({"iss": ISSUER, "aud": audience, "sub": "bob", "exp": now + 3600, "iat": now});
        for (key, value) in claims.as_object().unwrap() {
            all[key] = value.clone();
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &all, &self.encoding).unwrap()
    }
}

fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn zone_text(origin: &str, agents: &str) -> String {
    format!(
        r#"
[zone]
origin = "{origin}"
serial = 1
ttl = 2
negative_ttl = 1
servers = [{{ grpc = "http://127.0.0.1:7102" }}]
{agents}
"#
    )
}

/// A built-in agent whose MCP door requires `bearer` (when given).
fn serve_agent(
    kind: AgentKind,
    tool: &str,
    bearer: Option<&str>,
    listener: TcpListener,
) -> McpHttpServer {
    let agent = BuiltinAgent::new(kind, tool);
    let guards = HttpGuards {
        bearer_token: bearer.map(Arc::from),
        ..HttpGuards::default()
    };
    aop::mcp::http::serve(listener, guards, move || agent.clone()).expect("serve the agent")
}

struct Env {
    _dir: tempfile::TempDir,
    _node: NodeHandle,
    _agents: Vec<McpHttpServer>,
    gateway: GatewayHandle,
    /// `[resource] url`: the gateway's own /mcp URL.
    resource: String,
    key: SigningKey,
}

impl Env {
    fn url(&self) -> String {
        self.gateway.url().unwrap()
    }

    fn bob(&self) -> String {
        self.key.token(&self.resource, json!({}))
    }

    fn base(&self) -> String {
        self.url().trim_end_matches("/mcp").to_string()
    }

    async fn shutdown(self) {
        self.gateway.shutdown().await;
    }
}

/// How the auth file gets the issuer's keys.
enum Keys {
    File,
    Url { url: String },
}

/// Starts agents, the node and a gateway whose auth file has the callers above plus
/// `extra` (a `[rate_limit]` section, say).
async fn start(keys: Keys, extra: &str) -> Env {
    start_on(keys, extra, aop::clock::system()).await
}

/// [`start`], the authorizer reading time from `clock`.
async fn start_on(keys: Keys, extra: &str, clock: Arc<dyn aop::clock::Clock>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let analyst_listener = free_listener().await;
    let analyst_url = format!("http://{}/mcp", analyst_listener.local_addr().unwrap());
    let analyst = serve_agent(
        AgentKind::Analyst,
        "analyst",
        Some(UPSTREAM_TOKEN),
        analyst_listener,
    );
    let forecaster = serve_agent(AgentKind::Echo, "forecaster", None, free_listener().await);
    let recruiter = serve_agent(AgentKind::Echo, "recruiter", None, free_listener().await);
    let finance = zone_text(
        "finance.acme",
        &format!(
            r#"
[[agent]]
name = "analyst"
description = "Statistics of the numbers in a text."
capabilities = ["statistics"]
endpoints = [{{ url = "{analyst_url}", tool = "analyst" }}]

[[agent]]
name = "forecaster"
description = "Forecasts quarterly figures."
capabilities = ["forecast"]
endpoints = [{{ url = "{}", tool = "forecaster" }}]
"#,
            forecaster.url()
        ),
    );
    let hr = zone_text(
        "hr.acme",
        &format!(
            r#"
[[agent]]
name = "recruiter"
description = "Finds candidates for open positions."
endpoints = [{{ url = "{}", tool = "recruiter" }}]
"#,
            recruiter.url()
        ),
    );
    let node = bind()
        .await
        .serve(
            Some("acme-node".to_string()),
            vec![zone(&finance), zone(&hr)],
        )
        .expect("node serves");
    let listener = free_listener().await;
    let resource = format!("http://{}/mcp", listener.local_addr().unwrap());
    let key = SigningKey::generate("key-1");
    let jwks_line = match &keys {
        Keys::File => {
            std::fs::write(dir.path().join("jwks.json"), jwks(&[&key])).unwrap();
            "jwks_file = \"jwks.json\"".to_string()
        }
        Keys::Url { url } => format!("jwks_url = \"{url}\"\njwks_refetch_floor_s = 0"),
    };
    std::fs::write(dir.path().join("alice.token"), format!("{ALICE_TOKEN}\n")).unwrap();
    std::fs::write(dir.path().join("carol.token"), CAROL_TOKEN).unwrap();
    std::fs::write(dir.path().join("analyst.token"), UPSTREAM_TOKEN).unwrap();
    let text = format!(
        r#"
[resource]
url = "{resource}"
authorization_servers = ["{ISSUER}"]
scopes_supported = ["agents:read", "agents:call"]

[jwt]
issuer = "{ISSUER}"
{jwks_line}
algorithms = ["ES256"]
leeway_s = 5

[[static_token]]
token_file = "alice.token"
subject = "alice"
scopes = ["agents:read", "agents:call"]

[[static_token]]
token_file = "carol.token"
subject = "carol"

[[policy]]
subject = "alice"
see = ["finance.acme"]
call = ["analyst.finance.acme"]

[[policy]]
subject = "bob"
see = ["*"]
call = ["*"]

[[policy]]
subject = "carol"
see = ["*"]
call = []

[[upstream_credential]]
url_prefix = "{analyst_url}"
bearer_file = "analyst.token"

{extra}
"#
    );
    let path = dir.path().join("auth.toml");
    std::fs::write(&path, text).unwrap();
    let config = AuthConfig::load(&path).expect("a valid auth file");
    let authorizer = Authorizer::new(config, clock)
        .await
        .expect("the authorizer starts");
    let mut gateway_config = GatewayConfig::new(node.grpc_url());
    gateway_config.mounts = vec![
        Name::parse("finance.acme").unwrap(),
        Name::parse("hr.acme").unwrap(),
    ];
    gateway_config.poll_interval = Duration::from_secs(3600);
    gateway_config.auth = Some(authorizer);
    let gateway = gateway::start(gateway_config, listener)
        .await
        .expect("start the gateway");
    Env {
        _dir: dir,
        _node: node,
        _agents: vec![analyst, forecaster, recruiter],
        gateway,
        resource,
        key,
    }
}

async fn connect(url: &str, token: &str) -> Client {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(token);
    let transport = StreamableHttpClientTransport::with_client(crate::support::http(), config);
    tokio::time::timeout(DEADLINE, ().serve(transport))
        .await
        .expect("handshake in time")
        .expect("MCP handshake")
}

fn structured(result: &CallToolResult) -> Value {
    result
        .structured_content
        .clone()
        .expect("structuredContent")
}

async fn tool_names(client: &Client) -> Vec<String> {
    client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|tool| tool.name.to_string())
        .collect()
}

/// POSTs one JSON-RPC message to /mcp with `token` (none: no header).
async fn post(url: &str, token: Option<&str>, message: Value) -> reqwest::Response {
    let mut request = crate::support::http()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .json(&message);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    tokio::time::timeout(DEADLINE, request.send())
        .await
        .expect("answer in time")
        .expect("an HTTP answer")
}

fn tools_call(tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
}

fn www_authenticate(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn wait_for_tools(client: &Client, tool: &str) {
    eventually(DEADLINE, "the mounted zones are listed", || async {
        tool_names(client).await.iter().any(|name| name == tool)
    })
    .await;
}

#[tokio::test]
async fn metadata_documents_and_every_kind_of_401() {
    let env = start(Keys::File, "").await;
    let http = crate::support::http();
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let answer = http
            .get(format!("{}{path}", env.base()))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        let document: Value = answer.json().await.unwrap();
        assert_eq!(document["resource"], json!(env.resource));
        assert_eq!(document["authorization_servers"], json!([ISSUER]));
        assert_eq!(
            document["scopes_supported"],
            json!(["agents:read", "agents:call"])
        );
        assert_eq!(document["bearer_methods_supported"], json!(["header"]));
    }

    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let metadata_url = format!("{}/.well-known/oauth-protected-resource/mcp", env.base());

    let missing = post(&env.url(), None, initialize.clone()).await;
    assert_eq!(missing.status(), 401);
    assert_eq!(
        www_authenticate(&missing),
        format!("Bearer resource_metadata=\"{metadata_url}\"")
    );

    let other = SigningKey::generate("key-1");
    let now = aop::clock::system_unix_ms() / 1000;
    let cases = [
        ("bad signature", other.token(&env.resource, json!({}))),
        (
            "expired",
            env.key.token(&env.resource, json!({"exp": now - 3600})),
        ),
        (
            "wrong issuer",
            env.key
                .token(&env.resource, json!({"iss": "https://evil.test"})),
        ),
        (
            "wrong audience",
            env.key.token("https://other.test/mcp", json!({})),
        ),
        (
            "not yet valid",
            env.key.token(&env.resource, json!({"nbf": now + 3600})),
        ),
        (
            "unknown static token",
            "not-a-token-of-this-gateway".to_string(),
        ),
    ];
    for (what, token) in cases {
        let answer = post(&env.url(), Some(&token), initialize.clone()).await;
        assert_eq!(answer.status(), 401, "{what}");
        let challenge = www_authenticate(&answer);
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert!(
            challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
            "{what}: {challenge}"
        );
        let body = answer.text().await.unwrap();
        assert!(!body.contains(&token), "{what}: the token is echoed");
    }

    // A token in the query string is refused, even a good one.
    let answer = http
        .post(format!("{}?access_token={}", env.url(), env.bob()))
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert!(www_authenticate(&answer).contains("error=\"invalid_request\""));

    // A valid JWT and a valid static token get through.
    for token in [env.bob(), ALICE_TOKEN.to_string()] {
        let answer = post(&env.url(), Some(&token), initialize.clone()).await;
        assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    }
    env.shutdown().await;
}

#[tokio::test]
async fn a_caller_sees_only_what_its_policy_allows_and_the_rest_does_not_exist() {
    let env = start(Keys::File, "").await;
    let bob = connect(&env.url(), &env.bob()).await;
    wait_for_tools(&bob, "recruiter_hr_acme").await;
    let all = tool_names(&bob).await;
    assert!(all.contains(&"analyst_finance_acme".to_string()));

    let alice = connect(&env.url(), ALICE_TOKEN).await;
    let seen = tool_names(&alice).await;
    assert!(
        seen.contains(&"analyst_finance_acme".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"forecaster_finance_acme".to_string()),
        "{seen:?}"
    );
    assert!(!seen.contains(&"recruiter_hr_acme".to_string()), "{seen:?}");
    assert_eq!(seen.len() + 1, all.len());

    let listed = structured(&call(&alice, "list_agents", json!({})).await);
    assert_eq!(
        listed["agent_names"],
        json!(["analyst.finance.acme", "forecaster.finance.acme"]),
        "{listed}"
    );
    assert_eq!(listed["total_count"], json!(2));
    let discovered = structured(&call(&alice, "discover_agents", json!({})).await);
    assert_eq!(
        discovered["agents"].as_array().unwrap().len(),
        2,
        "{discovered}"
    );
    let roster = structured(&call(&alice, "list_agent_roster", json!({})).await);
    assert_eq!(roster["agents"].as_array().unwrap().len(), 2, "{roster}");
    let info = structured(&call(&alice, "get_server_info", json!({})).await);
    assert_eq!(info["server_info"]["total_agents"], json!(2), "{info}");

    // The recruiter behaves exactly as an agent that does not exist, in every tool.
    // Bob gives the recruiter a queue, so a hidden queue exists too.
    let queued = structured(
        &call(
            &bob,
            "pause_agent_queue",
            json!({"agent_name": "recruiter.hr.acme"}),
        )
        .await,
    );
    assert_eq!(queued["success"], json!(true), "{queued}");
    let pairs: [(&str, Value, Value); 8] = [
        (
            "get_agent_details",
            json!({"agent_name": "recruiter.hr.acme"}),
            json!({"agent_name": "ghost.hr.acme"}),
        ),
        (
            "discover_agents",
            json!({"agent_name": "recruiter_hr_acme"}),
            json!({"agent_name": "ghost_hr_acme"}),
        ),
        (
            "resolve_agent",
            json!({"name": "recruiter.hr.acme"}),
            json!({"name": "ghost.hr.acme"}),
        ),
        (
            "call_agent",
            json!({"name": "recruiter.hr.acme", "arguments": {"task": "x"}}),
            json!({"name": "ghost.hr.acme", "arguments": {"task": "x"}}),
        ),
        (
            "submit_task",
            json!({"agent_name": "recruiter.hr.acme", "arguments": {"task": "x"}}),
            json!({"agent_name": "ghost.hr.acme", "arguments": {"task": "x"}}),
        ),
        (
            "get_queue_stats",
            json!({"agent_name": "recruiter.hr.acme"}),
            json!({"agent_name": "ghost.hr.acme"}),
        ),
        (
            "resume_agent_queue",
            json!({"agent_name": "recruiter.hr.acme"}),
            json!({"agent_name": "ghost.hr.acme"}),
        ),
        (
            "get_task_status",
            json!({"agent_name": "recruiter.hr.acme", "task_id": "t-1"}),
            json!({"agent_name": "ghost.hr.acme", "task_id": "t-1"}),
        ),
    ];
    for (tool, hidden, ghost) in pairs {
        let hidden = structured(&call(&alice, tool, hidden).await);
        let ghost = structured(&call(&alice, tool, ghost).await);
        assert_eq!(hidden["success"], json!(false), "{tool}: {hidden}");
        assert_eq!(
            hidden["error"]
                .as_str()
                .unwrap()
                .replace("recruiter", "ghost"),
            ghost["error"].as_str().unwrap(),
            "{tool}"
        );
    }
    let info = structured(
        &call(
            &alice,
            "get_agents_info",
            json!({"agent_names": ["recruiter.hr.acme", "analyst.finance.acme"]}),
        )
        .await,
    );
    assert_eq!(info["not_found"], json!(["recruiter.hr.acme"]), "{info}");
    let in_hr = structured(&call(&alice, "list_agents", json!({"zone": "hr.acme"})).await);
    assert_eq!(in_hr["success"], json!(false), "{in_hr}");

    // The hidden agent's own tool is an unknown tool, like any name that is not a tool.
    let hidden = alice
        .call_tool(
            CallToolRequestParams::new("recruiter_hr_acme").with_arguments(serde_json::Map::new()),
        )
        .await
        .unwrap_err()
        .to_string();
    let ghost = alice
        .call_tool(
            CallToolRequestParams::new("ghost_hr_acme").with_arguments(serde_json::Map::new()),
        )
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(hidden.replace("recruiter", "ghost"), ghost);

    // Search: only what alice sees.
    let found = structured(
        &call(
            &alice,
            "search_agents",
            json!({"query": "candidates positions forecasts statistics"}),
        )
        .await,
    );
    let names: Vec<&str> = found["matching_agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(!names.is_empty(), "{found}");
    assert!(
        names.iter().all(|name| name.ends_with(".finance.acme")),
        "{found}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn calls_outside_the_call_list_are_403_and_route_task_skips_them() {
    let env = start(Keys::File, "").await;
    let alice = connect(&env.url(), ALICE_TOKEN).await;
    wait_for_tools(&alice, "analyst_finance_acme").await;

    // The forecaster is seen but not callable: 403, through each way of calling it.
    for message in [
        tools_call("forecaster_finance_acme", json!({"task": "q3"})),
        tools_call(
            "call_agent",
            json!({"name": "forecaster.finance.acme", "arguments": {"task": "q3"}}),
        ),
        tools_call(
            "submit_task",
            json!({"agent_name": "forecaster.finance.acme", "arguments": {"task": "q3"}}),
        ),
    ] {
        let answer = post(&env.url(), Some(ALICE_TOKEN), message.clone()).await;
        assert_eq!(answer.status(), 403, "{message}");
        let challenge = www_authenticate(&answer);
        assert!(
            challenge.starts_with("Bearer error=\"insufficient_scope\""),
            "{challenge}"
        );
        assert!(challenge.contains("resource_metadata="), "{challenge}");
    }
    // Through the MCP client it is an error, never a result.
    let refused = alice
        .call_tool(
            CallToolRequestParams::new("forecaster_finance_acme")
                .with_arguments(json!({"task": "q3"}).as_object().unwrap().clone()),
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");

    // The analyst may be called, and the gateway sends it the upstream credential (its door
    // accepts nothing else; the caller's token would be refused).
    let alice = connect(&env.url(), ALICE_TOKEN).await;
    let answer = call(&alice, "analyst_finance_acme", json!({"task": "10 20 30"})).await;
    assert_ne!(answer.is_error, Some(true), "{answer:?}");
    assert!(
        structured(&answer)["result"]
            .as_str()
            .unwrap()
            .contains("mean")
    );

    // route_task: the forecaster ranks first for these words but alice may not call it.
    let routed = structured(
        &call(&alice, "route_task", json!({"task": "forecast quarterly figures: statistics of the numbers 10 20 30", "zone": "finance.acme"})).await,
    );
    assert_eq!(routed["agent"], json!("analyst.finance.acme"), "{routed}");
    assert_eq!(
        routed["tried"][0]["agent"],
        json!("forecaster.finance.acme"),
        "{routed}"
    );
    assert!(
        routed["tried"][0]["error"]
            .as_str()
            .unwrap()
            .contains("call list"),
        "{routed}"
    );

    // carol may call nothing: route_task itself is 403.
    let answer = post(
        &env.url(),
        Some(CAROL_TOKEN),
        tools_call("route_task", json!({"task": "forecast"})),
    )
    .await;
    assert_eq!(answer.status(), 403);
    // Queue control of a seen, uncallable agent is 403 too.
    let answer = post(
        &env.url(),
        Some(CAROL_TOKEN),
        tools_call(
            "pause_agent_queue",
            json!({"agent_name": "analyst.finance.acme"}),
        ),
    )
    .await;
    assert_eq!(answer.status(), 403);
    env.shutdown().await;
}

#[tokio::test]
async fn upstream_credentials_go_only_where_configured_and_keys_are_per_caller() {
    let env = start(Keys::File, "").await;
    let bob = connect(&env.url(), &env.bob()).await;
    wait_for_tools(&bob, "analyst_finance_acme").await;
    // The analyst's door refuses a call without the upstream token: the gateway sent it.
    let answer = call(
        &bob,
        "call_agent",
        json!({"name": "analyst.finance.acme", "arguments": {"task": "1 2 3"}}),
    )
    .await;
    assert_ne!(answer.is_error, Some(true), "{answer:?}");
    // The forecaster's door takes no token: calls to it work with no credential configured.
    let answer = call(&bob, "forecaster_finance_acme", json!({"task": "q4"})).await;
    assert_ne!(answer.is_error, Some(true), "{answer:?}");
    // A direct call to the analyst with the caller's own token is refused by the agent, so
    // a success above means the caller's token was not what it got.
    let direct = post(
        &env._agents[0].url(),
        Some(&env.bob()),
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await;
    assert_eq!(direct.status(), 401);

    // Idempotency keys are per caller: the same key from alice and bob names two tasks.
    let alice = connect(&env.url(), ALICE_TOKEN).await;
    let submit = json!({"agent_name": "analyst.finance.acme", "arguments": {"task": "4 5 6"}, "idempotency_key": "k-1"});
    let first = structured(&call(&alice, "submit_task", submit.clone()).await);
    let again = structured(&call(&alice, "submit_task", submit.clone()).await);
    let other = structured(&call(&bob, "submit_task", submit).await);
    assert_eq!(first["success"], json!(true), "{first}");
    assert_eq!(first["task_id"], again["task_id"]);
    assert_ne!(first["task_id"], other["task_id"], "{other}");
    env.shutdown().await;
}

#[tokio::test]
async fn the_caller_limit_answers_429_with_retry_after() {
    let env = start(
        Keys::File,
        "[rate_limit]\nper_caller = { requests = 3, per_s = 3600 }\n",
    )
    .await;
    let bob = env.bob();
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    for _ in 0..3 {
        assert_ne!(
            post(&env.url(), Some(&bob), ping.clone()).await.status(),
            429
        );
    }
    let over = post(&env.url(), Some(&bob), ping.clone()).await;
    assert_eq!(over.status(), 429);
    let retry: u64 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // One request comes back every 1200 s.
    assert!((1..=1200).contains(&retry), "Retry-After {retry}");
    let body = over.text().await.unwrap();
    assert!(body.contains("3 requests per 3600 s"), "{body}");
    // A new token of the same subject is the same caller.
    let again = env.key.token(&env.resource, json!({"jti": "another"}));
    assert_eq!(
        post(&env.url(), Some(&again), ping.clone()).await.status(),
        429
    );
    // Another caller has its own bucket.
    assert_ne!(
        post(&env.url(), Some(ALICE_TOKEN), ping.clone())
            .await
            .status(),
        429
    );
    env.shutdown().await;
}

#[tokio::test]
async fn the_agent_limit_is_shared_by_callers() {
    let env = start(
        Keys::File,
        "[rate_limit]\nper_agent = { requests = 2, per_s = 3600 }\n",
    )
    .await;
    let message = tools_call(
        "call_agent",
        json!({"name": "analyst.finance.acme", "arguments": {"task": "1"}}),
    );
    assert_ne!(
        post(&env.url(), Some(ALICE_TOKEN), message.clone())
            .await
            .status(),
        429
    );
    assert_ne!(
        post(&env.url(), Some(&env.bob()), message.clone())
            .await
            .status(),
        429
    );
    let over = post(&env.url(), Some(ALICE_TOKEN), message.clone()).await;
    assert_eq!(over.status(), 429);
    assert!(over.headers().contains_key("retry-after"));
    let body = over.text().await.unwrap();
    assert!(
        body.contains("analyst.finance.acme") && body.contains("2 calls per 3600 s"),
        "{body}"
    );
    // Another agent has its own bucket.
    let other = tools_call(
        "call_agent",
        json!({"name": "forecaster.finance.acme", "arguments": {"task": "1"}}),
    );
    assert_ne!(
        post(&env.url(), Some(&env.bob()), other).await.status(),
        429
    );
    env.shutdown().await;
}

/// A JWKS document served over HTTP from memory, counting fetches.
struct JwksServer {
    url: String,
    document: Arc<Mutex<String>>,
    fetches: Arc<std::sync::atomic::AtomicU64>,
}

async fn serve_jwks(initial: String) -> JwksServer {
    let document = Arc::new(Mutex::new(initial));
    let fetches = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let listener = free_listener().await;
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let (doc, count) = (Arc::clone(&document), Arc::clone(&fetches));
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (doc, count) = (Arc::clone(&doc), Arc::clone(&count));
            async move {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let text = doc.lock().unwrap().clone();
                ([("content-type", "application/json")], text)
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    JwksServer {
        url,
        document,
        fetches,
    }
}

#[tokio::test]
async fn keys_from_a_jwks_url_are_refetched_when_the_issuer_rotates() {
    // The server's first document holds key-1, which `start` generates: serve a placeholder
    // key until the env exists, then the real one.
    let placeholder = SigningKey::generate("placeholder");
    let server = serve_jwks(jwks(&[&placeholder])).await;
    let env = start(
        Keys::Url {
            url: server.url.clone(),
        },
        "",
    )
    .await;
    assert_eq!(
        server.fetches.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "fetched at start"
    );
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    // key-1 is not in the fetched set yet: a refetch finds it once it is published.
    *server.document.lock().unwrap() = jwks(&[&env.key]);
    let answer = post(&env.url(), Some(&env.bob()), initialize.clone()).await;
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    assert_eq!(server.fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Rotation: key-2 replaces key-1.
    let rotated = SigningKey::generate("key-2");
    *server.document.lock().unwrap() = jwks(&[&rotated]);
    let token = rotated.token(&env.resource, json!({}));
    let answer = post(&env.url(), Some(&token), initialize.clone()).await;
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    // key-1 is gone now.
    let answer = post(&env.url(), Some(&env.bob()), initialize.clone()).await;
    assert_eq!(answer.status(), 401);
    assert!(www_authenticate(&answer).contains("is not among the issuer's keys"));
    env.shutdown().await;
}

/// Invalid tokens cost a signature check each, so one client address may send only so many:
/// past the limit its tokens that need a check get 429 with `Retry-After` and no check,
/// while tokens verified before and static tokens still pass; the limit refills with time.
#[tokio::test]
async fn invalid_tokens_from_one_address_are_limited_without_locking_out_verified_ones() {
    use aop::gateway::auth::FAILED_CHECKS_PER_ADDRESS;
    let clock = aop::clock::ManualClock::new();
    let env = start_on(Keys::File, "", clock.clone()).await;
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let remembered = env.bob();
    let answer = post(&env.url(), Some(&remembered), initialize.clone()).await;
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    // Signed by another key under the same kid: a signature check that fails.
    let forged = SigningKey::generate("key-1").token(&env.resource, json!({}));
    for _ in 0..FAILED_CHECKS_PER_ADDRESS.requests {
        let answer = post(&env.url(), Some(&forged), initialize.clone()).await;
        assert_eq!(answer.status(), 401);
        assert!(www_authenticate(&answer).contains("signature does not verify"));
    }
    let limited = post(&env.url(), Some(&forged), initialize.clone()).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    let body = limited.text().await.unwrap();
    assert!(body.contains("invalid tokens"), "{body}");
    // A valid token never checked before needs a check: refused the same way.
    let fresh = env.bob();
    assert_eq!(
        post(&env.url(), Some(&fresh), initialize.clone())
            .await
            .status(),
        429
    );
    // What needs no signature check passes.
    let answer = post(&env.url(), Some(&remembered), initialize.clone()).await;
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    let answer = post(&env.url(), Some(ALICE_TOKEN), initialize.clone()).await;
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    // A second later the address may have one token checked again.
    clock.advance(Duration::from_secs(1));
    let answer = post(&env.url(), Some(&fresh), initialize.clone()).await;
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    env.shutdown().await;
}

fn parse_error(dir: &Path, text: &str) -> String {
    let path = dir.join("auth.toml");
    AuthConfig::parse(&path, text).unwrap_err().to_string()
}

#[tokio::test]
async fn auth_file_errors_name_the_file_the_key_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dev.token"), ALICE_TOKEN).unwrap();
    let base = "[resource]\nurl = \"https://gw.example/mcp\"\n[[static_token]]\ntoken_file = \"dev.token\"\nsubject = \"dev\"\n";
    let file = dir.path().join("auth.toml").display().to_string();
    let cases = [
        (format!("{base}colour = 1\n"), "unknown field `colour`"),
        (format!("{base}[rate_limit]\nper_caller = {{ requests = 1, per_s = 1, burst = 2 }}\n"), "unknown field `burst`"),
        (format!("{base}[rate_limit]\nper_caller = {{ requests = 0, per_s = 1 }}\n"), "[rate_limit] per_caller: requests and per_s must be at least 1"),
        (format!("{base}[[policy]]\nsubject = \"a\"\nsee = [\"bad name!\"]\n"), "see \"bad name!\""),
        ("[resource]\nurl = \"https://gw.example/mcp\"\n[[static_token]]\ntoken_file = \"missing.token\"\nsubject = \"dev\"\n".to_string(), "token_file: cannot read"),
        ("[resource]\nurl = \"not a url\"\n[[static_token]]\ntoken_file = \"dev.token\"\nsubject = \"dev\"\n".to_string(), "[resource] url"),
        ("[resource]\nurl = \"https://gw.example/mcp\"\n".to_string(), "no way to accept a caller"),
        (format!("{base}[jwt]\nissuer = \"https://i\"\nalgorithms = [\"ES256\"]\n"), "missing jwks_file or jwks_url"),
        (format!("{base}[jwt]\nissuer = \"https://i\"\njwks_url = \"https://i/k\"\nalgorithms = [\"HS256\"]\n"), "\"HS256\" is not an asymmetric"),
        (format!("{base}[jwt]\nissuer = \"https://i\"\njwks_file = \"dev.token\"\nalgorithms = [\"ES256\"]\n"), "not a JWKS document"),
    ];
    for (text, expected) in cases {
        let error = parse_error(dir.path(), &text);
        assert!(error.starts_with(&file), "{error}");
        assert!(
            error.contains(expected),
            "expected {expected:?} in: {error}"
        );
    }
    // serde's errors carry the place.
    let error = parse_error(dir.path(), &format!("{base}colour = 1\n"));
    assert!(error.contains(&format!("{file}: 6:1:")), "{error}");
    // A good file reads back what it says.
    let good =
        format!("{base}[[policy]]\nsubject = \"*\"\nsee = [\"acme\"]\ncall = [\"writer.acme\"]\n");
    let config = AuthConfig::parse(&dir.path().join("auth.toml"), &good).unwrap();
    let policy = config.policy_of("anyone").unwrap();
    assert!(policy.sees(&Name::parse("a.finance.acme").unwrap()));
    assert_eq!(
        policy.call,
        vec![policy::Pattern::parse("writer.acme").unwrap()]
    );
    assert!(
        !format!("{:?}", config.static_tokens).contains(ALICE_TOKEN),
        "tokens are redacted in Debug"
    );
}

#[test]
fn the_shipped_example_auth_file_loads_once_its_token_exists() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/gateway-auth.toml");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("gateway-auth")).unwrap();
    std::fs::copy(&shipped, dir.path().join("gateway-auth.toml")).unwrap();
    let missing = AuthConfig::load(&dir.path().join("gateway-auth.toml")).unwrap_err();
    assert!(missing.to_string().contains("dev.token"), "{missing}");
    std::fs::write(dir.path().join("gateway-auth/dev.token"), ALICE_TOKEN).unwrap();
    let config =
        AuthConfig::load(&dir.path().join("gateway-auth.toml")).expect("the example loads");
    assert_eq!(config.static_tokens.len(), 1);
    assert!(config.per_caller.is_some() && config.per_agent.is_some());
}

#[test]
fn the_command_refuses_auth_with_stdio_and_names_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.toml");
    std::fs::write(
        &path,
        "[resource]\nurl = \"https://gw.example/mcp\"\nwhat = 1\n",
    )
    .unwrap();
    let out = crate::support::aop()
        .args(["gateway", "--stdio", "--auth"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stdio"));
    let out = crate::support::aop()
        .args(["gateway", "--listen", "127.0.0.1:0", "--auth"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&path.display().to_string()) && stderr.contains("unknown field `what`"),
        "{stderr}"
    );
}
