//! `aop gateway`: the MCP gateway for LLM hosts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio_util::sync::CancellationToken;

use aop::admin::AdminListener;
use aop::admin::gateway::GatewayView;
use aop::gateway::{self, Gateway, GatewayConfig};
use aop::name::Name;
use aop::tls::{ServerTls, ServerTlsFiles};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    aop gateway --resolver http://127.0.0.1:7100 --listen 127.0.0.1:8000 --mount finance.acme\n  \
    aop gateway --stdio --mount finance.acme      (for desktop LLM hosts)\n  \
    aop gateway --mount finance.acme --admin 127.0.0.1:8001   (status page and /metrics)\n  \
    aop gateway --mount acme --auth deploy/gateway-auth.toml   (OAuth 2.1 resource server)\n  \
    aop gateway --mount acme --tls-cert certs/gw.pem --tls-key certs/gw.key --ca certs/ca.pem   \
    (HTTPS; https:// agents are verified against the system roots plus --ca)\n\n\
    MCP clients connect to http://ADDR/mcp (https:// with --tls-cert). Browsers' requests need an allowed Origin \
    (default: loopback origins); with --token-file every request needs \
    `Authorization: Bearer <token>`; with --auth every request needs a bearer token the \
    auth file accepts (a JWT of its issuer or a static token), and each caller sees and \
    calls what its policy allows.")]
pub struct GatewayArgs {
    /// gRPC URL of the node that resolves names for the gateway.
    #[arg(long, value_name = "URL", value_parser = super::parse_url, default_value = super::DEFAULT_SERVER)]
    resolver: String,
    /// Listen address of the Streamable HTTP endpoint (/mcp).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Certificate chain (PEM) of the MCP endpoint: with --tls-key it speaks HTTPS only
    /// (https://ADDR/mcp), and so does --admin, with the same certificate. Re-read on SIGHUP
    /// (new connections use the new one). `aop cert issue` makes one.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "stdio"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve one MCP session on stdin/stdout instead of HTTP (for desktop LLM hosts).
    #[arg(long)]
    stdio: bool,
    /// Zone whose agents become tools (repeatable).
    #[arg(long = "mount", value_name = "ZONE")]
    mounts: Vec<String>,
    /// Origin allowed to call from a browser, e.g. https://app.example.com:443 or
    /// http://localhost:* (repeatable) [default: loopback origins].
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// File holding the bearer token every request must carry.
    #[arg(long, value_name = "FILE", conflicts_with = "auth")]
    token_file: Option<PathBuf>,
    /// Authorization file (TOML): the gateway becomes an OAuth 2.1 resource server (JWT or
    /// static bearer tokens, per-caller policies, rate limits, upstream credentials; see
    /// docs/protocol.md §8.2). Not with --stdio, whose one local client needs none.
    #[arg(long, value_name = "FILE", conflicts_with = "stdio")]
    auth: Option<PathBuf>,
    /// Mounted zones are followed on Watch streams; this is the longest wait before a failed
    /// stream is reopened, and how often a zone is polled when its node offers no Watch.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = super::parse_duration)]
    poll_interval: Duration,
    /// Admin endpoint listen address: a status page at /, /metrics (Prometheus), /healthz
    /// and /readyz (for example 127.0.0.1:8001; read-only, bind it to loopback); none by
    /// default.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Host name the admin endpoint answers (repeatable), besides loopback names and
    /// addresses and the address a request reached; any other Host gets 403.
    #[arg(long = "admin-allow-host", value_name = "NAME")]
    admin_allow_hosts: Vec<String>,
    /// MCP sessions (2025 era) open at once; one more is refused with HTTP 503 [default:
    /// 10000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_sessions: Option<u32>,
    /// MCP sessions one client address may hold open; one more is refused with HTTP 429
    /// [default: 1000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_sessions_per_client: Option<u32>,
    /// An MCP session with no traffic for this long is closed.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = super::parse_duration)]
    session_idle: Duration,
    /// Directory where queued tasks, their results and paused queues are kept (fsync'd
    /// before submit_task answers), so they survive a restart; in memory without it.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Pending tasks one agent's queue holds; one more is refused naming this limit.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    queue_size: u32,
    /// Tasks of one agent the gateway runs at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    agent_concurrency: u32,
    /// How long a finished task (and its result) stays known; an idempotency key names
    /// the same task for this long.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = super::parse_duration)]
    task_ttl: Duration,
}

pub async fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    // Before anything is announced: a signal sent then must stop it cleanly.
    let stop_signal = super::shutdown_signal();
    let mut config = GatewayConfig::new(args.resolver.clone());
    for text in &args.mounts {
        let zone = Name::parse(text).with_context(|| format!("invalid --mount {text:?}"))?;
        config.mounts.push(zone);
    }
    config.poll_interval = args.poll_interval;
    config.tasks.data_dir = args.data_dir.clone();
    config.tasks.queue_size = args.queue_size as usize;
    config.tasks.agent_concurrency = args.agent_concurrency as usize;
    config.tasks.ttl = args.task_ttl;
    // An https:// resolver: the --ca and --client-cert/--client-key of this process.
    config.resolver_tls = Some(super::client_tls()?);
    // https:// agents: verified against the system roots plus the same --ca.
    config.agent_tls = Some(super::client_tls()?);
    for origin in &args.allow_origins {
        if !(origin == "null" || origin.starts_with("http://") || origin.starts_with("https://")) {
            bail!(
                "invalid --allow-origin {origin:?}: an origin is scheme://host[:port] \
                 (http or https; `:*` for any port), or `null`"
            );
        }
    }
    config.guards.allowed_origins = args.allow_origins.clone();
    if args.max_sessions.is_some() || args.max_sessions_per_client.is_some() {
        let defaults = aop::mcp::http::SESSION_BOUNDS;
        let total = args.max_sessions.map_or(defaults.total, |n| n as usize);
        let per_client = args
            .max_sessions_per_client
            .map_or(defaults.per_client, |n| n as usize)
            .min(total);
        config.guards.sessions = Some(aop::admission::Bounds { total, per_client });
    }
    config.guards.session_idle = Some(args.session_idle);
    let server_tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(ServerTls::https(ServerTlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
        })?),
        _ => None,
    };
    config.guards.tls = server_tls.clone();
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --token-file {}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            bail!(
                "--token-file {} is empty: put the bearer token in it",
                path.display()
            );
        }
        config.guards.bearer_token = Some(Arc::from(token));
    }
    if let Some(path) = &args.auth {
        let auth = gateway::auth::config::AuthConfig::load(path)?;
        let authorizer = gateway::auth::Authorizer::new(auth, aop::clock::system()).await?;
        config.auth = Some(authorizer);
    }
    // Bound before the gateway starts, so a taken port fails the command at once.
    let admin = match args.admin {
        Some(addr) => Some(
            AdminListener::bind(addr)
                .await?
                .allow_hosts(args.admin_allow_hosts.clone())
                .tls(server_tls.clone()),
        ),
        None => None,
    };
    let stop_admin = CancellationToken::new();
    if args.stdio {
        let gateway = Gateway::new(config, aop::clock::system())?;
        let admin_task = admin.map(|admin| {
            let view = GatewayView {
                gateway: Arc::clone(&gateway),
                sessions: None,
            };
            // stdout carries the MCP session: the address goes to the log only.
            admin.serve_gateway(view, stop_admin.clone())
        });
        gateway::serve_stdio(gateway).await?;
        stop_admin.cancel();
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let handle = gateway::start(config, listener).await?;
    if let Some(url) = handle.url() {
        println!("MCP gateway at {url} (resolver {})", args.resolver);
    }
    let admin_task = admin.map(|admin| {
        println!(
            "admin endpoint at {} (status page, /metrics, /healthz, /readyz)",
            admin.url()
        );
        admin.serve_gateway(GatewayView::of(&handle), stop_admin.clone())
    });
    tokio::select! {
        () = stop_signal => {}
        () = reload_on_sighup(server_tls) => {}
    }
    tracing::info!("gateway stopping");
    stop_admin.cancel();
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    handle.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Re-reads the HTTPS certificate and key (of /mcp and --admin) and the client side's CA
/// and certificate on every SIGHUP: new connections use them, open ones keep theirs. A
/// reload that fails keeps the files read before. Runs until the gateway stops.
async fn reload_on_sighup(server: Option<Arc<ServerTls>>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; TLS files are not reloaded");
            std::future::pending::<()>().await;
            return;
        };
        while hangups.recv().await.is_some() {
            let client = super::client_tls().map_err(|error| error.to_string());
            let result = server
                .as_ref()
                .map_or(Ok(()), |server| server.reload().map_err(|e| e.to_string()))
                .and_then(|()| {
                    client.and_then(|client| client.reload().map_err(|e| e.to_string()))
                });
            match result {
                Ok(()) => tracing::info!("SIGHUP: TLS certificates and keys re-read"),
                Err(error) => {
                    tracing::error!(%error, "TLS files not reloaded; still using the ones read before")
                }
            }
        }
    }
    std::future::pending::<()>().await;
}
