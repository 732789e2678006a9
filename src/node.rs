//! A running node: its zones, its gRPC door, and a handle to stop it.
//!
//! Starting is split in two so the demo can assign every address before any zone is
//! served: [`GrpcListener::bind`] takes the port (port 0 asks the OS for a free one), then
//! [`GrpcListener::serve`] starts the door with the zones. The handle's
//! [`NodeHandle::shutdown`] stops accepting, lets requests in flight finish, and gives up on
//! stragglers after a deadline.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminError, AdminListener, NodeView};
use crate::admission::Admission;
use crate::authority::{Authority, AuthorityConfig, AuthorityError, PreparedAuthority};
use crate::catalog::Catalog;
use crate::clock::{self, Clock};
use crate::dns::{DnsCounters, DnsError, DnsListener};
use crate::grpc::RegistryService;
use crate::grpc::observe::GrpcMetrics;
use crate::grpc::server::ServerLimits;
use crate::grpc::{ChannelPool, GrpcPeers};
use crate::health::{Probe, ProbeCounts, Prober};
use crate::keys::UpdateKey;
use crate::keys::identity::UpdateIdentity;
use crate::mcp::probe::McpProbe;
use crate::membership::{Membership, MembershipConfig, MembershipError};
use crate::name::Name;
use crate::record::ServerAddress;
use crate::resolver::{Resolver, ResolverConfig};
use crate::store::{Store, StoreError};
use crate::telemetry::RecentQueries;
use crate::tls::{ClientTls, ClientTlsFiles, ServerTls, ServerTlsFiles, TlsError};
use crate::zone::ZoneSnapshot;
use crate::zone::file::{self, ZoneFileError};

/// How long shutdown waits for requests in flight.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    ZoneFiles { errors: Vec<ZoneFileError> },
    #[error("two zone files define zone {zone}: {} and {}", first.display(), second.display())]
    DuplicateZone {
        zone: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("cannot listen for gRPC on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Serve(String),
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Membership(#[from] MembershipError),
    #[error("advertise URL {url:?} (--advertise, node config `advertise`): {reason}")]
    Advertise { url: String, reason: String },
}

/// What `aop node` runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Names the node in `served_by`; default: its gRPC address.
    pub node_id: Option<String>,
    pub grpc: SocketAddr,
    /// The gRPC URL other nodes reach this one at (`--advertise`); default: the listen
    /// address's URL, which is wrong for a wildcard bind such as `0.0.0.0`.
    pub advertise: Option<String>,
    /// The DNS door's address (UDP and TCP), if the node has one.
    pub dns: Option<SocketAddr>,
    /// UDP answers per second per client /24 or /56 at the DNS door; `None`: no limit.
    pub dns_rate_limit: Option<u32>,
    /// The admin endpoint's address (metrics, health, status page), if any.
    pub admin: Option<SocketAddr>,
    /// Host names the admin endpoint answers besides loopback and the address reached.
    pub admin_allow_hosts: Vec<String>,
    pub zone_files: Vec<PathBuf>,
    /// Zones served as a secondary of the primary at a gRPC URL.
    pub secondaries: Vec<(Name, String)>,
    /// Where the store lives; `None` keeps it in memory (nothing survives a restart).
    pub data_dir: Option<PathBuf>,
    /// Keys that may update zones.
    pub update_keys: Vec<UpdateKey>,
    /// Client certificate identities that may update zones (mTLS, `--update-identity`).
    pub update_identities: Vec<UpdateIdentity>,
    /// NOTIFY secondaries of every change.
    pub notify: bool,
    /// Resolver settings; `resolver.roots` are the root hints.
    pub resolver: ResolverConfig,
    /// What bounds the gRPC door's clients.
    pub grpc_limits: ServerLimits,
    /// TLS: the door's certificate and the trust of the node's own client side.
    pub tls: NodeTlsFiles,
    /// Endpoint probes in flight at most (docs/protocol.md §9.1); `None`: no probing.
    pub health_probes: Option<usize>,
    /// Gossip with the operator's other nodes (`[membership]`), if configured.
    pub membership: Option<MembershipConfig>,
}

/// Where a node's TLS settings live (`[tls]` in a node config).
#[derive(Debug, Clone, Default)]
pub struct NodeTlsFiles {
    /// The gRPC door's certificate, key and client CA: with them, the door speaks TLS only.
    pub server: Option<ServerTlsFiles>,
    /// A CA trusted beside the system roots when this node reaches `https://` nodes.
    pub ca: Option<PathBuf>,
}

/// A node's live TLS settings: the door's, and its client side's, which presents the node's
/// own certificate to nodes that ask for one.
#[derive(Debug, Clone)]
pub struct NodeTls {
    pub server: Option<Arc<ServerTls>>,
    /// The admin endpoint's HTTPS settings: the door's certificate and key, ALPN
    /// `http/1.1`, no client certificate asked for (browsers and scrapers read it).
    pub admin: Option<Arc<ServerTls>>,
    pub client: Arc<ClientTls>,
}

impl NodeTls {
    pub fn load(files: &NodeTlsFiles) -> Result<NodeTls, TlsError> {
        let server = files.server.clone().map(ServerTls::grpc).transpose()?;
        let admin = files
            .server
            .as_ref()
            .map(|server| {
                ServerTls::https(ServerTlsFiles {
                    cert: server.cert.clone(),
                    key: server.key.clone(),
                    client_ca: None,
                })
            })
            .transpose()?;
        let client = ClientTls::load(ClientTlsFiles {
            ca: files.ca.clone(),
            cert: files.server.as_ref().map(|s| s.cert.clone()),
            key: files.server.as_ref().map(|s| s.key.clone()),
        })?;
        Ok(NodeTls {
            server,
            admin,
            client,
        })
    }

    /// Re-reads every file (SIGHUP): new connections use the new ones, open ones stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        if let Some(server) = &self.server {
            server.reload()?;
        }
        if let Some(admin) = &self.admin {
            admin.reload()?;
        }
        self.client.reload()
    }
}

