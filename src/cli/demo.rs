//! `aop demo`: start the federation of zones/ and print how to use it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use anyhow::Context;

use aop::demo::{self, DemoError};
use aop::keys::UpdateKey;

#[derive(Debug, Args)]
#[command(
    after_help = "Port plan from --port-base B: node i serves gRPC on B+i, DNS on B+100+i and \
    its admin endpoint (status page, /metrics, /healthz, /readyz) on B+200+i (node 0 is the \
    root, then one node per distinct `servers` entry of the zone files, zones in name order); \
    demo agents on B+300+j; the MCP gateway on http://127.0.0.1:B+900/mcp (https:// with --tls) and its status page \
    on B+901. --port-base 0 takes free ports from the OS. Ctrl-C stops everything."
)]
pub struct DemoArgs {
    /// First port of the port plan; 0 takes free ports from the OS.
    #[arg(long, default_value_t = 7100, value_name = "B")]
    port_base: u16,
    /// Directory of zone files.
    #[arg(long, default_value = "zones", value_name = "DIR")]
    zones: PathBuf,
    /// Every gRPC door and link over TLS, and the status pages and the MCP gateway over
    /// HTTPS, with a CA the demo makes (in a private temporary directory, removed when it
    /// stops); prints the --ca clients need.
    #[arg(long)]
    tls: bool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    // Before anything is announced: a signal sent then must stop it cleanly.
    let stop_signal = super::shutdown_signal();
    let tls_dir = if args.tls {
        Some(PrivateDir::create("tls")?)
    } else {
        None
    };
    let tls = match &tls_dir {
        Some(dir) => Some(demo::DemoTls::create(&dir.0)?),
        None => None,
    };
    let demo = match demo::start_with(&args.zones, args.port_base, tls.as_ref()).await {
        Ok(demo) => demo,
        Err(error @ (DemoError::ReadDir { .. } | DemoError::NoZones { .. })) => {
            anyhow::bail!(
                "{error}\naop demo reads the zone files in ./zones (the repository's zones/): \
                 run it from the repository's root, or give the directory with --zones DIR"
            );
        }
        Err(error) => return Err(error.into()),
    };
    // The zones' update keys, written where `aop register --key-file` can read them while
    // the demo runs (removed when it stops).
    let key_dir = match KeyDir::write(&demo.update_keys) {
        Ok(key_dir) => key_dir,
        Err(error) => {
            demo.shutdown().await?;
            return Err(error);
        }
    };
    println!("AOP demo federation from {}/", args.zones.display());
    println!();
    println!(
        "{:<6} {:<8} {:<24} {:<17} zones",
        "node", "id", "grpc", "dns"
    );
    for node in &demo.nodes {
        let zones: Vec<String> = node.zones.iter().map(ToString::to_string).collect();
        let dns = node
            .handle
            .dns_addr()
            .map_or_else(|| "-".to_string(), |a| a.to_string());
        println!(
            "{:<6} {:<8} {:<24} {:<17} {}",
            node.index,
            node.handle.node_id(),
            node.handle.grpc_url(),
            dns,
            zones.join(", ")
        );
    }
    println!();
    println!("Status pages (each node's Prometheus metrics at /metrics):");
    for node in &demo.nodes {
        if let Some(url) = node.handle.admin_url() {
            println!("  {:<8} {url}", node.handle.node_id());
        }
    }
    println!("  {:<8} {}", "gateway", demo.gateway_status.url);
    let root = demo.root_url().unwrap_or_default();
    let finance = demo
        .nodes
        .iter()
        .find(|node| node.zones.iter().any(|z| z.as_str() == "finance.acme"))
        .map(|node| node.handle.grpc_url());
    // The default --server is the demo root on the default port base; over TLS every
    // command also needs the demo's CA.
    let ca = tls
        .as_ref()
        .map(|tls| format!("--ca {} ", tls.ca.display()))
        .unwrap_or_default();
    let server = if root == super::DEFAULT_SERVER {
        String::new()
    } else {
        format!("--server {root} {ca}")
    };
    if let Some(tls) = &tls {
        println!();
        println!(
            "TLS: every gRPC door speaks TLS with a certificate of the demo's CA; clients give \
             --ca {} (or AOP_CA={}). The status pages and the MCP gateway speak HTTPS with it: \
             curl --cacert {}, or trust the CA in the MCP host (SSL_CERT_FILE, \
             NODE_EXTRA_CA_CERTS)",
            tls.ca.display(),
            tls.ca.display(),
            tls.ca.display()
        );
    }
    println!();
    println!("Try:");
    println!(
        "  aop resolve {server}analyst.finance.acme --trace    # recursion from the root, hop by hop"
    );
    println!(
        "  aop resolve {server}forecaster.finance.acme --json  # an alias: the answer names the target it followed"
    );
    println!("  aop resolve {server}librarian.research.globex --stats");
    println!(
        "  aop search {server}forecasting    # ranked search of every zone, fanned out from the root"
    );
    println!(
        "  aop search {server}--zone finance.acme --tag finance --limit 5    # one subtree, by tag"
    );
    if let Some(finance) = &finance {
        println!(
            "  aop resolve --server {finance} {ca}--no-recurse fx.trading.finance.acme    # authoritative only"
        );
    }
    println!(
        "  aop resolve --server {root} {ca}--no-recurse analyst.finance.acme    # the root's referral"
    );
    if let Some(dns) = demo
        .nodes
        .iter()
        .find(|node| node.zones.iter().any(|z| z.as_str() == "finance.acme"))
        .and_then(|node| node.handle.dns_addr())
    {
        println!(
            "  dig @{} -p {} _mcp._tcp.analyst.finance.acme SRV    # the DNS door",
            dns.ip(),
            dns.port()
        );
    }
    let echo = demo
        .agents
        .iter()
        .find(|agent| agent.kind == aop::agent::AgentKind::Echo);
    if let (Some(finance), Some(echo), Some(key)) =
        (finance.as_ref(), echo, key_dir.path_of("finance.acme"))
    {
        println!(
            "  aop register --server {finance} {ca}--zone finance.acme --name scribe --url {} --tool {} --lease 600 --key-file {}    # live, signed with the demo's key",
            echo.server.url(),
            echo.tool,
            key.display()
        );
        // Asked of the primary that took the registration: a recursive resolve may reach the
        // secondary a moment before its transfer has brought the new agent.
        println!(
            "  aop resolve --server {finance} {ca}scribe.finance.acme    # the agent just registered, from its primary"
        );
    }
    if let Some(admin) = demo.nodes.first().and_then(|node| node.handle.admin_url()) {
        let cacert = tls
            .as_ref()
            .map(|tls| format!("--cacert {} ", tls.ca.display()))
            .unwrap_or_default();
        println!(
            "  curl -s {cacert}{admin}metrics | grep ^aop_queries_total    # the root's query counters"
        );
    }
    println!();
    println!("{:<28} {:<8} {:<10} endpoint", "agent", "kind", "tool");
    for agent in &demo.agents {
        let serves: Vec<String> = agent.serves.iter().map(ToString::to_string).collect();
        println!(
            "{:<28} {:<8} {:<10} {}",
            serves.join(","),
            agent.kind,
            agent.tool,
            agent.server.url()
        );
    }
    let gateway_url = demo.gateway.url().unwrap_or_default();
    let mounts: Vec<String> = demo
        .gateway
        .gateway
        .directory()
        .mounts()
        .iter()
        .map(ToString::to_string)
        .collect();
    println!();
    println!("MCP gateway: {gateway_url} (mounts {})", mounts.join(", "));
    println!();
    println!("MCP host configuration to paste (hosts that speak Streamable HTTP):");
    let http_config =
        serde_json::json!({"mcpServers": {"aop": {"type": "http", "url": gateway_url}}});
    println!(
        "{}",
        serde_json::to_string_pretty(&http_config).unwrap_or_default()
    );
    println!("or, for hosts that start a command (stdio):");
    let mut stdio_args = vec![
        "gateway".to_string(),
        "--stdio".into(),
        "--resolver".into(),
        root.clone(),
    ];
    if let Some(tls) = &tls {
        stdio_args.push("--ca".into());
        stdio_args.push(tls.ca.display().to_string());
    }
    for mount in &mounts {
        stdio_args.push("--mount".into());
        stdio_args.push(mount.clone());
    }
    // This binary's own path: after `cargo run`, `aop` is not on the PATH.
    let command = std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "aop".into());
    let stdio_config =
        serde_json::json!({"mcpServers": {"aop": {"command": command, "args": stdio_args}}});
    println!(
        "{}",
        serde_json::to_string_pretty(&stdio_config).unwrap_or_default()
    );
    println!();
    println!(
        "Update keys (one per zone, named {:?}; removed when the demo stops): {}",
        demo::DEMO_KEY_NAME,
        key_dir.dir.display()
    );
    println!();
    println!(
        "ready: {} nodes, {} agents, gateway {gateway_url}; Ctrl-C stops",
        demo.nodes.len(),
        demo.agents.len()
    );
    stop_signal.await;
    eprintln!("stopping");
    demo.shutdown().await?;
    key_dir.remove();
    if let Some(dir) = tls_dir {
        dir.remove();
    }
    Ok(ExitCode::SUCCESS)
}

