//! The admin endpoint (`aop node --admin ADDR`): what an operator needs to see a node at
//! work, read-only; over HTTPS when the process has a certificate (a node's `--tls-cert`, a
//! gateway's), with the same certificate, re-read on SIGHUP with it.
//!
//! | path | what |
//! | --- | --- |
//! | `/metrics` | Prometheus text format ([`exposition`]) |
//! | `/healthz` | 200 `ok` while the process serves |
//! | `/readyz` | 200 once every configured zone is served; else 503 and what is missing |
//! | `/status.json` | node, zones with their agents and delegations, gossip members, cached cuts, cache statistics, recent queries ([`status`]) |
//! | `/` | the status page: HTML, CSS and JS compiled into the binary, no build step; it reads `/status.json` every 2 s |
//!
//! What is measured lives beside what it measures: the DNS door's [`DnsCounters`], the gRPC
//! door's observer layer (`grpc::observe`), the recent-queries ring and histograms
//! (`telemetry`), the resolver's cache statistics, the authority's update counts. This
//! module only reads them. Nothing here changes state, so there is no authentication: bind
//! it to loopback (or a management network) as the examples do; a bind to any other address
//! logs a warning that the endpoint is reachable from the network.
//!
//! What guards it in a browser: responses carry `nosniff`, a same-origin content security
//! policy and no CORS headers, so another site's page cannot read them; requests whose
//! `Host` is not a loopback name or address, the address the connection reached, or a name
//! the operator allowed are refused with 403 (`crate::rebinding`, the check the MCP door
//! uses), so a page cannot read them through DNS rebinding either; the page builds its DOM
//! with `textContent`, never `innerHTML`, because agent descriptions are anyone's input; and
//! the recent-queries ring redacts secrets in URLs as it records them (`telemetry`).
//!
//! The gateway's admin endpoint ([`gateway`], `aop gateway --admin`) is the same page fed by
//! another document, and its own `/metrics`, `/healthz` and `/readyz`.

pub mod exposition;
pub mod gateway;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::authority::Authority;
use crate::catalog::Catalog;
use crate::dns::DnsCounters;
use crate::resolver::Resolver;
use std::time::Instant;

use crate::grpc::observe::GrpcMetrics;
use crate::telemetry::RecentQueries;
use crate::tls::{HttpListener, HttpPeer, ServerTls};

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    #[error("cannot listen for the admin endpoint on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What the admin endpoint reads of a node.
pub struct NodeView {
    pub node_id: String,
    pub grpc_url: String,
    pub dns_addr: Option<SocketAddr>,
    pub catalog: Arc<Catalog>,
    pub resolver: Arc<Resolver>,
    pub authority: Authority,
    /// The DNS door's counters, when the node has a DNS door.
    pub dns: Option<Arc<DnsCounters>>,
    /// The gRPC door's counters by method and status.
    pub grpc: Arc<GrpcMetrics>,
    /// The last queries of every door.
    pub recent: Arc<RecentQueries>,
    pub started: Instant,
    pub started_unix_ms: u64,
    /// The node's gossip membership, when it has one.
    pub membership: Option<Arc<crate::membership::Membership>>,
    /// Endpoint health probes answered and failed (docs/protocol.md §9.1).
    pub health_probes: Arc<crate::health::ProbeCounts>,
}

/// A bound admin port, not yet serving (bound first so the demo can print every address
/// before anything serves, as with the other doors).
pub struct AdminListener {
    listener: TcpListener,
    addr: SocketAddr,
    /// Host names (or addresses) answered besides loopback and the address reached.
    allowed_hosts: Vec<String>,
    /// With a certificate, the endpoint speaks HTTPS only.
    tls: Option<Arc<ServerTls>>,
}

impl AdminListener {
    pub async fn bind(addr: SocketAddr) -> Result<AdminListener, AdminError> {
        let bind_error = |source| AdminError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        Ok(AdminListener {
            listener,
            addr,
            allowed_hosts: Vec::new(),
            tls: None,
        })
    }

    /// Serves HTTPS only, with `tls`'s certificate (the process's own, reloaded with it).
    pub fn tls(mut self, tls: Option<Arc<ServerTls>>) -> AdminListener {
        self.tls = tls;
        self
    }

