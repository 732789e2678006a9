//! `aop node`: one zone server, from flags or a config file (flags win).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use aop::config::NodeConfigFile;
use aop::node::{self, NodeConfig};
use aop::record::ServerAddress;
use aop::resolver::ResolverConfig;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    aop node --zone zones/finance.acme.toml --grpc 127.0.0.1:7102\n  \
    aop node --config deploy/nodes/finance-1.toml\n\n\
    A config file has the keys node_id, grpc and zones (paths relative to the file); \
    see deploy/README.md.")]
pub struct NodeArgs {
    /// Node config file (TOML); flags given here override its keys.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Zone file this node is authoritative for (repeatable).
    #[arg(long = "zone", value_name = "FILE")]
    zones: Vec<PathBuf>,
    /// gRPC listen address (port 0 picks a free port and logs it).
    #[arg(long, value_name = "ADDR")]
    grpc: Option<SocketAddr>,
    /// DNS door listen address, UDP and TCP (for example 127.0.0.2:53); none by default.
    #[arg(long, value_name = "ADDR")]
    dns: Option<SocketAddr>,
    /// Names this node in answers (`served_by`) [default: its gRPC address].
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// Root hint: gRPC URL of a server of the root zone, where recursion starts (repeatable).
    #[arg(long = "root", value_name = "URL")]
    roots: Vec<String>,
    /// How long past its TTL a cached answer may still be served, marked stale, when every
    /// server of its zone fails [default: 1d].
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    max_stale: Option<Duration>,
}

pub async fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => NodeConfigFile::load(path)?,
        None => NodeConfigFile::default(),
    };
    let grpc = args.grpc.or(file.grpc).context(
        "no gRPC listen address: give --grpc ADDR (for example 127.0.0.1:7100) or `grpc` in the config file",
    )?;
    let zone_files = if args.zones.is_empty() {
        file.zones
    } else {
        args.zones
    };
    let root_urls = if args.roots.is_empty() {
        file.roots
    } else {
        args.roots
    };
    if zone_files.is_empty() && root_urls.is_empty() {
        bail!(
            "nothing to do: give --zone FILE (repeatable) to serve zones, --root URL to resolve, \
             or both (or `zones` / `roots` in the config file)"
        );
    }
    let mut resolver = ResolverConfig::default();
    for url in &root_urls {
        let root =
            ServerAddress::new(url, None).with_context(|| format!("invalid root hint {url:?}"))?;
        resolver.roots.push(root);
    }
    let max_stale = match (args.max_stale, &file.max_stale) {
        (Some(duration), _) => Some(duration),
        (None, Some(text)) => Some(
            super::parse_duration(text)
                .map_err(|e| anyhow::anyhow!("invalid max_stale in the config file: {e}"))?,
        ),
        (None, None) => None,
    };
    if let Some(max_stale) = max_stale {
        resolver.cache.max_stale_age = max_stale;
    }
    let config = NodeConfig {
        node_id: args.node_id.or(file.node_id),
        grpc,
        dns: args.dns.or(file.dns),
        zone_files,
        resolver,
    };
    let mut handle = node::start(config).await?;
    tracing::info!(
        node = handle.node_id(),
        grpc = %handle.grpc_url(),
        dns = ?handle.dns_addr(),
        zones = ?handle.catalog().origins().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "node ready"
    );
    tokio::select! {
        () = super::shutdown_signal() => {
            tracing::info!("shutting down");
            handle.shutdown().await?;
        }
        result = handle.stopped() => result?,
    }
    Ok(ExitCode::SUCCESS)
}
