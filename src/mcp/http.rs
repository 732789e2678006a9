//! Serving an rmcp handler over Streamable HTTP at `/mcp`, with the guards every door needs.
//!
//! Both the built-in agents and the gateway serve MCP this way, so the body limit and checks
//! ([`super::body`]: bad JSON, batches and non-messages are JSON-RPC errors, not rmcp's 415),
//! Origin and Host checks (DNS-rebinding protection), the optional bearer token, the optional
//! authorization ([`McpAuth`], which the gateway's `--auth` plugs in), HTTPS (the
//! `tls::HttpListener` with [`HttpGuards::tls`], the gateway's `--tls-cert`) and graceful
//! shutdown are written once. rmcp's `StreamableHttpService` speaks both protocol eras: the
//! 2025 session era (`Mcp-Session-Id`, SSE streams) and the stateless 2026-07-28 era.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use rmcp::ServerHandler;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest};
use rmcp::transport::streamable_http_server::session::SessionId;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::body;
use crate::admission::Bounds;
use crate::record::limits;
use crate::tls::{HttpListener, HttpPeer, ServerTls};

/// Origins allowed when none are configured: pages served from this machine.
pub const LOOPBACK_ORIGINS: [&str; 6] = [
    "http://localhost:*",
    "http://127.0.0.1:*",
    "http://[::1]:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
    "https://[::1]:*",
];

/// Authorization of an MCP door beyond one shared bearer token: the gateway's OAuth
/// resource server (`crate::gateway::auth`) plugs in here, so this module serves it without
/// knowing tokens or policies.
pub trait McpAuth: Send + Sync + 'static {
    /// Routes served beside `/mcp` that need no token (the protected-resource metadata).
    fn public_routes(&self) -> Router;
    /// Every request to `/mcp`, before its body is read: the request to go on with (the
    /// caller's identity in its extensions), or the answer that refuses it.
    fn authenticate(&self, request: Request) -> BoxFuture<'_, Result<Request, Response>>;
    /// The one JSON-RPC message of an authenticated POST: `None` lets it through, or the
    /// answer that refuses it (403, 429).
    fn authorize(
        &self,
        parts: &axum::http::request::Parts,
        message: &ClientJsonRpcMessage,
    ) -> Option<Response>;
}

/// The authorization of a door, shared by its middleware.
#[derive(Clone)]
pub struct SharedAuth(pub Arc<dyn McpAuth>);

impl std::fmt::Debug for SharedAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedAuth")
    }
}

/// How an MCP HTTP door is guarded.
#[derive(Debug, Clone, Default)]
pub struct HttpGuards {
    /// Allowed `Origin` values (scheme, host and port; `:*` for any port). Empty: loopback
    /// origins only. A request without `Origin` (not from a browser) passes.
    pub allowed_origins: Vec<String>,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub bearer_token: Option<Arc<str>>,
    /// Sessions (2025 era) open at once, in total and per client address; `None`: the
    /// defaults of [`SESSION_BOUNDS`].
    pub sessions: Option<Bounds>,
    /// A session with no traffic for this long is closed; `None`: [`SESSION_IDLE`].
    pub session_idle: Option<Duration>,
    /// When set, every request to `/mcp` is authenticated and every tool call authorized
    /// by it (and `bearer_token` must be unset).
    pub auth: Option<SharedAuth>,
    /// When set, the door speaks HTTPS only (`--tls-cert`/`--tls-key`), with the
    /// certificate in force when each connection's handshake starts.
    pub tls: Option<Arc<ServerTls>>,
}

/// Sessions an MCP door keeps at once: each holds a handler, channels and buffers (tens of
/// KiB), so one client opening sessions in a loop must not be able to hold them all.
pub const SESSION_BOUNDS: Bounds = Bounds {
    total: 10_000,
    per_client: 1_000,
};

/// How long a session with no traffic is kept.
pub const SESSION_IDLE: Duration = Duration::from_secs(300);