    /// Answers requests whose `Host` is one of `hosts` too (names a management network or a
    /// scraper uses), beside loopback names and addresses and the address reached.
    pub fn allow_hosts(mut self, hosts: Vec<String>) -> AdminListener {
        self.allowed_hosts = hosts;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The status page's URL (`https://` with a certificate).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/", self.addr)
    }

    /// Serves a node's admin endpoint until `shutdown`.
    pub fn serve_node(self, node: NodeView, shutdown: CancellationToken) -> JoinHandle<()> {
        let router = Router::new()
            .route("/metrics", get(node_metrics))
            .route("/readyz", get(node_ready))
            .route("/status.json", get(node_status))
            .with_state(Arc::new(node));
        self.serve(router, shutdown)
    }

    fn serve(self, routes: Router, shutdown: CancellationToken) -> JoinHandle<()> {
        let url = self.url();
        let router = routes
            .route("/", get(|| page(INDEX_HTML, "text/html; charset=utf-8")))
            .route(
                "/index.html",
                get(|| page(INDEX_HTML, "text/html; charset=utf-8")),
            )
            .route(
                "/app.js",
                get(|| page(APP_JS, "text/javascript; charset=utf-8")),
            )
            .route(
                "/style.css",
                get(|| page(STYLE_CSS, "text/css; charset=utf-8")),
            )
            .route("/healthz", get(|| async { "ok\n" }))
            // Browsers ask for it; an empty answer keeps their consoles free of 404s.
            .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
            .layer(axum::middleware::from_fn_with_state(
                Arc::<[String]>::from(self.allowed_hosts),
                check_host,
            ))
            .layer(axum::middleware::map_response(common_headers));
        let addr = self.addr;
        if !addr.ip().to_canonical().is_loopback() {
            tracing::warn!(
                %addr,
                "admin endpoint bound to a non-loopback address: it is reachable from the network, \
                 without authentication (status page, /metrics, /status.json); bind it to \
                 loopback or a management network unless that is meant"
            );
        }
        tokio::spawn(async move {
            let listener = match HttpListener::new(self.listener, self.tls) {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, "admin endpoint cannot serve");
                    return;
                }
            };
            tracing::info!(%url, "admin endpoint listening (status page, /metrics, /healthz, /readyz)");
            let service = router.into_make_service_with_connect_info::<HttpPeer>();
            if let Err(error) = axum::serve(listener, service)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
            {
                tracing::warn!(%error, "admin endpoint stopped");
            }
        })
    }
}

/// DNS-rebinding protection: 403, naming the Host, unless the request names this endpoint
/// by a loopback name or address, the address it reached, or an allowed name.
async fn check_host(
    State(allowed): State<Arc<[String]>>,
    ConnectInfo(HttpPeer { local, .. }): ConnectInfo<HttpPeer>,
    request: Request,
    next: Next,
) -> Response {
    let host = crate::rebinding::request_host(&request);
    match crate::rebinding::check_host(host, local.ip(), &allowed) {
        Ok(()) => next.run(request).await,
        Err(refused) => {
            tracing::debug!(host = %refused.host, %local, "admin request refused: Host not answered here");
            (StatusCode::FORBIDDEN, format!("{refused}\n")).into_response()
        }
    }
}

/// Headers on every admin response: nothing is cached or sniffed, and the page runs only
/// its own script.
async fn common_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    response
}

async fn page(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn node_metrics(State(node): State<Arc<NodeView>>) -> Response {
    let body = exposition::render(&node).await;
    ([(header::CONTENT_TYPE, exposition::CONTENT_TYPE)], body).into_response()
}

async fn node_ready(State(node): State<Arc<NodeView>>) -> Response {
    readiness(status::not_ready(&node.authority))
}

/// 200 `ready`, or 503 with one line per thing not ready.
pub fn readiness(not_ready: Vec<String>) -> Response {
    if not_ready.is_empty() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    let mut body = String::from("not ready:\n");
    for line in not_ready {
        body.push_str(&line);
        body.push('\n');
    }
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn node_status(State(node): State<Arc<NodeView>>) -> Response {
    axum::Json(status::node_status(&node).await).into_response()
}
