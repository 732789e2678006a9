//! HTTPS on the HTTP doors (docs/protocol.md §8.1): the MCP gateway and the admin endpoint
//! with `--tls-cert`/`--tls-key`, and the gateway calling `https://` agents verified against
//! `--ca`; over real TLS on loopback, with certificates the test makes through the project's
//! own issuing code (`support::pki`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aop::agent::{AgentKind, BuiltinAgent};
use aop::gateway::{self, GatewayConfig, GatewayHandle};
use aop::mcp::http::{HttpGuards, McpHttpServer};
use aop::name::Name;
use aop::node::NodeHandle;
use aop::tls::{ClientTls, ServerTls};
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

use crate::support::mcp::{Client, call};
use crate::support::pki::Pki;
use crate::support::process::NodeProcess;
use crate::support::{AOP, bind, eventually, free_addr, free_listener, zone};

const DEADLINE: Duration = Duration::from_secs(30);

/// A built-in echo agent answering as `tool`, over TLS when `tls` is given.
async fn serve_agent(tool: &str, tls: Option<Arc<ServerTls>>) -> McpHttpServer {
    let agent = BuiltinAgent::new(AgentKind::Echo, tool);
    let guards = HttpGuards {
        tls,
        ..HttpGuards::default()
    };
    aop::mcp::http::serve(free_listener().await, guards, move || agent.clone())
        .expect("serve the agent")
}

/// A node serving finance.acme, whose agents are `(name, endpoint URL)`.
fn finance_node(agents: &[(&str, String)]) -> impl std::future::Future<Output = NodeHandle> {
    let mut text = String::from(
        "[zone]\norigin = \"finance.acme\"\nserial = 1\nttl = 2\nnegative_ttl = 1\n\
         servers = [{ grpc = \"http://127.0.0.1:7102\" }]\n",
    );
    for (name, url) in agents {
        text.push_str(&format!(
            "[[agent]]\nname = \"{name}\"\ndescription = \"The {name} agent.\"\n\
             endpoints = [{{ url = \"{url}\", tool = \"{name}\" }}]\n"
        ));
    }
    async move {
        bind()
            .await
            .serve(Some("finance-node".into()), vec![zone(&text)])
            .expect("node serves")
    }
}

/// A gateway mounting finance.acme through `node`, serving HTTPS with `tls` (if given) and
/// verifying `https://` agents against `agent_tls`.
async fn start_gateway(
    node: &NodeHandle,
    tls: Option<Arc<ServerTls>>,
    agent_tls: Option<Arc<ClientTls>>,
) -> GatewayHandle {
    let mut config = GatewayConfig::new(node.grpc_url());
    config.mounts = vec![Name::parse("finance.acme").unwrap()];
    config.poll_interval = Duration::from_secs(3600);
    config.guards.tls = tls;
    config.agent_tls = agent_tls;
    gateway::start(config, free_listener().await)
        .await
        .expect("start the gateway")
}

