//! The gateway's shared state: its configuration, the mounted zones, the name cache, the call
//! path and the MCP sessions to notify. Every MCP session's handler points at one
//! [`Gateway`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{JsonObject, Tool};
use rmcp::{Peer, RoleServer};

use super::breaker::{BreakerConfig, Breakers};
use super::call::{CallContext, CallOutcome, Caller, RetryPolicy, Validators};
use super::directory::Directory;
use super::error::GatewayError;
use super::metrics::GatewayMetrics;
use super::names::NameCache;
use super::sessions::{AgentSessions, SessionStats};
use super::tasks::{TaskConfig, TaskError, TaskQueues, TaskRunner};
use crate::clock::Clock;
use crate::grpc::GrpcPeers;
use crate::grpc::client::{ChannelPool, ClientError, NodeClient};
use crate::mcp::http::HttpGuards;
use crate::name::Name;
use crate::record::ServerAddress;

/// How a gateway runs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// gRPC URL of the node that resolves names (recursively) for the gateway.
    pub resolver_url: String,
    /// Zones whose agents become tools.
    pub mounts: Vec<Name>,
    /// The longest wait before a failed Watch stream of a mounted zone is reopened, and how
    /// often a zone is polled when its node offers no Watch.
    pub poll_interval: Duration,
    /// Entries of the gateway's name cache.
    pub cache_capacity: u64,
    pub breaker: BreakerConfig,
    pub retry: RetryPolicy,
    pub guards: HttpGuards,
    /// The task queues (docs/protocol.md §10.1).
    pub tasks: TaskConfig,
    /// What the link to an `https://` resolver trusts and presents (default: the system
    /// roots, no client certificate).
    pub resolver_tls: Option<Arc<crate::tls::ClientTls>>,
    /// What calls to `https://` agent endpoints trust (`--ca` beside the system roots) and
    /// present when an agent asks for a client certificate; default: the system roots.
    pub agent_tls: Option<Arc<crate::tls::ClientTls>>,
    /// `--auth`: callers are authenticated and authorized (docs/protocol.md §8.2), and
    /// agents get the upstream credentials it names; `None`: every caller may do everything.
    pub auth: Option<Arc<super::auth::Authorizer>>,
}

