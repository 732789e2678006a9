//! The MCP gateway (`aop gateway`): LLM hosts discover and call agents across the federation.
//!
//! One MCP endpoint (Streamable HTTP at `/mcp`, or stdio) offers:
//! - the meta tools of docs/protocol.md §6 ([`meta`]), compatible with the Python AOP server;
//! - one tool per agent of each mounted zone ([`directory`] keeps them in step with the
//!   zones and announces changes).
//!
//! A call resolves the agent through the gateway's own cache ([`names`]), then goes through
//! the call path ([`call`]): argument validation, endpoint choice by priority, weight and
//! circuit breaker ([`breaker`]), pooled MCP sessions to the agents ([`sessions`]), retries
//! with backoff within the agent's time budget. Errors have one enum and one mapping to MCP
//! ([`error`]); the MCP server itself is [`server`], which counts every call ([`metrics`],
//! read by the admin endpoint that `aop gateway --admin` serves).
//!
//! Tasks (docs/protocol.md §10.1): `submit_task` and the Python AOP server's queue tools
//! ([`task_tools`], named in [`task_shapes`]) over per-agent priority queues ([`tasks`]),
//! durable with `--data-dir`, whose workers call agents through the same call path. Clients
//! that declare the MCP tasks extension (`io.modelcontextprotocol/tasks`) get agent tool calls
//! as tasks on those queues ([`mcp_tasks`]: `tasks/get`, `tasks/update`, `tasks/cancel`).
//!
//! With `--auth` ([`auth`], docs/protocol.md §8.2) the gateway is an OAuth 2.1 resource
//! server: every request carries a bearer token, each caller sees and calls what its policy
//! allows, rate limits apply per caller and per agent, and agents get the operator's
//! upstream credentials, never the caller's token.
//!
//! With `--tls-cert`/`--tls-key` the MCP door speaks HTTPS only (`GatewayConfig::guards`
//! `.tls`), and `https://` agents are called over TLS trusting the system roots plus `--ca`
//! (`GatewayConfig::agent_tls`, in [`sessions`]).
//!
//! The gateway talks to the registry only through a resolver node's gRPC door (`--resolver`):
//! `Resolve` for calls, `GetZone`/`ListAgents` (recursive, so any zone in the tree) for the
//! mounted zones.

pub mod args;
pub mod auth;
pub mod breaker;
pub mod call;
pub mod directory;
pub mod dispatch;
pub mod error;
pub mod mcp_tasks;
pub mod meta;
pub mod metrics;
pub mod names;
pub mod search;
pub mod server;
pub mod sessions;
pub mod shapes;
mod state;
pub mod task_shapes;
pub mod task_tools;
pub mod tasks;

use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::mcp::http::{self, McpHttpServer};
use server::GatewayServer;

pub use state::{Gateway, GatewayConfig, GatewayStartError, SessionsToNotify};

/// A running gateway: its MCP listener (unless stdio) and its background tasks.
pub struct GatewayHandle {
    pub gateway: Arc<Gateway>,
    pub http: Option<McpHttpServer>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl GatewayHandle {
    /// `http://ADDR/mcp` (`https://` with a certificate), when serving HTTP.
    pub fn url(&self) -> Option<String> {
        self.http.as_ref().map(McpHttpServer::url)
    }

    /// Stops serving, ends the sessions with clients and agents.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.gateway.tasks().stop();
        if let Some(http) = self.http {
            http.shutdown().await;
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.gateway.sessions().close_all().await;
    }
}

/// Lists the mounted zones once (so the first `tools/list` has them when the resolver is
/// up), then starts the refresh and notification tasks.
async fn start_tasks(gateway: &Arc<Gateway>, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
    let directory = Arc::clone(gateway.directory());
    let _ = tokio::time::timeout(Duration::from_secs(5), directory.refresh()).await;
    gateway.start_tasks();
    let refresher = tokio::spawn(
        Arc::clone(&directory).run(gateway.config().poll_interval, shutdown.child_token()),
    );
    let notifier_gateway = Arc::clone(gateway);
    let stop = shutdown.child_token();
    let notifier = tokio::spawn(async move {
        let mut changes = notifier_gateway.directory().subscribe();
        changes.mark_unchanged();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    notifier_gateway.sessions_to_notify().notify_all().await;
                }
            }
        }
    });
    vec![refresher, notifier]
}

/// Starts a gateway serving MCP over HTTP on `listener`.
pub async fn start(
    config: GatewayConfig,
    listener: TcpListener,
) -> Result<GatewayHandle, GatewayStartError> {
    let mut guards = config.guards.clone();
    let authorizer = config.auth.clone();
    let gateway = Gateway::new(config, clock::system())?;
    if let Some(authorizer) = authorizer {
        guards.auth = Some(http::SharedAuth(Arc::new(auth::http::GatewayAuth {
            authorizer,
            gateway: Arc::clone(&gateway),
        })));
    }
    let shutdown = CancellationToken::new();
    let mut tasks = start_tasks(&gateway, &shutdown).await;
    tasks.push(crate::sys::trim_memory_periodically(shutdown.child_token()));
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let handler_gateway = Arc::clone(&gateway);
    let http = http::serve(listener, guards, move || {
        GatewayServer::new(Arc::clone(&handler_gateway))
    })
    .map_err(|source| GatewayStartError::Listen { addr, source })?;
    tracing::info!(url = %http.url(), mounts = ?gateway.directory().mounts(), "MCP gateway listening");
    Ok(GatewayHandle {
        gateway,
        http: Some(http),
        shutdown,
        tasks,
    })
}

/// Serves one MCP session over stdin/stdout until the client closes it. The gateway is
/// built by the caller ([`Gateway::new`]), so it can be watched (an admin endpoint) too.
pub async fn serve_stdio(gateway: Arc<Gateway>) -> Result<(), GatewayStartError> {
    let shutdown = CancellationToken::new();
    let tasks = start_tasks(&gateway, &shutdown).await;
    let server = GatewayServer::new(Arc::clone(&gateway));
    match server.serve(rmcp::transport::stdio()).await {
        Ok(running) => {
            let _ = running.waiting().await;
        }
        Err(error) => tracing::error!(%error, "stdio MCP session failed to start"),
    }
    shutdown.cancel();
    gateway.tasks().stop();
    for task in tasks {
        let _ = task.await;
    }
    gateway.sessions().close_all().await;
    Ok(())
}