/// Everything a bound listener needs to serve.
pub struct ServeOptions {
    /// Names the node in `served_by`; default: its gRPC address.
    pub node_id: Option<String>,
    pub zones: Vec<ZoneSnapshot>,
    pub resolver: ResolverConfig,
    /// The clock TTLs are judged by (tests move a manual one).
    pub clock: Arc<dyn Clock>,
    /// A bound DNS door to serve the same zones on, if any.
    pub dns: Option<DnsListener>,
    /// A bound admin endpoint (metrics, health, status page), if any.
    pub admin: Option<AdminListener>,
    /// The store; `None` keeps one in memory.
    pub store: Option<Arc<Store>>,
    pub secondaries: Vec<(Name, String)>,
    pub update_keys: Vec<UpdateKey>,
    /// Client certificate identities that may update zones without a signature.
    pub update_identities: Vec<UpdateIdentity>,
    pub notify: bool,
    /// What bounds the gRPC door's clients (connections, requests in flight, streams).
    pub grpc_limits: ServerLimits,
    /// What the node's channels to other nodes trust and present for `https://` URLs
    /// (default: the system roots, no certificate).
    pub client_tls: Option<Arc<ClientTls>>,
    /// Probes in flight at most when this node probes the endpoints of the zones it is
    /// primary for (docs/protocol.md §9.1); `None`: it does not probe.
    pub health_probes: Option<usize>,
    /// Gossip with the operator's other nodes, if any.
    pub membership: Option<MembershipConfig>,
    /// The gRPC URL other nodes reach this one at; `None`: the listener's own URL.
    pub advertise: Option<String>,
}

impl ServeOptions {
    pub fn new(zones: Vec<ZoneSnapshot>) -> ServeOptions {
        ServeOptions {
            node_id: None,
            zones,
            resolver: ResolverConfig::default(),
            clock: clock::system(),
            dns: None,
            admin: None,
            store: None,
            secondaries: Vec::new(),
            update_keys: Vec::new(),
            update_identities: Vec::new(),
            notify: true,
            grpc_limits: ServerLimits::default(),
            client_tls: None,
            health_probes: Some(crate::health::DEFAULT_CONCURRENCY),
            membership: None,
            advertise: None,
        }
    }

    /// The URL this node gives other nodes for itself: secondaries hand it to their primary
    /// as their NOTIFY address, a primary leaves it out of its own NOTIFY targets, and gossip
    /// spreads it. Needed when the door listens on a wildcard address (`0.0.0.0:7100`) or
    /// behind a name (a Kubernetes pod's DNS name).
    pub fn advertise(mut self, url: impl Into<String>) -> Self {
        self.advertise = Some(url.into());
        self
    }