impl GatewayConfig {
    pub fn new(resolver_url: impl Into<String>) -> GatewayConfig {
        GatewayConfig {
            resolver_url: resolver_url.into(),
            mounts: Vec::new(),
            poll_interval: Duration::from_secs(1),
            cache_capacity: 100_000,
            breaker: BreakerConfig::default(),
            retry: RetryPolicy::default(),
            guards: HttpGuards::default(),
            tasks: TaskConfig::default(),
            resolver_tls: None,
            agent_tls: None,
            auth: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayStartError {
    #[error("--resolver: {0}")]
    Resolver(#[from] ClientError),
    #[error("--data-dir: {0}")]
    Tasks(#[from] TaskError),
    #[error("cannot serve MCP on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS to agents: {0}")]
    AgentTls(#[from] crate::tls::TlsError),
}

/// Client sessions (2025 era) to tell when the tool list changes.
#[derive(Default)]
pub struct SessionsToNotify {
    // std Mutex: held to push or swap the list, never across an await.
    peers: Mutex<Vec<Peer<RoleServer>>>,
}

impl SessionsToNotify {
    /// Remembers a session, forgetting those that closed since.
    pub fn add(&self, peer: Peer<RoleServer>) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.retain(|peer| !peer.is_transport_closed());
        peers.push(peer);
    }

    /// Sends `notifications/tools/list_changed` to every live session; forgets closed ones.
    pub(super) async fn notify_all(&self) {
        let peers: Vec<Peer<RoleServer>> = {
            let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            peers.retain(|peer| !peer.is_transport_closed());
            peers.clone()
        };
        for peer in peers {
            let _ = peer.notify_tool_list_changed().await;
        }
    }
}

/// The gateway's shared state: every MCP session's handler points here.
pub struct Gateway {
    config: GatewayConfig,
    directory: Arc<Directory>,
    /// The resolver node: every lookup, listing and search goes through it (it fans searches
    /// out across the federation).
    resolver: ServerAddress,
    /// The channel to it, shared by every part of the gateway.
    peers: GrpcPeers,
    /// A client of the resolver node on that channel (listings of zones not mounted).
    resolver_client: NodeClient,
    names: NameCache,
    caller: Caller,
    meta_tools: Vec<Tool>,
    notify: SessionsToNotify,
    metrics: Arc<GatewayMetrics>,
    tasks: Arc<TaskQueues>,
    started: Instant,
}

impl Gateway {
    /// Builds a gateway (no tasks yet; see [`start`]).
    pub fn new(
        config: GatewayConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Gateway>, GatewayStartError> {
        let pool = match &config.resolver_tls {
            Some(tls) => ChannelPool::with_tls(Arc::clone(tls)),
            None => ChannelPool::new(),
        };
        let client = pool.client(&config.resolver_url)?;
        let resolver = ServerAddress::new(&config.resolver_url, None).map_err(|error| {
            ClientError::InvalidUrl {
                url: config.resolver_url.clone(),
                reason: error.to_string(),
            }
        })?;
        let metrics = Arc::new(GatewayMetrics::default());
        let tasks = Arc::new(TaskQueues::open(config.tasks.clone(), Arc::clone(&clock))?);
        Ok(Arc::new(Gateway {
            resolver_client: client.clone(),
            directory: Directory::new(config.mounts.clone(), client.clone()),
            resolver,
            peers: GrpcPeers::new(pool),
            names: NameCache::new(client, config.cache_capacity),
            caller: Caller {
                sessions: AgentSessions::with_tls(config.agent_tls.clone())?.with_credentials(
                    config
                        .auth
                        .as_ref()
                        .map(|auth| {
                            auth.config()
                                .upstream
                                .iter()
                                .map(|c| (c.url_prefix.clone(), c.bearer.clone()))
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
                breakers: Arc::new(Breakers::new(config.breaker, clock)),
                validators: Validators::new(),
                retry: config.retry,
                metrics: Arc::clone(&metrics),
            },
            meta_tools: super::shapes::tools(),
            notify: SessionsToNotify::default(),
            metrics,
            tasks,
            started: Instant::now(),
            config,
        }))
    }

    /// The task queues.
    pub fn tasks(&self) -> &Arc<TaskQueues> {
        &self.tasks
    }

    /// Lets queued tasks run, calling agents through this gateway.
    pub fn start_tasks(self: &Arc<Self>) {
        let runner: std::sync::Weak<dyn TaskRunner> = Arc::downgrade(self) as _;
        self.tasks.start(runner);
    }

    /// The compiled input schemas (tasks check their arguments at submission).
    pub fn validators(&self) -> &Validators {
        &self.caller.validators
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    pub fn names(&self) -> &NameCache {
        &self.names
    }

    /// A client of the resolver node (on the gateway's one channel to it).
    pub fn resolver_client(&self) -> NodeClient {
        self.resolver_client.clone()
    }

    pub fn breakers(&self) -> &Breakers {
        &self.caller.breakers
    }

    pub fn sessions(&self) -> &AgentSessions {
        &self.caller.sessions
    }

    pub fn session_stats(&self) -> SessionStats {
        self.caller.sessions.stats()
    }

    /// Tool calls, their latency and failed attempts (the admin endpoint reads them).
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    pub fn meta_tools(&self) -> &[Tool] {
        &self.meta_tools
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub(crate) fn sessions_to_notify(&self) -> &SessionsToNotify {
        &self.notify
    }

    /// The resolver node, as a server to ask.
    pub fn resolver_server(&self) -> ServerAddress {
        self.resolver.clone()
    }

    /// How the gateway asks nodes (searches go through here).
    pub fn peers(&self) -> &GrpcPeers {
        &self.peers
    }

    /// Resolves `name` (through the cache, so a call follows the zone within the TTL) and
    /// calls the agent.
    pub async fn call_by_name(
        &self,
        name: &Name,
        arguments: JsonObject,
        timeout_ms: Option<u64>,
        context: &CallContext,
    ) -> Result<CallOutcome, GatewayError> {
        // Runs inside the MCP request's span (`gateway::server::call_tool`, which carries the
        // request id), so each log line of the call (retries, breakers, sessions) names it.
        let span = tracing::info_span!("agent_call", agent = %name);
        let started = Instant::now();
        let call = async {
            // An agent the caller may not see does not exist for it (docs/protocol.md §8.2).
            let hidden = || GatewayError::NoSuchAgent {
                name: name.clone(),
                outcome: crate::answer::Outcome::NxDomain.word(),
            };
            if !context.sees(name) {
                return Err(hidden());
            }
            let resolution = self.names.resolve(name).await?;
            let agent = Arc::clone(resolution.agent()?);
            if !context.sees(&agent.name) {
                return Err(hidden());
            }
            if !context.may_call(&agent.name) {
                return Err(GatewayError::NotAllowed {
                    agent: agent.name.clone(),
                });
            }
            let marked_down = || self.directory.endpoints_marked_down(name);
            self.caller
                .call(agent, arguments, timeout_ms, context, &marked_down)
                .await
        };
        let result = tracing::Instrument::instrument(call, span.clone()).await;
        let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        span.in_scope(|| match &result {
            Ok(_) => tracing::debug!(latency_us, "tool call"),
            Err(error) => tracing::warn!(latency_us, %error, "tool call failed"),
        });
        result
    }
}
