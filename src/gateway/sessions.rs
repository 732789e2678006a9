//! Pooled MCP client sessions to agent endpoints.
//!
//! One session per endpoint URL, opened on first use (`initialize`, then the endpoint's tool
//! list, to know which tools say they are idempotent) and shared by every call to that
//! endpoint: each call is one HTTP POST on kept-alive connections of one shared HTTP client,
//! so a call costs no TCP handshake and no MCP handshake. A session whose transport closed is
//! dropped and opened again on the next call; an agent that restarts behind the same URL is
//! picked up by rmcp itself (it re-initializes when the old session id gets a 404).
//!
//! Also here: the progress dispatcher that routes an agent's progress notifications to the
//! call that asked for them, and the classification of call failures into "the agent never
//! got the call" and "it may have" (docs/protocol.md §6), which decides what may be retried.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::handler::client::progress::ProgressDispatcher;
use rmcp::model::{
    ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult,
    ElicitationCreateRequestMethod, Implementation, ProgressNotificationParam, ProtocolVersion,
    Tool,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::common::client_side_sse::ExponentialBackoff;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceError, ServiceExt};
use tokio::sync::OnceCell;

use crate::mcp::https::HttpsClient;
use crate::peer::{FailureKind, PeerFailure, error_chain};
use crate::tls::{ClientTls, TlsError};

/// How long opening a session (TCP connect and MCP handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Calls in flight on one session; rmcp's default of 16 would queue a gateway's calls.
const CALLS_PER_SESSION: usize = 4096;

/// The gateway's side of a session with an agent: it only listens for progress.
#[derive(Clone, Default)]
pub struct AgentClient {
    pub progress: ProgressDispatcher,
}

impl ClientHandler for AgentClient {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.handle_notification(params).await;
    }

    /// The gateway cannot ask its own caller on an agent's behalf (yet): say so, rather than
    /// rmcp's default of answering "the user declined" when no user was asked.
    async fn create_elicitation(
        &self,
        _request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        Err(ErrorData::method_not_found::<ElicitationCreateRequestMethod>())
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("aop-gateway", env!("CARGO_PKG_VERSION")),
        )
        // The newest version with an `initialize` handshake, which every MCP server we call
        // (rmcp's, the Python SDK's 1.x) speaks; rmcp servers would negotiate down to it.
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }
}

/// One open session with an agent endpoint.
pub struct AgentSession {
    pub url: String,
    pub service: RunningService<RoleClient, AgentClient>,
    /// The endpoint's tools by name, as listed when the session opened.
    pub tools: HashMap<String, Tool>,
}

impl AgentSession {
    /// Whether the endpoint says `tool` may be called twice with the same effect.
    pub fn is_idempotent(&self, tool: &str) -> bool {
        self.tools
            .get(tool)
            .and_then(|t| t.annotations.as_ref())
            .is_some_and(|a| a.is_idempotent())
    }
}

/// A failed request to an agent in the shared classification: whether the agent can have
/// received it decides whether it may be sent to another endpoint.
pub fn failure_of(url: &str, error: &ServiceError) -> PeerFailure {
    let reason = error_text(error);
    let kind = match error {
        ServiceError::TransportSend(transport) => match transport
            .error
            .downcast_ref::<StreamableHttpError<reqwest::Error>>()
        {
            Some(StreamableHttpError::Client(http)) if http.is_connect() => {
                FailureKind::Unreachable
            }
            // 503 and 429 are the server saying it did not take the request.
            Some(StreamableHttpError::HttpStatus(status)) if matches!(status.status, 429 | 503) => {
                FailureKind::Overloaded
            }
            Some(
                StreamableHttpError::AuthRequired(_) | StreamableHttpError::InsufficientScope(_),
            ) => FailureKind::Unauthorized,
            _ => FailureKind::Lost,
        },
        _ => FailureKind::Lost,
    };
    PeerFailure::new(url, kind, reason)
}

