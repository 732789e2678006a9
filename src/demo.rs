//! `aop demo`: the whole federation of `zones/` in one process.
//!
//! The zone files name their servers by address, but the demo assigns addresses itself
//! (docs/protocol.md §3): node 0 is the root, then one node per distinct `servers` entry of the
//! zone files, zones taken in name order; node i serves gRPC on port base+i (or a free port
//! when the base is 0), DNS on base+100+i and its admin endpoint (metrics, status page) on
//! base+200+i. Every server address in the zones, including
//! delegation glue, is rewritten to the assigned one, so the federation is self-consistent
//! whatever the files say. (Glue carries addresses, not ports, so a recursive DNS resolver
//! cannot follow the demo's referrals between ports; `dig -p` against any door works.)
//!
//! For every distinct endpoint URL on 127.0.0.1 in the zones, the demo runs a built-in agent
//! (`metadata.demo_kind`, default echo) on port base+300+j and rewrites the endpoint to it;
//! then an MCP gateway on base+900 mounts every zone and resolves through the root node, with
//! its admin endpoint (status page, /metrics, /healthz, /readyz) on base+901, as
//! `aop gateway --admin` serves it.
//!
//! With TLS (`aop demo --tls`), the demo makes a development CA and one certificate for
//! 127.0.0.1 and localhost in a directory it is given: every gRPC door speaks TLS with it,
//! every node presents it to the others, the gateway's link to the root trusts the CA, and
//! the admin endpoints and the MCP gateway speak HTTPS with the same certificate (the demo's
//! agents stay plaintext: their URLs come from the zone files).
//!
//! Every zone gets a fresh update key named `demo` (kept in memory, handed to the zone's
//! primary; `aop demo` writes them to files for `aop register --key-file`), so live
//! registration can be tried on the demo as on a real node.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::gateway::GatewayView;
use crate::admin::{AdminError, AdminListener};
use crate::agent::{AgentKind, BuiltinAgent};
use crate::dns::DnsListener;
use crate::gateway::{self, GatewayConfig, GatewayHandle, GatewayStartError};
use crate::keys::{KeyError, UpdateKey};
use crate::mcp::http::McpHttpServer;
use crate::name::Name;
use crate::node::{GrpcListener, NodeError, NodeHandle, ServeOptions, load_zone_files};
use crate::record::{Endpoint, ServerAddress};
use crate::tls::issue::{self, Subject};
use crate::tls::{ClientTls, ClientTlsFiles, ServerTls, ServerTlsFiles, TlsError};

