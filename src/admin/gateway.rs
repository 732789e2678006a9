//! The gateway's status page (the demo serves it on base+901): the same page as a node's,
//! fed by a document about the gateway: mounted zones with their serials and errors, the
//! tool count, open circuit breakers, the name cache and agent sessions. `/readyz` is 200
//! once every mounted zone has been listed.
//!
//! Read through the gateway's public accessors only, so the gateway needs no code for it.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::status::{AGENTS_SHOWN, AgentView, agent_view};
use crate::admin::{AdminListener, readiness};
use crate::clock::system_unix_ms as unix_ms;
use crate::gateway::Gateway;
use crate::gateway::breaker::BreakerState;
use crate::gateway::names::NameCacheStats;
use crate::gateway::sessions::SessionStats;

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
    pub agent_count: usize,
    pub agents: Vec<AgentView>,
}

#[derive(Debug, Serialize)]
pub struct BreakerView {
    pub url: String,
    pub state: BreakerState,
}

fn not_ready(gateway: &Gateway) -> Vec<String> {
    let mounted = gateway.directory().current();
    gateway
        .directory()
        .mounts()
        .iter()
        .filter(|zone| mounted.zones.get(*zone).is_none_or(|z| z.serial.is_none()))
        .map(|zone| format!("{zone}: not listed yet"))
        .collect()
}

pub fn gateway_status(gateway: &Gateway) -> GatewayStatus {
    let mounted = gateway.directory().current();
    let mounts = mounted
        .zones
        .values()
        .map(|zone| MountView {
            zone: zone.origin.to_string(),
            serial: zone.serial,
            error: zone.error.clone(),
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

impl AdminListener {
    /// Serves a gateway's status page until `shutdown`.
    pub fn serve_gateway(
        self,
        gateway: Arc<Gateway>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let router = Router::new()
            .route("/readyz", get(gateway_ready))
            .route("/status.json", get(gateway_json))
            .with_state(gateway);
        self.serve(router, shutdown)
    }
}

async fn gateway_ready(State(gateway): State<Arc<Gateway>>) -> Response {
    readiness(not_ready(&gateway))
}

async fn gateway_json(State(gateway): State<Arc<Gateway>>) -> Response {
    axum::Json(gateway_status(&gateway)).into_response()
}