    pub fn client_tls(mut self, tls: Arc<ClientTls>) -> Self {
        self.client_tls = Some(tls);
        self
    }

    /// Whether (and how many at once) this node probes its primary zones' endpoints.
    pub fn health_probes(mut self, concurrency: Option<usize>) -> Self {
        self.health_probes = concurrency;
        self
    }

    pub fn membership(mut self, config: MembershipConfig) -> Self {
        self.membership = Some(config);
        self
    }

    pub fn grpc_limits(mut self, limits: ServerLimits) -> Self {
        self.grpc_limits = limits;
        self
    }

    pub fn store(mut self, store: Arc<Store>) -> Self {
        self.store = Some(store);
        self
    }

    pub fn secondary(mut self, zone: Name, primary: impl Into<String>) -> Self {
        self.secondaries.push((zone, primary.into()));
        self
    }

    pub fn update_key(mut self, key: UpdateKey) -> Self {
        self.update_keys.push(key);
        self
    }

    pub fn update_identity(mut self, identity: UpdateIdentity) -> Self {
        self.update_identities.push(identity);
        self
    }

    pub fn notify(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn dns(mut self, listener: DnsListener) -> Self {
        self.dns = Some(listener);
        self
    }

    pub fn admin(mut self, listener: AdminListener) -> Self {
        self.admin = Some(listener);
        self
    }

    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    pub fn roots(mut self, roots: Vec<ServerAddress>) -> Self {
        self.resolver.roots = roots;
        self
    }
}

/// Loads zone files, reporting every file's errors, not just the first file's.
pub fn load_zone_files(paths: &[PathBuf]) -> Result<Vec<ZoneSnapshot>, NodeError> {
    let mut zones: Vec<(ZoneSnapshot, &PathBuf)> = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match file::load(path) {
            Ok(zone) => {
                if let Some((_, first)) = zones.iter().find(|(z, _)| z.origin() == zone.origin()) {
                    return Err(NodeError::DuplicateZone {
                        zone: zone.origin().to_string(),
                        first: (*first).clone(),
                        second: path.clone(),
                    });
                }
                zones.push((zone, path));
            }
            Err(error) => errors.push(error),
        }
    }
    if !errors.is_empty() {
        return Err(NodeError::ZoneFiles { errors });
    }
    Ok(zones.into_iter().map(|(zone, _)| zone).collect())
}

/// Starts a node from its config: loads the zones, binds, serves.
pub async fn start(config: NodeConfig) -> Result<NodeHandle, NodeError> {
    start_with_tls(config).await.map(|(handle, _)| handle)
}

/// [`start`], handing back the node's live TLS settings too (to reload them on SIGHUP).
pub async fn start_with_tls(config: NodeConfig) -> Result<(NodeHandle, NodeTls), NodeError> {
    let tls = NodeTls::load(&config.tls)?;
    let started = std::time::Instant::now();
    let zones = load_zone_files(&config.zone_files)?;
    crate::sys::release_freed_memory();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    for zone in &zones {
        tracing::info!(
            zone = %zone.origin(),
            serial = zone.serial(),
            agents = zone.agent_count(),
            "loaded zone"
        );
    }
    tracing::info!(
        zones = zones.len(),
        elapsed_ms = format!("{elapsed_ms:.1}"),
        "zone files loaded"
    );
    let store = match &config.data_dir {
        Some(dir) => {
            let dir = dir.clone();
            let store = tokio::task::spawn_blocking(move || Store::open_dir(&dir))
                .await
                .map_err(|join| NodeError::Serve(join.to_string()))??;
            tracing::info!(store = %store.path().display(), "store opened");
            Some(Arc::new(store))
        }
        None => None,
    };
    let mut listener = GrpcListener::bind(config.grpc).await?;
    if let Some(server) = &tls.server {
        listener = listener.tls(Arc::clone(server));
    }
    let dns = match config.dns {
        Some(addr) => Some(
            DnsListener::bind(addr)
                .await?
                .with_rate_limit(config.dns_rate_limit),
        ),
        None => None,
    };
    let admin = match config.admin {
        Some(addr) => Some(
            AdminListener::bind(addr)
                .await?
                .allow_hosts(config.admin_allow_hosts)
                .tls(tls.admin.clone()),
        ),
        None => None,
    };
    let handle = listener.serve_with(ServeOptions {
        node_id: config.node_id,
        zones,
        resolver: config.resolver,
        clock: clock::system(),
        dns,
        admin,
        store,
        secondaries: config.secondaries,
        update_keys: config.update_keys,
        update_identities: config.update_identities,
        notify: config.notify,
        grpc_limits: config.grpc_limits,
        client_tls: Some(Arc::clone(&tls.client)),
        health_probes: config.health_probes,
        membership: config.membership,
        advertise: config.advertise,
    })?;
    Ok((handle, tls))
}

