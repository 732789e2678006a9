//! `aop node`: one zone server, from flags or a config file (flags win).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use aop::config::NodeConfigFile;
use aop::node::{self, NodeConfig};

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
    /// Names this node in answers (`served_by`) [default: its gRPC address].
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
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
    if zone_files.is_empty() {
        bail!(
            "no zones to serve: give --zone FILE (repeatable) or `zones` in the config file\n\
             (a node that only resolves arrives with recursion, in a later release)"
        );
    }
    let config = NodeConfig {
        node_id: args.node_id.or(file.node_id),
        grpc,
        zone_files,
    };
    let mut handle = node::start(config).await?;
    tracing::info!(
        node = handle.node_id(),
        grpc = %handle.grpc_url(),
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