/// An rmcp client session over `http` (reqwest with the trust the test chose).
async fn connect(url: &str, http: reqwest::Client) -> Result<Client, String> {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    let transport = StreamableHttpClientTransport::with_client(http, config);
    tokio::time::timeout(DEADLINE, ().serve(transport))
        .await
        .expect("handshake in time")
        .map_err(|error| error.to_string())
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

async fn wait_for_tool(client: &Client, tool: &str) {
    eventually(DEADLINE, "the mounted zone is listed", || async {
        tool_names(client).await.iter().any(|name| name == tool)
    })
    .await;
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|content| content.as_text().map(|text| text.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A reqwest client trusting only the system roots (not the test's CA).
fn system_roots_client() -> reqwest::Client {
    crate::support::http()
}

/// The first TLS failure in an HTTP client's error, in the project's words.
fn tls_reason(error: &reqwest::Error) -> String {
    aop::tls::failure_reason(error, None)
        .unwrap_or_else(|| format!("no TLS failure in: {}", aop::peer::error_chain(error)))
}

/// `--tls-cert`: an MCP client that trusts the CA lists and calls agents at
/// `https://ADDR/mcp`; a plaintext client and a client that does not trust the CA fail, and
/// the gateway keeps serving the next TLS client.
#[tokio::test]
async fn an_mcp_client_lists_and_calls_agents_through_an_https_gateway() {
    let pki = Pki::new();
    let agent = serve_agent("forecaster", None).await;
    let node = finance_node(&[("forecaster", agent.url())]).await;
    let gateway = start_gateway(&node, Some(pki.https("gateway")), None).await;
    let url = gateway.url().unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let client = connect(&url, pki.http_client())
        .await
        .expect("MCP over HTTPS");
    wait_for_tool(&client, "forecaster_finance_acme").await;
    let result = call(
        &client,
        "forecaster_finance_acme",
        json!({"task": "q3 figures"}),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert!(text_of(&result).contains("q3 figures"), "{result:?}");

    // Plaintext against the HTTPS door: no HTTP answer at all.
    let plain = url.replace("https://", "http://");
    let refused = crate::support::http()
        .post(&plain)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a plaintext request was answered: {refused:?}"
    );
    // A client that does not trust the gateway's CA is told why.
    let untrusted = system_roots_client()
        .post(&url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap_err();
    assert!(
        tls_reason(&untrusted).contains("not signed by a CA this client trusts"),
        "{}",
        tls_reason(&untrusted)
    );

    // The DNS-rebinding guard holds over TLS: a Host that is not a loopback name is 403.
    let rebound = pki
        .http_client()
        .post(&url)
        .header("host", "rebind.example")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);

    // The gateway still serves: a new session, and the first one.
    let next = connect(&url, pki.http_client())
        .await
        .expect("next session");
    assert!(
        tool_names(&next)
            .await
            .contains(&"forecaster_finance_acme".to_string())
    );
    let again = call(&client, "forecaster_finance_acme", json!({"task": "again"})).await;
    assert!(text_of(&again).contains("again"), "{again:?}");
    gateway.shutdown().await;
}

/// The gateway calls an `https://` agent whose certificate chains to its `--ca`; an agent
/// whose certificate comes from another CA fails, naming the URL and why.
#[tokio::test]
async fn the_gateway_verifies_https_agents_against_its_ca() {
    let (pki, other) = (Pki::new(), Pki::new());
    let trusted = serve_agent("trusted", Some(pki.https("agent"))).await;
    let rogue = serve_agent("rogue", Some(other.https("rogue"))).await;
    assert!(trusted.url().starts_with("https://"), "{}", trusted.url());
    let node = finance_node(&[("trusted", trusted.url()), ("rogue", rogue.url())]).await;
    // The gateway's --ca: a file of its own, so the test can change it.
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::copy(pki.ca(), &ca_file).unwrap();
    let agent_tls = ClientTls::load(aop::tls::ClientTlsFiles {
        ca: Some(ca_file.clone()),
        ..aop::tls::ClientTlsFiles::default()
    })
    .unwrap();
    let gateway = start_gateway(&node, None, Some(Arc::clone(&agent_tls))).await;
    let client = connect(&gateway.url().unwrap(), crate::support::http())
        .await
        .expect("MCP session");
    wait_for_tool(&client, "rogue_finance_acme").await;

    let result = call(&client, "trusted_finance_acme", json!({"task": "over tls"})).await;
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert!(text_of(&result).contains("over tls"), "{result:?}");

    let failed = call(&client, "rogue_finance_acme", json!({"task": "x"})).await;
    assert_eq!(failed.is_error, Some(true), "{failed:?}");
    let text = text_of(&failed);
    assert!(text.contains(&rogue.url()), "the URL is named: {text}");
    assert!(
        text.contains("certificate does not verify: it is not signed by a CA this client trusts"),
        "the reason is named: {text}"
    );
    assert!(
        !text.contains("error sending request"),
        "not the HTTP client's words: {text}"
    );
    assert!(
        text.contains(ca_file.to_str().unwrap()),
        "the CA in use is named: {text}"
    );

    // Both CAs in the --ca file, then the reload SIGHUP does: the next session verifies.
    let mut both = std::fs::read_to_string(pki.ca()).unwrap();
    both.push_str(&std::fs::read_to_string(other.ca()).unwrap());
    std::fs::write(&ca_file, both).unwrap();
    agent_tls.reload().expect("the new CA file loads");
    let result = call(
        &client,
        "rogue_finance_acme",
        json!({"task": "trusted now"}),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert!(text_of(&result).contains("trusted now"), "{result:?}");
    gateway.shutdown().await;
}

/// Copies `pki`'s certificate for `san` to `dir/NAME.pem` and `dir/NAME.key`.
fn write_cert(pki: &Pki, dir: &Path, name: &str, san: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = pki.issue(san, &[san]);
    let (to_cert, to_key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::copy(cert, &to_cert).unwrap();
    std::fs::copy(key, &to_key).unwrap();
    (to_cert, to_key)
}

/// GETs `url` with `http`: the status and body, or the error in words.
async fn get(http: &reqwest::Client, url: &str) -> Result<(u16, String), reqwest::Error> {
    let response = tokio::time::timeout(DEADLINE, http.get(url).send())
        .await
        .expect("an answer in time")?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.unwrap_or_default()))
}

/// `aop node --tls-cert --admin`: the admin endpoint speaks HTTPS with the node's
/// certificate (its URL says so), answers /healthz and /metrics to a client of the CA and
/// nothing to a plaintext one; SIGHUP swaps its certificate for new connections.
#[tokio::test]
async fn the_nodes_admin_endpoint_speaks_https_and_reloads_on_sighup() {
    let (first, second) = (Pki::new(), Pki::new());
    let dir = tempfile::tempdir().unwrap();
    let zone_file = dir.path().join("acme.toml");
    let grpc = free_addr().to_string();
    let admin = free_addr().to_string();
    std::fs::write(
        &zone_file,
        format!(
            "[zone]\norigin = \"acme\"\nserial = 1\nservers = [{{ grpc = \"https://{grpc}\" }}]\n"
        ),
    )
    .unwrap();
    let (cert, key) = write_cert(&first, dir.path(), "node", "first.test");
    let mut node = NodeProcess::spawn_command(&[
        AOP,
        "node",
        "--zone",
        zone_file.to_str().unwrap(),
        "--grpc",
        &grpc,
        "--admin",
        &admin,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    node.ready().await;
    assert!(
        node.stderr()
            .contains(&format!("admin=\"https://{admin}/\"")),
        "the ready line names the HTTPS admin URL: {}",
        node.stderr()
    );
    let base = format!("https://{admin}");
    let trusts_first = first.http_client();
    let (status, body) = get(&trusts_first, &format!("{base}/healthz"))
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, metrics) = get(&trusts_first, &format!("{base}/metrics"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("# TYPE"), "{metrics}");
    // The status page's script reads /status.json from the same origin.
    let (status, _) = get(&trusts_first, &format!("{base}/status.json"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let plain = get(&crate::support::http(), &format!("http://{admin}/healthz")).await;
    assert!(plain.is_err(), "plaintext was answered: {plain:?}");

    // Another CA's certificate in the same files, then SIGHUP: new connections get it.
    write_cert(&second, dir.path(), "node", "second.test");
    node.signal(libc::SIGHUP);
    node.line_containing("TLS certificates and keys re-read")
        .await;
    let trusts_second = second.http_client();
    eventually(
        DEADLINE,
        "the admin endpoint presents the new certificate",
        || {
            let (http, url) = (trusts_second.clone(), format!("{base}/healthz"));
            async move {
                get(&http, &url)
                    .await
                    .is_ok_and(|(status, _)| status == 200)
            }
        },
    )
    .await;
    // A new client that trusts only the first CA now fails in the handshake.
    let error = get(&first.http_client(), &format!("{base}/healthz"))
        .await
        .unwrap_err();
    assert!(
        tls_reason(&error).contains("certificate does not verify"),
        "{}",
        tls_reason(&error)
    );
}

/// The gateway's HTTPS door and its admin endpoint share the certificate, and the reload
/// the CLI does on SIGHUP ([`ServerTls::reload`]) reaches both: new connections see the new
/// certificate while a session opened before keeps calling.
#[tokio::test]
async fn the_gateways_certificate_reloads_for_new_connections_only() {
    let (first, second) = (Pki::new(), Pki::new());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_cert(&first, dir.path(), "gateway", "localhost");
    let tls = ServerTls::https(aop::tls::ServerTlsFiles {
        cert,
        key,
        client_ca: None,
    })
    .unwrap();
    let agent = serve_agent("forecaster", None).await;
    let node = finance_node(&[("forecaster", agent.url())]).await;
    let gateway = start_gateway(&node, Some(Arc::clone(&tls)), None).await;
    let admin = aop::admin::AdminListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .tls(Some(Arc::clone(&tls)));
    let admin_url = admin.url();
    assert!(admin_url.starts_with("https://"), "{admin_url}");
    let stop_admin = tokio_util::sync::CancellationToken::new();
    let admin_task = admin.serve_gateway(
        aop::admin::gateway::GatewayView::of(&gateway),
        stop_admin.clone(),
    );
    let url = gateway.url().unwrap();
    let open = connect(&url, first.http_client())
        .await
        .expect("MCP over HTTPS");
    wait_for_tool(&open, "forecaster_finance_acme").await;
    let (status, _) = get(&first.http_client(), &format!("{admin_url}healthz"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    // The admin endpoint's Host check holds over TLS too.
    let rebound = first
        .http_client()
        .get(format!("{admin_url}status.json"))
        .header("host", "rebind.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);

    write_cert(&second, dir.path(), "gateway", "localhost");
    tls.reload().expect("the new files load");
    // New connections: the second CA's certificate, on both doors.
    let next = connect(&url, second.http_client())
        .await
        .expect("trusting the new CA");
    assert!(
        tool_names(&next)
            .await
            .contains(&"forecaster_finance_acme".to_string())
    );
    let (status, _) = get(&second.http_client(), &format!("{admin_url}healthz"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        connect(&url, first.http_client()).await.is_err(),
        "a new client trusting only the old CA still connected"
    );
    // The session opened before the reload keeps its connection and calls on.
    let result = call(
        &open,
        "forecaster_finance_acme",
        json!({"task": "still here"}),
    )
    .await;
    assert!(text_of(&result).contains("still here"), "{result:?}");

    // A broken file: the reload fails and the certificate in force stays.
    std::fs::write(dir.path().join("gateway.pem"), "not a certificate").unwrap();
    assert!(tls.reload().is_err());
    let (status, _) = get(&second.http_client(), &format!("{admin_url}healthz"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    stop_admin.cancel();
    let _ = admin_task.await;
    gateway.shutdown().await;
}

/// `aop gateway --tls-cert --tls-key --admin`: both doors speak HTTPS with the certificate,
/// and SIGHUP makes the process re-read it (the CLI's reload), which new connections see.
#[tokio::test]
async fn aop_gateway_serves_https_and_rereads_its_certificate_on_sighup() {
    let (first, second) = (Pki::new(), Pki::new());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_cert(&first, dir.path(), "gateway", "localhost");
    let agent = serve_agent("forecaster", None).await;
    let node = finance_node(&[("forecaster", agent.url())]).await;
    let (listen, admin) = (free_addr().to_string(), free_addr().to_string());
    let mut gateway = NodeProcess::spawn_command(&[
        AOP,
        "gateway",
        "--resolver",
        &node.grpc_url(),
        "--mount",
        "finance.acme",
        "--listen",
        &listen,
        "--admin",
        &admin,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let line = gateway.line_containing("MCP gateway listening").await;
    assert!(line.contains(&format!("https://{listen}/mcp")), "{line}");
    let url = format!("https://{listen}/mcp");
    let admin_healthz = format!("https://{admin}/healthz");
    eventually(DEADLINE, "the admin endpoint answers over HTTPS", || {
        let (http, url) = (first.http_client(), admin_healthz.clone());
        async move {
            get(&http, &url)
                .await
                .is_ok_and(|(status, _)| status == 200)
        }
    })
    .await;
    let client = connect(&url, first.http_client())
        .await
        .expect("MCP over HTTPS");
    wait_for_tool(&client, "forecaster_finance_acme").await;

    write_cert(&second, dir.path(), "gateway", "localhost");
    gateway.signal(libc::SIGHUP);
    gateway
        .line_containing("TLS certificates and keys re-read")
        .await;
    let next = connect(&url, second.http_client())
        .await
        .expect("a new session trusting the new CA");
    assert!(
        tool_names(&next)
            .await
            .contains(&"forecaster_finance_acme".to_string())
    );
    let (status, _) = get(&second.http_client(), &admin_healthz).await.unwrap();
    assert_eq!(status, 200);
    assert!(get(&first.http_client(), &admin_healthz).await.is_err());
    // A broken file is refused and the certificate in force stays.
    std::fs::write(dir.path().join("gateway.key"), "not a key").unwrap();
    gateway.signal(libc::SIGHUP);
    gateway.line_containing("TLS files not reloaded").await;
    let (status, _) = get(&second.http_client(), &admin_healthz).await.unwrap();
    assert_eq!(status, 200);
}