/// The resolver's caches drop what the authority changed, so this node answers an update's
/// data at once.
struct CacheInvalidation(Arc<Resolver>);

impl crate::authority::ChangeListener for CacheInvalidation {
    fn names_changed<'a>(&'a self, names: &'a [crate::name::Name]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for name in names {
                self.0.invalidate(name).await;
            }
        })
    }
}

/// The URL of a gRPC door at `addr`.
pub fn grpc_url(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "https" } else { "http" })
}

/// A bound gRPC port, not yet serving.
pub struct GrpcListener {
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<Arc<ServerTls>>,
}

impl GrpcListener {
    pub async fn bind(addr: SocketAddr) -> Result<GrpcListener, NodeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| NodeError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| NodeError::Bind { addr, source })?;
        Ok(GrpcListener {
            listener,
            addr,
            tls: None,
        })
    }

    /// Serve TLS only, with these settings (`https://` URLs).
    pub fn tls(mut self, tls: Arc<ServerTls>) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients and zone files use for this listener (`https://` with TLS).
    pub fn url(&self) -> String {
        grpc_url(self.addr, self.tls.is_some())
    }

    /// The URL other nodes are given for this node: `advertise` when set (checked: an
    /// http(s) URL whose scheme matches the door's), else the listener's own URL. A wildcard
    /// listen address without `advertise` is logged, as no other node can reach it.
    fn advertised_url(&self, advertise: Option<String>) -> Result<String, NodeError> {
        let Some(url) = advertise else {
            if self.addr.ip().is_unspecified() {
                tracing::warn!(
                    grpc = %self.url(),
                    "the gRPC door listens on every address and no --advertise URL is given: \
                     secondaries and gossip members will be told a URL no other host can reach"
                );
            }
            return Ok(self.url());
        };
        let url = url.trim_end_matches('/').to_string();
        crate::record::check_http_url("advertise", &url).map_err(|error| {
            let reason = match error {
                crate::record::RecordError::InvalidUrl { reason, .. } => reason,
                other => other.to_string(),
            };
            NodeError::Advertise {
                url: url.clone(),
                reason,
            }
        })?;
        let tls = self.tls.is_some();
        if url.starts_with("https://") != tls {
            return Err(NodeError::Advertise {
                reason: if tls {
                    "the gRPC door speaks TLS only, so the URL must start with https://".into()
                } else {
                    "the gRPC door speaks plaintext (no --tls-cert), so the URL must start \
                     with http://"
                        .into()
                },
                url,
            });
        }
        Ok(url)
    }

    /// Serves `zones` with default settings (an in-memory store) until the handle shuts it
    /// down.
    pub fn serve(
        self,
        node_id: Option<String>,
        zones: Vec<ZoneSnapshot>,
    ) -> Result<NodeHandle, NodeError> {
        let mut options = ServeOptions::new(zones);
        options.node_id = node_id;
        self.serve_with(options)
    }

    /// Prepares the zones from the store and the zone files, then serves until the handle
    /// shuts it down.
    pub fn serve_with(self, options: ServeOptions) -> Result<NodeHandle, NodeError> {
        let node_id = options.node_id.unwrap_or_else(|| self.addr.to_string());
        let advertised_url = self.advertised_url(options.advertise)?;
        // Built before anything starts, so its failure leaves nothing running. https://
        // endpoints are probed with the node's own trust (system roots plus --ca).
        let probe = match options.health_probes {
            Some(_) => Some(McpProbe::with_tls(options.client_tls.clone())?),
            None => None,
        };
        let store = match options.store {
            Some(store) => store,
            None => Arc::new(Store::in_memory()?),
        };
        // One pool of channels to other nodes, for every part that asks them.
        let pool = match &options.client_tls {
            Some(tls) => ChannelPool::with_tls(Arc::clone(tls)),
            None => ChannelPool::new(),
        };
        let peers = Arc::new(GrpcPeers::new(pool.clone()));
        let prepared = PreparedAuthority::prepare(AuthorityConfig {
            store,
            primaries: options.zones,
            secondaries: options.secondaries,
            keys: options.update_keys,
            notify: options.notify,
            clock: Arc::clone(&options.clock),
            peers: Arc::clone(&peers) as _,
        })?;
        let catalog = Arc::new(Catalog::new(node_id.clone(), prepared.snapshots()?));
        let resolver = Arc::new(Resolver::new(
            Arc::clone(&catalog),
            options.resolver,
            peers,
            options.clock,
        ));
        let shutdown = CancellationToken::new();
        let authority = prepared.start(
            Arc::clone(&catalog),
            Arc::new(CacheInvalidation(Arc::clone(&resolver))),
            advertised_url.clone(),
            shutdown.child_token(),
        )?;
        let started = std::time::Instant::now();
        crate::sys::trim_memory_periodically(shutdown.child_token());
        let probe_counts = Arc::new(ProbeCounts::default());
        if let (Some(concurrency), Some(probe)) = (options.health_probes, probe) {
            Prober {
                authority: authority.clone(),
                catalog: Arc::clone(&catalog),
                probe: Arc::new(probe),
                concurrency,
                counts: Arc::clone(&probe_counts),
            }
            .spawn(shutdown.child_token());
        }
        let limits = options.grpc_limits;
        let grpc_connections = Admission::new(limits.connections);
        let recent = Arc::new(RecentQueries::default());
        let grpc_metrics = Arc::new(GrpcMetrics::default());
        let dns_counters = Arc::new(DnsCounters::new(Arc::clone(&recent)));
        let (dns_addr, dns_task) = match options.dns {
            Some(listener) => {
                let addr = listener.local_addr();
                let task = listener.serve(
                    Arc::clone(&catalog),
                    shutdown.child_token(),
                    Arc::clone(&dns_counters),
                );
                (Some(addr), Some(task))
            }
            None => (None, None),
        };
        let service = RegistryService::new(
            Arc::clone(&catalog),
            Arc::clone(&resolver),
            authority.clone(),
            pool,
        )
        .with_shutdown(shutdown.child_token())
        .with_watch_limits(Admission::new(limits.watches))
        .with_update_identities(options.update_identities);
        let resolve_requests = service.resolve_requests();
        let membership = match options.membership {
            Some(config) => {
                let local = crate::fleet::local_state(&node_id, &advertised_url, &authority, 0);
                let (membership, task) = Membership::start(config, local, shutdown.child_token())?;
                let membership = Arc::new(membership);
                resolver
                    .servers()
                    .set_liveness(Arc::new(crate::fleet::MemberLiveness(Arc::clone(
                        &membership,
                    ))));
                tokio::spawn(crate::fleet::run(
                    Arc::clone(&membership),
                    authority.clone(),
                    node_id.clone(),
                    advertised_url.clone(),
                    Arc::clone(&grpc_metrics),
                    shutdown.child_token(),
                ));
                Some((membership, task))
            }
            None => None,
        };
        let (membership, membership_task) = membership.unzip();
        let (admin_url, admin_addr, admin_task) = match options.admin {
            Some(listener) => {
                let addr = listener.local_addr();
                let url = listener.url();
                let view = NodeView {
                    node_id: node_id.clone(),
                    grpc_url: advertised_url.clone(),
                    dns_addr,
                    catalog: Arc::clone(&catalog),
                    resolver: Arc::clone(&resolver),
                    authority: authority.clone(),
                    dns: dns_addr.map(|_| Arc::clone(&dns_counters)),
                    grpc: Arc::clone(&grpc_metrics),
                    recent: Arc::clone(&recent),
                    started,
                    started_unix_ms: crate::clock::system_unix_ms(),
                    membership: membership.clone(),
                    health_probes: Arc::clone(&probe_counts),
                };
                (
                    Some(url),
                    Some(addr),
                    Some(listener.serve_node(view, shutdown.child_token())),
                )
            }
            None => (None, None, None),
        };
        let served = crate::grpc::server::serve(
            self.listener,
            service,
            crate::grpc::server::Observers {
                metrics: Arc::clone(&grpc_metrics),
                recent: Arc::clone(&recent),
            },
            limits,
            Arc::clone(&grpc_connections),
            self.tls.clone(),
            shutdown.clone(),
        );
        let task = tokio::spawn(async move {
            match served.await {
                Ok(result) => result.map_err(NodeError::Serve),
                Err(join) => Err(NodeError::Serve(join.to_string())),
            }
        });
        Ok(NodeHandle {
            node_id,
            grpc_addr: self.addr,
            grpc_url: grpc_url(self.addr, self.tls.is_some()),
            advertised_url,
            catalog,
            resolver,
            authority,
            resolve_requests,
            dns_addr,
            dns_task,
            dns_counters,
            admin_url,
            admin_addr,
            admin_task,
            recent,
            grpc_metrics,
            membership,
            membership_task,
            shutdown,
            task,
        })
    }
}

