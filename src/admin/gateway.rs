//! The gateway's admin endpoint (`aop gateway --admin ADDR`; the demo serves it on
//! base+901): the node's status page fed by a document about the gateway (mounted zones with
//! their serials, refresh age and errors, the tool count, open circuit breakers, the name
//! cache and sessions), `/metrics` in the node's format, `/healthz`, and `/readyz`: 200 once
//! every mounted zone has been listed at least once, else 503 naming each zone not listed
//! yet and why.
//!
//! Built from the node admin's pieces (the listener with its Host check and headers, the
//! exposition writer, the readiness answer, the agent views, `telemetry` histograms), and
//! read through the gateway's public accessors only, so the gateway needs no code for it
//! beyond its counters (`gateway::metrics`).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::exposition::{self, Exposition};
use crate::admin::status::{AGENTS_SHOWN, AgentView, agent_view};
use crate::admin::{AdminListener, readiness};
use crate::clock::system_unix_ms as unix_ms;
use crate::gateway::breaker::BreakerState;
use crate::gateway::metrics::ToolKind;
use crate::gateway::names::NameCacheStats;
use crate::gateway::sessions::SessionStats;
use crate::gateway::{Gateway, GatewayHandle};
use crate::mcp::http::OpenSessions;

/// What the admin endpoint reads of a gateway.
#[derive(Clone)]
pub struct GatewayView {
    pub gateway: Arc<Gateway>,
    /// The MCP door's sessions; `None` for a gateway on stdio (one session, its own).
    pub sessions: Option<OpenSessions>,
}