/// A private (0700) temporary directory of the demo's, removed when it stops.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create(what: &str) -> anyhow::Result<PrivateDir> {
        let dir = std::env::temp_dir().join(format!("aop-demo-{what}-{}", std::process::id()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(PrivateDir(dir))
    }

    fn remove(self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), %error, "cannot remove the demo's directory");
        }
    }
}

/// A private directory holding the demo's key files, one per zone (`<zone>.key`).
struct KeyDir {
    dir: PathBuf,
    files: Vec<(String, PathBuf)>,
}

impl KeyDir {
    fn write(keys: &[UpdateKey]) -> anyhow::Result<KeyDir> {
        let dir = std::env::temp_dir().join(format!("aop-demo-{}", std::process::id()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut files = Vec::with_capacity(keys.len());
        for key in keys {
            let zone = key.zone().to_string();
            let file = if key.zone().is_root() {
                "root.key".to_string()
            } else {
                format!("{zone}.key")
            };
            let path = dir.join(file);
            super::update::write_secret_file(&path, &key.to_key_file())?;
            files.push((zone, path));
        }
        Ok(KeyDir { dir, files })
    }

    fn path_of(&self, zone: &str) -> Option<&PathBuf> {
        self.files
            .iter()
            .find(|(name, _)| name == zone)
            .map(|(_, path)| path)
    }

    fn remove(self) {
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot remove the demo's key files");
        }
    }
}