/// A running node.
pub struct NodeHandle {
    node_id: String,
    grpc_addr: SocketAddr,
    grpc_url: String,
    catalog: Arc<Catalog>,
    resolver: Arc<Resolver>,
    authority: Authority,
    resolve_requests: Arc<AtomicU64>,
    dns_addr: Option<SocketAddr>,
    dns_task: Option<JoinHandle<()>>,
    dns_counters: Arc<DnsCounters>,
    admin_url: Option<String>,
    admin_addr: Option<SocketAddr>,
    admin_task: Option<JoinHandle<()>>,
    recent: Arc<RecentQueries>,
    grpc_metrics: Arc<GrpcMetrics>,
    membership: Option<Arc<Membership>>,
    membership_task: Option<JoinHandle<()>>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), NodeError>>,
    advertised_url: String,
}

impl NodeHandle {
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// `http://ADDR`, or `https://ADDR` when the door speaks TLS.
    pub fn grpc_url(&self) -> String {
        self.grpc_url.clone()
    }

    /// The URL other nodes are given for this one (`--advertise`, else [`Self::grpc_url`]).
    pub fn advertised_url(&self) -> &str {
        &self.advertised_url
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn resolver(&self) -> &Arc<Resolver> {
        &self.resolver
    }

    /// The zones this node is authoritative for, live.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The DNS door's address, if the node has one.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns_addr
    }