/// An rmcp error in words: a transport error with its sources, anything else as it says.
pub fn error_text(error: &ServiceError) -> String {
    match error {
        ServiceError::TransportSend(transport) => error_chain(transport.error.as_ref()),
        other => other.to_string(),
    }
}

/// Counters of the pool, for `get_server_info`, tests and benchmarks.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SessionStats {
    /// Sessions opened (MCP handshakes) since start.
    pub opened: u64,
    /// Sessions open now.
    pub open: usize,
}

type Slot = Arc<OnceCell<Arc<AgentSession>>>;

pub struct AgentSessions {
    /// Every session's HTTP client; it follows `--ca` and `--client-cert` reloads for
    /// sessions opened after them.
    http: HttpsClient,
    /// What to send as `Authorization: Bearer` to agents by URL prefix (`--auth`'s
    /// `[[upstream_credential]]`); the longest matching prefix wins, none: no header.
    credentials: Vec<(String, String)>,
    // std Mutex: held to find or insert a slot, never across an await.
    slots: Mutex<HashMap<String, Slot>>,
    opened: AtomicU64,
}

impl AgentSessions {
    /// Sessions whose `https://` agents are verified against what `tls` trusts (none: the
    /// system roots); every call, task and listing of an agent goes through this client.
    pub fn with_tls(tls: Option<Arc<ClientTls>>) -> Result<AgentSessions, TlsError> {
        let http = HttpsClient::new(tls, |builder| {
            builder
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(CALLS_PER_SESSION)
                .tcp_nodelay(true)
        })?;
        Ok(AgentSessions {
            http,
            credentials: Vec::new(),
            slots: Mutex::new(HashMap::new()),
            opened: AtomicU64::new(0),
        })
    }

    /// Sends `bearer` to agents whose URL starts with `prefix` (the longest prefix wins).
    pub fn with_credentials(mut self, credentials: Vec<(String, String)>) -> AgentSessions {
        self.credentials = credentials;
        self
    }