/// A running MCP HTTP listener.
pub struct McpHttpServer {
    pub local_addr: SocketAddr,
    /// `https` or `http`.
    scheme: &'static str,
    sessions: OpenSessions,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

/// The sessions (2025 era) an MCP door holds, to count them (metrics).
#[derive(Clone)]
pub struct OpenSessions(Arc<LocalSessionManager>);

impl OpenSessions {
    /// Sessions open now (idle ones count until closed).
    pub async fn count(&self) -> usize {
        self.0.sessions.read().await.len()
    }
}

impl McpHttpServer {
    /// The URL clients use: `http://ADDR/mcp`, or `https://` over TLS.
    pub fn url(&self) -> String {
        format!("{}://{}/mcp", self.scheme, self.local_addr)
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

    /// The sessions this door holds.
    pub fn sessions(&self) -> OpenSessions {
        self.sessions.clone()
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
    // The Host check (DNS-rebinding protection) guards servers bound to loopback: any
    // loopback name or address passes (`crate::rebinding`; rmcp's own check compares
    // literal strings, so it is turned off). On another bind address the Host is whatever
    // name the clients use, so the Origin check (which a rebinding page cannot forge) is the
    // guard there.
    let config = StreamableHttpServerConfig::default()
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_max_request_body_bytes(limits::MCP_REQUEST_MAX_BYTES)
        .with_cancellation_token(shutdown.child_token())
        .with_sse_keep_alive(Some(Duration::from_secs(15)))
        // Stateless (2026-07-28) requests get plain JSON when the answer is a single
        // message, and SSE when the handler streams notifications first; session-era
        // requests get SSE, as rmcp serves them.
        .with_json_response(true)
        .disable_allowed_hosts();
    let check_host = local_addr.ip().to_canonical().is_loopback();
    let mut sessions = LocalSessionManager::default();
    // Gateways multiplex many calls on one session; the default of 16 queued messages
    // would make concurrent calls wait on each other.
    sessions.session_config.channel_capacity = 4096;
    sessions.session_config.keep_alive = Some(guards.session_idle.unwrap_or(SESSION_IDLE));
    let sessions = Arc::new(sessions);
    let open_sessions = OpenSessions(Arc::clone(&sessions));
    let gate = Arc::new(SessionGate {
        manager: Arc::clone(&sessions),
        bounds: guards.sessions.unwrap_or(SESSION_BOUNDS),
        owners: std::sync::Mutex::new(HashMap::new()),
    });
    let service = StreamableHttpService::new(move || Ok(factory()), sessions, config);
    let auth = guards.auth.clone();
    let mut router = Router::new()
        .nest_service("/mcp", service)
        .layer(middleware::from_fn_with_state(gate, limit_sessions))
        .layer(middleware::from_fn_with_state(auth.clone(), authorize))
        .layer(middleware::from_fn(check_body))
        .layer(middleware::from_fn(deleted_is_ok))
        .layer(middleware::from_fn_with_state(
            guards.bearer_token.clone(),
            require_bearer,
        ))
        .layer(middleware::from_fn_with_state(auth.clone(), authenticate));
    // Added after the layers above: the metadata needs no token.
    if let Some(auth) = &auth {
        router = router.merge(auth.0.public_routes());
    }
    let router = router.layer(middleware::from_fn_with_state(
        (check_host, local_addr.ip()),
        loopback_host,
    ));
    let stop = shutdown.clone();
    // Plaintext or TLS; either way with TCP_NODELAY (responses go out in several writes).
    let listener = HttpListener::new(listener, guards.tls.clone())?;
    let scheme = listener.scheme();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<HttpPeer>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    });
    Ok(McpHttpServer {
        local_addr,
        scheme,
        sessions: open_sessions,
        shutdown,
        task,
    })
}

/// The sessions an MCP door holds, and who opened them.
struct SessionGate {
    manager: Arc<LocalSessionManager>,
    bounds: Bounds,
    /// Sessions opened by each client address (some may have ended since).
    // std Mutex: held to read or update the map, never across an await.
    owners: std::sync::Mutex<HashMap<IpAddr, Vec<SessionId>>>,
}

impl SessionGate {
    /// Why `client` may not open one more session, if it may not.
    async fn refusal(&self, client: IpAddr) -> Option<(StatusCode, String)> {
        let live: std::collections::HashSet<SessionId> =
            self.manager.sessions.read().await.keys().cloned().collect();
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        owners.retain(|_, ids| {
            ids.retain(|id| live.contains(id));
            !ids.is_empty()
        });
        if live.len() >= self.bounds.total {
            return Some((
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "this MCP server holds its limit of {} sessions; close unused sessions or retry later",
                    self.bounds.total
                ),
            ));
        }
        let mine = owners.get(&client).map_or(0, Vec::len);
        (mine >= self.bounds.per_client).then(|| {
            (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "this client already has {mine} open sessions (the limit per client is {}); close unused sessions (HTTP DELETE) or reuse one",
                    self.bounds.per_client
                ),
            )
        })
    }

    fn opened(&self, client: IpAddr, id: SessionId) {
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(client)
            .or_default()
            .push(id);
    }
}

/// What [`check_body`] found in a POST body, for the layers inside it.
#[derive(Debug, Clone)]
struct CheckedBody {
    /// The message is an `initialize` request.
    initialize: bool,
    /// The message itself (authorization reads a tool call's target from it).
    message: Arc<ClientJsonRpcMessage>,
}

