//! `aop demo`: the whole federation of `zones/` in one process.
//!
//! The zone files name their servers by address, but the demo assigns addresses itself
//! (CONTRACT section 3): node 0 is the root, then one node per distinct `servers` entry of the
//! zone files, zones taken in name order; node i serves gRPC on port base+i (or a free port
//! when the base is 0) and DNS on base+100+i. Every server address in the zones, including
//! delegation glue, is rewritten to the assigned one, so the federation is self-consistent
//! whatever the files say. (Glue carries addresses, not ports, so a recursive DNS resolver
//! cannot follow the demo's referrals between ports; `dig -p` against any door works.)

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::dns::DnsListener;
use crate::name::Name;
use crate::node::{GrpcListener, NodeError, NodeHandle, ServeOptions, load_zone_files};
use crate::record::ServerAddress;

/// Offsets from the port base (CONTRACT section 3).
pub const DNS_PORT_OFFSET: u16 = 100;
pub const ADMIN_PORT_OFFSET: u16 = 200;

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
}

/// One node of the running demo.
pub struct DemoNode {
    pub index: usize,
    pub handle: NodeHandle,
    pub zones: Vec<Name>,
}

/// The running federation.
pub struct Demo {
    pub nodes: Vec<DemoNode>,
}

impl Demo {
    /// Stops every node, draining requests in flight.
    pub async fn shutdown(self) -> Result<(), NodeError> {
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
    if port_base != 0
        && usize::from(port_base) + usize::from(ADMIN_PORT_OFFSET) + written.len() > 65535
    {
        return Err(DemoError::PortsExhausted {
            base: port_base,
            nodes: written.len(),
        });
    }

    let mut listeners = Vec::with_capacity(written.len());
    let mut dns_listeners = Vec::with_capacity(written.len());
    let port = |offset: u16, index: usize| {
        if port_base == 0 {
            0
        } else {
            port_base + offset + index as u16
        }
    };
    for index in 0..written.len() {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port(0, index)));
        listeners.push(GrpcListener::bind(addr).await?);
        let dns = SocketAddr::from((Ipv4Addr::LOCALHOST, port(DNS_PORT_OFFSET, index)));
        dns_listeners.push(DnsListener::bind(dns).await.map_err(NodeError::from)?);
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
    for (index, (listener, dns)) in listeners.into_iter().zip(dns_listeners).enumerate() {
        let url = listener.url();
        let served: Vec<_> = zones
            .iter()
            .filter(|zone| zone.header().servers.iter().any(|s| s.grpc == url))
            .map(|zone| zone.with_servers(|s| s.clone()))
            .collect();
        let names = served.iter().map(|zone| zone.origin().clone()).collect();
        let options = ServeOptions::new(served)
            .node_id(format!("node{index}"))
            .roots(root_hints.clone())
            .dns(dns);
        let handle = listener.serve_with(options);
        nodes.push(DemoNode {
            index,
            handle,
            zones: names,
        });
    }
    Ok(Demo { nodes })
}