    /// The bearer for the agent at `url`, if a credential's prefix matches it.
    fn credential_for(&self, url: &str) -> Option<&str> {
        self.credentials
            .iter()
            .filter(|(prefix, _)| url.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, bearer)| bearer.as_str())
    }

    fn slot(&self, url: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(slots.entry(url.to_string()).or_default())
    }

    /// Forgets `url`'s session if it is still `dead` (another call may have replaced it).
    fn forget(&self, url: &str, dead: &Slot) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.get(url).is_some_and(|slot| Arc::ptr_eq(slot, dead)) {
            slots.remove(url);
        }
    }

    /// The open session with `url`, opening one if needed.
    pub async fn session(&self, url: &str) -> Result<Arc<AgentSession>, PeerFailure> {
        for _ in 0..2 {
            let slot = self.slot(url);
            let session = slot.get_or_try_init(|| self.open(url)).await?;
            if !session.service.is_transport_closed() {
                return Ok(Arc::clone(session));
            }
            self.forget(url, &slot);
        }
        Err(PeerFailure::new(
            url,
            FailureKind::Unreachable,
            "the session closed as soon as it opened",
        ))
    }

    async fn open(&self, url: &str) -> Result<Arc<AgentSession>, PeerFailure> {
        let failure = |reason: String| PeerFailure::new(url, FailureKind::Unreachable, reason);
        let mut backoff = ExponentialBackoff::default();
        // rmcp's default resumes a broken SSE stream forever; a call has a budget.
        backoff.max_times = Some(2);
        backoff.max_delay = Some(Duration::from_millis(500));
        let mut config = StreamableHttpClientTransportConfig::with_uri(url)
            .max_concurrent_requests(CALLS_PER_SESSION);
        config.retry_config = Arc::new(backoff);
        // Never the caller's token: only what the operator configured for this URL.
        config.auth_header = self.credential_for(url).map(str::to_string);
        let transport = StreamableHttpClientTransport::with_client(self.http.get(), config);
        let opening = AgentClient::default().serve(transport);
        let service = match tokio::time::timeout(CONNECT_TIMEOUT, opening).await {
            Err(_) => {
                return Err(failure(format!(
                    "no MCP handshake within {} ms",
                    CONNECT_TIMEOUT.as_millis()
                )));
            }
            Ok(Err(error)) => {
                return Err(failure(format!(
                    "cannot open an MCP session: {}",
                    plain_reason(&error, self.http.ca())
                )));
            }
            Ok(Ok(service)) => service,
        };
        let tools = match tokio::time::timeout(CONNECT_TIMEOUT, service.list_all_tools()).await {
            Ok(Ok(tools)) => tools,
            Ok(Err(error)) => {
                return Err(failure(format!(
                    "cannot list its tools: {}",
                    plain_reason(&error, self.http.ca())
                )));
            }
            Err(_) => return Err(failure("no tools/list answer in time".into())),
        };
        self.opened.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            endpoint = url,
            tools = tools.len(),
            "opened an agent session"
        );
        Ok(Arc::new(AgentSession {
            url: url.to_string(),
            service,
            tools: tools
                .into_iter()
                .map(|tool| (tool.name.to_string(), tool))
                .collect(),
        }))
    }

    pub fn stats(&self) -> SessionStats {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        SessionStats {
            opened: self.opened.load(Ordering::Relaxed),
            open: slots.values().filter(|slot| slot.initialized()).count(),
        }
    }

    /// Closes every session (gateway shutdown).
    pub async fn close_all(&self) {
        let slots: Vec<Slot> = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.drain().map(|(_, slot)| slot).collect()
        };
        for slot in slots {
            if let Some(session) = slot.get() {
                session.service.cancellation_token().cancel();
            }
        }
    }
}

/// What went wrong with an MCP transport, in the caller's terms: "connection refused", "HTTP
/// 404 Not Found", "timed out", why a certificate does not verify, never the library's type
/// names (rmcp prints its transport's full generic type in its messages).
fn plain_reason(error: &(dyn std::error::Error + 'static), ca: Option<&std::path::Path>) -> String {
    // rmcp's handshake error holds its transport error in a field it does not expose as
    // the source: start the walk there.
    let start: &(dyn std::error::Error + 'static) =
        match error.downcast_ref::<rmcp::service::ClientInitializeError>() {
            Some(rmcp::service::ClientInitializeError::TransportError { error, .. }) => error,
            _ => error,
        };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(start);
    let mut deepest = error;
    while let Some(current) = source {
        if let Some(http) = current.downcast_ref::<reqwest::Error>() {
            if let Some(reason) = crate::tls::failure_reason(http, ca) {
                return reason;
            }
            if let Some(status) = http.status() {
                return format!("HTTP {status}");
            }
            if http.is_timeout() {
                return "timed out".into();
            }
            if http.is_connect() && current.source().is_none() {
                return "cannot connect".into();
            }
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => "connection reset".into(),
                std::io::ErrorKind::TimedOut => "connection timed out".into(),
                _ => io.to_string(),
            };
        }
        deepest = current;
        // rmcp's HTTP transport error holds the HTTP client's error without exposing it as
        // the source, too.
        source = match current.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            Some(StreamableHttpError::Client(inner)) => Some(inner),
            _ => current.source(),
        };
    }
    without_type_names(&error_chain(deepest))
}

/// Drops bracketed Rust type paths (`[rmcp::transport::worker::WorkerTransport<...>]`) from a
/// library's message.
fn without_type_names(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']').map(|at| open + at) else {
            break;
        };
        out.push_str(&rest[..open]);
        let inside = &rest[open + 1..close];
        if !inside.contains("::") {
            out.push_str(&rest[open..=close]);
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}
