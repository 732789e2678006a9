//! Serving an rmcp handler over Streamable HTTP at `/mcp`, with the guards every door needs.
//!
//! Both the built-in agents and the gateway serve MCP this way, so the body limit, Origin
//! and Host checks (DNS-rebinding protection), the optional bearer token and graceful
//! shutdown are written once. rmcp's `StreamableHttpService` speaks both protocol eras: the
//! 2025 session era (`Mcp-Session-Id`, SSE streams) and the stateless 2026-07-28 era.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::record::limits;

/// Origins allowed when none are configured: pages served from this machine.
pub const LOOPBACK_ORIGINS: [&str; 6] = [
    "http://localhost:*",
    "http://127.0.0.1:*",
    "http://[::1]:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
    "https://[::1]:*",
];

/// How an MCP HTTP door is guarded.
#[derive(Debug, Clone, Default)]
pub struct HttpGuards {
    /// Allowed `Origin` values (scheme, host and port; `:*` for any port). Empty: loopback
    /// origins only. A request without `Origin` (not from a browser) passes.
    pub allowed_origins: Vec<String>,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub bearer_token: Option<Arc<str>>,
}

/// A running MCP HTTP listener.
pub struct McpHttpServer {
    pub local_addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl McpHttpServer {
    /// The URL clients use: `http://ADDR/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.local_addr)
    }

    /// Stops accepting, ends every session and waits for the listener to close.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Resolves when the server stops (after `shutdown`, or on an accept error).
    pub async fn wait(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        }
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Serves `factory`'s handlers on `listener` at `/mcp` until shut down.
///
/// Every session gets its own handler from `factory`; handlers share state through what the
/// factory captures.
pub fn serve<S, F>(
    listener: TcpListener,
    guards: HttpGuards,
    factory: F,
) -> std::io::Result<McpHttpServer>
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    let local_addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let origins: Vec<String> = if guards.allowed_origins.is_empty() {
        LOOPBACK_ORIGINS
            .iter()
            .map(|origin| origin.to_string())
            .collect()
    } else {
        guards.allowed_origins.clone()
    };
    // The Host check is rmcp's DNS-rebinding guard for servers bound to loopback. On another
    // bind address the Host is whatever name the clients use, so the Origin check (which a
    // rebinding page cannot forge) is the guard there.
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_max_request_body_bytes(limits::MCP_REQUEST_MAX_BYTES)
        .with_cancellation_token(shutdown.child_token())
        .with_sse_keep_alive(Some(Duration::from_secs(15)))
        // Stateless (2026-07-28) requests get plain JSON when the answer is a single
        // message, and SSE when the handler streams notifications first; session-era
        // requests get SSE, as rmcp serves them.
        .with_json_response(true);
    config = if local_addr.ip().is_loopback() {
        config.with_allowed_hosts(["localhost", "127.0.0.1", "::1", "[::1]"])
    } else {
        config.disable_allowed_hosts()
    };
    let mut sessions = LocalSessionManager::default();
    // Gateways multiplex many calls on one session; the default of 16 queued messages
    // would make concurrent calls wait on each other.
    sessions.session_config.channel_capacity = 4096;
    let service = StreamableHttpService::new(move || Ok(factory()), Arc::new(sessions), config);
    let router = Router::new()
        .nest_service("/mcp", service)
        .layer(middleware::from_fn(deleted_is_ok))
        .layer(middleware::from_fn_with_state(
            guards.bearer_token.clone(),
            require_bearer,
        ));
    let stop = shutdown.clone();
    // Responses go out in several writes (headers, SSE events); without TCP_NODELAY, Nagle
    // and the peer's delayed ACK add 40 ms to every call.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    Ok(McpHttpServer {
        local_addr,
        shutdown,
        task,
    })
}

async fn require_bearer(
    State(token): State<Option<Arc<str>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(presented) if constant_time_eq(presented.as_bytes(), token.as_bytes()) => {
            next.run(request).await
        }
        _ => {
            let message = if presented.is_some() {
                "Unauthorized: the bearer token is not the one this gateway accepts"
            } else {
                "Unauthorized: this gateway needs an `Authorization: Bearer <token>` header"
            };
            let mut response = (StatusCode::UNAUTHORIZED, message).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// rmcp answers a session's DELETE with 202; the Python MCP SDK expects 200 or 204 and
/// logs a failure otherwise. The session is gone either way: say 200.
async fn deleted_is_ok(request: Request, next: Next) -> Response {
    let is_delete = request.method() == axum::http::Method::DELETE;
    let mut response = next.run(request).await;
    if is_delete && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::OK;
    }
    response
}

/// Compares without leaking, through timing, how long a matching prefix was.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