    pub fn dns_counters(&self) -> &Arc<DnsCounters> {
        &self.dns_counters
    }

    /// The admin endpoint's address, if the node has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The status page's URL (`http://ADDR/`, `https://` with a certificate), if the node
    /// has an admin endpoint.
    pub fn admin_url(&self) -> Option<String> {
        self.admin_url.clone()
    }

    /// The last queries of every door of this node.
    pub fn recent_queries(&self) -> &Arc<RecentQueries> {
        &self.recent
    }

    /// The gRPC door's counters by method and status.
    pub fn grpc_metrics(&self) -> &Arc<GrpcMetrics> {
        &self.grpc_metrics
    }

    /// This node's gossip membership, if it has one.
    pub fn membership(&self) -> Option<&Arc<Membership>> {
        self.membership.as_ref()
    }

    /// Resolve requests this node has received.
    pub fn resolve_requests(&self) -> u64 {
        self.resolve_requests.load(Ordering::Relaxed)
    }

    /// Resolves when the node stops by itself (a server error) rather than by shutdown.
    pub async fn stopped(&mut self) -> Result<(), NodeError> {
        match (&mut self.task).await {
            Ok(result) => result,
            Err(join) => Err(NodeError::Serve(join.to_string())),
        }
    }

    /// Stops accepting, drains requests in flight for up to five seconds, then stops.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        self.shutdown.cancel();
        if let Some(dns) = self.dns_task.take() {
            let _ = tokio::time::timeout(DRAIN_DEADLINE, dns).await;
        }
        // The member tells the group it leaves, so it is down at once for the others.
        if let Some(gossip) = self.membership_task.take() {
            let _ = tokio::time::timeout(DRAIN_DEADLINE, gossip).await;
        }
        if let Some(admin) = self.admin_task.take() {
            let _ = tokio::time::timeout(DRAIN_DEADLINE, admin).await;
        }
        match tokio::time::timeout(DRAIN_DEADLINE, &mut self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(NodeError::Serve(join.to_string())),
            Err(_) => {
                tracing::warn!(node = %self.node_id, "requests still in flight after the drain deadline; stopping anyway");
                self.task.abort();
                Ok(())
            }
        }
    }
}

/// The health prober's probe is MCP's `initialize` (the prober knows no protocol; the MCP
/// plumbing knows no prober).
impl Probe for McpProbe {
    fn probe(&self, url: &str, timeout: Duration) -> BoxFuture<'static, Result<(), String>> {
        McpProbe::probe(self, url, timeout)
    }
}