impl GatewayView {
    /// A gateway started by [`crate::gateway::start`].
    pub fn of(handle: &GatewayHandle) -> GatewayView {
        GatewayView {
            gateway: Arc::clone(&handle.gateway),
            sessions: handle.http.as_ref().map(|http| http.sessions()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct GatewayStatus {
    /// `gateway`.
    pub kind: &'static str,
    pub version: &'static str,
    pub now_unix_ms: u64,
    pub uptime_secs: f64,
    pub resolver: String,
    pub ready: bool,
    pub not_ready: Vec<String>,
    pub agents_limit: usize,
    /// Meta tools plus one per mounted agent.
    pub tools: usize,
    /// MCP sessions open at the gateway's door (`None` on stdio).
    pub mcp_sessions: Option<usize>,
    pub mounts: Vec<MountView>,
    /// Endpoints whose breaker is open or half-open.
    pub breakers: Vec<BreakerView>,
    pub name_cache: NameCacheStats,
    pub sessions: SessionStats,
}

#[derive(Debug, Serialize)]
pub struct MountView {
    pub zone: String,
    pub serial: Option<u32>,
    pub error: Option<String>,
    /// Seconds since the node last confirmed the listing (a listing, a serial check, a
    /// Watch event); `None` until listed.
    pub last_refresh_secs: Option<f64>,
    /// A Watch stream follows the zone now.
    pub watching: bool,
    pub agent_count: usize,
    pub agents: Vec<AgentView>,
}

#[derive(Debug, Serialize)]
pub struct BreakerView {
    pub url: String,
    pub state: BreakerState,
}

/// One line per mounted zone not listed yet, with the last error.
fn not_ready(gateway: &Gateway) -> Vec<String> {
    let mounted = gateway.directory().current();
    gateway
        .directory()
        .mounts()
        .iter()
        .filter_map(|origin| {
            let zone = mounted.zones.get(origin);
            if zone.is_some_and(|z| z.serial.is_some()) {
                return None;
            }
            Some(match zone.and_then(|z| z.error.as_deref()) {
                Some(error) if error != "not listed yet" => {
                    format!("{origin}: not listed yet (last error: {error})")
                }
                _ => format!("{origin}: not listed yet"),
            })
        })
        .collect()
}

fn age_secs(at: Option<Instant>) -> Option<f64> {
    at.map(|at| at.elapsed().as_secs_f64())
}

pub async fn gateway_status(view: &GatewayView) -> GatewayStatus {
    let gateway = &view.gateway;
    let mounted = gateway.directory().current();
    let mounts = mounted
        .zones
        .values()
        .map(|zone| MountView {
            zone: zone.origin.to_string(),
            serial: zone.serial,
            error: zone.error.clone(),
            last_refresh_secs: age_secs(zone.refreshed),
            watching: zone.watching,
            agent_count: zone.agents.len(),
            agents: zone
                .agents
                .iter()
                .take(AGENTS_SHOWN)
                .map(|agent| agent_view(agent))
                .collect(),
        })
        .collect();
    let not_ready = not_ready(gateway);
    let mcp_sessions = match &view.sessions {
        Some(sessions) => Some(sessions.count().await),
        None => None,
    };
    GatewayStatus {
        kind: "gateway",
        version: env!("CARGO_PKG_VERSION"),
        now_unix_ms: unix_ms(),
        uptime_secs: gateway.started().elapsed().as_secs_f64(),
        resolver: gateway.config().resolver_url.clone(),
        ready: not_ready.is_empty(),
        not_ready,
        agents_limit: AGENTS_SHOWN,
        tools: gateway.meta_tools().len() + mounted.listing.tools.len(),
        mcp_sessions,
        mounts,
        breakers: gateway
            .breakers()
            .open_endpoints()
            .into_iter()
            .map(|(url, state)| BreakerView { url, state })
            .collect(),
        name_cache: gateway.names().stats(),
        sessions: gateway.session_stats(),
    }
}

/// Every series of a gateway, read at scrape time.
pub async fn render_metrics(view: &GatewayView) -> String {
    let gateway = &view.gateway;
    let mut out = Exposition::default();
    out.family(
        "aop_build_info",
        "gauge",
        "The aop version this gateway runs.",
    );
    out.sample(
        "aop_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.family(
        "aop_uptime_seconds",
        "gauge",
        "Seconds since the gateway started.",
    );
    out.sample(
        "aop_uptime_seconds",
        &[],
        gateway.started().elapsed().as_secs_f64(),
    );

    let metrics = gateway.metrics();
    out.family(
        "aop_gateway_tool_calls_total",
        "counter",
        "tools/call requests answered, by tool (_unknown: a tool not offered; _other: past \
         the first 1024 tools) and outcome (ok; error or agent_error: the tool or agent \
         answered isError; unknown_tool, invalid_arguments, no_such_agent, resolve_failed, \
         no_endpoints, breakers_open, timeout, failed, cancelled, bad_request, no_such_zone, \
         zone_not_loaded, search_failed: the gateway's errors).",
    );
    for (tool, outcome, count) in metrics.calls() {
        out.sample(
            "aop_gateway_tool_calls_total",
            &[("tool", &tool), ("outcome", outcome)],
            count,
        );
    }
    out.family(
        "aop_gateway_tool_call_duration_seconds",
        "histogram",
        "Time to answer a tools/call, retries included, by kind of tool (meta, agent).",
    );
    for kind in ToolKind::ALL {
        out.histogram(
            "aop_gateway_tool_call_duration_seconds",
            &[("kind", kind.label())],
            &metrics.latency(kind),
        );
    }
    out.family(
        "aop_gateway_call_errors_total",
        "counter",
        "Failed attempts to call an agent's endpoint, by reason (the call may still have \
         succeeded on another endpoint or a retry).",
    );
    for (reason, count) in metrics.attempt_failures() {
        out.sample(
            "aop_gateway_call_errors_total",
            &[("reason", reason)],
            count,
        );
    }
    out.family(
        "aop_gateway_breaker_state",
        "gauge",
        "1 for the state each called endpoint's circuit breaker is in (closed, half_open, \
         open), 0 for the others.",
    );
    for (url, state, _) in gateway.breakers().endpoints() {
        for candidate in BreakerState::ALL {
            out.sample(
                "aop_gateway_breaker_state",
                &[("endpoint", &url), ("state", candidate.label())],
                u8::from(candidate == state),
            );
        }
    }

    mounts(&mut out, gateway);

    out.family(
        "aop_gateway_tools",
        "gauge",
        "Tools offered: the meta tools and one per mounted agent.",
    );
    out.sample(
        "aop_gateway_tools",
        &[],
        gateway.meta_tools().len() + gateway.directory().current().listing.tools.len(),
    );
    if let Some(sessions) = &view.sessions {
        out.family(
            "aop_gateway_mcp_sessions_open",
            "gauge",
            "MCP sessions (2025 era) open at the gateway's HTTP door.",
        );
        out.sample("aop_gateway_mcp_sessions_open", &[], sessions.count().await);
    }
    let agent_sessions = gateway.session_stats();
    out.family(
        "aop_gateway_agent_sessions_open",
        "gauge",
        "Pooled MCP sessions from the gateway to agents' endpoints, open now.",
    );
    out.sample("aop_gateway_agent_sessions_open", &[], agent_sessions.open);
    out.family(
        "aop_gateway_agent_sessions_opened_total",
        "counter",
        "MCP sessions opened to agents' endpoints (handshakes).",
    );
    out.sample(
        "aop_gateway_agent_sessions_opened_total",
        &[],
        agent_sessions.opened,
    );
    let names = gateway.names().stats();
    for (name, kind, help, value) in [
        (
            "aop_gateway_name_cache_hits_total",
            "counter",
            "Agent names resolved from the gateway's cache.",
            names.hits,
        ),
        (
            "aop_gateway_name_cache_misses_total",
            "counter",
            "Agent names resolved through the resolver node.",
            names.misses,
        ),
        (
            "aop_gateway_name_cache_entries",
            "gauge",
            "Answers held in the gateway's name cache.",
            names.entries,
        ),
    ] {
        out.family(name, kind, help);
        out.sample(name, &[], value);
    }
    out.finish()
}

/// Each mounted zone's serial, agents, refresh age and Watch stream.
fn mounts(out: &mut Exposition, gateway: &Gateway) {
    let mounted = gateway.directory().current();
    out.family(
        "aop_gateway_zone_serial",
        "gauge",
        "The serial of each mounted zone as last listed (absent until listed).",
    );
    for zone in mounted.zones.values() {
        if let Some(serial) = zone.serial {
            out.sample(
                "aop_gateway_zone_serial",
                &[("zone", &zone.origin.to_string())],
                serial,
            );
        }
    }
    out.family(
        "aop_gateway_zone_agents",
        "gauge",
        "Agents of each mounted zone (each one a tool).",
    );
    for zone in mounted.zones.values() {
        out.sample(
            "aop_gateway_zone_agents",
            &[("zone", &zone.origin.to_string())],
            zone.agents.len(),
        );
    }
    out.family(
        "aop_gateway_zone_last_refresh_seconds",
        "gauge",
        "Seconds since the node last confirmed a mounted zone's listing (a listing, a serial \
         check or a Watch event; absent until listed). A quiet zone on an open Watch stream \
         ages without being stale: see aop_gateway_zone_watching.",
    );
    for zone in mounted.zones.values() {
        if let Some(age) = age_secs(zone.refreshed) {
            out.sample(
                "aop_gateway_zone_last_refresh_seconds",
                &[("zone", &zone.origin.to_string())],
                age,
            );
        }
    }
    out.family(
        "aop_gateway_zone_watching",
        "gauge",
        "1 while a Watch stream follows the mounted zone (changes arrive as they happen).",
    );
    for zone in mounted.zones.values() {
        out.sample(
            "aop_gateway_zone_watching",
            &[("zone", &zone.origin.to_string())],
            u8::from(zone.watching),
        );
    }
}

impl AdminListener {
    /// Serves a gateway's admin endpoint until `shutdown`.
    pub fn serve_gateway(self, view: GatewayView, shutdown: CancellationToken) -> JoinHandle<()> {
        let router = Router::new()
            .route("/metrics", get(gateway_metrics))
            .route("/readyz", get(gateway_ready))
            .route("/status.json", get(gateway_json))
            .with_state(Arc::new(view));
        self.serve(router, shutdown)
    }
}

async fn gateway_metrics(State(view): State<Arc<GatewayView>>) -> Response {
    let body = render_metrics(&view).await;
    ([(header::CONTENT_TYPE, exposition::CONTENT_TYPE)], body).into_response()
}

async fn gateway_ready(State(view): State<Arc<GatewayView>>) -> Response {
    readiness(not_ready(&view.gateway))
}

async fn gateway_json(State(view): State<Arc<GatewayView>>) -> Response {
    axum::Json(gateway_status(&view).await).into_response()
}