/// Offsets from the port base (docs/protocol.md §3).
pub const DNS_PORT_OFFSET: u16 = 100;
pub const ADMIN_PORT_OFFSET: u16 = 200;
pub const AGENT_PORT_OFFSET: u16 = 300;
pub const GATEWAY_PORT_OFFSET: u16 = 900;
pub const GATEWAY_STATUS_PORT_OFFSET: u16 = 901;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    #[error("cannot list zone files in {}: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("no zone files (*.toml) in {}", dir.display())]
    NoZones { dir: PathBuf },
    #[error("port base {base} leaves no room for {nodes} nodes below 65536")]
    PortsExhausted { base: u16, nodes: usize },
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("cannot start the demo agent for {url} on {addr}: {source}")]
    Agent {
        url: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the gateway on {addr}: {source}")]
    GatewayListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Gateway(#[from] GatewayStartError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("cannot make the demo's update key for zone {zone}: {source}")]
    Key { zone: Name, source: KeyError },
    #[error("demo TLS: {0}")]
    Tls(#[from] TlsError),
}

/// The demo's TLS: a CA it made, and the one certificate every node serves and presents.
pub struct DemoTls {
    /// The CA certificate clients give as `--ca`.
    pub ca: PathBuf,
    server: Arc<ServerTls>,
    /// The same certificate for the HTTP doors (admin endpoints, the gateway).
    https: Arc<ServerTls>,
    client: Arc<ClientTls>,
}

impl DemoTls {
    /// Writes a CA (`ca.pem`, `ca.key`) and a certificate for 127.0.0.1 and localhost
    /// (`node.pem`, `node.key`) into `dir`.
    pub fn create(dir: &Path) -> Result<DemoTls, TlsError> {
        let (ca, _) = issue::write_ca(dir)?;
        let (cert, key) = issue::write_issued(dir, "node", &Subject::default().or_loopback(), dir)?;
        let files = ServerTlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
        };
        let server = ServerTls::grpc(files.clone())?;
        let https = ServerTls::https(files)?;
        let client = ClientTls::load(ClientTlsFiles {
            ca: Some(ca.clone()),
            cert: Some(cert),
            key: Some(key),
        })?;
        Ok(DemoTls {
            ca,
            server,
            https,
            client,
        })
    }

    /// What a client of the demo trusts (its CA).
    pub fn client(&self) -> Arc<ClientTls> {
        Arc::clone(&self.client)
    }

    fn https(&self) -> Arc<ServerTls> {
        Arc::clone(&self.https)
    }
}

/// One built-in agent the demo runs.
pub struct DemoAgent {
    /// The endpoint URL written in the zone file, and where the agent really listens.
    pub written_url: String,
    pub server: McpHttpServer,
    pub kind: AgentKind,
    pub tool: String,
    /// The agents (FQDNs) whose endpoint this is.
    pub serves: Vec<Name>,
}

/// One node of the running demo.
pub struct DemoNode {
    pub index: usize,
    pub handle: NodeHandle,
    pub zones: Vec<Name>,
}

/// The gateway's admin endpoint (status page, /metrics, /healthz, /readyz).
pub struct GatewayStatusPage {
    pub url: String,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

/// The running federation.
pub struct Demo {
    pub nodes: Vec<DemoNode>,
    pub agents: Vec<DemoAgent>,
    pub gateway: GatewayHandle,
    pub gateway_status: GatewayStatusPage,
    /// One update key (named `demo`) per zone, accepted by the zone's primary.
    pub update_keys: Vec<UpdateKey>,
}

/// The name of the update key the demo makes for each zone.
pub const DEMO_KEY_NAME: &str = "demo";

impl Demo {
    /// Stops the gateway, the agents, then every node, draining requests in flight.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        self.gateway_status.shutdown.cancel();
        let _ = self.gateway_status.task.await;
        self.gateway.shutdown().await;
        for agent in self.agents {
            agent.server.shutdown().await;
        }
        let mut first_error = None;
        for node in self.nodes {
            if let Err(error) = node.handle.shutdown().await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The root node's gRPC URL.
    pub fn root_url(&self) -> Option<String> {
        self.nodes.first().map(|node| node.handle.grpc_url())
    }
}

/// Zone files of a directory, in file-name order.
pub fn zone_files(dir: &Path) -> Result<Vec<PathBuf>, DemoError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DemoError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(DemoError::NoZones {
            dir: dir.to_path_buf(),
        });
    }
    Ok(files)
}

/// Starts every node of the federation in `zones_dir`.
pub async fn start(zones_dir: &Path, port_base: u16) -> Result<Demo, DemoError> {
    start_with(zones_dir, port_base, None).await
}

/// [`start`], every gRPC door and link over TLS when `tls` is given.
pub async fn start_with(
    zones_dir: &Path,
    port_base: u16,
    tls: Option<&DemoTls>,
) -> Result<Demo, DemoError> {
    let mut zones = load_zone_files(&zone_files(zones_dir)?)?;
    zones.sort_by(|a, b| a.origin().cmp(b.origin()));

    // Plan: one node per distinct server (by its written gRPC URL), in zone-name order.
    let mut written: Vec<String> = Vec::new();
    for zone in &zones {
        for server in &zone.header().servers {
            if !written.contains(&server.grpc) {
                written.push(server.grpc.clone());
            }
        }
    }
    if port_base != 0 && usize::from(port_base) + usize::from(GATEWAY_PORT_OFFSET) + 1 > 65535 {
        return Err(DemoError::PortsExhausted {
            base: port_base,
            nodes: written.len(),
        });
    }

    let mut listeners = Vec::with_capacity(written.len());
    let mut dns_listeners = Vec::with_capacity(written.len());
    let mut admin_listeners = Vec::with_capacity(written.len());
    let port = |offset: u16, index: usize| {
        if port_base == 0 {
            0
        } else {
            port_base + offset + index as u16
        }
    };
    for index in 0..written.len() {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port(0, index)));
        let mut listener = GrpcListener::bind(addr).await?;
        if let Some(tls) = tls {
            listener = listener.tls(Arc::clone(&tls.server));
        }
        listeners.push(listener);
        let dns = SocketAddr::from((Ipv4Addr::LOCALHOST, port(DNS_PORT_OFFSET, index)));
        dns_listeners.push(DnsListener::bind(dns).await.map_err(NodeError::from)?);
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, port(ADMIN_PORT_OFFSET, index)));
        admin_listeners.push(
            AdminListener::bind(admin)
                .await?
                .tls(tls.map(DemoTls::https)),
        );
    }
    let assigned: HashMap<&str, ServerAddress> = written
        .iter()
        .zip(listeners.iter().zip(&dns_listeners))
        .map(|(url, (listener, dns))| {
            (
                url.as_str(),
                ServerAddress {
                    grpc: listener.url(),
                    dns: Some(dns.local_addr()),
                },
            )
        })
        .collect();
    let rewrite = |server: &ServerAddress| {
        assigned.get(server.grpc.as_str()).cloned().unwrap_or_else(|| {
            tracing::warn!(server = %server.grpc, "delegation names a server no zone file lists; left as written");
            server.clone()
        })
    };
    let zones: Vec<_> = zones
        .iter()
        .map(|zone| zone.with_servers(rewrite))
        .collect();

    // One built-in agent per distinct loopback endpoint URL, in zone and agent order.
    let mut agents: Vec<DemoAgent> = Vec::new();
    for zone in &zones {
        for name in zone.agent_names() {
            let Some(agent) = zone.agent(name.as_str()) else {
                continue;
            };
            let kind = agent
                .metadata
                .as_ref()
                .and_then(|m| m.value().get("demo_kind"))
                .and_then(|v| v.as_str())
                .and_then(AgentKind::parse)
                .unwrap_or(AgentKind::Echo);
            for endpoint in &agent.endpoints {
                if !is_loopback_url(&endpoint.url) {
                    continue;
                }
                if let Some(existing) = agents.iter_mut().find(|a| a.written_url == endpoint.url) {
                    existing.serves.push(agent.name.clone());
                    continue;
                }
                let addr =
                    SocketAddr::from((Ipv4Addr::LOCALHOST, port(AGENT_PORT_OFFSET, agents.len())));
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| DemoError::Agent {
                        url: endpoint.url.clone(),
                        addr,
                        source,
                    })?;
                let server = BuiltinAgent::new(kind, &endpoint.tool)
                    .serve_http(listener)
                    .map_err(|source| DemoError::Agent {
                        url: endpoint.url.clone(),
                        addr,
                        source,
                    })?;
                agents.push(DemoAgent {
                    written_url: endpoint.url.clone(),
                    server,
                    kind,
                    tool: endpoint.tool.clone(),
                    serves: vec![agent.name.clone()],
                });
            }
        }
    }
    let moved: HashMap<&str, String> = agents
        .iter()
        .map(|agent| (agent.written_url.as_str(), agent.server.url()))
        .collect();
    let zones: Vec<_> = zones
        .iter()
        .map(|zone| {
            zone.with_endpoints(
                |_, endpoint: &Endpoint| match moved.get(endpoint.url.as_str()) {
                    Some(url) => Endpoint {
                        url: url.clone(),
                        ..endpoint.clone()
                    },
                    None => endpoint.clone(),
                },
            )
        })
        .collect();
    let mounts: Vec<Name> = zones.iter().map(|zone| zone.origin().clone()).collect();
    let update_keys = mounts
        .iter()
        .map(|zone| {
            UpdateKey::generate(DEMO_KEY_NAME, &zone.to_string()).map_err(|source| DemoError::Key {
                zone: zone.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Every node recurses from the root node.
    let root_hints: Vec<ServerAddress> = listeners
        .first()
        .map(|root| ServerAddress {
            grpc: root.url(),
            dns: None,
        })
        .into_iter()
        .collect();
    let mut nodes = Vec::with_capacity(listeners.len());
    let doors = listeners
        .into_iter()
        .zip(dns_listeners)
        .zip(admin_listeners);
    for (index, ((listener, dns), admin)) in doors.enumerate() {
        let url = listener.url();
        let served: Vec<_> = zones
            .iter()
            .filter(|zone| zone.header().servers.first().is_some_and(|s| s.grpc == url))
            .map(|zone| zone.with_servers(|s| s.clone()))
            .collect();
        // A zone's first server is its primary; the others are its secondaries.
        let secondaries: Vec<(Name, String)> = zones
            .iter()
            .filter_map(|zone| {
                let servers = &zone.header().servers;
                let primary = servers.first()?;
                servers[1..]
                    .iter()
                    .any(|s| s.grpc == url)
                    .then(|| (zone.origin().clone(), primary.grpc.clone()))
            })
            .collect();
        let mut names: Vec<Name> = served.iter().map(|zone| zone.origin().clone()).collect();
        names.extend(secondaries.iter().map(|(zone, _)| zone.clone()));
        let keys: Vec<UpdateKey> = update_keys
            .iter()
            .filter(|key| served.iter().any(|zone| zone.origin() == key.zone()))
            .cloned()
            .collect();
        let mut options = ServeOptions::new(served)
            .node_id(format!("node{index}"))
            .roots(root_hints.clone())
            .dns(dns)
            .admin(admin);
        options.secondaries = secondaries;
        options.update_keys = keys;
        options.client_tls = tls.map(DemoTls::client);
        let handle = listener.serve_with(options)?;
        nodes.push(DemoNode {
            index,
            handle,
            zones: names,
        });
    }

    let gateway_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port(GATEWAY_PORT_OFFSET, 0)));
    let listener = tokio::net::TcpListener::bind(gateway_addr)
        .await
        .map_err(|source| DemoError::GatewayListen {
            addr: gateway_addr,
            source,
        })?;
    let root_url = nodes
        .first()
        .map(|node| node.handle.grpc_url())
        .unwrap_or_default();
    let mut config = GatewayConfig::new(root_url);
    config.mounts = mounts;
    config.resolver_tls = tls.map(DemoTls::client);
    config.agent_tls = tls.map(DemoTls::client);
    config.guards.tls = tls.map(DemoTls::https);
    let gateway = gateway::start(config, listener).await?;
    let status_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port(GATEWAY_STATUS_PORT_OFFSET, 0)));
    let status_listener = AdminListener::bind(status_addr)
        .await?
        .tls(tls.map(DemoTls::https));
    let shutdown = CancellationToken::new();
    let gateway_status = GatewayStatusPage {
        url: status_listener.url(),
        task: status_listener.serve_gateway(GatewayView::of(&gateway), shutdown.clone()),
        shutdown,
    };
    Ok(Demo {
        nodes,
        agents,
        gateway,
        gateway_status,
        update_keys,
    })
}

/// Whether an endpoint URL points at this machine's loopback (the demo runs those agents).
fn is_loopback_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|url| match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(host)) => host == "localhost",
        None => false,
    })
}