/// Reads every POST body declared JSON (bounded by the MCP body limit) and refuses, with the
/// one mapping of [`body::BodyError`], what is not one JSON-RPC message, so rmcp only ever
/// sees bodies it can read. Other content types go on to rmcp's 415.
async fn check_body(request: Request, next: Next) -> Response {
    let declared_json = body::is_json(
        request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok()),
    );
    if request.method() != axum::http::Method::POST || !declared_json {
        return next.run(request).await;
    }
    let (mut parts, incoming) = request.into_parts();
    let (bytes, message) = match read_message(&parts, incoming).await {
        Ok(read) => read,
        Err(error) => return refuse(parts, next, error).await,
    };
    let initialize = matches!(
        &message,
        ClientJsonRpcMessage::Request(request)
            if matches!(request.request, ClientRequest::InitializeRequest(_))
    );
    parts.extensions.insert(CheckedBody {
        initialize,
        message: Arc::new(message),
    });
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// The body of a POST and the one JSON-RPC message it holds.
async fn read_message(
    parts: &axum::http::request::Parts,
    incoming: axum::body::Body,
) -> Result<(bytes::Bytes, ClientJsonRpcMessage), body::BodyError> {
    let limit = limits::MCP_REQUEST_MAX_BYTES;
    let declared_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    if declared_length.is_some_and(|length| length > limit) {
        return Err(body::BodyError::TooLarge { limit });
    }
    let bytes = body::read(incoming, limit).await?;
    let message = body::check(&bytes)?;
    Ok((bytes, message))
}

/// Answers a POST whose body failed [`body::check`], after rmcp's own checks of the headers.
///
/// rmcp checks `Accept`, `Host` and `Origin` (DNS-rebinding protection) before it reads a
/// body, and a refused origin must hear 403 whatever it sent. So rmcp gets the request with
/// an empty body, which it cannot read: its 415 for that means every header check passed,
/// and the answer is what was wrong with the real body; any other answer (403, 406, ...) is
/// rmcp's. The bad body itself never reaches rmcp or a handler.
async fn refuse(
    mut parts: axum::http::request::Parts,
    next: Next,
    error: body::BodyError,
) -> Response {
    parts.headers.remove(header::CONTENT_LENGTH);
    let headers_checked = next
        .run(Request::from_parts(parts, axum::body::Body::empty()))
        .await;
    if headers_checked.status() != StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return headers_checked;
    }
    tracing::debug!(%error, "MCP request refused");
    error.into_response()
}

/// Bounds the sessions an MCP door holds, in total and per client address: an `initialize`
/// without a session past a bound is answered 503 or 429 with a JSON-RPC error naming the
/// limit; sessions that end (idle, DELETE) give their place back.
async fn limit_sessions(
    State(gate): State<Arc<SessionGate>>,
    axum::extract::ConnectInfo(HttpPeer { remote: peer, .. }): axum::extract::ConnectInfo<HttpPeer>,
    request: Request,
    next: Next,
) -> Response {
    // Only an `initialize` without a session opens one (a stateless request does not);
    // `check_body` read the body and said which it is.
    let initialize = request.method() == axum::http::Method::POST
        && !request.headers().contains_key("mcp-session-id")
        && request
            .extensions()
            .get::<CheckedBody>()
            .is_some_and(|checked| checked.initialize);
    if !initialize {
        return next.run(request).await;
    }
    if let Some((status, message)) = gate.refusal(peer.ip()).await {
        tracing::warn!(client = %peer.ip(), %message, "MCP session refused");
        let error = serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": -32000, "message": message},
        });
        return (status, axum::Json(error)).into_response();
    }
    let response = next.run(request).await;
    if let Some(id) = response
        .headers()
        .get("mcp-session-id")
        .and_then(|value| value.to_str().ok())
    {
        gate.opened(peer.ip(), SessionId::from(id.to_string()));
    }
    response
}

/// On a loopback bind, refuses (403) a request whose Host is not a loopback name or
/// address: a page that rebound a name of its own to 127.0.0.1 cannot reach the door.
async fn loopback_host(
    State((check, local)): State<(bool, IpAddr)>,
    request: Request,
    next: Next,
) -> Response {
    if !check {
        return next.run(request).await;
    }
    match crate::rebinding::check_host(crate::rebinding::request_host(&request), local, &[]) {
        Ok(()) => next.run(request).await,
        Err(refused) => {
            tracing::warn!(host = %refused.host, "MCP request refused: Host is not a loopback name (possible DNS rebinding)");
            (StatusCode::FORBIDDEN, refused.to_string()).into_response()
        }
    }
}

/// With [`HttpGuards::auth`], authenticates every request before anything else reads it.
async fn authenticate(
    State(auth): State<Option<SharedAuth>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(auth) = auth else {
        return next.run(request).await;
    };
    match auth.0.authenticate(request).await {
        Ok(request) => next.run(request).await,
        Err(refusal) => refusal,
    }
}

/// With [`HttpGuards::auth`], authorizes the one message of a POST (read by [`check_body`]).
async fn authorize(
    State(auth): State<Option<SharedAuth>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(auth) = auth else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    if let Some(checked) = parts.extensions.get::<CheckedBody>()
        && let Some(refusal) = auth.0.authorize(&parts, &checked.message)
    {
        return refusal;
    }
    next.run(Request::from_parts(parts, body)).await
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
